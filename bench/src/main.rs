//! `sluice-bench`: see `dev/bench --help` and the README.

use std::{
    fs,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use sluice_bench::{
    data,
    kafka::{self, now_ms, CommittedReader, PARTITIONS},
    procstat::{self, ThreadSampler},
    s3::{self, S3Env},
    worker::{Perf, Poll, Worker},
};

mod latency;
mod report;
mod salesforce;

use latency::latency_run;
use report::write_results;

const MIB: u64 = 1024 * 1024;
const MB: f64 = 1_000_000.0;

/// Kafka → S3 benchmark on the local services (dev/services): the consume
/// ceiling, the upload ceiling and a sluice worker with the s3-sink (JSON,
/// gzip, Parquet) on the same data, then a latency run.
#[derive(Parser, Debug)]
#[command(name = "sluice-bench")]
struct Args {
    /// Records to produce (rounded up so every partition holds whole objects).
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes per record (order-like JSON padded to this size).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// A quick run that only checks the harness works (dev/test): few
    /// records, a short latency run, no perf, results under target/.
    #[arg(long)]
    tiny: bool,
    /// Sink formats to measure, in order: json (uncompressed), gzip (JSON
    /// lines, gzip), parquet (snappy).
    #[arg(long, value_delimiter = ',', default_value = "json,gzip,parquet")]
    formats: Vec<String>,
    /// Records per second offered in the latency run.
    #[arg(long, default_value_t = 6700)]
    latency_rate: u64,
    /// Length of the latency run in seconds (0 skips it).
    #[arg(long, default_value_t = 60)]
    latency_seconds: u64,
    /// s3.part.size of the sink and of the upload ceiling.
    #[arg(long, default_value_t = 8 * MIB)]
    part_size: u64,
    /// s3.part.upload.concurrency of the sink and of the upload ceiling.
    #[arg(long, default_value_t = 4)]
    upload_concurrency: usize,
    /// Target size of one object (uncompressed), which sets flush.size.
    #[arg(long, default_value_t = 64)]
    object_mib: u64,
    /// Where the results go (default bench/results, or target/bench-tiny with --tiny).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Directory holding the release `sluice` binary and libsluice_s3_sink.so.
    #[arg(long, default_value = "target/release")]
    build_dir: PathBuf,
    /// The services' run directory (pids of the broker and the S3 server).
    #[arg(long, env = "SLUICE_RUN_DIR", default_value = ".run")]
    run_dir: PathBuf,
    /// librdkafka property for the worker's clients, passed as `--kafka PROP=VALUE`
    /// (repeatable), e.g. queued.max.messages.kbytes=16384 to see its share of RSS.
    #[arg(long = "worker-kafka", value_name = "PROP=VALUE")]
    worker_kafka: Vec<String>,
    /// The sink measured (`s3`, the default, or `salesforce`: the
    /// salesforce-sink against the in-process Salesforce fake), or an extra
    /// connector setting KEY=VALUE (repeatable; applied after the run's own),
    /// e.g. s3.compression.level=1 to see what the gzip level costs.
    #[arg(long = "sink", value_name = "SINK|KEY=VALUE", value_parser = parse_sink_arg)]
    sink_args: Vec<SinkArg>,
    /// The KEY=VALUE settings of `--sink`.
    #[arg(skip)]
    sink: Vec<(String, String)>,
    /// The sink named by `--sink` (s3 when none is).
    #[arg(skip)]
    target: Target,
    /// salesforce: the fake answers every data call after this many ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// salesforce: distinct customers (External IDs) in the data set.
    #[arg(long, default_value_t = 20_000)]
    customers: u64,
    /// salesforce: versions of each customer, produced in order (all
    /// customers' version 1, then version 2, ...).
    #[arg(long, default_value_t = 3)]
    versions: u64,
    /// salesforce: one sObject Collections run per value of
    /// salesforce.max.in.flight.requests.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    in_flight: Vec<u32>,
    /// salesforce: skip the Bulk API 2.0 run.
    #[arg(long)]
    no_bulk: bool,
    /// salesforce, Bulk run: salesforce.bulk.poll.ms of the sink.
    #[arg(long, default_value_t = 500)]
    bulk_poll_ms: u64,
    /// salesforce, Bulk run: polls a closed job answers InProgress before it
    /// completes (the fake's stand-in for Salesforce's processing time).
    #[arg(long, default_value_t = 3)]
    bulk_job_polls: usize,
    /// Do not run `perf record` on the worker.
    #[arg(long)]
    no_perf: bool,
    /// Talk to the S3 server over HTTPS (S3_HTTPS_ENDPOINT, trusting
    /// S3_CA_FILE), as every AWS user does: bodies then go unsigned.
    #[arg(long)]
    https: bool,
}

/// What `--sink` names: the sink measured, or one of its settings.
#[derive(Clone, Debug)]
enum SinkArg {
    Target(Target),
    Setting(String, String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Target {
    #[default]
    S3,
    Salesforce,
}

fn parse_sink_arg(s: &str) -> Result<SinkArg, String> {
    match (s, s.split_once('=')) {
        (_, Some((k, v))) => Ok(SinkArg::Setting(k.to_string(), v.to_string())),
        ("s3", None) => Ok(SinkArg::Target(Target::S3)),
        ("salesforce", None) => Ok(SinkArg::Target(Target::Salesforce)),
        _ => Err(format!("{s:?} is neither a sink (s3, salesforce) nor KEY=VALUE")),
    }
}

/// The sink measured and its extra settings, from the `--sink` arguments.
fn split_sink_args(args: &[SinkArg]) -> (Target, Vec<(String, String)>) {
    let mut target = Target::S3;
    let mut settings = Vec::new();
    for a in args {
        match a {
            SinkArg::Target(t) => target = *t,
            SinkArg::Setting(k, v) => settings.push((k.clone(), v.clone())),
        }
    }
    (target, settings)
}

/// CPU seconds of the broker, the S3 server and this process, to diff.
#[derive(Clone, Copy, Default)]
struct Cpu {
    broker: f64,
    s3: f64,
    bench: f64,
    worker: f64,
}

struct Ctx {
    args: Args,
    bootstrap: String,
    s3env: S3Env,
    rt: Arc<tokio::runtime::Runtime>,
    client: aws_sdk_s3::Client,
    broker_pid: Option<u32>,
    s3_pid: Option<u32>,
    run_id: String,
    bucket: String,
    topic: String,
    work: tempfile::TempDir,
    plugin_dir: PathBuf,
    out_dir: PathBuf,
    topics_to_delete: Vec<String>,
}

impl Ctx {
    fn cpu(&self, worker: Option<u32>) -> Cpu {
        let get = procstat::cpu_seconds_or_zero;
        Cpu {
            broker: get(self.broker_pid),
            s3: get(self.s3_pid),
            bench: get(Some(std::process::id())),
            worker: get(worker),
        }
    }
}

fn diff(a: Cpu, b: Cpu) -> Cpu {
    Cpu { broker: b.broker - a.broker, s3: b.s3 - a.s3, bench: b.bench - a.bench, worker: b.worker - a.worker }
}

/// One row of the throughput table.
struct Row {
    name: String,
    records: u64,
    /// Input bytes (record values; for uploads the bytes sent).
    bytes: u64,
    seconds: f64,
    cpu: Cpu,
    load: String,
    extra: Value,
}

impl Row {
    fn rps(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / MB / self.seconds
    }
}

struct SluiceRun {
    row: Row,
    format: String,
    peak_rss_mib: f64,
    object_bytes: u64,
    objects: usize,
    threads: Vec<(String, f64)>,
    perf: Option<String>,
    /// The upload ceiling measured again just before this run (a quarter of
    /// the objects): on a shared machine the load moves between phases.
    paired_upload_mbps: f64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("[bench] error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = Args::parse();
    (args.target, args.sink) = split_sink_args(&args.sink_args);
    if args.target == Target::Salesforce {
        if args.tiny {
            args.customers = args.customers.min(1000);
        }
        return salesforce::run(&args);
    }
    if args.tiny {
        args.records = args.records.min(4000);
        args.latency_seconds = args.latency_seconds.min(5);
        args.latency_rate = args.latency_rate.min(1000);
        args.no_perf = true;
    }
    for f in &args.formats {
        if !matches!(f.as_str(), "json" | "gzip" | "parquet") {
            bail!("unknown format {f}: use json, gzip or parquet");
        }
    }
    if args.size < 64 {
        bail!("--size must be at least 64 bytes");
    }
    let bin = args.build_dir.join("sluice");
    let plugin =
        args.build_dir.join(format!("{}sluice_s3_sink{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    for p in [&bin, &plugin] {
        if !p.exists() {
            bail!("{} is missing: build with `cargo build --release --workspace` (dev/bench does)", p.display());
        }
    }
    let work = tempfile::Builder::new().prefix("sluice-bench-").tempdir().context("creating a temp dir")?;
    // Only the s3-sink in the plugin path: the test plugins are not loaded.
    let plugin_dir = work.path().join("plugins");
    fs::create_dir_all(&plugin_dir)?;
    let plugin_abs = fs::canonicalize(&plugin)?;
    std::os::unix::fs::symlink(&plugin_abs, plugin_dir.join(plugin_abs.file_name().unwrap_or_default()))
        .context("linking the plugin")?;
    if args.https {
        // Read by the TLS clients of this harness and of the worker (which
        // inherits it) when they first connect; no thread runs yet.
        std::env::set_var("SSL_CERT_FILE", procstat::services_env("S3_CA_FILE")?);
    }
    let s3env = S3Env {
        endpoint: procstat::services_env(if args.https { "S3_HTTPS_ENDPOINT" } else { "S3_ENDPOINT" })?,
        access_key: procstat::services_env("S3_ACCESS_KEY")?,
        secret_key: procstat::services_env("S3_SECRET_KEY")?,
        region: procstat::services_env("S3_REGION")?,
    };
    let rt = Arc::new(s3::runtime()?);
    let client = rt.block_on(s3::client(&s3env));
    let run_id = format!("{}-{}", now_ms() / 1000 % 100_000_000, std::process::id());
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        if args.tiny {
            PathBuf::from("target/bench-tiny")
        } else {
            PathBuf::from("bench/results")
        }
    });
    let broker_pid = procstat::service_pid(&args.run_dir, "kafka");
    let s3_pid = procstat::service_pid(&args.run_dir, "s3");
    if broker_pid.is_none() || s3_pid.is_none() {
        eprintln!(
            "[bench] warning: no broker or S3 pid under {} (SLUICE_RUN_DIR): their CPU is not reported",
            args.run_dir.display()
        );
    }
    let mut ctx = Ctx {
        bootstrap: procstat::services_env("KAFKA_BOOTSTRAP")?,
        s3env,
        rt,
        client,
        broker_pid,
        s3_pid,
        bucket: format!("sluice-bench-{run_id}"),
        topic: format!("bench-{run_id}"),
        run_id,
        work,
        plugin_dir,
        out_dir,
        topics_to_delete: Vec::new(),
        args,
    };
    let result = measure(&mut ctx);
    cleanup(&ctx);
    result
}

fn cleanup(ctx: &Ctx) {
    eprintln!("[bench] cleaning up topics and bucket {}", ctx.bucket);
    kafka::delete_topics(&ctx.bootstrap, &ctx.topics_to_delete);
    if let Err(e) = ctx.rt.block_on(s3::delete_bucket(&ctx.client, &ctx.bucket)) {
        eprintln!("[bench] could not delete bucket {}: {e:#}", ctx.bucket);
    }
}

/// Records per partition, objects per partition and flush.size: every
/// partition holds exactly `objects × flush` records, so every object is
/// closed by flush.size (deterministic, no wait for a scheduled rotation).
fn geometry(records: u64, size: usize, object_mib: u64) -> (u64, u64, u64) {
    let per_partition = records.div_ceil(PARTITIONS as u64).max(1);
    let bytes = per_partition * (size as u64 + 1);
    let objects = ((bytes as f64 / (object_mib * MIB) as f64).round() as u64).max(1);
    let flush = per_partition.div_ceil(objects);
    (flush * objects, objects, flush)
}

fn measure(ctx: &mut Ctx) -> anyhow::Result<()> {
    let a = &ctx.args;
    let (per_partition, objects_per_partition, flush) = geometry(a.records, a.size, a.object_mib);
    let records = per_partition * PARTITIONS as u64;
    let machine = procstat::machine();
    eprintln!(
        "[bench] {records} records of {} B into {} partitions of topic {}; flush.size {flush} ({objects_per_partition} objects per partition); {} cores, {} MiB",
        a.size, PARTITIONS, ctx.topic, machine.cores, machine.memory_mib
    );
    kafka::create_topic(&ctx.bootstrap, &ctx.topic, PARTITIONS)?;
    ctx.topics_to_delete.push(ctx.topic.clone());
    ctx.rt.block_on(s3::create_bucket(&ctx.client, &ctx.bucket))?;

    // 1. Produce.
    let load = procstat::load_average();
    eprintln!("[bench] producing (load {load})");
    let c0 = ctx.cpu(None);
    let produced = kafka::produce_all(&ctx.bootstrap, &ctx.topic, records, a.size)?;
    let produce = Row {
        name: "produce (rdkafka, acks=all)".into(),
        records: produced.records,
        bytes: produced.bytes,
        seconds: produced.seconds,
        cpu: diff(c0, ctx.cpu(None)),
        load,
        extra: json!({ "ends": produced.ends }),
    };
    eprintln!("[bench]   {:.0} records/s, {:.1} MB/s", produce.rps(), produce.mbps());

    // 2. Consume ceiling.
    let load = procstat::load_average();
    eprintln!("[bench] consume ceiling: a plain consumer with the sink's settings (load {load})");
    let c0 = ctx.cpu(None);
    let consumed =
        kafka::consume_all(&ctx.bootstrap, &ctx.topic, &produced.ends, &format!("bench-ceiling-{}", ctx.run_id))?;
    let consume = Row {
        name: "consume ceiling (rdkafka BaseConsumer, sink settings)".into(),
        records: consumed.records,
        bytes: consumed.bytes,
        seconds: consumed.seconds,
        cpu: diff(c0, ctx.cpu(None)),
        load,
        extra: json!({ "seconds_after_first_record": consumed.seconds_after_first }),
    };
    eprintln!("[bench]   {:.0} records/s, {:.1} MB/s", consume.rps(), consume.mbps());

    // 3. Upload ceiling: the bytes the JSON sink writes (a line per record).
    let load = procstat::load_average();
    eprintln!("[bench] upload ceiling: plain multipart uploads (load {load})");
    let objects = (objects_per_partition * PARTITIONS as u64) as usize;
    let object_bytes = flush * (a.size as u64 + 1);
    let mut sample = String::with_capacity(a.part_size as usize + a.size + 1);
    let mut line = String::new();
    let mut seq = 0;
    while sample.len() < a.part_size as usize {
        data::order(seq, a.size, now_ms(), &mut line);
        sample.push_str(&line);
        sample.push('\n');
        seq += 1;
    }
    let sample = Bytes::from(sample);
    let (part_size, concurrency) = (a.part_size as usize, a.upload_concurrency);
    let unsigned = !sluice_s3_sink::upload::signs_payloads(Some(&ctx.s3env.endpoint));
    let shape = |objects| s3::Shape { objects, object_bytes, part_size, concurrency, unsigned };
    let c0 = ctx.cpu(None);
    let uploaded =
        ctx.rt.block_on(s3::upload_ceiling(&ctx.client, &ctx.bucket, "ceiling/", shape(objects), sample.clone()))?;
    let upload = Row {
        name: format!("upload ceiling (aws-sdk-s3, {} MiB parts × {})", a.part_size / MIB, a.upload_concurrency),
        records,
        bytes: uploaded.bytes,
        seconds: uploaded.seconds,
        cpu: diff(c0, ctx.cpu(None)),
        load,
        extra: json!({ "objects": uploaded.objects, "object_bytes": object_bytes }),
    };
    eprintln!("[bench]   {:.1} MB/s", upload.mbps());
    let _ = ctx.rt.block_on(s3::delete_prefix(&ctx.client, &ctx.bucket, "ceiling/"));

    // 4. Sluice, per format.
    let mut runs = Vec::new();
    for format in ctx.args.formats.clone() {
        let quarter = (objects / 4).max(1);
        let paired =
            ctx.rt.block_on(s3::upload_ceiling(&ctx.client, &ctx.bucket, "paired/", shape(quarter), sample.clone()))?;
        let _ = ctx.rt.block_on(s3::delete_prefix(&ctx.client, &ctx.bucket, "paired/"));
        let paired_mbps = paired.bytes as f64 / MB / paired.seconds;
        eprintln!("[bench] upload ceiling again before {format} ({quarter} objects): {paired_mbps:.1} MB/s");
        let mut run = sluice_run(ctx, &format, flush, objects, &produced.ends, produced.bytes)?;
        run.paired_upload_mbps = paired_mbps;
        let _ = ctx.rt.block_on(s3::delete_prefix(&ctx.client, &ctx.bucket, &format!("{format}/")));
        runs.push(run);
    }

    // 5. Latency.
    let latency = if ctx.args.latency_seconds > 0 { Some(latency_run(ctx)?) } else { None };

    write_results(ctx, &machine, flush, &[produce, consume, upload], &runs, latency.as_ref())
}

fn connector_config(ctx: &Ctx, topic: &str, dir: &str, format: &str, flush: u64) -> Value {
    let mut c = json!({
        "connector.class": "s3-sink",
        "tasks.max": "1",
        "topics": topic,
        "s3.bucket.name": ctx.bucket,
        "store.url": ctx.s3env.endpoint,
        "s3.path.style.access.enabled": "true",
        "s3.region": ctx.s3env.region,
        "aws.access.key.id": ctx.s3env.access_key,
        "aws.secret.access.key": ctx.s3env.secret_key,
        "topics.dir": dir,
        "flush.size": flush.to_string(),
        "s3.part.size": ctx.args.part_size.to_string(),
        "s3.part.upload.concurrency": ctx.args.upload_concurrency.to_string(),
        // The end of the run is seen through committed offsets: commit often.
        "offset.flush.interval.ms": "1000",
        "max.buffered.bytes": max_buffered_bytes(flush, ctx.args.size).to_string(),
    });
    let fields: &[(&str, &str)] = match format {
        "gzip" => &[("format.class", "json"), ("s3.compression.type", "gzip")],
        "parquet" => &[("format.class", "parquet"), ("parquet.codec", "snappy")],
        _ => &[("format.class", "json")],
    };
    for (k, v) in fields {
        c[*k] = json!(v);
    }
    for (k, v) in &ctx.args.sink {
        c[k.as_str()] = json!(v);
    }
    c
}

/// The runtime pauses a task's partitions once this many bytes are handed to
/// the sink and not yet committed; the s3-sink settles nothing until an object
/// completes, so with the default (256 MiB) 8 partitions of 64 MiB objects
/// would stall forever. Twice the open objects' bytes, at least the default.
fn max_buffered_bytes(flush: u64, size: usize) -> u64 {
    (2 * PARTITIONS as u64 * flush * (size as u64 + 1)).max(256 * MIB)
}

fn start_worker(ctx: &mut Ctx, label: &str) -> anyhow::Result<(Worker, String)> {
    let cluster = format!("bench-{}-{label}", ctx.run_id);
    for t in ["configs", "status", "offsets"] {
        ctx.topics_to_delete.push(format!("{cluster}-{t}"));
    }
    let log = ctx.work.path().join(format!("worker-{label}.log"));
    let bin = ctx.args.build_dir.join("sluice");
    let w = Worker::start(&bin, &ctx.plugin_dir, &ctx.bootstrap, &cluster, &ctx.args.worker_kafka, log)?;
    Ok((w, cluster))
}

fn sluice_run(
    ctx: &mut Ctx,
    format: &str,
    flush: u64,
    objects: usize,
    ends: &[i64],
    input_bytes: u64,
) -> anyhow::Result<SluiceRun> {
    let load = procstat::load_average();
    eprintln!("[bench] sluice, {format}: starting a worker (load {load})");
    let (mut worker, _) = start_worker(ctx, format)?;
    let pid = worker.pid();
    let name = format!("bench-{format}");
    let reader = CommittedReader::new(&ctx.bootstrap, &format!("connect-{name}"), &ctx.topic)?;
    let sampler = ThreadSampler::start(pid, Duration::from_millis(500));
    let perf =
        if ctx.args.no_perf { None } else { Perf::start(pid, ctx.work.path().join(format!("perf-{format}.data"))) };
    let c0 = ctx.cpu(Some(pid));
    let started = Instant::now();
    worker.create_connector(&name, &connector_config(ctx, &ctx.topic, format, format, flush))?;
    let total: i64 = ends.iter().sum();
    let listed = worker.run_until(&name, started, Duration::from_millis(200), || {
        let committed = reader.committed()?;
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            let listed = ctx.rt.block_on(s3::list(&ctx.client, &ctx.bucket, &format!("{format}/")))?;
            if listed.len() >= objects {
                return Ok(Poll::Done(listed));
            }
        }
        let done: i64 = committed.iter().map(|c| (*c).max(0)).sum();
        Ok(Poll::Pending(format!("committed {done} of {total}")))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = diff(c0, ctx.cpu(Some(pid)));
    let peak_rss_mib = procstat::status_mib(pid, "VmHWM")?;
    let threads = sampler.finish();
    let perf = perf.and_then(|p| p.finish(30));
    worker.stop(Duration::from_secs(25));
    let object_bytes: u64 = listed.iter().map(|o| o.size).sum();
    let records = total as u64;
    let row = Row {
        name: format!("sluice {format}"),
        records,
        bytes: input_bytes,
        seconds,
        cpu,
        load,
        extra: json!({ "objects": listed.len(), "object_bytes": object_bytes }),
    };
    eprintln!(
        "[bench]   {:.0} records/s, {:.1} MB/s in, peak RSS {peak_rss_mib:.0} MiB, worker CPU {:.1} s",
        row.rps(),
        row.mbps(),
        cpu.worker
    );
    Ok(SluiceRun {
        row,
        format: format.into(),
        peak_rss_mib,
        object_bytes,
        objects: listed.len(),
        threads,
        perf,
        paired_upload_mbps: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_fills_whole_objects() {
        let (per_partition, objects, flush) = geometry(2_000_000, 1024, 64);
        assert_eq!(per_partition, objects * flush);
        assert_eq!(objects, 4);
        assert!(per_partition >= 250_000);
        let (p, o, f) = geometry(10, 1024, 64);
        assert_eq!((p, o, f), (2, 1, 2));
    }

    #[test]
    fn sink_arguments_name_the_sink_or_set_a_key() {
        let args: Vec<SinkArg> = ["salesforce", "salesforce.bulk.threshold=500", "a=b=c"]
            .iter()
            .map(|a| parse_sink_arg(a).unwrap())
            .collect();
        let (target, settings) = split_sink_args(&args);
        assert_eq!(target, Target::Salesforce);
        assert_eq!(settings, [("salesforce.bulk.threshold".into(), "500".into()), ("a".into(), "b=c".into())]);
        assert_eq!(split_sink_args(&[]).0, Target::S3);
        assert!(parse_sink_arg("bigquery").unwrap_err().contains("neither a sink"));
    }
}
