//! The sink task's decisions, pure over explicit state: what becomes of each
//! record of a batch, what a `put` result means, which pending records
//! survive a retry wait, and the poll loop's per-iteration choices
//! (ARCHITECTURE.md invariants 1, 2, 6, 7). `deliver.rs` and `mod.rs` do the
//! I/O around these.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use connector_api::{ConnectorError, ErrorKind, PutOutcome};

use crate::{converter::Part, pipeline::budget::Budget};

/// What the watermark is told about one consumed record (invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Handed to the sink: unsettled until `pre_commit` reports it durable.
    Hand,
    /// Dropped by a transform: settled at once.
    Skip,
    /// Failed in a converter or transform at this stage: unsettled until routed.
    Fail(&'static str),
}

impl Intake {
    /// `Ok(Some)`: a record for the sink; `Ok(None)`: a transform dropped it.
    pub fn of<T, E>(outcome: &Result<Option<T>, (E, &'static str)>) -> Intake {
        match outcome {
            Ok(Some(_)) => Intake::Hand,
            Ok(None) => Intake::Skip,
            Err((_, stage)) => Intake::Fail(stage),
        }
    }
}

/// What one batch's intake leads to.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchIntake {
    /// Indices handed to the sink, in offset order: the first `put`.
    pub pending: Vec<usize>,
    pub filtered: u64,
    /// Failed indices per stage, routed in this order: key converter, value
    /// converter, transformation (stages are routed as failed puts are).
    pub failed_by_stage: Vec<(&'static str, Vec<usize>)>,
}

pub fn batch_intake(intake: &[Intake]) -> BatchIntake {
    let pending = (0..intake.len()).filter(|&i| intake[i] == Intake::Hand).collect();
    let filtered = intake.iter().filter(|i| **i == Intake::Skip).count() as u64;
    let failed_by_stage = [Part::Key.stage(), Part::Value.stage(), "TRANSFORMATION"]
        .into_iter()
        .map(|stage| (stage, (0..intake.len()).filter(|&i| intake[i] == Intake::Fail(stage)).collect::<Vec<_>>()))
        .filter(|(_, of_stage)| !of_stage.is_empty())
        .collect();
    BatchIntake { pending, filtered, failed_by_stage }
}

/// What a `put` result means for the batch.
#[derive(Debug)]
pub enum PutVerdict {
    /// `Fatal` or `Config`: the task fails.
    FailTask(ConnectorError),
    /// A whole-batch `Retriable` error: the same batch again after a wait (invariant 7).
    RetryBatch(ConnectorError),
    /// Taken, but for these (index into the batch, error); a whole-batch
    /// `BadRecord` or `Rejected` error fails every pending record.
    Failures(Vec<(usize, ConnectorError)>),
}

pub fn put_verdict(result: Result<PutOutcome, ConnectorError>, pending: &[usize]) -> PutVerdict {
    match result {
        Ok(outcome) => PutVerdict::Failures(
            outcome
                .failures()
                .iter()
                .filter_map(|f| pending.get(f.index as usize).map(|&i| (i, f.error.clone())))
                .collect(),
        ),
        Err(e) if e.kind() == ErrorKind::Fatal || e.kind() == ErrorKind::Config => PutVerdict::FailTask(e),
        Err(e) if e.kind() == ErrorKind::Retriable => PutVerdict::RetryBatch(e),
        Err(e) => PutVerdict::Failures(pending.iter().map(|&i| (i, e.clone())).collect()),
    }
}

/// A pending record's change of standing after a `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Failed for the first time: unsettled until routed or retaken.
    Failed,
    /// Failed before, taken by this retry: back in the sink's hands.
    Retaken,
}

/// What becomes of the records of one `put` that was not refused whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Records the sink took.
    pub written: u64,
    /// Changes of standing, in pending (offset) order.
    pub changes: Vec<(usize, Standing)>,
    /// Routed now (DLQ, rejected topic, dropped, or the task fails).
    pub give_up: Vec<(usize, ConnectorError)>,
    /// Put again after a wait.
    pub retry: Vec<(usize, ConnectorError)>,
}

/// Per-record failures: a `Retriable` one is retried while `retry_allowed`
/// (`errors.retry.timeout`), every other is routed per `errors.tolerance`.
/// `awaiting_retry` holds the records that failed and were not retaken yet.
pub fn settle(
    pending: &[usize],
    failures: Vec<(usize, ConnectorError)>,
    awaiting_retry: &mut BTreeSet<usize>,
    retry_allowed: bool,
) -> Settlement {
    let written = pending.len().saturating_sub(failures.len()) as u64;
    let failed: BTreeSet<usize> = failures.iter().map(|(i, _)| *i).collect();
    let mut changes = Vec::new();
    for &i in pending {
        if failed.contains(&i) {
            if awaiting_retry.insert(i) {
                changes.push((i, Standing::Failed));
            }
        } else if awaiting_retry.remove(&i) {
            changes.push((i, Standing::Retaken));
        }
    }
    let (retry, give_up) = failures.into_iter().partition(|(_, e)| e.kind() == ErrorKind::Retriable && retry_allowed);
    Settlement { written, changes, give_up, retry }
}

/// `errors.retry.timeout`: negative retries for ever, else while less has passed.
pub fn retry_allowed(retry_timeout_ms: i64, elapsed: Duration) -> bool {
    retry_timeout_ms < 0 || elapsed < Duration::from_millis(retry_timeout_ms as u64)
}

/// Whether the task still owns the partition (the partition number first,
/// the topic name only when it matches: this runs per record).
pub fn is_assigned(assigned: &BTreeSet<(String, i32)>, topic: &str, partition: i32) -> bool {
    assigned.iter().any(|(t, p)| *p == partition && t == topic)
}

/// The pending records that survive a retry wait: those of partitions still
/// assigned and not revoked during the wait (`before[k]`: the revocation
/// count of `pending[k]`'s partition when the wait began). A partition
/// revoked and assigned again is re-read from its committed offset, so its
/// stale records are dropped too: put first, they would let the watermark
/// pass the re-read ones (invariants 1, 2, 7).
pub fn survivors<'a>(
    pending: &[usize],
    partition_of: impl Fn(usize) -> (&'a str, i32),
    before: &[u64],
    revocations: &BTreeMap<(String, i32), u64>,
    assigned: &BTreeSet<(String, i32)>,
) -> Vec<usize> {
    pending
        .iter()
        .zip(before)
        .filter(|(&i, &seen)| {
            let (topic, partition) = partition_of(i);
            is_assigned(assigned, topic, partition)
                && revocations.get(&(topic.to_string(), partition)).copied().unwrap_or(0) == seen
        })
        .map(|(&i, _)| i)
        .collect()
}

/// Records a retry wait stashed, with their partition's revocation count
/// then: kept in order only when the count has not moved since (a revoked
/// partition is re-read from the committed offset; invariants 2, 7).
pub fn unstash<T>(stash: Vec<(u64, T)>, revocations_now: impl Fn(&T) -> u64) -> Vec<T> {
    stash.into_iter().filter(|(seen, m)| revocations_now(m) == *seen).map(|(_, m)| m).collect()
}

/// The poll loop's pause decision for one iteration.
#[derive(Debug, PartialEq, Eq)]
pub struct Pause {
    /// Every partition paused: the connector is paused or the budget spent.
    pub all: bool,
    /// The byte budget is spent (invariant 6): commit to free room.
    pub over_budget: bool,
    /// Apply the pause plan to the consumer now.
    pub apply: bool,
}

/// `paused`: what was applied last; `retry_paused`: a retry wait paused
/// every partition meanwhile; `plugin_changed`: the plugin paused or
/// resumed partitions (cleared when it is what made the plan apply).
pub fn pause(
    connector_paused: bool,
    budget: &Budget,
    paused: bool,
    retry_paused: bool,
    plugin_changed: &mut bool,
) -> Pause {
    let over_budget = *budget == Budget::Hold;
    let all = connector_paused || over_budget;
    let apply = all != paused || retry_paused || std::mem::take(plugin_changed);
    Pause { all, over_budget, apply }
}

/// Whether to commit now: every `offset.flush.interval.ms` (invariant 1),
/// at every iteration over the budget (invariant 6), or when the plugin
/// asked (`requested`, cleared when it is what made the commit due).
pub fn commit_due(since_commit: Duration, flush_every: Duration, over_budget: bool, requested: &mut bool) -> bool {
    since_commit >= flush_every || over_budget || std::mem::take(requested)
}

/// Each partition's first offset in a batch, in the order partitions first
/// appear: what stands for its committed position until it has one.
pub fn first_offsets<'a>(records: impl IntoIterator<Item = (&'a str, i32, i64)>) -> Vec<(&'a str, i32, i64)> {
    let mut seen: BTreeSet<(i32, &str)> = BTreeSet::new();
    let mut out = Vec::new();
    for (t, p, o) in records {
        if seen.insert((p, t)) {
            out.push((t, p, o));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind) -> ConnectorError {
        match kind {
            ErrorKind::Retriable => ConnectorError::retriable("down"),
            ErrorKind::BadRecord => ConnectorError::bad_record("bad"),
            ErrorKind::Rejected => ConnectorError::rejected("no"),
            ErrorKind::Fatal => ConnectorError::fatal("boom"),
            ErrorKind::Config => ConnectorError::config("wrong"),
        }
    }

    fn kinds(v: &[(usize, ConnectorError)]) -> Vec<(usize, ErrorKind)> {
        v.iter().map(|(i, e)| (*i, e.kind())).collect()
    }

    /// Invariant 1: a handed record waits for the sink, a filtered one is
    /// settled at once, a converter or transform failure is routed (key,
    /// value, then transformation) before the batch is put.
    #[test]
    fn each_record_of_a_batch_is_handed_skipped_or_failed_by_stage() {
        type Outcome = Result<Option<()>, ((), &'static str)>;
        let (hand, skip): (Outcome, Outcome) = (Ok(Some(())), Ok(None));
        let fail = |stage| -> Outcome { Err(((), stage)) };
        let table: [(Vec<Outcome>, BatchIntake); 4] = [
            (vec![], BatchIntake { pending: vec![], filtered: 0, failed_by_stage: vec![] }),
            (vec![hand, skip, hand], BatchIntake { pending: vec![0, 2], filtered: 1, failed_by_stage: vec![] }),
            (
                vec![fail("TRANSFORMATION"), hand, fail("VALUE_CONVERTER"), fail("KEY_CONVERTER")],
                BatchIntake {
                    pending: vec![1],
                    filtered: 0,
                    failed_by_stage: vec![
                        ("KEY_CONVERTER", vec![3]),
                        ("VALUE_CONVERTER", vec![2]),
                        ("TRANSFORMATION", vec![0]),
                    ],
                },
            ),
            (
                vec![skip, fail("VALUE_CONVERTER"), skip, fail("VALUE_CONVERTER")],
                BatchIntake { pending: vec![], filtered: 2, failed_by_stage: vec![("VALUE_CONVERTER", vec![1, 3])] },
            ),
        ];
        for (outcomes, expected) in table {
            let intake: Vec<Intake> = outcomes.iter().map(Intake::of).collect();
            assert_eq!(batch_intake(&intake), expected, "{outcomes:?}");
        }
    }

    /// Invariant 7: a whole-batch retriable error re-delivers the same batch;
    /// Fatal and Config fail the task; a whole-batch bad record or rejection
    /// fails each pending record; per-record failures map to batch indices.
    #[test]
    fn a_put_result_retries_the_batch_fails_the_task_or_names_failed_records() {
        let pending = [2, 5, 7];
        let mut outcome = PutOutcome::accepted();
        outcome.fail(1, err(ErrorKind::BadRecord));
        outcome.fail(9, err(ErrorKind::Retriable)); // out of range: ignored
        type Case = (Result<PutOutcome, ConnectorError>, &'static str, Vec<(usize, ErrorKind)>);
        let table: [Case; 7] = [
            (Ok(PutOutcome::accepted()), "failures", vec![]),
            (Ok(outcome), "failures", vec![(5, ErrorKind::BadRecord)]),
            (Err(err(ErrorKind::Retriable)), "retry batch", vec![]),
            (Err(err(ErrorKind::Fatal)), "fail task", vec![]),
            (Err(err(ErrorKind::Config)), "fail task", vec![]),
            (
                Err(err(ErrorKind::BadRecord)),
                "failures",
                vec![(2, ErrorKind::BadRecord), (5, ErrorKind::BadRecord), (7, ErrorKind::BadRecord)],
            ),
            (
                Err(err(ErrorKind::Rejected)),
                "failures",
                vec![(2, ErrorKind::Rejected), (5, ErrorKind::Rejected), (7, ErrorKind::Rejected)],
            ),
        ];
        for (result, what, failures) in table {
            let shown = format!("{:?}", result.as_ref().map_err(|e| e.kind()));
            let got = match put_verdict(result, &pending) {
                PutVerdict::FailTask(_) => ("fail task", vec![]),
                PutVerdict::RetryBatch(e) => {
                    assert_eq!(e.kind(), ErrorKind::Retriable);
                    ("retry batch", vec![])
                }
                PutVerdict::Failures(f) => ("failures", kinds(&f)),
            };
            assert_eq!(got, (what, failures), "{shown}");
        }
    }

    /// Invariants 1 and 7: a failed record is unsettled until routed or
    /// retaken; a retriable per-record failure is retried only within
    /// errors.retry.timeout, every other failure is routed at once.
    #[test]
    fn per_record_failures_are_retried_within_the_timeout_or_routed() {
        use ErrorKind::*;
        use Standing::*;
        type Case = (&'static [usize], &'static [(usize, ErrorKind)], &'static [usize], bool);
        type Want = (u64, Vec<(usize, Standing)>, Vec<(usize, ErrorKind)>, Vec<(usize, ErrorKind)>, Vec<usize>);
        // (pending, failures, awaiting before, retry allowed) →
        // (written, changes, give up, retry, awaiting after)
        let table: [(Case, Want); 5] = [
            ((&[0, 1, 2], &[], &[], true), (3, vec![], vec![], vec![], vec![])),
            (
                (&[0, 1, 2], &[(1, Retriable), (2, BadRecord)], &[], true),
                (1, vec![(1, Failed), (2, Failed)], vec![(2, BadRecord)], vec![(1, Retriable)], vec![1, 2]),
            ),
            // The retry takes 1 and 3 fails again: 1 is retaken, 3 stays failed once.
            (
                (&[1, 3], &[(3, Retriable)], &[1, 3], true),
                (1, vec![(1, Retaken)], vec![], vec![(3, Retriable)], vec![3]),
            ),
            // The timeout passed: a retriable failure is routed.
            ((&[3], &[(3, Retriable)], &[3], false), (0, vec![], vec![(3, Retriable)], vec![], vec![3])),
            ((&[4], &[(4, Rejected)], &[], true), (0, vec![(4, Failed)], vec![(4, Rejected)], vec![], vec![4])),
        ];
        for ((pending, failures, before, allowed), (written, changes, give_up, retry, after)) in table {
            let mut awaiting: BTreeSet<usize> = before.iter().copied().collect();
            let failures = failures.iter().map(|(i, k)| (*i, err(*k))).collect();
            let s = settle(pending, failures, &mut awaiting, allowed);
            assert_eq!(
                (s.written, s.changes, kinds(&s.give_up), kinds(&s.retry)),
                (written, changes, give_up, retry),
                "{pending:?}"
            );
            assert_eq!(awaiting.into_iter().collect::<Vec<_>>(), after, "{pending:?}");
        }
    }

    /// Invariant 7: errors.retry.timeout=-1 retries for ever, 0 never.
    #[test]
    fn retries_are_allowed_until_errors_retry_timeout() {
        let ms = Duration::from_millis;
        for (timeout, elapsed, allowed) in
            [(-1, ms(u64::MAX / 2), true), (0, ms(0), false), (1000, ms(999), true), (1000, ms(1000), false)]
        {
            assert_eq!(retry_allowed(timeout, elapsed), allowed, "{timeout} {elapsed:?}");
        }
    }

    /// Invariants 1, 2 and 7: a revoke during a retry wait drops the revoked
    /// partition's pending records, also when the partition is assigned
    /// again (it is re-read from the committed offset), so the watermark
    /// never passes a re-read record.
    #[test]
    fn a_revoke_during_a_retry_wait_drops_the_revoked_partitions_records() {
        let batch = [("a", 0), ("a", 1), ("b", 0), ("a", 0), ("b", 1)];
        let set =
            |v: &[(&str, i32)]| -> BTreeSet<(String, i32)> { v.iter().map(|(t, p)| (t.to_string(), *p)).collect() };
        let counts = |v: &[(&str, i32, u64)]| -> BTreeMap<(String, i32), u64> {
            v.iter().map(|(t, p, n)| ((t.to_string(), *p), *n)).collect()
        };
        let all = set(&[("a", 0), ("a", 1), ("b", 0), ("b", 1)]);
        // (pending, counts before the wait, counts after, assigned after) → survivors
        type Case =
            (&'static [usize], &'static [u64], BTreeMap<(String, i32), u64>, BTreeSet<(String, i32)>, Vec<usize>);
        let table: [Case; 6] = [
            (&[0, 1, 2, 3, 4], &[0, 0, 0, 0, 0], counts(&[]), all.clone(), vec![0, 1, 2, 3, 4]),
            // a/0 and b/0 revoked and gone.
            (
                &[0, 1, 2, 3, 4],
                &[0, 0, 0, 0, 0],
                counts(&[("a", 0, 1), ("b", 0, 1)]),
                set(&[("a", 1), ("b", 1)]),
                vec![1, 4],
            ),
            // a/0 revoked and assigned again during the wait: its records are stale.
            (&[0, 1, 3], &[0, 0, 0], counts(&[("a", 0, 1)]), all.clone(), vec![1]),
            // Revoked before this batch (count 2 then), not during the wait.
            (&[0, 3], &[2, 2], counts(&[("a", 0, 2)]), all.clone(), vec![0, 3]),
            (&[0, 3], &[0, 0], counts(&[]), set(&[("a", 1), ("b", 0)]), vec![]),
            // Same partition number, other topic: not assigned.
            (&[2], &[0], counts(&[]), set(&[("a", 0)]), vec![]),
        ];
        for (pending, before, after, assigned, expected) in table {
            assert_eq!(survivors(pending, |i| batch[i], before, &after, &assigned), expected, "{pending:?} {after:?}");
        }
    }

    /// Invariants 2 and 7: a record stashed during a retry wait is handed
    /// only if its partition was not revoked since; order is kept.
    #[test]
    fn stashed_records_of_a_partition_revoked_since_are_dropped() {
        let revocations: BTreeMap<(&str, i32), u64> = [(("a", 0), 1), (("b", 0), 0)].into();
        let now = |m: &(&str, i32, i64)| revocations.get(&(m.0, m.1)).copied().unwrap_or(0);
        type Record = (&'static str, i32, i64);
        type Stash = Vec<(u64, Record)>;
        let table: [(Stash, Vec<Record>); 3] = [
            (vec![], vec![]),
            (
                vec![(0, ("a", 0, 5)), (0, ("b", 0, 1)), (1, ("a", 0, 2)), (0, ("c", 3, 9))],
                vec![("b", 0, 1), ("a", 0, 2), ("c", 3, 9)],
            ),
            (vec![(0, ("a", 0, 5)), (0, ("a", 0, 6))], vec![]),
        ];
        for (stash, expected) in table {
            assert_eq!(unstash(stash.clone(), now), expected, "{stash:?}");
        }
    }

    /// Invariants 6 and 7: the pause plan is applied when the wanted pause
    /// changes, after a retry wait paused everything, or when the plugin
    /// paused or resumed; the budget pauses and makes the loop commit, a
    /// waived budget does neither.
    #[test]
    fn the_poll_loop_pauses_for_the_connector_the_budget_a_retry_wait_or_the_plugin() {
        use Budget::*;
        // (connector paused, budget, applied before, retry paused, plugin changed) → (all, over, apply, plugin changed after)
        let table = [
            ((false, Free, false, false, false), (false, false, false, false)),
            ((true, Free, false, false, false), (true, false, true, false)),
            ((true, Free, true, false, false), (true, false, false, false)),
            ((false, Hold, false, false, false), (true, true, true, false)),
            ((false, JustWaived, true, false, false), (false, false, true, false)),
            ((false, Free, false, true, false), (false, false, true, false)),
            ((false, Free, false, false, true), (false, false, true, false)),
            // The plan applies for the pause change; the plugin's change is still due.
            ((true, Free, false, false, true), (true, false, true, true)),
        ];
        for ((connector, budget, before, retry, plugin), (all, over, apply, after)) in table {
            let mut changed = plugin;
            let got = pause(connector, &budget, before, retry, &mut changed);
            assert_eq!((got, changed), (Pause { all, over_budget: over, apply }, after), "{budget:?}");
        }
    }

    /// Invariants 1 and 6: commits run every offset.flush.interval.ms, at
    /// every iteration over the budget, and when the plugin asked.
    #[test]
    fn a_commit_is_due_on_the_interval_over_the_budget_or_on_request() {
        let ms = Duration::from_millis;
        // (since commit, over budget, requested) → (due, requested after)
        let table = [
            ((ms(10), false, false), (false, false)),
            ((ms(1000), false, false), (true, false)),
            ((ms(10), true, false), (true, false)),
            ((ms(10), false, true), (true, false)),
            ((ms(1000), false, true), (true, true)),
        ];
        for ((since, over, requested), (due, after)) in table {
            let mut r = requested;
            assert_eq!((commit_due(since, ms(1000), over, &mut r), r), (due, after), "{since:?} {over} {requested}");
        }
    }

    /// Invariant 2: a partition's note is committed with its first offset in
    /// the batch until it has a committed position.
    #[test]
    fn first_offsets_are_per_partition_in_order_of_appearance() {
        let batch = [("a", 0, 5), ("a", 1, 3), ("a", 0, 6), ("b", 0, 9), ("b", 0, 10), ("a", 1, 4)];
        assert_eq!(first_offsets(batch), vec![("a", 0, 5), ("a", 1, 3), ("b", 0, 9)]);
        assert!(first_offsets([]).is_empty());
    }
}
