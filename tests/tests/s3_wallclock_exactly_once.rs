//! The s3-sink with wall-clock rotation through a real worker, `kill -9`ed
//! while records flow: every record must end in exactly one object.
//!
//! Rotation runs on the wall clock (`rotate.schedule.interval.ms`), so a
//! re-delivery after a crash cuts objects differently from the run that
//! died; commits are rare, so at every kill completed objects sit past the
//! committed offset. The kills come when a partition has at least two such
//! objects (the moment a re-delivery can duplicate records), after a seeded
//! random delay; the seed is printed and `SLUICE_TEST_SEED` replays it.
//! `SLUICE_S3EO_KILLS` sets the number of kills (default 4; 20 for the full
//! run). The same run with `enable.conditional.writes=false` (no look at
//! earlier objects: the old at-least-once path) must show duplicates, so
//! the check can fail.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{
    committed_offset, create_topic, produce,
    s3::Bucket,
    seeded::{self, seed, Rng},
    unique, WorkerProcess,
};

const PARTITIONS: i32 = 2;
const TIMEOUT: Duration = Duration::from_secs(180);

fn kills() -> usize {
    seeded::count("SLUICE_S3EO_KILLS", 4)
}

struct Case {
    topic: String,
    dir: String,
    name: String,
    group: String,
}

fn config(case: &Case, conditional: bool, extra: &[(&str, &str)]) -> Value {
    let mut config = sluice_tests::s3::sink_config(json!({
        "connector.class": "io.confluent.connect.s3.S3SinkConnector",
        "tasks.max": "1",
        "topics": case.topic,
        "topics.dir": case.dir,
        "format.class": "io.confluent.connect.s3.format.json.JsonFormat",
        "flush.size": "1000000",
        // Objects close on the wall clock, twice a second, idle or not.
        "rotate.schedule.interval.ms": "500",
        // Commits are rare: completed objects pile up past the committed offset.
        "offset.flush.interval.ms": "8000",
        "enable.conditional.writes": conditional.to_string(),
    }));
    for (k, v) in extra {
        config[*k] = json!(v);
    }
    config
}

/// The (partition, start offset) of an object key (`…/<topic>+<partition>+<start>.json`).
fn object_start(key: &str) -> Option<(i32, i64)> {
    let file = key.rsplit('/').next()?;
    let mut parts = file.rsplitn(3, '+');
    let start = parts.next()?.strip_suffix(".json")?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((partition, start))
}

/// Per partition, how many completed objects start at or past the committed offset.
fn uncommitted_objects(s3: &Bucket, case: &Case) -> Vec<usize> {
    let starts: Vec<(i32, i64)> = s3.keys(&format!("{}/", case.dir)).iter().filter_map(|k| object_start(k)).collect();
    (0..PARTITIONS)
        .map(|p| {
            let committed = committed_offset(&case.group, &case.topic, p).unwrap_or(0);
            starts.iter().filter(|(q, s)| *q == p && *s >= committed).count()
        })
        .collect()
}

/// Produces numbered records to every partition until `stop`; returns the
/// records produced per partition.
fn producer(topic: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<i64>> {
    thread::spawn(move || {
        let mut produced = vec![0i64; PARTITIONS as usize];
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for p in 0..PARTITIONS {
                let values: Vec<String> = (0..200)
                    .map(|_| {
                        seq += 1;
                        json!({ "seq": seq, "p": p, "pad": "x".repeat(200) }).to_string()
                    })
                    .collect();
                let records: Vec<(Option<&str>, Option<&str>)> =
                    values.iter().map(|v| (None, Some(v.as_str()))).collect();
                produced[p as usize] += produce(&topic, p, &records).len() as i64;
            }
            // Pacing of the load, not synchronisation.
            thread::sleep(Duration::from_millis(50));
        }
        produced
    })
}

/// Runs the crash loop; returns how many objects hold each record.
fn crash_loop(label: &str, conditional: bool, kills: usize, extra: &[(&str, &str)]) -> BTreeMap<(i64, u64), usize> {
    let seed = seed();
    eprintln!("{label}: seed {seed} (SLUICE_TEST_SEED={seed} replays the kill delays), {kills} kills");
    let mut rng = Rng::new(seed);
    let s3 = Bucket::new();
    let name = unique(&format!("{label}-sink"));
    let case =
        Case { topic: unique(label), dir: unique(&format!("{label}-dir")), group: format!("connect-{name}"), name };
    create_topic(&case.topic, PARTITIONS);

    let stop = Arc::new(AtomicBool::new(false));
    let producing = producer(case.topic.clone(), stop.clone());
    let mut worker = WorkerProcess::start(&unique(&format!("{label}-cluster")), &[], &[]);
    let body = json!({ "name": case.name, "config": config(&case, conditional, extra) }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert_eq!(code, 201, "creating the connector: {reply}");

    // Objects in S3 when the worker last (re)started: a kill waits until the
    // running incarnation completed one of its own, so each kill lands on a
    // task that joined its group and wrote, not on one still starting.
    let mut objects_at_start = 0;
    for kill in 0..kills {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let pending = uncommitted_objects(&s3, &case);
            let own = s3.keys(&format!("{}/", case.dir)).len() > objects_at_start;
            if own && pending.iter().any(|n| *n >= 2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: no object of this incarnation, or none past the commit: {pending:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        let delay = rng.below(400);
        thread::sleep(Duration::from_millis(delay));
        eprintln!("{label}: kill -9 #{} after {delay} ms", kill + 1);
        worker.kill();
        objects_at_start = s3.keys(&format!("{}/", case.dir)).len();
        worker.restart();
    }
    stop.store(true, Ordering::Relaxed);
    let produced = producing.join().expect("the producer");

    for (p, end) in produced.iter().enumerate() {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let committed = committed_offset(&case.group, &case.topic, p as i32);
            if committed == Some(*end) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: committed {committed:?} on partition {p}, not {end}; worker log:\n{}",
                worker.log_text()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    let mut copies: BTreeMap<(i64, u64), usize> = BTreeMap::new();
    for key in s3.keys(&format!("{}/", case.dir)) {
        for line in s3.text(&key).lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let id = (v["p"].as_i64().expect("p"), v["seq"].as_u64().expect("seq"));
            *copies.entry(id).or_insert(0) += 1;
        }
    }
    let total: i64 = produced.iter().sum();
    assert_eq!(copies.len() as i64, total, "{label}: every record produced is in S3");
    worker.kill();
    copies
}

#[test]
fn wall_clock_rotation_with_kill_9s_writes_every_record_in_exactly_one_object() {
    let copies = crash_loop("s3eo", true, kills(), &[]);
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!("s3eo: {} records checked, {} in more than one object", copies.len(), twice.len());
    assert!(twice.is_empty(), "records in more than one object (record, copies): {twice:?}");
}

#[test]
fn wall_clock_paths_with_kill_9s_write_every_record_in_exactly_one_object() {
    // Paths from the wall clock, one a second: a re-delivery puts records
    // under other paths than the run that died, so any path's object covers.
    let extra = [
        ("partitioner.class", "io.confluent.connect.storage.partitioner.TimeBasedPartitioner"),
        ("path.format", "'minute'=mm/'second'=ss"),
        ("partition.duration.ms", "1000"),
        ("timestamp.extractor", "Wallclock"),
    ];
    let copies = crash_loop("s3eo-paths", true, kills(), &extra);
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!("s3eo-paths: {} records checked, {} in more than one object", copies.len(), twice.len());
    assert!(twice.is_empty(), "records in more than one object (record, copies): {twice:?}");
}

#[test]
fn without_conditional_writes_the_same_crash_loop_duplicates_records() {
    let copies = crash_loop("s3eo-off", false, 2, &[]);
    let twice = copies.values().filter(|n| **n > 1).count();
    eprintln!("s3eo-off: {} records checked, {twice} in more than one object", copies.len());
    assert!(twice > 0, "the old path should duplicate records after a kill with completed, uncommitted objects");
}
