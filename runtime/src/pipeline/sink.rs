//! A sink task: a consumer in group `connect-<connector>` that hands records
//! to the plugin in offset order per partition, routes failures, and commits
//! the contiguous watermark of settled records (delivery invariants 1, 2, 5, 6).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use connector_api::{
    ffi::FfiSinkTaskBox, ConnectorError, ErrorKind, HeaderRef, PutOutcome, SinkRecord, TopicPartition,
};
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    message::{BorrowedMessage, Headers, Message},
    producer::FutureProducer,
    Offset, TopicPartitionList,
};

use super::{
    backoff,
    budget::{Budget, ByteBudget},
    dlq::{self, ErrorContext, FailedRecord, Route},
    failure,
    watermark::Watermarks,
    TaskContext,
};
use crate::{
    connector_config::RuntimeConfig,
    converter::{Converter, Part},
    host::TaskHost,
    kafka::{ensure_topic, wait_delivery},
    transform::{routing::RoutedOffsets, Record},
};

/// The plugin task and the bookkeeping both the poll loop and the rebalance
/// callbacks (which run inside `poll`, on the same thread) work on.
struct SinkState {
    task: FfiSinkTaskBox,
    marks: Watermarks,
    assigned: BTreeSet<(String, i32)>,
    /// A failure inside a rebalance callback, surfaced by the poll loop.
    failed: Option<String>,
    /// A retry wait paused every partition; the poll loop re-applies its own
    /// pause decision afterwards.
    paused_for_retry: bool,
    /// Set when transforms may rename topics: maps the sink's durable
    /// offsets (under the names it was handed) back to consumed partitions.
    routes: Option<RoutedOffsets>,
    /// How often each partition was revoked. A record a retry wait stashed
    /// before its partition was revoked is stale: were the partition
    /// assigned again, the consumer re-reads from the committed offset, and
    /// the stale record handed first would start the watermark past it.
    revocations: BTreeMap<(String, i32), u64>,
}

impl SinkState {
    fn revocations_of(&self, m: &BorrowedMessage<'_>) -> u64 {
        self.revocations.get(&(m.topic().to_string(), m.partition())).copied().unwrap_or(0)
    }
}

/// A record polled during a retry wait, with its partition's revocation
/// count at the time.
type Stashed<'c> = (u64, BorrowedMessage<'c>);

impl SinkState {
    fn route_handed(&mut self, m: &BorrowedMessage<'_>, routed: &str) {
        if let Some(routes) = self.routes.as_mut() {
            routes.handed(m.topic(), m.partition(), m.offset(), routed);
        }
    }

    fn route_withdrawn(&mut self, m: &BorrowedMessage<'_>) {
        if let Some(routes) = self.routes.as_mut() {
            routes.withdrawn(m.topic(), m.partition(), m.offset());
        }
    }
}

struct SinkContext {
    state: Arc<Mutex<SinkState>>,
}

fn lock(state: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Invariant 2: flush what can be flushed, commit exactly the
            // settled watermark of the revoked partitions, abandon the rest.
            let mut state = lock(&self.state);
            let revoked = partitions_of(tpl);
            let only: BTreeSet<(String, i32)> = revoked.iter().map(|tp| (tp.topic.to_string(), tp.partition)).collect();
            if let Err(e) = commit_settled(&mut state, consumer, Some(&only)) {
                tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads from the last commit");
            }
            if let Err(e) = state.task.close(revoked.as_slice().into()).into_result() {
                state.failed = Some(failure("close", e));
            }
            for (t, p) in &only {
                *state.revocations.entry((t.clone(), *p)).or_default() += 1;
                state.marks.forget(t, *p);
                if let Some(routes) = state.routes.as_mut() {
                    routes.forget(t, *p);
                }
                state.assigned.remove(&(t.clone(), *p));
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut state = lock(&self.state);
            let assigned = partitions_of(tpl);
            for tp in &assigned {
                state.assigned.insert((tp.topic.to_string(), tp.partition));
            }
            if let Err(e) = state.task.open(assigned.as_slice().into()).into_result() {
                state.failed = Some(failure("open", e));
            }
        }
    }
}

/// Asks the plugin what is durable and commits the watermark (optionally
/// only for `only`'s partitions). Synchronous: a returned Ok means committed.
fn commit_settled(
    state: &mut SinkState,
    consumer: &BaseConsumer<SinkContext>,
    only: Option<&BTreeSet<(String, i32)>>,
) -> anyhow::Result<usize> {
    let durable = state.task.pre_commit().into_result().map_err(|e| anyhow::anyhow!("pre_commit: {e}"))?;
    for tpo in durable.iter() {
        match state.routes.as_mut() {
            Some(routes) => {
                for (topic, offset) in routes.durable(tpo.topic.as_str(), tpo.partition, tpo.offset) {
                    state.marks.durable(&topic, tpo.partition, offset);
                }
            }
            None => state.marks.durable(tpo.topic.as_str(), tpo.partition, tpo.offset),
        }
    }
    let commits: Vec<(String, i32, i64)> = state
        .marks
        .to_commit()
        .into_iter()
        .filter(|(t, p, _)| only.is_none_or(|o| o.contains(&(t.clone(), *p))))
        .collect();
    if commits.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in &commits {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    state.marks.committed(&commits);
    Ok(commits.len())
}

/// Runs until stopped (Ok) or failed (Err with the trace for the status).
pub fn run(ctx: &TaskContext) -> Result<(), String> {
    let host = TaskHost::new(&ctx.connector, ctx.task, ctx.stop.clone(), ctx.plugin_metrics.clone()).into_ffi();
    let config: Vec<(&str, &str)> = ctx.task_config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let task = ctx.class.create_sink_task(config, host).map_err(|e| failure("creating the task", e))?;
    let state = Arc::new(Mutex::new(SinkState {
        task,
        marks: Watermarks::default(),
        assigned: BTreeSet::new(),
        failed: None,
        paused_for_retry: false,
        routes: ctx.runtime.transforms.changes_topic().then(RoutedOffsets::default),
        revocations: BTreeMap::new(),
    }));
    let kafka = ctx.cluster.kafka();
    let consumer: BaseConsumer<SinkContext> = kafka
        .consumer(&format!("connect-{}", ctx.connector))
        .create_with_context(SinkContext { state: state.clone() })
        .map_err(|e| failure("creating the consumer", e))?;
    for topic in ctx.runtime.dlq_topic.iter().chain(&ctx.runtime.rejected_topic) {
        // Kafka Connect creates the DLQ with one partition; so do we.
        ensure_topic(kafka, topic, 1, false).map_err(|e| failure(&format!("creating topic {topic}"), e))?;
    }
    let producer: Option<FutureProducer> = if ctx.runtime.dlq_topic.is_some() || ctx.runtime.rejected_topic.is_some() {
        Some(kafka.producer().create().map_err(|e| failure("creating the DLQ producer", e))?)
    } else {
        None
    };
    let subscription: Vec<String> = match &ctx.runtime.topics_regex {
        Some(re) => vec![if re.starts_with('^') { re.clone() } else { format!("^{re}") }],
        None => ctx.runtime.topics.clone(),
    };
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| failure("subscribing", e))?;

    let result = poll_loop(ctx, &consumer, &state, producer.as_ref());

    // Stop: commit exactly the settled watermark, then close and stop the plugin.
    let mut guard = lock(&state);
    if result.is_ok() {
        if let Err(e) = commit_settled(&mut guard, &consumer, None) {
            tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "final commit failed");
        }
    }
    let assigned: Vec<TopicPartition> =
        guard.assigned.iter().map(|(t, p)| TopicPartition::new(t.clone(), *p)).collect();
    let _ = guard.task.close(assigned.as_slice().into());
    let _ = guard.task.stop();
    drop(guard);
    consumer.unsubscribe();
    result
}

fn poll_loop(
    ctx: &TaskContext,
    consumer: &BaseConsumer<SinkContext>,
    state: &Arc<Mutex<SinkState>>,
    producer: Option<&FutureProducer>,
) -> Result<(), String> {
    let [connector, task] = ctx.labels();
    let labels = [connector.as_str(), task.as_str()];
    let flush_every = Duration::from_millis(ctx.runtime.offset_flush_interval_ms);
    let mut last_commit = Instant::now();
    let mut paused = false;
    let mut budget = ByteBudget::new(ctx.runtime.max_buffered_bytes, flush_every);
    // Records a retry wait polled while the partitions were paused; they
    // come before anything polled later.
    let mut stash: Vec<Stashed<'_>> = Vec::new();
    while !ctx.stopping() {
        if let Some(f) = lock(state).failed.take() {
            return Err(f);
        }
        // Pause when the connector is paused or the byte budget is spent
        // (invariant 6); keep polling so the group membership stays alive.
        let buffered = lock(state).marks.buffered_bytes();
        let over_budget = match budget.check(buffered, Instant::now()) {
            Budget::Free => false,
            Budget::Hold => true,
            Budget::JustWaived => {
                tracing::warn!(
                    connector = %ctx.connector,
                    task = ctx.task,
                    buffered,
                    limit = budget.limit(),
                    "max.buffered.bytes exceeded and nothing settled for offset.flush.interval.ms while paused: \
                     the sink settles only when it gets more records (an S3 object completes when full), so the \
                     task goes on; set max.buffered.bytes above what the sink holds before it settles"
                );
                false
            }
        };
        let want_pause = ctx.is_paused() || over_budget;
        let retry_paused = std::mem::take(&mut lock(state).paused_for_retry);
        if want_pause != paused || retry_paused {
            if let Ok(assignment) = consumer.assignment() {
                let _ = if want_pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
            }
            paused = want_pause;
        }
        let mut batch: Vec<BorrowedMessage<'_>> = {
            let guard = lock(state);
            let stashed = std::mem::take(&mut stash).into_iter();
            stashed.filter(|(seen, m)| guard.revocations_of(m) == *seen).map(|(_, m)| m).collect()
        };
        let mut wait = Duration::from_millis(100);
        while batch.len() < ctx.runtime.batch_max_records {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => {
                    tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "consumer error");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if !batch.is_empty() {
            ctx.metrics.records_read.with_label_values(&labels).inc_by(batch.len() as u64);
            deliver(ctx, consumer, state, &batch, &mut stash, producer)?;
        }
        if last_commit.elapsed() >= flush_every || over_budget {
            let started = Instant::now();
            let mut guard = lock(state);
            match commit_settled(&mut guard, consumer, None) {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "offset commit failed; will retry")
                }
            }
            ctx.metrics.buffered_bytes.with_label_values(&labels).set(guard.marks.buffered_bytes() as i64);
            // Lag from the high watermarks the last fetches carried (cached by
            // librdkafka; ListOffsets is not trusted: some brokers answer it
            // in batches rather than records).
            for (topic, partition) in guard.assigned.iter() {
                let Some(watermark) = guard.marks.watermark(topic, *partition) else { continue };
                if let Some(high) = cached_high_watermark(consumer, topic, *partition) {
                    if high >= 0 {
                        ctx.metrics
                            .consumer_lag
                            .with_label_values(&[&connector, &task, topic, &partition.to_string()])
                            .set((high - watermark).max(0));
                    }
                }
            }
            drop(guard);
            ctx.metrics.commit_seconds.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
            last_commit = Instant::now();
        }
    }
    Ok(())
}

/// A consumed record after converters and transforms, owned: built only
/// when transforms or an envelope-unwrapping converter are configured.
struct Transformed {
    topic: String,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// `Ok(None)`: a transform dropped the record; `Err`: a bad record with its stage.
type Converted = Result<Option<Transformed>, (ConnectorError, &'static str)>;

fn at(m: &BorrowedMessage<'_>) -> String {
    format!("topic {} partition {} offset {}", m.topic(), m.partition(), m.offset())
}

/// The converter of a record's key or value, and the bad-record error (with
/// its stage) a conversion failure becomes.
fn converter_for(runtime: &RuntimeConfig, part: Part) -> Converter {
    if part == Part::Key {
        runtime.key_converter
    } else {
        runtime.value_converter
    }
}

fn conversion_failed(m: &BorrowedMessage<'_>, part: Part, e: impl std::fmt::Display) -> (ConnectorError, &'static str) {
    let message = format!("{e}; record at {}; fix the producer or set {}.converter to match", at(m), part.name());
    (ConnectorError::bad_record(message), part.stage())
}

fn transform(runtime: &RuntimeConfig, m: &BorrowedMessage<'_>) -> Converted {
    let convert = |part: Part, bytes: Option<&[u8]>| {
        converter_for(runtime, part).to_data(bytes, part).map_err(|e| conversion_failed(m, part, e))
    };
    let record = Record {
        topic: m.topic().to_string(),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
        timestamp: m.timestamp().to_millis(),
        key: convert(Part::Key, m.key())?,
        value: convert(Part::Value, m.payload())?,
        headers: m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
    };
    match runtime.transforms.apply(record) {
        Ok(None) => Ok(None),
        Ok(Some(r)) => Ok(Some(Transformed {
            topic: r.topic,
            timestamp: r.timestamp,
            key: runtime.key_converter.plugin_bytes(r.key),
            value: runtime.value_converter.plugin_bytes(r.value),
            headers: r.headers,
        })),
        Err(e) => Err((ConnectorError::bad_record(e), "TRANSFORMATION")),
    }
}

/// The key and value the plugin gets, borrowed from the message (no
/// transforms, and converters that at most check the bytes).
type View<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn view<'a>(runtime: &RuntimeConfig, m: &'a BorrowedMessage<'_>) -> Result<View<'a>, (ConnectorError, &'static str)> {
    let check =
        |part: Part, bytes| converter_for(runtime, part).view(bytes, part).map_err(|e| conversion_failed(m, part, e));
    Ok((check(Part::Key, m.key())?, check(Part::Value, m.payload())?))
}

/// Hands one batch to the plugin (dropping records of partitions revoked
/// meanwhile), retrying and routing failures; every record ends up in the
/// sink's hands, routed and acknowledged, dropped by a transform (settled at
/// once), or the task fails.
fn deliver<'c>(
    ctx: &TaskContext,
    consumer: &'c BaseConsumer<SinkContext>,
    state: &Mutex<SinkState>,
    batch: &[BorrowedMessage<'c>],
    stash: &mut Vec<Stashed<'c>>,
    producer: Option<&FutureProducer>,
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
                Some(SinkRecord::new(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    key,
                    value,
                    headers,
                ))
            }),
            Some(Ok(Some(t))) => Ok(Some(SinkRecord::new(
                &t.topic,
                m.partition(),
                m.offset(),
                t.timestamp,
                t.key.as_deref(),
                t.value.as_deref(),
                headers,
            ))),
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
    state.assigned.iter().any(|(t, p)| t == m.topic() && *p == m.partition())
}

/// Backs off before a retry with the state released. Meanwhile the consumer
/// keeps polling with every partition paused, as Kafka Connect does: the
/// batch is retried from memory, and the group must not take the task for
/// dead (`max.poll.interval.ms`) however long the target is down; rebalance
/// callbacks run inside these polls. `None` when the task must stop instead.
fn wait_to_retry<'a, 'c>(
    ctx: &TaskContext,
    consumer: &'c BaseConsumer<SinkContext>,
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
    producer: Option<&FutureProducer>,
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
fn cached_high_watermark(consumer: &BaseConsumer<SinkContext>, topic: &str, partition: i32) -> Option<i64> {
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
