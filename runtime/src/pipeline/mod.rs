//! Task pipelines: each task runs on its own thread (plugin calls may block).
//! `sink/` consumes → puts → commits the settled watermark; `source.rs`
//! polls → produces → stores source offsets after acknowledgement.

pub mod budget;
pub mod dlq;
pub mod sink;
pub mod source;
pub mod status;
pub mod watermark;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    cluster::Cluster,
    connector_config::RuntimeConfig,
    host::PluginMetrics,
    kafka::overrides::{self, ClientOverrides},
    metrics::{BrokerStats, CountedProducer, Metrics, STATISTICS_INTERVAL_MS},
    plugins::ConnectorClass,
};

/// Everything a task thread needs.
pub struct TaskContext {
    pub connector: String,
    pub task: i32,
    pub class: Arc<ConnectorClass>,
    /// The plugin's task config, secrets resolved.
    pub task_config: BTreeMap<String, String>,
    pub runtime: RuntimeConfig,
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Metrics>,
    pub plugin_metrics: Arc<PluginMetrics>,
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
    /// What the task says about itself, published with its state.
    pub status_message: status::StatusMessage,
}

impl TaskContext {
    /// Stopped by the worker, or the worker is fenced after a pause
    /// (`cluster/fence.rs`): then every task ends by itself on wake, before
    /// the reconciler gets to it.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.cluster.fence.fenced()
    }
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
    pub fn labels(&self) -> [String; 2] {
        [self.connector.clone(), self.task.to_string()]
    }

    /// The task's idempotent producer (`role`: `producer` for a source's
    /// records, `dlq-producer` for a sink's failed records), counted in
    /// `sluice_broker_connections`.
    pub fn producer(&self, role: &str) -> Result<CountedProducer, String> {
        self.producer_with(role, &[])
    }

    /// [`producer`](Self::producer) with settings that win over the
    /// connector's overrides.
    pub fn producer_with(&self, role: &str, fixed: &[(&str, String)]) -> Result<CountedProducer, String> {
        let overrides = self.client_overrides()?;
        let mut config = crate::kafka::with_overrides(self.cluster.kafka().producer(), &overrides.producer);
        for (key, value) in fixed {
            config.set(*key, value);
        }
        config
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set_log_level(crate::kafka::diagnose::LOG_LEVEL)
            .create_with_context(BrokerStats::task(role, &self.connector, self.task))
            .map_err(|e| failure(&format!("creating the {role}"), e))
    }

    /// The connector's `*.override.*` client settings, references resolved
    /// and translated to librdkafka's names under the worker's
    /// `connector.client.config.override.policy` (checked again here: the
    /// connector may have been created under another policy).
    pub fn client_overrides(&self) -> Result<ClientOverrides, String> {
        let resolved = crate::connector_config::resolve_secrets(&self.runtime.client_overrides)
            .map_err(|e| failure("resolving the client overrides", e))?;
        overrides::resolve(&resolved, self.cluster.client_policy).map_err(|issues| {
            let text: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.key, i.message)).collect();
            failure("the connector's client overrides", text.join("; "))
        })
    }

    /// Creates `topic` unless it exists, through an admin client with the
    /// connector's `admin.override.*`.
    pub fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        setting: &str,
    ) -> Result<(), String> {
        let overrides = self.client_overrides()?;
        let spec = crate::kafka::NewTopicSpec { name: topic, partitions, replication_factor, compacted: false };
        crate::kafka::ensure_topic(self.cluster.kafka(), spec, &overrides.admin)
            .map_err(|e| failure(&format!("creating topic {topic} (replication factor from {setting})"), e))
    }

    /// Records the topics used (consumed by a sink, produced to by a source)
    /// as the connector's active topics: one look at the cluster's view per
    /// run of equal topics. A failure costs only the tracking, not the task.
    pub fn note_active_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let mut previous: Option<&str> = None;
        for topic in topics {
            if previous == Some(topic) {
                continue;
            }
            previous = Some(topic);
            if let Err(e) = self.cluster.note_active_topic(&self.connector, topic, self.task) {
                tracing::warn!(connector = %self.connector, task = self.task, topic, error = %e, "could not record an active topic");
            }
        }
    }

    /// Sleeps up to `duration`, returning early (false) if the task must stop.
    pub fn pause_for(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())));
        }
        !self.stopping()
    }
}

/// Exponential backoff from 300 ms (Kafka Connect's minimum) up to `max`,
/// with ±20 % jitter so retrying tasks do not move in lockstep.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(300).saturating_mul(1u32 << attempt.min(16)).min(max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    base.mul_f64(jitter)
}

/// The trace a FAILED status carries.
pub fn failure(what: &str, error: impl std::fmt::Display) -> String {
    format!("{what}: {error}")
}
