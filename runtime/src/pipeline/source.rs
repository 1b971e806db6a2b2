//! A source task: poll → idempotent producer (acks=all) → source offsets
//! written to the offsets topic only after every record up to them was
//! acknowledged (delivery invariant 3) → the plugin's `commit`. A record a
//! transform or converter fails goes, with `errors.tolerance=all` and a DLQ
//! topic, to the DLQ as the plugin gave it (beyond Kafka Connect, which only
//! skips it); its offset counts only once the DLQ acknowledged it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use connector_api::{ConnectorError, ErrorKind, SourceOffset, SourceRecord};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
};

use super::{
    backoff,
    dlq::{self, ErrorContext, FailedRecord, Route},
    failure, TaskContext,
};
use crate::{
    connector_config::RuntimeConfig,
    converter::Part,
    host::TaskHost,
    kafka::{ensure_topic, wait_delivery},
    transform::Record,
};

/// Records asked of the plugin per poll.
const POLL_MAX: u32 = 2000;

/// A polled record after transforms and converters (built only when some
/// are configured that change records).
struct Transformed {
    topic: String,
    partition: Option<i32>,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Kafka Connect's order for sources: transforms, then converters. The
/// plugin's bytes are read per converter first (JSON text for `json`), so a
/// plugin handing invalid JSON fails at the converter stage.
/// `Ok(None)`: a transform dropped the record; `Err`: (message, stage).
fn transform(runtime: &RuntimeConfig, r: &SourceRecord) -> Result<Option<Transformed>, (String, &'static str)> {
    let convert = |part: Part, bytes: Option<&[u8]>| {
        let converter = if part == Part::Key { runtime.key_converter } else { runtime.value_converter };
        converter.from_plugin(bytes, part).map_err(|e| {
            (format!("{e}; record for topic {} from source partition {}", r.topic, r.source.partition), part.stage())
        })
    };
    let record = Record {
        topic: r.topic.to_string(),
        partition: r.partition.into_option(),
        offset: None,
        timestamp: r.timestamp.into_option(),
        key: convert(Part::Key, r.key.as_ref().map(|k| k.as_slice()).into_option())?,
        value: convert(Part::Value, r.value.as_ref().map(|v| v.as_slice()).into_option())?,
        headers: r
            .headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.as_ref().map(|v| v.to_vec()).into_option()))
            .collect(),
    };
    let Some(out) = runtime.transforms.apply(record).map_err(|e| (e, "TRANSFORMATION"))? else { return Ok(None) };
    Ok(Some(Transformed {
        topic: out.topic,
        partition: out.partition,
        timestamp: out.timestamp,
        key: runtime.key_converter.to_kafka(out.key),
        value: runtime.value_converter.to_kafka(out.value),
        headers: out.headers,
    }))
}

pub fn run(ctx: &TaskContext) -> Result<(), String> {
    let host = TaskHost::new(&ctx.connector, ctx.task, ctx.stop.clone(), ctx.plugin_metrics.clone()).into_ffi();
    let config: Vec<(&str, &str)> = ctx.task_config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut task = ctx.class.create_source_task(config, host).map_err(|e| failure("creating the task", e))?;
    let committed =
        ctx.cluster.read_source_offsets(&ctx.connector).map_err(|e| failure("reading source offsets", e))?;
    let committed: Vec<SourceOffset> = committed.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
    task.start(committed.into()).into_result().map_err(|e| failure("start", e))?;
    let producer = ctx.producer("producer")?;
    let [connector, task_id] = ctx.labels();
    let labels = [connector.as_str(), task_id.as_str()];
    let mut attempt = 0u32;
    // Topics are created on first use with `topic.creation.default.partitions`
    // (default 1), as Kafka Connect's topic creation does for sources.
    let partitions = ctx.runtime.topic_creation_partitions;
    let mut known_topics: BTreeSet<String> = BTreeSet::new();
    let rewrite = !ctx.runtime.transforms.is_empty()
        || ctx.runtime.key_converter.source_rewrites()
        || ctx.runtime.value_converter.source_rewrites();
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
        // Checked once per run of records to the same topic and poll, so a
        // reset of the active topics is seen by the next poll.
        let mut noted_topic: Option<String> = None;
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let mut filtered = 0u64;
        let mut failed: Option<String> = None;
        // DLQ'd records count like produced ones: the poll's offsets are
        // stored only after these are acknowledged too.
        let mut dlq_deliveries = Vec::new();
        for r in records.iter() {
            // Every polled record's offset counts once the records before it
            // are acknowledged, whether it was produced, dropped by a
            // transform or skipped as a tolerated failure (as in Kafka Connect).
            last.insert(r.source.partition.to_string(), r.source.offset.to_string());
            let owned = if rewrite {
                match transform(&ctx.runtime, r) {
                    Ok(Some(t)) => Some(t),
                    Ok(None) => {
                        filtered += 1;
                        continue;
                    }
                    Err((message, stage)) => {
                        ctx.metrics.errors.with_label_values(&[&connector, &task_id, "BadRecord", stage]).inc();
                        let error = ConnectorError::bad_record(message);
                        let topic = match dlq::route(&error, &ctx.runtime) {
                            Route::Fail => {
                                failed = Some(format!(
                                    "{error} (stage {stage}); errors.tolerance is none: fix the source data or the \
                                     transform/converter config, or set errors.tolerance=all to skip such records \
                                     (with errors.deadletterqueue.topic.name to keep them)"
                                ));
                                break;
                            }
                            Route::Drop => None,
                            Route::Topic { topic, .. } => Some(topic),
                        };
                        if ctx.runtime.log_errors {
                            let what = if topic.is_some() {
                                "sending a source record to the DLQ"
                            } else {
                                "skipping a source record"
                            };
                            tracing::error!(connector = %ctx.connector, task = ctx.task, stage, "{what}: {error}");
                        }
                        if let Some(topic) = topic {
                            if !known_topics.contains(&topic) {
                                ensure_topic(ctx.cluster.kafka(), &topic, 1, false)
                                    .map_err(|e| failure(&format!("creating the DLQ topic {topic}"), e))?;
                                known_topics.insert(topic.clone());
                            }
                            // Source records have no Kafka offset, and a partition
                            // only when the plugin chose one: -1 stands for none.
                            let record = FailedRecord {
                                topic: r.topic.as_str(),
                                partition: r.partition.into_option().unwrap_or(-1),
                                offset: -1,
                                key: r.key.as_ref().map(|k| k.as_slice()).into_option(),
                                value: r.value.as_ref().map(|v| v.as_slice()).into_option(),
                                headers: r
                                    .headers
                                    .iter()
                                    .map(|h| (h.key.as_str(), h.value.as_ref().map(|v| v.as_slice()).into_option()))
                                    .collect(),
                            };
                            let context = ErrorContext {
                                connector: &ctx.connector,
                                task: ctx.task,
                                class: ctx.class.name(),
                                stage,
                            };
                            let delivery = dlq::send(
                                &producer,
                                &topic,
                                &record,
                                &error,
                                &context,
                                ctx.runtime.dlq_context_headers,
                            )
                            .map_err(|e| failure("routing a failed source record to the DLQ", e))?;
                            dlq_deliveries.push(delivery);
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let topic = owned.as_ref().map_or(r.topic.as_str(), |t| t.topic.as_str());
            if !known_topics.contains(topic) {
                ensure_topic(ctx.cluster.kafka(), topic, partitions, false)
                    .map_err(|e| failure("creating the topic", e))?;
                known_topics.insert(topic.to_string());
            }
            if noted_topic.as_deref() != Some(topic) {
                ctx.note_active_topics([topic]);
                noted_topic = Some(topic.to_string());
            }
            let mut headers = OwnedHeaders::new();
            let (key, value, partition, timestamp) = match &owned {
                Some(t) => {
                    for (key, value) in &t.headers {
                        headers = headers.insert(Header { key: key.as_str(), value: value.as_deref() });
                    }
                    (t.key.as_deref(), t.value.as_deref(), t.partition, t.timestamp)
                }
                None => {
                    for h in r.headers.iter() {
                        headers = headers.insert(Header {
                            key: h.key.as_str(),
                            value: h.value.as_ref().map(|v| v.as_slice()).into_option(),
                        });
                    }
                    (
                        r.key.as_ref().map(|k| k.as_slice()).into_option(),
                        r.value.as_ref().map(|v| v.as_slice()).into_option(),
                        r.partition.into_option(),
                        r.timestamp.into_option(),
                    )
                }
            };
            let mut out = FutureRecord::to(topic).headers(headers);
            if let Some(k) = key {
                out = out.key(k);
            }
            if let Some(v) = value {
                out = out.payload(v);
            }
            if let Some(p) = partition {
                out = out.partition(p);
            }
            if let Some(ts) = timestamp {
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
                Err(e) => return Err(failure(&format!("producing to {topic}"), e)),
            }
        }
        let produced = deliveries.len() as u64;
        for d in deliveries {
            wait_delivery(d).map_err(|e| failure("producing", e))?;
        }
        let dead = dlq_deliveries.len() as u64;
        for d in dlq_deliveries {
            wait_delivery(d).map_err(|e| failure("producing to the dead-letter queue", e))?;
        }
        if dead > 0 {
            ctx.metrics.records_dlq.with_label_values(&labels).inc_by(dead);
        }
        if let Some(f) = failed {
            // The records before the failed one are acknowledged but their
            // offsets are not stored: a restart re-polls them (at least once).
            break Err(f);
        }
        ctx.metrics.records_written.with_label_values(&labels).inc_by(produced);
        if filtered > 0 {
            ctx.metrics.records_filtered.with_label_values(&labels).inc_by(filtered);
        }
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
