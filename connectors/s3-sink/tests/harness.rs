//! The S3 sink under connector-kit's harness, against the real SeaweedFS of
//! `dev/services` (same environment as tests/seaweedfs.rs: S3_ENDPOINT,
//! S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_REGION): the harness keeps
//! the worker's books, crashes the task and revokes a partition mid-batch,
//! and the objects are read back. Each test writes under its own `topics.dir`.

mod common;

use std::collections::BTreeMap;

use common::{config, json, lines, unique_dir, Bucket};
use connector_api::{ConnectorConfig, SinkConnector, TopicPartition};
use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};
use sluice_s3_sink::S3Sink;

fn harness(c: &ConnectorConfig) -> SinkHarness<S3Sink> {
    let issues = S3Sink.validate(c);
    assert!(issues.is_empty(), "{issues:?}");
    SinkHarness::new(S3Sink, c.clone()).unwrap()
}

fn records(partition: i32, range: std::ops::Range<i64>) -> Vec<OwnedRecord> {
    let n = (range.end - range.start) as usize;
    RecordBuilder::new("orders", partition).at(range.start).records(n, |b, o| {
        b.value(json(o)).timestamp(1_700_000_000_000 + o);
    })
}

/// A commit once every rotated object finished completing (completion runs
/// in the background; `pre_commit` alone reports what is done so far).
fn settle_and_commit(h: &mut SinkHarness<S3Sink>) {
    h.task_mut().wait_for_completions().unwrap();
    h.commit().unwrap();
}

fn key(dir: &str, partition: i32, start: i64) -> String {
    format!("{dir}/orders/partition={partition}/orders+{partition}+{start:010}.json")
}

#[test]
fn harness_a_crash_redelivers_from_the_committed_offset_into_the_same_objects() {
    let dir = unique_dir("harness-crash");
    let s3 = Bucket::new();
    let mut h = harness(&config(&dir, &[("flush.size", "4")]));
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&records(0, 0..10)).unwrap();
    settle_and_commit(&mut h);
    h.assert_durable("orders", 0, 8);

    // The worker dies with 8 and 9 in an open object; the new task gets them again.
    h.crash().unwrap();
    h.put(&records(0, 10..13)).unwrap();
    settle_and_commit(&mut h);
    h.assert_durable("orders", 0, 12);
    h.never_past_unsettled();
    h.stop().unwrap();

    let keys = s3.keys(&dir);
    assert_eq!(keys, [key(&dir, 0, 0), key(&dir, 0, 4), key(&dir, 0, 8)]);
    let all: String = keys.iter().map(|k| s3.text(k)).collect();
    assert_eq!(all, lines(0..12), "every record exactly once, in order");
    let durable: String = h.durable_records().iter().map(|r| r.value_text() + "\n").collect();
    assert_eq!(durable, all, "what the harness saw committed is what S3 holds");
    assert!(s3.open_uploads(&dir).is_empty());
}

#[test]
fn harness_a_partition_revoked_mid_batch_commits_its_completed_objects_and_comes_back_whole() {
    let dir = unique_dir("harness-revoke");
    let s3 = Bucket::new();
    let (p0, p1) = (TopicPartition::new("orders", 0), TopicPartition::new("orders", 1));
    let mut h = harness(&config(&dir, &[]));
    h.open(&[p0.clone(), p1.clone()]).unwrap();
    let first: Vec<OwnedRecord> = [records(0, 0..4), records(1, 0..4)].concat();
    let rest: Vec<OwnedRecord> = [records(0, 4..6), records(1, 4..6)].concat();
    h.put(&first).unwrap();
    h.task_mut().wait_for_completions().unwrap();
    // Revoked with offset 3 in an open object: 0..3 committed, 3 abandoned.
    h.revoke(std::slice::from_ref(&p1)).unwrap();
    assert_eq!(h.durable(), BTreeMap::from([(p0.clone(), 3), (p1.clone(), 3)]));
    h.put(&rest).unwrap();
    settle_and_commit(&mut h);
    assert_eq!(h.durable(), BTreeMap::from([(p0.clone(), 6), (p1.clone(), 3)]));
    assert_eq!(s3.keys(&dir), [key(&dir, 0, 0), key(&dir, 0, 3), key(&dir, 1, 0)]);

    h.open(std::slice::from_ref(&p1)).unwrap();
    h.redeliver().unwrap();
    settle_and_commit(&mut h);
    assert_eq!(h.durable(), BTreeMap::from([(p0, 6), (p1, 6)]));
    h.never_past_unsettled();
    h.stop().unwrap();
    assert_eq!(s3.keys(&dir), [key(&dir, 0, 0), key(&dir, 0, 3), key(&dir, 1, 0), key(&dir, 1, 3)]);
    for p in [0, 1] {
        let text: String = [0, 3].iter().map(|s| s3.text(&key(&dir, p, *s))).collect();
        assert_eq!(text, lines(0..6), "partition {p}");
    }
    assert!(s3.open_uploads(&dir).is_empty());
}
