//! A source task: poll → idempotent producer (acks=all) → source offsets
//! written to the offsets topic only after every record up to them was
//! acknowledged (ARCHITECTURE.md invariant 3) → the plugin's `commit`. A record a
//! transform or converter fails goes, with `errors.tolerance=all` and a DLQ
//! topic, to the DLQ as the plugin gave it (beyond Kafka Connect, which only
//! skips it); its offset counts only once the DLQ acknowledged it.

mod fault;
mod ledger;
mod readback;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use connector_api::{ffi::FfiSourceTaskBox, ConnectorError, SourceOffset, SourceRecord};
use fault::FaultPoint;
use ledger::{Disposition, Failure, PollLedger, Settlement};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureRecord},
    types::RDKafkaErrorCode,
};
use readback::{Positions, Seen, Stored};

use super::{
    dlq::{self, ErrorContext, FailedRecord},
    failure, TaskContext,
};
use crate::{
    connector_config::RuntimeConfig,
    converter::{infer_schema, Part},
    host::TaskHost,
    kafka::wait_delivery,
    metrics::CountedProducer,
    transform::{Data, Record},
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
/// plugin's bytes are read per converter first (JSON text for `json` and the
/// registry converters), so a plugin handing invalid JSON fails at the
/// converter stage. `Ok(None)`: a transform dropped the record.
fn transform(runtime: &RuntimeConfig, r: &SourceRecord) -> Result<Option<Transformed>, Failure> {
    let at = || {
        format!("record for topic {} from source partition {} offset {}", r.topic, r.source.partition, r.source.offset)
    };
    let convert = |part: Part, bytes: Option<&[u8]>| {
        let converter = if part == Part::Key { &runtime.key_converter } else { &runtime.value_converter };
        converter.from_plugin(bytes, part).map_err(|e| Failure::bad(format!("{e}; {}", at()), part.stage()))
    };
    let key = convert(Part::Key, r.key.as_ref().map(|k| k.as_slice()).into_option())?;
    let value = convert(Part::Value, r.value.as_ref().map(|v| v.as_slice()).into_option())?;
    let record = Record {
        topic: r.topic.to_string(),
        partition: r.partition.into_option(),
        offset: None,
        timestamp: r.timestamp.into_option(),
        key_schema: early_schema(runtime, Part::Key, key.as_ref()),
        value_schema: early_schema(runtime, Part::Value, value.as_ref()),
        key,
        value,
        headers: r
            .headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.as_ref().map(|v| v.to_vec()).into_option()))
            .collect(),
    };
    let Some(out) = runtime.transforms.apply(record).map_err(|e| Failure::bad(e, "TRANSFORMATION"))? else {
        return Ok(None);
    };
    let to_kafka = |part: Part, data, schema: Option<&str>| {
        let converter = if part == Part::Key { &runtime.key_converter } else { &runtime.value_converter };
        converter.to_kafka(data, schema, part, &out.topic).map_err(|e| Failure {
            message: format!("{}; {}", e.message, at()),
            stage: part.stage(),
            retriable: e.retriable,
        })
    };
    Ok(Some(Transformed {
        key: to_kafka(Part::Key, out.key, out.key_schema.as_deref())?,
        value: to_kafka(Part::Value, out.value, out.value_schema.as_deref())?,
        topic: out.topic,
        partition: out.partition,
        timestamp: out.timestamp,
        headers: out.headers,
    }))
}

/// A source record carries no schema through the ABI, so a converter infers
/// one after the transforms. A registry converter's is inferred before them
/// when no transform changes values, so a SetSchemaMetadata transform can
/// name (and version) it, as Kafka Connect users name their Avro records.
fn early_schema(runtime: &RuntimeConfig, part: Part, data: Option<&Data>) -> Option<String> {
    let converter = if part == Part::Key { &runtime.key_converter } else { &runtime.value_converter };
    match data {
        Some(Data::Json(v)) if converter.infers_registry_schema() && runtime.transforms.keeps_values() => {
            Some(infer_schema(v, false).to_string())
        }
        _ => None,
    }
}

pub fn run(ctx: &TaskContext) -> Result<(), String> {
    let host = TaskHost::new(&ctx.connector, ctx.task, ctx.stop.clone(), ctx.plugin_metrics.clone()).into_ffi();
    let config: Vec<(&str, &str)> = ctx.task_config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut fault = FaultPoint::from_env()?;
    let mut task = ctx.class.create_source_task(config, host).map_err(|e| failure("creating the task", e))?;
    let committed =
        ctx.cluster.read_source_offsets(&ctx.connector).map_err(|e| failure("reading source offsets", e))?;
    let eos = if ctx.runtime.exactly_once_source { Some(Eos::start(ctx, &committed)?) } else { None };
    let committed: Vec<SourceOffset> = committed.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
    task.start(committed.into()).into_result().map_err(|e| failure("start", e))?;
    let mut out = Output::new(ctx, eos)?;
    // An I/O failure producing or storing (the outer `Err`) ends the task
    // without the plugin's `stop`, as it always has; the loop's own end
    // (stopped, a failed poll, an untolerated record) stops the plugin.
    let result = poll_loop(ctx, &mut task, &mut out, fault.as_mut())?;
    let _ = task.stop();
    result
}

/// Polls until the task stops or fails: `Ok(result)` ends with the plugin's
/// `stop`, `Err` without it. `fault`: the test-only fault point
/// (`SLUICE_SOURCE_FAULT`, see `fault.rs`).
fn poll_loop(
    ctx: &TaskContext,
    task: &mut FfiSourceTaskBox,
    out: &mut Output,
    mut fault: Option<&mut FaultPoint>,
) -> Result<Result<(), String>, String> {
    let [connector, task_id] = ctx.labels();
    let mut attempt = 0u32;
    loop {
        if ctx.stopping() {
            return Ok(Ok(()));
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
            Err(e) => {
                match ledger::poll_retry(e.kind(), attempt, Duration::from_millis(ctx.runtime.retry_delay_max_ms)) {
                    Some(wait) => {
                        ctx.metrics
                            .errors
                            .with_label_values(&[&connector, &task_id, e.kind().name(), "TASK_POLL"])
                            .inc();
                        tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "poll failed; retrying");
                        attempt += 1;
                        ctx.pause_for(wait);
                        continue;
                    }
                    None => return Ok(Err(failure("poll", e))),
                }
            }
        };
        if records.is_empty() {
            continue;
        }
        let (ledger, queued) = out.queue_poll(ctx, &records)?;
        let produced = queued.wait(ctx, out.eos.as_mut())?;
        match ledger.settle() {
            // The records before the failed one are acknowledged but their
            // offsets are not stored: a restart re-polls them (at least once).
            Settlement::Fail(trace) => return Ok(Err(trace)),
            Settlement::Store { offsets, filtered } => {
                let labels = [connector.as_str(), task_id.as_str()];
                ctx.metrics.records_written.with_label_values(&labels).inc_by(produced);
                if filtered > 0 {
                    ctx.metrics.records_filtered.with_label_values(&labels).inc_by(filtered);
                }
                if let Some(fault) = fault.as_deref_mut() {
                    fault.after_ack(&ctx.connector, ctx.task, produced);
                }
                // The positions after the offsets: a failure between the two
                // leaves older positions, which only read back more.
                let positions = out.eos.as_ref().map(Eos::stored_json).transpose()?;
                store_offsets(ctx, task, offsets, positions)?;
            }
        }
    }
}

/// Invariant 3: called only once every record of the poll was acknowledged;
/// the plugin's `commit` comes after the offsets are stored.
/// `positions`: an exactly-once task's read-back positions, stored after them.
fn store_offsets(
    ctx: &TaskContext,
    task: &mut FfiSourceTaskBox,
    last: BTreeMap<String, String>,
    positions: Option<String>,
) -> Result<(), String> {
    let offsets: Vec<(String, Option<String>)> = last.iter().map(|(p, o)| (p.clone(), Some(o.clone()))).collect();
    ctx.cluster
        .write_source_offsets_then(&ctx.connector, &offsets, positions.as_deref().map(|p| (ctx.task, p)))
        .map_err(|e| failure("storing source offsets", e))?;
    let acked: Vec<SourceOffset> = last.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
    if let Err(e) = task.commit(acked.into()).into_result() {
        tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "the task's commit hook failed");
    }
    Ok(())
}

/// The deliveries one poll queued; its offsets count once all are acknowledged.
struct Queued {
    /// Each delivery with its topic (for the read-back positions).
    records: Vec<(String, DeliveryFuture)>,
    /// DLQ'd records count like produced ones: the poll's offsets are
    /// stored only after these are acknowledged too.
    dlq: Vec<(String, DeliveryFuture)>,
}

impl Queued {
    /// Waits for every acknowledgement; the number of records produced.
    /// Delivery reports move `eos`'s positions.
    fn wait(self, ctx: &TaskContext, mut eos: Option<&mut Eos>) -> Result<u64, String> {
        let produced = self.records.len() as u64;
        for (topic, d) in self.records {
            let (partition, offset) = wait_delivery(d).map_err(|e| failure("producing", e))?;
            if let Some(eos) = eos.as_deref_mut() {
                eos.positions.acked(&topic, partition, offset);
            }
        }
        let dead = self.dlq.len() as u64;
        for (topic, d) in self.dlq {
            let (partition, offset) = wait_delivery(d).map_err(|e| failure("producing to the dead-letter queue", e))?;
            if let Some(eos) = eos.as_deref_mut() {
                eos.positions.acked(&topic, partition, offset);
            }
        }
        if dead > 0 {
            let [connector, task_id] = ctx.labels();
            ctx.metrics.records_dlq.with_label_values(&[connector.as_str(), task_id.as_str()]).inc_by(dead);
        }
        Ok(produced)
    }
}

/// The producer and the topics known to exist.
struct Output {
    producer: CountedProducer,
    known_topics: BTreeSet<String>,
    /// Whether transforms or converters may change records (else records are
    /// produced as polled, without an owned copy).
    rewrite: bool,
    /// Exactly-once sources (`exactly.once.source.support=enabled`).
    eos: Option<Eos>,
}

impl Output {
    fn new(ctx: &TaskContext, eos: Option<Eos>) -> Result<Output, String> {
        // A paused producer must not deliver after another worker took the
        // task over and read back: the takeover comes one session timeout
        // after the last heartbeat (sent every quarter of it), so a record
        // queued before a pause expires before it, with a quarter to spare
        // for the new owner's start (ARCHITECTURE.md, "Exactly-once sources").
        let fixed = match &eos {
            Some(_) => {
                vec![("message.timeout.ms", readback::message_timeout_ms(ctx.cluster.kafka().session_timeout_ms))]
            }
            None => Vec::new(),
        };
        Ok(Output {
            producer: ctx.producer_with("producer", &fixed)?,
            known_topics: BTreeSet::new(),
            rewrite: !ctx.runtime.transforms.is_empty()
                || ctx.runtime.key_converter.source_rewrites()
                || ctx.runtime.value_converter.source_rewrites(),
            eos,
        })
    }

    /// Creates `topic` on first use with `partitions`.
    /// `replication`: the factor and the setting it comes from.
    fn ensure(
        &mut self,
        ctx: &TaskContext,
        topic: &str,
        partitions: i32,
        replication: (i32, &str),
        what: &str,
    ) -> Result<(), String> {
        if !self.known_topics.contains(topic) {
            ctx.ensure_topic(topic, partitions, replication.0, replication.1).map_err(|e| failure(what, e))?;
            if let Some(eos) = &mut self.eos {
                eos.first_use(ctx, topic)?;
            }
            self.known_topics.insert(topic.to_string());
        }
        Ok(())
    }

    /// Queues every record of one poll (up to an untolerated failure) and
    /// records what each one means for the poll's offsets.
    fn queue_poll(&mut self, ctx: &TaskContext, records: &[SourceRecord]) -> Result<(PollLedger, Queued), String> {
        let [connector, task_id] = ctx.labels();
        let mut ledger = PollLedger::default();
        let mut queued = Queued { records: Vec::with_capacity(records.len()), dlq: Vec::new() };
        // Checked once per run of records to the same topic and poll, so a
        // reset of the active topics is seen by the next poll.
        let mut noted_topic: Option<String> = None;
        let mut skipped = 0u64;
        for r in records {
            ledger.saw(r.source.partition.as_str(), r.source.offset.as_str());
            // Already in Kafka from an earlier incarnation: settled as if
            // produced now (its offset counts once the records before it are
            // acknowledged).
            if let Some(eos) = &mut self.eos {
                if eos.seen.already_written(r.source.partition.as_str(), r.source.offset.as_str()) {
                    skipped += 1;
                    continue;
                }
            }
            let transformed = self.rewrite.then(|| transform(&ctx.runtime, r));
            let owned = match ledger::dispose(transformed, |e| dlq::route(e, &ctx.runtime)) {
                Disposition::Produce(owned) => owned,
                Disposition::Filtered => {
                    ledger.filtered();
                    continue;
                }
                Disposition::Fail { stage, trace, kind } => {
                    ctx.metrics.errors.with_label_values(&[&connector, &task_id, kind.name(), stage]).inc();
                    ledger.fail(trace);
                    break;
                }
                Disposition::Tolerated { error, stage, dlq } => {
                    ctx.metrics.errors.with_label_values(&[&connector, &task_id, "BadRecord", stage]).inc();
                    if let Some(d) = self.tolerate(ctx, r, &error, stage, dlq)? {
                        queued.dlq.push(d);
                    }
                    continue;
                }
            };
            let topic = owned.as_ref().map_or(r.topic.as_str(), |t| t.topic.as_str());
            // Topics are created on first use with `topic.creation.default.partitions`
            // (default 1), as Kafka Connect's topic creation does for sources.
            let replication =
                (ctx.runtime.topic_creation_replication_factor, "topic.creation.default.replication.factor");
            self.ensure(ctx, topic, ctx.runtime.topic_creation_partitions, replication, "creating the topic")?;
            if noted_topic.as_deref() != Some(topic) {
                ctx.note_active_topics([topic]);
                noted_topic = Some(topic.to_string());
            }
            let stamp = self.eos.as_mut().map(Eos::stamp);
            let delivery = send(&self.producer, future_record(topic, r, owned.as_ref(), stamp.as_ref()))
                .map_err(|e| failure(&format!("producing to {topic}"), e))?;
            queued.records.push((topic.to_string(), delivery));
        }
        if skipped > 0 {
            tracing::info!(
                connector = %ctx.connector,
                task = ctx.task,
                skipped,
                "skipped re-polled records an earlier incarnation already wrote to Kafka"
            );
        }
        Ok((ledger, queued))
    }

    /// A failed record under `errors.tolerance=all`: logged if asked, and
    /// queued to the DLQ when there is one.
    fn tolerate(
        &mut self,
        ctx: &TaskContext,
        r: &SourceRecord,
        error: &ConnectorError,
        stage: &'static str,
        topic: Option<String>,
    ) -> Result<Option<(String, DeliveryFuture)>, String> {
        if ctx.runtime.log_errors {
            let what = if topic.is_some() { "sending a source record to the DLQ" } else { "skipping a source record" };
            tracing::error!(connector = %ctx.connector, task = ctx.task, stage, "{what}: {error}");
        }
        let Some(topic) = topic else { return Ok(None) };
        let replication = (ctx.runtime.dlq_replication_factor, "errors.deadletterqueue.topic.replication.factor");
        self.ensure(ctx, &topic, 1, replication, &format!("creating the DLQ topic {topic}"))?;
        let stamp = self.eos.as_mut().map(Eos::stamp);
        let mut headers: Vec<(&str, Option<&[u8]>)> =
            r.headers.iter().map(|h| (h.key.as_str(), h.value.as_ref().map(|v| v.as_slice()).into_option())).collect();
        if let Some(stamp) = &stamp {
            headers.extend(source_headers(r, stamp));
        }
        // Source records have no Kafka offset, and a partition only when the
        // plugin chose one: -1 stands for none.
        let record = FailedRecord {
            topic: r.topic.as_str(),
            partition: r.partition.into_option().unwrap_or(-1),
            offset: -1,
            key: r.key.as_ref().map(|k| k.as_slice()).into_option(),
            value: r.value.as_ref().map(|v| v.as_slice()).into_option(),
            headers,
        };
        let context = ErrorContext { connector: &ctx.connector, task: ctx.task, class: ctx.class.name(), stage };
        let delivery =
            dlq::send(&self.producer, &topic, &record, error, &[], &context, ctx.runtime.dlq_context_headers)
                .map_err(|e| failure("routing a failed source record to the DLQ", e))?;
        Ok(Some((topic, delivery)))
    }
}

/// The headers naming a record's source partition, offset, the task's
/// incarnation and the record's sequence in it (exactly-once sources;
/// `readback.rs` reads them back). `stamp`: (incarnation, sequence) as text.
fn source_headers<'a>(r: &'a SourceRecord, stamp: &'a (String, String)) -> [(&'a str, Option<&'a [u8]>); 4] {
    [
        (readback::HEADER_PARTITION, Some(r.source.partition.as_str().as_bytes())),
        (readback::HEADER_OFFSET, Some(r.source.offset.as_str().as_bytes())),
        (readback::HEADER_INCARNATION, Some(stamp.0.as_bytes())),
        (readback::HEADER_SEQUENCE, Some(stamp.1.as_bytes())),
    ]
}

/// The Kafka record for a polled record: as transformed when `owned`, else
/// as the plugin gave it; with the source headers when `stamp` is set.
fn future_record<'a>(
    topic: &'a str,
    r: &'a SourceRecord,
    owned: Option<&'a Transformed>,
    stamp: Option<&'a (String, String)>,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new();
    let (key, value, partition, timestamp) = match owned {
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
    if let Some(stamp) = stamp {
        for (key, value) in source_headers(r, stamp) {
            headers = headers.insert(Header { key, value });
        }
    }
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
    out
}

/// Queues `out`, waiting while librdkafka's local queue is full.
fn send(producer: &CountedProducer, mut out: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(out) {
            Ok(d) => return Ok(d),
            Err((e, back)) if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) => {
                // The local queue is full: let librdkafka drain it.
                std::thread::sleep(Duration::from_millis(5));
                out = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// An exactly-once source task's state: its incarnation, where each
/// topic-partition it wrote to must be read back from, and the records
/// earlier incarnations wrote that it has not re-polled yet.
struct Eos {
    incarnation: u64,
    /// `incarnation` as header text.
    incarnation_text: String,
    /// The next record's sequence in this incarnation.
    sequence: u64,
    positions: Positions,
    seen: Seen,
}

impl Eos {
    /// Reads back what earlier incarnations wrote past the stored positions
    /// (every task's: source partitions may have moved between tasks), then
    /// stores this incarnation's positions.
    fn start(ctx: &TaskContext, committed: &BTreeMap<String, String>) -> Result<Eos, String> {
        let stored = ctx
            .cluster
            .read_source_positions(&ctx.connector)
            .map_err(|e| failure("reading the read-back positions", e))?;
        let stored: Vec<Stored> = stored
            .iter()
            .map(|(task, json)| {
                serde_json::from_str(json).map_err(|e| {
                    failure(
                        &format!(
                            "reading the read-back positions of task {task} (offsets topic key {})",
                            crate::cluster::POSITIONS_KEY
                        ),
                        e,
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let (positions, incarnation) = Positions::start(&stored, readback::now_ms());
        let (mut seen, ends) = readback::read_back(ctx.cluster.kafka(), &readback_group(ctx), &positions)
            .map_err(|e| failure("reading back records of earlier incarnations", e))?;
        seen.drop_covered(committed);
        tracing::info!(
            connector = %ctx.connector,
            task = ctx.task,
            incarnation,
            topic_partitions = positions.0.len(),
            already_written = seen.len(),
            "exactly-once source: read back what earlier incarnations wrote"
        );
        let eos = Eos { incarnation, incarnation_text: incarnation.to_string(), sequence: 0, positions: ends, seen };
        eos.store(ctx)?;
        Ok(eos)
    }

    /// The headers' (incarnation, sequence) of the next record produced.
    fn stamp(&mut self) -> (String, String) {
        self.sequence += 1;
        (self.incarnation_text.clone(), (self.sequence - 1).to_string())
    }

    /// The positions to store (held back to records not re-polled yet).
    fn stored_json(&self) -> Result<String, String> {
        serde_json::to_string(&self.positions.to_stored(self.incarnation, &self.seen))
            .map_err(|e| failure("encoding the read-back positions", e))
    }

    /// Stores the positions alone.
    fn store(&self, ctx: &TaskContext) -> Result<(), String> {
        let json = self.stored_json()?;
        ctx.cluster
            .write_source_positions(&ctx.connector, ctx.task, Some(&json))
            .map_err(|e| failure("storing the read-back positions", e))
    }

    /// A topic this incarnation writes to for the first time: unless its
    /// position is known, store a lower bound of its end before producing,
    /// so a death before the first store still finds what was written.
    fn first_use(&mut self, ctx: &TaskContext, topic: &str) -> Result<(), String> {
        if self.positions.knows_topic(topic) {
            return Ok(());
        }
        let firsts = readback::first_positions(ctx.cluster.kafka(), &readback_group(ctx), topic)
            .map_err(|e| failure(&format!("finding the end of {topic}"), e))?;
        for (partition, next) in firsts {
            self.positions.0.insert((topic.to_string(), partition), next);
        }
        self.store(ctx)
    }
}

/// The (never committing) consumer group of a task's read-back.
fn readback_group(ctx: &TaskContext) -> String {
    format!("connect-{}-readback-{}", ctx.connector, ctx.task)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::Kind;

    fn runtime(pairs: &[(&str, &str)]) -> RuntimeConfig {
        let mut config: BTreeMap<String, String> = [
            ("value.converter", "avro"),
            ("value.converter.schema.registry.url", "http://127.0.0.1:9"),
            ("transforms", "meta"),
            ("transforms.meta.type", "SetSchemaMetadata$Value"),
            ("transforms.meta.schema.name", "shop.Count"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        config.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::connector_config::parse(&config, Kind::Source).unwrap()
    }

    /// A source value the registry converter cannot take (not JSON, so no
    /// schema can be inferred) is a bad record naming the converter key and
    /// where the record came from; routed by errors.tolerance like any.
    #[test]
    fn a_value_that_is_not_json_names_the_converter_key_and_the_source_position() {
        let r = SourceRecord::new("orders", SourceOffset::new(r#"{"table":"orders"}"#, r#"{"pk":7}"#))
            .with_value("ORDER-7");
        let Err(failure) = transform(&runtime(&[]), &r) else { panic!("plain text is not JSON") };
        assert_eq!((failure.stage, failure.retriable), ("VALUE_CONVERTER", false));
        for words in
            ["value.converter (Avro)", "topic orders", r#"source partition {"table":"orders"}"#, r#"offset {"pk":7}"#]
        {
            assert!(failure.message.contains(words), "{words:?} in {}", failure.message);
        }
    }

    /// A registry converter's schema exists before the transforms when they
    /// keep values (so SetSchemaMetadata can name it), else it is inferred
    /// after them; other converters infer theirs after.
    #[test]
    fn a_registry_converters_schema_is_inferred_before_transforms_that_keep_values() {
        let value = Data::Json(json!({"n": 1}));
        let early = early_schema(&runtime(&[]), Part::Value, Some(&value)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&early).unwrap()["fields"][0]["type"], "int64");
        let rt = runtime(&[]);
        let record = Record {
            topic: "t".into(),
            partition: None,
            offset: None,
            timestamp: None,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            key_schema: None,
            value_schema: Some(early),
        };
        let out = rt.transforms.apply(record).unwrap().unwrap();
        let named: Value = serde_json::from_str(out.value_schema.as_deref().unwrap()).unwrap();
        assert_eq!(named["name"], "shop.Count", "SetSchemaMetadata named it");
        assert_eq!(early_schema(&rt, Part::Key, Some(&value)), None, "the key converter is pass-through");
        let hoisting = runtime(&[
            ("transforms", "hoist,meta"),
            ("transforms.hoist.type", "HoistField$Value"),
            ("transforms.hoist.field", "x"),
        ]);
        assert_eq!(early_schema(&hoisting, Part::Value, Some(&value)), None, "HoistField changes the value");
        let json = runtime(&[("value.converter", "json")]);
        assert_eq!(early_schema(&json, Part::Value, Some(&value)), None);
    }
}
