//! A sink task: a consumer in group `connect-<connector>` that hands records
//! to the plugin in offset order per partition, routes failures, and commits
//! the contiguous watermark of settled records (delivery invariants 1, 2, 5, 6).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use abi_stable::sabi_trait::TD_Opaque;
use connector_api::context::FfiSinkContext_TO;
use connector_api::{ErrorKind, TopicPartition, TopicPartitionOffset};
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
    cluster::fence::{Fence, Verdict},
    host::TaskHost,
    metrics::{BrokerStats, CountedProducer, STATISTICS_INTERVAL_MS},
    transform::routing::RoutedOffsets,
};

mod context;
mod convert;
mod deliver;
mod plan;

use context::ContextState;
use deliver::{cached_high_watermark, deliver};

/// The plugin task and the bookkeeping both the poll loop and the rebalance
/// callbacks (which run inside `poll`, on the same thread) work on.
struct SinkState {
    task: crate::plugins::SinkTask,
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
    /// Per consumed partition, the offset after the last record handed to
    /// `put`, under each topic name the sink saw it (transforms may route
    /// one partition's records to several names): `pre_commit`'s argument.
    delivered: Delivered,
    /// Partitions the plugin paused through its context.
    plugin_paused: BTreeSet<(String, i32)>,
    /// The plugin's context: its requests, notes and committed positions.
    context: ContextState,
    /// The worker's fence: once it was paused past the session timeout, this
    /// task may run elsewhere and commits nothing more.
    fence: Arc<Fence>,
}

/// Consumed topic → partition → (topic the sink saw, next offset). Looked up
/// by `&str` per record, so only a new partition allocates.
#[derive(Default)]
struct Delivered(std::collections::HashMap<String, std::collections::HashMap<i32, Vec<(String, i64)>>>);

impl Delivered {
    fn handed(&mut self, topic: &str, partition: i32, seen_as: &str, offset: i64) {
        if !self.0.contains_key(topic) {
            self.0.insert(topic.to_string(), Default::default());
        }
        let Some(partitions) = self.0.get_mut(topic) else { return };
        let names = partitions.entry(partition).or_default();
        match names.iter_mut().find(|(name, _)| name == seen_as) {
            Some((_, next)) => *next = (*next).max(offset + 1),
            None => names.push((seen_as.to_string(), offset + 1)),
        }
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.0.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    /// Sorted, so the sink sees a stable order.
    fn offsets(&self) -> Vec<TopicPartitionOffset> {
        let mut out: Vec<TopicPartitionOffset> = self
            .0
            .values()
            .flat_map(|ps| ps.iter())
            .flat_map(|(p, names)| {
                names.iter().map(move |(name, next)| TopicPartitionOffset::new(name.clone(), *p, *next))
            })
            .collect();
        out.sort_by(|a, b| (a.topic.as_str(), a.partition).cmp(&(b.topic.as_str(), b.partition)));
        out
    }
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

    /// Forgets a partition's bookkeeping: it was revoked, or the plugin
    /// sought it elsewhere. Records of it polled before are stale from now
    /// on (the revocation count moves), and its unsettled records come again
    /// from the committed offset (or the sought one).
    fn forget_partition(&mut self, topic: &str, partition: i32) {
        *self.revocations.entry((topic.to_string(), partition)).or_default() += 1;
        self.marks.forget(topic, partition);
        if let Some(routes) = self.routes.as_mut() {
            routes.forget(topic, partition);
        }
        self.delivered.forget(topic, partition);
    }
}

struct ConsumerCallbacks {
    state: Arc<Mutex<SinkState>>,
    stats: BrokerStats,
}

fn lock(state: &Mutex<SinkState>) -> MutexGuard<'_, SinkState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

impl ClientContext for ConsumerCallbacks {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.stats.log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.stats.error(error, reason);
    }
}

impl ConsumerContext for ConsumerCallbacks {
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
                state.forget_partition(t, *p);
                state.assigned.remove(&(t.clone(), *p));
                state.plugin_paused.remove(&(t.clone(), *p));
            }
            state.context.revoked(&only);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut state = lock(&self.state);
            let assigned = partitions_of(tpl);
            for tp in &assigned {
                state.assigned.insert((tp.topic.to_string(), tp.partition));
            }
            // The plugin reads its notes in open: they must be known first,
            // and a task that cannot learn them must not go on without them.
            match consumer.committed_offsets((*tpl).clone(), COMMITTED_TIMEOUT) {
                Ok(committed) => state.context.assigned(&committed),
                Err(e) => {
                    state.failed = Some(failure("reading the committed offsets of newly assigned partitions", e));
                    return;
                }
            }
            if let Err(e) = state.task.open(assigned.as_slice().into()).into_result() {
                state.failed = Some(failure("open", e));
            }
        }
    }
}

/// How long a newly assigned task waits for the broker's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the plugin what is durable and commits the watermark (optionally
/// only for `only`'s partitions), each partition's note carried along.
/// Synchronous: a returned Ok means committed.
fn commit_settled(
    state: &mut SinkState,
    consumer: &BaseConsumer<ConsumerCallbacks>,
    only: Option<&BTreeSet<(String, i32)>>,
) -> anyhow::Result<usize> {
    // Asked before pre_commit too: a sink may write when asked what is durable.
    if let Verdict::Fenced { silent, .. } = state.fence.check() {
        anyhow::bail!(
            "not committing: this worker went {:.1} s without a heartbeat (a pause longer than the session timeout), so the task may already run on another worker",
            silent.as_secs_f64()
        );
    }
    let delivered = state.delivered.offsets();
    let durable = match state.task.pre_commit(delivered.as_slice().into()).into_result() {
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
        if let (Some(note), Some(mut e)) = (state.context.note_of(t, *p), tpl.find_partition(t, *p)) {
            e.set_metadata(note);
        }
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    state.marks.committed(&commits);
    state.context.committed(&commits);
    Ok(commits.len())
}

/// Runs until stopped (Ok) or failed (Err with the trace for the status).
pub fn run(ctx: &TaskContext) -> Result<(), String> {
    let host = TaskHost::new(&ctx.connector, ctx.task, ctx.stop.clone(), ctx.plugin_metrics.clone()).into_ffi();
    let config: Vec<(&str, &str)> = ctx.task_config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let context = ContextState::default();
    let plugin_context = FfiSinkContext_TO::from_value(context.plugin_context(), TD_Opaque);
    let task = ctx
        .class
        .create_sink_task(config, host, plugin_context, ctx.status_message.to_ffi())
        .map_err(|e| failure("creating the task", e))?;
    let state = Arc::new(Mutex::new(SinkState {
        task,
        marks: Watermarks::default(),
        assigned: BTreeSet::new(),
        failed: None,
        paused_for_retry: false,
        routes: ctx.runtime.transforms.changes_topic().then(RoutedOffsets::default),
        revocations: BTreeMap::new(),
        delivered: Delivered::default(),
        plugin_paused: BTreeSet::new(),
        context: context.clone(),
        fence: ctx.cluster.fence.clone(),
    }));
    let kafka = ctx.cluster.kafka();
    let overrides = ctx.client_overrides()?;
    let consumer: Arc<BaseConsumer<ConsumerCallbacks>> = Arc::new(
        crate::kafka::with_overrides(kafka.consumer(&format!("connect-{}", ctx.connector)), &overrides.consumer)
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set_log_level(crate::kafka::diagnose::LOG_LEVEL)
            .create_with_context(ConsumerCallbacks {
                state: state.clone(),
                stats: BrokerStats::task("consumer", &ctx.connector, ctx.task),
            })
            .map_err(|e| failure("creating the consumer", e))?,
    );
    context.attach(&consumer);
    for topic in ctx.runtime.dlq_topic.iter().chain(&ctx.runtime.rejected_topic) {
        // Kafka Connect creates the DLQ with one partition; so do we.
        ctx.ensure_topic(
            topic,
            1,
            ctx.runtime.dlq_replication_factor,
            "errors.deadletterqueue.topic.replication.factor",
        )?;
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
    consumer: &BaseConsumer<ConsumerCallbacks>,
    state: &Arc<Mutex<SinkState>>,
    producer: Option<&CountedProducer>,
) -> Result<(), String> {
    let [connector, task] = ctx.labels();
    let labels = [connector.as_str(), task.as_str()];
    let flush_every = Duration::from_millis(ctx.runtime.offset_flush_interval_ms);
    let mut last_commit = Instant::now();
    let mut paused = false;
    let mut plugin_pauses_changed = false;
    let mut commit_requested = false;
    let mut budget = ByteBudget::new(ctx.runtime.max_buffered_bytes, flush_every);
    // Records a retry wait polled while the partitions were paused; they
    // come before anything polled later.
    let mut stash: Vec<Stashed<'_>> = Vec::new();
    while !ctx.stopping() {
        if let Some(f) = lock(state).failed.take() {
            return Err(f);
        }
        // Invariant 6: paused while the budget is spent, still polling so
        // the group membership stays alive.
        let pause = pause_step(ctx, consumer, state, &mut budget, paused, &mut plugin_pauses_changed);
        paused = pause.all;
        let mut batch: Vec<BorrowedMessage<'_>> = {
            let guard = lock(state);
            plan::unstash(std::mem::take(&mut stash), |m| guard.revocations_of(m))
        };
        poll_batch(ctx, consumer, &mut batch);
        // A worker frozen inside the poll wakes with a batch in hand: once
        // fenced it hands the plugin nothing more (`cluster/fence.rs`).
        if ctx.cluster.fence.fenced() {
            break;
        }
        // What the plugin asked through its context since the last look
        // (in open, put or pre_commit): a sought partition's records polled
        // so far are dropped, the consumer fetches them again from there.
        let asked = plugin_requests(ctx, consumer, state)?;
        plugin_pauses_changed |= asked.pauses_changed;
        commit_requested |= asked.commit;
        if !asked.sought.is_empty() {
            batch.retain(|m| !asked.sought.contains(&(m.topic().to_string(), m.partition())));
        }
        if !batch.is_empty() {
            note_positions(&lock(state).context, &batch);
            ctx.metrics.records_read.with_label_values(&labels).inc_by(batch.len() as u64);
            ctx.note_active_topics(batch.iter().map(|m| m.topic()));
            deliver(ctx, consumer, state, &batch, &mut stash, producer)?;
        }
        if plan::commit_due(last_commit.elapsed(), flush_every, pause.over_budget, &mut commit_requested) {
            commit_and_measure(ctx, consumer, state);
            last_commit = Instant::now();
        }
    }
    Ok(())
}

/// Checks the byte budget and applies the pause plan when it is due.
fn pause_step(
    ctx: &TaskContext,
    consumer: &BaseConsumer<ConsumerCallbacks>,
    state: &Mutex<SinkState>,
    budget: &mut ByteBudget,
    paused: bool,
    plugin_pauses_changed: &mut bool,
) -> plan::Pause {
    let buffered = lock(state).marks.buffered_bytes();
    let checked = budget.check(buffered, Instant::now());
    if checked == Budget::JustWaived {
        tracing::warn!(
            connector = %ctx.connector,
            task = ctx.task,
            buffered,
            limit = budget.limit(),
            "max.buffered.bytes exceeded and nothing settled for offset.flush.interval.ms while paused: \
             the sink settles only when it gets more records (an S3 object completes when full), so the \
             task goes on; set max.buffered.bytes above what the sink holds before it settles"
        );
    }
    let retry_paused = std::mem::take(&mut lock(state).paused_for_retry);
    let pause = plan::pause(ctx.is_paused(), &checked, paused, retry_paused, plugin_pauses_changed);
    if pause.apply {
        if let Ok(assignment) = consumer.assignment() {
            let plan = pause_plan(&partitions_of(&assignment), pause.all, &lock(state).plugin_paused);
            let _ = consumer.pause(&partition_list(&plan.pause));
            let _ = consumer.resume(&partition_list(&plan.resume));
        }
    }
    pause
}

/// Polls up to `batch.max.records` in all, waiting only for the first.
fn poll_batch<'c>(
    ctx: &TaskContext,
    consumer: &'c BaseConsumer<ConsumerCallbacks>,
    batch: &mut Vec<BorrowedMessage<'c>>,
) {
    let mut wait = Duration::from_millis(100);
    while batch.len() < ctx.runtime.batch_max_records {
        match consumer.poll(wait) {
            None => break,
            Some(Ok(m)) => batch.push(m),
            Some(Err(e)) => {
                // A failed connection comes back from every poll until it
                // heals; the client context has logged it once, with the
                // setting to check.
                if crate::kafka::diagnose::is_connection_error(&e) {
                    tracing::debug!(connector = %ctx.connector, task = ctx.task, error = %e, "consumer error");
                } else {
                    tracing::warn!(connector = %ctx.connector, task = ctx.task, error = %e, "consumer error");
                }
                break;
            }
        }
        wait = Duration::ZERO;
    }
}

/// Commits the settled watermark (a failure is retried at the next one) and
/// updates the buffered-bytes, lag and commit-time metrics.
fn commit_and_measure(ctx: &TaskContext, consumer: &BaseConsumer<ConsumerCallbacks>, state: &Mutex<SinkState>) {
    let [connector, task] = ctx.labels();
    let labels = [connector.as_str(), task.as_str()];
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
    // librdkafka; ListOffsets is not trusted: some brokers answer it in
    // batches rather than records).
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
}

/// Which partitions to pause and which to resume: all of them while the
/// task is paused (the connector paused, or the byte budget spent), else
/// exactly those the plugin paused.
#[derive(Debug, PartialEq, Eq)]
struct PausePlan {
    pause: Vec<TopicPartition>,
    resume: Vec<TopicPartition>,
}

fn pause_plan(assignment: &[TopicPartition], pause_all: bool, plugin_paused: &BTreeSet<(String, i32)>) -> PausePlan {
    let (pause, resume) = assignment
        .iter()
        .cloned()
        .partition(|tp| pause_all || plugin_paused.contains(&(tp.topic.to_string(), tp.partition)));
    PausePlan { pause, resume }
}

fn partition_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(tp.topic.as_str(), tp.partition);
    }
    tpl
}

/// What the poll loop does next because of the plugin's requests.
struct Asked {
    sought: BTreeSet<(String, i32)>,
    pauses_changed: bool,
    commit: bool,
}

/// Applies the plugin's queued requests: seeks at once (forgetting the
/// partition's bookkeeping, so the watermark restarts at the sought offset
/// and never counts a record the sink has not seen; invariant 1), pause and
/// resume into the set the pause plan reads. Only assigned partitions count.
fn plugin_requests(
    ctx: &TaskContext,
    consumer: &BaseConsumer<ConsumerCallbacks>,
    state: &Mutex<SinkState>,
) -> Result<Asked, String> {
    let mut guard = lock(state);
    let requests = guard.context.take_requests();
    let mut asked = Asked { sought: BTreeSet::new(), pauses_changed: false, commit: requests.commit };
    for ((topic, partition), offset) in requests.seeks {
        if !guard.assigned.contains(&(topic.clone(), partition)) {
            continue;
        }
        guard.forget_partition(&topic, partition);
        consumer.seek(&topic, partition, Offset::Offset(offset), SEEK_TIMEOUT).map_err(|e| {
            failure(&format!("seeking topic {topic} partition {partition} to offset {offset} as the sink asked"), e)
        })?;
        tracing::info!(connector = %ctx.connector, task = ctx.task, %topic, partition, offset, "partition sought as the sink asked");
        asked.sought.insert((topic, partition));
    }
    for k in requests.pause {
        if guard.assigned.contains(&k) {
            asked.pauses_changed |= guard.plugin_paused.insert(k);
        }
    }
    for k in requests.resume {
        asked.pauses_changed |= guard.plugin_paused.remove(&k);
    }
    Ok(asked)
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Each partition's first offset in the batch stands for its committed
/// position until it has one (what a note is committed with).
fn note_positions(context: &ContextState, batch: &[BorrowedMessage<'_>]) {
    for (t, p, o) in plan::first_offsets(batch.iter().map(|m| (m.topic(), m.partition(), m.offset()))) {
        context.seen(t, p, o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(names: &[(&str, i32)]) -> Vec<TopicPartition> {
        names.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    #[test]
    fn the_pause_plan_pauses_all_or_exactly_the_plugins_partitions() {
        let assignment = tps(&[("a", 0), ("a", 1), ("b", 0)]);
        let plugin: BTreeSet<(String, i32)> = [("a".to_string(), 1), ("gone".to_string(), 9)].into();
        // (pause all?, expected paused, expected resumed)
        let cases = [
            (true, tps(&[("a", 0), ("a", 1), ("b", 0)]), tps(&[])),
            (false, tps(&[("a", 1)]), tps(&[("a", 0), ("b", 0)])),
        ];
        for (pause_all, pause, resume) in cases {
            assert_eq!(pause_plan(&assignment, pause_all, &plugin), PausePlan { pause, resume }, "{pause_all}");
        }
        let none = pause_plan(&assignment, false, &BTreeSet::new());
        assert!(none.pause.is_empty() && none.resume.len() == 3, "a connector resumed resumes every partition");
    }

    #[test]
    fn delivered_offsets_follow_each_name_the_sink_saw_and_forget_revoked_partitions() {
        let mut d = Delivered::default();
        d.handed("orders", 0, "orders", 4);
        d.handed("orders", 0, "orders", 9);
        d.handed("orders", 0, "orders", 7); // out of order never lowers it
        d.handed("orders", 1, "orders-20261201", 3);
        d.handed("orders", 1, "orders-20261202", 5);
        d.handed("refunds", 0, "refunds", 0);
        let got: Vec<(String, i32, i64)> =
            d.offsets().into_iter().map(|t| (t.topic.to_string(), t.partition, t.offset)).collect();
        assert_eq!(
            got,
            [
                ("orders".to_string(), 0, 10),
                ("orders-20261201".to_string(), 1, 4),
                ("orders-20261202".to_string(), 1, 6),
                ("refunds".to_string(), 0, 1),
            ]
        );
        d.forget("orders", 1);
        assert_eq!(d.offsets().len(), 2, "a revoked partition is no longer delivered");
    }
}
