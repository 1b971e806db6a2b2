//! One batch into the plugin: puts, per-record retries with backoff (polling
//! with partitions paused meanwhile), routing of failed records.

use std::{
    collections::BTreeSet,
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
    lock, partitions_of, ConsumerCallbacks, SinkState, Stashed,
};
use crate::{
    converter::Part,
    kafka::wait_delivery,
    metrics::CountedProducer,
    pipeline::{
        backoff,
        dlq::{self, ErrorContext, FailedRecord, Route},
        failure, TaskContext,
    },
};

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
    let batch: Vec<&BorrowedMessage<'_>> = batch.iter().filter(|m| still_assigned(&guard, m)).collect();
    let runtime = &ctx.runtime;
    // Without transforms the records borrow the consumer's buffers; with
    // them, they borrow this batch's transformed copies.
    let owned = !runtime.transforms.is_empty()
        || runtime.key_converter.sink_needs_owned()
        || runtime.value_converter.sink_needs_owned();
    let transformed: Vec<Converted> =
        if owned { batch.iter().map(|m| transform(runtime, m)).collect() } else { Vec::new() };
    // One header array for the whole batch; records borrow slices of it.
    let mut header_refs: Vec<HeaderRef<'_>> = Vec::new();
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
    let bytes_of = |m: &BorrowedMessage<'_>| (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
    // `records[i]` is the record the sink gets, if it gets one. Bookkeeping
    // in offset order: handed, dropped by a transform (settled now), or
    // failed in a converter or transform (unsettled until routed).
    let mut records: Vec<Option<SinkRecord<'_>>> = Vec::with_capacity(batch.len());
    let mut converted_failures: Vec<(usize, ConnectorError, &'static str)> = Vec::new();
    let mut filtered = 0u64;
    for (i, m) in batch.iter().enumerate() {
        let headers = &header_refs[spans[i].clone()];
        let outcome = match transformed.get(i) {
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
        };
        match outcome {
            Ok(Some(record)) => {
                guard.marks.handed(m.topic(), m.partition(), m.offset(), bytes_of(m));
                guard.route_handed(m, record.topic());
                records.push(Some(record));
            }
            Ok(None) => {
                guard.marks.skipped(m.topic(), m.partition(), m.offset());
                filtered += 1;
                records.push(None);
            }
            Err((e, stage)) => {
                guard.marks.failed(m.topic(), m.partition(), m.offset());
                converted_failures.push((i, e, stage));
                records.push(None);
            }
        }
    }
    let [connector, task] = ctx.labels();
    let labels = [connector.as_str(), task.as_str()];
    if filtered > 0 {
        ctx.metrics.records_filtered.with_label_values(&labels).inc_by(filtered);
    }
    // Records a converter or transform failed go where failed puts go.
    for stage in [Part::Key.stage(), Part::Value.stage(), "TRANSFORMATION"] {
        let of_stage: Vec<(usize, ConnectorError)> =
            converted_failures.iter().filter(|(_, _, s)| *s == stage).map(|(i, e, _)| (*i, e.clone())).collect();
        if !of_stage.is_empty() {
            route_failures(ctx, &mut guard, &batch, &of_stage, producer, stage)?;
        }
    }
    let mut pending: Vec<usize> = (0..records.len()).filter(|&i| records[i].is_some()).collect();
    if pending.is_empty() {
        return Ok(());
    }
    // Records that failed retriably and wait for a retry (not in the sink's hands).
    let mut awaiting_retry: BTreeSet<usize> = BTreeSet::new();
    let mut attempt = 0u32;
    let started = Instant::now();
    loop {
        let subset: Vec<SinkRecord<'_>> = pending.iter().filter_map(|&i| records[i]).collect();
        let put_started = Instant::now();
        let result = guard.task.put(subset.as_slice().into()).into_result();
        ctx.metrics.put_seconds.with_label_values(&labels).observe(put_started.elapsed().as_secs_f64());
        if result.is_ok() {
            for &i in &pending {
                if let Some(record) = records[i] {
                    let m = batch[i];
                    guard.delivered.handed(m.topic(), m.partition(), record.topic(), m.offset());
                }
            }
        }
        let failures: Vec<(usize, ConnectorError)> = match result {
            Ok(outcome) => outcome_failures(&outcome, &pending),
            Err(e) if e.kind() == ErrorKind::Fatal || e.kind() == ErrorKind::Config => {
                return Err(failure("put", e));
            }
            Err(e) if e.kind() == ErrorKind::Retriable => {
                // The whole batch failed transiently (the target is down):
                // re-deliver the same batch until it is taken, as Kafka
                // Connect does; records never go to the DLQ for an outage.
                ctx.metrics.errors.with_label_values(&[&connector, &task, e.kind().name(), "TASK_PUT"]).inc();
                tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "put failed; retrying the batch");
                let Some(relocked) = wait_to_retry(ctx, consumer, state, guard, stash, &mut attempt) else {
                    return Ok(());
                };
                guard = relocked;
                pending.retain(|&i| still_assigned(&guard, batch[i]));
                if pending.is_empty() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => pending.iter().map(|&i| (i, e.clone())).collect(),
        };
        ctx.metrics.records_written.with_label_values(&labels).inc_by((pending.len() - failures.len()) as u64);
        // A failed record is unsettled until it is routed or a retry takes
        // it: the sink's later pre_commit must not carry the commit past it.
        let failed: BTreeSet<usize> = failures.iter().map(|(i, _)| *i).collect();
        for &i in &pending {
            let m = batch[i];
            if failed.contains(&i) {
                if awaiting_retry.insert(i) {
                    guard.marks.failed(m.topic(), m.partition(), m.offset());
                    guard.route_withdrawn(m);
                }
            } else if awaiting_retry.remove(&i) {
                guard.marks.retaken(m.topic(), m.partition(), m.offset(), bytes_of(m));
                if let Some(record) = records[i] {
                    guard.route_handed(m, record.topic());
                }
            }
        }
        let retry_allowed = ctx.runtime.retry_timeout_ms < 0
            || started.elapsed() < Duration::from_millis(ctx.runtime.retry_timeout_ms as u64);
        let (retry, give_up): (Vec<_>, Vec<_>) =
            failures.into_iter().partition(|(_, e)| e.kind() == ErrorKind::Retriable && retry_allowed);
        route_failures(ctx, &mut guard, &batch, &give_up, producer, "TASK_PUT")?;
        if retry.is_empty() {
            return Ok(());
        }
        pending = retry.iter().map(|(i, _)| *i).collect();
        for (_, e) in &retry {
            ctx.metrics.errors.with_label_values(&[&connector, &task, e.kind().name(), "TASK_PUT"]).inc();
        }
        let Some(relocked) = wait_to_retry(ctx, consumer, state, guard, stash, &mut attempt) else { return Ok(()) };
        guard = relocked;
        // A rebalance during the wait may have revoked partitions: their
        // records belong to the next owner now.
        pending.retain(|&i| still_assigned(&guard, batch[i]));
        if pending.is_empty() {
            return Ok(());
        }
    }
}

fn still_assigned(state: &SinkState, m: &BorrowedMessage<'_>) -> bool {
    // Per record: the partition number first, the topic name only when it matches.
    let partition = m.partition();
    state.assigned.iter().any(|(t, p)| *p == partition && t == m.topic())
}

/// Backs off before a retry with the state released. Meanwhile the consumer
/// keeps polling with every partition paused, as Kafka Connect does: the
/// batch is retried from memory, and the group must not take the task for
/// dead (`max.poll.interval.ms`) however long the target is down; rebalance
/// callbacks run inside these polls. `None` when the task must stop instead.
fn wait_to_retry<'a, 'c>(
    ctx: &TaskContext,
    consumer: &'c BaseConsumer<ConsumerCallbacks>,
    state: &'a Mutex<SinkState>,
    mut guard: MutexGuard<'a, SinkState>,
    stash: &mut Vec<Stashed<'c>>,
    attempt: &mut u32,
) -> Option<MutexGuard<'a, SinkState>> {
    let wait = backoff(*attempt, Duration::from_millis(ctx.runtime.retry_delay_max_ms));
    *attempt += 1;
    guard.paused_for_retry = true;
    drop(guard);
    let deadline = Instant::now() + wait;
    let mut paused: Option<Vec<TopicPartition>> = None;
    loop {
        if ctx.stopping() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(lock(state));
        }
        // Paused again when a rebalance changed the assignment (each pause
        // also drops what librdkafka had fetched, so not on every poll).
        if let Ok(assignment) = consumer.assignment() {
            let now = partitions_of(&assignment);
            if paused.as_ref() != Some(&now) {
                let _ = consumer.pause(&assignment);
                paused = Some(now);
            }
        }
        // Records fetched before the pause may still arrive; they are kept,
        // in order, for after this batch.
        if let Some(Ok(m)) = consumer.poll(left.min(Duration::from_millis(100))) {
            let seen = lock(state).revocations_of(&m);
            stash.push((seen, m));
        }
    }
}

fn outcome_failures(outcome: &PutOutcome, pending: &[usize]) -> Vec<(usize, ConnectorError)> {
    outcome.failures().iter().filter_map(|f| pending.get(f.index as usize).map(|&i| (i, f.error.clone()))).collect()
}

fn route_failures(
    ctx: &TaskContext,
    state: &mut SinkState,
    batch: &[&BorrowedMessage<'_>],
    failures: &[(usize, ConnectorError)],
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
                let delivery = dlq::send(producer, &topic, &record, error, &context, ctx.runtime.dlq_context_headers)
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
