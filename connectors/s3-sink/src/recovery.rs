//! Exactly-once objects under any rotation: what earlier incarnations of a
//! partition already completed in S3, and what a re-delivered record is
//! then (docs/decisions/0025-s3-sink-exactly-once-objects.md).
//!
//! Every object records the Kafka offsets it holds (first and last) when it
//! is created ([`OffsetRange`], in its metadata). Within one path (encoded
//! partition) an object holds *every* record of that path between its first
//! and last offset: records of a partition arrive in offset order and a path
//! has one open object at a time. So a re-delivered record whose path has an
//! object containing its offset is in S3 already. Pure functions here;
//! `sink.rs` lists and HEADs around them.

use std::collections::BTreeMap;

/// Metadata keys (`x-amz-meta-…`) of an object's offset range.
pub const META_TOPIC: &str = "sluice-topic";
pub const META_PARTITION: &str = "sluice-partition";
pub const META_FIRST: &str = "sluice-first-offset";
pub const META_LAST: &str = "sluice-last-offset";
pub const META_RECORDS: &str = "sluice-record-count";
/// On a multipart object: the name of its range marker (the range is not
/// known when the upload is created, and metadata cannot change later).
pub const META_RANGE_ID: &str = "sluice-range-id";

/// The Kafka records one object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// Records written (fewer than the offsets when some were bad, ignored
    /// or under other paths); Confluent's `recordCount` tag.
    pub records: u64,
}

impl OffsetRange {
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        vec![
            (META_TOPIC.into(), self.topic.clone()),
            (META_PARTITION.into(), self.partition.to_string()),
            (META_FIRST.into(), self.first.to_string()),
            (META_LAST.into(), self.last.to_string()),
            (META_RECORDS.into(), self.records.to_string()),
        ]
    }

    /// The range in an object's (or marker's) metadata; `None` when it has
    /// none (written without this feature) or it does not parse.
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Option<OffsetRange> {
        let range = OffsetRange {
            topic: meta.get(META_TOPIC)?.clone(),
            partition: meta.get(META_PARTITION)?.parse().ok()?,
            first: meta.get(META_FIRST)?.parse().ok()?,
            last: meta.get(META_LAST)?.parse().ok()?,
            records: meta.get(META_RECORDS)?.parse().ok()?,
        };
        (range.first <= range.last).then_some(range)
    }
}

/// An object of the partition found in S3: its path and range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredObject {
    pub path: String,
    pub first: i64,
    pub last: i64,
}

/// Which listed objects (path, start offset from the name) may hold records
/// at or after `first_delivered`, the first offset re-delivered: per path,
/// every object starting there or later, and the last one starting before
/// it (it may reach past it; earlier ones of the path end before it starts).
pub fn candidates(listed: &[(String, i64)], first_delivered: i64) -> Vec<(String, i64)> {
    let mut by_path: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (path, start) in listed {
        by_path.entry(path).or_default().push(*start);
    }
    let mut out = Vec::new();
    for (path, mut starts) in by_path {
        starts.sort_unstable();
        starts.dedup();
        let at = starts.partition_point(|s| *s < first_delivered);
        let from = if starts.get(at) == Some(&first_delivered) { at } else { at.saturating_sub(1) };
        out.extend(starts[from..].iter().map(|s| (path.to_string(), *s)));
    }
    out
}

/// What to do with a re-delivered record.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not in S3: write it.
    Write,
    /// Already in a completed object: skip it, and close the record's open
    /// object of its path first, so that it ends where the earlier
    /// incarnation's object begins (no object's range may span another's).
    Skip,
}

/// The covered ranges of one partition while its re-delivery lasts.
#[derive(Debug, Default, Clone)]
pub struct Covered {
    objects: Vec<CoveredObject>,
    /// With a non-deterministic path (`timestamp.extractor=Wallclock`) the
    /// earlier incarnation may have put a record under another path: any
    /// path's object covers it (ranges of different paths are disjoint then,
    /// as all records of a moment go to one path).
    any_path: bool,
}

impl Covered {
    pub fn new(objects: Vec<CoveredObject>, any_path: bool) -> Self {
        Covered { objects, any_path }
    }

    /// The last offset any object holds: past it, the re-delivery is over.
    pub fn end(&self) -> Option<i64> {
        self.objects.iter().map(|o| o.last).max()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn decide(&self, path: &str, offset: i64) -> Decision {
        let covered =
            self.objects.iter().any(|o| (self.any_path || o.path == path) && o.first <= offset && offset <= o.last);
        if covered {
            Decision::Skip
        } else {
            Decision::Write
        }
    }

    /// Adds an object found later (a conditional completion lost to it).
    pub fn add(&mut self, object: CoveredObject) {
        self.objects.push(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, first: i64, last: i64) -> CoveredObject {
        CoveredObject { path: path.into(), first, last }
    }

    #[test]
    fn candidates_are_per_path_the_objects_from_the_first_delivered_offset_and_the_one_before() {
        let listed: Vec<(String, i64)> = [("a", 0), ("a", 10), ("a", 20), ("a", 30), ("b", 5), ("b", 40), ("c", 1)]
            .iter()
            .map(|(p, s)| (p.to_string(), *s))
            .collect();
        let got = candidates(&listed, 25);
        let want: Vec<(String, i64)> =
            [("a", 20), ("a", 30), ("b", 5), ("b", 40), ("c", 1)].iter().map(|(p, s)| (p.to_string(), *s)).collect();
        assert_eq!(got, want);
        // An object starting exactly at the first delivered offset needs no predecessor.
        assert_eq!(candidates(&listed[..3], 10), vec![("a".to_string(), 10), ("a".to_string(), 20)]);
        assert!(candidates(&[], 7).is_empty());
    }

    #[test]
    fn a_record_is_skipped_only_inside_an_object_of_its_own_path() {
        let c = Covered::new(vec![obj("p=0", 10, 19), obj("p=1", 12, 15)], false);
        assert_eq!(c.decide("p=0", 9), Decision::Write);
        assert_eq!(c.decide("p=0", 10), Decision::Skip);
        assert_eq!(c.decide("p=0", 19), Decision::Skip);
        assert_eq!(c.decide("p=0", 20), Decision::Write);
        // Record-time paths interleave: offset 13 under p=1 is in p=1's
        // object, and offset 16 under p=1 was in none (it is written).
        assert_eq!(c.decide("p=1", 13), Decision::Skip);
        assert_eq!(c.decide("p=1", 16), Decision::Write);
        assert_eq!(c.decide("p=2", 11), Decision::Write);
        assert_eq!(c.end(), Some(19));
    }

    #[test]
    fn with_a_wall_clock_path_any_paths_object_covers_the_record() {
        let c = Covered::new(vec![obj("hour=13", 0, 49), obj("hour=14", 50, 70)], true);
        // The re-delivery runs at 15:00: the records' new path differs.
        assert_eq!(c.decide("hour=15", 0), Decision::Skip);
        assert_eq!(c.decide("hour=15", 60), Decision::Skip);
        assert_eq!(c.decide("hour=15", 71), Decision::Write);
        assert_eq!(c.end(), Some(70));
        assert!(Covered::default().end().is_none());
    }

    #[test]
    fn ranges_round_trip_through_metadata_and_bad_ones_are_none() {
        let r = OffsetRange { topic: "orders-v2".into(), partition: 3, first: 100, last: 250, records: 120 };
        let meta: BTreeMap<String, String> = r.to_metadata().into_iter().collect();
        assert_eq!(OffsetRange::from_metadata(&meta), Some(r));
        let mut bad = meta.clone();
        bad.insert(META_LAST.into(), "99".into());
        assert_eq!(OffsetRange::from_metadata(&bad), None, "last before first");
        let mut missing = meta;
        missing.remove(META_FIRST);
        assert_eq!(OffsetRange::from_metadata(&missing), None);
    }
}
