//! The cluster, with Kafka as its coordination engine (no leader, no
//! consensus of our own):
//!
//! - `<cluster>-configs` (1 partition, compacted): connector configs and
//!   target states. Every worker reads it into the same [`ClusterView`]; a
//!   write is answered only once the writer's own view has applied it.
//! - `<cluster>-status` (1 partition, compacted): connector and task states,
//!   written by the worker running them, read by all.
//! - `<cluster>-offsets` (1 partition, compacted): source offsets.
//!
//! The status topic also carries every worker's heartbeat, from which all
//! workers derive the same task placement (see [`placement`]).

pub mod active_topics;
pub mod fence;
pub mod placement;
pub mod replay_lease;
pub mod view;

pub use crate::state::RunState;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Message,
    producer::{FutureProducer, FutureRecord},
    Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};

pub use view::{Applied, ClusterView, ConfigRecord, ConnectorSpec, TargetState};

use crate::{
    kafka::{ensure_topic, wait_delivery, KafkaSettings, NewTopicSpec},
    metrics::{BrokerStats, STATISTICS_INTERVAL_MS},
};

/// The internal topics of one cluster: names (Kafka Connect's
/// `config.storage.topic`, …) and the replication factor each is created
/// with (`*.storage.replication.factor`; -1: the broker's default). Each has
/// one partition: every worker must apply configs, heartbeats, replay
/// positions and replay-lease claims in one order.
#[derive(Debug, Clone)]
pub struct Topics {
    pub configs: String,
    pub status: String,
    pub offsets: String,
    pub configs_replication: i32,
    pub status_replication: i32,
    pub offsets_replication: i32,
}

/// Replication factor of the internal topics when no setting gives one: the
/// broker's `default.replication.factor`, which a cluster enforcing a
/// minimum sets to it.
pub const DEFAULT_REPLICATION: i32 = -1;

impl Topics {
    pub fn new(cluster_id: &str) -> Self {
        Topics {
            configs: format!("{cluster_id}-configs"),
            status: format!("{cluster_id}-status"),
            offsets: format!("{cluster_id}-offsets"),
            configs_replication: DEFAULT_REPLICATION,
            status_replication: DEFAULT_REPLICATION,
            offsets_replication: DEFAULT_REPLICATION,
        }
    }

    /// (topic, replication factor, the setting that names the factor).
    fn specs(&self) -> [(&str, i32, &'static str); 3] {
        [
            (&self.configs, self.configs_replication, "config.storage.replication.factor"),
            (&self.status, self.status_replication, "status.storage.replication.factor"),
            (&self.offsets, self.offsets_replication, "offset.storage.replication.factor"),
        ]
    }
}

/// A connector's or task's state as the status topic carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// A task's incarnation (Kafka Connect's field name): higher than every
    /// incarnation of the task this worker knew when it started it. Readers
    /// ignore a status of an older incarnation than the one they hold, so a
    /// worker that resumes after a pause cannot flip the new owner's status
    /// back. Absent on connector statuses and on records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// What a running task says about itself (`SinkContext::report_status`),
    /// e.g. that it waits for the target's API allocation: not a failure, so
    /// not in `trace`, which Kafka Connect's tools read as one
    /// (docs/decisions/0043). Absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether a status record read from the topic replaces `known`: unless both
/// carry an incarnation and the new one is older. A record without one (a
/// connector's, or an earlier version's) always counts, as it did before.
pub fn supersedes(known: Option<&Status>, read: &Status) -> bool {
    match (known.and_then(|k| k.generation), read.generation) {
        (Some(known), Some(read)) => read >= known,
        _ => true,
    }
}

/// A worker's heartbeat on the status topic (key `worker-<id>`):
/// `{"state":"ALIVE","worker_id":..,"time_ms":..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Heartbeat {
    /// Always `ALIVE`: the record is about a worker, not a connector or task.
    state: String,
    worker_id: String,
    /// When it was sent (ms since the epoch).
    #[serde(default)]
    time_ms: i64,
}

fn heartbeat_key(worker_id: &str) -> String {
    format!("worker-{worker_id}")
}

pub fn connector_status_key(name: &str) -> String {
    format!("status-connector-{name}")
}

pub fn task_status_key(name: &str, task: i32) -> String {
    format!("status-task-{name}-{task}")
}

#[derive(Default)]
struct Shared {
    view: ClusterView,
    statuses: BTreeMap<String, Status>,
    /// Connector → its active topics (`active_topics.rs`).
    active_topics: BTreeMap<String, BTreeSet<String>>,
    /// (connector, topic) records sent and not read back yet, with when:
    /// not sent again meanwhile, unless the send seems lost (30 s).
    active_topics_sent: BTreeMap<(String, String), Instant>,
    /// Next configs-topic offset to apply.
    configs_next: i64,
    /// Bumped on every applied record, so waiters can tell something moved.
    changes: u64,
    /// The first configs-topic record written by Kafka Connect (its key and
    /// offset), if any: the worker refuses to start on such a topic.
    foreign: Option<String>,
}

pub struct Cluster {
    pub worker_id: String,
    pub topics: Topics,
    settings: KafkaSettings,
    producer: FutureProducer<BrokerStats>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    pub placement: Arc<placement::Placement>,
    /// Set when this worker went unheard of for a session (`fence.rs`).
    pub fence: Arc<fence::Fence>,
    heartbeating: Arc<std::sync::atomic::AtomicBool>,
    pub topic_tracking: active_topics::TopicTracking,
    /// `connector.client.config.override.policy`.
    pub client_policy: crate::kafka::overrides::Policy,
}

/// How often a fenced worker's heartbeat thread looks whether it may rejoin.
const FENCED_POLL: Duration = Duration::from_millis(50);

/// How long a REST write waits for the worker's own view to apply it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Creates the internal topics if missing, starts reading them and joins
    /// the coordination group. Returns once the view has caught up with
    /// everything written before start-up.
    pub fn start(
        settings: KafkaSettings,
        topics: Topics,
        worker_id: String,
        topic_tracking: active_topics::TopicTracking,
        client_policy: crate::kafka::overrides::Policy,
    ) -> anyhow::Result<Arc<Cluster>> {
        crate::kafka::preflight(&settings, Duration::from_secs(30))?;
        for (name, replication_factor, setting) in topics.specs() {
            let spec = NewTopicSpec { name, partitions: 1, replication_factor, compacted: true };
            ensure_topic(&settings, spec, &[])
                .with_context(|| format!("creating the internal topic {name} (replication factor from {setting})"))?;
        }
        let producer: FutureProducer<BrokerStats> = settings
            .producer()
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set_log_level(crate::kafka::diagnose::LOG_LEVEL)
            .create_with_context(BrokerStats::new("cluster-producer"))
            .context("creating the cluster's producer")?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let session = Duration::from_millis(u64::from(settings.session_timeout_ms));
        let placement = Arc::new(placement::Placement::new(worker_id.clone(), session));
        spawn_reader(&settings, &topics, shared.clone(), placement.clone())?;
        let heartbeating = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cluster = Arc::new(Cluster {
            worker_id,
            topics,
            settings,
            producer,
            shared,
            placement,
            fence: Arc::new(fence::Fence::new(session)),
            heartbeating,
            topic_tracking,
            client_policy,
        });
        cluster.sync().context("reading the cluster's configs")?;
        if let Some(foreign) = cluster.lock().foreign.clone() {
            anyhow::bail!(
                "the configs topic {} holds records of another runtime ({foreign}): it looks like a Kafka Connect cluster's config.storage.topic. Sluice cannot share it; give this worker its own topics (config.storage.topic, offset.storage.topic, status.storage.topic, or another --cluster-id)",
                cluster.topics.configs
            );
        }
        cluster.spawn_heartbeat(session / 4)?;
        Ok(cluster)
    }

    fn spawn_heartbeat(self: &Arc<Self>, every: Duration) -> anyhow::Result<()> {
        let cluster = self.clone();
        thread::Builder::new().name("heartbeat".into()).spawn(move || {
            let key = heartbeat_key(&cluster.worker_id);
            while cluster.heartbeating.load(std::sync::atomic::Ordering::SeqCst) {
                let sent = fence::Moment::now();
                // Asked before sending: after a pause a fresh heartbeat would
                // hide the gap, and the others must not see this worker back
                // before its old tasks ended.
                if !cluster.fence.may_beat(sent) {
                    thread::sleep(FENCED_POLL);
                    continue;
                }
                let beat = Heartbeat {
                    state: "ALIVE".into(),
                    worker_id: cluster.worker_id.clone(),
                    time_ms: sent.wall_ms,
                };
                match cluster.put_record(&key, Some(&beat)) {
                    // The broker acknowledged it: this worker is live whether or
                    // not its reader has caught up yet (a slow read must not
                    // make a worker give up its own tasks).
                    Ok(()) => {
                        if cluster.fence.acked(sent) {
                            tracing::info!("worker rejoined the cluster after being fenced: placement decides afresh what runs here");
                        }
                        cluster.placement.heard(&cluster.worker_id, placement::now_ms());
                    }
                    Err(e) => tracing::warn!(error = %e, "publishing the heartbeat failed"),
                }
                thread::sleep(every);
            }
        })?;
        Ok(())
    }

    /// Withdraws this worker's heartbeat (after its tasks stopped) so the
    /// others take its tasks over at once.
    pub fn leave(&self) {
        self.heartbeating.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.put_record::<Heartbeat>(&heartbeat_key(&self.worker_id), None) {
            tracing::warn!(error = %e, "withdrawing the heartbeat failed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means a reader thread panicked mid-update; the view
        // is still the last consistent one it wrote, so keep serving it.
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the current view.
    pub fn with_view<T>(&self, f: impl FnOnce(&ClusterView) -> T) -> T {
        f(&self.lock().view)
    }

    pub fn status(&self, key: &str) -> Option<Status> {
        self.lock().statuses.get(key).cloned()
    }

    /// A counter that moves whenever the view or a status changes.
    pub fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// Waits until the view changes from `seen` or `timeout` passes.
    pub fn wait_change(&self, seen: u64, timeout: Duration) {
        let guard = self.lock();
        let _ = self.shared.1.wait_timeout_while(guard, timeout, |s| s.changes == seen);
    }

    /// Writes a config record and waits until this worker's view applied it.
    pub fn write(&self, name: &str, record: ConfigRecord) -> anyhow::Result<Applied> {
        let request_id = record.request_id().to_string();
        let payload = serde_json::to_vec(&record)?;
        let delivery = self
            .producer
            .send_result(FutureRecord::to(&self.topics.configs).key(name).payload(&payload))
            .map_err(|(e, _)| anyhow!("queueing a config record: {e}"))?;
        let (_, offset) = wait_delivery(delivery)?;
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut guard = self.lock();
        loop {
            if guard.configs_next > offset {
                return guard
                    .view
                    .take_outcome(&request_id)
                    .ok_or_else(|| anyhow!("the config record at offset {offset} was not applied"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(anyhow!("timed out waiting for the configs topic to reach offset {offset}"));
            }
            guard = self.shared.1.wait_timeout(guard, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Catches up with everything written to the configs topic so far.
    pub fn sync(&self) -> anyhow::Result<()> {
        self.write("__marker", ConfigRecord::Marker { request_id: new_request_id() }).map(|_| ())
    }

    /// Publishes a connector's or task's state (`None`: remove it).
    pub fn put_status(&self, key: &str, status: Option<&Status>) -> anyhow::Result<()> {
        self.put_record(key, status)
    }

    /// Writes a record of the status topic (`None`: a tombstone).
    fn put_record<T: Serialize>(&self, key: &str, value: Option<&T>) -> anyhow::Result<()> {
        let payload = value.map(serde_json::to_vec).transpose()?;
        let mut record = FutureRecord::to(&self.topics.status).key(key);
        if let Some(p) = payload.as_ref() {
            record = record.payload(p);
        }
        let delivery = self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing a status record: {e}"))?;
        wait_delivery(delivery).map(|_| ())
    }

    /// The connector's active topics, as this worker has read them.
    pub fn active_topics(&self, connector: &str) -> Vec<String> {
        let guard = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.active_topics.get(connector).map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }

    /// Records that a task of `connector` used `topic`, unless already known.
    /// Never waits for the broker: it runs on task threads, and the record is
    /// only bookkeeping (the view picks it up when the reader reads it back).
    pub fn note_active_topic(&self, connector: &str, topic: &str, task: i32) -> anyhow::Result<()> {
        if !self.topic_tracking.enable {
            return Ok(());
        }
        let pending = (connector.to_string(), topic.to_string());
        {
            let mut guard = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
            if guard.active_topics.get(connector).is_some_and(|t| t.contains(topic)) {
                return Ok(());
            }
            if guard.active_topics_sent.get(&pending).is_some_and(|at| at.elapsed() < Duration::from_secs(30)) {
                return Ok(());
            }
            guard.active_topics_sent.insert(pending.clone(), Instant::now());
        }
        let value = active_topics::TopicStatus {
            topic: active_topics::TopicState {
                name: topic.to_string(),
                connector: connector.to_string(),
                task,
                discover_timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            },
        };
        let payload = serde_json::to_vec(&value)?;
        let key = active_topics::key(topic, connector);
        let record = FutureRecord::to(&self.topics.status).key(&key).payload(&payload);
        if let Err((e, _)) = self.producer.send_result(record) {
            let mut guard = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
            guard.active_topics_sent.remove(&pending);
            return Err(anyhow!("queueing a topic status: {e}"));
        }
        // librdkafka delivers it without anyone waiting for the future.
        Ok(())
    }

    /// Forgets the connector's active topics (tombstones in the status topic).
    pub fn reset_active_topics(&self, connector: &str) -> anyhow::Result<()> {
        {
            let mut guard = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
            guard.active_topics_sent.retain(|(c, _), _| c != connector);
        }
        for topic in self.active_topics(connector) {
            self.put_status(&active_topics::key(&topic, connector), None)?;
        }
        Ok(())
    }

    pub fn kafka(&self) -> &KafkaSettings {
        &self.settings
    }

    /// Source offsets of a connector, read from the offsets topic up to now:
    /// source partition (JSON text) → offset (JSON text).
    pub fn read_source_offsets(&self, connector: &str) -> anyhow::Result<BTreeMap<String, String>> {
        self.read_offsets_topic(|parts| {
            (parts.first().and_then(|v| v.as_str()) == Some(connector))
                .then(|| parts.get(1).map(|p| p.to_string()).unwrap_or_default())
        })
    }

    /// The read-back positions every task of `connector` stored (exactly-once
    /// sources, `pipeline/source/readback.rs`): task → JSON text.
    pub fn read_source_positions(&self, connector: &str) -> anyhow::Result<BTreeMap<String, String>> {
        self.read_offsets_topic(|parts| {
            (parts.first().and_then(|v| v.as_str()) == Some(POSITIONS_KEY)
                && parts.get(1).and_then(|v| v.as_str()) == Some(connector))
            .then(|| parts.get(2).map(|p| p.to_string()).unwrap_or_default())
        })
    }

    /// Stores one task's read-back positions (`None`: forgets them).
    pub fn write_source_positions(&self, connector: &str, task: i32, positions: Option<&str>) -> anyhow::Result<()> {
        let key = serde_json::json!([POSITIONS_KEY, connector, task]).to_string();
        let mut record = FutureRecord::to(&self.topics.offsets).key(&key);
        if let Some(p) = positions {
            record = record.payload(p);
        }
        let delivery =
            self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing read-back positions: {e}"))?;
        wait_delivery(delivery)?;
        Ok(())
    }

    /// Forgets every task's read-back positions of `connector`: after its
    /// source offsets were altered or reset, records already in Kafka must
    /// not stop the ones the new offsets ask for again.
    pub fn clear_source_positions(&self, connector: &str) -> anyhow::Result<()> {
        for task in self.read_source_positions(connector)?.into_keys() {
            let task: i32 = task.parse().map_err(|_| anyhow!("a read-back positions key with task {task}"))?;
            self.write_source_positions(connector, task, None)?;
        }
        Ok(())
    }

    /// Stores DLQ replay positions (after every replayed record up to them
    /// was acknowledged): (cursor JSON text, next offset).
    pub fn write_replay_positions(&self, connector: &str, positions: &[(String, i64)]) -> anyhow::Result<()> {
        let mut deliveries = Vec::with_capacity(positions.len());
        for (cursor, next) in positions {
            let cursor: serde_json::Value = serde_json::from_str(cursor)?;
            let key = serde_json::json!([REPLAY_KEY, connector, cursor]).to_string();
            let value = next.to_string();
            let record = FutureRecord::to(&self.topics.offsets).key(&key).payload(&value);
            deliveries
                .push(self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing a replay position: {e}"))?);
        }
        for d in deliveries {
            wait_delivery(d)?;
        }
        Ok(())
    }

    /// Reads the offsets topic up to now; `select` maps a record's key (a
    /// JSON array) to the id it is stored under, or `None` to skip it. The
    /// last value per id wins; a tombstone removes it.
    fn read_offsets_topic(
        &self,
        select: impl Fn(&[serde_json::Value]) -> Option<String>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut offsets = BTreeMap::new();
        self.scan_offsets_topic(|parts, value, _| {
            if let Some(id) = select(parts) {
                keep_latest(&mut offsets, id, value);
            }
        })?;
        Ok(offsets)
    }

    /// Reads the offsets topic (one partition: one order for every worker)
    /// from the start up to now, handing `visit` each record whose key is a
    /// JSON array: the key's parts, the value (`None`: a tombstone) and the
    /// record's offset.
    fn scan_offsets_topic(
        &self,
        mut visit: impl FnMut(&[serde_json::Value], Option<&[u8]>, i64),
    ) -> anyhow::Result<()> {
        let consumer: BaseConsumer =
            self.settings.consumer(&format!("{}-offsets-reader", self.topics.offsets)).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topics.offsets, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        // A marker tells us where "now" is: ListOffsets cannot be trusted on
        // every broker (Tansu answers it in batches, not records).
        let marker = new_request_id();
        let marker_key = format!("__marker-{marker}");
        let delivery = self
            .producer
            .send_result(FutureRecord::<str, [u8]>::to(&self.topics.offsets).partition(0).key(&marker_key))
            .map_err(|(e, _)| anyhow!("queueing an offsets marker: {e}"))?;
        wait_delivery(delivery)?;
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            anyhow::ensure!(Instant::now() < deadline, "timed out reading the offsets topic");
            let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
            let message = message?;
            let key = message.key().map(String::from_utf8_lossy).unwrap_or_default();
            if key == marker_key {
                return Ok(());
            }
            if let Ok(serde_json::Value::Array(parts)) = serde_json::from_str::<serde_json::Value>(&key) {
                visit(&parts, message.payload(), message.offset());
            }
        }
    }

    /// Stores source offsets (after every record up to them was acknowledged).
    pub fn write_source_offsets(&self, connector: &str, offsets: &[(String, Option<String>)]) -> anyhow::Result<()> {
        self.write_source_offsets_then(connector, offsets, None)
    }

    /// [`write_source_offsets`](Self::write_source_offsets), then a task's
    /// read-back positions (task, JSON text) queued behind them: one wait,
    /// and the one partition and idempotent producer keep the order, so a
    /// failure part-way stores the offsets without the positions, never the
    /// other way round.
    pub fn write_source_offsets_then(
        &self,
        connector: &str,
        offsets: &[(String, Option<String>)],
        positions: Option<(i32, &str)>,
    ) -> anyhow::Result<()> {
        let mut deliveries = Vec::with_capacity(offsets.len() + 1);
        for (partition, offset) in offsets {
            let partition: serde_json::Value =
                serde_json::from_str(partition).unwrap_or(serde_json::Value::String(partition.clone()));
            let key = serde_json::json!([connector, partition]).to_string();
            let mut record = FutureRecord::to(&self.topics.offsets).key(&key);
            if let Some(o) = offset {
                record = record.payload(o.as_str());
            }
            deliveries.push(self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing an offset: {e}"))?);
        }
        let key = positions.map(|(task, _)| serde_json::json!([POSITIONS_KEY, connector, task]).to_string());
        if let (Some(key), Some((_, json))) = (&key, positions) {
            let record = FutureRecord::to(&self.topics.offsets).key(key).payload(json);
            deliveries.push(
                self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing read-back positions: {e}"))?,
            );
        }
        for d in deliveries {
            wait_delivery(d)?;
        }
        Ok(())
    }
}

/// Applies a record of a compacted topic to what is read so far: the last
/// value per id wins; a tombstone removes it.
fn keep_latest(map: &mut BTreeMap<String, String>, id: String, value: Option<&[u8]>) {
    match value {
        Some(value) => map.insert(id, String::from_utf8_lossy(value).to_string()),
        None => map.remove(&id),
    };
}

/// The id of a DLQ replay position of `connector` (see `rest/dlq_replay.rs`)
/// in the offsets topic: its cursor as JSON text; `None` for other keys.
fn replay_position_id(parts: &[serde_json::Value], connector: &str) -> Option<String> {
    (parts.first().and_then(|v| v.as_str()) == Some(REPLAY_KEY)
        && parts.get(1).and_then(|v| v.as_str()) == Some(connector))
    .then(|| parts.get(2).map(|p| p.to_string()).unwrap_or_default())
}

/// First element of the offsets-topic keys of a source task's read-back
/// positions (`[POSITIONS_KEY, connector, task]`); like [`REPLAY_KEY`] it
/// cannot clash with a connector's source offsets.
pub const POSITIONS_KEY: &str = "__sluice.source.positions";

/// First element of the offsets-topic keys of DLQ replay positions
/// (`[REPLAY_KEY, connector, cursor]`). Connector names cannot start with
/// `__`, so no source connector's offsets (`[connector, partition]`) match.
pub const REPLAY_KEY: &str = "__sluice.dlq.replay";

pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn spawn_reader(
    settings: &KafkaSettings,
    topics: &Topics,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    placement: Arc<placement::Placement>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<BrokerStats> = settings
        .consumer(&format!("{}-reader", topics.configs))
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .set_log_level(crate::kafka::diagnose::LOG_LEVEL)
        .create_with_context(BrokerStats::new("cluster-reader"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.configs, 0, Offset::Beginning)?;
    tpl.add_partition_offset(&topics.status, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let (configs, status) = (topics.configs.clone(), topics.status.clone());
    thread::Builder::new().name("cluster-reader".into()).spawn(move || loop {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the cluster topics");
                continue;
            }
        };
        let key = message.key().map(String::from_utf8_lossy).unwrap_or_default().to_string();
        let mut guard = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        if message.topic() == configs {
            match message.payload().map(serde_json::from_slice::<ConfigRecord>) {
                Some(Ok(record)) => guard.view.apply(message.offset(), &key, record),
                Some(Err(e)) => {
                    if guard.foreign.is_none() && view::is_kafka_connect_config_key(&key) {
                        guard.foreign = Some(format!("key {key:?} at offset {}", message.offset()));
                    }
                    tracing::warn!(offset = message.offset(), key = %key, error = %e, "skipping an unreadable config record")
                }
                None => {}
            }
            guard.configs_next = message.offset() + 1;
        } else if message.topic() == status && key.starts_with("worker-") {
            match message.payload().map(serde_json::from_slice::<Heartbeat>) {
                Some(Ok(beat)) => placement.heard(&beat.worker_id, beat.time_ms),
                Some(Err(_)) => {}
                None => placement.left(key.trim_start_matches("worker-")),
            }
        } else if let Some((topic, connector)) = active_topics::parse_key(&key).filter(|_| message.topic() == status) {
            guard.active_topics_sent.remove(&(connector.to_string(), topic.to_string()));
            if message.payload().is_some() {
                guard.active_topics.entry(connector.to_string()).or_default().insert(topic.to_string());
            } else if let Some(topics) = guard.active_topics.get_mut(connector) {
                topics.remove(topic);
            }
        } else if message.topic() == status {
            match message.payload().map(serde_json::from_slice::<Status>) {
                Some(Ok(s)) if supersedes(guard.statuses.get(&key), &s) => {
                    guard.statuses.insert(key, s);
                }
                Some(Ok(s)) => tracing::info!(
                    key = %key,
                    worker = %s.worker_id,
                    generation = ?s.generation,
                    "ignoring a status of an older incarnation of the task (written by a worker that was paused and taken over)"
                ),
                Some(Err(e)) => tracing::warn!(offset = message.offset(), error = %e, "skipping an unreadable status"),
                None => {
                    guard.statuses.remove(&key);
                }
            }
        }
        guard.changes += 1;
        drop(guard);
        shared.1.notify_all();
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_carry_kafka_connects_names_on_the_wire() {
        let names = ["UNASSIGNED", "RUNNING", "PAUSED", "FAILED", "RESTARTING", "STOPPED"];
        for (state, name) in RunState::ALL.into_iter().zip(names) {
            assert_eq!(state.name(), name);
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<RunState>(serde_json::json!(name)).unwrap(), state);
        }
        assert!(serde_json::from_str::<RunState>(r#""running""#).is_err(), "the wire spells them in capitals");
    }

    #[test]
    fn status_and_heartbeat_records_keep_their_wire_format() {
        let failed = Status {
            state: RunState::Failed,
            worker_id: "http://w1:8083".into(),
            trace: Some("boom".into()),
            generation: None,
            message: None,
        };
        let text = serde_json::to_string(&failed).unwrap();
        assert_eq!(text, r#"{"state":"FAILED","worker_id":"http://w1:8083","trace":"boom"}"#);
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), failed);
        let running =
            Status { state: RunState::Running, worker_id: "w".into(), trace: None, generation: None, message: None };
        assert_eq!(serde_json::to_string(&running).unwrap(), r#"{"state":"RUNNING","worker_id":"w"}"#);
        let said = Status { message: Some("paused until 00:00 UTC".into()), ..running.clone() };
        let text = serde_json::to_string(&said).unwrap();
        assert_eq!(text, r#"{"state":"RUNNING","worker_id":"w","message":"paused until 00:00 UTC"}"#);
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), said);
        // Heartbeats share the topic with their own record.
        let beat = Heartbeat { state: "ALIVE".into(), worker_id: "w".into(), time_ms: 42 };
        let text = serde_json::to_string(&beat).unwrap();
        assert_eq!(text, r#"{"state":"ALIVE","worker_id":"w","time_ms":42}"#);
        assert_eq!(serde_json::from_str::<Heartbeat>(&text).unwrap(), beat);
        // A task's status carries its incarnation; one without reads as before.
        let task = Status { generation: Some(1_700_000_000_123), ..running.clone() };
        let text = serde_json::to_string(&task).unwrap();
        assert_eq!(text, r#"{"state":"RUNNING","worker_id":"w","generation":1700000000123}"#);
        assert_eq!(serde_json::from_str::<Status>(r#"{"state":"RUNNING","worker_id":"w"}"#).unwrap(), running);
        // A status record written with the former optional time_ms still reads.
        let older = r#"{"state":"PAUSED","worker_id":"w","time_ms":null}"#;
        assert_eq!(serde_json::from_str::<Status>(older).unwrap().state, RunState::Paused);
    }

    #[test]
    fn a_status_of_an_older_incarnation_does_not_replace_a_newer_one() {
        let at = |worker: &str, state, generation| Status {
            state,
            worker_id: worker.into(),
            trace: None,
            generation,
            message: None,
        };
        let new_owner = at("b", RunState::Running, Some(200));
        // The paused former owner's late RUNNING: ignored.
        assert!(!supersedes(Some(&new_owner), &at("a", RunState::Running, Some(100))));
        // The same incarnation's changes, and a later one (the task moved back): applied.
        assert!(supersedes(Some(&new_owner), &at("b", RunState::Paused, Some(200))));
        assert!(supersedes(Some(&new_owner), &at("a", RunState::Running, Some(201))));
        // Nothing known, or a record without an incarnation on either side: applied as before.
        assert!(supersedes(None, &at("a", RunState::Running, Some(1))));
        assert!(supersedes(Some(&new_owner), &at("a", RunState::Failed, None)));
        assert!(supersedes(Some(&at("a", RunState::Running, None)), &at("b", RunState::Running, Some(1))));
    }
}
