//! `dev/bench --sink salesforce`: records/s, CPU and RSS of one
//! salesforce-sink task through a real worker, against the in-process
//! Salesforce fake (`sluice_tests::salesforce`) answering every data call
//! after `--latency-ms` (no Salesforce server runs locally). One run per
//! `--in-flight` value through sObject Collections, then one through Bulk
//! API 2.0 jobs, all on the same data set (`--customers` × `--versions`
//! upserts by External ID in one partition); each run must end with exactly
//! the last version of every customer in the fake.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use sluice_bench::{
    kafka::{self, now_ms, CommittedReader, Producing},
    procstat, provenance,
    worker::{Poll, Worker},
};
use sluice_tests::salesforce::{Logged, SalesforceFake};

use crate::Args;
use sluice_bench::procstat::services_env as env;

const OBJECT: &str = "Contact";
const EXTERNAL_ID: &str = "Customer_Id__c";
const FIELDS: [&str; 3] = ["LastName", "Email", "Version__c"];

/// How one run writes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// sObject Collections with this many requests in flight.
    Collections(u32),
    /// Bulk API 2.0 ingest jobs.
    Bulk,
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Collections(n) => format!("collections-{n}"),
            Mode::Bulk => "bulk".into(),
        }
    }

    fn describe(self) -> String {
        match self {
            Mode::Collections(n) => format!("sObject Collections, {n} in flight"),
            Mode::Bulk => "Bulk API 2.0 jobs".into(),
        }
    }
}

/// What the fake's request log says about one run.
#[derive(Debug, Default, PartialEq)]
struct Calls {
    /// sObject Collections requests answered 200.
    collections: usize,
    /// The most records one of them held.
    max_records: usize,
    /// Requests that held one External ID twice (Salesforce refuses both).
    with_duplicates: usize,
    /// Every data call (collections, Bulk job calls, limits).
    data_calls: usize,
}

fn calls(log: &[Logged]) -> Calls {
    let mut c = Calls { data_calls: log.len(), ..Calls::default() };
    for l in log.iter().filter(|l| l.path.contains("/composite/sobjects") && l.status == 200) {
        c.collections += 1;
        c.max_records = c.max_records.max(l.keys.len());
        let distinct: HashSet<&String> = l.keys.iter().collect();
        if distinct.len() != l.keys.len() {
            c.with_duplicates += 1;
        }
    }
    c
}

/// Whether the fake holds exactly `customers` records, each at `version`
/// (sObject Collections store the JSON number, Bulk CSV the text).
fn check_last_versions(all: &HashMap<String, Map<String, Value>>, customers: u64, version: u64) -> Result<(), String> {
    if all.len() as u64 != customers {
        return Err(format!("the fake holds {} records, not {customers}", all.len()));
    }
    let stale = all
        .iter()
        .filter(|(_, r)| match &r["Version__c"] {
            Value::Number(n) => n.as_u64() != Some(version),
            Value::String(s) => s.parse::<u64>().ok() != Some(version),
            _ => true,
        })
        .count();
    if stale > 0 {
        return Err(format!("{stale} records are not at version {version}"));
    }
    Ok(())
}

/// One measured run.
struct Run {
    mode: Mode,
    records: u64,
    seconds: f64,
    worker_cpu: f64,
    /// This process: the fake's threads (and the committed-offset reader).
    harness_cpu: f64,
    peak_rss_mib: f64,
    calls: Calls,
    bulk_jobs: usize,
    load: String,
}

impl Run {
    fn rps(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn cpu_per_m(&self) -> f64 {
        self.worker_cpu / (self.records as f64 / 1e6)
    }
}

struct Env {
    bootstrap: String,
    bin: PathBuf,
    plugin_dir: PathBuf,
    work: tempfile::TempDir,
    run_id: String,
    topic: String,
    end: i64,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let bin = args.build_dir.join("sluice");
    let plugin = args.build_dir.join(format!(
        "{}sluice_salesforce_sink{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    for p in [&bin, &plugin] {
        if !p.exists() {
            bail!("{} is missing: build with `cargo build --release --workspace` (dev/bench does)", p.display());
        }
    }
    if args.customers == 0 || args.versions == 0 {
        bail!("--customers and --versions must be at least 1");
    }
    let work = tempfile::Builder::new().prefix("sluice-bench-sf-").tempdir().context("creating a temp dir")?;
    // Only the salesforce-sink in the plugin path.
    let plugin_dir = work.path().join("plugins");
    fs::create_dir_all(&plugin_dir)?;
    let plugin_abs = fs::canonicalize(&plugin)?;
    std::os::unix::fs::symlink(&plugin_abs, plugin_dir.join(plugin_abs.file_name().unwrap_or_default()))
        .context("linking the plugin")?;
    let run_id = format!("{}-{}", now_ms() / 1000 % 100_000_000, std::process::id());
    let mut env = Env {
        bootstrap: env("KAFKA_BOOTSTRAP")?,
        bin,
        plugin_dir,
        work,
        topic: format!("bench-sf-{run_id}"),
        run_id,
        end: 0,
    };
    let mut topics = vec![env.topic.clone()];
    let result = measure(args, &mut env, &mut topics);
    eprintln!("[bench] cleaning up topics");
    kafka::delete_topics(&env.bootstrap, &topics);
    result
}

fn measure(args: &Args, env: &mut Env, topics: &mut Vec<String>) -> anyhow::Result<()> {
    let records = args.customers * args.versions;
    eprintln!(
        "[bench] salesforce: {} customers × {} versions = {records} records into topic {} (one partition)",
        args.customers, args.versions, env.topic
    );
    kafka::create_topic(&env.bootstrap, &env.topic, 1)?;
    let mut producing = Producing::new(&env.bootstrap, &env.topic, 0, false)?;
    let started = Instant::now();
    let mut value = String::new();
    for v in 1..=args.versions {
        for c in 0..args.customers {
            let uid = format!("C-{c:07}");
            value.clear();
            let _ = write!(
                value,
                "{}",
                json!({"uid": uid, "LastName": format!("Customer {c}"), "Email": format!("c{c}@example.test"), "Version__c": v})
            );
            producing.send_value(0, &uid, &value)?;
        }
    }
    let produced = producing.finish(started)?;
    env.end = produced.ends.first().copied().unwrap_or(0);
    if env.end as u64 != records {
        bail!("produced {records} records but partition 0 ends at {}", env.end);
    }
    let mut modes: Vec<Mode> = args.in_flight.iter().map(|n| Mode::Collections(*n)).collect();
    if !args.no_bulk {
        modes.push(Mode::Bulk);
    }
    let mut runs = Vec::new();
    for mode in modes {
        runs.push(one_run(args, env, topics, mode)?);
    }
    write_results(args, &runs)
}

fn connector_config(args: &Args, fake: &SalesforceFake, topic: &str, mode: Mode) -> Value {
    let mut c = Map::new();
    for (k, v) in fake.config() {
        c.insert(k.to_string(), v.into());
    }
    let common = [
        ("connector.class", "salesforce-sink".to_string()),
        ("topics", topic.to_string()),
        ("salesforce.field.mapping", format!("uid:{EXTERNAL_ID}")),
        // The end of the run is seen through committed offsets: commit often.
        ("offset.flush.interval.ms", "1000".to_string()),
    ];
    let own: Vec<(&str, String)> = match mode {
        Mode::Collections(n) => vec![
            ("salesforce.max.in.flight.requests", n.to_string()),
            // Ten requests of 200 per put: enough for 4 in flight to overlap.
            ("consumer.max.poll.records", "2000".to_string()),
        ],
        Mode::Bulk => vec![
            ("salesforce.bulk.threshold", "1000".to_string()),
            ("salesforce.bulk.poll.ms", args.bulk_poll_ms.to_string()),
            ("consumer.max.poll.records", "10000".to_string()),
        ],
    };
    for (k, v) in common.into_iter().chain(own) {
        c.insert(k.to_string(), v.into());
    }
    for (k, v) in &args.sink {
        c.insert(k.clone(), v.clone().into());
    }
    Value::Object(c)
}

fn one_run(args: &Args, env: &Env, topics: &mut Vec<String>, mode: Mode) -> anyhow::Result<Run> {
    let load = procstat::load_average();
    let label = mode.label();
    eprintln!("[bench] salesforce, {}: starting a worker (load {load})", mode.describe());
    let fake = SalesforceFake::start(OBJECT, EXTERNAL_ID, &FIELDS);
    fake.set_latency(Duration::from_millis(args.latency_ms));
    fake.set_job_polls(args.bulk_job_polls);
    let cluster = format!("bench-sf-{}-{label}", env.run_id);
    for t in ["configs", "status", "offsets"] {
        topics.push(format!("{cluster}-{t}"));
    }
    let log = env.work.path().join(format!("worker-{label}.log"));
    let mut worker = Worker::start(&env.bin, &env.plugin_dir, &env.bootstrap, &cluster, &args.worker_kafka, log)?;
    let pid = worker.pid();
    let name = format!("bench-sf-{label}");
    let reader = CommittedReader::new(&env.bootstrap, &format!("connect-{name}"), &env.topic)?;
    let cpu = |p: u32| procstat::cpu_seconds(p).unwrap_or(0.0);
    let (w0, h0) = (cpu(pid), cpu(std::process::id()));
    let started = Instant::now();
    worker.create_connector(&name, &connector_config(args, &fake, &env.topic, mode))?;
    worker.run_until(&name, started, Duration::from_millis(100), || {
        let committed = reader.committed()?.first().copied().unwrap_or(-1);
        Ok(if committed >= env.end {
            Poll::Done(())
        } else {
            Poll::Pending(format!("committed {} of {}", committed.max(0), env.end))
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let (worker_cpu, harness_cpu) = (cpu(pid) - w0, cpu(std::process::id()) - h0);
    let peak_rss_mib = procstat::status_mib(pid, "VmHWM")?;
    worker.stop(Duration::from_secs(25));
    if let Err(e) = check_last_versions(&fake.all(), args.customers, args.versions) {
        bail!("{label}: {e}");
    }
    let calls = calls(&fake.requests());
    if calls.with_duplicates > 0 || calls.max_records > 200 {
        bail!("{label}: a request held more than 200 records or one External ID twice: {calls:?}");
    }
    let run = Run {
        mode,
        records: env.end as u64,
        seconds,
        worker_cpu,
        harness_cpu,
        peak_rss_mib,
        calls,
        bulk_jobs: fake.bulk_jobs().len(),
        load,
    };
    eprintln!(
        "[bench]   {:.0} records/s, peak RSS {:.0} MiB, worker CPU {:.1} s ({:.1} s per million records)",
        run.rps(),
        run.peak_rss_mib,
        run.worker_cpu,
        run.cpu_per_m()
    );
    Ok(run)
}

fn write_results(args: &Args, runs: &[Run]) -> anyhow::Result<()> {
    let commit = provenance::commit();
    let dirty = provenance::dirty(&["runtime", "connectors/salesforce-sink", "connector-api"]);
    let now = chrono::Utc::now();
    let machine = procstat::machine();
    let command = format!("dev/bench {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(if args.tiny { "target/bench-tiny" } else { "bench/results" }));
    let mut md = String::new();
    let _ = writeln!(md, "# Kafka → Salesforce benchmark (fake), {}\n", now.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        md,
        "- command: `{command}`\n- commit `{commit}`{}; binaries from `{}`\n- machine: {} cores ({}), {} MiB memory, kernel {}\n- data: {} customers × {} versions = {} upserts by External ID ({EXTERNAL_ID}) of {OBJECT}, one partition, one task; every run ends with exactly the last version of each customer in the fake (checked), no request over 200 records or with an External ID twice (checked)\n- the Salesforce fake (`tests/src/salesforce.rs`) runs inside this harness and answers every data call after {} ms; Bulk jobs answer InProgress for {} polls after closing, polled every {} ms (a stand-in: real jobs take minutes, so the Bulk rate here is the sink's, not Salesforce's)\n- records/s: from connector creation until the committed offset reaches the end (commit interval 1 s), so it includes the group join; CPU: user+system seconds from /proc/<pid>/stat; harness CPU is this process, which runs the fake\n- extra sink settings: {}\n",
        if dirty { " (with uncommitted changes in runtime/ or connectors/salesforce-sink/)" } else { "" },
        args.build_dir.display(),
        machine.cores,
        machine.cpu_model,
        machine.memory_mib,
        machine.kernel,
        args.customers,
        args.versions,
        args.customers * args.versions,
        args.latency_ms,
        args.bulk_job_polls,
        args.bulk_poll_ms,
        if args.sink.is_empty() {
            "(none)".to_string()
        } else {
            args.sink.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        },
    );
    let _ = writeln!(md, "| run | records/s | seconds | collections requests | max records / request | Bulk jobs | data calls | worker CPU s | worker CPU s / M rec | worker peak RSS MiB | harness (fake) CPU s | load before |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | **{:.0}** | {:.1} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
            r.mode.describe(),
            r.rps(),
            r.seconds,
            r.calls.collections,
            r.calls.max_records,
            r.bulk_jobs,
            r.calls.data_calls,
            r.worker_cpu,
            r.cpu_per_m(),
            r.peak_rss_mib,
            r.harness_cpu,
            r.load
        );
    }
    let one = runs.iter().find(|r| r.mode == Mode::Collections(1));
    if let Some(one) = one {
        let _ = writeln!(md);
        for r in runs.iter().filter(|r| r.mode != one.mode) {
            let _ = writeln!(md, "- {} / 1 in flight: {:.2}×", r.mode.describe(), r.rps() / one.rps());
        }
    }
    let doc = json!({
        "date": now.to_rfc3339(),
        "command": command,
        "commit": commit,
        "uncommitted_changes_in_measured_code": dirty,
        "build_dir": args.build_dir.display().to_string(),
        "machine": { "cores": machine.cores, "memory_mib": machine.memory_mib, "cpu": machine.cpu_model, "kernel": machine.kernel },
        "parameters": {
            "customers": args.customers, "versions": args.versions, "latency_ms": args.latency_ms,
            "bulk_poll_ms": args.bulk_poll_ms, "bulk_job_polls": args.bulk_job_polls,
            "sink": args.sink.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "runs": runs.iter().map(|r| json!({
            "run": r.mode.describe(), "records": r.records, "seconds": r.seconds, "records_per_s": r.rps(),
            "collections_requests": r.calls.collections, "max_records_per_request": r.calls.max_records,
            "bulk_jobs": r.bulk_jobs, "data_calls": r.calls.data_calls,
            "worker_cpu_seconds": r.worker_cpu, "worker_cpu_seconds_per_million_records": r.cpu_per_m(),
            "worker_peak_rss_mib": r.peak_rss_mib, "harness_cpu_seconds": r.harness_cpu, "load_before": r.load,
        })).collect::<Vec<_>>(),
    });
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut stem =
        format!("{}-{}-salesforce", now.format("%Y-%m-%d"), if commit.is_empty() { "nocommit" } else { &commit });
    if out_dir.join(format!("{stem}.md")).exists() {
        stem = format!("{stem}-{}", now.format("%H%M%S"));
    }
    let (md_path, json_path) = (out_dir.join(format!("{stem}.md")), out_dir.join(format!("{stem}.json")));
    fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{md}");
    eprintln!("[bench] results: {} and {}", md_path.display(), json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(path: &str, keys: &[&str], status: u16) -> Logged {
        Logged { method: "PATCH".into(), path: path.into(), keys: keys.iter().map(|k| k.to_string()).collect(), status }
    }

    #[test]
    fn the_request_log_counts_collections_their_size_and_duplicate_ids() {
        let up = "/services/data/v62.0/composite/sobjects/Contact/Customer_Id__c";
        let log = [
            logged(up, &["C-1", "C-2", "C-3"], 200),
            logged(up, &["C-4", "C-4"], 200),
            logged(up, &[], 403),
            logged("/services/data/v62.0/limits", &[], 200),
        ];
        assert_eq!(calls(&log), Calls { collections: 2, max_records: 3, with_duplicates: 1, data_calls: 4 });
    }

    #[test]
    fn the_final_state_must_hold_every_customer_at_the_last_version() {
        let rec = |v: Value| -> Map<String, Value> { [("Version__c".to_string(), v)].into_iter().collect() };
        let mut all: HashMap<String, Map<String, Value>> =
            [("C-1".to_string(), rec(json!(3))), ("C-2".to_string(), rec(json!("3")))].into_iter().collect();
        assert_eq!(check_last_versions(&all, 2, 3), Ok(()));
        assert!(check_last_versions(&all, 3, 3).unwrap_err().contains("holds 2 records, not 3"));
        all.insert("C-3".into(), rec(json!(2)));
        assert!(check_last_versions(&all, 3, 3).unwrap_err().contains("1 records are not at version 3"));
    }
}
