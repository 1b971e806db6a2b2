//! `kill -9` of a worker running hybris-source (jdbc mode) in the middle of
//! a stream, then a restart: every order change reaches Kafka at least once,
//! none is skipped, and the events of one order stay on one partition in the
//! order they happened.
//!
//! The stream is spread over time without sleeping: the orders are written
//! with `modifiedts` in the near future, so the lag window lets them through
//! one after another while the test kills the worker.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use rdkafka::{consumer::BaseConsumer, Message};
use serde_json::{json, Value};
use sluice_tests::{hybris::HybrisDb, reader, unique, WorkerProcess};

const ORDER_TYPE_PK: i64 = 8796093317202;
const ORDERS: i64 = 150;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Every live order version visible now: (code, modifiedTS as the connector writes it).
fn versions(db: &mut HybrisDb) -> BTreeSet<(String, String)> {
    db.order_versions().into_iter().map(|((_, modified), code)| (code, modified)).collect()
}

/// Reads `topic` from the start, accumulating every message.
struct Reader {
    consumer: BaseConsumer,
    /// (partition, offset) → (code, modifiedTS).
    messages: BTreeMap<(i32, i64), (String, String)>,
}

impl Reader {
    fn new(topic: &str, partitions: i32) -> Reader {
        Reader { consumer: reader(topic, partitions), messages: BTreeMap::new() }
    }

    /// Reads until `done` holds for the distinct events read, or panics at the deadline.
    fn until(&mut self, what: &str, done: impl Fn(&BTreeSet<(String, String)>) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(&self.events()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; read {} messages, {} distinct",
                self.messages.len(),
                self.events().len()
            );
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                let code = String::from_utf8(m.key().expect("a key").to_vec()).expect("UTF-8 key");
                let value: Value = serde_json::from_slice(m.payload().expect("a value")).expect("JSON value");
                let ts = value["modifiedTS"].as_str().expect("modifiedTS").to_string();
                assert_eq!(value["code"].as_str(), Some(code.as_str()), "keyed by the order code: {value}");
                self.messages.insert((m.partition(), m.offset()), (code, ts));
            }
        }
    }

    fn events(&self) -> BTreeSet<(String, String)> {
        self.messages.values().cloned().collect()
    }
}

#[test]
fn hybris_source_survives_kill_9_without_skipping_a_change() {
    let mut db = HybrisDb::create("hyb_kill", true);
    let mut worker = WorkerProcess::start(&unique("hybris-kill"), &[], &[]);
    let prefix = format!("{}.", unique("kill"));
    let topic = format!("{prefix}order");
    let body = json!({
        "name": "hybris",
        "config": {
            "connector.class": "hybris-source",
            "tasks.max": "1",
            "hybris.mode": "jdbc",
            "hybris.jdbc.url": db.url,
            "hybris.item.types": "Order",
            "hybris.poll.lag.ms": "500",
            "poll.interval.ms": "50",
            "batch.max.rows": "5",
            "offset.flush.interval.ms": "200",
            "topic.prefix": prefix,
            "topic.creation.default.partitions": "3",
        }
    })
    .to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert!(code == 201 || code == 200, "HTTP {code} {reply}\n{}", worker.log_text());
    worker.wait_tasks_state("hybris", 1, "RUNNING", TIMEOUT);

    // 150 orders that become visible 100 ms apart over the next 15 s.
    let values: Vec<String> = (0..ORDERS)
        .map(|i| {
            let ts = format!("(now() AT TIME ZONE 'UTC' + interval '{} milliseconds')", 100 * i);
            format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'K{i:03}', 8796093054980)", 8796700000000 + i)
        })
        .collect();
    db.client
        .batch_execute(&format!(
            "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    let mut expected = versions(&mut db);

    let mut reader = Reader::new(&topic, 3);
    reader.until("the first 20 orders", |events| events.iter().filter(|e| e.0.starts_with('K')).count() >= 20);
    // Orders already in Kafka change again, after the rest: a second event
    // each (only orders already read, so no first version is overwritten unseen).
    let streamed: Vec<String> =
        reader.events().into_iter().map(|e| e.0).filter(|c| c.starts_with('K')).take(6).collect();
    let codes: Vec<String> = streamed.iter().map(|c| format!("'{c}'")).chain(["'00001000'".to_string()]).collect();
    db.client
        .batch_execute(&format!(
            "UPDATE orders SET p_status = 8796093775963, hjmpts = hjmpts + 1, \
             modifiedts = now() AT TIME ZONE 'UTC' + interval '16 seconds' WHERE p_code IN ({})",
            codes.join(", ")
        ))
        .unwrap();
    expected.extend(versions(&mut db));
    let before_kill = reader.events().len();
    // The committed source offset before the kill: what comes before it must
    // not be read again after the restart (repeats only after it).
    let committed: String =
        sluice_tests::wait_until("a committed source offset past the sample orders", TIMEOUT, || {
            let (code, body) = worker.get("/connectors/hybris/offsets");
            let offset = &body["offsets"].as_array()?.first()?["offset"];
            let ts = offset["modifiedTS"].as_str()?.to_string();
            (code == 200 && offset["pk"].as_i64()? >= 8796700000000).then_some(ts)
        });

    worker.kill(); // SIGKILL: no clean stop, no last offset flush.
    assert!(before_kill < expected.len(), "the stream had already ended: the kill would test nothing");
    worker.restart();

    reader.until("every order change", |events| expected.iter().all(|e| events.contains(e)));
    let events = reader.events();
    let unexpected: Vec<_> = events.difference(&expected).collect();
    assert!(unexpected.is_empty(), "events that never existed: {unexpected:?}");

    let mut read_before_offset: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for event in reader.messages.values().filter(|(_, ts)| *ts < committed) {
        *read_before_offset.entry(event).or_default() += 1;
    }
    assert!(!read_before_offset.is_empty());
    let repeated: Vec<_> = read_before_offset.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "read again although before the committed offset {committed}: {repeated:?}");

    // Per order: one partition, events in the order they happened (a
    // repeat of the last unacknowledged batch may repeat an event, never
    // bring an older one after a newer one).
    let mut per_order: BTreeMap<&str, Vec<(i32, i64, &str)>> = BTreeMap::new();
    for ((partition, offset), (code, ts)) in &reader.messages {
        per_order.entry(code).or_default().push((*partition, *offset, ts));
    }
    for (code, list) in per_order {
        let partitions: BTreeSet<i32> = list.iter().map(|e| e.0).collect();
        assert_eq!(partitions.len(), 1, "order {code} spread over partitions {partitions:?}");
        assert!(list.windows(2).all(|w| w[0].2 <= w[1].2), "order {code}: events out of order: {list:?}");
    }
    for code in streamed.iter().map(String::as_str).chain(["00001000"]) {
        let versions = events.iter().filter(|e| e.0 == code).count();
        assert_eq!(versions, 2, "{code} was created and then updated");
    }
}
