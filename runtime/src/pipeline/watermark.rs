//! The contiguous per-partition watermark of settled records (delivery
//! invariant 1): the offset the worker may commit is the lowest offset that
//! is not yet settled, where settled means durable in the sink (its
//! `pre_commit`), or acknowledged by the DLQ / rejected topic, or dropped on
//! purpose. A later success never carries the commit past an earlier failure.

use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Debug, Default)]
struct Partition {
    /// Handed to the sink, in offset order, not yet reported durable: (offset, bytes).
    in_sink: VecDeque<(i64, u64)>,
    /// Records routed elsewhere (DLQ, rejected topic): offset → acknowledged.
    routed: BTreeMap<i64, bool>,
    /// The next offset to consume: everything below it has been seen.
    next: i64,
    bytes: u64,
    /// The last committed offset; before the first commit, the first offset seen.
    committed: i64,
}

impl Partition {
    fn watermark(&self) -> i64 {
        let mut w = self.next;
        if let Some(&(offset, _)) = self.in_sink.front() {
            w = w.min(offset);
        }
        if let Some((&offset, _)) = self.routed.iter().find(|(_, acked)| !**acked) {
            w = w.min(offset);
        }
        w
    }
}

/// Watermarks of one task's partitions.
#[derive(Debug, Default)]
pub struct Watermarks {
    /// Keyed by topic, then partition: lookups by `&str` on the per-record
    /// path allocate nothing (only a topic seen for the first time does).
    topics: HashMap<String, HashMap<i32, Partition>>,
}

impl Watermarks {
    /// The partition's bookkeeping, created at `offset` when first seen
    /// (always `Some`; an `Option` only to avoid a panic path).
    fn partition(&mut self, topic: &str, partition: i32, offset: i64) -> Option<&mut Partition> {
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_string(), HashMap::new());
        }
        let partitions = self.topics.get_mut(topic)?;
        Some(partitions.entry(partition).or_insert_with(|| Partition {
            next: offset,
            committed: offset,
            ..Partition::default()
        }))
    }

    fn existing(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.topics.get_mut(topic).and_then(|p| p.get_mut(&partition))
    }

    fn all(&self) -> impl Iterator<Item = (&String, i32, &Partition)> {
        self.topics.iter().flat_map(|(t, ps)| ps.iter().map(move |(p, part)| (t, *p, part)))
    }

    /// A record was handed to the sink's `put`.
    pub fn handed(&mut self, topic: &str, partition: i32, offset: i64, bytes: u64) {
        let Some(p) = self.partition(topic, partition, offset) else { return };
        p.in_sink.push_back((offset, bytes));
        p.bytes += bytes;
        p.next = p.next.max(offset + 1);
    }

    /// A record was consumed but needs nothing from the sink (filtered out).
    pub fn skipped(&mut self, topic: &str, partition: i32, offset: i64) {
        let Some(p) = self.partition(topic, partition, offset) else { return };
        p.next = p.next.max(offset + 1);
    }

    /// The sink reported this record failed: it will be routed elsewhere and
    /// is unsettled until `routed_acked`.
    pub fn failed(&mut self, topic: &str, partition: i32, offset: i64) {
        let Some(p) = self.partition(topic, partition, offset) else { return };
        if let Ok(i) = p.in_sink.binary_search_by_key(&offset, |(o, _)| *o) {
            if let Some((_, bytes)) = p.in_sink.remove(i) {
                p.bytes -= bytes;
            }
        }
        p.routed.insert(offset, false);
        p.next = p.next.max(offset + 1);
    }

    /// A record that failed retriably was taken by a retry: it is back in
    /// the sink's hands, unsettled until the sink reports it durable.
    pub fn retaken(&mut self, topic: &str, partition: i32, offset: i64, bytes: u64) {
        let Some(p) = self.partition(topic, partition, offset) else { return };
        p.routed.remove(&offset);
        let at = p.in_sink.partition_point(|(o, _)| *o < offset);
        p.in_sink.insert(at, (offset, bytes));
        p.bytes += bytes;
    }

    /// The DLQ or rejected topic acknowledged the failed record.
    pub fn routed_acked(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.existing(topic, partition) {
            if let Some(acked) = p.routed.get_mut(&offset) {
                *acked = true;
            }
        }
    }

    /// The sink's `pre_commit`: everything it was handed below `offset` is durable.
    pub fn durable(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.existing(topic, partition) {
            while p.in_sink.front().is_some_and(|(o, _)| *o < offset) {
                if let Some((_, bytes)) = p.in_sink.pop_front() {
                    p.bytes -= bytes;
                }
            }
        }
    }

    /// Offsets that moved past the last commit: (topic, partition, offset to commit).
    pub fn to_commit(&self) -> Vec<(String, i32, i64)> {
        self.all()
            .filter_map(|(t, p, part)| {
                let w = part.watermark();
                (w > part.committed).then(|| (t.clone(), p, w))
            })
            .collect()
    }

    /// Records that these offsets are committed; drops settled bookkeeping.
    pub fn committed(&mut self, commits: &[(String, i32, i64)]) {
        for (t, p, offset) in commits {
            if let Some(part) = self.existing(t, *p) {
                part.committed = *offset;
                part.routed.retain(|o, _| *o >= *offset);
            }
        }
    }

    /// The partition was revoked: forget it (its unsettled records will be
    /// re-delivered to the next owner from the committed offset).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.topics.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    /// Bytes handed to the sink and not yet durable, over all partitions.
    pub fn buffered_bytes(&self) -> u64 {
        self.all().map(|(_, _, p)| p.bytes).sum()
    }

    /// The watermark of one partition, if it has been seen.
    pub fn watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.topics.get(topic).and_then(|p| p.get(&partition)).map(Partition::watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_waits_for_the_sink() {
        let mut w = Watermarks::default();
        for o in 10..20 {
            w.handed("t", 0, o, 100);
        }
        assert_eq!(w.watermark("t", 0), Some(10));
        assert_eq!(w.buffered_bytes(), 1000);
        w.durable("t", 0, 15);
        assert_eq!(w.watermark("t", 0), Some(15));
        assert_eq!(w.buffered_bytes(), 500);
        w.durable("t", 0, 20);
        assert_eq!(w.to_commit(), vec![("t".to_string(), 0, 20)]);
    }

    #[test]
    fn a_later_success_never_carries_the_commit_past_an_unacknowledged_failure() {
        let mut w = Watermarks::default();
        for o in 0..10 {
            w.handed("t", 0, o, 1);
        }
        w.failed("t", 0, 3);
        w.durable("t", 0, 10);
        assert_eq!(w.watermark("t", 0), Some(3), "the DLQ has not acknowledged record 3");
        w.routed_acked("t", 0, 3);
        assert_eq!(w.watermark("t", 0), Some(10));
    }

    #[test]
    fn a_retaken_record_waits_for_the_sink_again() {
        let mut w = Watermarks::default();
        for o in 0..4 {
            w.handed("t", 0, o, 1);
        }
        w.failed("t", 0, 1);
        w.durable("t", 0, 1);
        w.retaken("t", 0, 1, 1);
        assert_eq!(w.watermark("t", 0), Some(1), "taken again but not yet durable");
        w.durable("t", 0, 4);
        assert_eq!(w.watermark("t", 0), Some(4));
    }

    #[test]
    fn commits_are_reported_once_and_only_forward() {
        let mut w = Watermarks::default();
        w.handed("t", 1, 5, 1);
        w.durable("t", 1, 6);
        let c = w.to_commit();
        assert_eq!(c, vec![("t".to_string(), 1, 6)]);
        w.committed(&c);
        assert!(w.to_commit().is_empty());
        w.skipped("t", 1, 6);
        assert_eq!(w.to_commit(), vec![("t".to_string(), 1, 7)]);
    }

    #[test]
    fn partitions_are_independent_and_forgotten_on_revoke() {
        let mut w = Watermarks::default();
        w.handed("a", 0, 0, 1);
        w.handed("b", 0, 0, 1);
        w.durable("a", 0, 1);
        assert_eq!(w.to_commit(), vec![("a".to_string(), 0, 1)]);
        w.forget("b", 0);
        assert_eq!(w.watermark("b", 0), None);
        assert_eq!(w.buffered_bytes(), 0);
    }
}
