//! Issue #21 as a user runs it: hybris-source (jdbc) → Kafka → s3-sink with
//! wall-clock rotation (the demo's settings) on **two** workers, while orders
//! change, through faults — exactly-once sources, exactly-once objects and
//! the fencing of a paused worker, together.
//!
//! - Crash loop: `kill -9` of a random worker at random moments (seeded and
//!   printed; `SLUICE_TEST_SEED` replays the choices), each killed worker
//!   restarted → every Hybris row version in S3 exactly once, the objects of
//!   each partition tiling its offsets, each order's versions on one
//!   partition in the order they happened. `SLUICE_EO_KILLS` sets the number
//!   of kills (default 4, for `dev/test`); the full size is
//!   `SLUICE_EO_KILLS=20 cargo test -p sluice-tests --test hybris_s3_exactly_once -- --nocapture --test-threads 1`
//!   (after building `sluice` and the plugins in the same profile).
//! - The same run with `exactly.once.source.support=disabled` prints the
//!   duplicates it finds (whether a kill lands between an acknowledgement and
//!   the offset store is chance, so no count is asserted; the sink side must
//!   still write each Kafka record once).
//! - Deterministic source fault: both runs again, first aborting the worker
//!   that runs the hybris-source task at the runtime's test-only fault point
//!   (`SLUICE_SOURCE_FAULT=after-ack@2`: after an acknowledgement, before
//!   the offset store), then the random kills. With the key off duplicates
//!   in Kafka and S3 are asserted (so the check can fail), with it on none.
//! - Zombie: the worker running both the hybris-source and the s3-sink task
//!   is SIGSTOPped past the takeover time, the other worker takes both over, SIGCONT → the
//!   resumed worker logs that it fenced itself; afterwards every row version
//!   is in S3 exactly once and no (source partition, source offset) is in
//!   Kafka twice.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Headers, Message},
    ClientConfig, Offset, TopicPartitionList,
};
use serde_json::{json, Value};
use sluice_runtime::cluster::placement::score;
use sluice_tests::{
    committed_offset, create_topic,
    hybris::HybrisDb,
    s3::Bucket,
    seeded::{self, seed, Rng},
    service_env, unique, wait_until, WorkerProcess,
};

const ORDER_TYPE_PK: i64 = 8796093317202;
const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(180);

fn kills() -> usize {
    seeded::count("SLUICE_EO_KILLS", 4)
}

/// An order version as the source writes it: (code, modifiedTS).
type Version = (String, String);

/// One message of the order topic.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    version: Version,
    /// The `__sluice.source.partition` / `__sluice.source.offset` headers.
    source: Option<(String, String)>,
    /// The `__sluice.source.incarnation` header: the producing task's incarnation.
    incarnation: Option<u64>,
}

fn header(m: &impl Message, key: &str) -> Option<String> {
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| Some(String::from_utf8_lossy(h.value?).to_string()))
}

fn parse(m: &impl Message) -> Read {
    let code = String::from_utf8(m.key().expect("a key").to_vec()).expect("UTF-8 key");
    let value: Value = serde_json::from_slice(m.payload().expect("a value")).expect("JSON value");
    let modified = value["modifiedTS"].as_str().expect("modifiedTS").to_string();
    let source = header(m, "__sluice.source.partition").zip(header(m, "__sluice.source.offset"));
    let incarnation = header(m, "__sluice.source.incarnation").and_then(|i| i.parse().ok());
    Read { partition: m.partition(), offset: m.offset(), version: (code, modified), source, incarnation }
}

fn consumer(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
        .set("group.id", unique("eo-check"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Everything in `topic` now, read up to the end of each partition.
fn read_all(topic: &str) -> Vec<Read> {
    let consumer = consumer(topic);
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

/// The end offset of each partition of `topic`, from what a read to the end
/// finds (the test broker's watermarks lag behind).
fn ends(topic: &str) -> Vec<i64> {
    let mut ends = vec![0; PARTITIONS as usize];
    for m in read_all(topic) {
        ends[m.partition as usize] = ends[m.partition as usize].max(m.offset + 1);
    }
    ends
}

/// One object: partition and start offset from its key, and its records.
#[derive(Clone)]
struct Object {
    key: String,
    partition: i32,
    start: i64,
    records: Vec<Version>,
}

/// `<dir>/<topic>/partition=<n>/<topic>+<n>+<start>.json` → (n, start).
fn parse_key(key: &str, dir: &str, topic: &str) -> Option<(i32, i64)> {
    let rest = key.strip_prefix(&format!("{dir}/{topic}/partition="))?;
    let (partition, file) = rest.split_once('/')?;
    let partition: i32 = partition.parse().ok()?;
    let start = file.strip_suffix(".json")?.strip_prefix(&format!("{topic}+{partition}+"))?;
    Some((partition, start.parse().ok()?))
}

/// The objects under `dir`, read once each (completed objects do not change).
struct Objects {
    bucket: Bucket,
    dir: String,
    topic: String,
    read: BTreeMap<String, Object>,
}

impl Objects {
    fn refresh(&mut self) -> Vec<Object> {
        for key in self.bucket.keys(&format!("{}/", self.dir)) {
            if self.read.contains_key(&key) {
                continue;
            }
            let (partition, start) = parse_key(&key, &self.dir, &self.topic)
                .unwrap_or_else(|| panic!("object key {key} does not follow Confluent's naming"));
            let records = self
                .bucket
                .text(&key)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: not JSON ({e}): {l}"));
                    (
                        v["code"].as_str().expect("code").to_string(),
                        v["modifiedTS"].as_str().expect("modifiedTS").to_string(),
                    )
                })
                .collect();
            self.read.insert(key.clone(), Object { key, partition, start, records });
        }
        self.read.values().cloned().collect()
    }
}

/// Every live order version visible now.
fn versions(db: &mut HybrisDb) -> BTreeSet<Version> {
    db.order_versions().into_iter().map(|((_, modified), code)| (code, modified)).collect()
}

/// Inserts `n` orders numbered from `first`, in bursts of twenty `gap_ms`
/// apart on the modifiedts clock (the stream outlasts the faults).
fn insert_orders(db: &mut HybrisDb, first: i64, n: i64, gap_ms: i64) {
    let values: Vec<String> = (first..first + n)
        .map(|i| {
            let ts = format!("(now() AT TIME ZONE 'UTC' + interval '{} milliseconds')", gap_ms * ((i - first) / 20));
            format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'E{i:05}', 8796093054980)", 8796700000000 + i)
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
        values.join(", ")
    ));
}

/// Changes `codes` again (a later version each, 3 s ahead of now so it sorts
/// after every version already polled).
fn change_orders(db: &mut HybrisDb, codes: &[String]) {
    if codes.is_empty() {
        return;
    }
    let list: Vec<String> = codes.iter().map(|c| format!("'{c}'")).collect();
    db.exec(&format!(
        "UPDATE orders SET hjmpts = hjmpts + 1, modifiedts = now() AT TIME ZONE 'UTC' + interval '3 seconds' \
         WHERE p_code IN ({})",
        list.join(", ")
    ));
}

/// One pipeline: the database, the topic, the bucket prefix and the two connectors.
struct Pipeline {
    db: HybrisDb,
    topic: String,
    sink: String,
    objects: Objects,
}

impl Pipeline {
    fn create(label: &str, worker: &WorkerProcess, exactly_once: bool, sink_name: String) -> Pipeline {
        let db = HybrisDb::create(label, false);
        let prefix = format!("{}.", unique(label));
        let topic = format!("{prefix}order");
        // The topic exists before the sink subscribes to it.
        create_topic(&topic, PARTITIONS);
        let dir = unique(&format!("{label}-dir"));
        let source = json!({
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
            "exactly.once.source.support": if exactly_once { "enabled" } else { "disabled" },
        });
        // The demo's s3-sink (dev/demo): small objects, rotated every 2 s on
        // the wall clock, offsets committed every second.
        let sink = sluice_tests::s3::sink_config(json!({
            "connector.class": "s3-sink",
            "tasks.max": "1",
            "topics": topic,
            "topics.dir": dir,
            "format.class": "json",
            "partitioner.class": "default",
            "flush.size": "100",
            "rotate.schedule.interval.ms": "2000",
            "offset.flush.interval.ms": "1000",
        }));
        for (name, config) in [("hybris", source), (sink_name.as_str(), sink)] {
            let body = json!({ "name": name, "config": config }).to_string();
            let (code, reply) = worker.request("POST", "/connectors", Some(&body));
            assert!(code == 201 || code == 200, "creating {name}: HTTP {code} {reply}\n{}", worker.log_text());
        }
        let objects = Objects { bucket: Bucket::new(), dir, topic: topic.clone(), read: BTreeMap::new() };
        Pipeline { db, topic, sink: sink_name, objects }
    }

    /// Polls until S3 holds every version of `expected` and the sink has
    /// committed the end of every partition (nothing more is on its way),
    /// then returns the objects.
    fn settled(&mut self, expected: &BTreeSet<Version>, workers: &[&WorkerProcess]) -> Vec<Object> {
        let group = format!("connect-{}", self.sink);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let objects = self.objects.refresh();
            let found: BTreeSet<&Version> = objects.iter().flat_map(|o| o.records.iter()).collect();
            let missing = expected.iter().filter(|v| !found.contains(v)).count();
            let ends = ends(&self.topic);
            let committed: Vec<Option<i64>> =
                (0..PARTITIONS).map(|p| committed_offset(&group, &self.topic, p)).collect();
            let caught_up = ends.iter().zip(&committed).all(|(end, c)| *end == 0 || *c == Some(*end));
            if missing == 0 && caught_up {
                // The commit follows the completions: one more listing sees them all.
                return self.objects.refresh();
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = workers.iter().map(|w| w.log_text()).collect();
                let status = workers.first().map(|w| w.get(&format!("/connectors/{}/status", self.sink)).1);
                // Whether the sink's consumer reads at all (records read per worker).
                let read: Vec<String> = workers
                    .iter()
                    .map(|w| {
                        let text = ureq::get(&format!("{}/metrics", w.url))
                            .call()
                            .ok()
                            .and_then(|mut r| r.body_mut().read_to_string().ok())
                            .unwrap_or_default();
                        text.lines()
                            .filter(|l| l.starts_with("sluice_records_read_total") && l.contains(&self.sink))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                panic!(
                    "timed out: {missing} of {} order versions not in S3; ends {ends:?}, committed {committed:?}; \
                     sink status {status:?}; sink records read per worker {read:?}\nworker logs:\n{}",
                    expected.len(),
                    logs.join("\n-----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// What S3 holds: copies of each version, and the check that each
/// partition's objects tile its offsets (each Kafka record in one object).
struct Found {
    copies: BTreeMap<Version, usize>,
    records: usize,
}

fn check_objects(objects: &[Object], expected: &BTreeSet<Version>) -> Found {
    let mut copies: BTreeMap<Version, usize> = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, Vec<&Object>> = BTreeMap::new();
    for o in objects {
        by_partition.entry(o.partition).or_default().push(o);
        for r in &o.records {
            assert!(expected.contains(r), "{}: a version the database never held: {r:?}", o.key);
            *copies.entry(r.clone()).or_default() += 1;
        }
    }
    // Objects of one partition tile its offsets with no gap or overlap: the
    // sink wrote each Kafka record in exactly one object.
    let mut per_order: BTreeMap<&str, Vec<(i32, &str)>> = BTreeMap::new();
    for (partition, list) in by_partition.iter_mut() {
        list.sort_by_key(|o| o.start);
        let mut next = 0;
        for o in list.iter() {
            assert_eq!(
                o.start, next,
                "partition {partition}: {} does not start where the previous object ended",
                o.key
            );
            next += o.records.len() as i64;
            for (code, modified) in &o.records {
                per_order.entry(code).or_default().push((*partition, modified));
            }
        }
    }
    // Per order: one partition, versions in the order they happened.
    for (code, list) in per_order {
        let partitions: BTreeSet<i32> = list.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "order {code} spread over partitions {partitions:?}");
        assert!(list.windows(2).all(|w| w[0].1 <= w[1].1), "order {code}: versions out of order in S3: {list:?}");
    }
    Found { records: copies.values().sum(), copies }
}

/// The crash loop; returns what S3 and Kafka hold. With `fault`, the
/// workers carry the runtime's test-only source fault point
/// (`SLUICE_SOURCE_FAULT=after-ack@2`, once: a mark file): before the random
/// kills, the worker running the hybris-source task aborts right after its
/// second poll was acknowledged and before that poll's offsets were stored,
/// the window that duplicates records without exactly-once sources; then
/// both workers start again.
fn crash_loop(
    label: &str,
    exactly_once: bool,
    fault: bool,
    kills: usize,
    seed: u64,
) -> (Found, BTreeMap<Version, usize>) {
    let mut rng = Rng::new(seed);
    let cluster = unique(&format!("{label}-cluster"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mark = dir.path().join("fired");
    let mark_text = mark.to_string_lossy().to_string();
    let fault_envs = [("SLUICE_SOURCE_FAULT", "after-ack@2"), ("SLUICE_SOURCE_FAULT_MARK", mark_text.as_str())];
    let envs: &[(&str, &str)] = if fault { &fault_envs } else { &[] };
    let mut workers = [WorkerProcess::start(&cluster, &[], envs), WorkerProcess::start(&cluster, &[], envs)];
    let mut p = Pipeline::create(label, &workers[0], exactly_once, unique(&format!("{label}-s3")));
    workers[0].wait_tasks_state("hybris", 1, "RUNNING", TIMEOUT);
    workers[0].wait_tasks_state(&p.sink, 1, "RUNNING", TIMEOUT);

    let orders = 40 * kills.max(1) as i64;
    insert_orders(&mut p.db, 0, orders, 2000);
    let mut expected = versions(&mut p.db);
    if fault {
        wait_until("a worker to die at the source fault point", TIMEOUT, || mark.exists().then_some(()));
        eprintln!("{label}: a worker died at SLUICE_SOURCE_FAULT=after-ack@2; both start again");
        // The aborted one is reaped and started; the other is one more kill -9.
        for w in workers.iter_mut() {
            w.restart();
        }
    }
    let reader = consumer(&p.topic);
    let mut read: BTreeSet<Version> = BTreeSet::new();
    for kill in 0..kills {
        // A random moment while records flow: once the reader has seen a
        // seeded number of versions within this kill's share of the stream
        // (unless the stream is through), after a seeded delay of 0–2 s.
        let share = orders as usize / kills;
        let target = kill * share + rng.below(share as u64) as usize + 1;
        let deadline = Instant::now() + TIMEOUT;
        while read.len() < target && !expected.iter().all(|v| read.contains(v)) {
            assert!(Instant::now() < deadline, "no records before kill {}", kill + 1);
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                read.insert(parse(&m).version);
            }
        }
        let delay = rng.below(2000);
        let victim = rng.below(2) as usize;
        // The kill's random moment, not synchronisation.
        std::thread::sleep(Duration::from_millis(delay));
        // Orders already read change again: versions over time.
        let current = versions(&mut p.db);
        let codes: Vec<String> = current
            .iter()
            .filter(|v| read.contains(*v))
            .map(|(c, _)| c.clone())
            .filter(|_| rng.below(8) == 0)
            .take(5)
            .collect();
        change_orders(&mut p.db, &codes);
        expected.extend(versions(&mut p.db));
        eprintln!(
            "{label}: kill -9 #{} of worker {victim} after {delay} ms ({} versions read, {} orders changed)",
            kill + 1,
            read.len(),
            codes.len()
        );
        workers[victim].restart();
    }
    let objects = p.settled(&expected, &[&workers[0], &workers[1]]);
    for w in workers.iter_mut() {
        w.kill();
    }
    let found = check_objects(&objects, &expected);
    let mut in_kafka: BTreeMap<Version, usize> = BTreeMap::new();
    for m in read_all(&p.topic) {
        *in_kafka.entry(m.version).or_default() += 1;
    }
    (found, in_kafka)
}

fn twice(copies: &BTreeMap<Version, usize>) -> Vec<(&Version, &usize)> {
    copies.iter().filter(|(_, n)| **n > 1).collect()
}

#[test]
fn every_hybris_row_version_reaches_s3_exactly_once_across_kill_9s_of_two_workers() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EO_KILLS={kills}");
    let (found, in_kafka) = crash_loop("eo_on", true, false, kills, seed);
    let (s3_twice, kafka_twice) = (twice(&found.copies), twice(&in_kafka));
    eprintln!(
        "exactly.once.source.support=enabled: {kills} kills survived, {} records checked in S3, \
         {} versions in S3 more than once, {} in Kafka more than once",
        found.records,
        s3_twice.len(),
        kafka_twice.len()
    );
    assert!(kafka_twice.is_empty(), "order versions in Kafka more than once (seed {seed}): {kafka_twice:?}");
    assert!(s3_twice.is_empty(), "order versions in S3 more than once (seed {seed}): {s3_twice:?}");
}

#[test]
fn with_exactly_once_sources_off_the_same_crash_loop_reports_its_duplicates() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EO_KILLS={kills}");
    // check_objects still holds: every version there, each Kafka record in
    // one object; the duplicates are the source's re-produced records.
    let (found, in_kafka) = crash_loop("eo_off", false, false, kills, seed);
    let s3_twice = twice(&found.copies);
    eprintln!(
        "exactly.once.source.support=disabled: {kills} kills, {} records checked in S3, {} duplicate records \
         in Kafka, {} in S3: {s3_twice:?}",
        found.records,
        in_kafka.values().map(|n| n - 1).sum::<usize>(),
        found.copies.values().map(|n| n - 1).sum::<usize>(),
    );
}

fn signal(worker: &WorkerProcess, name: &str) {
    let pid = worker.pid().expect("a running worker");
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Continues a stopped worker even when an assertion fails.
struct Stopped<'a>(&'a WorkerProcess);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// The worker running the connector's task 0 and its state, as `asked` answers.
fn task_worker(asked: &WorkerProcess, name: &str) -> Option<(String, String)> {
    let (code, status) = asked.get(&format!("/connectors/{name}/status"));
    let task: &Value = status["tasks"].as_array().filter(|_| code == 200)?.first()?;
    Some((task["worker_id"].as_str()?.to_string(), task["state"].as_str()?.to_string()))
}

/// The sink group's committed offsets, read over and over from the pause on
/// until stopped: a paused worker's stale commit would show as an offset
/// going back.
struct CommitWatch {
    stop: Arc<AtomicBool>,
    samples: std::thread::JoinHandle<Vec<Vec<Option<i64>>>>,
}

impl CommitWatch {
    fn start(group: String, topic: String) -> CommitWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let samples = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                samples.push((0..PARTITIONS).map(|p| committed_offset(&group, &topic, p)).collect());
                // A sampling interval, not synchronisation.
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        CommitWatch { stop, samples }
    }

    fn finish(self) -> Vec<Vec<Option<i64>>> {
        self.stop.store(true, Ordering::SeqCst);
        self.samples.join().expect("the commit watch")
    }
}

/// Partitions whose committed offset went back between two samples.
fn commits_gone_back(samples: &[Vec<Option<i64>>]) -> Vec<(i32, i64, i64)> {
    let mut back = Vec::new();
    for p in 0..PARTITIONS as usize {
        let seen: Vec<i64> = samples.iter().filter_map(|s| s.get(p).copied().flatten()).collect();
        back.extend(seen.windows(2).filter(|w| w[1] < w[0]).map(|w| (p as i32, w[0], w[1])));
    }
    back
}

/// Records written to a partition by an older source incarnation after a
/// newer one had written there: what a paused source task's late delivery
/// would look like. (partition, offset, its incarnation, the newer one).
fn older_incarnation_after_newer(messages: &[Read]) -> Vec<(i32, i64, u64, u64)> {
    let mut by_partition: BTreeMap<i32, Vec<&Read>> = BTreeMap::new();
    for m in messages {
        by_partition.entry(m.partition).or_default().push(m);
    }
    let mut late = Vec::new();
    for (partition, mut list) in by_partition {
        list.sort_by_key(|m| m.offset);
        let mut newest = 0;
        for m in list {
            let incarnation = m.incarnation.unwrap_or_else(|| panic!("no incarnation at {partition}/{}", m.offset));
            if incarnation < newest {
                late.push((partition, m.offset, incarnation, newest));
            }
            newest = newest.max(incarnation);
        }
    }
    late
}

#[test]
fn the_zombie_checks_find_a_commit_gone_back_and_a_late_record_of_an_older_incarnation() {
    let read = |partition, offset, incarnation| Read {
        partition,
        offset,
        version: ("o".into(), offset.to_string()),
        source: None,
        incarnation: Some(incarnation),
    };
    let ordered = [read(0, 0, 5), read(0, 1, 7), read(1, 0, 5), read(0, 2, 7)];
    assert!(older_incarnation_after_newer(&ordered).is_empty());
    let late = [read(0, 0, 5), read(0, 1, 7), read(0, 2, 5), read(1, 0, 5)];
    assert_eq!(older_incarnation_after_newer(&late), vec![(0, 2, 5, 7)]);
    let samples = vec![vec![None, Some(3), None], vec![Some(1), Some(4), None], vec![Some(2), Some(4), Some(1)]];
    assert!(commits_gone_back(&samples).is_empty());
    let back = vec![vec![Some(4), Some(3), None], vec![Some(2), Some(3), None]];
    assert_eq!(commits_gone_back(&back), vec![(0, 4, 2)]);
}

#[test]
fn a_paused_worker_is_fenced_and_every_row_version_stays_exactly_once_in_kafka_and_s3() {
    let cluster = unique("eo-zombie-cluster");
    // Both workers run with the harness's 6 s session timeout: the takeover time.
    let a = WorkerProcess::start(&cluster, &[], &[]);
    let b = WorkerProcess::start(&cluster, &[], &[]);
    // Tasks are placed by rendezvous hashing of (worker, connector, task):
    // a sink name whose task scores highest on the worker that scores
    // highest for the source's task puts both tasks on one worker.
    let best = |connector: &str| {
        [a.worker_id(), b.worker_id()].into_iter().max_by_key(|w| score(w, connector, 0)).expect("two workers")
    };
    let sink_name = (0..)
        .map(|_| unique("eo_zombie-s3"))
        .find(|name| best(name) == best("hybris"))
        .expect("a name placed with the source");
    let mut p = Pipeline::create("eo_zombie", &a, true, sink_name);
    a.wait_tasks_state("hybris", 1, "RUNNING", TIMEOUT);
    a.wait_tasks_state(&p.sink, 1, "RUNNING", TIMEOUT);
    insert_orders(&mut p.db, 0, 40, 1000);
    let mut expected = versions(&mut p.db);
    p.settled(&expected, &[&a, &b]);

    let owner_of = |name: &str| {
        wait_until(&format!("{name}'s task to run"), Duration::from_secs(30), || {
            task_worker(&a, name).filter(|(_, state)| state == "RUNNING").map(|(w, _)| w)
        })
    };
    let sink_owner = owner_of(&p.sink);
    let source_owner = owner_of("hybris");
    assert_eq!(sink_owner, source_owner, "both tasks on one worker, as placement computes");
    let (owner, other) = if sink_owner == a.worker_id() { (&a, &b) } else { (&b, &a) };
    eprintln!("s3-sink task on {sink_owner}, hybris-source task on {source_owner}: SIGSTOP {}", owner.worker_id());

    // Freeze the sink's worker while orders keep coming and changing, until
    // the other worker visibly runs every task the frozen one had.
    let watch = CommitWatch::start(format!("connect-{}", p.sink), p.topic.clone());
    let stopped = Stopped(owner);
    signal(owner, "STOP");
    insert_orders(&mut p.db, 1000, 40, 1000);
    let first: Vec<String> = expected.iter().map(|(c, _)| c.clone()).take(10).collect();
    change_orders(&mut p.db, &first);
    expected.extend(versions(&mut p.db));
    let mut moved = Vec::new();
    for name in [p.sink.clone(), "hybris".to_string()] {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        while last != Some((other.worker_id(), "RUNNING".to_string())) {
            assert!(
                Instant::now() < deadline,
                "the other worker did not take {name} over: {last:?}; its log:\n{}",
                other.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
            last = task_worker(other, &name);
        }
        moved.push(name);
    }
    eprintln!("taken over by {}: {moved:?}; SIGCONT", other.worker_id());
    drop(stopped);

    wait_until(
        &format!("the resumed worker to fence itself; its log:\n{}", owner.log_text()),
        Duration::from_secs(60),
        || owner.log_text().contains("worker fenced after a pause").then_some(()),
    );
    wait_until("the resumed worker to rejoin", Duration::from_secs(60), || {
        owner.log_text().contains("worker rejoined the cluster after being fenced").then_some(())
    });
    // More changes after the rejoin: the cluster goes on delivering.
    insert_orders(&mut p.db, 2000, 20, 0);
    expected.extend(versions(&mut p.db));
    let objects = p.settled(&expected, &[&a, &b]);
    let samples = watch.finish();

    let found = check_objects(&objects, &expected);
    let s3_twice = twice(&found.copies);
    let messages = read_all(&p.topic);
    // The resumed worker's old tasks wrote and committed nothing after the
    // takeover: no partition holds a record of an older incarnation after
    // one of a newer (the takeover's task is newer), and no committed
    // offset ever went back.
    let incarnations: BTreeSet<u64> = messages.iter().filter_map(|m| m.incarnation).collect();
    assert!(incarnations.len() >= 2, "the takeover started a new source incarnation: {incarnations:?}");
    let late = older_incarnation_after_newer(&messages);
    assert!(late.is_empty(), "records of an older incarnation after a newer one's: {late:?}");
    let back = commits_gone_back(&samples);
    assert!(back.is_empty(), "committed offsets went back (partition, from, to): {back:?}");
    let mut by_source: BTreeMap<(String, String), Vec<(i32, i64)>> = BTreeMap::new();
    for m in &messages {
        let source = m.source.clone().unwrap_or_else(|| panic!("no source headers at {}/{}", m.partition, m.offset));
        by_source.entry(source).or_default().push((m.partition, m.offset));
    }
    let kafka_twice: Vec<_> = by_source.iter().filter(|(_, at)| at.len() > 1).collect();
    eprintln!(
        "zombie: {} records checked in S3, {} in Kafka from {} source incarnations, {} commit samples; {} versions \
         in S3 more than once, {} source positions in Kafka more than once",
        found.records,
        messages.len(),
        incarnations.len(),
        samples.len(),
        s3_twice.len(),
        kafka_twice.len()
    );
    assert!(kafka_twice.is_empty(), "(source partition, source offset) in Kafka more than once: {kafka_twice:?}");
    assert!(s3_twice.is_empty(), "order versions in S3 more than once: {s3_twice:?}");
    assert_eq!(found.copies.len(), expected.len(), "every order version in S3");
}

/// The crash loop with the source fault point first: with
/// `exactly.once.source.support=disabled` the restarted source task
/// re-produces the acknowledged poll, so Kafka and S3 (which writes each
/// Kafka record once) hold duplicates; the run fails if the fault stops
/// landing in that window.
#[test]
fn with_exactly_once_sources_off_a_death_after_the_acknowledgement_duplicates_versions_in_kafka_and_s3() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EO_KILLS={kills}");
    let (found, in_kafka) = crash_loop("eo_fault_off", false, true, kills, seed);
    let kafka_duplicates: usize = in_kafka.values().map(|n| n - 1).sum();
    let s3_duplicates: usize = found.copies.values().map(|n| n - 1).sum();
    eprintln!(
        "exactly.once.source.support=disabled, fault after-ack@2 + {kills} kills: {} records checked in S3, \
         {kafka_duplicates} duplicate records in Kafka, {s3_duplicates} in S3",
        found.records,
    );
    assert!(kafka_duplicates > 0, "the re-polled records were produced again (seed {seed})");
    assert!(s3_duplicates > 0, "the sink wrote the re-produced records too (seed {seed})");
}

/// The same with the key on: exactly once in Kafka and in S3.
#[test]
fn with_exactly_once_sources_on_a_death_after_the_acknowledgement_duplicates_nothing() {
    let (seed, kills) = (seed(), kills());
    eprintln!("SLUICE_TEST_SEED={seed} SLUICE_EO_KILLS={kills}");
    let (found, in_kafka) = crash_loop("eo_fault_on", true, true, kills, seed);
    let (s3_twice, kafka_twice) = (twice(&found.copies), twice(&in_kafka));
    eprintln!(
        "exactly.once.source.support=enabled, fault after-ack@2 + {kills} kills: {} records checked in S3, \
         {} versions in S3 more than once, {} in Kafka more than once",
        found.records,
        s3_twice.len(),
        kafka_twice.len()
    );
    assert!(kafka_twice.is_empty(), "order versions in Kafka more than once (seed {seed}): {kafka_twice:?}");
    assert!(s3_twice.is_empty(), "order versions in S3 more than once (seed {seed}): {s3_twice:?}");
}
