//! The reconciler's decisions, pure over explicit state (ARCHITECTURE.md
//! invariant 9): which tasks should run here, what becomes of a running
//! task, when a failed task restarts, which statuses to forget. `worker.rs`
//! reads the cluster's view and placement, and starts and stops threads,
//! around these.

use std::time::{Duration, Instant};

use crate::cluster::{connector_status_key, ConnectorSpec, RunState, TargetState};

/// The longest wait before a failed task's automatic restart.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);

/// The state a connector's owner publishes for it.
pub fn connector_state(target: TargetState) -> RunState {
    match target {
        TargetState::Started => RunState::Running,
        TargetState::Paused => RunState::Paused,
        TargetState::Stopped => RunState::Stopped,
    }
}

/// Restart requests so far for `task`: those for the whole connector plus its own.
pub fn restart_epoch(spec: &ConnectorSpec, task: i32) -> u64 {
    spec.restarts.get(&None).map_or(0, |r| r.0) + spec.restarts.get(&Some(task)).map_or(0, |r| r.0)
}

/// What a task should run with, besides its class and configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub version: i64,
    pub restart_epoch: u64,
    pub paused: bool,
}

/// The tasks of one connector that should run here (`owns`: placed on this
/// worker), by task id: none while it is stopped.
pub fn wanted(spec: &ConnectorSpec, tasks: usize, owns: impl Fn(i32) -> bool) -> Vec<(i32, Want)> {
    if spec.target == TargetState::Stopped {
        return Vec::new();
    }
    (0..tasks as i32)
        .filter(|id| owns(*id))
        .map(|id| {
            let want = Want {
                version: spec.version,
                restart_epoch: restart_epoch(spec, id),
                paused: spec.target == TargetState::Paused,
            };
            (id, want)
        })
        .collect()
}

/// What becomes of a task running here.
#[derive(Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Its thread ended: join it and look at its result.
    Reap,
    /// Not wanted here any more, or started for another config version or
    /// restart epoch: stop it (a new one starts once it has stopped).
    Stop,
    /// Keep it, paused or not.
    Keep { paused: bool },
}

pub fn sweep(finished: bool, version: i64, restart_epoch: u64, want: Option<Want>) -> Sweep {
    match want {
        _ if finished => Sweep::Reap,
        Some(w) if w.version == version && w.restart_epoch == restart_epoch => Sweep::Keep { paused: w.paused },
        _ => Sweep::Stop,
    }
}

/// A task that failed here: the attempt it was and when it restarts by itself.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub attempts: u32,
    pub retry_at: Option<Instant>,
}

/// Exponential backoff from `backoff` (`None`: no automatic restarts),
/// doubling per attempt up to 64 times it, at most five minutes.
pub fn failure(previous_attempts: Option<u32>, backoff: Option<Duration>, now: Instant) -> Failure {
    let attempts = previous_attempts.unwrap_or(0) + 1;
    let retry_at = backoff.map(|b| now + b.saturating_mul(1 << (attempts - 1).min(6)).min(MAX_RESTART_DELAY));
    Failure { attempts, retry_at }
}

/// The trace a FAILED task status shows.
pub fn failure_trace(trace: &str, failure: &Failure, now: Instant) -> String {
    let attempts = failure.attempts;
    match failure.retry_at {
        Some(at) => format!(
            "{trace}\n(attempt {attempts}; next automatic restart in {} ms)",
            at.saturating_duration_since(now).as_millis()
        ),
        None => format!("{trace}\n(attempt {attempts}; automatic restarts are off)"),
    }
}

/// A task that failed here earlier, as the start decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub version: i64,
    pub restart_epoch: u64,
    pub retry_at: Option<Instant>,
}

/// Whether to start a wanted task that is not running here.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Skip,
    /// Start it; `restart`: it failed before (counted as a restart);
    /// `forget_failure`: its config or epoch changed since, so its attempts
    /// start again from zero.
    Go {
        restart: bool,
        forget_failure: bool,
    },
}

/// `busy`: still running or stopping here, or the worker shuts down.
pub fn start(busy: bool, failed: Option<Failed>, want: Want, now: Instant) -> Start {
    if busy {
        return Start::Skip;
    }
    let Some(f) = failed else { return Start::Go { restart: false, forget_failure: false } };
    let changed = f.version != want.version || f.restart_epoch != want.restart_epoch;
    let due = f.retry_at.is_some_and(|at| now >= at);
    if !changed && !due {
        return Start::Skip;
    }
    Start::Go { restart: true, forget_failure: changed }
}

/// The published statuses that belong to no connector any more (deleted):
/// withdrawn by the worker that published them.
pub fn forgotten<'a>(published: impl IntoIterator<Item = &'a String>, connectors: &[&str]) -> Vec<String> {
    published
        .into_iter()
        .filter(|key| {
            connectors
                .iter()
                .all(|name| **key != connector_status_key(name) && !key.starts_with(&format!("status-task-{name}-")))
        })
        .cloned()
        .collect()
}

/// The incarnation of a task starting now: the wall clock in ms, but above
/// every incarnation of the task the cluster's statuses show (`known`: a
/// former owner's clock may run ahead of this one's) and above the last one
/// this worker issued (two starts in one millisecond).
pub fn incarnation(now_ms: i64, known: Option<u64>, last_issued: u64) -> u64 {
    let now = u64::try_from(now_ms).unwrap_or(0);
    now.max(known.map_or(0, |k| k.saturating_add(1))).max(last_issued.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(target: TargetState, version: i64, restarts: &[(Option<i32>, u64)]) -> ConnectorSpec {
        ConnectorSpec {
            config: BTreeMap::new(),
            target,
            version,
            restarts: restarts.iter().map(|(t, n)| (*t, (*n, false))).collect(),
        }
    }

    fn want(version: i64, restart_epoch: u64, paused: bool) -> Want {
        Want { version, restart_epoch, paused }
    }

    /// Invariant 9: a task is wanted only where it is placed, never while its
    /// connector is stopped, paused with it, and with the restart requests
    /// for the connector and for itself.
    #[test]
    fn wanted_tasks_follow_placement_target_state_and_restart_requests() {
        let restarts = [(None, 2), (Some(1), 3)];
        let table = [
            (TargetState::Started, vec![(0, want(7, 2, false)), (1, want(7, 5, false))]),
            (TargetState::Paused, vec![(0, want(7, 2, true)), (1, want(7, 5, true))]),
            (TargetState::Stopped, vec![]),
        ];
        for (target, expected) in table {
            assert_eq!(wanted(&spec(target, 7, &restarts), 3, |id| id != 2), expected, "{target:?}");
        }
        assert_eq!(wanted(&spec(TargetState::Started, 7, &[]), 3, |_| false), vec![]);
        assert_eq!(
            [TargetState::Started, TargetState::Paused, TargetState::Stopped].map(connector_state),
            [RunState::Running, RunState::Paused, RunState::Stopped]
        );
    }

    /// Invariant 9: a running task is kept only for the config version and
    /// restart epoch it was started with; otherwise it is stopped first.
    #[test]
    fn a_running_task_is_reaped_stopped_or_kept() {
        let table = [
            (true, Some(want(1, 0, false)), Sweep::Reap),
            (true, None, Sweep::Reap),
            (false, None, Sweep::Stop),
            (false, Some(want(2, 0, false)), Sweep::Stop),
            (false, Some(want(1, 1, false)), Sweep::Stop),
            (false, Some(want(1, 0, true)), Sweep::Keep { paused: true }),
            (false, Some(want(1, 0, false)), Sweep::Keep { paused: false }),
        ];
        for (finished, w, expected) in table {
            assert_eq!(sweep(finished, 1, 0, w), expected, "{finished} {w:?}");
        }
    }

    /// Invariant 9: failed tasks restart after an exponential backoff (at
    /// most five minutes), or never when automatic restarts are off.
    #[test]
    fn a_failed_task_backs_off_exponentially() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let table = [
            (None, Some(s(1)), 1, Some(s(1))),
            (Some(1), Some(s(1)), 2, Some(s(2))),
            (Some(3), Some(s(1)), 4, Some(s(8))),
            (Some(20), Some(s(1)), 21, Some(s(64))),
            (Some(20), Some(s(10)), 21, Some(s(300))),
            (Some(2), None, 3, None),
        ];
        for (previous, backoff, attempts, delay) in table {
            let f = failure(previous, backoff, now);
            assert_eq!(f, Failure { attempts, retry_at: delay.map(|d| now + d) }, "{previous:?} {backoff:?}");
        }
        let f = failure(Some(1), Some(s(2)), now);
        assert_eq!(failure_trace("boom", &f, now), "boom\n(attempt 2; next automatic restart in 4000 ms)");
        let off = failure(None, None, now);
        assert_eq!(failure_trace("boom", &off, now), "boom\n(attempt 1; automatic restarts are off)");
    }

    /// Invariant 9: one task per key on a worker (never started while its
    /// previous thread runs or stops); a failed task restarts when due, or
    /// at once with its attempts forgotten when its config or epoch changed.
    #[test]
    fn a_task_starts_unless_busy_or_failed_and_not_yet_due() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(5));
        let earlier = Some(now - Duration::from_millis(1));
        let failed = |version, restart_epoch, retry_at| Some(Failed { version, restart_epoch, retry_at });
        let go = |restart, forget_failure| Start::Go { restart, forget_failure };
        let table = [
            (true, None, Start::Skip),
            (true, failed(1, 0, earlier), Start::Skip),
            (false, None, go(false, false)),
            (false, failed(1, 0, later), Start::Skip),
            (false, failed(1, 0, None), Start::Skip),
            (false, failed(1, 0, earlier), go(true, false)),
            (false, failed(0, 0, later), go(true, true)),
            (false, failed(1, 1, None), go(true, true)),
        ];
        for (busy, f, expected) in table {
            assert_eq!(start(busy, f, want(1, 0, false), now), expected, "{busy} {f:?}");
        }
    }

    /// Invariant 9: statuses of deleted connectors are withdrawn; those of
    /// live ones (whose names may prefix each other) are kept.
    #[test]
    fn statuses_of_deleted_connectors_are_forgotten() {
        let published: Vec<String> = [
            "status-connector-a",
            "status-task-a-0",
            "status-connector-ab",
            "status-task-ab-1",
            "status-connector-gone",
            "status-task-gone-0",
        ]
        .map(String::from)
        .into();
        let table: [(&[&str], &[&str]); 3] = [
            (&["a", "ab"], &["status-connector-gone", "status-task-gone-0"]),
            (&["ab"], &["status-connector-a", "status-task-a-0", "status-connector-gone", "status-task-gone-0"]),
            (&["a", "ab", "gone"], &[]),
        ];
        for (live, expected) in table {
            assert_eq!(forgotten(&published, live), expected, "{live:?}");
        }
    }

    #[test]
    fn a_new_incarnation_is_above_every_one_known_even_from_a_clock_ahead() {
        assert_eq!(incarnation(5_000, None, 0), 5_000);
        // The former owner's clock ran 10 s ahead: still newer than its task.
        assert_eq!(incarnation(5_000, Some(15_000), 0), 15_001);
        // Two starts in one millisecond differ.
        assert_eq!(incarnation(5_000, Some(4_000), 5_000), 5_001);
        // A wall clock before the epoch still gives an increasing number.
        assert_eq!(incarnation(-1, None, 7), 8);
    }
}
