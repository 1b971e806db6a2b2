//! Source-side failures go to the DLQ (beyond Kafka Connect, which skips
//! them): a counter source whose records fail a transform has every record in
//! the DLQ as the plugin gave it, with `__connect.errors.*` headers naming
//! the intended topic and -1 for partition and offset, and its source
//! offsets committed; replaying them needs the intended topic to exist and
//! then sends them there. Also: the worker reports its broker connections.

use std::time::Duration;

use rdkafka::Message;
use serde_json::json;
use sluice_tests::{consume, create_topic, header, unique, wait_until, WorkerProcess};

/// The value of the first line of `family` whose labels contain `label`.
fn metric(worker: &WorkerProcess, family: &str, label: &str) -> Option<f64> {
    let text = ureq::get(&format!("{}/metrics", worker.url)).call().ok()?.body_mut().read_to_string().ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn source_records_a_transform_fails_go_to_the_dlq_and_their_offsets_are_committed() {
    let topic = unique("source-dlq-out");
    let dlq = unique("source-dlq");
    let name = unique("counter-dlq");
    let w = WorkerProcess::start(&unique("source-dlq"), &[], &[]);
    // The counter's values are JSON numbers, not objects: RequireFields fails
    // every one of them.
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source",
        "topic": topic,
        "counter.max": "20",
        "transforms": "req",
        "transforms.req.type": "RequireFields",
        "transforms.req.fields": "id",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let dead = consume(&dlq, 1, 20, Duration::from_secs(60));
    for (n, m) in dead.iter().enumerate() {
        let text = n.to_string();
        assert_eq!(m.key(), Some(text.as_bytes()), "the plugin's key");
        assert_eq!(m.payload(), Some(text.as_bytes()), "the plugin's value");
        assert_eq!(header(m, "__connect.errors.topic").as_deref(), Some(topic.as_str()), "the intended topic");
        assert_eq!(header(m, "__connect.errors.partition").as_deref(), Some("-1"));
        assert_eq!(header(m, "__connect.errors.offset").as_deref(), Some("-1"));
        assert_eq!(header(m, "__connect.errors.stage").as_deref(), Some("TRANSFORMATION"));
        assert_eq!(header(m, "__connect.errors.connector.name").as_deref(), Some(name.as_str()));
        assert_eq!(header(m, "__connect.errors.exception.class.name").as_deref(), Some("BadRecord"));
        let message = header(m, "__connect.errors.exception.message").unwrap_or_default();
        assert!(message.contains("id"), "the message names the field: {message}");
    }
    wait_until("the last DLQ'd record's source offset to be committed", Duration::from_secs(60), || {
        let (code, offsets) = w.get(&format!("/connectors/{name}/offsets"));
        (code == 200 && offsets["offsets"][0]["offset"]["n"] == 19).then_some(())
    });
    assert_eq!(metric(&w, "sluice_records_dlq_total", &format!("connector=\"{name}\"")), Some(20.0));

    // Nothing created the intended topic: a replay says so and replays nothing.
    let replay = format!("/connectors/{name}/dlq/replay");
    let (code, answer) = w.request("POST", &replay, Some("{}"));
    assert_eq!(code, 409, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains(&topic), "{answer}");
    create_topic(&topic, 1);
    wait_until("a replay to send the 20 records to the intended topic", Duration::from_secs(60), || {
        let (code, answer) = w.request("POST", &replay, Some("{}"));
        (code == 200).then_some(()).inspect(|_| assert_eq!(answer["replayed"], 20, "{answer}"))
    });
    let replayed = consume(&topic, 1, 20, Duration::from_secs(60));
    let values: Vec<String> =
        replayed.iter().map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()).collect();
    assert_eq!(values, (0..20).map(|n| n.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_running_worker_reports_its_broker_connections() {
    let w = WorkerProcess::start(&unique("brokers"), &[], &[]);
    for client in ["cluster-producer", "cluster-reader"] {
        let label = format!("client=\"{client}\"");
        wait_until(&format!("sluice_broker_connections{{{label}}} > 0"), Duration::from_secs(60), || {
            metric(&w, "sluice_broker_connections", &label).filter(|v| *v > 0.0)
        });
    }
    // A task's clients count too, under Kafka Connect's client ids, and
    // leave no series behind once the connector is gone.
    let topic = unique("brokers-topic");
    let (source, sink) = (unique("brokers-source"), unique("brokers-sink"));
    let out = tempfile::tempdir().expect("temp dir");
    let connectors = [
        json!({"name": source, "config": {
            "connector.class": "example-counter-source", "topic": topic, "counter.max": "1000000",
        }}),
        json!({"name": sink, "config": {
            "connector.class": "example-file-sink", "topics": topic,
            "file": out.path().join("out.txt").to_string_lossy(),
            "errors.tolerance": "all", "errors.deadletterqueue.topic.name": unique("brokers-dlq"),
        }}),
    ];
    for body in &connectors {
        let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
        assert_eq!(code, 201, "{created}");
    }
    let clients = [
        format!("connector-producer-{source}-0"),
        format!("connector-consumer-{sink}-0"),
        format!("connector-dlq-producer-{sink}-0"),
    ];
    for client in &clients {
        let label = format!("client=\"{client}\"");
        wait_until(&format!("sluice_broker_connections{{{label}}} > 0"), Duration::from_secs(60), || {
            metric(&w, "sluice_broker_connections", &label).filter(|v| *v > 0.0)
        });
    }
    for name in [&source, &sink] {
        let (code, answer) = w.request("DELETE", &format!("/connectors/{name}"), None);
        assert_eq!(code, 204, "{answer}");
    }
    for client in &clients {
        let label = format!("client=\"{client}\"");
        wait_until(&format!("the series {label} to go away"), Duration::from_secs(60), || {
            metric(&w, "sluice_broker_connections", &label).is_none().then_some(())
        });
    }
}
