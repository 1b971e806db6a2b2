//! The decisions of a DLQ replay run, pure over explicit state
//! (ARCHITECTURE.md invariant 8: a DLQ record is replayed once per filter):
//! where a run starts, what it does with each DLQ record, which positions it
//! stores once every record it produced was acknowledged, and its answer.
//! `dlq_replay.rs` reads the DLQ, produces and waits around these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A replay position's identity; serialized as the last element of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub topic: String,
    pub partition: i32,
    pub stage: Option<String>,
    pub exception_class: Option<String>,
}

impl Cursor {
    /// Whether `record`'s stage and class pass this cursor's filter.
    pub fn matches(&self, stage: Option<&str>, class: Option<&str>) -> bool {
        self.stage.as_deref().is_none_or(|s| Some(s) == stage)
            && self.exception_class.as_deref().is_none_or(|c| Some(c) == class)
    }

    /// Whether every record `other` selects is also selected by `self`.
    pub fn covers(&self, other: &Cursor) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && (self.stage.is_none() || self.stage == other.stage)
            && (self.exception_class.is_none() || self.exception_class == other.exception_class)
    }
}

/// The stored positions (cursor JSON → next DLQ offset JSON) that parse;
/// others are not this code's and are left alone.
pub fn stored_positions(positions: &BTreeMap<String, String>) -> Vec<(Cursor, i64)> {
    positions
        .iter()
        .filter_map(|(cursor, next)| Some((serde_json::from_str(cursor).ok()?, next.trim().parse().ok()?)))
        .collect()
}

/// Where a run starts in each partition: at the furthest stored cursor that
/// covers this run's filter (`cursor_of`), else at the beginning (0).
pub fn start_offsets(
    partitions: &[i32],
    stored: &[(Cursor, i64)],
    cursor_of: impl Fn(i32) -> Cursor,
) -> BTreeMap<i32, i64> {
    partitions
        .iter()
        .map(|&p| {
            let mine = cursor_of(p);
            (p, stored.iter().filter(|(c, _)| c.covers(&mine)).map(|(_, next)| *next).max().unwrap_or(0))
        })
        .collect()
}

/// What a run does with one DLQ record.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Outside this run's filter.
    SkipByFilter,
    /// A stored cursor whose filter selects it is past it: replayed before.
    SkipAlready,
    /// Written without `errors.deadletterqueue.context.headers.enable`:
    /// nothing says where it came from.
    SkipWithoutOrigin,
    Replay,
}

/// `mine`: this run's cursor for the record's partition; `stage`, `class`,
/// `has_origin`: from the record's `__connect.errors.*` headers.
pub fn decide(
    mine: &Cursor,
    stored: &[(Cursor, i64)],
    offset: i64,
    stage: Option<&str>,
    class: Option<&str>,
    has_origin: bool,
) -> Decision {
    if !mine.matches(stage, class) {
        return Decision::SkipByFilter;
    }
    let replayed = stored.iter().any(|(s, next)| {
        s.topic == mine.topic && s.partition == mine.partition && offset < *next && s.matches(stage, class)
    });
    if replayed {
        Decision::SkipAlready
    } else if !has_origin {
        Decision::SkipWithoutOrigin
    } else {
        Decision::Replay
    }
}

/// The partition to produce to: the original one while the topic (of
/// `count` partitions) still has it; else `None`, the producer's
/// partitioner picks one by key.
pub fn target_partition(original: Option<i32>, count: i32) -> Option<i32> {
    original.filter(|o| (0..count).contains(o))
}

/// The records a run saw, by what became of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replayed: u64,
    pub by_filter: u64,
    pub already: u64,
    pub without_origin: u64,
}

/// A run's progress: where it started, the next offset per partition, counts.
#[derive(Debug)]
pub struct Progress {
    pub from: BTreeMap<i32, i64>,
    pub to: BTreeMap<i32, i64>,
    pub counts: Counts,
}

impl Progress {
    pub fn new(from: BTreeMap<i32, i64>) -> Progress {
        Progress { to: from.clone(), from, counts: Counts::default() }
    }

    /// The record at `offset` of `partition` is done (queued or skipped).
    pub fn passed(&mut self, partition: i32, offset: i64, decision: &Decision) {
        let count = match decision {
            Decision::SkipByFilter => &mut self.counts.by_filter,
            Decision::SkipAlready => &mut self.counts.already,
            Decision::SkipWithoutOrigin => &mut self.counts.without_origin,
            Decision::Replay => &mut self.counts.replayed,
        };
        *count += 1;
        self.to.insert(partition, offset + 1);
    }

    /// The positions to store once every record produced was acknowledged:
    /// this run's cursor of each partition it moved in.
    pub fn positions(&self, cursor_of: impl Fn(i32) -> Cursor) -> Vec<(Cursor, i64)> {
        self.to
            .iter()
            .filter(|(p, next)| self.from.get(p) != Some(next))
            .map(|(p, next)| (cursor_of(*p), *next))
            .collect()
    }

    /// The answer of a run that stored its positions; `complete`: it read
    /// every partition to its end (not stopped early by `max_records` or idleness).
    pub fn answer(&self, dlq: &str, read_to_end: bool, max_records: Option<u64>) -> Value {
        let offsets = |m: &BTreeMap<i32, i64>| -> Value { m.iter().map(|(p, o)| (p.to_string(), json!(o))).collect() };
        let c = &self.counts;
        json!({
            "topic": dlq,
            "replayed": c.replayed,
            "skipped": c.by_filter + c.already + c.without_origin,
            "skipped_by_filter": c.by_filter,
            "skipped_already_replayed": c.already,
            "skipped_without_origin": c.without_origin,
            "complete": read_to_end && c.replayed < max_records.unwrap_or(u64::MAX),
            "from": offsets(&self.from),
            "to": offsets(&self.to),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(stage: Option<&str>, class: Option<&str>) -> Cursor {
        Cursor {
            topic: "dlq".into(),
            partition: 0,
            stage: stage.map(String::from),
            exception_class: class.map(String::from),
        }
    }

    /// Invariant 8: a position covers another only when it selects every
    /// record the other does.
    #[test]
    fn an_unfiltered_cursor_covers_every_filter_and_a_filter_only_itself() {
        let all = cursor(None, None);
        let put = cursor(Some("TASK_PUT"), None);
        let put_bad = cursor(Some("TASK_PUT"), Some("BadRecord"));
        assert!(all.covers(&put) && all.covers(&put_bad) && put.covers(&put_bad));
        assert!(!put.covers(&all) && !put_bad.covers(&put));
        assert!(!put.covers(&cursor(Some("TRANSFORMATION"), None)));
        let mut other_partition = put.clone();
        other_partition.partition = 1;
        assert!(!all.covers(&other_partition));
    }

    /// Invariant 8: a filter selects on stage and exception class.
    #[test]
    fn a_filter_matches_on_stage_and_class() {
        let put = cursor(Some("TASK_PUT"), None);
        assert!(put.matches(Some("TASK_PUT"), Some("BadRecord")));
        assert!(!put.matches(Some("TRANSFORMATION"), Some("BadRecord")));
        assert!(!put.matches(None, None));
        assert!(cursor(None, None).matches(None, None));
        assert!(!cursor(None, Some("Retriable")).matches(Some("TASK_PUT"), Some("BadRecord")));
    }

    /// Invariant 8: a run starts at the furthest position whose filter
    /// covers its own; a narrower or other partition's position does not move it.
    #[test]
    fn a_run_starts_at_the_furthest_covering_position() {
        let at = |c: Cursor, p: i32, next: i64| (Cursor { partition: p, ..c }, next);
        let stored = vec![
            at(cursor(None, None), 0, 10),
            at(cursor(Some("TASK_PUT"), None), 0, 25),
            at(cursor(Some("TASK_PUT"), Some("BadRecord")), 0, 40),
            at(cursor(None, None), 1, 5),
        ];
        let table = [
            (cursor(None, None), [(0, 10), (1, 5), (2, 0)]),
            (cursor(Some("TASK_PUT"), None), [(0, 25), (1, 5), (2, 0)]),
            (cursor(Some("TASK_PUT"), Some("BadRecord")), [(0, 40), (1, 5), (2, 0)]),
            (cursor(Some("TRANSFORMATION"), None), [(0, 10), (1, 5), (2, 0)]),
        ];
        for (mine, expected) in table {
            let from = start_offsets(&[0, 1, 2], &stored, |p| Cursor { partition: p, ..mine.clone() });
            assert_eq!(from, expected.into(), "{mine:?}");
        }
    }

    /// Invariant 8: a record is re-produced only when it passes the run's
    /// filter, no stored position already covers it, and it names its origin.
    #[test]
    fn each_dlq_record_is_replayed_once_per_filter() {
        let stored = vec![(cursor(Some("TASK_PUT"), None), 20)];
        let everything = cursor(None, None);
        let put = Some("TASK_PUT");
        let table = [
            (cursor(Some("TRANSFORMATION"), None), 30, put, true, Decision::SkipByFilter),
            (everything.clone(), 10, put, true, Decision::SkipAlready),
            (everything.clone(), 20, put, true, Decision::Replay),
            (everything.clone(), 10, Some("TRANSFORMATION"), true, Decision::Replay),
            (everything.clone(), 10, None, true, Decision::Replay),
            (everything.clone(), 30, put, false, Decision::SkipWithoutOrigin),
            (Cursor { partition: 1, ..everything.clone() }, 10, put, true, Decision::Replay),
        ];
        for (mine, offset, stage, origin, expected) in table {
            assert_eq!(decide(&mine, &stored, offset, stage, None, origin), expected, "{mine:?} {offset} {stage:?}");
        }
    }

    /// Invariant 8: positions are stored only for partitions the run moved
    /// in, past the last record it passed, and read back as written.
    #[test]
    fn a_run_stores_a_position_per_partition_it_moved_in() {
        let mine = |p: i32| Cursor { partition: p, ..cursor(Some("TASK_PUT"), None) };
        let mut progress = Progress::new([(0, 5), (1, 0), (2, 7)].into());
        for (p, offset, d) in [(0, 5, Decision::Replay), (0, 6, Decision::SkipByFilter), (1, 0, Decision::SkipAlready)]
        {
            progress.passed(p, offset, &d);
        }
        assert_eq!(progress.positions(mine), vec![(mine(0), 7), (mine(1), 1)]);
        let written: BTreeMap<String, String> = progress
            .positions(mine)
            .into_iter()
            .map(|(c, next)| (serde_json::to_string(&c).unwrap_or_default(), next.to_string()))
            .chain([("[\"not a cursor\"]".to_string(), "3".to_string())])
            .collect();
        assert_eq!(stored_positions(&written), vec![(mine(0), 7), (mine(1), 1)]);
        assert_eq!(target_partition(Some(2), 3), Some(2));
        assert_eq!(target_partition(Some(3), 3), None);
        assert_eq!(target_partition(None, 3), None);
    }

    /// Invariant 8: the answer says complete only when the run read to the
    /// end within `max_records`, and counts every skip.
    #[test]
    fn the_answer_counts_and_says_whether_the_run_is_complete() {
        let mut progress = Progress::new([(0, 0)].into());
        for (offset, d) in [(0, Decision::Replay), (1, Decision::SkipWithoutOrigin), (2, Decision::SkipAlready)] {
            progress.passed(0, offset, &d);
        }
        let table = [(true, None, true), (true, Some(1), false), (true, Some(2), true), (false, None, false)];
        for (read_to_end, max, complete) in table {
            let answer = progress.answer("dlq", read_to_end, max);
            assert_eq!(answer["complete"], json!(complete), "{read_to_end} {max:?}");
            assert_eq!((answer["replayed"].clone(), answer["skipped"].clone()), (json!(1), json!(2)));
            assert_eq!((answer["from"]["0"].clone(), answer["to"]["0"].clone()), (json!(0), json!(3)));
        }
    }
}
