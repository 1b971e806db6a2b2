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
/// `refused` lists, ascending, the Kafka offsets below `kafka_offset`
/// whose rows BigQuery itself refused (row errors from AppendRows) and
/// which may still be re-delivered: a replay must route them to the DLQ
/// again, as nothing in the records or the schema says they fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream: String,
    pub kafka_offset: i64,
    pub row: i64,
    pub refused: Vec<i64>,
}

const NOTE_V1: &str = "bq1";
const NOTE_V2: &str = "bq2";

/// The most bytes of refused offsets a note carries: Kafka limits commit
/// metadata to 4 KiB (`offset.metadata.max.bytes`) and the rest of the
/// note (a stream name) is about 150 bytes.
pub const MAX_REFUSED_BYTES: usize = 3000;

impl Checkpoint {
    /// `bq1 <stream> <kafka offset> <row>`, or, when BigQuery refused
    /// records that may be re-delivered, `bq2 <stream> <kafka offset> <row>
    /// <refused>` ([`encode_offsets`]). Without refused offsets the note
    /// stays `bq1`, which a worker of the previous version reads too.
    pub fn to_note(&self) -> String {
        if self.refused.is_empty() {
            format!("{NOTE_V1} {} {} {}", self.stream, self.kafka_offset, self.row)
        } else {
            let refused = encode_offsets(&self.refused);
            format!("{NOTE_V2} {} {} {} {refused}", self.stream, self.kafka_offset, self.row)
        }
    }

    /// A note this sink wrote (`bq1` or `bq2`), or None (no note, or
    /// someone else's).
    pub fn parse(note: &str) -> Option<Checkpoint> {
        let mut parts = note.split(' ');
        let version = parts.next()?;
        if version != NOTE_V1 && version != NOTE_V2 {
            return None;
        }
        let stream = parts.next()?.to_string();
        let kafka_offset = parts.next()?.parse().ok()?;
        let row = parts.next()?.parse().ok()?;
        let refused = match version {
            NOTE_V2 => decode_offsets(parts.next()?)?,
            _ => Vec::new(),
        };
        if parts.next().is_some() || stream.is_empty() || kafka_offset < 0 || row < 0 {
            return None;
        }
        if refused.last().is_some_and(|&o| o >= kafka_offset) {
            return None;
        }
        Some(Checkpoint { stream, kafka_offset, row, refused })
    }
}

/// Ascending offsets as comma-separated runs, each `<gap>` or
/// `<gap>+<more>`: `gap` is the run's first offset minus the previous
/// run's last one (the first run's is absolute), `more` how many
/// consecutive offsets follow it. 1000, 1001, 1002, 1050 → `1000+2,48`.
/// Refused records are rare and close together, so deltas keep the note
/// small.
pub fn encode_offsets(offsets: &[i64]) -> String {
    let mut out = String::new();
    let mut prev = 0i64;
    let mut i = 0;
    while i < offsets.len() {
        let first = offsets[i];
        let mut last = first;
        while i + 1 < offsets.len() && offsets[i + 1] == last + 1 {
            i += 1;
            last = offsets[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&(first - prev).to_string());
        if last > first {
            out.push('+');
            out.push_str(&(last - first).to_string());
        }
        prev = last;
        i += 1;
    }
    out
}

/// The inverse of [`encode_offsets`]; None unless strictly ascending and
/// non-negative.
pub fn decode_offsets(text: &str) -> Option<Vec<i64>> {
    let mut out: Vec<i64> = Vec::new();
    let mut prev = 0i64;
    for run in text.split(',') {
        let (gap, more) = match run.split_once('+') {
            Some((g, m)) => (g.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
            None => (run.parse::<i64>().ok()?, 0),
        };
        let first = prev.checked_add(gap)?;
        if gap < 0 || more < 0 || (!out.is_empty() && gap == 0) || first < 0 {
            return None;
        }
        // A note is at most a few KiB: a run longer than that is not ours.
        if more > 1_000_000 {
            return None;
        }
        let last = first.checked_add(more)?;
        out.extend(first..=last);
        prev = last;
    }
    Some(out)
}

/// Drops the oldest refused offsets until their encoding fits in
/// `max_bytes`; returns the dropped ones (the task logs them: a crash
/// before their offsets are committed would not route them again).
pub fn trim_refused(refused: &mut Vec<i64>, max_bytes: usize) -> Vec<i64> {
    let mut drop = 0;
    while drop < refused.len() && encode_offsets(&refused[drop..]).len() > max_bytes {
        drop += 1;
    }
    refused.drain(..drop).collect()
}

/// Where a partition's next record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub stream: String,
    /// Records below this offset are handled already.
    pub next_kafka: i64,
    /// The stream offset the next row takes.
    pub next_row: i64,
    /// Kafka offsets below `next_kafka` whose rows BigQuery refused and
    /// that may be re-delivered (ascending): carried in the note.
    pub refused: Vec<i64>,
}

/// What a re-delivered or new record whose row encodes becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A new record: appended at the next stream offset.
    Append,
    /// Below the checkpoint and in the table already.
    Skip,
    /// Below the checkpoint, and BigQuery refused its row: to the DLQ again.
    RouteAgain,
}

impl Position {
    /// Resumes from a note. Refused offsets below `first_offset` (the
    /// first record delivered since the assignment, which is the committed
    /// offset) are never delivered again and are dropped.
    pub fn from_checkpoint(c: &Checkpoint, first_offset: i64) -> Position {
        Position {
            stream: c.stream.clone(),
            next_kafka: c.kafka_offset,
            next_row: c.row,
            refused: c.refused.iter().copied().filter(|&o| o >= first_offset).collect(),
        }
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            stream: self.stream.clone(),
            kafka_offset: self.next_kafka,
            row: self.next_row,
            refused: self.refused.clone(),
        }
    }

    /// A record re-delivered from below the checkpoint (a crash between
    /// the note and the offset commit) is in the table already, or was
    /// refused by BigQuery and goes to the DLQ again.
    pub fn replay(&self, offset: i64) -> Replay {
        if offset >= self.next_kafka {
            Replay::Append
        } else if self.refused.binary_search(&offset).is_ok() {
            Replay::RouteAgain
        } else {
            Replay::Skip
        }
    }

    /// Records that BigQuery refused the row of `offset` (a new record,
    /// at or past the checkpoint).
    pub fn refuse(&mut self, offset: i64) {
        if let Err(at) = self.refused.binary_search(&offset) {
            self.refused.insert(at, offset);
        }
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
        let c = Checkpoint {
            stream: "projects/p/datasets/d/tables/t/streams/abc".into(),
            kafka_offset: 42,
            row: 40,
            refused: vec![],
        };
        assert_eq!(c.to_note(), "bq1 projects/p/datasets/d/tables/t/streams/abc 42 40", "bq1 without refusals");
        assert_eq!(Checkpoint::parse(&c.to_note()), Some(c.clone()));
        let with_refused = Checkpoint { refused: vec![7, 30, 31, 32, 41], ..c.clone() };
        assert_eq!(with_refused.to_note(), "bq2 projects/p/datasets/d/tables/t/streams/abc 42 40 7,23+2,9");
        assert_eq!(Checkpoint::parse(&with_refused.to_note()), Some(with_refused));
        for other in [
            "",
            "stream-a@10",
            "bq1 s x 1",
            "bq1 s 1",
            "bq1 s 1 2 3",
            "bq1 s -1 0",
            "bq2 s 10 2",
            "bq2 s 10 2 10",
            "bq2 s 10 2 3,0",
            "bq2 s 10 2 3,-1",
            "bq2 s 10 2 x",
            "bq2 s 10 2 3 4",
        ] {
            assert_eq!(Checkpoint::parse(other), None, "{other:?}");
        }
        let p = Position::from_checkpoint(&c, 0);
        assert_eq!((p.replay(41), p.replay(42)), (Replay::Skip, Replay::Append));
        assert_eq!(p.checkpoint(), c);
    }

    #[test]
    fn offsets_encode_as_runs_of_deltas() {
        for offsets in [vec![], vec![0], vec![5], vec![1000, 1001, 1002, 1050], vec![0, 1, 3, 4, 5, 9, 1 << 40]] {
            let text = encode_offsets(&offsets);
            let back = if offsets.is_empty() { Some(vec![]) } else { decode_offsets(&text) };
            assert_eq!(back, Some(offsets.clone()), "{text:?}");
        }
        assert_eq!(encode_offsets(&[1000, 1001, 1002, 1050]), "1000+2,48");
    }

    #[test]
    fn refused_offsets_are_trimmed_oldest_first_to_fit_the_note() {
        let mut refused: Vec<i64> = (0..1000).map(|i| 1_000_000 + i * 1000).collect();
        let dropped = trim_refused(&mut refused, 300);
        assert!(encode_offsets(&refused).len() <= 300);
        assert_eq!(dropped.len() + refused.len(), 1000);
        assert_eq!(refused.last(), Some(&(1_000_000 + 999 * 1000)), "the newest are kept");
        assert!(dropped.iter().all(|&d| d < refused[0]));
        let mut small = vec![1, 2, 3];
        assert!(trim_refused(&mut small, MAX_REFUSED_BYTES).is_empty());
    }

    #[test]
    fn a_record_bigquery_refused_is_routed_again_on_replay() {
        // A note taken after 10..20 were handled, 13 and 17 refused by
        // BigQuery (offset 5 refused earlier, below what was committed).
        let c = Checkpoint { stream: "s".into(), kafka_offset: 20, row: 16, refused: vec![5, 13, 17] };
        let p = Position::from_checkpoint(&c, 10);
        assert_eq!(p.refused, [13, 17], "offsets below the first re-delivered one are not carried on");
        let verdicts: Vec<Replay> = (10..22).map(|o| p.replay(o)).collect();
        use Replay::*;
        assert_eq!(verdicts, [Skip, Skip, Skip, RouteAgain, Skip, Skip, Skip, RouteAgain, Skip, Skip, Append, Append]);
        let mut p = p;
        p.refuse(21);
        p.refuse(19);
        p.refuse(21);
        assert_eq!(p.refused, [13, 17, 19, 21]);
    }

    #[test]
    fn a_lost_stream_resumes_after_what_the_table_holds() {
        let c = Checkpoint { stream: "s".into(), kafka_offset: 100, row: 90, refused: vec![] };
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
