//! One batch into the plugin: puts, per-record retries with backoff (polling
//! with partitions paused meanwhile), routing of failed records.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use connector_api::{ConnectorError, ErrorKind, HeaderRef, PutOutcome, SinkRecord, TopicPartition};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Headers, Message},
};

use super::{
    convert::{transform, view, Converted},
    lock, partitions_of,
    plan::{self, Intake, PutVerdict, Settlement, Standing},
    ConsumerCallbacks, SinkState, Stashed,
};
use crate::{
    connector_config::RuntimeConfig,
    kafka::wait_delivery,
    metrics::CountedProducer,
    pipeline::{
        backoff,
        dlq::{self, ErrorContext, FailedRecord, Route},
        failure, TaskContext,
    },
};

/// A consumed record on its way in: for the sink, dropped by a transform
/// (`Ok(None)`), or failed at a stage.
type Incoming<'a> = Result<Option<SinkRecord<'a>>, (ConnectorError, &'static str)>;

/// What a retry wait polls with, and where it keeps what it polled.
struct RetryWait<'a, 'c, 's> {
    consumer: &'c BaseConsumer<ConsumerCallbacks>,
    state: &'a Mutex<SinkState>,
    stash: &'s mut Vec<Stashed<'c>>,
}

/// Hands one batch to the plugin (dropping records of partitions revoked
/// meanwhile), retrying and routing failures; every record ends up in the
/// sink's hands, routed and acknowledged, dropped by a transform (settled at
/// once), or the task fails.
pub(super) fn deliver<'c>(
    ctx: &TaskContext,
    consumer: &'c BaseConsumer<ConsumerCallbacks>,
    state: &Mutex<SinkState>,
    batch: &[BorrowedMessage<'c>],
    stash: &mut Vec<Stashed<'c>>,
    producer: Option<&CountedProducer>,
) -> Result<(), String> {
    let mut guard = lock(state);
    let batch: Vec<&BorrowedMessage<'_>> =
        batch.iter().filter(|m| plan::is_assigned(&guard.assigned, m.topic(), m.partition())).collect();
    let runtime = &ctx.runtime;
    // Without transforms the records borrow the consumer's buffers; with
    // them, they borrow this batch's transformed copies (invariant 15).
    let owned = !runtime.transforms.is_empty()
        || runtime.key_converter.sink_needs_owned()
        || runtime.value_converter.sink_needs_owned();
    let transformed: Vec<Converted> =
        if owned { batch.iter().map(|m| transform(runtime, m)).collect() } else { Vec::new() };
    let (header_refs, spans) = batch_headers(&batch, &transformed);
    let incoming: Vec<Incoming<'_>> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| sink_record(runtime, m, transformed.get(i), &header_refs[spans[i].clone()]))
        .collect();
    // A registry that did not answer fails the task before anything of the
    // batch is routed or put: its records are read again after the restart
    // (an outage never sends records to the DLQ, invariant 7).
    if let Some((e, stage)) =
        incoming.iter().find_map(|r| r.as_ref().err().filter(|(e, _)| e.kind() == ErrorKind::Retriable))
    {
        return Err(format!("{stage}: {e}"));
    }
    let intake = plan::batch_intake(&incoming.iter().map(Intake::of).collect::<Vec<_>>());
    mark_intake(&mut guard, &batch, &incoming);
    if intake.filtered > 0 {
        let [connector, task] = ctx.labels();
        ctx.metrics.records_filtered.with_label_values(&[&connector, &task]).inc_by(intake.filtered);
    }
    // Records a converter or transform failed go where failed puts go (invariant 1).
    for (stage, failed) in &intake.failed_by_stage {
        let of_stage: Vec<(usize, ConnectorError)> =
            failed.iter().filter_map(|&i| incoming[i].as_ref().err().map(|(e, _)| (i, e.clone()))).collect();
        route_failures(ctx, &mut guard, &batch, &of_stage, &BTreeMap::new(), producer, stage)?;
    }
    if intake.pending.is_empty() {
        return Ok(());
    }
    let records: Vec<Option<SinkRecord<'_>>> = incoming.into_iter().map(|r| r.ok().flatten()).collect();
    let mut wait = RetryWait { consumer, state, stash };
    put_until_settled(ctx, &mut wait, guard, &batch, &records, intake.pending, producer)
}

/// One header array for the whole batch, and each record's slice of it.
fn batch_headers<'a>(
    batch: &[&'a BorrowedMessage<'_>],
    transformed: &'a [Converted],
) -> (Vec<HeaderRef<'a>>, Vec<Range<usize>>) {
    let mut header_refs: Vec<HeaderRef<'a>> = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        let start = header_refs.len();
        match transformed.get(i) {
            None => {
                if let Some(headers) = m.headers() {
                    for h in headers.iter() {
                        header_refs.push(HeaderRef { key: h.key.into(), value: h.value.map(Into::into).into() });
                    }
                }
            }
            Some(Ok(Some(t))) => {
                for (key, value) in &t.headers {
                    header_refs
                        .push(HeaderRef { key: key.as_str().into(), value: value.as_deref().map(Into::into).into() });
                }
            }
            Some(_) => {}
        }
        spans.push(start..header_refs.len());
    }
    (header_refs, spans)
}

/// The record the sink gets for `m`: borrowed from the message, or from its
/// transformed copy when there is one.
fn sink_record<'a>(
    runtime: &RuntimeConfig,
    m: &'a BorrowedMessage<'_>,
    transformed: Option<&'a Converted>,
    headers: &'a [HeaderRef<'a>],
) -> Incoming<'a> {
    match transformed {
        None => view(runtime, m).map(|(key, value)| {
            Some(
                SinkRecord::new(m.topic(), m.partition(), m.offset())
                    .with_timestamp(m.timestamp().to_millis())
                    .with_key(key)
                    .with_value(value)
                    .with_headers(headers),
            )
        }),
        Some(Ok(Some(t))) => Ok(Some(
            SinkRecord::new(&t.topic, m.partition(), m.offset())
                .with_timestamp(t.timestamp)
                .with_key(t.key.as_deref())
                .with_value(t.value.as_deref())
                .with_headers(headers)
                .with_schemas(t.key_schema.as_deref(), t.value_schema.as_deref()),
        )),
        Some(Ok(None)) => Ok(None),
        Some(Err((e, stage))) => Err((e.clone(), *stage)),
    }
}

fn bytes_of(m: &BorrowedMessage<'_>) -> u64 {
    (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64
}

/// Tells the watermark about each record, in offset order (invariant 1).
fn mark_intake(state: &mut SinkState, batch: &[&BorrowedMessage<'_>], incoming: &[Incoming<'_>]) {
    for (m, r) in batch.iter().zip(incoming) {
        match Intake::of(r) {
            Intake::Hand => {
                state.marks.handed(m.topic(), m.partition(), m.offset(), bytes_of(m));
                if let Ok(Some(record)) = r {
                    state.route_handed(m, record.topic());
                }
            }
            Intake::Skip => state.marks.skipped(m.topic(), m.partition(), m.offset()),
            Intake::Fail(_) => state.marks.failed(m.topic(), m.partition(), m.offset()),
        }
    }
}

/// Puts the pending records until every one is taken or routed: a
/// whole-batch `Retriable` error puts the same records again, a per-record
/// one only those (invariants 5, 7); after each wait, records of partitions
/// revoked meanwhile, even if assigned again, are dropped (invariant 2).
fn put_until_settled<'a>(
    ctx: &TaskContext,
    wait: &mut RetryWait<'a, '_, '_>,
    mut guard: MutexGuard<'a, SinkState>,
    batch: &[&BorrowedMessage<'_>],
    records: &[Option<SinkRecord<'_>>],
    mut pending: Vec<usize>,
    producer: Option<&CountedProducer>,
) -> Result<(), String> {
    let [connector, task] = ctx.labels();
    // Records that failed retriably and wait for a retry (not in the sink's hands).
    let mut awaiting_retry: BTreeSet<usize> = BTreeSet::new();
    let mut attempt = 0u32;
    let started = Instant::now();
    // The sink's error details of the records it failed, by batch index;
    // each put's answer replaces those of the records it was handed.
    let mut details: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    loop {
        let result = put_pending(ctx, &mut guard, batch, records, &pending);
        if let Ok(outcome) = &result {
            details.retain(|i, _| !pending.contains(i));
            details.extend(dlq::details_by_record(outcome.details(), &pending));
        }
        match plan::put_verdict(result, &pending) {
            PutVerdict::FailTask(e) => return Err(failure("put", e)),
            PutVerdict::RetryBatch(e) => {
                // Invariant 7: an outage never sends records to the DLQ.
                ctx.metrics.errors.with_label_values(&[&connector, &task, e.kind().name(), "TASK_PUT"]).inc();
                tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "put failed; retrying the batch");
            }
            PutVerdict::Failures(failures) => {
                let allowed = plan::retry_allowed(ctx.runtime.retry_timeout_ms, started.elapsed());
                let settlement = plan::settle(&pending, failures, &mut awaiting_retry, allowed);
                apply_settlement(ctx, &mut guard, batch, records, &settlement);
                route_failures(ctx, &mut guard, batch, &settlement.give_up, &details, producer, "TASK_PUT")?;
                if settlement.retry.is_empty() {
                    return Ok(());
                }
                pending = settlement.retry.iter().map(|(i, _)| *i).collect();
                for (_, e) in &settlement.retry {
                    ctx.metrics.errors.with_label_values(&[&connector, &task, e.kind().name(), "TASK_PUT"]).inc();
                }
            }
        }
        let before: Vec<u64> = pending.iter().map(|&i| guard.revocations_of(batch[i])).collect();
        let Some(relocked) = wait_to_retry(ctx, wait, guard, &mut attempt) else { return Ok(()) };
        guard = relocked;
        let partition_of = |i: usize| (batch[i].topic(), batch[i].partition());
        pending = plan::survivors(&pending, partition_of, &before, &guard.revocations, &guard.assigned);
        if pending.is_empty() {
            return Ok(());
        }
    }
}

/// One `put` of the pending records; on success they count as delivered
/// (`pre_commit`'s argument).
fn put_pending(
    ctx: &TaskContext,
    state: &mut SinkState,
    batch: &[&BorrowedMessage<'_>],
    records: &[Option<SinkRecord<'_>>],
    pending: &[usize],
) -> Result<PutOutcome, ConnectorError> {
    let subset: Vec<SinkRecord<'_>> = pending.iter().filter_map(|&i| records[i]).collect();
    let put_started = Instant::now();
    let result = state.task.put(subset.as_slice().into()).into_result();
    let [connector, task] = ctx.labels();
    ctx.metrics.put_seconds.with_label_values(&[&connector, &task]).observe(put_started.elapsed().as_secs_f64());
    if result.is_ok() {
        for &i in pending {
            if let Some(record) = records[i] {
                let m = batch[i];
                state.delivered.handed(m.topic(), m.partition(), record.topic(), m.offset());
            }
        }
    }
    result
}

/// A failed record is unsettled until routed or retaken, so a later
/// `pre_commit` never carries the commit past it (invariant 1).
fn apply_settlement(
    ctx: &TaskContext,
    state: &mut SinkState,
    batch: &[&BorrowedMessage<'_>],
    records: &[Option<SinkRecord<'_>>],
    settlement: &Settlement,
) {
    let [connector, task] = ctx.labels();
    ctx.metrics.records_written.with_label_values(&[&connector, &task]).inc_by(settlement.written);
    for &(i, standing) in &settlement.changes {
        let m = batch[i];
        match standing {
            Standing::Failed => {
                state.marks.failed(m.topic(), m.partition(), m.offset());
                state.route_withdrawn(m);
            }
            Standing::Retaken => {
                state.marks.retaken(m.topic(), m.partition(), m.offset(), bytes_of(m));
                if let Some(record) = records[i] {
                    state.route_handed(m, record.topic());
                }
            }
        }
    }
}

/// Backs off before a retry with the state released. Meanwhile the consumer
/// keeps polling with every partition paused, as Kafka Connect does: the
/// batch is retried from memory, and the group must not take the task for
/// dead (`max.poll.interval.ms`) however long the target is down; rebalance
/// callbacks run inside these polls. `None` when the task must stop instead.
fn wait_to_retry<'a>(
    ctx: &TaskContext,
    wait: &mut RetryWait<'a, '_, '_>,
    mut guard: MutexGuard<'a, SinkState>,
    attempt: &mut u32,
) -> Option<MutexGuard<'a, SinkState>> {
    let backoff = backoff(*attempt, Duration::from_millis(ctx.runtime.retry_delay_max_ms));
    *attempt += 1;
    guard.paused_for_retry = true;
    drop(guard);
    let deadline = Instant::now() + backoff;
    let mut paused: Option<Vec<TopicPartition>> = None;
    loop {
        if ctx.stopping() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(lock(wait.state));
        }
        // Paused again when a rebalance changed the assignment (each pause
        // also drops what librdkafka had fetched, so not on every poll).
        if let Ok(assignment) = wait.consumer.assignment() {
            let now = partitions_of(&assignment);
            if paused.as_ref() != Some(&now) {
                let _ = wait.consumer.pause(&assignment);
                paused = Some(now);
            }
        }
        // Records fetched before the pause may still arrive; they are kept,
        // in order, for after this batch.
        if let Some(Ok(m)) = wait.consumer.poll(left.min(Duration::from_millis(100))) {
            let seen = lock(wait.state).revocations_of(&m);
            wait.stash.push((seen, m));
        }
    }
}

fn route_failures(
    ctx: &TaskContext,
    state: &mut SinkState,
    batch: &[&BorrowedMessage<'_>],
    failures: &[(usize, ConnectorError)],
    details: &BTreeMap<usize, Vec<(String, String)>>,
    producer: Option<&CountedProducer>,
    stage: &str,
) -> Result<(), String> {
    let [connector, task] = ctx.labels();
    let context = ErrorContext { connector: &ctx.connector, task: ctx.task, class: ctx.class.name(), stage };
    let mut deliveries = Vec::new();
    for (i, error) in failures {
        let m = batch[*i];
        let at = format!("topic {} partition {} offset {}", m.topic(), m.partition(), m.offset());
        ctx.metrics.errors.with_label_values(&[&connector, &task, error.kind().name(), stage]).inc();
        if ctx.runtime.log_errors {
            let content = if ctx.runtime.log_messages {
                format!(" value={}", m.payload().map(String::from_utf8_lossy).unwrap_or_default())
            } else {
                String::new()
            };
            tracing::error!(connector = %ctx.connector, task = ctx.task, "error handling the record at {at}: {error}{content}");
        }
        state.marks.failed(m.topic(), m.partition(), m.offset());
        match dlq::route(error, &ctx.runtime) {
            Route::Fail => {
                return Err(format!(
                    "the record at {at} failed ({error}) and errors.tolerance is none (or the error is fatal); \
                     fix the record or set errors.tolerance=all with errors.deadletterqueue.topic.name"
                ))
            }
            Route::Drop => state.marks.routed_acked(m.topic(), m.partition(), m.offset()),
            Route::Topic { topic, rejected } => {
                let Some(producer) = producer else { return Err("no producer for the DLQ".to_string()) };
                let record = FailedRecord {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    value: m.payload(),
                    headers: m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default(),
                };
                let given: Vec<(&str, &str)> = details
                    .get(i)
                    .map(|d| d.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                    .unwrap_or_default();
                let delivery =
                    dlq::send(producer, &topic, &record, error, &given, &context, ctx.runtime.dlq_context_headers)
                        .map_err(|e| failure("routing a failed record", e))?;
                deliveries.push((m, delivery, rejected));
            }
        }
    }
    // A routed record is settled only once the broker acknowledged it.
    for (m, delivery, rejected) in deliveries {
        wait_delivery(delivery).map_err(|e| failure("producing to the dead-letter/rejected topic", e))?;
        state.marks.routed_acked(m.topic(), m.partition(), m.offset());
        let counter = if rejected { &ctx.metrics.records_rejected } else { &ctx.metrics.records_dlq };
        counter.with_label_values(&[&connector, &task]).inc();
    }
    Ok(())
}

/// The high watermark librdkafka cached from the last fetch of a partition
/// (no request to the broker). rdkafka exposes only the querying variant.
pub(super) fn cached_high_watermark(
    consumer: &BaseConsumer<ConsumerCallbacks>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives, the topic is
    // a NUL-terminated string, and the out-parameters are valid i64s.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(high)
}
