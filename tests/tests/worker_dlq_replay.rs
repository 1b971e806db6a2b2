//! `POST /connectors/{name}/dlq/replay` through a real worker and broker:
//! records a sink failed (in `put` and in a transform) go to the DLQ; a
//! replay filtered by stage re-produces only those, to their original topic
//! and partition with their key, value and headers; an unfiltered replay then
//! re-produces only the rest; a third replays nothing. Plus the 400/404 paths.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
    Message, Offset, TopicPartitionList,
};
use serde_json::{json, Value};
use sluice_tests::{consume, create_topic, header, service_env, unique, wait_until, WorkerProcess};

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"));
    c
}

/// Produces (partition, key, value, header `trace`) records and waits for them.
fn produce_with_headers(topic: &str, records: &[(i32, String, String, String)]) {
    let producer: FutureProducer =
        client().set("enable.idempotence", "true").set("acks", "all").create().expect("producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(p, k, v, trace)| {
            let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(trace.as_bytes()) });
            let r = FutureRecord::to(topic).partition(*p).key(k.as_str()).payload(v.as_str()).headers(headers);
            producer.send_result(r).map_err(|(e, _)| e).expect("queue a record")
        })
        .collect();
    for d in deliveries {
        futures::executor::block_on(d).expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// Every record of `partitions` partitions of `topic` from `from` on, read
/// until the broker reports the end of each partition.
fn read_to_end(topic: &str, partitions: i32, from: i64) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client()
        .set("group.id", unique("replay-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(from)).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "{topic} did not reach its end; partitions {open:?} still open");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// (partition, key, value, trace header, every header key) of records.
type Seen = BTreeSet<(i32, String, String, String)>;

fn seen(messages: &[OwnedMessage]) -> Seen {
    messages
        .iter()
        .map(|m| {
            (
                m.partition(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                header(m, "trace").unwrap_or_default(),
            )
        })
        .collect()
}

fn replay(w: &WorkerProcess, name: &str, body: Value) -> Value {
    let (code, answer) = w.request("POST", &format!("/connectors/{name}/dlq/replay"), Some(&body.to_string()));
    assert_eq!(code, 200, "{answer}");
    answer
}

#[test]
fn a_replay_reproduces_dlq_records_to_their_origin_once_and_filters_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("replay-in");
    let dlq = unique("replay-dlq");
    create_topic(&topic, 2);
    // Per partition, offsets 0..15: a record without "name" (offsets 2, 8,
    // 14) fails RequireFields (stage TRANSFORMATION); the flaky sink fails
    // offsets 4 and 9 in put (stage TASK_PUT, every 5th; 14 never gets there).
    const PER_PARTITION: i64 = 15;
    let mut records = Vec::new();
    for p in 0..2 {
        for o in 0..PER_PARTITION {
            let value = if o % 6 == 2 { json!({"id": o}) } else { json!({"id": o, "name": format!("n{o}")}) };
            records.push((p, format!("k-{p}-{o}"), value.to_string(), format!("t-{p}-{o}")));
        }
    }
    produce_with_headers(&topic, &records);
    let expected = |offsets: &[i64]| -> Seen {
        records.iter().filter(|(_, k, _, _)| offsets.iter().any(|o| k.ends_with(&format!("-{o}")))).cloned().collect()
    };
    let transformation = expected(&[2, 8, 14]);
    let put = expected(&[4, 9]);

    let w = WorkerProcess::start(&unique("replay"), &[], &[]);
    let name = unique("replay-sink");
    let body = json!({"name": name, "config": {
        "connector.class": "test-flaky-sink",
        "topics": topic,
        "file": dir.path().join("durable.txt").to_string_lossy(),
        "fail.bad.every": "5",
        "fail.retriable.every": "1000000",
        "transforms": "req",
        "transforms.req.type": "RequireFields",
        "transforms.req.fields": "name",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
        "offset.flush.interval.ms": "200",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let dead = consume(&dlq, 1, 10, Duration::from_secs(90));
    let stages: BTreeMap<String, usize> = dead.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(header(r, "__connect.errors.stage").unwrap_or_default()).or_insert(0) += 1;
        m
    });
    assert_eq!(stages, BTreeMap::from([("TASK_PUT".to_string(), 4), ("TRANSFORMATION".to_string(), 6)]));

    // Stopped, the sink does not consume the replayed records again, so the
    // topic shows exactly what the replays produced.
    let (code, _) = w.request("PUT", &format!("/connectors/{name}/stop"), None);
    assert_eq!(code, 204, "Kafka Connect's stopConnector answers 204");
    wait_until("the sink task to end", Duration::from_secs(60), || {
        w.log_text().lines().any(|l| l.contains(&name) && l.contains("task ended")).then_some(())
    });

    let first = replay(&w, &name, json!({"stage": "TRANSFORMATION", "exception_class": "BadRecord"}));
    assert_eq!(first["replayed"], 6, "{first}");
    assert_eq!(first["skipped_by_filter"], 4, "{first}");
    assert_eq!(first["from"], json!({"0": 0}), "{first}");
    assert_eq!(first["to"], json!({"0": 10}), "{first}");
    let replayed = read_to_end(&topic, 2, PER_PARTITION);
    assert_eq!(seen(&replayed), transformation, "the TRANSFORMATION records, in their original partition");
    assert_eq!(replayed.len(), 6, "each once");
    for m in &replayed {
        use rdkafka::message::Headers;
        let keys: Vec<&str> = m.headers().map(|h| h.iter().map(|h| h.key).collect()).unwrap_or_default();
        assert_eq!(keys, ["trace"], "only the original headers, no __connect.errors.*");
    }

    let second = replay(&w, &name, json!({}));
    assert_eq!(second["replayed"], 4, "{second}");
    assert_eq!(second["skipped_already_replayed"], 6, "{second}");
    let replayed = read_to_end(&topic, 2, PER_PARTITION);
    assert_eq!(replayed.len(), 10, "each DLQ record once in all");
    assert_eq!(seen(&replayed), transformation.union(&put).cloned().collect::<Seen>());

    let third = replay(&w, &name, json!({}));
    assert_eq!(third["replayed"], 0, "{third}");
    assert_eq!(third["from"], json!({"0": 10}), "{third}");
    let again = replay(&w, &name, json!({"stage": "TASK_PUT"}));
    assert_eq!(again["replayed"], 0, "an unfiltered replay covers every filter: {again}");
    assert_eq!(read_to_end(&topic, 2, PER_PARTITION).len(), 10, "nothing was produced twice");
}

#[test]
fn a_replay_of_an_unknown_connector_or_one_without_a_dlq_is_refused() {
    let w = WorkerProcess::start(&unique("replay"), &[], &[]);
    let (code, answer) = w.request("POST", "/connectors/nope/dlq/replay", Some("{}"));
    assert_eq!(code, 404, "{answer}");
    let (_, doc) = w.get("/openapi.json");
    assert!(doc["paths"]["/connectors/{name}/dlq/replay"]["post"].is_object(), "the route is documented: {doc}");

    let name = unique("no-dlq");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink",
        "topics": unique("no-dlq-in"),
        "file": "/dev/null",
        "errors.tolerance": "all",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    let (code, answer) = w.request("POST", &format!("/connectors/{name}/dlq/replay"), None);
    assert_eq!(code, 400, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("errors.deadletterqueue.topic.name"), "{message}");
    assert_eq!(answer["error_code"], 400);

    let (code, answer) =
        w.request("POST", &format!("/connectors/{name}/dlq/replay"), Some(r#"{"stage": "TASK_PUT", "oops": 1}"#));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("oops"), "{answer}");
}

/// A stopped sink whose DLQ holds the 5 odd records of 10 (values `v-1`,
/// `v-3`, …) of a 1-partition topic: (worker, cluster id, connector, topic).
fn stopped_sink_with_five_dead_records(dir: &std::path::Path) -> (WorkerProcess, String, String, String) {
    let topic = unique("replay-max-in");
    let dlq = unique("replay-max-dlq");
    create_topic(&topic, 1);
    let records: Vec<(i32, String, String, String)> =
        (0..10).map(|o| (0, format!("k-{o}"), format!("v-{o}"), format!("t-{o}"))).collect();
    produce_with_headers(&topic, &records);

    let cluster = unique("replay");
    let w = WorkerProcess::start(&cluster, &[], &[]);
    let name = unique("replay-max-sink");
    // Every 2nd record fails in put. One record per batch puts each DLQ
    // record in a batch of its own, so the second run starts at a batch
    // boundary (see dev/tansu/patch.py for what happens inside one).
    let body = json!({"name": name, "config": {
        "connector.class": "test-flaky-sink",
        "topics": topic,
        "file": dir.join("durable.txt").to_string_lossy(),
        "fail.bad.every": "2",
        "fail.retriable.every": "1000000",
        "consumer.max.poll.records": "1",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
        "offset.flush.interval.ms": "200",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    consume(&dlq, 1, 5, Duration::from_secs(90));
    let (code, _) = w.request("PUT", &format!("/connectors/{name}/stop"), None);
    assert_eq!(code, 204, "Kafka Connect's stopConnector answers 204");
    wait_until("the sink task to end", Duration::from_secs(60), || {
        w.log_text().lines().any(|l| l.contains(&name) && l.contains("task ended")).then_some(())
    });
    (w, cluster, name, topic)
}

#[test]
fn max_records_bounds_a_run_and_the_next_run_goes_on_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _, name, topic) = stopped_sink_with_five_dead_records(dir.path());
    let first = replay(&w, &name, json!({"max_records": 2}));
    assert_eq!((&first["replayed"], &first["complete"], &first["to"]), (&json!(2), &json!(false), &json!({"0": 2})));
    let second = replay(&w, &name, json!({}));
    assert_eq!(second["replayed"], 3, "{second}");
    assert_eq!(
        (&second["from"], &second["to"], &second["complete"]),
        (&json!({"0": 2}), &json!({"0": 5}), &json!(true))
    );
    let values: Vec<String> = read_to_end(&topic, 1, 10)
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string())
        .collect();
    assert_eq!(values, ["v-1", "v-3", "v-5", "v-7", "v-9"], "each bad record once, in DLQ order");
}

/// Writes (or, with `None`, tombstones) a replay lease claim in the
/// cluster's offsets topic, as another worker's replay does.
fn write_claim(cluster: &str, connector: &str, claim: &str, value: Option<Value>) {
    let producer: FutureProducer = client().set("acks", "all").create().expect("producer");
    let key = json!(["__sluice.dlq.replay.lease", connector, claim]).to_string();
    let value = value.map(|v| v.to_string());
    let offsets = format!("{cluster}-offsets");
    let mut record = FutureRecord::<str, str>::to(&offsets).key(&key);
    if let Some(v) = &value {
        record = record.payload(v);
    }
    let delivery = producer.send_result(record).map_err(|(e, _)| e).expect("queue a claim");
    futures::executor::block_on(delivery).expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
}

#[test]
fn a_replay_running_on_another_worker_holds_the_connector_until_it_ends_or_its_lease_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let (w, cluster, name, topic) = stopped_sink_with_five_dead_records(dir.path());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // A worker that died mid-replay long ago: its claim lapsed and holds nothing.
    write_claim(&cluster, &name, "dead", Some(json!({"worker": "worker-dead", "until_ms": now_ms - 1000})));
    // A replay running elsewhere right now (a client retried on this worker).
    write_claim(&cluster, &name, "running", Some(json!({"worker": "worker-elsewhere", "until_ms": now_ms + 600_000})));

    let (code, answer) = w.request("POST", &format!("/connectors/{name}/dlq/replay"), Some("{}"));
    assert_eq!(code, 409, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("running on worker worker-elsewhere"), "{message}");
    assert_eq!(read_to_end(&topic, 1, 10).len(), 0, "nothing was replayed");

    // That replay ends (its worker tombstones the claim): this one runs.
    write_claim(&cluster, &name, "running", None);
    let run = replay(&w, &name, json!({}));
    assert_eq!((&run["replayed"], &run["complete"]), (&json!(5), &json!(true)), "{run}");
    // Its own claim is gone too: the next run is not refused.
    let again = replay(&w, &name, json!({}));
    assert_eq!(again["replayed"], 0, "{again}");
    assert_eq!(read_to_end(&topic, 1, 10).len(), 5, "each DLQ record once");
}
