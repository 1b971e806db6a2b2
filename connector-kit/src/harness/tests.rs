//! The sink harness itself, against the example file sink and a task that lies
//! (the source harness is tested in tests/source_harness.rs: two plugins
//! cannot be linked into one binary, their export symbols clash).

use std::{collections::BTreeMap, fs};

use connector_api::*;
use example_file_sink::FileSink;

use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("orders", p)
}

struct FileCase {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl FileCase {
    fn new() -> (FileCase, SinkHarness<FileSink>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let config = ConnectorConfig::new().with("file", path.to_str().unwrap());
        let h = SinkHarness::new(FileSink, config).unwrap();
        (FileCase { _dir: dir, path }, h)
    }

    /// (partition, offset) → how many lines the file has for it.
    fn lines(&self) -> BTreeMap<(i32, i64), usize> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        let mut seen = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            *seen.entry((f[1].parse().unwrap(), f[2].parse().unwrap())).or_insert(0) += 1;
        }
        seen
    }

    /// Every record the harness says is durable is in the file.
    fn holds_every_durable_record(&self, h: &SinkHarness<FileSink>) {
        let lines = self.lines();
        for r in h.durable_records() {
            assert!(lines.contains_key(&(r.partition, r.offset)), "{}/{} missing: {lines:?}", r.partition, r.offset);
        }
    }
}

fn values(p: i32, from: i64, n: usize) -> Vec<OwnedRecord> {
    RecordBuilder::new("orders", p).at(from).records(n, |b, o| {
        b.key(format!("k{o}")).value(format!("v{o}"));
    })
}

#[test]
fn a_killed_task_loses_its_buffer_and_the_redelivery_restores_it_exactly_once() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0)]).unwrap();
    h.put(&values(0, 0, 5)).unwrap();
    assert_eq!(h.commit().unwrap(), [TopicPartitionOffset::new("orders", 0, 5)]);
    h.put(&values(0, 5, 3)).unwrap(); // buffered, not synced
    let outcomes = h.crash_without_destructors().unwrap();
    assert!(outcomes.iter().all(|o| o.failures().is_empty()));
    assert_eq!(h.crashes(), 1);
    assert_eq!(h.context().incarnation, 2);
    h.commit().unwrap();
    h.assert_durable("orders", 0, 8);
    let counts: Vec<usize> = file.lines().into_values().collect();
    assert_eq!(counts, vec![1; 8], "the lost buffer is written once by the re-delivery");
    file.holds_every_durable_record(&h);
    h.never_past_unsettled();
}

#[test]
fn a_dropped_task_flushes_on_drop_so_the_redelivery_duplicates() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0)]).unwrap();
    h.put(&values(0, 0, 4)).unwrap();
    h.commit().unwrap();
    h.put(&values(0, 4, 2)).unwrap();
    h.crash().unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 6);
    let lines = file.lines();
    assert_eq!((lines[&(0, 3)], lines[&(0, 4)], lines[&(0, 5)]), (1, 2, 2), "at least once: {lines:?}");
    file.holds_every_durable_record(&h);
    h.never_past_unsettled();
}

#[test]
fn a_partition_revoked_mid_batch_commits_what_was_settled_and_is_redelivered_on_return() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0), tp(1)]).unwrap();
    let (p0, p1) = (values(0, 0, 6), values(1, 0, 6));
    let first_half: Vec<OwnedRecord> = p0[..3].iter().chain(&p1[..3]).cloned().collect();
    let second_half: Vec<OwnedRecord> = p0[3..].iter().chain(&p1[3..]).cloned().collect();
    h.put(&first_half).unwrap();
    h.revoke(&[tp(1)]).unwrap();
    assert_eq!(h.durable(), BTreeMap::from([(tp(0), 3), (tp(1), 3)]));
    h.put(&second_half).unwrap(); // partition 1's records are dropped: not owned
    h.commit().unwrap();
    assert_eq!(h.durable(), BTreeMap::from([(tp(0), 6), (tp(1), 3)]));
    assert!(!file.lines().contains_key(&(1, 3)), "a revoked partition's records never reach the task");
    h.open(&[tp(1)]).unwrap();
    h.redeliver().unwrap();
    h.commit().unwrap();
    assert_eq!(h.durable(), BTreeMap::from([(tp(0), 6), (tp(1), 6)]));
    let counts: Vec<usize> = file.lines().into_values().collect();
    assert_eq!(counts, vec![1; 12]);
    h.never_past_unsettled();
}

#[test]
fn a_failed_record_holds_the_commit_until_the_dlq_acknowledges_it() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0)]).unwrap();
    h.hold_routing(true);
    h.fail_record("orders", 0, 2, ConnectorError::bad_record("value converter: not JSON"));
    h.put(&values(0, 0, 5)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 2);
    assert_eq!(h.routed().len(), 1);
    assert_eq!(h.commits()[0].lowest_unsettled, Some(2));
    h.ack_routed();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 5);
    assert!(!file.lines().contains_key(&(0, 2)), "the task never saw it");
    assert_eq!(h.durable_records().iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 3, 4]);
    file.holds_every_durable_record(&h);
    h.never_past_unsettled();
}

#[test]
fn a_put_failing_mid_batch_is_put_again() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0)]).unwrap();
    let batch = values(0, 0, 4);
    h.fail_next_put(2, ConnectorError::retriable("target went away"));
    assert_eq!(h.put(&batch).unwrap_err().kind(), ErrorKind::Retriable);
    h.put(&batch).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 4);
    let lines = file.lines();
    assert_eq!((lines[&(0, 1)], lines[&(0, 2)]), (2, 1), "the task took two records before the failure");
    h.never_past_unsettled();
}

#[test]
fn stop_commits_and_closes() {
    let (file, mut h) = FileCase::new();
    h.open(&[tp(0)]).unwrap();
    h.put(&values(0, 10, 2)).unwrap();
    h.stop().unwrap();
    h.assert_durable("orders", 0, 12);
    assert_eq!(file.lines().len(), 2);
}

/// A task that claims too much, to see the harness notice.
struct Liar;
struct LiarTask {
    failures: Vec<(usize, ErrorKind)>,
}

impl SinkConnector for Liar {
    type Task = LiarTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "liar", aliases: &[], version: "0", documentation: "" }
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn create_task(&self, _: &ConnectorConfig, _: Host, _: SinkContext) -> Result<LiarTask, ConnectorError> {
        Ok(LiarTask { failures: Vec::new() })
    }
}

impl SinkTask for LiarTask {
    fn put(&mut self, _: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let mut outcome = PutOutcome::accepted();
        for (i, kind) in self.failures.drain(..) {
            outcome.fail(i, ConnectorError::new(kind, "no"));
        }
        Ok(outcome)
    }
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        let mut out: Vec<_> = delivered
            .iter()
            .map(|d| TopicPartitionOffset::new(d.topic.to_string(), d.partition, d.offset + 10))
            .collect();
        out.push(TopicPartitionOffset::new("elsewhere", 9, 1));
        Ok(out)
    }
}

#[test]
fn reports_past_what_was_handed_or_for_foreign_partitions_are_violations() {
    let mut h = SinkHarness::new(Liar, ConnectorConfig::new()).unwrap();
    h.open(&[tp(0)]).unwrap();
    h.put(&values(0, 0, 3)).unwrap();
    h.commit().unwrap();
    assert!(h.durable().is_empty(), "nothing reported believably");
    let v = h.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("durable up to 13") && v[1].contains("elsewhere/9"), "{v:?}");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.never_past_unsettled()));
    assert!(caught.is_err());
}

#[test]
fn a_record_failed_retriably_waits_for_its_retry() {
    let mut h = SinkHarness::new(Liar, ConnectorConfig::new()).unwrap();
    h.open(&[tp(0)]).unwrap();
    h.task_mut().failures = vec![(1, ErrorKind::Retriable)];
    h.put(&values(0, 0, 3)).unwrap();
    assert_eq!(h.awaiting_retry(), [(tp(0), 1)]);
    assert!(h.commit().is_ok());
    assert!(h.durable().is_empty(), "the liar's reports are not believed");
    h.retry_failed().unwrap();
    assert!(h.awaiting_retry().is_empty());
    h.task_mut().failures = vec![(0, ErrorKind::Retriable)];
    h.put(&values(0, 3, 1)).unwrap();
    h.give_up_failed();
    assert_eq!(h.routed().len(), 1);
    assert_eq!(h.routed()[0].0.offset, 3);
}

#[test]
fn a_recording_host_sees_what_the_file_sink_counts() {
    let dir = tempfile::tempdir().unwrap();
    let recording = RecordingHost::default();
    let config = ConnectorConfig::new().with("file", dir.path().join("f").to_str().unwrap());
    let mut h = SinkHarness::with_host(FileSink, config, recording.host()).unwrap();
    h.open(&[tp(0)]).unwrap();
    h.put(&values(0, 0, 3)).unwrap();
    assert_eq!(recording.total("file_sink_lines_total"), 3.0);
    assert!(recording.logs().iter().any(|l| l.message == "file sink task started"));
}
