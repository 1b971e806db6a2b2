//! A paused worker (SIGSTOP for longer than the takeover time) is fenced on
//! wake: it stops the tasks it ran without committing or writing anything
//! for them, publishes no status meanwhile, and rejoins; the other worker's
//! takeover stands and every record reaches the sink once.

use std::{
    collections::BTreeMap,
    fs,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{committed_offset, create_topic, produce, unique, wait_until, WorkerProcess};

/// Offsets in the file sink's output (third tab field), with how often each appears.
fn offsets_in(path: &std::path::Path) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some(o) = line.split('\t').nth(2).and_then(|o| o.parse::<i64>().ok()) {
            *counts.entry(o).or_insert(0) += 1;
        }
    }
    counts
}

fn produce_batch(topic: &str, from: usize, n: usize) {
    let values: Vec<String> = (from..from + n).map(|i| format!("value-{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), Some(v.as_str()))).collect();
    produce(topic, 0, &records);
}

fn signal(worker: &WorkerProcess, name: &str) {
    let pid = worker.pid().expect("a running worker");
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// The worker the task's status names, as `asked` answers it.
fn task_worker(asked: &WorkerProcess, name: &str) -> Option<(String, String)> {
    let (code, status) = asked.get(&format!("/connectors/{name}/status"));
    let task: &Value = status["tasks"].as_array().filter(|_| code == 200)?.first()?;
    Some((task["worker_id"].as_str()?.to_string(), task["state"].as_str()?.to_string()))
}

/// The wall-clock time as the worker's log prints it (RFC 3339, UTC).
fn humantime_utc() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = (now.as_secs(), now.subsec_micros());
    let rem = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Polls `done` until it holds (true) or `timeout` passes (false).
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Continues a stopped worker even when an assertion fails, so its `Drop`
/// (SIGKILL) and the log read by a failure message see a normal process.
struct Stopped<'a>(&'a WorkerProcess);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

#[test]
fn a_worker_paused_past_the_takeover_stops_its_tasks_on_wake_and_the_new_owner_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let cluster = unique("pause");
    let topic = unique("pause-in");
    create_topic(&topic, 1);
    // Both workers run with the harness's 6 s session timeout: a worker is
    // taken over 6 s after its last heartbeat.
    let a = WorkerProcess::start(&cluster, &[], &[]);
    let b = WorkerProcess::start(&cluster, &[], &[]);
    let name = unique("pause-files");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink", "topics": topic, "file": out.to_string_lossy(),
        "tasks.max": "1", "offset.flush.interval.ms": "200",
    }});
    assert_eq!(a.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    let group = format!("connect-{name}");

    const BATCH: usize = 200;
    produce_batch(&topic, 0, BATCH);
    wait_until("the first batch to be written and committed", Duration::from_secs(90), || {
        (offsets_in(&out).len() == BATCH && committed_offset(&group, &topic, 0) == Some(BATCH as i64)).then_some(())
    });
    let (owner_id, _) = wait_until("the task's status", Duration::from_secs(30), || {
        task_worker(&a, &name).filter(|(_, state)| state == "RUNNING")
    });
    let (owner, other) = if owner_id == a.worker_id() { (&a, &b) } else { (&b, &a) };
    assert_eq!(owner_id, owner.worker_id(), "the task runs on one of the two workers");

    // Freeze the owner until the other worker visibly runs the task. (Not
    // until it also consumed: the test broker may keep a frozen member in
    // the group past its session, so the partition may only move once the
    // frozen worker's task ended.)
    let stopped = Stopped(owner);
    signal(owner, "STOP");
    produce_batch(&topic, BATCH, BATCH);
    let mut last = None;
    let took_over = wait_for(Duration::from_secs(60), || {
        last = task_worker(other, &name);
        last == Some((other.worker_id(), "RUNNING".to_string()))
    });
    assert!(took_over, "the other worker did not take the task over: {last:?}; its log:\n{}", other.log_text());
    let woken = humantime_utc();
    drop(stopped);

    // On wake the owner sees the gap, stops its task without writing or
    // committing anything for it, and rejoins only after that.
    wait_until(
        &format!("the resumed worker to fence itself; its log:\n{}", owner.log_text()),
        Duration::from_secs(60),
        || owner.log_text().contains("worker fenced after a pause").then_some(()),
    );
    wait_until("the resumed worker to rejoin", Duration::from_secs(60), || {
        let (worker, state) = task_worker(other, &name)?;
        let log = owner.log_text();
        // Until it rejoined, the resumed worker publishes nothing: the task's
        // status keeps naming the new owner.
        if worker == owner.worker_id() {
            assert!(
                log.contains("worker rejoined the cluster after being fenced"),
                "a status of the fenced worker ({state}); its log:\n{log}"
            );
        }
        log.contains("worker rejoined the cluster after being fenced").then_some(())
    });
    let log = owner.log_text();
    let fenced_at = log.find("worker fenced after a pause").unwrap();
    let rejoined_at = log.find("worker rejoined the cluster after being fenced").unwrap();
    assert!(fenced_at < rejoined_at, "fenced, then rejoined; log:\n{log}");
    assert!(
        !log[fenced_at..rejoined_at].contains("task starting"),
        "no task starts on the fenced worker before it rejoined; log:\n{log}"
    );

    // For the window the README states: when the worker woke, and when it
    // fenced itself and its task ended (the log's own times).
    eprintln!("SIGCONT at {woken}; the resumed worker's log after it:");
    let from = log[..fenced_at].rfind('\n').map_or(0, |i| i + 1);
    for line in
        log[from..].lines().filter(|l| l.contains("fenced") || l.contains("task ended") || l.contains("rejoined"))
    {
        eprintln!("  {line}");
    }

    wait_until("the second batch to be written and committed", Duration::from_secs(120), || {
        (offsets_in(&out).len() == 2 * BATCH && committed_offset(&group, &topic, 0) == Some(2 * BATCH as i64))
            .then_some(())
    });

    // The takeover stands: nothing the old task did after it is in the
    // output (each record once), and the cluster goes on delivering.
    produce_batch(&topic, 2 * BATCH, BATCH);
    wait_until("the third batch to be written and committed", Duration::from_secs(120), || {
        (offsets_in(&out).len() == 3 * BATCH && committed_offset(&group, &topic, 0) == Some(3 * BATCH as i64))
            .then_some(())
    });
    let seen = offsets_in(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(o, _)| *o).collect();
    assert!(twice.is_empty(), "offsets written more than once: {twice:?}");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..3 * BATCH as i64).collect::<Vec<_>>());
    let (worker, state) = wait_until("the task's status after the third batch", Duration::from_secs(30), || {
        task_worker(&a, &name).filter(|(_, state)| state == "RUNNING")
    });
    assert!(worker == a.worker_id() || worker == b.worker_id(), "{worker} {state}");
}
