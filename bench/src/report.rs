//! The results as markdown and JSON under `bench/results/`.

use std::{collections::BTreeMap, fmt::Write as _, fs};

use anyhow::Context;
use serde_json::{json, Value};
use sluice_bench::{kafka::PARTITIONS, procstat, provenance};

use crate::{latency::Latency, max_buffered_bytes, Cpu, Ctx, Row, SluiceRun, MIB};

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

/// What every section of the report needs.
struct Report<'a> {
    ctx: &'a Ctx,
    machine: &'a procstat::Machine,
    flush: u64,
    rows: &'a [Row],
    runs: &'a [SluiceRun],
    latency: Option<&'a Latency>,
    commit: String,
    /// Uncommitted changes in what is measured (the runtime or the sink).
    dirty: bool,
    now: chrono::DateTime<chrono::Utc>,
    /// min(consume, upload) MB/s, and which of the two it is.
    ceiling: f64,
    ceiling_by: &'static str,
}

fn per_m(cpu: f64, records: u64) -> f64 {
    cpu / (records as f64 / 1e6)
}

pub(crate) fn write_results(
    ctx: &Ctx,
    machine: &procstat::Machine,
    flush: u64,
    rows: &[Row],
    runs: &[SluiceRun],
    latency: Option<&Latency>,
) -> anyhow::Result<()> {
    let (consume, upload) = (rows[1].mbps(), rows[2].mbps());
    let r = Report {
        ctx,
        machine,
        flush,
        rows,
        runs,
        latency,
        commit: provenance::commit(),
        dirty: provenance::dirty(&["runtime", "connectors/s3-sink", "connector-api"]),
        now: chrono::Utc::now(),
        ceiling: consume.min(upload),
        ceiling_by: if consume <= upload { "consume" } else { "upload" },
    };
    let mut md = String::new();
    r.header(&mut md);
    r.throughput(&mut md);
    r.latency(&mut md);
    r.targets(&mut md);
    r.threads(&mut md);
    r.save(&md, &r.json())
}

impl Report<'_> {
    fn header(&self, md: &mut String) {
        let (a, ctx, machine, flush, rows, ceiling, ceiling_by, dirty, now) = (
            &self.ctx.args,
            self.ctx,
            self.machine,
            self.flush,
            self.rows,
            self.ceiling,
            self.ceiling_by,
            self.dirty,
            self.now,
        );
        let commit = &self.commit;
        let _ = writeln!(md, "# Kafka → S3 benchmark, {}\n", now.format("%Y-%m-%d %H:%M UTC"));
        let _ = writeln!(
            md,
            "- commit `{commit}`{}\n- machine: {} cores ({}), {} MiB memory, kernel {}\n- data: {} records of {} B order-like JSON, {} partitions; flush.size {flush}, s3.part.size {} MiB, s3.part.upload.concurrency {}, tasks.max 1, max.buffered.bytes {} MiB (the default 256 MiB stalls: nothing settles before an object of every partition completes); worker --kafka {}; extra sink settings {}; S3 at {}\n- MB = 10^6 bytes of record values (the input); ratio = sluice MB/s ÷ ceiling MB/s, ceiling = min(consume, upload) = {ceiling:.1} MB/s ({ceiling_by}); the paired ratio uses an upload ceiling re-measured (a quarter of the objects) just before each sluice run, since the load of this shared machine moves between phases\n- CPU s/M rec: CPU-seconds per million records (user+system from /proc/<pid>/stat) of the worker (sluice rows) or of this harness (ceiling rows)\n- times include the consumer-group join for the consume ceiling (from subscribe) and sluice (from connector creation) alike; sluice ends when the committed offsets reach the end of every partition (commit interval 1 s) and every object is listed\n",
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
            ctx.s3env.endpoint,
        );
    }

    fn throughput(&self, md: &mut String) {
        let (rows, runs, ceiling) = (self.rows, self.runs, self.ceiling);
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
    }

    fn latency(&self, md: &mut String) {
        let latency = self.latency;
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
    }

    fn targets(&self, md: &mut String) {
        let (a, runs, latency, ceiling) = (&self.ctx.args, self.runs, self.latency, self.ceiling);
        let targets: BTreeMap<&str, f64> = [("json", 0.7), ("gzip", 0.5), ("parquet", 0.4)].into_iter().collect();
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
    }

    fn threads(&self, md: &mut String) {
        let runs = self.runs;
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
    }

    fn json(&self) -> Value {
        let (a, ctx, machine, flush, rows, runs, latency, ceiling, ceiling_by, dirty, now) = (
            &self.ctx.args,
            self.ctx,
            self.machine,
            self.flush,
            self.rows,
            self.runs,
            self.latency,
            self.ceiling,
            self.ceiling_by,
            self.dirty,
            self.now,
        );
        let commit = &self.commit;
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
                "s3_endpoint": ctx.s3env.endpoint,
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

        doc
    }

    fn save(&self, md: &str, doc: &Value) -> anyhow::Result<()> {
        let (ctx, commit, now) = (self.ctx, &self.commit, self.now);
        fs::create_dir_all(&ctx.out_dir).with_context(|| format!("creating {}", ctx.out_dir.display()))?;
        let mut stem = format!("{}-{}", now.format("%Y-%m-%d"), if commit.is_empty() { "nocommit" } else { &commit });
        if ctx.out_dir.join(format!("{stem}.md")).exists() {
            stem = format!("{stem}-{}", now.format("%H%M%S"));
        }
        let md_path = ctx.out_dir.join(format!("{stem}.md"));
        let json_path = ctx.out_dir.join(format!("{stem}.json"));
        fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
        fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", json_path.display()))?;
        println!("{md}");
        eprintln!("[bench] results: {} and {}", md_path.display(), json_path.display());
        Ok(())
    }
}
