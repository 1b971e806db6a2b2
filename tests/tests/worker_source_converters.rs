//! Confluent's AvroConverter and JsonSchemaConverter on a *source*, through
//! a real worker: example-counter-source (its numbers shaped into structs
//! by HoistField and InsertField) → sluice (value.converter=AvroConverter
//! against the Schema Registry fake) → Tansu, read back by confluent-kafka's
//! Python AvroDeserializer (a third-party reader) and by a sink in the same
//! worker with the sink-side converter.
//!
//! What a team moving from Kafka Connect relies on: a source's records are
//! in Confluent's wire format, their schema registered under the subject
//! Confluent's TopicNameStrategy names (`<topic>-key` / `<topic>-value`), in
//! the Avro form Confluent's `AvroData.fromConnectSchema` gives a schemaless
//! JSON value's inferred schema; a registry outage loses nothing and sends
//! nothing to the DLQ.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use rdkafka::Message;
use serde_json::{json, Value};
use sluice_tests::{
    consume, create_topic, s3::Bucket, schema_registry::SchemaRegistry, service_env, unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(180);
const USER_INFO: &str = "sluice:registry-secret";
const COUNT: usize = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn hex(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(b.iter().map(|x| format!("{x:02x}")).collect()))
}

/// The records decoded by confluent-kafka's AvroDeserializer
/// (`tests/golden/avro/deserialize.py`): `{"key", "value"}` each (keys
/// only when `keys`: else they are not Avro).
fn python_decode(
    registry: &SchemaRegistry,
    topic: &str,
    messages: &[rdkafka::message::OwnedMessage],
    keys: bool,
) -> Vec<Value> {
    python_decode_as("avro", registry, topic, messages, keys)
}

/// As [`python_decode`], with `format` `avro` or `json` (JSONDeserializer,
/// which validates each payload against the writer's JSON Schema).
fn python_decode_as(
    format: &str,
    registry: &SchemaRegistry,
    topic: &str,
    messages: &[rdkafka::message::OwnedMessage],
    keys: bool,
) -> Vec<Value> {
    let input: String = messages
        .iter()
        .map(|m| {
            let key = if keys { hex(m.key()) } else { Value::Null };
            format!("{}\n", json!({"key": key, "value": hex(m.payload())}))
        })
        .collect();
    let mut child = Command::new(repo().join("dev/confluent-python"))
        .arg("run")
        .arg(repo().join("tests/golden/avro/deserialize.py"))
        .args(["--registry", &registry.url, "--user-info", USER_INFO, "--topic", topic, "--format", format])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dev/confluent-python");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("deserialize.py");
    assert!(out.status.success(), "deserialize.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

/// The counter's numbers as `{"order": {"n": N}, "source": "counter"}`.
fn counter_config(topic: &str, registry: &SchemaRegistry, class: &str) -> Value {
    json!({
        "connector.class": "example-counter-source",
        "topic": topic,
        "counter.max": COUNT.to_string(),
        "counter.interval.ms": "0",
        "transforms": "hoist,wrap,tag",
        "transforms.hoist.type": "org.apache.kafka.connect.transforms.HoistField$Value",
        "transforms.hoist.field": "n",
        "transforms.wrap.type": "HoistField$Value",
        "transforms.wrap.field": "order",
        "transforms.tag.type": "InsertField$Value",
        "transforms.tag.static.field": "source",
        "transforms.tag.static.value": "counter",
        "key.converter": class,
        "key.converter.schema.registry.url": registry.url,
        "key.converter.basic.auth.credentials.source": "USER_INFO",
        "key.converter.basic.auth.user.info": USER_INFO,
        "value.converter": class,
        "value.converter.schema.registry.url": registry.url,
        "value.converter.basic.auth.credentials.source": "USER_INFO",
        "value.converter.basic.auth.user.info": USER_INFO,
    })
}

fn expected_values() -> Vec<Value> {
    (0..COUNT).map(|n| json!({"order": {"n": n}, "source": "counter"})).collect()
}

/// An s3-sink reading `topic` with the sink side of `class`.
fn s3_config(topic: &str, dir: &str, registry: &SchemaRegistry, class: &str) -> Value {
    json!({
        "connector.class": "io.confluent.connect.s3.S3SinkConnector",
        "topics": topic,
        "s3.bucket.name": service_env("S3_BUCKET"),
        "s3.region": service_env("S3_REGION"),
        "store.url": service_env("S3_ENDPOINT"),
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": service_env("S3_ACCESS_KEY"),
        "aws.secret.access.key": service_env("S3_SECRET_KEY"),
        "topics.dir": dir,
        "format.class": "io.confluent.connect.s3.format.json.JsonFormat",
        "flush.size": COUNT.to_string(),
        "offset.flush.interval.ms": "500",
        "key.converter": "bytes",
        "value.converter": class,
        "value.converter.schema.registry.url": registry.url,
        "value.converter.basic.auth.credentials.source": "USER_INFO",
        "value.converter.basic.auth.user.info": USER_INFO,
    })
}

fn create(worker: &WorkerProcess, name: &str, config: Value) {
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 201, "creating {name}: {reply}\n{}", worker.log_text());
}

/// The sink's one object, its lines as JSON.
fn s3_lines(s3: &Bucket, dir: &str, topic: &str) -> Vec<Value> {
    let object = format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json");
    wait_until("the sink's object in S3", TIMEOUT, || s3.keys(dir).contains(&object).then_some(()));
    s3.text(&object).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn a_source_writes_avro_that_confluents_deserializer_reads_and_a_sink_reads_back() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let s3 = Bucket::new();
    let topic = unique("avro-source");
    let dir = unique("avro-source-dir");
    create_topic(&topic, 1);
    let worker = WorkerProcess::start(&unique("avro-source-cluster"), &[], &[]);
    let avro = "io.confluent.connect.avro.AvroConverter";
    create(&worker, &unique("avro-counter"), counter_config(&topic, &registry, avro));

    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    for m in &messages {
        let value = m.payload().expect("a value");
        assert_eq!(value[0], 0, "magic byte 0");
    }
    // A third-party reader gets the source's values and keys back.
    let decoded = python_decode(&registry, &topic, &messages, true);
    let values: Vec<Value> = decoded.iter().map(|d| d["value"].clone()).collect();
    let keys: Vec<Value> = decoded.iter().map(|d| d["key"].clone()).collect();
    assert_eq!(values, expected_values());
    assert_eq!(keys, (0..COUNT).map(|n| json!(n)).collect::<Vec<_>>(), "the counter's keys, JSON numbers: longs");

    // Registered under TopicNameStrategy's subjects, in AvroData's form of
    // the inferred schema, once per schema (the id is cached).
    let subjects = registry_get(&registry, "/subjects");
    let subjects: BTreeSet<String> =
        subjects.as_array().expect("a list").iter().filter_map(|s| s.as_str().map(str::to_string)).collect();
    assert!(subjects.contains(&format!("{topic}-value")) && subjects.contains(&format!("{topic}-key")), "{subjects:?}");
    let latest = registry_get(&registry, &format!("/subjects/{topic}-value/versions/latest"));
    let schema: Value = serde_json::from_str(latest["schema"].as_str().expect("schema text")).expect("JSON");
    assert_eq!(
        schema,
        json!({"type": "record", "name": "ConnectDefault", "namespace": "io.confluent.connect.avro", "fields": [
            {"name": "order", "type": ["null", {"type": "record", "name": "ConnectDefault2",
                "namespace": "io.confluent.connect.avro",
                "fields": [{"name": "n", "type": ["null", "long"], "default": null}]}], "default": null},
            {"name": "source", "type": ["null", "string"], "default": null}]})
    );
    let key_latest = registry_get(&registry, &format!("/subjects/{topic}-key/versions/latest"));
    assert_eq!(key_latest["schema"], "\"long\"");
    let registrations = registry
        .requests()
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == &format!("/subjects/{topic}-value/versions"))
        .count();
    assert_eq!(registrations, 1, "{:?}", registry.requests());

    // Round trip: a sink in the same worker reads them with the sink side.
    create(&worker, &unique("avro-back"), s3_config(&topic, &dir, &registry, avro));
    assert_eq!(s3_lines(&s3, &dir, &topic), expected_values());
}

/// JSON Schema: the payload after the header is the value's JSON (every
/// field of the inferred struct), the schema a JSON Schema document that
/// confluent-kafka's JSONDeserializer validates the payloads against.
#[test]
fn a_source_writes_json_schema_records_a_sink_reads_back() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let s3 = Bucket::new();
    let topic = unique("jsonschema-source");
    let dir = unique("jsonschema-source-dir");
    create_topic(&topic, 1);
    let worker = WorkerProcess::start(&unique("jsonschema-source-cluster"), &[], &[]);
    let class = "io.confluent.connect.json.JsonSchemaConverter";
    create(&worker, &unique("jsonschema-counter"), counter_config(&topic, &registry, class));

    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    let latest = registry_get(&registry, &format!("/subjects/{topic}-value/versions/latest"));
    assert_eq!(latest["schemaType"], "JSON");
    let id = latest["id"].as_u64().expect("an id") as u32;
    let values: Vec<Value> = messages
        .iter()
        .map(|m| {
            let bytes = m.payload().expect("a value");
            assert_eq!(bytes[..5], [[0u8].as_slice(), &id.to_be_bytes()].concat()[..], "magic byte, schema id");
            serde_json::from_slice(&bytes[5..]).expect("JSON after the header")
        })
        .collect();
    assert_eq!(values, expected_values());
    // A third-party reader validates each payload against the registered
    // JSON Schema and decodes keys and values.
    let decoded = python_decode_as("json", &registry, &topic, &messages, true);
    assert_eq!(decoded.iter().map(|d| d["value"].clone()).collect::<Vec<_>>(), expected_values());
    assert_eq!(
        decoded.iter().map(|d| d["key"].clone()).collect::<Vec<_>>(),
        (0..COUNT).map(|n| json!(n)).collect::<Vec<_>>()
    );
    let schema: Value = serde_json::from_str(latest["schema"].as_str().expect("schema text")).expect("JSON");
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["properties"]["source"],
        json!({"oneOf": [{"type": "null"}, {"type": "string"}], "connect.index": 1})
    );

    create(&worker, &unique("jsonschema-back"), s3_config(&topic, &dir, &registry, class));
    assert_eq!(s3_lines(&s3, &dir, &topic), expected_values());
}

/// A registry that does not answer is not the records' fault: the task
/// fails naming the registry, nothing is written (to the topic or the DLQ)
/// and no source offset is stored; restarted once the registry is back,
/// the source resumes and every number arrives.
#[test]
fn a_registry_outage_fails_the_source_task_and_loses_nothing() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let topic = unique("avro-source-outage");
    let dlq = unique("avro-source-outage-dlq");
    let name = unique("avro-outage-counter");
    create_topic(&topic, 1);
    registry.set_unavailable(true);
    let worker = WorkerProcess::start(&unique("avro-source-outage-cluster"), &["--task-restart-backoff-ms", "0"], &[]);
    let mut config = counter_config(&topic, &registry, "avro");
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(dlq);
    create(&worker, &name, config);
    let status = worker.wait_tasks_state(&name, 1, "FAILED", TIMEOUT);
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default().to_string();
    assert!(trace.contains("is unavailable") && trace.contains("HTTP 503"), "{trace}");
    assert!(trace.contains("key.converter") && trace.contains("source partition"), "{trace}");
    let (_, offsets) = worker.get(&format!("/connectors/{name}/offsets"));
    assert_eq!(offsets["offsets"], json!([]), "no source offset stored: {offsets}");

    registry.set_unavailable(false);
    let (code, reply) = worker.request("POST", &format!("/connectors/{name}/tasks/0/restart"), None);
    assert!(code == 204 || code == 202, "restarting the task: HTTP {code} {reply}");
    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    let decoded = python_decode(&registry, &topic, &messages, true);
    let values: Vec<Value> = decoded.iter().map(|d| d["value"].clone()).collect();
    assert_eq!(values, expected_values(), "every number, once, in order");
}

/// A GET to the Schema Registry fake, with its credentials.
fn registry_get(registry: &SchemaRegistry, path: &str) -> Value {
    let mut response = ureq::get(&format!("{}{path}", registry.url))
        .header("Authorization", format!("Basic {}", base64_encode(USER_INFO)))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} from the registry: {e}"));
    serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("JSON")
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `auto.register.schemas=false` with `use.latest.version=true`: records are
/// written with the subject's latest schema (a field the source lacks takes
/// its default); with a latest schema the values do not fit, each record is
/// a bad record naming the field, routed to the DLQ by errors.tolerance=all.
/// Subjects follow TopicRecordNameStrategy.
#[test]
fn use_latest_version_writes_with_the_registered_schema_or_names_the_field_that_does_not_fit() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let topic = unique("avro-latest");
    let dlq = unique("avro-latest-dlq");
    create_topic(&topic, 1);
    let record = "io.confluent.connect.avro.ConnectDefault";
    let subject = format!("{topic}-{record}");
    let latest = json!({"type": "record", "name": "ConnectDefault", "namespace": "io.confluent.connect.avro",
        "fields": [
            {"name": "order", "type": ["null", {"type": "record", "name": "Order", "fields": [
                {"name": "n", "type": "long"}]}], "default": null},
            {"name": "source", "type": "string"},
            {"name": "region", "type": "string", "default": "eu"}]});
    let id = registry.register(&subject, "AVRO", &latest.to_string());
    let worker = WorkerProcess::start(&unique("avro-latest-cluster"), &[], &[]);
    let mut config = counter_config(&topic, &registry, "avro");
    config["key.converter"] = json!("json");
    config["key.converter.schemas.enable"] = json!("false");
    config["value.converter.auto.register.schemas"] = json!("false");
    config["value.converter.use.latest.version"] = json!("true");
    config["value.converter.value.subject.name.strategy"] = json!("TopicRecordNameStrategy");
    create(&worker, &unique("avro-latest-counter"), config.clone());

    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    for m in &messages {
        assert_eq!(m.payload().expect("a value")[..5], [[0u8].as_slice(), &id.to_be_bytes()].concat()[..]);
    }
    let values: Vec<Value> =
        python_decode(&registry, &topic, &messages, false).iter().map(|d| d["value"].clone()).collect();
    let with_default: Vec<Value> = expected_values()
        .into_iter()
        .map(|mut v| {
            v["region"] = json!("eu");
            v
        })
        .collect();
    assert_eq!(values, with_default, "written with the latest schema, the absent field at its default");
    assert!(
        !registry.requests().iter().any(|(m, p, _)| m == "POST" && p.ends_with("/versions")),
        "nothing registered: {:?}",
        registry.requests()
    );

    // A latest schema whose `source` is a long: no record fits it.
    let other = unique("avro-latest-bad");
    create_topic(&other, 1);
    let mut misfit = latest.clone();
    misfit["fields"][1]["type"] = json!("long");
    registry.register(&format!("{other}-{record}"), "AVRO", &misfit.to_string());
    config["topic"] = json!(other);
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(dlq);
    config["errors.deadletterqueue.context.headers.enable"] = json!("true");
    create(&worker, &unique("avro-latest-misfit"), config);
    let dead = consume(&dlq, 1, COUNT, TIMEOUT);
    for m in &dead {
        let message = sluice_tests::header(m, "__connect.errors.exception.message").unwrap_or_default();
        assert!(message.contains("field source: expected a 64-bit integer, got \"counter\""), "{message}");
        assert!(message.contains("source partition") && message.contains(&other), "{message}");
        assert_eq!(sluice_tests::header(m, "__connect.errors.stage").as_deref(), Some("VALUE_CONVERTER"));
    }
}

/// SetSchemaMetadata names (and versions) a source's inferred schema when
/// no transform changes the values: AvroData writes the name and version as
/// `connect.name` / `connect.version`, and the sink side reads them back.
#[test]
fn set_schema_metadata_names_a_sources_avro_schema() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let topic = unique("avro-named");
    create_topic(&topic, 1);
    let worker = WorkerProcess::start(&unique("avro-named-cluster"), &[], &[]);
    let mut config = counter_config(&topic, &registry, "avro");
    config["transforms"] = json!("meta");
    config["transforms.meta.type"] = json!("org.apache.kafka.connect.transforms.SetSchemaMetadata$Value");
    config["transforms.meta.schema.name"] = json!("shop.Count");
    config["transforms.meta.schema.version"] = json!("3");
    create(&worker, &unique("avro-named-counter"), config);

    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    let values: Vec<Value> =
        python_decode(&registry, &topic, &messages, true).iter().map(|d| d["value"].clone()).collect();
    assert_eq!(values, (0..COUNT).map(|n| json!(n)).collect::<Vec<_>>());
    let latest = registry_get(&registry, &format!("/subjects/{topic}-value/versions/latest"));
    let schema: Value = serde_json::from_str(latest["schema"].as_str().expect("schema text")).expect("JSON");
    assert_eq!(schema, json!({"type": "long", "connect.name": "shop.Count", "connect.version": 3}));
}

/// `auto.register.schemas=false` alone: the schema is looked up under the
/// subject (`POST /subjects/{subject}`) and its id written; where the
/// subject lacks it, each record is a bad record saying what to set.
#[test]
fn without_auto_register_the_schema_is_looked_up_or_the_record_is_refused() {
    let registry = SchemaRegistry::start(Some(USER_INFO));
    let topic = unique("avro-lookup");
    let missing = unique("avro-lookup-missing");
    let dlq = unique("avro-lookup-dlq");
    create_topic(&topic, 1);
    create_topic(&missing, 1);
    // The counter's values are JSON numbers: AvroData's schema for int64.
    let id = registry.register(&format!("{topic}-value"), "AVRO", "\"long\"");
    let worker = WorkerProcess::start(&unique("avro-lookup-cluster"), &[], &[]);
    let mut config = counter_config(&topic, &registry, "avro");
    config["transforms"] = json!("");
    config["key.converter"] = json!("string");
    config["value.converter.auto.register.schemas"] = json!("false");
    create(&worker, &unique("avro-lookup-counter"), config.clone());
    let messages = consume(&topic, 1, COUNT, TIMEOUT);
    for m in &messages {
        assert_eq!(m.payload().expect("a value")[..5], [[0u8].as_slice(), &id.to_be_bytes()].concat()[..]);
    }
    let values: Vec<Value> =
        python_decode(&registry, &topic, &messages, false).iter().map(|d| d["value"].clone()).collect();
    assert_eq!(values, (0..COUNT).map(|n| json!(n)).collect::<Vec<_>>());

    config["topic"] = json!(missing);
    config["errors.tolerance"] = json!("all");
    config["errors.deadletterqueue.topic.name"] = json!(dlq);
    config["errors.deadletterqueue.context.headers.enable"] = json!("true");
    create(&worker, &unique("avro-lookup-missing"), config);
    for m in &consume(&dlq, 1, COUNT, TIMEOUT) {
        let message = sluice_tests::header(m, "__connect.errors.exception.message").unwrap_or_default();
        assert!(message.contains(&format!("not registered under subject {missing}-value")), "{message}");
        assert!(message.contains("value.converter.auto.register.schemas=false"), "{message}");
    }
    assert!(
        !registry.requests().iter().any(|(m, p, _)| m == "POST" && p.ends_with("/versions")),
        "nothing registered: {:?}",
        registry.requests()
    );
}
