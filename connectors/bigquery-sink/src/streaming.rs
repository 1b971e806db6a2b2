//! The exactly-once STREAMING decisions, as pure functions and a small
//! append procedure over any [`Append`] (the emulator-backed
//! [`StreamWriter`] in the task, an in-memory stream that answers as the
//! API documents in the unit tests).
//!
//! One COMMITTED write stream per (table, Kafka partition). Row `r` of the
//! stream is the `r`-th record of the partition, counted from the stream's
//! first record, that became a row: records that go to the DLQ or never
//! reach the sink (filtered) take no row. Which records become rows is a
//! function of the records and the table schema alone, so whoever appends
//! the partition's records from a [`Checkpoint`] on appends the same rows
//! at the same stream offsets. The crash-point argument built on this is in
//! the crate README.

use std::{future::Future, pin::Pin};

use crate::storage::{AppendOutcome, StorageError};

/// What the sink's durable note says about a partition: every record
/// below `kafka_offset` is handled (in the table, or failed and handed to
/// the worker), and rows below `row` of `stream` are in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream: String,
    pub kafka_offset: i64,
    pub row: i64,
}

const NOTE_PREFIX: &str = "bq1";

impl Checkpoint {
    /// `bq1 <stream> <kafka offset> <row>`: small (Kafka limits commit
    /// metadata to 4 KiB; a stream name is about 150 bytes).
    pub fn to_note(&self) -> String {
        format!("{NOTE_PREFIX} {} {} {}", self.stream, self.kafka_offset, self.row)
    }

    /// A note this sink wrote, or None (no note, or someone else's).
    pub fn parse(note: &str) -> Option<Checkpoint> {
        let mut parts = note.split(' ');
        if parts.next()? != NOTE_PREFIX {
            return None;
        }
        let stream = parts.next()?.to_string();
        let kafka_offset = parts.next()?.parse().ok()?;
        let row = parts.next()?.parse().ok()?;
        if parts.next().is_some() || stream.is_empty() || kafka_offset < 0 || row < 0 {
            return None;
        }
        Some(Checkpoint { stream, kafka_offset, row })
    }
}

/// Where a partition's next record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub stream: String,
    /// Records below this offset are handled already.
    pub next_kafka: i64,
    /// The stream offset the next row takes.
    pub next_row: i64,
}

impl Position {
    pub fn from_checkpoint(c: &Checkpoint) -> Position {
        Position { stream: c.stream.clone(), next_kafka: c.kafka_offset, next_row: c.row }
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { stream: self.stream.clone(), kafka_offset: self.next_kafka, row: self.next_row }
    }

    /// A record re-delivered from below the checkpoint is in the table
    /// already (re-delivery after a crash between the note and the offset
    /// commit): it is not appended again.
    pub fn already_written(&self, offset: i64) -> bool {
        offset < self.next_kafka
    }
}

/// Where a stream that was garbage-collected is resumed: after what the
/// table holds for the partition (the largest offset in the Kafka metadata
/// column, when there is one), and never before the checkpoint.
pub fn resume_after_lost_stream(checkpoint: &Checkpoint, max_offset_in_table: Option<i64>) -> i64 {
    match max_offset_in_table {
        Some(m) => checkpoint.kafka_offset.max(m + 1),
        None => checkpoint.kafka_offset,
    }
}

/// Splits rows into requests of at most `max_bytes` of rows each (a row
/// larger than that goes alone; BigQuery refuses it, as a row error).
pub fn cut_by_bytes(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, size) in sizes.iter().enumerate() {
        if i > start && bytes + size > max_bytes {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Appends rows at an explicit offset.
pub trait Append {
    fn append(&mut self, offset: i64, rows: Vec<Vec<u8>>) -> impl Future<Output = AppendOutcome> + Send;
}

/// Why rows could not all be put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFailure {
    /// These rows (index in the slice) are bad; nothing of the slice was
    /// appended by the request that said so.
    RowErrors(Vec<(usize, String)>),
    /// The stream ends before `offset`: rows counted as written are not
    /// there.
    Gap(String),
    Storage(StorageError),
}

/// Makes rows `start..start + rows.len()` of the stream hold `rows`, each
/// once. A request whose first offset is taken answers ALREADY_EXISTS and
/// appends nothing, even when only its first rows are there (a takeover
/// that re-appends a former owner's rows): the boundary is found by
/// appending the second half alone, whose answer says on which side of it
/// the stream ends (appended: exactly there; ALREADY_EXISTS: inside or
/// past the second half, resolved the same way; OUT_OF_RANGE: inside the
/// first half, which is put, then the second). O(log n) requests, and only
/// when an overlap happens.
pub fn put_rows<'a, A: Append + Send>(
    appender: &'a mut A,
    start: i64,
    rows: &'a [Vec<u8>],
) -> Pin<Box<dyn Future<Output = Result<(), PutFailure>> + Send + 'a>> {
    Box::pin(async move {
        if rows.is_empty() {
            return Ok(());
        }
        match appender.append(start, rows.to_vec()).await {
            AppendOutcome::Appended { .. } => Ok(()),
            AppendOutcome::AlreadyExists(_) if rows.len() == 1 => Ok(()),
            AppendOutcome::AlreadyExists(_) => {
                let mid = rows.len() / 2;
                let at = start + mid as i64;
                match appender.append(at, rows[mid..].to_vec()).await {
                    AppendOutcome::Appended { .. } => Ok(()),
                    AppendOutcome::AlreadyExists(_) => put_rows(appender, at, &rows[mid..]).await,
                    AppendOutcome::OutOfRange(_) => {
                        put_rows(appender, start, &rows[..mid]).await?;
                        put_rows(appender, at, &rows[mid..]).await
                    }
                    AppendOutcome::RowErrors(errors) => {
                        Err(PutFailure::RowErrors(errors.into_iter().map(|(i, m)| (i + mid, m)).collect()))
                    }
                    AppendOutcome::Failed(e) => Err(PutFailure::Storage(e)),
                }
            }
            AppendOutcome::OutOfRange(m) => Err(PutFailure::Gap(m)),
            AppendOutcome::RowErrors(errors) => Err(PutFailure::RowErrors(errors)),
            AppendOutcome::Failed(e) => Err(PutFailure::Storage(e)),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A COMMITTED stream as the API documents it: an append at the end
    /// lands, at a taken offset answers ALREADY_EXISTS, past the end
    /// OUT_OF_RANGE; rows holding `b"bad"` are row errors (nothing lands).
    #[derive(Default)]
    pub struct MemStream {
        pub rows: Vec<Vec<u8>>,
        pub requests: usize,
    }

    impl Append for MemStream {
        fn append(&mut self, offset: i64, rows: Vec<Vec<u8>>) -> impl Future<Output = AppendOutcome> + Send {
            self.requests += 1;
            let end = self.rows.len() as i64;
            let outcome = if offset < end {
                AppendOutcome::AlreadyExists(format!("Offset {offset} already committed; next expected {end}"))
            } else if offset > end {
                AppendOutcome::OutOfRange(format!("Offset {offset} beyond {end}"))
            } else {
                let bad: Vec<(usize, String)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.as_slice() == b"bad")
                    .map(|(i, _)| (i, "invalid".into()))
                    .collect();
                if bad.is_empty() {
                    self.rows.extend(rows);
                    AppendOutcome::Appended { offset: Some(offset) }
                } else {
                    AppendOutcome::RowErrors(bad)
                }
            };
            std::future::ready(outcome)
        }
    }

    fn rows(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        range.map(|i| vec![i]).collect()
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        connector_kit::runtime::current_thread("t").unwrap().block_on(f)
    }

    #[test]
    fn notes_round_trip_and_foreign_notes_are_ignored() {
        let c = Checkpoint { stream: "projects/p/datasets/d/tables/t/streams/abc".into(), kafka_offset: 42, row: 40 };
        assert_eq!(Checkpoint::parse(&c.to_note()), Some(c.clone()));
        for other in ["", "stream-a@10", "bq1 s x 1", "bq1 s 1", "bq1 s 1 2 3", "bq1 s -1 0"] {
            assert_eq!(Checkpoint::parse(other), None, "{other:?}");
        }
        let p = Position::from_checkpoint(&c);
        assert!(p.already_written(41) && !p.already_written(42));
        assert_eq!(p.checkpoint(), c);
    }

    #[test]
    fn a_lost_stream_resumes_after_what_the_table_holds() {
        let c = Checkpoint { stream: "s".into(), kafka_offset: 100, row: 90 };
        assert_eq!(resume_after_lost_stream(&c, Some(130)), 131);
        assert_eq!(resume_after_lost_stream(&c, Some(50)), 100, "never before the checkpoint");
        assert_eq!(resume_after_lost_stream(&c, None), 100);
    }

    #[test]
    fn requests_are_cut_by_bytes() {
        assert_eq!(cut_by_bytes(&[4, 4, 4, 4, 4], 8), [0..2, 2..4, 4..5]);
        assert_eq!(cut_by_bytes(&[20, 1, 1], 8), [0..1, 1..3]);
        assert!(cut_by_bytes(&[], 8).is_empty());
    }

    #[test]
    fn rows_land_once_whatever_part_of_them_is_there_already() {
        for already in 0..=10u8 {
            let mut s = MemStream { rows: rows(0..already), requests: 0 };
            run(put_rows(&mut s, 0, &rows(0..10))).unwrap();
            assert_eq!(s.rows, rows(0..10), "{already} rows there before");
            assert!(s.requests <= 1 + 2 * 4, "{} requests for {already}", s.requests);
        }
        // From a later start (a checkpoint inside the stream).
        let mut s = MemStream { rows: rows(0..7), requests: 0 };
        run(put_rows(&mut s, 5, &rows(5..12))).unwrap();
        assert_eq!(s.rows, rows(0..12));
    }

    #[test]
    fn a_gap_and_row_errors_are_reported_with_their_rows() {
        let mut s = MemStream { rows: rows(0..3), requests: 0 };
        assert!(matches!(run(put_rows(&mut s, 5, &rows(5..6))), Err(PutFailure::Gap(_))));
        let mut batch = rows(3..8);
        batch[2] = b"bad".to_vec();
        assert_eq!(run(put_rows(&mut s, 3, &batch)), Err(PutFailure::RowErrors(vec![(2, "invalid".into())])));
        assert_eq!(s.rows.len(), 3, "nothing of a request with a row error lands");
    }
}
