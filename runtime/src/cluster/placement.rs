//! Task placement from worker heartbeats in the status topic.
//!
//! Every worker publishes a heartbeat (`worker-<id>`) a few times per session
//! timeout; every worker reads them all and so knows the same set of live
//! workers (heard from within one session timeout). A task runs on the live
//! worker with the highest rendezvous score `hash(worker, connector, task)`:
//! all workers compute the same owner without talking to each other, a
//! joining worker takes over only the tasks it now scores highest on (about
//! 1/N of them, no stop-the-world rebalance), and a dead worker's tasks move
//! one session timeout after its last heartbeat. A worker that stops cleanly
//! withdraws its heartbeat so its tasks move at once.
//!
//! Why not a consumer group on a coordination topic (the first design): with
//! the Tansu broker, a surviving member was measured to lose its whole
//! assignment when another member died and not to be assigned again for
//! minutes; heartbeats through a topic depend only on produce and fetch.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// FNV-1a 64: stable across Rust versions and processes (unlike
/// `DefaultHasher`), so every worker computes the same scores.
pub fn score(worker: &str, connector: &str, task: i32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in worker.bytes().chain([0]).chain(connector.bytes()).chain([0]).chain(task.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone mixes the last bytes poorly; a splitmix64 finaliser spreads
    // scores so each worker wins its fair share.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The live workers as this worker sees them.
pub struct Placement {
    worker_id: String,
    session: Duration,
    /// Worker id → when its last heartbeat was read here.
    live: Mutex<HashMap<String, Instant>>,
}

impl Placement {
    pub fn new(worker_id: String, session: Duration) -> Self {
        Placement { worker_id, session, live: Mutex::new(HashMap::new()) }
    }

    /// A heartbeat sent at `sent_ms` was read. Heartbeats older than a
    /// session (read while catching up on the topic) prove nothing.
    pub fn heard(&self, worker: &str, sent_ms: i64) {
        if now_ms() - sent_ms > self.session.as_millis() as i64 {
            return;
        }
        if let Ok(mut live) = self.live.lock() {
            live.insert(worker.to_string(), Instant::now());
        }
    }

    /// The worker withdrew its heartbeat (clean shutdown).
    pub fn left(&self, worker: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(worker);
        }
    }

    /// Live workers, sorted.
    pub fn live_workers(&self) -> Vec<String> {
        let Ok(live) = self.live.lock() else { return Vec::new() };
        let mut workers: Vec<String> =
            live.iter().filter(|(_, at)| at.elapsed() <= self.session).map(|(w, _)| w.clone()).collect();
        workers.sort();
        workers
    }

    /// The live worker a task belongs on.
    pub fn owner(&self, connector: &str, task: i32) -> Option<String> {
        self.live_workers().into_iter().max_by_key(|w| score(w, connector, task))
    }

    pub fn owns(&self, connector: &str, task: i32) -> bool {
        self.owner(connector, task).as_deref() == Some(self.worker_id.as_str())
    }

    /// True once this worker has read its own heartbeat back.
    pub fn joined(&self) -> bool {
        self.live_workers().contains(&self.worker_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(me: &str, workers: &[&str]) -> Placement {
        let p = Placement::new(me.to_string(), Duration::from_secs(60));
        for w in workers {
            p.heard(w, now_ms());
        }
        p
    }

    #[test]
    fn every_worker_agrees_on_the_owner() {
        let a = placement("a", &["a", "b", "c"]);
        let b = placement("b", &["c", "b", "a"]);
        for t in 0..50 {
            assert_eq!(a.owner("orders", t), b.owner("orders", t));
            assert!(!(a.owns("orders", t) && b.owns("orders", t)), "task {t} has two owners");
        }
    }

    #[test]
    fn a_joining_worker_moves_only_some_tasks() {
        let before = placement("a", &["a", "b"]);
        let after = placement("a", &["a", "b", "c"]);
        let moved: Vec<i32> = (0..300).filter(|t| before.owner("x", *t) != after.owner("x", *t)).collect();
        assert!(moved.iter().all(|t| after.owner("x", *t) == Some("c".into())), "only tasks moving to c move");
        assert!(moved.len() > 50 && moved.len() < 150, "about a third moves: {}", moved.len());
    }

    #[test]
    fn stale_heartbeats_and_departed_workers_do_not_count() {
        let p = placement("a", &["a"]);
        p.heard("old", now_ms() - 3_600_000);
        p.heard("gone", now_ms());
        p.left("gone");
        assert_eq!(p.live_workers(), vec!["a".to_string()]);
        assert!(p.joined());
        assert!(p.owns("x", 0));
    }
}
