//! Which worker runs a connector's DLQ replay: a lease in the offsets topic.
//!
//! Behind a load balancer, a client that retries a slow replay lands on
//! another worker while the first still runs; both would re-produce the same
//! records (each stores its positions only at the end). So a run first writes
//! a claim, `[LEASE_KEY, connector, claim id]` → `{"worker", "until_ms"}`,
//! then reads the offsets topic up to now. The topic has one partition, so
//! every worker sees the claims in the same order: the oldest live claim
//! (not tombstoned, `until_ms` not passed) holds the lease. Any other
//! claimant tombstones its claim and is told who holds it. The holder renews
//! its claim while it runs and tombstones it when done; the claim of a worker
//! that died lapses after [`LEASE`].

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::anyhow;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};

use super::{keep_latest, new_request_id, replay_position_id, Cluster};
use crate::kafka::wait_delivery;

/// First element of lease keys (`[LEASE_KEY, connector, claim id]`); like
/// the replay positions' key it starts with `__`, which no connector name does.
pub const LEASE_KEY: &str = "__sluice.dlq.replay.lease";

/// How long a claim holds without renewal. The holder renews it every third
/// of this, so a lease lapses only when its worker stopped.
pub const LEASE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub worker: String,
    /// Wall-clock end of the claim, ms since the epoch.
    pub until_ms: i64,
}

/// The replay lease of one connector, held by this worker until dropped.
pub struct ReplayLease<'a> {
    cluster: &'a Cluster,
    key: String,
    renewed: Instant,
    /// The connector's DLQ replay positions, read in the same pass that
    /// found the lease free: cursor (JSON text) → next DLQ offset (JSON
    /// text). Only the lease holder writes them, so they stay current.
    pub positions: BTreeMap<String, String>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Of the claims in log order (id, first offset, latest value; tombstoned
/// ones removed), the one that holds the lease at `now_ms`.
fn holder(claims: &BTreeMap<String, (i64, Claim)>, now_ms: i64) -> Option<(&String, &Claim)> {
    claims
        .iter()
        .filter(|(_, (_, claim))| claim.until_ms > now_ms)
        .min_by_key(|(_, (first, _))| *first)
        .map(|(id, (_, claim))| (id, claim))
}

impl Cluster {
    /// Takes the connector's replay lease (with its replay positions), or
    /// answers the claim that holds it.
    pub fn claim_replay(&self, connector: &str) -> anyhow::Result<Result<ReplayLease<'_>, Claim>> {
        let id = new_request_id();
        let key = serde_json::json!([LEASE_KEY, connector, id]).to_string();
        self.write_claim(&key)?;
        let mut lease = ReplayLease { cluster: self, key, renewed: Instant::now(), positions: BTreeMap::new() };
        let mut claims: BTreeMap<String, (i64, Claim)> = BTreeMap::new();
        let positions = &mut lease.positions;
        self.scan_offsets_topic(|parts, value, offset| {
            if let Some(id) = replay_position_id(parts, connector) {
                keep_latest(positions, id, value);
                return;
            }
            let (Some(LEASE_KEY), Some(c), Some(claim_id)) =
                (parts.first().and_then(|v| v.as_str()), parts.get(1).and_then(|v| v.as_str()), parts.get(2))
            else {
                return;
            };
            if c != connector {
                return;
            }
            let claim_id = claim_id.to_string();
            match value.and_then(|v| serde_json::from_slice::<Claim>(v).ok()) {
                Some(claim) => {
                    let first = claims.get(&claim_id).map_or(offset, |(first, _)| *first);
                    claims.insert(claim_id, (first, claim));
                }
                None => {
                    claims.remove(&claim_id);
                }
            }
        })?;
        let mine = serde_json::Value::String(id).to_string();
        match holder(&claims, now_ms()) {
            Some((holder_id, _)) if *holder_id == mine => Ok(Ok(lease)),
            Some((_, claim)) => {
                let claim = claim.clone();
                lease.release();
                Ok(Err(claim))
            }
            // Our own claim was not read back: the topic is not what we think.
            None => {
                lease.release();
                Err(anyhow!("the DLQ replay claim was not found in the offsets topic {}", self.topics.offsets))
            }
        }
    }

    fn write_claim(&self, key: &str) -> anyhow::Result<()> {
        let claim = Claim { worker: self.worker_id.clone(), until_ms: now_ms() + LEASE.as_millis() as i64 };
        let value = serde_json::to_string(&claim)?;
        // Partition 0 is the one `scan_offsets_topic` reads.
        let record = FutureRecord::to(&self.topics.offsets).partition(0).key(key).payload(&value);
        let delivery =
            self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing a DLQ replay claim: {e}"))?;
        wait_delivery(delivery).map(|_| ())
    }
}

impl ReplayLease<'_> {
    /// Renews the claim once a third of the lease has passed since the last
    /// renewal; cheap to call often.
    pub fn keep(&mut self) -> anyhow::Result<()> {
        if self.renewed.elapsed() >= LEASE / 3 {
            self.cluster.write_claim(&self.key)?;
            self.renewed = Instant::now();
        }
        Ok(())
    }

    fn release(&mut self) {
        if self.key.is_empty() {
            return;
        }
        let record = FutureRecord::<str, [u8]>::to(&self.cluster.topics.offsets).partition(0).key(&self.key);
        let result = match self.cluster.producer.send_result(record) {
            Ok(delivery) => wait_delivery(delivery).map(|_| ()),
            Err((e, _)) => Err(anyhow!("queueing: {e}")),
        };
        if let Err(e) = result {
            tracing::warn!(key = %self.key, error = %e, "could not release a DLQ replay lease; it lapses on its own");
        }
        self.key.clear();
    }
}

impl Drop for ReplayLease<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(worker: &str, until_ms: i64) -> Claim {
        Claim { worker: worker.into(), until_ms }
    }

    #[test]
    fn the_oldest_live_claim_holds_the_lease() {
        let mut claims = BTreeMap::new();
        // Ids sort differently from their log order on purpose.
        claims.insert("\"b\"".to_string(), (10, claim("w1", 5_000)));
        claims.insert("\"a\"".to_string(), (12, claim("w2", 5_000)));
        assert_eq!(holder(&claims, 1_000).map(|(_, c)| c.worker.as_str()), Some("w1"));
        // w1's claim lapsed (its worker died): the next one holds.
        claims.insert("\"b\"".to_string(), (10, claim("w1", 900)));
        assert_eq!(holder(&claims, 1_000).map(|(_, c)| c.worker.as_str()), Some("w2"));
        claims.clear();
        assert!(holder(&claims, 1_000).is_none());
    }
}
