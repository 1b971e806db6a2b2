//! The plugin ABI end to end: real libraries loaded by the worker's loader.

use std::{
    fs,
    path::Path,
    process::Command,
    sync::{atomic::AtomicBool, Arc},
};

use connector_api::{
    ConnectorConfig, ErrorKind, HeaderRef, SinkRecord, SourceOffset, TopicPartition, TopicPartitionOffset,
};
use sluice_runtime::{
    host::{PluginMetrics, TaskHost},
    pipeline::status::StatusMessage,
    plugins::{Kind, PluginRegistry},
};
use sluice_tests::{build_dir, plugin_library};

fn host(connector: &str) -> connector_api::host::FfiHostBox {
    let metrics = Arc::new(PluginMetrics::new(prometheus_registry()));
    TaskHost::new(connector, 0, Arc::new(AtomicBool::new(false)), metrics).into_ffi()
}

fn context() -> connector_api::context::FfiSinkContextBox {
    connector_api::context::FfiSinkContext_TO::from_value(
        connector_api::context::Recorded::default(),
        abi_stable::sabi_trait::TD_Opaque,
    )
}

/// A status line nobody reads (the tests that do keep their own).
fn status() -> connector_api::ext::FfiTaskStatusBox {
    StatusMessage::default().to_ffi()
}

fn prometheus_registry() -> sluice_runtime::host::MetricsRegistry {
    sluice_runtime::host::MetricsRegistry::new()
}

fn registry_of(libraries: &[&str]) -> (tempfile::TempDir, PluginRegistry) {
    let dir = tempfile::tempdir().unwrap();
    for (i, lib) in libraries.iter().enumerate() {
        let src = plugin_library(lib);
        // Distinct file names: the same library may be listed twice on purpose.
        fs::copy(&src, dir.path().join(format!("lib{i}_{}", src.file_name().unwrap().to_string_lossy()))).unwrap();
    }
    let registry = PluginRegistry::load(&[dir.path().to_path_buf()]);
    (dir, registry)
}

#[test]
fn both_examples_load_with_their_kinds_and_aliases() {
    let (_dir, registry) = registry_of(&["example-file-sink", "example-counter-source"]);
    assert!(registry.rejections().is_empty(), "{:?}", registry.rejections());
    let sink = registry.class("example-file-sink").expect("file sink loaded");
    assert_eq!(sink.kind(), Kind::Sink);
    assert!(sink.is_password("file.token"));
    let alias = registry.class("org.apache.kafka.connect.file.FileStreamSinkConnector").expect("alias");
    assert_eq!(alias.name(), "example-file-sink");
    assert_eq!(registry.class("example-counter-source").expect("counter loaded").kind(), Kind::Source);
}

#[test]
fn records_round_trip_through_the_file_sink() {
    let (dir, registry) = registry_of(&["example-file-sink"]);
    let class = registry.class("example-file-sink").unwrap();
    let out = dir.path().join("out.txt");
    let out_s = out.to_string_lossy().to_string();
    let mut task =
        class.create_sink_task([("file", out_s.as_str())], host("files"), context(), status()).expect("task created");
    task.open(vec![TopicPartition::new("orders", 0)].as_slice().into()).unwrap();

    let headers = [HeaderRef { key: "h".into(), value: abi_stable::std_types::ROption::RNone }];
    let records = [
        SinkRecord::new("orders", 0, 7)
            .with_timestamp(Some(1))
            .with_key(Some(b"k7"))
            .with_value(Some(b"v7"))
            .with_headers(&headers),
        SinkRecord::new("orders", 0, 8).with_value(Some(b"v8")),
    ];
    let outcome = task.put(records.as_slice().into()).unwrap();
    assert!(outcome.failures().is_empty());
    // The file sink is durable once synced: it reports what was delivered.
    let delivered = [TopicPartitionOffset::new("orders", 0, 9)];
    let committed = task.pre_commit(delivered.as_slice().into()).unwrap().into_vec();
    assert_eq!(committed.len(), 1);
    assert_eq!((committed[0].topic.as_str(), committed[0].partition, committed[0].offset), ("orders", 0, 9));
    assert_eq!(fs::read_to_string(&out).unwrap(), "orders\t0\t7\tk7\tv7\norders\t0\t8\t\tv8\n");
    task.stop().unwrap();
}

#[test]
fn the_counter_source_resumes_after_its_committed_offset() {
    let (_dir, registry) = registry_of(&["example-counter-source"]);
    let class = registry.class("example-counter-source").unwrap();
    let config = [("topic", "counts"), ("counter.interval.ms", "0"), ("counter.batch.size", "5")];
    let mut task = class.create_source_task(config, host("counter")).unwrap();
    task.start(Vec::new().into()).unwrap();
    let first = task.poll(100).unwrap().into_vec();
    let values: Vec<String> =
        first.iter().map(|r| String::from_utf8(r.value.clone().unwrap().into_vec()).unwrap()).collect();
    assert_eq!(values, ["0", "1", "2", "3", "4"]);
    let last = first[4].source.clone();
    assert_eq!(last.offset.as_str(), r#"{"n":4}"#);

    let mut restarted = class.create_source_task(config, host("counter")).unwrap();
    restarted.start(vec![SourceOffset::new(last.partition.to_string(), last.offset.to_string())].into()).unwrap();
    let next = restarted.poll(1).unwrap().into_vec();
    assert_eq!(next[0].value.clone().unwrap().into_vec(), b"5");
}

#[test]
fn task_configs_split_work() {
    let (_dir, registry) = registry_of(&["example-file-sink"]);
    let class = registry.class("example-file-sink").unwrap();
    let tasks = class.task_configs([("file", "/tmp/x")], 3).unwrap();
    assert_eq!(tasks.len(), 3);
    assert!(tasks[0].contains(&("file".to_string(), "/tmp/x".to_string())));
}

fn find_rejection<'a>(registry: &'a PluginRegistry, file_part: &str) -> &'a str {
    &registry
        .rejections()
        .iter()
        .find(|r| r.path.to_string_lossy().contains(file_part))
        .unwrap_or_else(|| panic!("no rejection for {file_part}: {:?}", registry.rejections()))
        .reason
}

#[test]
fn bad_libraries_are_refused_and_the_good_ones_kept() {
    let (dir, _) = registry_of(&[]);
    fs::copy(plugin_library("test-plugin-wrong-abi"), dir.path().join("libwrong_abi.so")).unwrap();
    fs::copy(plugin_library("example-file-sink"), dir.path().join("libgood.so")).unwrap();
    fs::write(dir.path().join("libgarbage.so"), b"not an ELF file").unwrap();
    // A real shared library that is not a Sluice plugin.
    let libz = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libz on this machine");
    fs::copy(libz, dir.path().join("libnot_a_plugin.so")).unwrap();

    let registry = PluginRegistry::load(&[dir.path().to_path_buf()]);
    let wrong = find_rejection(&registry, "libwrong_abi.so");
    assert!(wrong.contains("ABI version 1,") && wrong.contains("ABI version 2"), "{wrong}");
    assert!(wrong.contains("what changed: version 2: sink records carry the key's and value's schema"), "{wrong}");
    let shown = registry.rejections().iter().find(|r| r.path.ends_with("libwrong_abi.so")).unwrap().to_string();
    assert!(shown.contains("libwrong_abi.so"), "the message names the file: {shown}");
    assert!(find_rejection(&registry, "libnot_a_plugin.so").contains("not a Sluice plugin"));
    assert!(find_rejection(&registry, "libgarbage.so").contains("cannot be opened"));
    assert!(registry.class("example-file-sink").is_some(), "the good plugin is kept");
    assert!(registry.class("wrong-abi-sink").is_none());
}

#[test]
fn a_duplicate_class_is_refused_with_the_first_library_named() {
    let (_dir, registry) = registry_of(&["example-file-sink", "example-file-sink"]);
    assert_eq!(registry.classes().len(), 1);
    let reason = find_rejection(&registry, "lib1_");
    assert!(reason.contains("duplicate connector class example-file-sink") && reason.contains("lib0_"), "{reason}");
}

#[test]
fn a_panic_in_put_is_a_fatal_error_and_everything_else_keeps_running() {
    let (dir, registry) = registry_of(&["test-plugin-panicky", "example-file-sink"]);
    let panicky = registry.class("test-panicky-sink").unwrap();
    let mut task = panicky.create_sink_task([], host("panicky"), context(), status()).unwrap();
    let boom = [SinkRecord::new("t", 0, 0).with_value(Some(b"panic"))];
    let err = task.put(boom.as_slice().into()).into_result().expect_err("the panic is reported");
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert!(err.message().contains("asked to panic by the record's value"), "{err}");

    // The process survived: the same library and another one still answer.
    let fine = [SinkRecord::new("t", 0, 1).with_value(Some(b"fine"))];
    assert!(task.put(fine.as_slice().into()).is_ok());
    let out = dir.path().join("after-panic.txt").to_string_lossy().to_string();
    let mut other = registry
        .class("example-file-sink")
        .unwrap()
        .create_sink_task([("file", out.as_str())], host("files"), context(), status())
        .unwrap();
    assert!(other.put(fine.as_slice().into()).is_ok());
}

#[test]
fn config_validation_names_the_offending_key() {
    let (_dir, registry) = registry_of(&["example-file-sink", "example-counter-source"]);
    let sink = registry.class("example-file-sink").unwrap();
    let issues = sink.validate([("file", "  ")]).unwrap();
    assert_eq!(issues.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["file"]);
    let issues = sink.validate([]).unwrap();
    assert!(issues[0].message.contains("Missing required configuration \"file\""));

    let counter = registry.class("example-counter-source").unwrap();
    let issues = counter.validate([("topic", "t"), ("counter.batch.size", "0"), ("counter.max", "x")]).unwrap();
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["counter.batch.size", "counter.max"]);

    // Creating a task with a config the connector cannot use is a Config error.
    let config = ConnectorConfig::new().with("file", "/nonexistent-dir/x");
    let entries: Vec<(&str, &str)> = config.iter().collect();
    let Err(err) = sink.create_sink_task(entries, host("files"), context(), status()) else {
        panic!("a task was created for a bad path")
    };
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("\"file\""), "{err}");
}

/// A plugin built before the extensions (`connector_api::ext`) exports the
/// root module alone: it loads and runs as before, its tasks' status line
/// and failure details simply absent. One with them carries both. (That a
/// plugin actually built with the earlier connector-api loads in this
/// worker, and one built with this connector-api in the earlier worker, was
/// checked with both builds: docs/decisions/0043.)
#[test]
fn a_plugin_without_extensions_runs_as_before_and_one_with_them_gives_status_and_details() {
    let (_dir, registry) = registry_of(&["test-plugin-details", "test-plugin-pre-extensions"]);
    assert!(registry.rejections().is_empty(), "{:?}", registry.rejections());
    for (class, extended) in [("test-details-sink", true), ("test-pre-extensions-sink", false)] {
        let class = registry.class(class).unwrap_or_else(|| panic!("{class} loaded"));
        assert_eq!(class.has_extensions(), extended, "{}", class.name());
        let line = StatusMessage::default();
        let mut task = class.create_sink_task([], host("details"), context(), line.to_ffi()).unwrap();
        let records = [
            SinkRecord::new("t", 0, 0).with_value(Some(b"status:paused until 00:00:00 UTC")),
            SinkRecord::new("t", 0, 1).with_value(Some(b"fine")),
            SinkRecord::new("t", 0, 2).with_value(Some(b"reject")),
        ];
        let outcome = task.put(records.as_slice().into()).into_result().unwrap();
        let failed: Vec<(u32, ErrorKind)> = outcome.failures().iter().map(|f| (f.index, f.error.kind())).collect();
        assert_eq!(failed, [(2, ErrorKind::Rejected)], "{}", class.name());
        assert!(outcome.failures()[0].error.message().contains("TEST_CODE"), "the message stays whole");
        let details: Vec<(&str, &str)> = outcome.details_of(2).collect();
        if extended {
            assert_eq!(details, [("code", "TEST_CODE"), ("message", "refused by the test"), ("fields", "a,b")]);
            assert_eq!(line.get().as_deref(), Some("paused until 00:00:00 UTC"));
            let cleared = [SinkRecord::new("t", 0, 3).with_value(Some(b"status-clear"))];
            let outcome = task.put(cleared.as_slice().into()).into_result().unwrap();
            assert!(outcome.failures().is_empty() && outcome.details().is_empty(), "details are per put");
            assert_eq!(line.get(), None);
        } else {
            assert_eq!(details, [], "a plugin without extensions gives no details");
            assert_eq!(line.get(), None, "and no status line reaches it");
        }
        task.stop().unwrap();
    }
}

#[test]
fn the_cli_lists_the_example_connectors() {
    let output = Command::new(build_dir().join("sluice"))
        .args(["plugins", "list", "--plugin-path"])
        .arg(build_dir())
        .output()
        .expect("run sluice");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in ["example-file-sink", "sink", "example-counter-source", "source"] {
        assert!(stdout.contains(expected), "{expected} missing from:\n{stdout}");
    }
    // The deliberately broken test plugin sits in the same directory: it is
    // reported on stderr, not listed.
    assert!(!stdout.contains("wrong-abi-sink"));
}
