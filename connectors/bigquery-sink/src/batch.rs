//! The BATCH LOADING decisions, as pure functions (the I/O around them is
//! in the task).
//!
//! Rows go to a PENDING write stream per (table, Kafka partition), at
//! explicit offsets as in STREAMING ([`crate::streaming`]); they are
//! invisible until the stream is finalized and committed with
//! BatchCommitWriteStreams, every `commit.interval`. A stream is committed
//! only after the partition's note names it as sealed ([`Sealed`]): the
//! note is fenced, so a task that lost the partition can never commit a
//! stream the new owner does not know about, and the new owner can finish
//! (or find finished) the commit of the one it does know about. The
//! crash-point argument is in the crate README.

use std::time::Duration;

use crate::streaming::{decode_offsets, encode_offsets};

const NOTE: &str = "bqb1";

/// A partition's note in BATCH LOADING: `stream` (PENDING, finalized)
/// holds `rows` rows, those of the records `start..end` that became rows,
/// and is to be committed (or already is). `refused` lists, ascending, the
/// Kafka offsets whose rows BigQuery refused and which may be re-delivered
/// (they go to the DLQ again on a replay, as in STREAMING).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub stream: String,
    pub start: i64,
    pub end: i64,
    pub rows: i64,
    pub refused: Vec<i64>,
}

impl Sealed {
    /// `bqb1 <stream> <start> <end> <rows>`, then ` <refused>` (runs of
    /// deltas, [`encode_offsets`]) when there are any.
    pub fn to_note(&self) -> String {
        let mut note = format!("{NOTE} {} {} {} {}", self.stream, self.start, self.end, self.rows);
        if !self.refused.is_empty() {
            note.push(' ');
            note.push_str(&encode_offsets(&self.refused));
        }
        note
    }

    /// A note of this mode, or None (none, or another mode's: STREAMING's
    /// `bq1`/`bq2` after a change of `ingestion.mode`, someone else's).
    pub fn parse(note: &str) -> Option<Sealed> {
        let mut parts = note.split(' ');
        if parts.next()? != NOTE {
            return None;
        }
        let stream = parts.next()?.to_string();
        let start: i64 = parts.next()?.parse().ok()?;
        let end: i64 = parts.next()?.parse().ok()?;
        let rows: i64 = parts.next()?.parse().ok()?;
        let refused = match parts.next() {
            Some(text) => decode_offsets(text)?,
            None => Vec::new(),
        };
        if parts.next().is_some() || stream.is_empty() || start < 0 || end < start || rows < 0 || rows > end - start {
            return None;
        }
        if refused.last().is_some_and(|&o| o >= end) {
            return None;
        }
        Some(Sealed { stream, start, end, rows, refused })
    }
}

/// What GetWriteStream says about a sealed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// `commit_time` is set: its rows are in the table.
    Committed,
    /// It exists and is not committed (finalized or not).
    Uncommitted,
    /// NOT_FOUND: garbage-collected (BigQuery drops streams after days).
    Gone,
}

/// What the table says about a partition's rows, for a sealed stream that
/// is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableHolds {
    /// No `kafkaDataFieldName`: the table cannot say.
    Unknown,
    /// The largest Kafka offset of the partition in the table, if any.
    Max(Option<i64>),
}

/// How a new owner goes on from the sealed note it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The stream is committed: records below `resume_at` are in the table.
    Resume { resume_at: i64 },
    /// Sealed and not committed: commit it (finalize is idempotent; a
    /// second commit is refused), then resume at `resume_at`.
    CommitThenResume { resume_at: i64 },
    /// The stream is gone and the table cannot say whether it was
    /// committed: resume at `resume_at` (its records are written again, so
    /// rows of a committed stream may be there twice; logged).
    Guess { resume_at: i64 },
}

/// Decides how to go on from `sealed`, given the stream's state, the first
/// record delivered since the assignment (the committed offset) and, for a
/// stream that is gone, what the table holds.
pub fn recover(sealed: &Sealed, state: StreamState, first_offset: i64, table: TableHolds) -> Recovery {
    let end = sealed.end.max(first_offset);
    match state {
        StreamState::Committed => Recovery::Resume { resume_at: end },
        StreamState::Uncommitted => Recovery::CommitThenResume { resume_at: end },
        // Kafka offsets are committed only after the stream was: a
        // committed offset at or past its end says it was.
        StreamState::Gone if first_offset >= sealed.end => Recovery::Resume { resume_at: first_offset },
        StreamState::Gone => match table {
            // A commit is atomic for the stream: one of its rows in the
            // table means all of them are.
            TableHolds::Max(Some(max)) if max >= sealed.start => Recovery::Resume { resume_at: end },
            TableHolds::Max(_) => Recovery::Resume { resume_at: sealed.start.max(first_offset) },
            TableHolds::Unknown => Recovery::Guess { resume_at: sealed.start.max(first_offset) },
        },
    }
}

/// Whether the pending streams are due for their commit: `commit.interval`
/// has passed since the first put after the last commit.
pub fn due(since_first_put: Option<Duration>, interval: Duration) -> bool {
    since_first_put.is_some_and(|elapsed| elapsed >= interval)
}

/// What to do with a pending stream at the interval's end, from what
/// FinalizeWriteStream answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtInterval {
    /// No row was appended: nothing to commit; the records are handled
    /// (failed, filtered or skipped) and can be reported durable.
    NothingToCommit,
    /// The stream holds exactly the rows appended: seal and commit it.
    Seal,
    /// The stream holds other rows than the task appended (an append that
    /// timed out and landed later; another writer): it is abandoned, never
    /// committed, and the partition re-read from the stream's start into a
    /// new stream.
    Abandon { why: String },
}

/// Decides what a finalized stream's `row_count` means, given the rows the
/// task counted as appended.
pub fn at_interval(appended: i64, finalized_rows: Option<i64>) -> AtInterval {
    match finalized_rows {
        _ if appended == 0 => AtInterval::NothingToCommit,
        Some(n) if n == appended => AtInterval::Seal,
        Some(n) => AtInterval::Abandon {
            why: format!("the finalized stream holds {n} rows where the sink appended {appended}"),
        },
        None => AtInterval::Abandon { why: "FinalizeWriteStream did not answer".into() },
    }
}

/// The commit interval in force: `commit.interval`, unless the test-only
/// `SLUICE_BQ_TEST_COMMIT_INTERVAL_MS` (read only when set; never a user
/// setting: V2's range starts at 60 s) says a shorter one, so the test
/// suite does not wait a minute per commit.
pub fn commit_interval(configured: Duration, test_override: Option<&str>) -> Duration {
    test_override.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_millis).unwrap_or(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Sealed {
        Sealed {
            stream: "projects/p/datasets/d/tables/t/streams/abc".into(),
            start: 100,
            end: 150,
            rows: 40,
            refused: vec![],
        }
    }

    #[test]
    fn notes_round_trip_and_other_modes_notes_are_not_read() {
        let s = sealed();
        assert_eq!(s.to_note(), "bqb1 projects/p/datasets/d/tables/t/streams/abc 100 150 40");
        assert_eq!(Sealed::parse(&s.to_note()), Some(s.clone()));
        let r = Sealed { refused: vec![3, 120, 121], ..s.clone() };
        assert_eq!(r.to_note(), "bqb1 projects/p/datasets/d/tables/t/streams/abc 100 150 40 3,117+1");
        assert_eq!(Sealed::parse(&r.to_note()), Some(r));
        for other in [
            "",
            "bq1 s 10 5",
            "bq2 s 10 5 3",
            "bqb1 s 10 5 0",
            "bqb1 s 10 20 11",
            "bqb1 s -1 20 1",
            "bqb1 s 10 20 5 20",
            "bqb1 s 10 20 5 x",
            "bqb1 s 10 20 5 3 4",
            "bqb1  10 20 5",
        ] {
            assert_eq!(Sealed::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_new_owner_finishes_or_skips_the_sealed_stream() {
        let s = sealed();
        use Recovery::*;
        // Killed after the commit, before the offset commit (re-delivered
        // from 100): skip to 150.
        assert_eq!(recover(&s, StreamState::Committed, 100, TableHolds::Unknown), Resume { resume_at: 150 });
        // Killed after the note, before BatchCommit: commit it, then skip.
        assert_eq!(
            recover(&s, StreamState::Uncommitted, 100, TableHolds::Unknown),
            CommitThenResume { resume_at: 150 }
        );
        // After the offset commit.
        assert_eq!(recover(&s, StreamState::Committed, 150, TableHolds::Unknown), Resume { resume_at: 150 });
        // Gone, after the offset commit: it was committed.
        assert_eq!(recover(&s, StreamState::Gone, 150, TableHolds::Unknown), Resume { resume_at: 150 });
        // Gone before the offset commit: the table says.
        assert_eq!(recover(&s, StreamState::Gone, 100, TableHolds::Max(Some(140))), Resume { resume_at: 150 });
        assert_eq!(recover(&s, StreamState::Gone, 100, TableHolds::Max(Some(99))), Resume { resume_at: 100 });
        assert_eq!(recover(&s, StreamState::Gone, 100, TableHolds::Max(None)), Resume { resume_at: 100 });
        assert_eq!(recover(&s, StreamState::Gone, 100, TableHolds::Unknown), Guess { resume_at: 100 });
    }

    #[test]
    fn streams_are_committed_once_the_interval_has_passed() {
        let minute = Duration::from_secs(60);
        assert!(!due(None, minute), "nothing put since the last commit");
        assert!(!due(Some(Duration::from_secs(59)), minute));
        assert!(due(Some(minute), minute));
        assert_eq!(commit_interval(minute, None), minute);
        assert_eq!(commit_interval(minute, Some("500")), Duration::from_millis(500));
        assert_eq!(commit_interval(minute, Some("soon")), minute, "an unreadable override is ignored");
    }

    #[test]
    fn a_stream_is_sealed_only_when_it_holds_what_was_appended() {
        assert_eq!(at_interval(0, None), AtInterval::NothingToCommit);
        assert_eq!(at_interval(10, Some(10)), AtInterval::Seal);
        assert!(matches!(at_interval(10, Some(12)), AtInterval::Abandon { why } if why.contains("12 rows")));
        assert!(matches!(at_interval(10, None), AtInterval::Abandon { .. }));
    }
}
