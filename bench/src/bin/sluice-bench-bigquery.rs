//! `dev/bench --sink bigquery`: Kafka → BigQuery (STREAMING, exactly once)
//! on the local services. Produces N order-like JSON records into an
//! 8-partition topic, measures the emulator's own ceiling (a plain Storage
//! Write client appending the same rows to a COMMITTED stream, as the sink
//! does, one request at a time) and then a sluice worker with the
//! bigquery-sink on those records; writes markdown + JSON under
//! bench/results/ (target/bench-tiny/ with --tiny).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Map, Value};
use sluice_bench::procstat::cpu_seconds_or_zero as cpu;
use sluice_bench::{
    data,
    kafka::{self, now_ms, CommittedReader, PARTITIONS},
    procstat::{self, ThreadSampler},
    provenance,
    worker::{Poll, Worker},
};
use sluice_bigquery_sink::{
    encode::RowEncoder,
    rest::{BigQueryRest, TableId, TableOptions},
    schema::{self, TableSchema},
    storage::{proto::StreamType, AppendOutcome, StorageClient},
    streaming::cut_by_bytes,
};

/// Kafka → BigQuery benchmark on the local services (dev/services): the
/// emulator's ceiling and a sluice worker with the bigquery-sink
/// (STREAMING, exactly once) on the same rows.
#[derive(Parser, Debug)]
#[command(name = "sluice-bench-bigquery")]
struct Args {
    /// Records to produce (over 8 partitions).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Bytes per record (order-like JSON padded to this size).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// A quick check that the harness works: 4,000 records, results under target/.
    #[arg(long)]
    tiny: bool,
    /// `bigquery.append.max.bytes` of the sink and the ceiling's request size.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    append_max_bytes: usize,
    /// Where the results go (default bench/results, or target/bench-tiny with --tiny).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Directory holding the `sluice` binary and libsluice_bigquery_sink.so.
    #[arg(long, default_value = "target/release")]
    build_dir: PathBuf,
    /// The services' run directory (pids of the broker and the emulator).
    #[arg(long, env = "SLUICE_RUN_DIR", default_value = ".run")]
    run_dir: PathBuf,
}

/// One measured phase.
#[derive(Debug, Clone, Default)]
struct Phase {
    name: String,
    records: u64,
    seconds: f64,
    /// CPU seconds over the phase: (worker or harness, emulator, broker).
    cpu_client: f64,
    cpu_emulator: f64,
    cpu_broker: f64,
    load: String,
    peak_rss_mib: Option<f64>,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    /// CPU seconds per million records.
    fn per_million(&self, cpu: f64) -> f64 {
        cpu / (self.records as f64 / 1e6)
    }
}

/// The ratio of sluice to the ceiling, and which process bounded the
/// sluice run: the one that burnt more CPU in it (on a small machine the
/// emulator and the worker share the cores; the emulator serves one call at
/// a time, so its CPU is its busy time).
fn bound_by(sluice: &Phase, ceiling: &Phase) -> (f64, &'static str) {
    let ratio = sluice.rps() / ceiling.rps();
    let by = if sluice.cpu_emulator >= sluice.cpu_client { "the emulator" } else { "the worker" };
    (ratio, by)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("[bench] error: {e:#}");
        std::process::exit(1);
    }
}

struct Setup {
    args: Args,
    bootstrap: String,
    rest_endpoint: String,
    grpc_endpoint: String,
    project: String,
    dataset: String,
    topic: String,
    run_id: String,
    broker_pid: Option<u32>,
    emulator_pid: Option<u32>,
}

fn run() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.tiny {
        args.records = args.records.min(4000);
    }
    let run_id = format!("{}_{}", now_ms() / 1000 % 100_000_000, std::process::id());
    let s = Setup {
        bootstrap: procstat::services_env("KAFKA_BOOTSTRAP")?,
        rest_endpoint: procstat::services_env("BQ_REST_ENDPOINT")?,
        grpc_endpoint: procstat::services_env("BQ_GRPC_ENDPOINT")?,
        project: procstat::services_env("BQ_PROJECT")?,
        dataset: format!("bench_{run_id}"),
        topic: format!("bench-bq-{run_id}"),
        broker_pid: procstat::service_pid(&args.run_dir, "kafka"),
        emulator_pid: procstat::service_pid(&args.run_dir, "bigquery"),
        run_id,
        args,
    };
    if s.broker_pid.is_none() || s.emulator_pid.is_none() {
        eprintln!("[bench] warning: no kafka.pid or bigquery.pid under SLUICE_RUN_DIR: their CPU is not reported");
    }
    let mut topics = vec![s.topic.clone()];
    let result = measure(&s, &mut topics);
    eprintln!("[bench] cleaning up topics and dataset {}", s.dataset);
    kafka::delete_topics(&s.bootstrap, &topics);
    let mut rest = BigQueryRest::new(&s.rest_endpoint, &s.project);
    if let Err(e) = rest.delete_dataset(&s.project, &s.dataset) {
        eprintln!("[bench] could not delete dataset {}: {}", s.dataset, e.message());
    }
    result
}

/// The table schema the order records take: BigQuery's auto-detection of
/// the first one (what the sink itself would create).
fn order_schema(size: usize) -> anyhow::Result<TableSchema> {
    let mut line = String::new();
    data::order(0, size, now_ms(), &mut line);
    let v: Value = serde_json::from_str(&line)?;
    let Value::Object(row) = v else { bail!("an order is not a JSON object") };
    Ok(schema::infer_from_json(&row))
}

fn measure(s: &Setup, topics: &mut Vec<String>) -> anyhow::Result<()> {
    let a = &s.args;
    let bin = a.build_dir.join("sluice");
    let plugin = a.build_dir.join(format!(
        "{}sluice_bigquery_sink{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    for p in [&bin, &plugin] {
        if !p.exists() {
            bail!("{} is missing: build with `cargo build --release --workspace` (dev/bench does)", p.display());
        }
    }
    let work = tempfile::Builder::new().prefix("sluice-bench-bq-").tempdir()?;
    let plugin_dir = work.path().join("plugins");
    fs::create_dir_all(&plugin_dir)?;
    let plugin_abs = fs::canonicalize(&plugin)?;
    std::os::unix::fs::symlink(&plugin_abs, plugin_dir.join(plugin_abs.file_name().unwrap_or_default()))?;

    let machine = procstat::machine();
    let schema = order_schema(a.size)?;
    let mut rest = BigQueryRest::new(&s.rest_endpoint, &s.project);
    rest.create_dataset(&s.project, &s.dataset).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    for table in ["ceiling", "sluice"] {
        rest.ensure_table(&TableId::new(&s.project, &s.dataset, table), &schema, &TableOptions::default())
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    }

    eprintln!(
        "[bench] {} records of {} B into {} partitions of {}; {} cores, {} MiB",
        a.records, a.size, PARTITIONS, s.topic, machine.cores, machine.memory_mib
    );
    kafka::create_topic(&s.bootstrap, &s.topic, PARTITIONS)?;
    let produced = kafka::produce_all(&s.bootstrap, &s.topic, a.records, a.size)?;
    eprintln!("[bench]   produced {} records in {:.1} s", produced.records, produced.seconds);

    let ceiling = ceiling(s, &schema)?;
    eprintln!("[bench]   ceiling {:.0} rows/s, emulator CPU {:.1} s", ceiling.rps(), ceiling.cpu_emulator);
    let sluice = sluice_run(s, &bin, &plugin_dir, work.path(), &produced.ends, topics)?;
    eprintln!(
        "[bench]   sluice {:.0} records/s, worker CPU {:.1} s, peak RSS {:.0} MiB, emulator CPU {:.1} s",
        sluice.rps(),
        sluice.cpu_client,
        sluice.peak_rss_mib.unwrap_or(0.0),
        sluice.cpu_emulator
    );
    let rows = count_rows(&mut rest, s, "sluice")?;
    if rows != produced.records as i64 {
        bail!("the sluice table holds {rows} rows, {} were produced", produced.records);
    }
    write_results(s, &machine, &ceiling, &sluice, rows)
}

/// The emulator's ceiling: the same rows, encoded beforehand (not timed),
/// appended to one COMMITTED stream at explicit offsets in requests of at
/// most `append_max_bytes`, one at a time (the emulator serves one call at
/// a time, and the sink's task appends one request at a time).
fn ceiling(s: &Setup, schema: &TableSchema) -> anyhow::Result<Phase> {
    let a = &s.args;
    let encoder = RowEncoder::new(schema);
    let mut rows = Vec::with_capacity(a.records as usize);
    let mut line = String::new();
    for seq in 0..a.records {
        data::order(seq, a.size, now_ms(), &mut line);
        let v: Map<String, Value> = serde_json::from_str(&line)?;
        rows.push(encoder.encode(&v).map_err(|e| anyhow::anyhow!("order {seq}: {e}"))?);
    }
    let sizes: Vec<usize> = rows.iter().map(Vec::len).collect();
    let requests = cut_by_bytes(&sizes, a.append_max_bytes);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let load = procstat::load_average();
    eprintln!("[bench] emulator ceiling: {} rows in {} requests (load {load})", rows.len(), requests.len());
    let table = format!("projects/{}/datasets/{}/tables/ceiling", s.project, s.dataset);
    let (c0, e0, b0) = (cpu(Some(std::process::id())), cpu(s.emulator_pid), cpu(s.broker_pid));
    let started = Instant::now();
    rt.block_on(async {
        let client = StorageClient::new(&s.grpc_endpoint, None).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let stream = client
            .create_write_stream(&table, StreamType::Committed)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let mut conn = client.open_append(&stream.name).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        for r in &requests {
            let batch: Vec<Vec<u8>> = rows[r.clone()].to_vec();
            match conn.append(Some(r.start as i64), batch, encoder.descriptor()).await {
                AppendOutcome::Appended { .. } => {}
                other => bail!("append at {}: {other:?}", r.start),
            }
        }
        anyhow::Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Phase {
        name: "emulator ceiling (plain Storage Write client, COMMITTED stream)".into(),
        records: rows.len() as u64,
        seconds,
        cpu_client: cpu(Some(std::process::id())) - c0,
        cpu_emulator: cpu(s.emulator_pid) - e0,
        cpu_broker: cpu(s.broker_pid) - b0,
        load,
        peak_rss_mib: None,
    })
}

fn sluice_run(
    s: &Setup,
    bin: &Path,
    plugin_dir: &Path,
    work: &Path,
    ends: &[i64],
    topics: &mut Vec<String>,
) -> anyhow::Result<Phase> {
    let cluster = format!("bench-bq-{}", s.run_id);
    for t in ["configs", "status", "offsets"] {
        topics.push(format!("{cluster}-{t}"));
    }
    let load = procstat::load_average();
    eprintln!("[bench] sluice, STREAMING exactly once: starting a worker (load {load})");
    let mut worker = Worker::start(bin, plugin_dir, &s.bootstrap, &cluster, &[], work.join("worker.log"))?;
    let pid = worker.pid();
    let name = "bench-bigquery";
    let reader = CommittedReader::new(&s.bootstrap, &format!("connect-{name}"), &s.topic)?;
    let sampler = ThreadSampler::start(pid, Duration::from_millis(500));
    let config = json!({
        "connector.class": "bigquery-sink",
        "tasks.max": "1",
        "topics": s.topic,
        "topic2TableMap": format!("{}:sluice", s.topic),
        "project": s.project,
        "defaultDataset": s.dataset,
        "ingestion.mode": "STREAMING",
        "bigquery.rest.endpoint": s.rest_endpoint,
        "bigquery.storage.endpoint": s.grpc_endpoint,
        "bigquery.append.max.bytes": s.args.append_max_bytes.to_string(),
        // The end of the run is seen through committed offsets: commit often.
        "offset.flush.interval.ms": "1000",
    });
    let (w0, e0, b0) = (cpu(Some(pid)), cpu(s.emulator_pid), cpu(s.broker_pid));
    let started = Instant::now();
    worker.create_connector(name, &config)?;
    let total: i64 = ends.iter().sum();
    worker.run_until(name, started, Duration::from_millis(200), || {
        let committed = reader.committed()?;
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            return Ok(Poll::Done(()));
        }
        let done: i64 = committed.iter().map(|c| (*c).max(0)).sum();
        Ok(Poll::Pending(format!("committed {done} of {total}")))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let phase = Phase {
        name: "sluice bigquery-sink (STREAMING, exactly once, tasks.max 1)".into(),
        records: total as u64,
        seconds,
        cpu_client: cpu(Some(pid)) - w0,
        cpu_emulator: cpu(s.emulator_pid) - e0,
        cpu_broker: cpu(s.broker_pid) - b0,
        load,
        peak_rss_mib: Some(procstat::status_mib(pid, "VmHWM")?),
    };
    let threads = sampler.finish();
    eprintln!("[bench]   busiest worker threads (CPU s): {:?}", &threads[..threads.len().min(5)]);
    worker.stop(Duration::from_secs(25));
    Ok(phase)
}

/// Rows of a table, asked until the emulator answers (it refuses a query
/// while another call runs).
fn count_rows(rest: &mut BigQueryRest, s: &Setup, table: &str) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM `{}.{}.{table}`", s.project, s.dataset);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rest.query(&sql) {
            Ok(r) => {
                let v = r.rows.first().and_then(|row| row.first()).cloned().unwrap_or(Value::Null);
                return match v {
                    Value::String(t) => Ok(t.parse()?),
                    Value::Number(n) => n.as_i64().context("a count"),
                    other => bail!("COUNT(*) answered {other}"),
                };
            }
            Err(e) if Instant::now() > deadline => bail!("{sql}: {}", e.message()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn phase_json(p: &Phase) -> Value {
    json!({
        "name": p.name, "records": p.records, "seconds": p.seconds, "records_per_s": p.rps(),
        "cpu_seconds": {"client": p.cpu_client, "emulator": p.cpu_emulator, "broker": p.cpu_broker},
        "client_cpu_s_per_million": p.per_million(p.cpu_client),
        "emulator_cpu_s_per_million": p.per_million(p.cpu_emulator),
        "peak_rss_mib": p.peak_rss_mib, "load_before": p.load,
    })
}

fn write_results(
    s: &Setup,
    machine: &procstat::Machine,
    ceiling: &Phase,
    sluice: &Phase,
    rows: i64,
) -> anyhow::Result<()> {
    let a = &s.args;
    let commit = provenance::commit();
    let dirty = provenance::dirty(&["runtime", "connectors/bigquery-sink", "connector-api"]);
    let profile = if a.build_dir.ends_with("release") { "release" } else { "not release (see build dir)" };
    let now = chrono::Utc::now();
    let (ratio, by) = bound_by(sluice, ceiling);
    let mut md = String::new();
    let _ = writeln!(md, "# Kafka → BigQuery (emulator) benchmark, {}\n", now.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        md,
        "- commit `{commit}`{}; worker and plugin from `{}` ({profile})\n- machine: {} cores ({}), {} MiB memory, kernel {}\n- data: {} records of {} B order-like JSON over {} partitions, one table (schema auto-detected from the first record), `bigquery.append.max.bytes` {}\n- BigQuery: the local emulator (bqemulator, DuckDB in memory, one call at a time) at {}\n- ceiling: a plain Storage Write client appending the same rows (encoded beforehand) to one COMMITTED stream, one request at a time; sluice: one task, STREAMING exactly once (a COMMITTED stream per partition, notes in the offset commits), from connector creation until every partition's committed offset reached its end (commit interval 1 s); the table then held {rows} rows\n- CPU s/M rec: CPU-seconds per million records (user+system, /proc/<pid>/stat) of the client (the worker, or this harness for the ceiling) and of the emulator\n",
        if dirty { " (with uncommitted changes)" } else { "" },
        a.build_dir.display(),
        machine.cores,
        machine.cpu_model,
        machine.memory_mib,
        machine.kernel,
        sluice.records,
        a.size,
        PARTITIONS,
        a.append_max_bytes,
        s.rest_endpoint,
    );
    let _ = writeln!(
        md,
        "| measurement | records/s | seconds | client CPU s/M rec | emulator CPU s/M rec | broker CPU s | worker peak RSS MiB | load before |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
    for p in [ceiling, sluice] {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            p.name,
            p.rps(),
            p.seconds,
            p.per_million(p.cpu_client),
            p.per_million(p.cpu_emulator),
            p.cpu_broker,
            p.peak_rss_mib.map(|m| format!("{m:.0}")).unwrap_or_default(),
            p.load
        );
    }
    let _ = writeln!(
        md,
        "\nsluice / ceiling = {ratio:.2}; bound by {by} (the process with more CPU in the sluice run). Emulator CPU per record, sluice ÷ ceiling: {:.1} (the ceiling appends in requests of `bigquery.append.max.bytes`; the sink appends each partition's share of every batch the worker hands it, so many more, smaller requests: most likely the emulator's cost is mostly per request, not measured separately).\n\nCommand: `dev/bench --sink bigquery {}`",
        sluice.per_million(sluice.cpu_emulator) / ceiling.per_million(ceiling.cpu_emulator),
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let doc = json!({
        "kind": "bigquery", "commit": commit, "dirty": dirty, "time": now.to_rfc3339(), "build_dir": a.build_dir,
        "records": sluice.records, "size": a.size, "partitions": PARTITIONS, "append_max_bytes": a.append_max_bytes,
        "rows_in_table": rows, "ceiling": phase_json(ceiling), "sluice": phase_json(sluice),
        "ratio_to_ceiling": ratio, "bound_by": by,
    });
    let out_dir =
        a.out_dir.clone().unwrap_or_else(|| PathBuf::from(if a.tiny { "target/bench-tiny" } else { "bench/results" }));
    fs::create_dir_all(&out_dir)?;
    let stem = out_dir.join(format!("{}-{commit}-bigquery", now.format("%Y-%m-%d")));
    fs::write(stem.with_extension("md"), &md)?;
    fs::write(stem.with_extension("json"), serde_json::to_string_pretty(&doc)?)?;
    eprintln!("[bench] wrote {}.md and .json\n{md}", stem.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(records: u64, seconds: f64, client: f64, emulator: f64) -> Phase {
        Phase { records, seconds, cpu_client: client, cpu_emulator: emulator, ..Phase::default() }
    }

    #[test]
    fn the_busier_process_bounds_the_run() {
        let ceiling = phase(100_000, 10.0, 1.0, 9.0);
        let (ratio, by) = bound_by(&phase(100_000, 20.0, 5.0, 17.0), &ceiling);
        assert_eq!((ratio, by), (0.5, "the emulator"));
        let (_, by) = bound_by(&phase(100_000, 40.0, 30.0, 9.0), &ceiling);
        assert_eq!(by, "the worker");
        assert_eq!(ceiling.per_million(3.0), 30.0);
    }

    #[test]
    fn the_order_records_fit_the_auto_detected_schema() {
        let schema = order_schema(1024).unwrap();
        let encoder = RowEncoder::new(&schema);
        let mut line = String::new();
        for seq in 0..200 {
            data::order(seq, 1024, 1_700_000_000_000, &mut line);
            let row: Map<String, Value> = serde_json::from_str(&line).unwrap();
            encoder.encode(&row).unwrap_or_else(|e| panic!("order {seq}: {e}"));
        }
    }
}
