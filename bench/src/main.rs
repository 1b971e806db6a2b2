//! `sluice-bench`: see `dev/bench --help` and the README.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use sluice_bench::{
    data,
    kafka::{self, now_ms, CommittedReader, Producing, PARTITIONS},
    procstat::{self, ThreadSampler},
    s3::{self, S3Env},
    worker::{Perf, Worker},
};

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
    /// Extra s3-sink connector setting (repeatable; applied after the format's
    /// own), e.g. s3.compression.level=1 to see what the gzip level costs.
    #[arg(long = "sink", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    sink: Vec<(String, String)>,
    /// Do not run `perf record` on the worker.
    #[arg(long)]
    no_perf: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run through dev/bench, or `eval \"$(dev/services env)\"` first"))
}

fn pid_file(run_dir: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(run_dir.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
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
        let get = |p: Option<u32>| p.and_then(|p| procstat::cpu_seconds(p).ok()).unwrap_or(0.0);
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
    let s3env = S3Env {
        endpoint: env("S3_ENDPOINT")?,
        access_key: env("S3_ACCESS_KEY")?,
        secret_key: env("S3_SECRET_KEY")?,
        region: env("S3_REGION")?,
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
    let broker_pid = pid_file(&args.run_dir, "kafka");
    let s3_pid = pid_file(&args.run_dir, "s3");
    if broker_pid.is_none() || s3_pid.is_none() {
        eprintln!(
            "[bench] warning: no broker or S3 pid under {} (SLUICE_RUN_DIR): their CPU is not reported",
            args.run_dir.display()
        );
    }
    let mut ctx = Ctx {
        bootstrap: env("KAFKA_BOOTSTRAP")?,
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
    let shape = |objects| s3::Shape { objects, object_bytes, part_size, concurrency };
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
    let mut last_print = Instant::now();
    let mut last_status = Instant::now();
    let listed = loop {
        if !worker.alive() {
            bail!("the worker died; log:\n{}", worker.log_tail());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("sluice did not finish {format} within an hour; log:\n{}", worker.log_tail());
        }
        if last_status.elapsed() > Duration::from_secs(2) {
            last_status = Instant::now();
            worker.task_states(&name)?;
        }
        let committed = reader.committed()?;
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            let listed = ctx.rt.block_on(s3::list(&ctx.client, &ctx.bucket, &format!("{format}/")))?;
            if listed.len() >= objects {
                break listed;
            }
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            let done: i64 = committed.iter().map(|c| (*c).max(0)).sum();
            eprintln!(
                "[bench]   committed {done} of {total} after {:.0} s, worker RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                procstat::status_mib(pid, "VmRSS").unwrap_or(0.0)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
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

struct Latency {
    rate_offered: u64,
    rate_achieved: f64,
    seconds: u64,
    records: usize,
    objects: usize,
    p50: i64,
    p99: i64,
    max: i64,
    lm_p50: i64,
    lm_p99: i64,
    lm_max: i64,
    peak_rss_mib: f64,
    cpu: Cpu,
    load: String,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// (partition, start offset) from `<dir>/<topic>/partition=<p>/<topic>+<p>+<offset>.json`.
fn parse_key(key: &str) -> Option<(i32, i64)> {
    let file = key.rsplit('/').next()?;
    let stem = file.split('.').next()?;
    let mut parts = stem.rsplit('+');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((partition, offset))
}

/// Object key -> (ms when first listed, LastModified ms).
type SeenObjects = Arc<Mutex<HashMap<String, (i64, Option<i64>)>>>;

fn latency_run(ctx: &mut Ctx) -> anyhow::Result<Latency> {
    let topic = format!("{}-latency", ctx.topic);
    kafka::create_topic(&ctx.bootstrap, &topic, PARTITIONS)?;
    ctx.topics_to_delete.push(topic.clone());
    let load = procstat::load_average();
    let (rate, secs) = (ctx.args.latency_rate, ctx.args.latency_seconds);
    eprintln!("[bench] latency: {rate} records/s for {secs} s, flush.size=1000, 1 s scheduled rotation (load {load})");
    let (mut worker, _) = start_worker(ctx, "latency")?;
    let pid = worker.pid();
    let mut config = connector_config(ctx, &topic, "latency", "json", 1000);
    config["rotate.schedule.interval.ms"] = json!("1000");
    worker.create_connector("bench-latency", &config)?;
    let mut producer = Producing::new(&ctx.bootstrap, &topic, ctx.args.size, true)?;
    // Warm-up: one record per partition, until its object exists (the group
    // joined and the pipeline runs); these records are not measured.
    for p in 0..PARTITIONS {
        producer.send(p as u64, p, now_ms())?;
    }
    producer.flush()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        worker.task_states("bench-latency")?;
        let n = ctx.rt.block_on(s3::list(&ctx.client, &ctx.bucket, "latency/"))?.len();
        if n >= PARTITIONS as usize {
            break;
        }
        if Instant::now() > deadline || !worker.alive() {
            bail!("the warm-up records did not reach S3; worker log:\n{}", worker.log_tail());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Watch objects appear: the time this program first lists each.
    let seen: SeenObjects = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, rt, client, bucket) =
            (seen.clone(), stop.clone(), ctx.rt.clone(), ctx.client.clone(), ctx.bucket.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(list) = rt.block_on(s3::list(&client, &bucket, "latency/")) {
                    let now = now_ms();
                    if let Ok(mut seen) = seen.lock() {
                        for o in list {
                            seen.entry(o.key).or_insert((now, o.modified_ms));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let c0 = ctx.cpu(Some(pid));
    let load_start_ms = now_ms();
    let started = Instant::now();
    let mut seq = PARTITIONS as u64;
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while producer.sent - (PARTITIONS as u64) < due {
            producer.send(seq, (seq % PARTITIONS as u64) as i32, now_ms())?;
            seq += 1;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            eprintln!("[bench]   offered {} records", producer.sent - PARTITIONS as u64);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let achieved = (producer.sent - PARTITIONS as u64) as f64 / started.elapsed().as_secs_f64();
    let produced = producer.finish(Instant::now())?;
    let reader = CommittedReader::new(&ctx.bootstrap, "connect-bench-latency", &topic)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed = reader.committed()?;
        if committed.iter().zip(&produced.ends).all(|(c, e)| c >= e) {
            break;
        }
        if Instant::now() > deadline || !worker.alive() {
            bail!("sluice did not commit the latency run's records in time; log:\n{}", worker.log_tail());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // One more listing after the commit, then stop watching.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let cpu = diff(c0, ctx.cpu(Some(pid)));
    let peak_rss_mib = procstat::status_mib(pid, "VmHWM")?;
    worker.stop(Duration::from_secs(25));

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // Per partition: object start offsets, ascending, with their times.
    let mut by_partition: BTreeMap<i32, Vec<(i64, i64, Option<i64>)>> = BTreeMap::new();
    for (key, (seen_ms, modified)) in &seen {
        if let Some((p, start)) = parse_key(key) {
            by_partition.entry(p).or_default().push((start, *seen_ms, *modified));
        }
    }
    for v in by_partition.values_mut() {
        v.sort_unstable();
    }
    let (mut observed, mut modified) = (Vec::new(), Vec::new());
    for (p, records) in produced.times.iter().enumerate() {
        let Some(objs) = by_partition.get(&(p as i32)) else { bail!("no objects seen for partition {p}") };
        for &(offset, ts) in records {
            if ts < load_start_ms {
                continue; // warm-up
            }
            let i = objs.partition_point(|(start, _, _)| *start <= offset);
            if i == 0 {
                bail!("partition {p} offset {offset} is in no object seen");
            }
            let (_, seen_ms, lm) = objs[i - 1];
            observed.push(seen_ms - ts);
            if let Some(lm) = lm {
                modified.push(lm - ts);
            }
        }
    }
    observed.sort_unstable();
    modified.sort_unstable();
    let l = Latency {
        rate_offered: rate,
        rate_achieved: achieved,
        seconds: secs,
        records: observed.len(),
        objects: seen.len(),
        p50: percentile(&observed, 0.5),
        p99: percentile(&observed, 0.99),
        max: observed.last().copied().unwrap_or(0),
        lm_p50: percentile(&modified, 0.5),
        lm_p99: percentile(&modified, 0.99),
        lm_max: modified.last().copied().unwrap_or(0),
        peak_rss_mib,
        cpu,
        load,
    };
    eprintln!("[bench]   p50 {} ms, p99 {} ms, max {} ms over {} records", l.p50, l.p99, l.max, l.records);
    Ok(l)
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_json(c: &Cpu) -> Value {
    json!({ "worker": c.worker, "broker": c.broker, "s3_server": c.s3, "bench": c.bench })
}

fn row_json(r: &Row) -> Value {
    json!({
        "name": r.name, "records": r.records, "bytes": r.bytes, "seconds": r.seconds,
        "records_per_s": r.rps(), "mb_per_s": r.mbps(), "cpu_seconds": cpu_json(&r.cpu),
        "load_before": r.load, "details": r.extra,
    })
}

fn write_results(
    ctx: &Ctx,
    machine: &procstat::Machine,
    flush: u64,
    rows: &[Row],
    runs: &[SluiceRun],
    latency: Option<&Latency>,
) -> anyhow::Result<()> {
    let a = &ctx.args;
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    // Uncommitted changes in what is measured (the runtime or the sink).
    let dirty = !git(&["status", "--porcelain", "--", "runtime", "connectors/s3-sink", "connector-api"]).is_empty();
    let now = chrono::Utc::now();
    let ceiling = rows[1].mbps().min(rows[2].mbps());
    let ceiling_by = if rows[1].mbps() <= rows[2].mbps() { "consume" } else { "upload" };
    let targets: BTreeMap<&str, f64> = [("json", 0.7), ("gzip", 0.5), ("parquet", 0.4)].into_iter().collect();
    let per_m = |cpu: f64, records: u64| cpu / (records as f64 / 1e6);

    let mut md = String::new();
    let _ = writeln!(md, "# Kafka → S3 benchmark, {}\n", now.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        md,
        "- commit `{commit}`{}\n- machine: {} cores ({}), {} MiB memory, kernel {}\n- data: {} records of {} B order-like JSON, {} partitions; flush.size {flush}, s3.part.size {} MiB, s3.part.upload.concurrency {}, tasks.max 1, max.buffered.bytes {} MiB (the default 256 MiB stalls: nothing settles before an object of every partition completes); worker --kafka {}; extra sink settings {}\n- MB = 10^6 bytes of record values (the input); ratio = sluice MB/s ÷ ceiling MB/s, ceiling = min(consume, upload) = {ceiling:.1} MB/s ({ceiling_by}); the paired ratio uses an upload ceiling re-measured (a quarter of the objects) just before each sluice run, since the load of this shared machine moves between phases\n- CPU s/M rec: CPU-seconds per million records (user+system from /proc/<pid>/stat) of the worker (sluice rows) or of this harness (ceiling rows)\n- times include the consumer-group join for the consume ceiling (from subscribe) and sluice (from connector creation) alike; sluice ends when the committed offsets reach the end of every partition (commit interval 1 s) and every object is listed\n",
        if dirty { " (with uncommitted changes in runtime/ or connectors/s3-sink/)" } else { "" },
        machine.cores,
        machine.cpu_model,
        machine.memory_mib,
        machine.kernel,
        rows[0].records,
        a.size,
        PARTITIONS,
        a.part_size / MIB,
        a.upload_concurrency,
        max_buffered_bytes(flush, a.size) / MIB,
        if a.worker_kafka.is_empty() { "(none)".to_string() } else { a.worker_kafka.join(" ") },
        if a.sink.is_empty() {
            "(none)".to_string()
        } else {
            a.sink.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        },
    );
    let _ = writeln!(md, "| measurement | records/s | MB/s | seconds | ratio to ceiling | ratio to paired ceiling | worker peak RSS MiB | CPU s/M rec | broker CPU s | S3 server CPU s | harness CPU s | load before |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.1} | | | | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.name,
            r.rps(),
            r.mbps(),
            r.seconds,
            per_m(r.cpu.bench, r.records),
            r.cpu.broker,
            r.cpu.s3,
            r.cpu.bench,
            r.load
        );
    }
    for s in runs {
        let r = &s.row;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.1} | **{:.2}** | {:.2} (upload {:.1} MB/s just before) | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.name,
            r.rps(),
            r.mbps(),
            r.seconds,
            r.mbps() / ceiling,
            r.mbps() / s.paired_upload_mbps.min(rows[1].mbps()),
            s.paired_upload_mbps,
            s.peak_rss_mib,
            per_m(r.cpu.worker, r.records),
            r.cpu.broker,
            r.cpu.s3,
            r.cpu.bench,
            r.load
        );
    }
    let _ = writeln!(md);
    if let Some(l) = latency {
        let _ = writeln!(md, "## Latency\n");
        let _ = writeln!(md, "{} records/s offered ({:.0} achieved) for {} s, JSON, flush.size=1000, rotate.schedule.interval.ms=1000. Latency = the time this harness first listed the record's object (polling every 100 ms) − the record's Kafka timestamp (set by the producer when it queued the record). S3 LastModified has one-second resolution on SeaweedFS, so it is shown for reference only.\n", l.rate_offered, l.rate_achieved, l.seconds);
        let _ = writeln!(md, "| records | objects | p50 ms | p99 ms | max ms | p50/p99/max by LastModified ms | worker peak RSS MiB | worker CPU s | broker CPU s | S3 server CPU s | load before |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|");
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{}** | {} | {}/{}/{} | {:.0} | {:.1} | {:.1} | {:.1} | {} |\n",
            l.records,
            l.objects,
            l.p50,
            l.p99,
            l.max,
            l.lm_p50,
            l.lm_p99,
            l.lm_max,
            l.peak_rss_mib,
            l.cpu.worker,
            l.cpu.broker,
            l.cpu.s3,
            l.load
        );
    }
    let _ = writeln!(md, "## Targets\n");
    if !a.sink.is_empty() {
        // The targets are set for the sink's defaults; a run with other
        // settings shows what they change, it does not meet or miss a target.
        let _ = writeln!(
            md,
            "Measured with extra sink settings ({}), not the sink's defaults the targets are set for.\n",
            a.sink.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        );
    }
    let _ = writeln!(md, "| target | measured | met |\n|---|---|---|");
    for s in runs {
        if let Some(t) = targets.get(s.format.as_str()) {
            let ratio = s.row.mbps() / ceiling;
            let _ = writeln!(
                md,
                "| {} ≥ {t}× ceiling | {ratio:.2}× | {} |",
                s.format,
                if ratio >= *t { "yes" } else { "**no**" }
            );
        }
    }
    let peak = runs.iter().map(|s| s.peak_rss_mib).fold(0.0, f64::max);
    if !runs.is_empty() {
        let _ = writeln!(
            md,
            "| worker peak RSS ≤ 150 MiB | {peak:.0} MiB | {} |",
            if peak <= 150.0 { "yes" } else { "**no**" }
        );
    }
    if let Some(l) = latency {
        let _ = writeln!(
            md,
            "| latency p99 ≤ 3 s at 6,700 rec/s | {} ms at {:.0} rec/s | {} |",
            l.p99,
            l.rate_achieved,
            if l.p99 <= 3000 && l.rate_offered >= 6700 { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(md, "\n## Where the worker's time goes\n");
    for s in runs {
        let total: f64 = s.threads.iter().map(|t| t.1).sum();
        let _ = writeln!(
            md,
            "### {}\n\nCPU by thread (sampled from /proc/<pid>/task/*/stat every 0.5 s; pools grouped by name):\n",
            s.row.name
        );
        let _ = writeln!(md, "| thread | CPU s | share |\n|---|---:|---:|");
        for (name, secs) in s.threads.iter().take(8) {
            let _ = writeln!(md, "| `{name}` | {secs:.1} | {:.0}% |", 100.0 * secs / total.max(1e-9));
        }
        match &s.perf {
            Some(p) => {
                let _ = writeln!(md, "\n`perf record -a -F 199 -e cpu-clock`, `perf report --pid <worker> --percentage relative` (share of the worker's samples, self time by thread, object, symbol; top lines):\n\n```\n{p}\n```\n");
            }
            None => {
                let _ = writeln!(md, "\n(no perf profile in this run)\n");
            }
        }
    }

    let doc = json!({
        "date": now.to_rfc3339(),
        "commit": commit,
        "uncommitted_changes_in_measured_code": dirty,
        "machine": { "cores": machine.cores, "memory_mib": machine.memory_mib, "cpu": machine.cpu_model, "kernel": machine.kernel },
        "parameters": {
            "records": rows[0].records, "record_bytes": a.size, "partitions": PARTITIONS, "flush_size": flush,
            "part_size": a.part_size, "upload_concurrency": a.upload_concurrency, "tiny": a.tiny,
            "max_buffered_bytes": max_buffered_bytes(flush, a.size), "worker_kafka": a.worker_kafka,
            "sink": a.sink.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "ceiling_mb_per_s": ceiling,
        "ceiling_bound_by": ceiling_by,
        "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
        "sluice": runs.iter().map(|s| json!({
            "format": s.format,
            "result": row_json(&s.row),
            "ratio_to_ceiling": s.row.mbps() / ceiling,
            "paired_upload_ceiling_mb_per_s": s.paired_upload_mbps,
            "ratio_to_paired_ceiling": s.row.mbps() / s.paired_upload_mbps.min(rows[1].mbps()),
            "peak_rss_mib": s.peak_rss_mib,
            "cpu_seconds_per_million_records": per_m(s.row.cpu.worker, s.row.records),
            "objects": s.objects,
            "object_bytes": s.object_bytes,
            "threads_cpu_seconds": s.threads.iter().map(|(n, c)| json!([n, c])).collect::<Vec<_>>(),
            "perf_top": s.perf,
        })).collect::<Vec<_>>(),
        "latency": latency.map(|l| json!({
            "rate_offered": l.rate_offered, "rate_achieved": l.rate_achieved, "seconds": l.seconds,
            "records": l.records, "objects": l.objects,
            "observed_ms": { "p50": l.p50, "p99": l.p99, "max": l.max },
            "last_modified_ms": { "p50": l.lm_p50, "p99": l.lm_p99, "max": l.lm_max },
            "peak_rss_mib": l.peak_rss_mib, "cpu_seconds": cpu_json(&l.cpu), "load_before": l.load,
        })),
    });

    fs::create_dir_all(&ctx.out_dir).with_context(|| format!("creating {}", ctx.out_dir.display()))?;
    let mut stem = format!("{}-{}", now.format("%Y-%m-%d"), if commit.is_empty() { "nocommit" } else { &commit });
    if ctx.out_dir.join(format!("{stem}.md")).exists() {
        stem = format!("{stem}-{}", now.format("%H%M%S"));
    }
    let md_path = ctx.out_dir.join(format!("{stem}.md"));
    let json_path = ctx.out_dir.join(format!("{stem}.json"));
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
    fn parses_object_keys() {
        assert_eq!(parse_key("latency/t/partition=3/t+3+0000001234.json"), Some((3, 1234)));
        assert_eq!(parse_key("x/bench-1-2/partition=0/bench-1-2+0+0000000000.json.gz"), Some((0, 0)));
    }
}
