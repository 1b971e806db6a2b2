//! Exactly-once objects when a re-delivery cuts objects differently (what
//! wall-clock rotation does after a crash), and when a former owner completes
//! late: two tasks under connector-kit's harness against the real SeaweedFS
//! of `dev/services`. A task with another `flush.size` stands for a
//! different cut: it is deterministic here, so each test shows one exact
//! interleaving. Each test writes under its own `topics.dir`.

mod common;

use std::collections::BTreeMap;

use common::{config, json, unique_dir, Bucket};
use connector_api::{ConnectorConfig, SinkConnector, TopicPartition};
use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};
use sluice_s3_sink::S3Sink;

fn harness(c: &ConnectorConfig) -> SinkHarness<S3Sink> {
    let issues = S3Sink.validate(c);
    assert!(issues.is_empty(), "{issues:?}");
    let mut h = SinkHarness::new(S3Sink, c.clone()).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h
}

fn records(range: std::ops::Range<i64>) -> Vec<OwnedRecord> {
    let n = (range.end - range.start) as usize;
    RecordBuilder::new("orders", 0).at(range.start).records(n, |b, o| {
        b.value(json(o)).timestamp(1_700_000_000_000 + o);
    })
}

/// How many objects under `dir` hold each record (by its `id`).
fn copies(s3: &Bucket, dir: &str) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for key in s3.keys(&format!("{dir}/")) {
        for line in s3.text(&key).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            *seen.entry(v["id"].as_i64().expect("id")).or_insert(0) += 1;
        }
    }
    seen
}

/// Task A cuts 0..12 into 0..5 and 5..10 (completed, never committed) and
/// dies with 10..12 open; task B gets everything again from offset 0 and
/// cuts every 3 records.
fn recut(conditional: &str) -> (Bucket, String, SinkHarness<S3Sink>) {
    let dir = unique_dir(&format!("eo-recut-{conditional}"));
    let s3 = Bucket::new();
    let mut a = harness(&config(&dir, &[("flush.size", "5"), ("enable.conditional.writes", conditional)]));
    a.put(&records(0..12)).unwrap();
    a.task_mut().wait_for_completions().unwrap();
    drop(a);
    let mut b = harness(&config(&dir, &[("flush.size", "3"), ("enable.conditional.writes", conditional)]));
    b.put(&records(0..16)).unwrap();
    b.task_mut().wait_for_completions().unwrap();
    b.commit().unwrap();
    (s3, dir, b)
}

#[test]
fn a_redelivery_cut_differently_skips_what_earlier_objects_hold() {
    let (s3, dir, b) = recut("true");
    let seen = copies(&s3, &dir);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..16).collect::<Vec<_>>(), "every record is in S3");
    assert!(seen.values().all(|n| *n == 1), "every record exactly once: {seen:?}");
    let key = |start: i64| format!("{dir}/orders/partition=0/orders+0+{start:010}.json");
    assert_eq!(s3.keys(&format!("{dir}/")), [key(0), key(5), key(10), key(13)], "A's objects stand; B starts at 10");
    // Skipped records count as settled: everything is committed.
    b.assert_durable("orders", 0, 16);
    b.never_past_unsettled();
}

#[test]
fn without_conditional_writes_a_redelivery_cut_differently_duplicates_records() {
    // The check the test above relies on can fail: the old behaviour
    // (unconditional overwrite, no look at earlier objects) duplicates.
    let (s3, dir, _) = recut("false");
    let seen = copies(&s3, &dir);
    let twice: Vec<i64> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
    assert_eq!(twice, (5..10).collect::<Vec<_>>(), "A's 5..10 object stays beside B's 3..6, 6..9, 9..12");
}

#[test]
fn a_former_owners_late_completion_makes_the_new_owner_reread_not_duplicate() {
    let dir = unique_dir("eo-zombie");
    let s3 = Bucket::new();
    let key = |start: i64| format!("{dir}/orders/partition=0/orders+0+{start:010}.json");
    // The old owner looked at S3 (nothing there) and holds 0..3 open.
    let mut old = harness(&config(&dir, &[("flush.size", "8")]));
    old.put(&records(0..3)).unwrap();
    // Meanwhile the new owner writes 0..5 under the same first name.
    let mut new = harness(&config(&dir, &[("flush.size", "5")]));
    new.put(&records(0..5)).unwrap();
    new.task_mut().wait_for_completions().unwrap();
    assert_eq!(s3.keys(&format!("{dir}/")), [key(0)]);
    // The old owner wakes up and completes 0..8 under that name: refused
    // (If-None-Match), and the object there holds other offsets.
    old.put(&records(3..8)).unwrap();
    old.task_mut().wait_for_completions().unwrap();
    assert_eq!(
        old.take_seeks(),
        vec![(TopicPartition::new("orders", 0), 0)],
        "it re-reads from its committable offset"
    );
    old.commit().unwrap();
    let tp = TopicPartition::new("orders", 0);
    assert_eq!(old.durable().get(&tp).copied().unwrap_or(0), 0, "nothing is committed for the rewound partition");
    assert_eq!(s3.text(&key(0)).lines().count(), 5, "the new owner's object stands");
    // Re-read from 0, it skips what S3 holds and writes the rest once.
    old.put(&records(0..13)).unwrap();
    old.task_mut().wait_for_completions().unwrap();
    old.commit().unwrap();
    old.assert_durable("orders", 0, 13);
    assert_eq!(s3.keys(&format!("{dir}/")), [key(0), key(5)]);
    let seen = copies(&s3, &dir);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..13).collect::<Vec<_>>());
    assert!(seen.values().all(|n| *n == 1), "every record exactly once: {seen:?}");
    assert!(s3.open_uploads(&format!("{dir}/")).is_empty());
}
