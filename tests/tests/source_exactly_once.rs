//! Exactly-once sources without broker transactions: hybris-source (jdbc
//! mode) streams order changes while its worker is killed with `kill -9`
//! again and again at random moments (seeded, printed). With
//! `exactly.once.source.support` at its default every order version is in
//! Kafka exactly once, each order's versions on one partition in the order
//! they happened; turned off, the same run reports the duplicates it made.
//! Where such a kill lands is chance, so two more runs kill the worker at the
//! runtime's test-only fault point (`SLUICE_SOURCE_FAULT=after-ack@2`):
//! always after an acknowledgement and before the offset store, so the run
//! with the key off must show duplicates and the run with it on none.
//!
//! `SLUICE_EOS_KILLS` sets the number of kills (default 4; the full run is
//! `SLUICE_EOS_KILLS=20 cargo test -p sluice-tests --test source_exactly_once`),
//! `SLUICE_TEST_SEED` replays a run.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Headers, Message},
    ClientConfig, Offset, TopicPartitionList,
};
use serde_json::{json, Value};
use sluice_tests::{
    hybris::HybrisDb,
    reader,
    seeded::{self, seed, Rng},
    service_env, unique, wait_until, WorkerProcess,
};

const ORDER_TYPE_PK: i64 = 8796093317202;
const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(180);

fn kills() -> usize {
    seeded::count("SLUICE_EOS_KILLS", 4)
}

/// One message read from the order topic.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    code: String,
    modified: String,
    incarnation: Option<u64>,
}

fn parse(m: &impl Message) -> Read {
    let code = String::from_utf8(m.key().expect("a key").to_vec()).expect("UTF-8 key");
    let value: Value = serde_json::from_slice(m.payload().expect("a value")).expect("JSON value");
    let modified = value["modifiedTS"].as_str().expect("modifiedTS").to_string();
    let incarnation = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == "__sluice.source.incarnation")
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
    });
    Read { partition: m.partition(), offset: m.offset(), code, modified, incarnation }
}

/// Everything in `topic` now, read up to the end of each partition.
fn read_all(topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
        .set("group.id", unique("eos-check"))
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut open: BTreeSet<i32> = (0..PARTITIONS).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic} to its end; partitions open: {open:?}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(parse(&m)),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            _ => {}
        }
    }
    out
}

/// The worker's log without its colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a run found in Kafka.
struct Outcome {
    /// (code, modifiedTS) → how many times it is in Kafka.
    counts: BTreeMap<(String, String), usize>,
    expected: BTreeSet<(String, String)>,
    messages: Vec<Read>,
    /// Re-polled records the read-back skipped (from the worker's log).
    skipped: u64,
}

impl Outcome {
    fn duplicates(&self) -> usize {
        self.counts.values().map(|n| n.saturating_sub(1)).sum()
    }
}

/// Every live order version visible now: (code, modifiedTS as the connector writes it).
fn versions(db: &mut HybrisDb) -> BTreeSet<(String, String)> {
    db.order_versions().into_iter().map(|((_, modified), code)| (code, modified)).collect()
}

/// A hybris-source connector (one task) streaming a fresh database's orders
/// into `topic` from one worker.
struct Stream {
    db: HybrisDb,
    worker: WorkerProcess,
    topic: String,
}

fn stream(name: &str, exactly_once: bool, envs: &[(&str, &str)]) -> Stream {
    let db = HybrisDb::create(name, false);
    let worker = WorkerProcess::start(&unique(name), &[], envs);
    let prefix = format!("{}.", unique(name));
    let topic = format!("{prefix}order");
    let support = if exactly_once { "enabled" } else { "disabled" };
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
            "batch.max.rows": "50",
            "topic.prefix": prefix,
            "topic.creation.default.partitions": PARTITIONS.to_string(),
            "exactly.once.source.support": support,
        }
    })
    .to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert!(code == 201 || code == 200, "HTTP {code} {reply}\n{}", worker.log_text());
    worker.wait_tasks_state("hybris", 1, "RUNNING", TIMEOUT);
    Stream { db, worker, topic }
}

/// Inserts `orders` orders, visible in bursts of twenty 2 s apart (a poll
/// produces several records at once, and the stream outlasts the kills).
fn insert_orders(db: &mut HybrisDb, orders: i64) {
    let values: Vec<String> = (0..orders)
        .map(|i| {
            let ts = format!("(now() AT TIME ZONE 'UTC' + interval '{} milliseconds')", 2000 * (i / 20));
            format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'E{i:04}', 8796093054980)", 8796700000000 + i)
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
        values.join(", ")
    ));
}

/// Reads `consumer` until every `expected` version was seen.
fn read_every_version(
    consumer: &BaseConsumer,
    read: &mut BTreeSet<(String, String)>,
    expected: &BTreeSet<(String, String)>,
    worker: &WorkerProcess,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !expected.iter().all(|e| read.contains(e)) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every order version: {} of {} read\n{}",
            expected.iter().filter(|e| read.contains(*e)).count(),
            expected.len(),
            worker.log_text()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let r = parse(&m);
            read.insert((r.code, r.modified));
        }
    }
}

/// Stops the worker (no more writes: what is in Kafka now is the outcome)
/// and counts every version in `topic`.
fn outcome(mut worker: WorkerProcess, topic: &str, expected: BTreeSet<(String, String)>) -> Outcome {
    worker.kill();
    let skipped: u64 = plain(&worker.log_text())
        .lines()
        .filter(|l| l.contains("skipped re-polled records"))
        .filter_map(|l| l.split("skipped=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    eprintln!("records the read-back skipped: {skipped}");
    let messages = read_all(topic);
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in &messages {
        *counts.entry((m.code.clone(), m.modified.clone())).or_default() += 1;
    }
    Outcome { counts, expected, messages, skipped }
}

/// Streams `kills * 40` orders (visible in bursts of twenty, some changed
/// again later) while killing the worker `kills` times, each as a burst's
/// first record arrives.
fn run(name: &str, exactly_once: bool, kills: usize, seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let Stream { mut db, mut worker, topic } = stream(name, exactly_once, &[]);
    insert_orders(&mut db, 40 * kills.max(1) as i64);
    let mut expected = versions(&mut db);

    let consumer = reader(&topic, PARTITIONS);
    let mut read: BTreeSet<(String, String)> = BTreeSet::new();
    let poll = |read: &mut BTreeSet<(String, String)>| {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let r = parse(&m);
            read.insert((r.code, r.modified));
        }
    };
    for kill in 0..kills {
        // The kill comes as the reader sees the first record of a burst
        // (the task is then between acknowledgements and its offset store)
        // after skipping a random number of bursts, 0 to 2.
        let mut bursts = rng.below(3) + 1;
        let deadline = Instant::now() + TIMEOUT;
        let mut last_read = Instant::now();
        while bursts > 0 && read.len() < expected.len() {
            assert!(Instant::now() < deadline, "timed out waiting for records before kill {kill}");
            let before = read.len();
            poll(&mut read);
            if read.len() > before {
                if last_read.elapsed() > Duration::from_millis(500) {
                    bursts -= 1;
                }
                last_read = Instant::now();
            }
        }
        if kill == kills / 2 {
            // Orders already in Kafka change again, later in the stream: a
            // second version each, whose order against the first is checked.
            let codes: Vec<String> = read.iter().map(|(c, _)| format!("'{c}'")).take(10).collect();
            db.exec(&format!(
                "UPDATE orders SET hjmpts = hjmpts + 1, modifiedts = now() AT TIME ZONE 'UTC' + interval '3 seconds' \
                 WHERE p_code IN ({})",
                codes.join(", ")
            ));
            expected.extend(versions(&mut db));
        }
        eprintln!("kill {} of {kills} after {} distinct versions read", kill + 1, read.len());
        worker.restart(); // kill -9, then the same worker again
    }
    read_every_version(&consumer, &mut read, &expected, &worker);
    outcome(worker, &topic, expected)
}

/// Streams 60 orders (three bursts) while the task's test-only fault point
/// (`SLUICE_SOURCE_FAULT=after-ack@2`, once: a mark file) aborts the worker
/// right after Kafka acknowledged its second poll's records and before that
/// poll's source offsets were stored; then the worker starts again. Unlike a
/// `kill -9` at a chance moment, the death is always in the window that
/// re-produces records without exactly-once sources.
fn run_with_fault(name: &str, exactly_once: bool) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = dir.path().join("fired");
    let mark_text = mark.to_string_lossy().to_string();
    let envs = [("SLUICE_SOURCE_FAULT", "after-ack@2"), ("SLUICE_SOURCE_FAULT_MARK", mark_text.as_str())];
    let Stream { mut db, mut worker, topic } = stream(name, exactly_once, &envs);
    let consumer = reader(&topic, PARTITIONS);
    insert_orders(&mut db, 60);
    let expected = versions(&mut db);
    wait_until(&format!("the worker to die at the fault point; log:\n{}", worker.log_text()), TIMEOUT, || {
        mark.exists().then_some(())
    });
    worker.restart(); // reaps the aborted process, then the same worker again
    let mut read = BTreeSet::new();
    read_every_version(&consumer, &mut read, &expected, &worker);
    outcome(worker, &topic, expected)
}

#[test]
fn every_order_version_is_in_kafka_exactly_once_across_kill_9s() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EOS_KILLS={kills}");
    let outcome = run("eos_on", true, kills, seed);
    let found: BTreeSet<_> = outcome.counts.keys().cloned().collect();
    assert_eq!(found, outcome.expected, "every order version and nothing else (seed {seed})");
    let repeated: Vec<_> = outcome.counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "exactly.once.source.support=enabled: {kills} kills, {} records checked, {} duplicates",
        outcome.messages.len(),
        outcome.duplicates()
    );
    assert!(repeated.is_empty(), "order versions in Kafka more than once (seed {seed}): {repeated:?}");

    // Per order: one partition, versions in the order they happened; per
    // partition: incarnations never go back (one writer at a time, each
    // start above the last).
    let mut per_order: BTreeMap<&str, Vec<&Read>> = BTreeMap::new();
    let mut per_partition: BTreeMap<i32, Vec<&Read>> = BTreeMap::new();
    for m in &outcome.messages {
        per_order.entry(&m.code).or_default().push(m);
        per_partition.entry(m.partition).or_default().push(m);
    }
    for (code, list) in &per_order {
        let partitions: BTreeSet<i32> = list.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "order {code} spread over partitions {partitions:?}");
    }
    let twice = per_order.values().filter(|l| l.len() == 2).count();
    assert_eq!(twice, 10, "ten orders were changed a second time");
    for (partition, mut list) in per_partition {
        list.sort_by_key(|m| m.offset);
        for w in list.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(a.incarnation.is_some(), "partition {partition} offset {}: no incarnation header", a.offset);
            assert!(a.incarnation <= b.incarnation, "partition {partition}: incarnation went back at {}", b.offset);
            if a.code == b.code {
                assert!(a.modified < b.modified, "order {}: versions out of order", a.code);
            }
        }
        let codes: BTreeMap<&str, Vec<&str>> = list.iter().fold(BTreeMap::new(), |mut acc, m| {
            acc.entry(m.code.as_str()).or_default().push(m.modified.as_str());
            acc
        });
        for (code, modified) in codes {
            assert!(modified.windows(2).all(|w| w[0] < w[1]), "order {code}: versions out of order: {modified:?}");
        }
    }
    let incarnations: BTreeSet<u64> = outcome.messages.iter().filter_map(|m| m.incarnation).collect();
    assert!(incarnations.len() > 1, "the kills started new incarnations: {incarnations:?}");
}

/// The same run with the key off: at least once (every version there), and
/// the duplicates the kills made are reported. Whether a kill lands between
/// an acknowledgement and the offset store is chance, so no count is asserted.
#[test]
fn with_exactly_once_sources_off_the_same_kills_report_their_duplicates() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EOS_KILLS={kills}");
    let outcome = run("eos_off", false, kills, seed);
    let found: BTreeSet<_> = outcome.counts.keys().cloned().collect();
    assert_eq!(found, outcome.expected, "every order version and nothing else (seed {seed})");
    assert!(outcome.messages.iter().all(|m| m.incarnation.is_none()), "no source headers with the key off");
    eprintln!(
        "exactly.once.source.support=disabled: {kills} kills, {} records checked, {} duplicates",
        outcome.messages.len(),
        outcome.duplicates()
    );
}

/// The deterministic kill: the worker dies (abort, as `kill -9`) after its
/// second poll was acknowledged and before that poll's offsets were stored.
/// With the key off, the restarted task re-produces that poll: duplicates,
/// so this run fails if the fault point ever stops landing in the window.
#[test]
fn killed_between_the_acknowledgement_and_the_offset_store_without_exactly_once_duplicates_records() {
    let outcome = run_with_fault("eos_fault_off", false);
    let found: BTreeSet<_> = outcome.counts.keys().cloned().collect();
    assert_eq!(found, outcome.expected, "every order version and nothing else");
    eprintln!(
        "exactly.once.source.support=disabled, fault after-ack@2: {} records checked, {} duplicates",
        outcome.messages.len(),
        outcome.duplicates()
    );
    assert!(outcome.duplicates() > 0, "the re-polled records were produced again");
    assert!(outcome.messages.iter().all(|m| m.incarnation.is_none()), "no source headers with the key off");
}

/// The same fault with the key on: the read-back skips what the aborted
/// incarnation wrote, so every version is in Kafka exactly once.
#[test]
fn killed_between_the_acknowledgement_and_the_offset_store_with_exactly_once_writes_every_version_once() {
    let outcome = run_with_fault("eos_fault_on", true);
    let found: BTreeSet<_> = outcome.counts.keys().cloned().collect();
    assert_eq!(found, outcome.expected, "every order version and nothing else");
    let repeated: Vec<_> = outcome.counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "exactly.once.source.support=enabled, fault after-ack@2: {} records checked, {} duplicates, {} skipped",
        outcome.messages.len(),
        outcome.duplicates(),
        outcome.skipped
    );
    assert!(repeated.is_empty(), "order versions in Kafka more than once: {repeated:?}");
    assert!(outcome.skipped > 0, "the restarted task re-polled the acknowledged records and skipped them");
}
