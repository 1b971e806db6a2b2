//! Task placement through Kafka's group protocol: every worker joins one
//! consumer group on the coordination topic (never written), and a task runs
//! on the worker that owns partition `hash(connector, task) mod PARTITIONS`.
//! The cooperative-sticky assignor does the balancing: a joining worker takes
//! over only some partitions, a dead worker's partitions move after one
//! session timeout, and no rebalance stops every task.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    thread,
    time::Duration,
};

use anyhow::Context;
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
};

use crate::kafka::KafkaSettings;

/// Partitions of the coordination topic: the unit of task movement.
pub const PARTITIONS: i32 = 32;

/// FNV-1a: stable across Rust versions and processes (unlike `DefaultHasher`),
/// so every worker maps a task to the same partition.
pub fn partition_of(connector: &str, task: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in connector.bytes().chain(task.to_be_bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % PARTITIONS as u32) as i32
}

#[derive(Default)]
struct Owned {
    partitions: RwLock<BTreeSet<i32>>,
    generation: AtomicU64,
}

struct PlacementContext {
    owned: Arc<Owned>,
}

impl ClientContext for PlacementContext {}

impl ConsumerContext for PlacementContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self.owned.partitions.write().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => owned.extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    owned.remove(&e.partition());
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "coordination rebalance error"),
        }
        self.owned.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(owned = owned.len(), "coordination partitions changed");
    }
}

/// This worker's share of the coordination partitions.
pub struct Placement {
    owned: Arc<Owned>,
}

impl Placement {
    pub fn join(settings: &KafkaSettings, cluster_id: &str, topic: &str) -> anyhow::Result<Placement> {
        let owned = Arc::new(Owned::default());
        let consumer: BaseConsumer<PlacementContext> = settings
            .consumer(&format!("{cluster_id}-workers"))
            .create_with_context(PlacementContext { owned: owned.clone() })
            .context("creating the coordination consumer")?;
        consumer.subscribe(&[topic]).context("joining the coordination group")?;
        // Polling serves the group protocol (heartbeats run in librdkafka's
        // own thread; rebalance callbacks run here).
        thread::Builder::new().name("placement".into()).spawn(move || loop {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(200)) {
                tracing::debug!(error = %e, "coordination consumer");
            }
        })?;
        Ok(Placement { owned })
    }

    pub fn owns(&self, connector: &str, task: i32) -> bool {
        self.owned.partitions.read().map(|o| o.contains(&partition_of(connector, task))).unwrap_or(false)
    }

    /// True once this worker has been assigned at least once.
    pub fn joined(&self) -> bool {
        self.owned.generation.load(Ordering::SeqCst) > 0
    }

    /// Moves whenever the owned partitions change.
    pub fn generation(&self) -> u64 {
        self.owned.generation.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_spread() {
        assert_eq!(partition_of("orders-s3", 0), partition_of("orders-s3", 0));
        let used: BTreeSet<i32> = (0..64).map(|t| partition_of("orders-s3", t)).collect();
        assert!(used.len() > 16, "tasks should spread over partitions: {used:?}");
        assert!(used.iter().all(|p| (0..PARTITIONS).contains(p)));
    }
}
