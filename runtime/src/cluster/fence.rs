//! Fencing a worker that was paused (SIGSTOP, a frozen VM, a long stall, a
//! network partition) for longer than the takeover time.
//!
//! The other workers move this worker's tasks one session timeout after they
//! last read its heartbeat. A heartbeat is read no earlier than it was sent,
//! so once a session timeout has passed since this worker *sent* the last
//! heartbeat the broker acknowledged, its tasks may already run elsewhere:
//! from then on it is fenced. A fenced worker stops every task it ran
//! without committing or storing anything for them, sends no heartbeat and
//! publishes no status until they all ended, then rejoins: the first
//! heartbeat sent after that and acknowledged lifts the fence, and placement
//! decides afresh what runs here.
//!
//! After a SIGSTOP every thread wakes at once, so every thread that could
//! write (heartbeat, reconciler, a sink's commit) asks [`Fence::check`]
//! first; the heartbeat thread asks before it sends, so no fresh heartbeat
//! can hide the gap from the others. The choice of clocks is in
//! docs/decisions/0031-fencing-a-paused-worker.md.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use super::placement::now_ms;

/// A moment by both clocks: the monotonic one (immune to wall-clock steps)
/// and the wall clock (which keeps counting while a VM is frozen, when a
/// guest's monotonic clock may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub mono: Instant,
    pub wall_ms: i64,
}

impl Moment {
    pub fn now() -> Moment {
        Moment { mono: Instant::now(), wall_ms: now_ms() }
    }
}

/// How long this worker has been unheard of: the larger of the two clocks'
/// readings since `since` (a wall clock stepped back counts as no time).
pub fn silence(since: Moment, now: Moment) -> Duration {
    let mono = now.mono.saturating_duration_since(since.mono);
    let wall = Duration::from_millis(u64::try_from(now.wall_ms - since.wall_ms).unwrap_or(0));
    mono.max(wall)
}

/// Whether a worker whose last acknowledged heartbeat was sent at `last`
/// (`None`: none yet, it never joined and owns nothing) must fence itself.
pub fn must_fence(last: Option<Moment>, now: Moment, session: Duration) -> Option<Duration> {
    let silent = silence(last?, now);
    (silent >= session).then_some(silent)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Joined,
    /// Fenced after `silent` without a heartbeat; `rejoin_from`: set once
    /// every task ended, the moment from which a heartbeat may lift it.
    Fenced {
        silent: Duration,
        rejoin_from: Option<Moment>,
    },
}

#[derive(Debug)]
struct State {
    last_acked: Option<Moment>,
    phase: Phase,
    /// Bumped on each fencing, so the reconciler acts once per pause.
    fencings: u64,
}

/// This worker's fence (one per worker, shared by every thread).
#[derive(Debug)]
pub struct Fence {
    session: Duration,
    state: Mutex<State>,
}

/// What [`Fence::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Joined,
    /// Fenced (the `fencing`th time) after `silent` without an acknowledged heartbeat.
    Fenced {
        silent: Duration,
        fencing: u64,
    },
}

impl Fence {
    pub fn new(session: Duration) -> Fence {
        Fence { session, state: Mutex::new(State { last_acked: None, phase: Phase::Joined, fencings: 0 }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fences the worker if it was unheard of for a session timeout by `now`.
    pub fn check_at(&self, now: Moment) -> Verdict {
        let mut s = self.state();
        if s.phase == Phase::Joined {
            if let Some(silent) = must_fence(s.last_acked, now, self.session) {
                s.phase = Phase::Fenced { silent, rejoin_from: None };
                s.fencings += 1;
            }
        }
        match s.phase {
            Phase::Joined => Verdict::Joined,
            Phase::Fenced { silent, .. } => Verdict::Fenced { silent, fencing: s.fencings },
        }
    }

    pub fn check(&self) -> Verdict {
        self.check_at(Moment::now())
    }

    pub fn fenced(&self) -> bool {
        self.check() != Verdict::Joined
    }

    /// Whether a heartbeat may be sent at `now`: joined, or fenced with
    /// every task ended.
    pub fn may_beat(&self, now: Moment) -> bool {
        self.check_at(now);
        match self.state().phase {
            Phase::Joined => true,
            Phase::Fenced { rejoin_from, .. } => rejoin_from.is_some(),
        }
    }

    /// Every task that ran before the fencing ended: the worker may rejoin.
    pub fn tasks_ended(&self, now: Moment) {
        let mut s = self.state();
        if let Phase::Fenced { silent, rejoin_from: None } = s.phase {
            s.phase = Phase::Fenced { silent, rejoin_from: Some(now) };
        }
    }

    /// The broker acknowledged a heartbeat sent at `sent`. One sent after
    /// the tasks ended lifts the fence (true: this one rejoined); one sent
    /// before the pause (its acknowledgement read after it) only dates the
    /// last one heard.
    pub fn acked(&self, sent: Moment) -> bool {
        let mut s = self.state();
        if s.last_acked.is_none_or(|last| sent.mono > last.mono) {
            s.last_acked = Some(sent);
        }
        if let Phase::Fenced { rejoin_from: Some(from), .. } = s.phase {
            if sent.mono >= from.mono {
                s.phase = Phase::Joined;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(10);

    fn at(start: Moment, mono_s: u64, wall_s: i64) -> Moment {
        Moment { mono: start.mono + Duration::from_secs(mono_s), wall_ms: start.wall_ms + wall_s * 1000 }
    }

    #[test]
    fn silence_takes_the_larger_clock_and_ignores_a_wall_clock_stepped_back() {
        let t0 = Moment::now();
        assert_eq!(silence(t0, at(t0, 3, 3)), Duration::from_secs(3));
        // A frozen VM: the guest's monotonic clock stood still, the wall clock moved.
        assert_eq!(silence(t0, at(t0, 1, 40)), Duration::from_secs(40));
        // The wall clock stepped back an hour: the monotonic clock still counts.
        assert_eq!(silence(t0, at(t0, 12, -3600)), Duration::from_secs(12));
    }

    #[test]
    fn a_worker_fences_itself_once_unheard_of_for_a_session() {
        let t0 = Moment::now();
        assert_eq!(must_fence(None, at(t0, 100, 100), SESSION), None, "never joined: owns nothing to fence");
        assert_eq!(must_fence(Some(t0), at(t0, 9, 9), SESSION), None);
        assert_eq!(must_fence(Some(t0), at(t0, 10, 10), SESSION), Some(SESSION));
        assert_eq!(must_fence(Some(t0), at(t0, 2, 45), SESSION), Some(Duration::from_secs(45)));
    }

    #[test]
    fn heartbeats_in_time_keep_the_worker_joined() {
        let t0 = Moment::now();
        let fence = Fence::new(SESSION);
        for s in 0..20 {
            assert!(fence.may_beat(at(t0, s * 2, s as i64 * 2)));
            assert!(!fence.acked(at(t0, s * 2, s as i64 * 2)), "nothing to rejoin");
        }
        assert_eq!(fence.check_at(at(t0, 45, 45)), Verdict::Joined);
    }

    #[test]
    fn after_a_pause_no_heartbeat_goes_out_until_every_task_ended_and_the_next_one_rejoins() {
        let t0 = Moment::now();
        let fence = Fence::new(SESSION);
        let _ = fence.acked(t0);
        // SIGSTOP for 40 s; on wake the heartbeat thread asks first.
        let wake = at(t0, 40, 40);
        assert!(!fence.may_beat(wake), "a heartbeat now would hide the gap");
        let fenced = Verdict::Fenced { silent: Duration::from_secs(40), fencing: 1 };
        assert_eq!(fence.check_at(wake), fenced);
        // A heartbeat sent before the pause, acknowledged after it, lifts nothing.
        assert!(!fence.acked(at(t0, 1, 1)));
        assert_eq!(fence.check_at(at(t0, 41, 41)), fenced);
        assert!(!fence.may_beat(at(t0, 41, 41)));
        // The tasks ended: the next heartbeat goes out and, acknowledged, rejoins.
        fence.tasks_ended(at(t0, 42, 42));
        assert!(fence.may_beat(at(t0, 42, 42)));
        assert_eq!(fence.check_at(at(t0, 42, 42)), fenced, "still fenced until a heartbeat is acknowledged");
        assert!(fence.acked(at(t0, 42, 42)), "this heartbeat rejoined");
        assert_eq!(fence.check_at(at(t0, 43, 43)), Verdict::Joined);
        // A second pause is a second fencing.
        let second = fence.check_at(at(t0, 60, 60));
        assert_eq!(second, Verdict::Fenced { silent: Duration::from_secs(18), fencing: 2 });
    }

    #[test]
    fn an_acknowledgement_of_a_heartbeat_sent_before_the_tasks_ended_does_not_rejoin() {
        let t0 = Moment::now();
        let fence = Fence::new(SESSION);
        let _ = fence.acked(t0);
        assert!(!fence.may_beat(at(t0, 30, 30)));
        fence.tasks_ended(at(t0, 32, 32));
        assert!(!fence.acked(at(t0, 31, 31)), "sent while the tasks still ran");
        assert_ne!(fence.check_at(at(t0, 33, 33)), Verdict::Joined);
    }
}
