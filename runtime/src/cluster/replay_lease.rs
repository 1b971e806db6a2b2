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
//!
//! Renewal runs on a thread of its own ([`Keeper`]): the replay itself may
//! block longer than a lease in one call (a delivery wait lasts up to the
//! producer's `message.timeout.ms`, five minutes by default), and a lease
//! renewed only between calls would lapse under it.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::anyhow;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::{keep_latest, new_request_id, replay_position_id, Cluster};
use crate::{kafka::wait_delivery, metrics::BrokerStats};

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
    /// Renews the claim once it is known to hold the lease.
    keeper: Option<Keeper>,
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
        let writer = ClaimWriter {
            producer: self.producer.clone(),
            topic: self.topics.offsets.clone(),
            worker: self.worker_id.clone(),
            key: key.clone(),
        };
        let until_ms = writer.write()?;
        let mut lease = ReplayLease { cluster: self, key, keeper: None, positions: BTreeMap::new() };
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
            Some((holder_id, _)) if *holder_id == mine => {
                lease.keeper = Some(Keeper::start(LEASE / 3, until_ms, move || writer.write())?);
                Ok(Ok(lease))
            }
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
}

/// Writes one claim of this worker (the keeper thread cannot borrow the cluster).
struct ClaimWriter {
    producer: FutureProducer<BrokerStats>,
    topic: String,
    worker: String,
    key: String,
}

impl ClaimWriter {
    /// Returns the written claim's `until_ms`.
    fn write(&self) -> anyhow::Result<i64> {
        let claim = Claim { worker: self.worker.clone(), until_ms: now_ms() + LEASE.as_millis() as i64 };
        let value = serde_json::to_string(&claim)?;
        // Partition 0 is the one `scan_offsets_topic` reads.
        let record = FutureRecord::to(&self.topic).partition(0).key(&self.key).payload(&value);
        let delivery =
            self.producer.send_result(record).map_err(|(e, _)| anyhow!("queueing a DLQ replay claim: {e}"))?;
        wait_delivery(delivery).map(|_| claim.until_ms)
    }
}

/// A thread that calls `renew` every `every` until dropped, and remembers
/// until when the claim is known to hold.
struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    /// `until_ms` of the last claim written successfully.
    holds_until_ms: Arc<AtomicI64>,
}

impl Keeper {
    fn start(
        every: Duration,
        until_ms: i64,
        renew: impl Fn() -> anyhow::Result<i64> + Send + 'static,
    ) -> anyhow::Result<Keeper> {
        let holds_until_ms = Arc::new(AtomicI64::new(until_ms));
        let holds = Arc::clone(&holds_until_ms);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new().name("dlq-replay-lease".into()).spawn(move || {
            // Ends when the sender is dropped (nothing is ever sent).
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                match renew() {
                    Ok(until_ms) => holds.store(until_ms, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "could not renew a DLQ replay lease; trying again"),
                }
            }
        })?;
        Ok(Keeper { stop: Some(stop), thread: Some(thread), holds_until_ms })
    }

    fn holds_until_ms(&self) -> i64 {
        self.holds_until_ms.load(Ordering::Relaxed)
    }
}

impl Drop for Keeper {
    /// Returns once the thread ended: no renewal can follow.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ReplayLease<'_> {
    /// Fails once the lease may have passed to another worker: every
    /// renewal for a whole lease failed. Cheap to call often.
    pub fn check(&self) -> anyhow::Result<()> {
        let Some(keeper) = &self.keeper else { return Ok(()) };
        if keeper.holds_until_ms() <= now_ms() {
            return Err(anyhow!(
                "this worker's DLQ replay lease in the offsets topic {} lapsed because its renewals failed \
                 (see the worker's log), so another worker may be replaying; stopped",
                self.cluster.topics.offsets
            ));
        }
        Ok(())
    }

    fn release(&mut self) {
        if self.key.is_empty() {
            return;
        }
        // The keeper ends first: a renewal after the tombstone would bring
        // the claim back for a whole lease.
        self.keeper.take();
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

    /// Polls `done` until it holds or ten seconds pass.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_keeper_renews_on_its_own_thread_and_never_after_it_is_dropped() {
        use std::sync::atomic::AtomicUsize;
        let renewals = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&renewals);
        let keeper = Keeper::start(Duration::from_millis(1), 1, move || {
            Ok(1_000 + counted.fetch_add(1, Ordering::SeqCst) as i64)
        })
        .unwrap();
        // Nobody calls into the keeper: the renewals come from its thread
        // (a replay blocked in one delivery wait keeps its lease).
        eventually("three renewals", || renewals.load(Ordering::SeqCst) >= 3);
        assert!(keeper.holds_until_ms() > 1_000, "the newest claim's end is known");
        drop(keeper);
        // Dropping joined the thread (its `renew`, holding the other count,
        // is gone): a claim tombstoned now stays tombstoned.
        assert_eq!(Arc::strong_count(&renewals), 1, "the keeper thread outlived its drop");
    }

    #[test]
    fn a_lease_whose_renewals_all_fail_reports_it_may_be_lost() {
        let keeper = Keeper::start(Duration::from_millis(1), now_ms() + 50, || Err(anyhow!("broker down"))).unwrap();
        assert!(keeper.holds_until_ms() > now_ms(), "the first claim holds for now");
        // Failed renewals never extend it.
        eventually("the claim to lapse", || keeper.holds_until_ms() <= now_ms());
    }
}
