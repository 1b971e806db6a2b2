//! Latency mode: a steady offered rate with rotation set for freshness, and
//! the time from each record's timestamp to its object's appearance.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use serde_json::json;
use sluice_bench::{
    kafka::{self, now_ms, CommittedReader, Producing, PARTITIONS},
    procstat, s3,
};

use crate::{connector_config, diff, start_worker, Cpu, Ctx};

pub(crate) struct Latency {
    pub(crate) rate_offered: u64,
    pub(crate) rate_achieved: f64,
    pub(crate) seconds: u64,
    pub(crate) records: usize,
    pub(crate) objects: usize,
    pub(crate) p50: i64,
    pub(crate) p99: i64,
    pub(crate) max: i64,
    pub(crate) lm_p50: i64,
    pub(crate) lm_p99: i64,
    pub(crate) lm_max: i64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) cpu: Cpu,
    pub(crate) load: String,
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

pub(crate) fn latency_run(ctx: &mut Ctx) -> anyhow::Result<Latency> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_keys() {
        assert_eq!(parse_key("latency/t/partition=3/t+3+0000001234.json"), Some((3, 1234)));
        assert_eq!(parse_key("x/bench-1-2/partition=0/bench-1-2+0+0000000000.json.gz"), Some((0, 0)));
    }
}
