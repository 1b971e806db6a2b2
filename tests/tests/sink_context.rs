//! Plugin ABI 2 through a real worker and broker: a record's schema reaches
//! the sink, the sink context's notes travel in the offset commit and come
//! back on the next assignment, and a seek on open skips what the target
//! holds. The sink is `test-flaky-sink` (tests/plugins/flaky-sink) with its
//! failures turned off.

use std::{fs, time::Duration};

use connector_api::schema::{Logical, Schema, SchemaType};
use serde_json::json;
use sluice_tests::{
    committed_offset, committed_with_metadata, create_topic, produce, unique, wait_until, WorkerProcess,
};

/// A flaky-sink config that never fails a record.
fn reliable_sink(name: &str, topic: &str, file: &std::path::Path) -> serde_json::Value {
    json!({
        "connector.class": "test-flaky-sink",
        "topics": topic,
        "file": file.to_string_lossy(),
        "fail.bad.every": "1000000000",
        "fail.retriable.every": "1000000000",
        "offset.flush.interval.ms": "200",
        "name": name,
    })
}

fn create(w: &WorkerProcess, name: &str, config: serde_json::Value) {
    let (code, body) = w.request("POST", "/connectors", Some(&json!({"name": name, "config": config}).to_string()));
    assert_eq!(code, 201, "{body}");
}

fn offsets_in(path: &std::path::Path) -> Vec<i64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut offsets: Vec<i64> = text.lines().filter_map(|l| l.split(' ').nth(2)?.parse().ok()).collect();
    offsets.sort();
    offsets
}

#[test]
fn a_json_schema_with_logical_types_and_a_nested_struct_reaches_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas.txt");
    let topic = unique("schema-in");
    create_topic(&topic, 1);
    // What Kafka Connect's JsonConverter writes for a struct with a Decimal
    // (scale 2, base64 of the unscaled bytes), a Timestamp and a nested struct.
    let schema = json!({"type": "struct", "name": "shop.Order", "optional": false, "fields": [
        {"field": "code", "type": "string", "optional": false},
        {"field": "total", "type": "bytes", "optional": false, "name": "org.apache.kafka.connect.data.Decimal",
         "version": 1, "parameters": {"scale": "2"}},
        {"field": "placed", "type": "int64", "optional": false, "name": "org.apache.kafka.connect.data.Timestamp",
         "version": 1},
        {"field": "customer", "type": "struct", "optional": true, "fields": [
            {"field": "uid", "type": "string", "optional": false}]},
    ]});
    let values: Vec<String> = (0..3)
        .map(|i| {
            json!({"schema": schema, "payload": {"code": format!("o{i}"), "total": "AN8=", "placed": 1764547200000i64,
                "customer": {"uid": "c1"}}})
            .to_string()
        })
        .collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("schemas"), &[], &[]);
    let name = unique("schema-sink");
    let mut config = reliable_sink(&name, &topic, &dir.path().join("durable.txt"));
    config["value.converter"] = json!("org.apache.kafka.connect.json.JsonConverter");
    config["schemas.file"] = json!(schemas.to_string_lossy());
    create(&w, &name, config);

    let lines = wait_until("three records with their schema in the sink", Duration::from_secs(60), || {
        let text = fs::read_to_string(&schemas).unwrap_or_default();
        (text.lines().count() >= 3).then_some(text)
    });
    for line in lines.lines() {
        let (_, json) = line.split_once('\t').expect("position and schema");
        let got = Schema::parse(json).expect("the sink's schema parses");
        assert_eq!(got, serde_json::from_value::<Schema>(schema.clone()).unwrap(), "intact through the ABI");
        assert_eq!(got.field("total").unwrap().schema.logical(), Some(Logical::Decimal { scale: 2 }));
        assert_eq!(got.field("placed").unwrap().schema.logical(), Some(Logical::Timestamp));
        let customer = &got.field("customer").unwrap().schema;
        assert_eq!((customer.kind, customer.optional), (SchemaType::Struct, true));
        assert_eq!(customer.field("uid").unwrap().schema.kind, SchemaType::String);
    }
}

#[test]
fn a_note_is_kept_by_the_broker_with_the_commit_and_read_back_on_the_next_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.txt");
    let topic = unique("note-in");
    create_topic(&topic, 1);
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    produce(&topic, 0, &records);

    let mut w = WorkerProcess::start(&unique("notes"), &[], &[]);
    let name = unique("note-sink");
    let mut config = reliable_sink(&name, &topic, &dir.path().join("durable.txt"));
    config["probe.file"] = json!(probe.to_string_lossy());
    create(&w, &name, config);

    let group = format!("connect-{name}");
    let (offset, note) = wait_until("the commit of offset 10 with its note", Duration::from_secs(60), || {
        committed_with_metadata(&group, &topic, 0).filter(|(o, m)| *o == 10 && m == "upto=10")
    });
    assert_eq!((offset, note.as_str()), (10, "upto=10"), "the broker keeps the commit's metadata");
    let first_open = format!("open {topic} 0 note=-");
    assert!(fs::read_to_string(&probe).unwrap().contains(&first_open), "a first assignment has no note");

    // A new incarnation of the task (the worker killed and started again)
    // reads the note on its assignment, before any record.
    w.restart();
    let again = format!("open {topic} 0 note=upto=10");
    wait_until("the restarted task to read its note on open", Duration::from_secs(60), || {
        fs::read_to_string(&probe).unwrap_or_default().contains(&again).then_some(())
    });
}

#[test]
fn a_seek_on_open_skips_the_records_the_target_already_holds() {
    let dir = tempfile::tempdir().unwrap();
    let durable = dir.path().join("durable.txt");
    let topic = unique("seek-in");
    create_topic(&topic, 1);
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("seek"), &[], &[]);
    let name = unique("seek-sink");
    let mut config = reliable_sink(&name, &topic, &durable);
    config["seek.on.open"] = json!("6");
    create(&w, &name, config);

    let group = format!("connect-{name}");
    wait_until("the commit to reach the end of the topic", Duration::from_secs(60), || {
        (committed_offset(&group, &topic, 0) == Some(10)).then_some(())
    });
    assert_eq!(offsets_in(&durable), [6, 7, 8, 9], "only the records from the sought offset reach the sink");
}
