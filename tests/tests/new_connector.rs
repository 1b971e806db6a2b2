//! `sluice new connector`: a generated crate passes its own tests, builds as
//! a plugin against the workspace's compiled dependencies (only the new crate
//! compiles), loads, and its sink delivers through a real worker.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{build_dir, committed_offset, create_topic, produce, unique, wait_until, WorkerProcess};

fn sluice(args: &[&str]) -> Output {
    Command::new(build_dir().join("sluice")).args(args).output().expect("run sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sluice new connector --kind KIND NAME --dir <tmp>/NAME`: the crate's directory.
fn generate(tmp: &Path, kind: &str, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    let out = sluice(&["new", "connector", "--kind", kind, name, "--dir", &dir.to_string_lossy()]);
    assert!(out.status.success(), "sluice new connector failed: {}", text(&out.stderr));
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // Generating again into the same directory is refused.
    let again = sluice(&["new", "connector", "--kind", kind, name, "--dir", &dir.to_string_lossy()]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("not empty"), "{}", text(&again.stderr));
    dir
}

/// The workspace's `[profile.*]` settings as `--config` arguments: a crate
/// outside the workspace compiled with other settings would rebuild every
/// dependency.
fn workspace_profiles() -> Vec<String> {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")).unwrap();
    let mut section = None;
    let mut args = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).strip_prefix("profile.").map(str::to_string);
        } else if let (Some(profile), Some((key, value))) = (&section, line.split_once('=')) {
            if !line.starts_with('#') {
                args.extend(["--config".to_string(), format!("profile.{profile}.{}={}", key.trim(), value.trim())]);
            }
        }
    }
    args
}

/// Runs `cargo <command>` in the generated crate with the profile these tests
/// were built in. Intermediate artifacts go to the workspace's target
/// directory (`build-dir`), so dependencies already compiled there with the
/// same features are reused; the crate's own outputs go to `target`. The
/// workspace's Cargo.lock pins the same dependency versions. Prints how long
/// it took and what compiled; returns the crates compiled.
///
/// A dependency whose features differ from the workspace's union (cargo
/// unifies features over every member of a `--workspace` build) compiles
/// once per build directory, on the first run; later runs reuse it.
fn cargo(dir: &Path, target: &Path, command: &str) -> Vec<String> {
    let workspace_target = build_dir().parent().expect("the workspace's target directory").to_path_buf();
    let release = build_dir().file_name().is_some_and(|p| p == "release");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .arg(command)
        .arg("--offline")
        .args(workspace_profiles())
        .env("CARGO_BUILD_BUILD_DIR", &workspace_target)
        .env("CARGO_TARGET_DIR", target);
    if release {
        cmd.arg("--release");
    }
    let started = Instant::now();
    let out = cmd.output().expect("run cargo");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "cargo {command} failed in {}:\n{stderr}\n{}", dir.display(), text(&out.stdout));
    let compiled: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .filter_map(|c| c.split_whitespace().next())
        .map(str::to_string)
        .collect();
    println!(
        "cargo {command} of {}: {:.1} s (including waits for cargo's lock), compiled {} crates: {}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        started.elapsed().as_secs_f64(),
        compiled.len(),
        compiled.join(" ")
    );
    compiled
}

/// Generates a crate, runs its tests, builds it, and lists it through
/// `sluice plugins list`: the directory holding the plugin library.
fn generate_and_build(tmp: &Path, kind: &str, name: &str) -> PathBuf {
    let dir = generate(tmp, kind, name);
    fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = tmp.join(format!("{name}-target"));
    cargo(&dir, &target, "test");
    // The tests built the library too (and every dependency): nothing else compiles.
    let compiled = cargo(&dir, &target, "build");
    assert!(compiled.iter().all(|c| c == name), "cargo build after cargo test compiled {compiled:?}");
    let plugins = target.join(build_dir().file_name().expect("profile directory"));
    let library = format!("{}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX);
    assert!(plugins.join(&library).is_file(), "{library} was not built in {}", plugins.display());

    let listed = sluice(&["plugins", "list", "--plugin-path", &plugins.to_string_lossy()]);
    let stdout = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stderr).is_empty(), "a library was refused: {}", text(&listed.stderr));
    let line = stdout.lines().find(|l| l.split_whitespace().next() == Some(name));
    let fields: Vec<&str> =
        line.unwrap_or_else(|| panic!("{name} is not listed:\n{stdout}")).split_whitespace().collect();
    assert_eq!(fields[1], kind);
    plugins
}

#[test]
fn a_generated_source_builds_tests_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    generate_and_build(tmp.path(), "source", "e2e-template-source");
}

#[test]
fn a_generated_sink_delivers_through_a_worker_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "e2e-template-sink";
    let plugins = generate_and_build(tmp.path(), "sink", name);

    let topic = unique("template-in");
    create_topic(&topic, 1);
    let values: Vec<String> = (0..5).map(|i| format!("value-{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), Some(v.as_str()))).collect();
    assert_eq!(produce(&topic, 0, &records), [0, 1, 2, 3, 4]);

    let w = WorkerProcess::start(&unique("template"), &["--plugin-path", &plugins.to_string_lossy()], &[]);
    let connector = unique("template-sink");
    let out = tmp.path().join("out.jsonl");
    let body = json!({"name": connector, "config": {
        "connector.class": name, "topics": topic, "file": out.to_string_lossy(),
        "offset.flush.interval.ms": "200",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let group = format!("connect-{connector}");
    wait_until("the sink's group to commit every record", Duration::from_secs(60), || {
        (committed_offset(&group, &topic, 0) == Some(5)).then_some(())
    });
    // Committed, so durable: every record is in the file, exactly once.
    let mut seen: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for line in fs::read_to_string(&out).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        seen.entry(record["offset"].as_i64().unwrap()).or_default().push(record);
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 4], "{seen:?}");
    for (offset, lines) in &seen {
        assert_eq!(lines.len(), 1, "offset {offset} written {} times", lines.len());
        let expected =
            json!({"topic": topic, "partition": 0, "offset": offset, "key": "k", "value": values[*offset as usize]});
        assert_eq!(lines[0], expected);
    }
}
