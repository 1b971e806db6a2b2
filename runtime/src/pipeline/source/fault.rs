//! Test-only fault point of source tasks, never a connector or worker key:
//! `SLUICE_SOURCE_FAULT=after-ack@<n>` makes the worker process die at once
//! (abort: no unwinding, no offset store, as `kill -9`) when a source task's
//! n-th poll that produced records was acknowledged by Kafka, before that
//! poll's source offsets are stored. That is the window in which a restart
//! re-polls records already in Kafka: duplicates with
//! `exactly.once.source.support=disabled`, skipped by the read-back when it
//! is enabled. `SLUICE_SOURCE_FAULT_MARK=<file>` makes it fire once across
//! restarts and workers (the file is created, exclusively, just before).
//! Both are read once per process; unset in production.

use std::{path::PathBuf, sync::OnceLock};

/// The variable naming the fault point.
pub const VAR: &str = "SLUICE_SOURCE_FAULT";
/// The variable naming the mark file.
pub const MARK_VAR: &str = "SLUICE_SOURCE_FAULT_MARK";

/// The only point: after the acknowledgement, before the offset store.
const AFTER_ACK: &str = "after-ack";

/// `after-ack@<n>` → n (counted from 1). The error names the variable and
/// what it accepts.
pub fn parse(spec: &str) -> Result<u32, String> {
    let bad = || format!("{VAR}={spec:?}: expected {AFTER_ACK}@<n> with n ≥ 1 (a test-only fault point; unset it)");
    let (point, n) = spec.split_once('@').ok_or_else(bad)?;
    if point.trim() != AFTER_ACK {
        return Err(bad());
    }
    match n.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad()),
    }
}

/// One task's fault point: which acknowledged poll fires it, and how many
/// it has seen.
#[derive(Debug)]
pub struct FaultPoint {
    at: u32,
    seen: u32,
    mark: Option<PathBuf>,
}

impl FaultPoint {
    pub fn new(at: u32, mark: Option<PathBuf>) -> FaultPoint {
        FaultPoint { at, seen: 0, mark }
    }

    /// The task's fault point from the environment (read once per process):
    /// `Ok(None)` when unset, `Err` naming the variable when it is not
    /// `after-ack@<n>`.
    pub fn from_env() -> Result<Option<FaultPoint>, String> {
        static SPEC: OnceLock<(Option<String>, Option<PathBuf>)> = OnceLock::new();
        let (spec, mark) =
            SPEC.get_or_init(|| (std::env::var(VAR).ok(), std::env::var(MARK_VAR).ok().map(PathBuf::from)));
        match spec {
            None => Ok(None),
            Some(spec) => Ok(Some(FaultPoint::new(parse(spec)?, mark.clone()))),
        }
    }

    /// Counts one acknowledged poll that produced `produced` records; true
    /// when it is the one the point fires at. A poll that produced nothing
    /// (all filtered, or all skipped by the read-back) opens no window.
    pub fn count(&mut self, produced: u64) -> bool {
        if produced == 0 {
            return false;
        }
        self.seen = self.seen.saturating_add(1);
        self.seen == self.at
    }

    /// Called once a poll's records were acknowledged, before its offsets
    /// are stored: aborts the process when the point fires (and its mark
    /// file, if any, did not exist yet).
    pub fn after_ack(&mut self, connector: &str, task: i32, produced: u64) {
        if !self.count(produced) {
            return;
        }
        if let Some(mark) = &self.mark {
            // Exclusive creation: of two workers (or a restarted one) only
            // the first to reach the point fires.
            if std::fs::OpenOptions::new().write(true).create_new(true).open(mark).is_err() {
                return;
            }
        }
        tracing::warn!(
            connector,
            task,
            produced,
            point = AFTER_ACK,
            "test fault point {VAR} reached: the worker dies now, before the poll's source offsets are stored"
        );
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_ack_with_a_count_from_one_is_the_only_spec() {
        assert_eq!(parse("after-ack@1"), Ok(1));
        assert_eq!(parse("after-ack@ 12"), Ok(12));
        for bad in ["after-ack", "after-ack@0", "after-ack@-1", "after-ack@x", "before-ack@2", "@2", ""] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(VAR) && err.contains("after-ack@<n>"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn it_fires_at_the_nth_poll_that_produced_records_and_only_then() {
        let mut point = FaultPoint::new(2, None);
        assert!(!point.count(5), "the first poll");
        assert!(!point.count(0), "a poll that produced nothing does not count");
        assert!(point.count(1), "the second poll that produced records");
        assert!(!point.count(3), "never again in this task");
    }
}
