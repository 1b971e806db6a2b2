//! Single message transforms and converters through a real worker and
//! broker: what the sink writes changes, records a transform drops are still
//! committed, bad records (a missing required field, invalid JSON) reach the
//! DLQ with their stage, a bad transform config is refused naming its key,
//! and a source's records are routed and wrapped in a JSON envelope.

use std::{fs, time::Duration};

use rdkafka::Message;
use serde_json::{json, Value};
use sluice_tests::{committed_offset, consume, create_topic, header, produce, unique, wait_until, WorkerProcess};

/// The example file sink's lines: (topic, offset, value).
fn sink_lines(path: &std::path::Path) -> Vec<(String, i64, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(5, '\t').collect();
            Some((fields.first()?.to_string(), fields.get(2)?.parse().ok()?, fields.get(4)?.to_string()))
        })
        .collect()
}

fn metric(worker: &WorkerProcess, family: &str, connector: &str) -> Option<f64> {
    let text = ureq::get(&format!("{}/metrics", worker.url)).call().ok()?.body_mut().read_to_string().ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&format!("connector=\"{connector}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn routing_inserting_and_filtering_change_what_the_sink_writes_and_dropped_records_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.txt");
    let base = unique("smt");
    let topic = format!("{base}-in");
    create_topic(&topic, 1);
    // Tombstones at offsets 3 and 7 and at the end: the commit can only
    // reach the end of the topic if dropped records count as settled.
    let tombstones = [3i64, 7, 10, 11];
    let values: Vec<Option<String>> =
        (0..12).map(|i| (!tombstones.contains(&i)).then(|| json!({"id": i}).to_string())).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), v.as_deref())).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let name = unique("smt-sink");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink",
        "topics": topic,
        "file": file.to_string_lossy(),
        "offset.flush.interval.ms": "200",
        "transforms": "dropTombstones,route,insert",
        "transforms.dropTombstones.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.dropTombstones.predicate": "isTombstone",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "(.*)-in",
        "transforms.route.replacement": "$1-out",
        "transforms.insert.type": "InsertField$Value",
        "transforms.insert.topic.field": "routed_to",
        "transforms.insert.offset.field": "source_offset",
        "transforms.insert.static.field": "env",
        "transforms.insert.static.value": "test",
        "predicates": "isTombstone",
        "predicates.isTombstone.type": "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let group = format!("connect-{name}");
    wait_until("the group to commit past the dropped tail of the topic", Duration::from_secs(90), || {
        (committed_offset(&group, &topic, 0) == Some(12)).then_some(())
    });
    let lines = sink_lines(&file);
    let offsets: Vec<i64> = lines.iter().map(|(_, o, _)| *o).collect();
    assert_eq!(offsets, [0, 1, 2, 4, 5, 6, 8, 9], "every record but the tombstones, once, in order");
    let routed = format!("{base}-out");
    for (t, offset, value) in &lines {
        assert_eq!(t, &routed, "the sink sees the routed topic");
        let v: Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(v, json!({"id": offset, "routed_to": routed, "source_offset": offset, "env": "test"}));
    }
    wait_until("the filtered-records counter to read 4", Duration::from_secs(10), || {
        (metric(&w, "sluice_records_filtered_total", &name) == Some(4.0)).then_some(())
    });
}

#[test]
fn require_fields_and_invalid_json_send_bad_records_to_the_dlq_with_their_stage() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.txt");
    let topic = unique("require-in");
    let dlq = unique("require-dlq");
    create_topic(&topic, 1);
    let values = [
        r#"{"id": 0, "sku": "a"}"#,
        r#"{"id": 1}"#,
        r#"{"id": 2, "sku": "b"}"#,
        r#"{"id": 3, "sku": null}"#,
        "not json",
        r#"{"id": 5, "sku": "c"}"#,
    ];
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), Some(*v))).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let name = unique("require-sink");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink",
        "topics": topic,
        "file": file.to_string_lossy(),
        "offset.flush.interval.ms": "200",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "req",
        "transforms.req.type": "RequireFields",
        "transforms.req.fields": "id,sku",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let group = format!("connect-{name}");
    wait_until("the group to commit the end of the topic", Duration::from_secs(90), || {
        (committed_offset(&group, &topic, 0) == Some(6)).then_some(())
    });
    let offsets: Vec<i64> = sink_lines(&file).iter().map(|(_, o, _)| *o).collect();
    assert_eq!(offsets, [0, 2, 5], "the good records arrive, once");

    let dead = consume(&dlq, 1, 3, Duration::from_secs(30));
    let by_offset = |o: &str| {
        dead.iter()
            .find(|m| header(m, "__connect.errors.offset").as_deref() == Some(o))
            .unwrap_or_else(|| panic!("offset {o} is not in the DLQ"))
    };
    for (offset, missing) in [("1", "\"sku\""), ("3", "\"sku\"")] {
        let m = by_offset(offset);
        assert_eq!(header(m, "__connect.errors.stage").as_deref(), Some("TRANSFORMATION"));
        assert_eq!(header(m, "__connect.errors.topic").as_deref(), Some(topic.as_str()));
        assert_eq!(header(m, "__connect.errors.partition").as_deref(), Some("0"));
        assert_eq!(header(m, "__connect.errors.connector.name").as_deref(), Some(name.as_str()));
        assert_eq!(header(m, "__connect.errors.exception.class.name").as_deref(), Some("BadRecord"));
        let message = header(m, "__connect.errors.exception.message").unwrap();
        assert!(message.contains(missing) && message.contains("\"req\""), "{message}");
        assert!(message.contains(&format!("offset {offset}")), "{message}");
    }
    assert_eq!(by_offset("1").payload(), Some(values[1].as_bytes()), "the DLQ keeps the original value");
    let invalid = by_offset("4");
    assert_eq!(header(invalid, "__connect.errors.stage").as_deref(), Some("VALUE_CONVERTER"));
    assert!(header(invalid, "__connect.errors.exception.message").unwrap().contains("not JSON"));
    wait_until("the DLQ counter to read 3", Duration::from_secs(10), || {
        (metric(&w, "sluice_records_dlq_total", &name) == Some(3.0)).then_some(())
    });
}

#[test]
fn a_bad_transform_config_is_refused_naming_its_key() {
    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let config = |extra: Value| {
        let mut c = json!({"connector.class": "example-file-sink", "topics": "t", "file": "/tmp/never-written.txt"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    };
    let cases = [
        (
            json!({"transforms": "route", "transforms.route.type": "RegexRouter",
                   "transforms.route.regex": "(unclosed", "transforms.route.replacement": "x"}),
            "transforms.route.regex",
        ),
        (json!({"transforms": "x", "transforms.x.type": "org.example.Nope"}), "transforms.x.type"),
        (json!({"transforms": "m", "transforms.m.type": "MaskField$Value"}), "transforms.m.fields"),
        (
            json!({"transforms": "f", "transforms.f.type": "Filter", "transforms.f.predicate": "nope"}),
            "transforms.f.predicate",
        ),
        (
            json!({"value.converter": "json", "value.converter.schemas.enable": "maybe"}),
            "value.converter.schemas.enable",
        ),
    ];
    for (extra, key) in cases {
        let body = json!({"name": unique("bad-smt"), "config": config(extra.clone())});
        let (code, answer) = w.request("POST", "/connectors", Some(&body.to_string()));
        assert_eq!(code, 400, "{extra} → {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains(key), "{key} not named in {answer}");

        let (code, validated) =
            w.request("PUT", "/connector-plugins/example-file-sink/config/validate", Some(&config(extra).to_string()));
        assert_eq!(code, 200, "{validated}");
        assert!(validated["error_count"].as_u64().unwrap_or(0) >= 1, "{validated}");
        let named = validated["configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["value"]["name"] == key && !c["value"]["errors"].as_array().unwrap().is_empty());
        assert!(named, "{key} has no error in {validated}");
    }
    let (code, _) = w.get("/connectors");
    assert_eq!(code, 200);
}

#[test]
fn a_source_routes_its_records_and_wraps_them_in_a_json_envelope() {
    let base = unique("counted");
    let name = unique("counter-smt");
    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source",
        "topic": format!("{base}-raw"),
        "counter.max": "20",
        "value.converter": "json",
        "transforms": "route",
        "transforms.route.type": "RegexRouter",
        "transforms.route.regex": "(.*)-raw",
        "transforms.route.replacement": "$1-enveloped",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let records = consume(&format!("{base}-enveloped"), 1, 20, Duration::from_secs(60));
    let payloads: Vec<i64> = records
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(v["schema"], json!({"type": "int64", "optional": false}), "{v}");
            assert_eq!(m.key(), Some(v["payload"].to_string().as_bytes()), "the key is passed through");
            v["payload"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(payloads, (0..20).collect::<Vec<i64>>());
}

#[test]
fn a_json_envelope_is_unwrapped_for_the_sink_and_a_record_without_one_goes_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.txt");
    let topic = unique("envelope-in");
    let dlq = unique("envelope-dlq");
    create_topic(&topic, 1);
    let values = [
        r#"{"schema": {"type": "struct", "fields": [{"field": "id", "type": "int64"}]}, "payload": {"id": 0}}"#,
        r#"{"id": 1}"#,
        r#"{"schema": null, "payload": {"id": 2}}"#,
    ];
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), Some(*v))).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let name = unique("envelope-sink");
    // JsonConverter with schemas.enable left at Kafka Connect's default (true).
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink",
        "topics": topic,
        "file": file.to_string_lossy(),
        "offset.flush.interval.ms": "200",
        "value.converter": "json",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let group = format!("connect-{name}");
    wait_until("the group to commit the end of the topic", Duration::from_secs(90), || {
        (committed_offset(&group, &topic, 0) == Some(3)).then_some(())
    });
    let lines: Vec<(i64, Value)> =
        sink_lines(&file).into_iter().map(|(_, o, v)| (o, serde_json::from_str(&v).unwrap())).collect();
    assert_eq!(lines, [(0, json!({"id": 0})), (2, json!({"id": 2}))], "the sink gets the payloads");
    let dead = consume(&dlq, 1, 1, Duration::from_secs(30));
    assert_eq!(header(&dead[0], "__connect.errors.offset").as_deref(), Some("1"));
    assert_eq!(header(&dead[0], "__connect.errors.stage").as_deref(), Some("VALUE_CONVERTER"));
    let message = header(&dead[0], "__connect.errors.exception.message").unwrap();
    assert!(message.contains("value.converter.schemas.enable=false"), "{message}");
}

#[test]
fn a_source_record_a_filter_drops_still_has_its_offset_committed() {
    let topic = unique("filtered-source");
    let name = unique("counter-filter");
    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    // Every record goes to a topic the predicate matches: the filter drops all.
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source",
        "topic": topic,
        "counter.max": "20",
        "transforms": "dropAll",
        "transforms.dropAll.type": "Filter",
        "transforms.dropAll.predicate": "toThisTopic",
        "predicates": "toThisTopic",
        "predicates.toThisTopic.type": "TopicNameMatches",
        "predicates.toThisTopic.pattern": "filtered-source-.*",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    wait_until("the last dropped record's source offset to be committed", Duration::from_secs(60), || {
        let (code, offsets) = w.get(&format!("/connectors/{name}/offsets"));
        (code == 200 && offsets["offsets"][0]["offset"]["n"] == 19).then_some(())
    });
    assert_eq!(metric(&w, "sluice_records_filtered_total", &name), Some(20.0));
    assert_eq!(metric(&w, "sluice_records_written_total", &name).unwrap_or(0.0), 0.0, "nothing was produced");
}

/// The transforms of issue 17 in one chain on a source's records (Kafka's
/// `HoistField`, `Cast`, `HeaderFrom`, `Flatten`, `InsertField`,
/// `TimestampConverter`, `InsertHeader`, `DropHeaders`, `SetSchemaMetadata`,
/// with KIP-821 nested paths): what reaches Kafka is the rewritten value
/// with the headers the chain added, and none it dropped.
#[test]
fn a_chain_of_the_new_transforms_rewrites_values_and_headers_of_a_source() {
    let base = unique("chained");
    let name = unique("counter-chain");
    let w = WorkerProcess::start(&unique("transforms"), &[], &[]);
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source",
        "topic": base,
        "counter.max": "5",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "hoist,wrap,cast,copy,flatten,day,parse,tag,tmp,untmp,meta",
        "transforms.hoist.type": "org.apache.kafka.connect.transforms.HoistField$Value",
        "transforms.hoist.field": "n",
        "transforms.wrap.type": "HoistField$Value",
        "transforms.wrap.field": "order",
        "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
        "transforms.cast.spec": "order.n:string",
        "transforms.cast.field.syntax.version": "V2",
        "transforms.copy.type": "org.apache.kafka.connect.transforms.HeaderFrom$Value",
        "transforms.copy.fields": "order.n",
        "transforms.copy.headers": "number",
        "transforms.copy.operation": "copy",
        "transforms.copy.field.syntax.version": "V2",
        "transforms.flatten.type": "org.apache.kafka.connect.transforms.Flatten$Value",
        "transforms.flatten.delimiter": "_",
        "transforms.day.type": "InsertField$Value",
        "transforms.day.static.field": "day",
        "transforms.day.static.value": "2024-02-29",
        "transforms.parse.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
        "transforms.parse.field": "day",
        "transforms.parse.format": "yyyy-MM-dd",
        "transforms.parse.target.type": "unix",
        "transforms.parse.unix.precision": "seconds",
        "transforms.tag.type": "org.apache.kafka.connect.transforms.InsertHeader",
        "transforms.tag.header": "origin",
        "transforms.tag.value.literal": "sluice",
        "transforms.tmp.type": "InsertHeader",
        "transforms.tmp.header": "scratch",
        "transforms.tmp.value.literal": "x",
        "transforms.untmp.type": "org.apache.kafka.connect.transforms.DropHeaders",
        "transforms.untmp.headers": "scratch",
        "transforms.meta.type": "org.apache.kafka.connect.transforms.SetSchemaMetadata$Value",
        "transforms.meta.schema.name": "com.example.Counted",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let records = consume(&base, 1, 5, Duration::from_secs(60));
    for (n, m) in records.iter().enumerate() {
        let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        // 2024-02-29T00:00:00Z in seconds.
        assert_eq!(value, json!({"order_n": n.to_string(), "day": 1_709_164_800}), "record {n}");
        assert_eq!(header(m, "number"), Some(n.to_string()), "record {n}");
        assert_eq!(header(m, "origin").as_deref(), Some("sluice"));
        assert_eq!(header(m, "scratch"), None, "DropHeaders removed it");
    }

    // A bad option of a new transform is a 400 naming its key.
    let mut bad = body["config"].clone();
    bad["transforms.parse.target.type"] = json!("datetime");
    let (code, answer) =
        w.request("PUT", &format!("/connectors/{}/config", unique("bad-chain")), Some(&bad.to_string()));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("transforms.parse.target.type"), "{answer}");
}
