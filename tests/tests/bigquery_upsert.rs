//! The BigQuery sink's UPSERT / UPSERT_DELETE modes through a real worker:
//! Tansu → sluice → the BigQuery emulator (intermediate table through the
//! Storage Write `_default` stream, MERGE through `jobs.query`).
//!
//! Order sync as a user relies on it: every order ends at its last
//! version; a worker killed (abort, as `kill -9`) after a MERGE and before
//! the offset commit leaves no order rolled back and no deleted order
//! back after the restart. The kill point is the sink's test-only fault
//! point `SLUICE_BQ_FAULT=after-merge@<n>` (read only when set). A replay
//! merged in several parts (older versions merged before the newer ones
//! are re-delivered) is checked under the harness,
//! `connectors/bigquery-sink/tests/upsert_harness.rs`, where the parts are
//! exact.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{
    bigquery::Bq, committed_offset, create_topic, produce_at, service_env, unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(300);
const PARTITIONS: i32 = 4;
const VERSIONS: i64 = 5;

/// One test at a time: the emulator serves one call at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

struct Case {
    topic: String,
    dataset: String,
    name: String,
    group: String,
}

impl Case {
    fn new(label: &str) -> Case {
        let name = unique(&format!("{label}-sink"));
        let case = Case {
            topic: unique(label),
            dataset: unique(label).replace('-', "_"),
            group: format!("connect-{name}"),
            name,
        };
        create_topic(&case.topic, PARTITIONS);
        Bq::new().dataset(&case.dataset);
        case
    }

    /// The config with `mode` as V2's `ingestion.mode`, or none (the legacy
    /// connector's keys, `upsertEnabled` in `extra`).
    fn config(&self, mode: Option<&str>, extra: &[(&str, &str)]) -> Value {
        let mut c = json!({
            "connector.class": "com.wepay.kafka.connect.bigquery.BigQuerySinkConnector",
            "tasks.max": "1",
            "topics": self.topic,
            "topic2TableMap": format!("{}:orders", self.topic),
            "project": service_env("BQ_PROJECT"),
            "defaultDataset": self.dataset,
            "kafkaKeyFieldName": "order_id",
            "bigquery.rest.endpoint": service_env("BQ_REST_ENDPOINT"),
            "bigquery.storage.endpoint": service_env("BQ_GRPC_ENDPOINT"),
            "offset.flush.interval.ms": "500",
        });
        if let Some(mode) = mode {
            c["ingestion.mode"] = json!(mode);
        }
        for (k, v) in extra {
            c[*k] = json!(v);
        }
        c
    }

    /// `(order, version)` of every row of the destination, sorted.
    fn orders(&self) -> Vec<(i64, i64)> {
        let sql = format!("SELECT order_id, version FROM `{}.{}.orders`", service_env("BQ_PROJECT"), self.dataset);
        let n = |v: &Value| v.as_str().and_then(|s| s.trim_start_matches("order-").parse::<i64>().ok()).unwrap();
        let mut rows: Vec<(i64, i64)> = Bq::new().query(&sql).iter().map(|r| (n(&r[0]), n(&r[1]))).collect();
        rows.sort();
        rows
    }

    fn end(&self, orders: i64, tombstone: impl Fn(i64) -> bool) -> Vec<i64> {
        (0..PARTITIONS as i64)
            .map(|p| {
                let mine = (0..orders).filter(|o| o % PARTITIONS as i64 == p);
                mine.clone().count() as i64 * VERSIONS + mine.filter(|o| tombstone(*o)).count() as i64
            })
            .collect()
    }
}

/// Orders `0..n` (order `o` in partition `o % 4`, key `order-<o>`), version
/// by version (every order's v1, then every v2, …), then a tombstone for
/// each order `tombstone` says.
fn produce(topic: &str, n: i64, tombstone: impl Fn(i64) -> bool) {
    for p in 0..PARTITIONS as i64 {
        let mine: Vec<i64> = (0..n).filter(|o| o % PARTITIONS as i64 == p).collect();
        let mut records: Vec<(String, Option<String>)> = Vec::new();
        for v in 1..=VERSIONS {
            for o in &mine {
                let value = json!({"status": format!("v{v}"), "version": v, "customer": format!("c{}", o % 17),
                                   "total": (o * 7 + v) as f64 / 4.0});
                records.push((format!("order-{o}"), Some(value.to_string())));
            }
        }
        records.extend(mine.iter().filter(|o| tombstone(**o)).map(|o| (format!("order-{o}"), None)));
        let refs: Vec<(Option<&str>, Option<&str>)> =
            records.iter().map(|(k, v)| (Some(k.as_str()), v.as_deref())).collect();
        for chunk in refs.chunks(5_000) {
            produce_at(topic, p as i32, chunk, None);
        }
    }
}

fn create(worker: &WorkerProcess, name: &str, config: Value) {
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert!(code == 201, "creating {name}: HTTP {code} {reply}\nworker log:\n{}", tail(worker));
}

fn tail(worker: &WorkerProcess) -> String {
    let log = worker.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn wait_committed(worker: &WorkerProcess, case: &Case, ends: &[i64]) {
    let deadline = Instant::now() + TIMEOUT;
    for (p, end) in ends.iter().enumerate() {
        loop {
            let committed = committed_offset(&case.group, &case.topic, p as i32);
            if committed == Some(*end) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} committed {committed:?} on {}/{p}, not {end}\nworker log:\n{}",
                case.group,
                case.topic,
                tail(worker)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn last_versions(n: i64, deleted: impl Fn(i64) -> bool) -> Vec<(i64, i64)> {
    (0..n).filter(|o| !deleted(*o)).map(|o| (o, VERSIONS)).collect()
}

/// `SLUICE_BQ_UPSERT_ORDERS` orders (default 2,000; the full size
/// is 10,000) with five versions each over four partitions → the table
/// holds each order once, at its last version. A pasted legacy config:
/// `upsertEnabled=true`, no `ingestion.mode`.
#[test]
fn orders_with_five_versions_each_end_at_their_last_version() {
    let _serial = serial();
    let n: i64 = std::env::var("SLUICE_BQ_UPSERT_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let case = Case::new("bq-upsert");
    produce(&case.topic, n, |_| false);
    let started = Instant::now();
    let worker = WorkerProcess::start(&unique("bq-upsert-cluster"), &[], &[]);
    create(&worker, &case.name, case.config(None, &[("upsertEnabled", "true"), ("mergeIntervalMs", "1000")]));
    wait_committed(&worker, &case, &case.end(n, |_| false));
    eprintln!(
        "{n} orders x {VERSIONS} versions ({} records) over {PARTITIONS} partitions merged and committed in {:.1} s",
        n * VERSIONS,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(case.orders(), last_versions(n, |_| false));
}

/// UPSERT_DELETE: every 7th order ends with a tombstone. The first MERGE
/// covers every record (`mergeRecordsThreshold` = all of them) and the
/// worker dies right after it, before any offset is committed; the next
/// worker process gets everything again and merges it again: every order
/// stays at its last version and no deleted order comes back.
#[test]
fn killed_after_a_merge_before_the_commit_no_order_rolls_back_and_no_deleted_one_returns() {
    let _serial = serial();
    let n: i64 = 400;
    let deleted = |o: i64| o % 7 == 3;
    let case = Case::new("bq-upsert-kill");
    produce(&case.topic, n, deleted);
    let ends = case.end(n, deleted);
    let total: i64 = ends.iter().sum();
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("fired");
    let mark_text = mark.to_string_lossy().to_string();
    let envs = [("SLUICE_BQ_FAULT", "after-merge@1"), ("SLUICE_BQ_FAULT_MARK", mark_text.as_str())];
    let mut worker = WorkerProcess::start(&unique("bq-upsert-kill-cluster"), &[], &envs);
    let threshold = total.to_string();
    let extra = [("mergeRecordsThreshold", threshold.as_str()), ("mergeIntervalMs", "-1")];
    create(&worker, &case.name, case.config(Some("UPSERT_DELETE"), &extra));
    wait_until(&format!("the worker to die after its first merge; log:\n{}", tail(&worker)), TIMEOUT, || {
        Path::new(&mark).exists().then_some(())
    });
    let expect = last_versions(n, deleted);
    assert_eq!(case.orders(), expect, "the merge before the kill");
    for p in 0..PARTITIONS {
        // The note before a merge re-commits the position the task started
        // at (0); no offset past it.
        let committed = committed_offset(&case.group, &case.topic, p);
        assert!(matches!(committed, None | Some(0)), "committed {committed:?} on {p} before the kill");
    }
    worker.restart();
    wait_committed(&worker, &case, &ends);
    assert_eq!(case.orders(), expect, "after the restart's merge of the same records");
}
