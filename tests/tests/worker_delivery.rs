//! Delivery through a real worker and broker: exactly-once results with a
//! flaky sink, the DLQ with its headers, the commit never passing an
//! unsettled record, crashes (`kill -9`), two workers, source resumption and
//! a panicking plugin.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::Duration,
};

use serde_json::json;
use sluice_tests::{committed_offset, consume, create_topic, header, produce, unique, wait_until, WorkerProcess};

/// Offsets in the flaky/file sink's output file (third column for the flaky
/// sink, third tab field for the file sink), with how often each appears.
fn offsets_in(path: &std::path::Path, separator: char) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some(o) = line.split(separator).nth(2).and_then(|o| o.parse::<i64>().ok()) {
            *counts.entry(o).or_insert(0) += 1;
        }
    }
    counts
}

fn values(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("value-{i}")).collect()
}

fn produce_n(topic: &str, n: usize) {
    let values = values(n);
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (Some("k"), Some(v.as_str()))).collect();
    for chunk in records.chunks(1000) {
        produce(topic, 0, chunk);
    }
}

#[test]
fn failures_go_to_the_dlq_and_the_commit_never_passes_an_unsettled_record() {
    let dir = tempfile::tempdir().unwrap();
    let durable = dir.path().join("durable.txt");
    let topic = unique("flaky-in");
    let dlq = unique("flaky-dlq");
    create_topic(&topic, 1);
    const N: i64 = 2000;
    produce_n(&topic, N as usize);

    let w = WorkerProcess::start(&unique("delivery"), &[], &[]);
    let name = unique("flaky");
    let body = json!({"name": name, "config": {
        "connector.class": "test-flaky-sink",
        "topics": topic,
        "file": durable.to_string_lossy(),
        "errors.tolerance": "all",
        "errors.retry.timeout": "60000",
        "errors.retry.delay.max.ms": "100",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
        "offset.flush.interval.ms": "200",
        "consumer.max.poll.records": "50",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let bad: BTreeSet<i64> = (0..N).filter(|o| (o + 1) % 11 == 0).collect();
    let group = format!("connect-{name}");
    // Sample commits while the task runs: at each, every offset below the
    // commit is durable in the sink or acknowledged in the DLQ.
    let mut samples = 0;
    let final_commit = wait_until("the group to commit the end of the topic", Duration::from_secs(120), || {
        let committed = committed_offset(&group, &topic, 0);
        if let Some(c) = committed {
            let sink = offsets_in(&durable, ' ');
            let dlq_count = bad.iter().filter(|o| **o < c).count();
            let in_dlq: BTreeSet<i64> = if dlq_count > 0 {
                consume(&dlq, 1, dlq_count, Duration::from_secs(30))
                    .iter()
                    .filter_map(|m| header(m, "__connect.errors.offset").and_then(|o| o.parse().ok()))
                    .collect()
            } else {
                BTreeSet::new()
            };
            for o in 0..c {
                assert!(
                    sink.contains_key(&o) || in_dlq.contains(&o),
                    "committed offset {c} passes offset {o}, which is neither durable in the sink nor in the DLQ"
                );
            }
            samples += 1;
        }
        (committed == Some(N)).then_some(N)
    });
    assert_eq!(final_commit, N);
    assert!(samples > 0);

    // Every good record exactly once; every bad one in the DLQ with its headers.
    let sink = offsets_in(&durable, ' ');
    let good: BTreeSet<i64> = (0..N).filter(|o| !bad.contains(o)).collect();
    assert_eq!(sink.keys().copied().collect::<BTreeSet<_>>(), good);
    let duplicates: usize = sink.values().map(|c| c - 1).sum();
    assert_eq!(duplicates, 0, "records delivered more than once");
    let dead = consume(&dlq, 1, bad.len(), Duration::from_secs(30));
    let dead_offsets: BTreeSet<i64> =
        dead.iter().map(|m| header(m, "__connect.errors.offset").unwrap().parse().unwrap()).collect();
    assert_eq!(dead_offsets, bad);
    let first = &dead[0];
    assert_eq!(header(first, "__connect.errors.topic").as_deref(), Some(topic.as_str()));
    assert_eq!(header(first, "__connect.errors.partition").as_deref(), Some("0"));
    assert_eq!(header(first, "__connect.errors.connector.name").as_deref(), Some(name.as_str()));
    assert_eq!(header(first, "__connect.errors.task.id").as_deref(), Some("0"));
    assert_eq!(header(first, "__connect.errors.stage").as_deref(), Some("TASK_PUT"));
    assert_eq!(header(first, "__connect.errors.class.name").as_deref(), Some("test-flaky-sink"));
    assert_eq!(header(first, "__connect.errors.exception.class.name").as_deref(), Some("BadRecord"));
    assert!(header(first, "__connect.errors.exception.message").unwrap().contains("bad by schedule"));
    assert!(header(first, "__connect.errors.exception.stacktrace").is_some());
    use rdkafka::Message;
    assert_eq!(first.payload(), Some(b"value-10".as_slice()), "the DLQ keeps the original value");

    let metrics = ureq::get(&format!("{}/metrics", w.url)).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(
        metrics.contains(&format!("sluice_records_dlq_total{{connector=\"{name}\",task=\"0\"}} {}", bad.len())),
        "{metrics}"
    );
    // Consumer lag drains to zero once everything is committed.
    wait_until("the consumer lag gauge to read 0", Duration::from_secs(30), || {
        let m = ureq::get(&format!("{}/metrics", w.url)).call().ok()?.body_mut().read_to_string().ok()?;
        m.lines()
            .any(|l| {
                l.starts_with("sluice_consumer_lag{") && l.contains(&name) && l.contains(&topic) && l.ends_with(" 0")
            })
            .then_some(())
    });
}

#[test]
fn without_tolerance_a_bad_record_fails_the_task_with_its_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("strict-in");
    create_topic(&topic, 1);
    produce_n(&topic, 20);
    let w = WorkerProcess::start(&unique("strict"), &["--task-restart-backoff-ms", "0"], &[]);
    let name = unique("strict");
    let body = json!({"name": name, "config": {
        "connector.class": "test-flaky-sink", "topics": topic,
        "file": dir.path().join("d.txt").to_string_lossy(), "fail.retriable.every": "1000",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    let status = w.wait_tasks_state(&name, 1, "FAILED", Duration::from_secs(60));
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains(&format!("topic {topic} partition 0 offset 10")), "{trace}");
    assert!(trace.contains("errors.tolerance"), "the trace says what to do: {trace}");
    // Nothing past the failed record was committed.
    assert!(committed_offset(&format!("connect-{name}"), &topic, 0).unwrap_or(0) <= 10);
}

#[test]
fn a_worker_killed_mid_stream_loses_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let topic = unique("crash-in");
    create_topic(&topic, 1);
    const N: i64 = 20_000;
    produce_n(&topic, N as usize);
    let mut w = WorkerProcess::start(&unique("crash"), &[], &[]);
    let name = unique("crash-files");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink", "topics": topic, "file": out.to_string_lossy(),
        "offset.flush.interval.ms": "100", "consumer.max.poll.records": "100",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    wait_until("some records to be written", Duration::from_secs(60), || {
        (offsets_in(&out, '\t').len() > 100).then_some(())
    });
    w.kill();
    let before = offsets_in(&out, '\t').len();
    w.restart();
    wait_until("every record to be written after the restart", Duration::from_secs(120), || {
        (offsets_in(&out, '\t').len() == N as usize).then_some(())
    });
    let seen = offsets_in(&out, '\t');
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..N).collect::<Vec<_>>(), "no offset is missing");
    assert!(before < N as usize, "the kill happened mid-stream ({before} of {N} written)");
    wait_until("the commit to reach the end", Duration::from_secs(60), || {
        (committed_offset(&format!("connect-{name}"), &topic, 0) == Some(N)).then_some(())
    });
}

#[test]
fn two_workers_share_a_cluster_and_take_over_from_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let cluster = unique("pair");
    let topic = unique("pair-in");
    create_topic(&topic, 4);
    let mut a = WorkerProcess::start(&cluster, &[], &[]);
    let b = WorkerProcess::start(&cluster, &[], &[]);
    let name = unique("pair-files");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink", "topics": topic, "file": out.to_string_lossy(),
        "tasks.max": "4", "offset.flush.interval.ms": "200",
    }});
    // Created through one worker, visible and running through the other.
    assert_eq!(a.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    assert_eq!(b.get(&format!("/connectors/{name}")).0, 200);
    let status = b.wait_tasks_state(&name, 4, "RUNNING", Duration::from_secs(60));
    let workers: BTreeSet<String> =
        status["tasks"].as_array().unwrap().iter().map(|t| t["worker_id"].as_str().unwrap().to_string()).collect();
    assert!(!workers.is_empty());

    const PER_PARTITION: usize = 500;
    for p in 0..4 {
        let v = values(PER_PARTITION);
        let records: Vec<(Option<&str>, Option<&str>)> = v.iter().map(|v| (None, Some(v.as_str()))).collect();
        produce(&topic, p, &records);
    }
    wait_until("some records to be written", Duration::from_secs(60), || {
        (!offsets_in(&out, '\t').is_empty()).then_some(())
    });
    a.kill();
    // Every task now runs on the survivor.
    wait_until("every task to run on the surviving worker", Duration::from_secs(30), || {
        let (_, s) = b.get(&format!("/connectors/{name}/status"));
        let tasks = s["tasks"].as_array()?.clone();
        (tasks.len() == 4 && tasks.iter().all(|t| t["state"] == "RUNNING" && t["worker_id"] == b.worker_id().as_str()))
            .then_some(())
    });
    // Nothing lost: every (partition, offset) appears.
    wait_until("every record to be written", Duration::from_secs(90), || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        let seen: BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let _topic = f.next()?;
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect();
        (seen.len() == 4 * PER_PARTITION).then_some(())
    });
}

#[test]
fn a_source_restarted_mid_stream_resumes_without_a_gap() {
    let topic = unique("counter-out");
    let mut w = WorkerProcess::start(&unique("source"), &[], &[]);
    let name = unique("counter");
    const MAX: usize = 3000;
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source", "topic": topic, "counter.max": MAX.to_string(),
        "counter.batch.size": "50", "counter.interval.ms": "5",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    wait_until("some offsets to be committed", Duration::from_secs(60), || {
        let (_, o) = w.get(&format!("/connectors/{name}/offsets"));
        (o["offsets"].as_array().is_some_and(|a| !a.is_empty())).then_some(())
    });
    w.kill();
    w.restart();
    wait_until("the source to reach its last number", Duration::from_secs(120), || {
        let (_, o) = w.get(&format!("/connectors/{name}/offsets"));
        (o["offsets"][0]["offset"]["n"] == (MAX - 1) as u64).then_some(())
    });
    let records = consume(&topic, 1, MAX, Duration::from_secs(60));
    use rdkafka::Message;
    let numbers: BTreeSet<u64> =
        records.iter().map(|m| String::from_utf8_lossy(m.payload().unwrap()).parse().unwrap()).collect();
    assert_eq!(numbers, (0..MAX as u64).collect::<BTreeSet<_>>(), "no number is missing");
}

#[test]
fn a_panicking_plugin_fails_only_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let topic = unique("panic-in");
    create_topic(&topic, 1);
    let w = WorkerProcess::start(&unique("panic"), &["--task-restart-backoff-ms", "0"], &[]);
    let panicky = unique("panicky");
    let files = unique("survivor");
    let p = json!({"name": panicky, "config": {"connector.class": "test-panicky-sink", "topics": topic}});
    let f = json!({"name": files, "config": {
        "connector.class": "example-file-sink", "topics": topic, "file": out.to_string_lossy(),
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&p.to_string())).0, 201);
    assert_eq!(w.request("POST", "/connectors", Some(&f.to_string())).0, 201);
    w.wait_tasks_state(&files, 1, "RUNNING", Duration::from_secs(60));
    produce(&topic, 0, &[(None, Some("panic")), (None, Some("after"))]);
    let status = w.wait_tasks_state(&panicky, 1, "FAILED", Duration::from_secs(60));
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("asked to panic by the record's value"), "{trace}");
    // The worker and the other connector keep running.
    wait_until("the other connector to write both records", Duration::from_secs(60), || {
        (offsets_in(&out, '\t').len() == 2).then_some(())
    });
    assert_eq!(w.get("/health").0, 200);
}

#[test]
fn sigterm_commits_settled_offsets_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let topic = unique("term-in");
    create_topic(&topic, 1);
    produce_n(&topic, 300);
    let mut w = WorkerProcess::start(&unique("term"), &[], &[]);
    let name = unique("term-files");
    // A long flush interval: only the shutdown commit can commit in time.
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink", "topics": topic, "file": out.to_string_lossy(),
        "offset.flush.interval.ms": "600000",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    wait_until("all records to be handed to the sink", Duration::from_secs(60), || {
        let (_, m) = (0, ureq::get(&format!("{}/metrics", w.url)).call().ok()?.body_mut().read_to_string().ok()?);
        m.contains(&format!("sluice_records_written_total{{connector=\"{name}\",task=\"0\"}} 300")).then_some(())
    });
    let status = w.terminate();
    assert!(status.success(), "exit status {status}");
    assert_eq!(committed_offset(&format!("connect-{name}"), &topic, 0), Some(300));
    assert_eq!(offsets_in(&out, '\t').len(), 300);
}
