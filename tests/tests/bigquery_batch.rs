//! The BigQuery sink's BATCH LOADING mode through a real worker: Tansu →
//! sluice → the BigQuery emulator (PENDING Storage Write streams committed
//! with BatchCommitWriteStreams every interval).
//!
//! The worker runs with the test-only `SLUICE_BQ_TEST_COMMIT_INTERVAL_MS`
//! (read only when set) so an interval takes seconds, not V2's minimum of
//! a minute. Kills are the sink's test-only fault points (`SLUICE_BQ_FAULT`,
//! abort as `kill -9`). The emulator must run with `dev/bigquery/launch.py`'s
//! patches: GetWriteStream reports a committed stream's `commit_time` and a
//! second commit answers STREAM_ALREADY_COMMITTED, as BigQuery does.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{
    bigquery::Bq, committed_offset, committed_with_metadata, create_topic, produce_at, service_env, unique, wait_until,
    WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(300);
const PARTITIONS: i32 = 4;
const INTERVAL_MS: &str = "2000";

/// One test at a time: the emulator serves one call at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per partition: rows, distinct offsets, min and max offset.
fn census(dataset: &str) -> Vec<[i64; 5]> {
    let sql = format!(
        "SELECT kafka.partition, COUNT(*), COUNT(DISTINCT kafka.offset), MIN(kafka.offset), MAX(kafka.offset) \
         FROM `{}.{dataset}.orders` GROUP BY kafka.partition ORDER BY kafka.partition",
        service_env("BQ_PROJECT")
    );
    let rows = Bq::new().query(&sql);
    rows.iter()
        .map(|r| {
            let n = |i: usize| r[i].as_str().map_or(0, |s| s.parse::<i64>().unwrap());
            [n(0), n(1), n(2), n(3), n(4)]
        })
        .collect()
}

fn exactly_once(count: i64) -> Vec<[i64; 5]> {
    (0..PARTITIONS as i64).map(|p| [p, count, count, 0, count - 1]).collect()
}

fn produce(topic: &str, from: i64, to: i64) {
    for p in 0..PARTITIONS {
        let values: Vec<String> = (from..to)
            .map(|o| {
                json!({"id": p as i64 * 1_000_000 + o, "customer": format!("c{}", o % 17),
                       "created": "2026-12-01T10:00:00Z"})
                .to_string()
            })
            .collect();
        let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
        for chunk in records.chunks(5_000) {
            produce_at(topic, p, chunk, None);
        }
    }
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
        Bq::new().orders_table(&case.dataset);
        case
    }

    fn create(&self, worker: &WorkerProcess, extra: &[(&str, &str)]) {
        let mut config = json!({
            "connector.class": "com.wepay.kafka.connect.bigquery.BigQuerySinkConnector",
            "tasks.max": "1",
            "topics": self.topic,
            "topic2TableMap": format!("{}:orders", self.topic),
            "project": service_env("BQ_PROJECT"),
            "defaultDataset": self.dataset,
            "ingestion.mode": "BATCH LOADING",
            "commit.interval": "60",
            "kafkaDataFieldName": "kafka",
            "bigquery.rest.endpoint": service_env("BQ_REST_ENDPOINT"),
            "bigquery.storage.endpoint": service_env("BQ_GRPC_ENDPOINT"),
            "offset.flush.interval.ms": "500",
        });
        for (k, v) in extra {
            config[*k] = json!(v);
        }
        let body = json!({ "name": self.name, "config": config }).to_string();
        let (code, reply) = worker.request("POST", "/connectors", Some(&body));
        assert!(code == 201, "creating {}: HTTP {code} {reply}\nworker log:\n{}", self.name, tail(worker));
    }

    fn wait_committed(&self, worker: &WorkerProcess, end: i64) {
        let deadline = Instant::now() + TIMEOUT;
        for p in 0..PARTITIONS {
            loop {
                let committed = committed_offset(&self.group, &self.topic, p);
                if committed == Some(end) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} committed {committed:?} on {}/{p}, not {end}\nworker log:\n{}",
                    self.group,
                    self.topic,
                    tail(worker)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn tail(worker: &WorkerProcess) -> String {
    let log = worker.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[test]
fn records_are_committed_per_interval_exactly_once() {
    let _serial = serial();
    // Records per partition; more for a measurement.
    let count: i64 = std::env::var("SLUICE_BQ_E2E_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let case = Case::new("bqb-once");
    produce(&case.topic, 0, count);
    let started = Instant::now();
    let worker =
        WorkerProcess::start(&unique("bqb-once-cluster"), &[], &[("SLUICE_BQ_TEST_COMMIT_INTERVAL_MS", INTERVAL_MS)]);
    case.create(&worker, &[]);
    case.wait_committed(&worker, count);
    eprintln!(
        "{} records over {PARTITIONS} partitions committed in {:.1} s (commit interval {INTERVAL_MS} ms)",
        count * PARTITIONS as i64,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(census(&case.dataset), exactly_once(count));
    // The committed offset carries the sealed stream's note.
    let (_, note) = committed_with_metadata(&case.group, &case.topic, 0).unwrap();
    let fields: Vec<&str> = note.split(' ').collect();
    let end = count.to_string();
    assert_eq!((fields[0], fields.get(3).copied()), ("bqb1", Some(end.as_str())), "sealed up to {count}: {note}");
    // A second interval: new streams, the same table.
    produce(&case.topic, count, count + 500);
    case.wait_committed(&worker, count + 500);
    assert_eq!(census(&case.dataset), exactly_once(count + 500));
}

/// The worker dies at `point` (once: the mark file stops it firing again),
/// a new worker process takes over, and every record is in the table once.
fn killed_at(point: &str) {
    let _serial = serial();
    let count = 1_000;
    let case = Case::new(&format!("bqb-kill-{point}"));
    produce(&case.topic, 0, count);
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("fired");
    let mark_text = mark.to_string_lossy().to_string();
    let fault = format!("{point}@1");
    let envs = [
        ("SLUICE_BQ_FAULT", fault.as_str()),
        ("SLUICE_BQ_FAULT_MARK", mark_text.as_str()),
        ("SLUICE_BQ_TEST_COMMIT_INTERVAL_MS", INTERVAL_MS),
    ];
    let mut worker = WorkerProcess::start(&unique("bqb-kill-cluster"), &[], &envs);
    // mid-append: small append requests, so a put takes several.
    let extra: &[(&str, &str)] = if point == "mid-append" { &[("bigquery.append.max.bytes", "4096")] } else { &[] };
    case.create(&worker, extra);
    wait_until(&format!("the worker to die at {point}; log:\n{}", tail(&worker)), TIMEOUT, || {
        Path::new(&mark).exists().then_some(())
    });
    worker.restart();
    case.wait_committed(&worker, count);
    assert_eq!(census(&case.dataset), exactly_once(count), "after a kill at {point}");
}

#[test]
fn killed_mid_append_then_restarted_writes_every_record_once() {
    killed_at("mid-append");
}

#[test]
fn killed_after_the_note_before_the_batch_commit_then_restarted_writes_every_record_once() {
    killed_at("after-note");
}

#[test]
fn killed_after_the_batch_commit_before_the_offset_commit_then_restarted_writes_every_record_once() {
    killed_at("after-batch-commit");
}

/// The worker's process state letter from /proc (`T`: stopped).
fn process_state(worker: &WorkerProcess) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", worker.pid()?)).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

fn signal(worker: &WorkerProcess, name: &str) {
    let pid = worker.pid().expect("a running worker");
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Continues a stopped worker even when an assertion fails.
struct Stopped<'a>(&'a WorkerProcess);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn task_worker(asked: &WorkerProcess, name: &str) -> Option<(String, String)> {
    let (code, status) = asked.get(&format!("/connectors/{name}/status"));
    let task: &Value = status["tasks"].as_array().filter(|_| code == 200)?.first()?;
    Some((task["worker_id"].as_str()?.to_string(), task["state"].as_str()?.to_string()))
}

/// The owner pauses itself (SIGSTOP, the sink's test-only fault action)
/// right after its streams were noted as sealed, before its
/// BatchCommitWriteStreams; the other worker of the cluster takes the task
/// over; then the paused worker is continued and goes on into its late
/// commit. Whatever order the two commits land in, every record is in the
/// table once.
#[test]
fn a_worker_paused_between_its_note_and_its_batch_commit_doubles_nothing() {
    let _serial = serial();
    let case = Case::new("bqb-pause");
    produce(&case.topic, 0, 1_000);
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("fired");
    let mark_text = mark.to_string_lossy().to_string();
    let envs = [
        ("SLUICE_BQ_FAULT", "after-note@1"),
        ("SLUICE_BQ_FAULT_ACTION", "stop"),
        ("SLUICE_BQ_FAULT_MARK", mark_text.as_str()),
        ("SLUICE_BQ_TEST_COMMIT_INTERVAL_MS", INTERVAL_MS),
    ];
    let cluster = unique("bqb-pause-cluster");
    let a = WorkerProcess::start(&cluster, &[], &envs);
    let b = WorkerProcess::start(&cluster, &[], &envs);
    case.create(&a, &[]);
    let (owner, other) = wait_until("a worker to stop itself after its note", TIMEOUT, || {
        if !mark.exists() {
            return None;
        }
        match (process_state(&a), process_state(&b)) {
            (Some('T'), _) => Some((&a, &b)),
            (_, Some('T')) => Some((&b, &a)),
            _ => None,
        }
    });
    let stopped = Stopped(owner);
    produce(&case.topic, 1_000, 1_500);
    wait_until(&format!("the other worker to run the task; its log:\n{}", tail(other)), TIMEOUT, || {
        (task_worker(other, &case.name)? == (other.worker_id(), "RUNNING".to_string())).then_some(())
    });
    drop(stopped);
    case.wait_committed(other, 1_500);
    assert!(owner.log_text().contains("the worker was continued"), "{}", tail(owner));
    assert_eq!(census(&case.dataset), exactly_once(1_500));
    // Which order the commits took, for the reader of the test's output.
    for (who, w) in [("paused", owner), ("other", other)] {
        for line in w.log_text().lines().filter(|l| {
            ["fault point", "sealed", "fenced", "BatchCommit", "not committing"].iter().any(|k| l.contains(k))
        }) {
            eprintln!("{who}: {line}");
        }
    }
}
