//! Confluent's AvroConverter and the worker's default converters, through a
//! real worker: Python's confluent-kafka AvroSerializer → Tansu → sluice
//! (value.converter=AvroConverter against the Schema Registry fake) → the
//! s3-sink → SeaweedFS.
//!
//! What a team moving from Kafka Connect relies on: records another
//! client's Avro serializer wrote land in S3 as the same JSON a Kafka
//! Connect worker with Confluent's AvroConverter and the S3 sink's
//! JsonFormat writes (`AvroData.toConnectData`, then
//! `JsonConverter.convertToJson` with schemas disabled), field by field;
//! bytes that are not Confluent's wire format, or name a schema id the
//! registry does not have, go to the DLQ with their context; a connector
//! created without converters gets the worker's defaults written into its
//! stored config (Kafka Connect's `Plugins.newConverter` falls back to the
//! worker's `key.converter`/`value.converter`).

use std::{collections::BTreeMap, path::PathBuf, process::Command, time::Duration};

use serde_json::{json, Value};
use sluice_tests::{
    committed_offset, consume, create_topic, header, produce_bytes_at, s3::Bucket, schema_registry::SchemaRegistry,
    unique, wait_until, RawRecord, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(180);
const USER_INFO: &str = "sluice:registry-secret";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// The third-party serializer's records (`tests/golden/avro/serialize.py`):
/// `{"key", "value": hex of the wire bytes, "expected": Kafka Connect's JSON}`.
fn python_records(registry: &SchemaRegistry, topic: &str) -> Vec<Value> {
    let out = Command::new(repo().join("dev/confluent-python"))
        .arg("run")
        .arg(repo().join("tests/golden/avro/serialize.py"))
        .args(["--registry", &registry.url, "--user-info", USER_INFO, "--topic", topic])
        .output()
        .expect("run dev/confluent-python");
    assert!(out.status.success(), "serialize.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Compares with the committed golden file, or rewrites it when
/// `SLUICE_REGENERATE_GOLDEN=1`.
fn check_golden(records: &[Value]) {
    let path = repo().join("tests/golden/avro/records.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    if std::env::var("SLUICE_REGENERATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, text).expect("write the golden file");
        return;
    }
    let golden = std::fs::read_to_string(&path).expect("tests/golden/avro/records.jsonl");
    let golden: Vec<Value> = golden.lines().map(|l| serde_json::from_str(l).expect("a golden line")).collect();
    assert_eq!(golden.len(), records.len());
    for (g, r) in golden.iter().zip(records) {
        assert_eq!(g["value"], r["value"], "the serializer's bytes for {} changed", g["key"]);
        assert_eq!(g["expected"], r["expected"], "the expected JSON for {} changed", g["key"]);
    }
}

/// An s3-sink config writing `topic` under `dir` as JSON, values read with
/// Confluent's AvroConverter from `registry`, three records an object.
fn s3_avro_config(topic: &str, dir: &str, registry: &SchemaRegistry) -> Value {
    sluice_tests::s3::sink_config(json!({
        "connector.class": "io.confluent.connect.s3.S3SinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "topics.dir": dir,
        "format.class": "io.confluent.connect.s3.format.json.JsonFormat",
        "flush.size": "3",
        "offset.flush.interval.ms": "500",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
        "value.converter.schema.registry.url": registry.url,
        "value.converter.basic.auth.credentials.source": "USER_INFO",
        "value.converter.basic.auth.user.info": USER_INFO,
    }))
}

/// The object's lines, each compared field by field with what Kafka
/// Connect writes for the record.
fn assert_as_kafka_connect_writes(s3: &Bucket, object: &str, records: &[Value]) {
    let lines: Vec<Value> =
        s3.text(object).lines().map(|l| serde_json::from_str(l).expect("a JSON line in the object")).collect();
    assert_eq!(lines.len(), records.len());
    for (got, record) in lines.iter().zip(records) {
        let expected = record["expected"].as_object().expect("expected is an object");
        let got_fields: BTreeMap<&String, &Value> = got.as_object().expect("an object").iter().collect();
        assert_eq!(
            got_fields.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            expected.keys().map(String::as_str).collect::<Vec<_>>(),
            "the fields of {}",
            record["key"]
        );
        for (field, want) in expected {
            assert_eq!(&got[field], want, "{} field {field}: sluice wrote {}", record["key"], got[field]);
        }
    }
}

/// Produces the serializer's records to partition 0; the end offset.
fn produce_records(topic: &str, records: &[Value]) -> i64 {
    let values: Vec<Vec<u8>> = records.iter().map(|r| unhex(r["value"].as_str().expect("hex"))).collect();
    let raw: Vec<RawRecord<'_>> = records
        .iter()
        .zip(&values)
        .map(|(r, v)| (Some(r["key"].as_str().expect("key").as_bytes()), Some(&v[..])))
        .collect();
    produce_bytes_at(topic, 0, &raw, None).last().map_or(0, |o| o + 1)
}

#[test]
fn avro_from_a_third_party_serializer_reaches_the_s3_sink_as_kafka_connect_writes_it() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let s3 = Bucket::new();
    let topic = unique("avro-orders");
    let dir = unique("avro-dir");
    let name = unique("avro-sink");
    let dlq = unique("avro-dlq");
    create_topic(&topic, 1);

    let records = python_records(&registry, &topic);
    assert_eq!(records.len(), 3);
    check_golden(&records);

    // The three orders, then two records no Avro deserializer can read.
    let values: Vec<Vec<u8>> = records.iter().map(|r| unhex(r["value"].as_str().expect("hex"))).collect();
    assert_eq!(&values[0][..5], &[0, 0, 0, 0, 1], "magic byte 0, schema id 1 (big-endian)");
    let keys: Vec<String> = records.iter().map(|r| r["key"].as_str().expect("key").to_string()).collect();
    let mut raw: Vec<RawRecord<'_>> =
        keys.iter().zip(&values).map(|(k, v)| (Some(k.as_bytes()), Some(&v[..]))).collect();
    let unknown_id = [&[0u8, 0, 0, 3, 231][..], &values[0][5..]].concat();
    raw.push((Some(b"plain-json"), Some(br#"{"id": 4}"#)));
    raw.push((Some(b"unknown-id"), Some(&unknown_id)));
    let end = produce_bytes_at(&topic, 0, &raw, None).last().map_or(0, |o| o + 1);
    assert_eq!(end, 5);

    // The worker's default key converter; the connector names only its value converter.
    let defaults = tempfile::NamedTempFile::with_suffix(".toml").expect("temp file");
    std::fs::write(
        defaults.path(),
        "[connector_defaults]\n\"key.converter\" = \"org.apache.kafka.connect.storage.StringConverter\"\n",
    )
    .expect("write the worker config");
    let worker = WorkerProcess::start(&unique("avro-cluster"), &["--config", &defaults.path().to_string_lossy()], &[]);
    let mut config = s3_avro_config(&topic, &dir, &registry);
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(dlq);
    config["errors.deadletterqueue.context.headers.enable"] = json!("true");
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 201, "creating {name}: {reply}\n{}", worker.log_text());

    // The stored config says how the connector reads keys, and hides the
    // registry password.
    let (_, stored) = worker.get(&format!("/connectors/{name}/config"));
    assert_eq!(stored["key.converter"], "org.apache.kafka.connect.storage.StringConverter", "{stored}");
    assert_eq!(stored["value.converter.basic.auth.user.info"], "[hidden]", "{stored}");

    let group = format!("connect-{name}");
    wait_until("the connector's offsets committed past every record", TIMEOUT, || {
        (committed_offset(&group, &topic, 0) == Some(end)).then_some(())
    });
    let object = format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json");
    assert_eq!(s3.keys(&dir), vec![object.clone()], "one object of the three orders");
    assert_as_kafka_connect_writes(&s3, &object, &records);

    // The two unreadable records: in the DLQ with where they came from and why.
    let dead = consume(&dlq, 1, 2, TIMEOUT);
    let by_key: BTreeMap<String, &rdkafka::message::OwnedMessage> = dead
        .iter()
        .map(|m| (String::from_utf8_lossy(rdkafka::Message::key(m).unwrap_or_default()).to_string(), m))
        .collect();
    for (key, offset, words) in [
        ("plain-json", "3", "unknown magic byte 123"),
        ("unknown-id", "4", "schema id 999 is not in the Schema Registry"),
    ] {
        let m = by_key.get(key).unwrap_or_else(|| panic!("{key} is not in the DLQ: {:?}", by_key.keys()));
        assert_eq!(header(m, "__connect.errors.stage").as_deref(), Some("VALUE_CONVERTER"));
        assert_eq!(header(m, "__connect.errors.offset").as_deref(), Some(offset));
        let message = header(m, "__connect.errors.exception.message").unwrap_or_default();
        assert!(message.contains(words), "{key}: {message:?} should say {words:?}");
        let at = format!("topic {topic} partition 0 offset {offset}");
        assert!(message.contains(&at), "{key}: {message:?} should say {at:?}");
    }
    // The converter authenticated, fetched schema 1 once for the three
    // records (cached by id), and looked its version up under the
    // TopicNameStrategy subject, as Confluent's deserializer does.
    let requests = registry.requests();
    assert!(requests.iter().all(|(_, _, status)| *status != 401), "{requests:?}");
    let count = |method: &str, path: &str| requests.iter().filter(|(m, p, _)| m == method && p == path).count();
    assert_eq!(count("GET", "/schemas/ids/1"), 1, "{requests:?}");
    assert_eq!(count("POST", &format!("/subjects/{topic}-value")), 1, "{requests:?}");
}

/// A registry that does not answer is no fault of the records: the task
/// fails (naming the registry and the record) and none goes to the DLQ;
/// once the registry is back, a task restart delivers them all.
#[test]
fn a_schema_registry_outage_fails_the_task_and_sends_nothing_to_the_dlq() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let s3 = Bucket::new();
    let topic = unique("avro-outage");
    let dir = unique("avro-outage-dir");
    let name = unique("avro-outage-sink");
    create_topic(&topic, 1);
    let records = python_records(&registry, &topic);
    let end = produce_records(&topic, &records);
    registry.set_unavailable(true);

    // No automatic restarts, so the failure stays visible.
    let worker = WorkerProcess::start(&unique("avro-outage-cluster"), &["--task-restart-backoff-ms", "0"], &[]);
    let mut config = s3_avro_config(&topic, &dir, &registry);
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(unique("avro-outage-dlq"));
    // A bad registry setting is a 400 naming the key.
    let mut bad = config.clone();
    bad["value.converter.schema.registry.url"] = json!("registry:8081");
    let body = json!({ "name": name, "config": bad }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 400, "{reply}");
    assert!(reply["message"].as_str().unwrap_or_default().contains("value.converter.schema.registry.url"), "{reply}");
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 201, "creating {name}: {reply}");
    let status = worker.wait_tasks_state(&name, 1, "FAILED", TIMEOUT);
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default().to_string();
    assert!(trace.contains("is unavailable") && trace.contains("HTTP 503"), "{trace}");
    assert!(trace.contains(&format!("topic {topic} partition 0 offset 0")), "{trace}");
    assert_eq!(committed_offset(&format!("connect-{name}"), &topic, 0), None, "nothing committed");

    registry.set_unavailable(false);
    let (code, reply) = worker.request("POST", &format!("/connectors/{name}/tasks/0/restart"), None);
    assert!(code == 204 || code == 202, "restarting the task: HTTP {code} {reply}");
    let group = format!("connect-{name}");
    wait_until("every record delivered after the registry came back", TIMEOUT, || {
        (committed_offset(&group, &topic, 0) == Some(end)).then_some(())
    });
    // All three in S3 means none went to the DLQ.
    let object = format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json");
    assert_eq!(s3.keys(&dir), vec![object.clone()]);
    assert_as_kafka_connect_writes(&s3, &object, &records);
}

/// Confluent's JsonSchemaConverter: the payload after the wire format's
/// header reaches the sink as the JSON it is; a record whose id names an
/// Avro schema is a bad record.
#[test]
fn json_schema_records_reach_the_s3_sink_as_their_json() {
    let registry = SchemaRegistry::start(None);
    let s3 = Bucket::new();
    let topic = unique("jsonschema");
    let dir = unique("jsonschema-dir");
    let name = unique("jsonschema-sink");
    let dlq = unique("jsonschema-dlq");
    create_topic(&topic, 1);
    let schema = json!({"type": "object", "title": "shop.Item", "properties": {
        "sku": {"type": "string"}, "qty": {"type": "integer"}, "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["sku"]});
    let id = registry.register(&format!("{topic}-value"), "JSON", &schema.to_string());
    let avro_id = registry.register("other-value", "AVRO", r#"{"type":"record","name":"X","fields":[]}"#);
    let payloads = [
        json!({"sku": "a-1", "qty": 2, "price": 9.5, "tags": ["x"]}),
        json!({"sku": "b-2", "qty": -1, "price": 0.1, "tags": []}),
        json!({"sku": "c-3"}),
    ];
    let wire = |id: u32, v: &Value| [&[0u8][..], &id.to_be_bytes(), v.to_string().as_bytes()].concat();
    let mut values: Vec<Vec<u8>> = payloads.iter().map(|p| wire(id, p)).collect();
    values.push(wire(avro_id, &json!({})));
    let raw: Vec<RawRecord<'_>> = values.iter().map(|v| (Some(&b"k"[..]), Some(&v[..]))).collect();
    let end = produce_bytes_at(&topic, 0, &raw, None).last().map_or(0, |o| o + 1);

    let worker = WorkerProcess::start(&unique("jsonschema-cluster"), &[], &[]);
    let mut config = s3_avro_config(&topic, &dir, &registry);
    config["value.converter"] = json!("io.confluent.connect.json.JsonSchemaConverter");
    config["value.converter.basic.auth.credentials.source"] = json!("URL");
    config["value.converter.basic.auth.user.info"] = json!("");
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(dlq);
    config["errors.deadletterqueue.context.headers.enable"] = json!("true");
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 201, "creating {name}: {reply}");
    let group = format!("connect-{name}");
    wait_until("every record handled", TIMEOUT, || (committed_offset(&group, &topic, 0) == Some(end)).then_some(()));
    let object = format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json");
    let lines: Vec<Value> = s3.text(&object).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(lines, payloads);
    let dead = consume(&dlq, 1, 1, TIMEOUT);
    let message = header(&dead[0], "__connect.errors.exception.message").unwrap_or_default();
    assert!(message.contains(&format!("schema id {avro_id} is a AVRO schema")), "{message}");
    assert!(message.contains(&format!("topic {topic} partition 0 offset 3")), "{message}");
}
