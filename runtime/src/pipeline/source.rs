//! A source task: poll → idempotent producer (acks=all) → source offsets
//! written to the offsets topic only after every record up to them was
//! acknowledged (delivery invariant 3) → the plugin's `commit`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use connector_api::{ErrorKind, SourceOffset};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use super::{backoff, failure, TaskContext};
use crate::{
    host::TaskHost,
    kafka::{ensure_topic, wait_delivery},
};

/// Records asked of the plugin per poll.
const POLL_MAX: u32 = 2000;

pub fn run(ctx: &TaskContext) -> Result<(), String> {
    let host = TaskHost::new(&ctx.connector, ctx.task, ctx.stop.clone(), ctx.plugin_metrics.clone()).into_ffi();
    let config: Vec<(&str, &str)> = ctx.task_config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut task = ctx.class.create_source_task(config, host).map_err(|e| failure("creating the task", e))?;
    let committed =
        ctx.cluster.read_source_offsets(&ctx.connector).map_err(|e| failure("reading source offsets", e))?;
    let committed: Vec<SourceOffset> = committed.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
    task.start(committed.into()).into_result().map_err(|e| failure("start", e))?;
    let producer: FutureProducer =
        ctx.cluster.kafka().producer().create().map_err(|e| failure("creating the producer", e))?;
    let [connector, task_id] = ctx.labels();
    let labels = [connector.as_str(), task_id.as_str()];
    let mut attempt = 0u32;
    // Topics are created on first use with `topic.creation.default.partitions`
    // (default 1), as Kafka Connect's topic creation does for sources.
    let partitions = ctx.runtime.topic_creation_partitions;
    let mut known_topics: BTreeSet<String> = BTreeSet::new();
    let result = loop {
        if ctx.stopping() {
            break Ok(());
        }
        if ctx.is_paused() {
            ctx.pause_for(Duration::from_millis(100));
            continue;
        }
        let records = match task.poll(POLL_MAX).into_result() {
            Ok(r) => {
                attempt = 0;
                r
            }
            Err(e) if e.kind() == ErrorKind::Retriable => {
                ctx.metrics.errors.with_label_values(&[&connector, &task_id, e.kind().name(), "TASK_POLL"]).inc();
                tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "poll failed; retrying");
                let wait = backoff(attempt, Duration::from_millis(ctx.runtime.retry_delay_max_ms));
                attempt += 1;
                ctx.pause_for(wait);
                continue;
            }
            Err(e) => break Err(failure("poll", e)),
        };
        if records.is_empty() {
            continue;
        }
        let mut deliveries = Vec::with_capacity(records.len());
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for r in records.iter() {
            if !known_topics.contains(r.topic.as_str()) {
                ensure_topic(ctx.cluster.kafka(), r.topic.as_str(), partitions, false)
                    .map_err(|e| failure("creating the topic", e))?;
                known_topics.insert(r.topic.to_string());
            }
            let mut headers = OwnedHeaders::new();
            for h in r.headers.iter() {
                headers = headers.insert(Header {
                    key: h.key.as_str(),
                    value: h.value.as_ref().map(|v| v.as_slice()).into_option(),
                });
            }
            let mut out = FutureRecord::to(r.topic.as_str()).headers(headers);
            if let Some(k) = r.key.as_ref().into_option() {
                out = out.key(k.as_slice());
            }
            if let Some(v) = r.value.as_ref().into_option() {
                out = out.payload(v.as_slice());
            }
            if let Some(p) = r.partition.into_option() {
                out = out.partition(p);
            }
            if let Some(ts) = r.timestamp.into_option() {
                out = out.timestamp(ts);
            }
            let delivery = loop {
                match producer.send_result(out) {
                    Ok(d) => break Ok(d),
                    Err((e, back))
                        if matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) =>
                    {
                        // The local queue is full: let librdkafka drain it.
                        std::thread::sleep(Duration::from_millis(5));
                        out = back;
                    }
                    Err((e, _)) => break Err(e),
                }
            };
            match delivery {
                Ok(d) => deliveries.push(d),
                Err(e) => return Err(failure(&format!("producing to {}", r.topic), e)),
            }
            last.insert(r.source.partition.to_string(), r.source.offset.to_string());
        }
        for d in deliveries {
            wait_delivery(d).map_err(|e| failure("producing", e))?;
        }
        ctx.metrics.records_written.with_label_values(&labels).inc_by(records.len() as u64);
        let offsets: Vec<(String, Option<String>)> = last.iter().map(|(p, o)| (p.clone(), Some(o.clone()))).collect();
        ctx.cluster.write_source_offsets(&ctx.connector, &offsets).map_err(|e| failure("storing source offsets", e))?;
        let acked: Vec<SourceOffset> = last.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
        if let Err(e) = task.commit(acked.into()).into_result() {
            tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "the task's commit hook failed");
        }
    };
    let _ = task.stop();
    result
}
