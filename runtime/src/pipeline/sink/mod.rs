//! A sink task: a consumer in group `connect-<connector>` that hands records
//! to the plugin in offset order per partition, routes failures, and commits
//! the contiguous watermark of settled records (delivery invariants 1, 2, 5, 6).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use connector_api::{ffi::FfiSinkTaskBox, ErrorKind, TopicPartition};
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    message::{BorrowedMessage, Message},
    statistics::Statistics,
    Offset, TopicPartitionList,
};

use super::{
    budget::{Budget, ByteBudget},
    failure,
    watermark::Watermarks,
    TaskContext,
};
use crate::{
    host::TaskHost,
    kafka::ensure_topic,
    metrics::{BrokerStats, CountedProducer, STATISTICS_INTERVAL_MS},
    transform::routing::RoutedOffsets,
};

mod convert;
mod deliver;

use deliver::{cached_high_watermark, deliver};

/// The plugin task and the bookkeeping both the poll loop and the rebalance
/// callbacks (which run inside `poll`, on the same thread) work on.
struct SinkState {
    task: FfiSinkTaskBox,
    marks: Watermarks,
    assigned: BTreeSet<(String, i32)>,
    /// A failure inside a rebalance callback, or a refusal the plugin's
    /// pre_commit reported, surfaced by the poll loop.
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
    stats: BrokerStats,
}

fn lock(state: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }
}

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
    let durable = match state.task.pre_commit().into_result() {
        Ok(durable) => durable,
        Err(e) => {
            // A refusal (not an outage) fails the task, as Kafka Connect's
            // does through put(), which it calls even without records; the
            // poll loop picks it up. Transient errors only delay the commit.
            if e.kind() == ErrorKind::Fatal || e.kind() == ErrorKind::Config {
                state.failed = Some(failure("pre_commit", &e));
            }
            anyhow::bail!("pre_commit: {e}");
        }
    };
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
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(SinkContext {
            state: state.clone(),
            stats: BrokerStats::task("consumer", &ctx.connector, ctx.task),
        })
        .map_err(|e| failure("creating the consumer", e))?;
    for topic in ctx.runtime.dlq_topic.iter().chain(&ctx.runtime.rejected_topic) {
        // Kafka Connect creates the DLQ with one partition; so do we.
        ensure_topic(kafka, topic, 1, false).map_err(|e| failure(&format!("creating topic {topic}"), e))?;
    }
    let producer = if ctx.runtime.dlq_topic.is_some() || ctx.runtime.rejected_topic.is_some() {
        Some(ctx.producer("dlq-producer")?)
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
    producer: Option<&CountedProducer>,
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
            ctx.note_active_topics(batch.iter().map(|m| m.topic()));
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
