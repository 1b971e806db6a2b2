//! Kafka Connect's client and internal-topic settings through real workers
//! and the broker (issue 17, items 2, 3 and 9):
//!
//! - `consumer.override.*` reaches the sink's consumer (Kafka Connect's
//!   `Worker.baseConsumerConfigs` + `ConnectorClientConfigOverridePolicy`),
//!   and the worker's `connector.client.config.override.policy` refuses what
//!   it does not allow, as `AbstractHerder.validateClientOverrides` does;
//! - the internal topics take their names and replication factors from the
//!   worker's settings, a DLQ its `errors.deadletterqueue.topic.replication.factor`
//!   (the factor is read back from the broker's metadata; the test broker has
//!   one node and accepts any factor, so a broker's refusal of a factor is
//!   not exercised here);
//! - many offsets/status partitions and a Java Connect cluster's configs
//!   topic stop the worker at start with the reason;
//! - a worker starts from Kafka's own `config/connect-distributed.properties`
//!   and names every key it ignores.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::json;
use sluice_tests::{build_dir, create_topic, produce, service_env, unique, wait_until, WorkerProcess};

/// The values the example file sink wrote (its fifth tab-separated field).
fn sink_values(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.splitn(5, '\t').nth(4).map(str::to_string))
        .collect()
}

/// Replicas per partition of `topic` as the broker's metadata reports them,
/// once the topic exists.
fn replicas(topic: &str) -> Vec<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
        .create()
        .expect("a metadata client");
    wait_until(&format!("topic {topic} to exist"), Duration::from_secs(30), || {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = metadata.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none() && !t.partitions().is_empty())
            .then(|| t.partitions().iter().map(|p| p.replicas().len()).collect())
    })
}

/// Runs `sluice worker ARGS` expecting it to exit on its own; returns its
/// status and output.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(build_dir().join("sluice"))
        .args(args)
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("worker status") {
            let output = child.wait_with_output().expect("worker output");
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            return (status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_consumer_override_changes_where_a_new_sink_starts_reading() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("override-in");
    create_topic(&topic, 1);
    // One batch per record: the test broker answers ListOffsets(latest) from
    // the last batch's start, not its end (see ARCHITECTURE.md, the offsets topic).
    for value in ["old-0", "old-1", "old-2"] {
        produce(&topic, 0, &[(None, Some(value))]);
    }

    let w = WorkerProcess::start(&unique("overrides"), &[], &[]);
    let create = |name: &str, file: &Path, extra: &[(&str, &str)]| {
        let mut config = json!({
            "connector.class": "example-file-sink",
            "topics": topic,
            "file": file.to_string_lossy(),
            "offset.flush.interval.ms": "200",
        });
        for (k, v) in extra {
            config[*k] = json!(v);
        }
        let (code, body) = w.request("POST", "/connectors", Some(&json!({"name": name, "config": config}).to_string()));
        assert_eq!(code, 201, "{body}");
    };
    let latest_file = dir.path().join("latest.txt");
    let default_file = dir.path().join("default.txt");
    let latest = unique("latest");
    create(&latest, &latest_file, &[("consumer.override.auto.offset.reset", "latest")]);
    create(&unique("earliest"), &default_file, &[]);
    w.wait_tasks_state(&latest, 1, "RUNNING", Duration::from_secs(60));

    // The override sink starts at the end once its partition is assigned: keep
    // producing until a new record reaches it.
    let mut produced = 0;
    wait_until(
        "a record produced after the start to reach the sink with auto.offset.reset=latest",
        Duration::from_secs(90),
        || {
            let value = format!("new-{produced}");
            produce(&topic, 0, &[(None, Some(&value))]);
            produced += 1;
            let values = sink_values(&latest_file);
            values.iter().any(|v| v.starts_with("new-")).then_some(())
        },
    );
    let values = sink_values(&latest_file);
    assert!(
        values.iter().all(|v| v.starts_with("new-")),
        "the latest sink read records from before it started: {values:?}"
    );
    // Without the override the worker's default (earliest) reads them.
    wait_until("the sink without override to read the old records", Duration::from_secs(90), || {
        let values = sink_values(&default_file);
        values.starts_with(&["old-0".to_string(), "old-1".to_string(), "old-2".to_string()]).then_some(())
    });
}

#[test]
fn the_override_policy_and_the_keys_sluice_owns_are_refused_with_a_400_naming_the_key() {
    let w = WorkerProcess::start(&unique("policy"), &["--connector-client-config-override-policy", "Principal"], &[]);
    let topic = unique("policy-in");
    let post = |extra: serde_json::Value| {
        let mut config = json!({"connector.class": "example-file-sink", "topics": topic, "file": "/dev/null"});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        w.request("POST", "/connectors", Some(&json!({"name": unique("p"), "config": config}).to_string()))
    };
    let (code, body) = post(json!({"consumer.override.auto.offset.reset": "latest"}));
    assert_eq!(code, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("consumer.override.auto.offset.reset"), "{message}");
    assert!(message.contains("connector.client.config.override.policy is Principal"), "{message}");

    // Principal allows the client's identity, a JAAS line included.
    let (code, body) = post(json!({
        "consumer.override.security.protocol": "PLAINTEXT",
        "consumer.override.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";",
    }));
    assert_eq!(code, 201, "{body}");

    // Whatever the policy: the keys Sluice's guarantees rest on.
    for key in ["consumer.override.group.id", "producer.override.acks", "consumer.override.enable.auto.commit"] {
        let (code, body) = post(json!({ key: "x" }));
        assert_eq!(code, 400, "{key}: {body}");
        assert!(body["message"].as_str().unwrap().contains(key), "{body}");
    }
    // A Java-only key says which librdkafka keys to use.
    let (code, body) = post(json!({"consumer.override.ssl.truststore.location": "/etc/truststore.jks"}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("ssl.ca.location"), "{body}");
    // The DLQ may not be a consumed topic (SinkConnectorConfig.validate).
    let (code, body) = post(json!({"errors.tolerance": "all", "errors.deadletterqueue.topic.name": topic}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("errors.deadletterqueue.topic.name"), "{body}");

    let none =
        WorkerProcess::start(&unique("policy-none"), &["--connector-client-config-override-policy", "None"], &[]);
    let config = json!({"connector.class": "example-file-sink", "topics": topic, "file": "/dev/null",
                        "consumer.override.security.protocol": "PLAINTEXT"});
    let (code, body) =
        none.request("POST", "/connectors", Some(&json!({"name": unique("p"), "config": config}).to_string()));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("policy is None"), "{body}");
}

#[test]
fn internal_topics_and_the_dlq_are_created_with_the_configured_names_and_replication() {
    let base = unique("topics");
    let (configs, offsets, status) = (format!("{base}-cfg"), format!("{base}-off"), format!("{base}-st"));
    let w = WorkerProcess::start(
        &base,
        &[
            "--config-storage-topic",
            &configs,
            "--offset-storage-topic",
            &offsets,
            "--status-storage-topic",
            &status,
            "--config-storage-replication-factor",
            "3",
            "--status-storage-replication-factor",
            "2",
        ],
        &[],
    );
    assert_eq!(replicas(&configs), [3]);
    assert_eq!(replicas(&status), [2]);
    // -1: the broker's default factor (this broker's is 1).
    assert_eq!(replicas(&offsets), [1]);

    let topic = unique("rf-in");
    create_topic(&topic, 1);
    let dlq = format!("{topic}-dlq");
    let name = unique("rf-sink");
    let config = json!({"connector.class": "example-file-sink", "topics": topic, "file": "/dev/null",
                        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
                        "errors.deadletterqueue.topic.replication.factor": "3"});
    let (code, body) = w.request("POST", "/connectors", Some(&json!({"name": name, "config": config}).to_string()));
    assert_eq!(code, 201, "{body}");
    w.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(60));
    assert_eq!(replicas(&dlq), [3], "the DLQ takes errors.deadletterqueue.topic.replication.factor");

    // A source's topic, created on first use (Kafka Connect's KIP-158 keys).
    let source_topic = unique("rf-source");
    let config = json!({"connector.class": "example-counter-source", "topic": source_topic, "counter.max": "3",
                        "topic.creation.default.partitions": "2",
                        "topic.creation.default.replication.factor": "3"});
    let (code, body) =
        w.request("POST", "/connectors", Some(&json!({"name": unique("rf-source"), "config": config}).to_string()));
    assert_eq!(code, 201, "{body}");
    assert_eq!(replicas(&source_topic), [3, 3], "topic.creation.default.replication.factor");
}

#[test]
fn a_connector_created_under_a_laxer_policy_fails_its_task_naming_the_key() {
    let cluster = unique("policy-start");
    let mut lax = WorkerProcess::start(&cluster, &[], &[]);
    let topic = unique("policy-start-in");
    create_topic(&topic, 1);
    let name = unique("tuned");
    let config = json!({"connector.class": "example-file-sink", "topics": topic, "file": "/dev/null",
                        "consumer.override.fetch.min.bytes": "1"});
    let (code, body) = lax.request("POST", "/connectors", Some(&json!({"name": name, "config": config}).to_string()));
    assert_eq!(code, 201, "{body}");
    lax.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(60));
    assert!(lax.terminate().success());

    // Kafka Connect checks the policy again when it starts the connector.
    let strict = WorkerProcess::start(&cluster, &["--connector-client-config-override-policy", "None"], &[]);
    let status = strict.wait_tasks_state(&name, 1, "FAILED", Duration::from_secs(60));
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("consumer.override.fetch.min.bytes") && trace.contains("policy is None"), "{status}");
}

#[test]
fn many_offsets_partitions_and_a_java_connect_configs_topic_stop_the_worker_with_the_reason() {
    let bootstrap = service_env("KAFKA_BOOTSTRAP");
    let base = unique("refuse");
    let (status, output) = run_to_exit(&[
        "worker",
        "--bootstrap-servers",
        &bootstrap,
        "--cluster-id",
        &base,
        "--rest-listen",
        "127.0.0.1:0",
        "--offset-storage-partitions",
        "25",
    ]);
    assert!(!status.success());
    assert!(output.contains("offset.storage.partitions=25") && output.contains("one partition"), "{output}");

    // A factor that cannot be created stops the start naming the setting it
    // came from (this broker accepts any factor up to librdkafka's limit, so
    // the refusal here is librdkafka's; a real cluster's
    // INVALID_REPLICATION_FACTOR takes the same path).
    let (status, output) = run_to_exit(&[
        "worker",
        "--bootstrap-servers",
        &bootstrap,
        "--cluster-id",
        &base,
        "--rest-listen",
        "127.0.0.1:0",
        "--status-storage-replication-factor",
        "20000",
    ]);
    assert!(!status.success());
    assert!(
        output.contains(&format!("{base}-status")) && output.contains("status.storage.replication.factor"),
        "{output}"
    );

    // What a Kafka Connect worker writes to its config.storage.topic
    // (KafkaConfigBackingStore: connector-, task-, commit- records).
    let java_configs = format!("{base}-connect-configs");
    create_topic(&java_configs, 1);
    produce(
        &java_configs,
        0,
        &[
            (
                Some("connector-orders"),
                Some(r#"{"properties":{"connector.class":"FileStreamSink","topics":"orders"}}"#),
            ),
            (Some("task-orders-0"), Some(r#"{"properties":{"task.class":"FileStreamSinkTask"}}"#)),
            (Some("commit-orders"), Some(r#"{"tasks":1}"#)),
        ],
    );
    let (status, output) = run_to_exit(&[
        "worker",
        "--bootstrap-servers",
        &bootstrap,
        "--cluster-id",
        &base,
        "--rest-listen",
        "127.0.0.1:0",
        "--config-storage-topic",
        &java_configs,
    ]);
    assert!(!status.success());
    assert!(
        output.contains(&java_configs) && output.contains("connector-orders") && output.contains("Kafka Connect"),
        "{output}"
    );
}

#[test]
fn a_worker_starts_from_kafkas_connect_distributed_properties_and_names_each_ignored_key() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/connect-distributed.properties");
    let text = fs::read_to_string(&fixture).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = unique("props");
    // Kafka's file as shipped, then what an operator changes for this broker
    // (a later key wins, as in java.util.Properties) and a few keys Sluice has
    // no use for, in the format's other spellings.
    let additions = format!(
        "\n# for this test\nbootstrap.servers={bootstrap}\ngroup.id={base}\n\
         config.storage.topic = {base}-connect-configs\noffset.storage.topic : {base}-connect-offsets\n\
         status.storage.topic {base}-connect-status\nlisteners=HTTP://127.0.0.1:{port}\n\
         plugin.path={plugins}\nheartbeat.interval.ms=3000\n\
         metric.reporters=com.example.Reporter,\\\n    com.example.Other\n",
        bootstrap = service_env("KAFKA_BOOTSTRAP"),
        plugins = build_dir().display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connect-distributed.properties");
    fs::write(&path, format!("{text}{additions}")).unwrap();
    let log_path = dir.path().join("worker.log");
    let mut child = Command::new(build_dir().join("sluice"))
        .args(["worker", "--config", &path.to_string_lossy()])
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start sluice");
    let url = format!("http://127.0.0.1:{port}");
    let ready = wait_until("the worker to answer GET /", Duration::from_secs(60), || {
        if let Some(status) = child.try_wait().ok().flatten() {
            panic!("the worker exited with {status}: {}", fs::read_to_string(&log_path).unwrap_or_default());
        }
        let mut response = ureq::get(&format!("{url}/connectors")).call().ok()?;
        response.body_mut().read_to_string().ok()
    });
    assert_eq!(ready, "[]");
    let log = fs::read_to_string(&log_path).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    for key in ["offset.flush.interval.ms", "heartbeat.interval.ms", "metric.reporters"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&format!("ignoring {key}:"))).collect();
        assert_eq!(lines.len(), 1, "one line for {key} in:\n{log}");
    }
    let ignored = log.lines().filter(|l| l.contains("connect-distributed.properties: ignoring")).count();
    assert_eq!(ignored, 3, "only those keys are ignored:\n{log}");
    // The storage topics are the file's, created with its replication factor.
    for suffix in ["connect-configs", "connect-offsets", "connect-status"] {
        assert_eq!(replicas(&format!("{base}-{suffix}")), [1], "{suffix}");
    }
}
