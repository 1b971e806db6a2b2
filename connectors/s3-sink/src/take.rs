//! The decisions of taking one record into an open object, pure over
//! explicit state: what a null value does, a new parquet object's columns,
//! when a written record pushes a part or closes its object, and what a
//! re-delivered record is (ARCHITECTURE.md invariants 4 and 7). `sink.rs`
//! writes and uploads around these.

use std::collections::BTreeMap;

use connector_api::ConnectorError;
use serde_json::Value;

use crate::{config::NullBehavior, parquet_format::Schema, rotation};

/// S3's limit of parts per multipart upload.
pub const MAX_PARTS: usize = 10_000;

/// What became of one record the task was handed.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Written into its object.
    Accepted,
    /// A null value with `behavior.on.null.values=ignore`: nothing written.
    Ignored,
    /// A bad record: reported failed, routed by the runtime.
    Bad(String),
}

/// A null value (tombstone): `None` writes it, else what becomes of it.
pub fn on_null(behavior: NullBehavior) -> Option<Taken> {
    match behavior {
        NullBehavior::Fail => Some(Taken::Bad(
            "null value (tombstone) with behavior.on.null.values=fail; set it to ignore or write to accept tombstones"
                .into(),
        )),
        NullBehavior::Ignore => Some(Taken::Ignored),
        NullBehavior::Write => None,
    }
}

/// A new parquet object's columns: `parquet.schema`, or those of the
/// object's first record (invariant 4: a re-delivery has the same first
/// record, so the same columns). `json`: the value already parsed.
pub fn parquet_schema(explicit: Option<&Schema>, json: Option<&Value>, value: Option<&[u8]>) -> Result<Schema, String> {
    match (explicit, json, value) {
        (Some(s), _, _) => Ok(s.clone()),
        (None, Some(j), _) => Schema::infer(j),
        (None, None, Some(v)) => serde_json::from_slice::<Value>(v)
            .map_err(|e| format!("value is not JSON ({e}); format.class=parquet needs JSON objects"))
            .and_then(|j| Schema::infer(&j)),
        (None, None, None) => Err("a null value cannot be a parquet row".into()),
    }
}

/// An open object right after a record was written into it.
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    pub records: u64,
    /// Uncompressed bytes written.
    pub raw_bytes: u64,
    /// Encoded bytes not yet in a part.
    pub pending: usize,
    /// Parts queued or uploaded so far.
    pub parts: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub part_size: usize,
    pub flush_size: u64,
    pub max_object_bytes: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct AfterWrite {
    /// Cut the pending bytes into a part.
    pub push_part: bool,
    /// The object is full: close it (its boundaries depend only on its
    /// records, invariant 4). S3 refuses a 10 001st part, so an object
    /// closes one part before.
    pub rotate: bool,
}

pub fn after_write(fill: Fill, limits: Limits) -> AfterWrite {
    let push_part = fill.pending >= limits.part_size;
    let parts = fill.parts + usize::from(push_part);
    let rotate = rotation::due_after(fill.records, fill.raw_bytes, limits.flush_size, limits.max_object_bytes)
        || parts >= MAX_PARTS - 1;
    AfterWrite { push_part, rotate }
}

/// A record of a `put` against what its partition already took.
#[derive(Debug, PartialEq, Eq)]
pub enum Again {
    /// Not taken before: take it.
    New,
    /// Taken before (the batch re-delivered after a retriable error): skip it.
    Taken,
    /// Reported failed before: report it failed again, so none is silently
    /// taken as accepted (invariant 7).
    Failed(ConnectorError),
}

/// `next_offset`: the offset after the last record the partition took.
pub fn again(next_offset: Option<i64>, offset: i64, failed: &BTreeMap<i64, ConnectorError>) -> Again {
    if next_offset.is_none_or(|n| offset >= n) {
        return Again::New;
    }
    match failed.get(&offset) {
        Some(e) => Again::Failed(e.clone()),
        None => Again::Taken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariant 4: a tombstone is written, ignored (and settled) or reported
    /// bad per behavior.on.null.values, the same on every delivery.
    #[test]
    fn a_null_value_is_written_ignored_or_bad_per_the_behavior() {
        for (behavior, expected) in
            [(NullBehavior::Write, "write"), (NullBehavior::Ignore, "ignored"), (NullBehavior::Fail, "bad")]
        {
            let got = match on_null(behavior) {
                None => "write",
                Some(Taken::Ignored) => "ignored",
                Some(Taken::Bad(m)) => {
                    assert!(m.contains("behavior.on.null.values=fail"), "{m}");
                    "bad"
                }
                Some(Taken::Accepted) => "accepted",
            };
            assert_eq!(got, expected, "{behavior:?}");
        }
    }

    /// Invariant 4: a new parquet object's columns come from parquet.schema
    /// or its first record only, so a re-delivery writes the same columns.
    #[test]
    fn a_parquet_objects_columns_are_explicit_or_its_first_records() {
        let first = serde_json::json!({"id": 1, "name": "a"});
        let inferred = Schema::infer(&first).ok();
        let explicit = Schema::infer(&serde_json::json!({"other": true})).ok();
        assert!(inferred.is_some() && explicit.is_some() && inferred != explicit);
        let bytes = br#"{"id": 1, "name": "a"}"#.as_slice();
        // (explicit, parsed json, value bytes) → columns, or an error containing
        type Case<'a> = (Option<&'a Schema>, Option<&'a Value>, Option<&'a [u8]>, Result<Option<Schema>, &'a str>);
        let table: [Case<'_>; 6] = [
            (explicit.as_ref(), Some(&first), Some(bytes), Ok(explicit.clone())),
            (explicit.as_ref(), None, None, Ok(explicit.clone())),
            (None, Some(&first), Some(b"ignored"), Ok(inferred.clone())),
            (None, None, Some(bytes), Ok(inferred.clone())),
            (None, None, Some(b"not json"), Err("value is not JSON")),
            (None, None, None, Err("a null value cannot be a parquet row")),
        ];
        for (explicit, json, value, expected) in table {
            let got = parquet_schema(explicit, json, value);
            match expected {
                Ok(schema) => assert_eq!(got.ok(), schema, "{value:?}"),
                Err(text) => assert!(got.as_ref().is_err_and(|e| e.contains(text)), "{got:?}"),
            }
        }
    }

    /// Invariant 4: a part is cut and an object closed by its own records
    /// (count, bytes, S3's part limit), never by timing.
    #[test]
    fn a_written_record_cuts_a_part_and_closes_a_full_object() {
        let limits = Limits { part_size: 100, flush_size: 10, max_object_bytes: Some(1000) };
        let fill = |records, raw_bytes, pending, parts| Fill { records, raw_bytes, pending, parts };
        // (fill after the write) → (push a part, rotate)
        let table = [
            (fill(1, 10, 10, 0), (false, false)),
            (fill(2, 200, 100, 0), (true, false)),
            (fill(10, 20, 20, 0), (false, true)),
            (fill(3, 1000, 0, 0), (false, true)),
            (fill(3, 30, 0, MAX_PARTS - 2), (false, false)),
            (fill(3, 30, 100, MAX_PARTS - 2), (true, true)),
            (fill(3, 30, 0, MAX_PARTS - 1), (false, true)),
        ];
        for (f, (push_part, rotate)) in table {
            assert_eq!(after_write(f, limits), AfterWrite { push_part, rotate }, "{f:?}");
        }
        let unbounded = Limits { max_object_bytes: None, ..limits };
        assert!(!after_write(fill(3, u64::MAX, 0, 0), unbounded).rotate);
    }

    /// Invariant 7: after a whole-batch retriable error the same batch comes
    /// again; what was taken is skipped, what failed is reported again.
    #[test]
    fn a_redelivered_record_is_skipped_or_reported_failed_again() {
        let failed: BTreeMap<i64, ConnectorError> = [(4, ConnectorError::bad_record("bad"))].into();
        let table = [
            (None, 0, Again::New),
            (Some(5), 5, Again::New),
            (Some(5), 9, Again::New),
            (Some(5), 3, Again::Taken),
            (Some(5), 4, Again::Failed(ConnectorError::bad_record("bad"))),
        ];
        for (next, offset, expected) in table {
            assert_eq!(again(next, offset, &failed), expected, "{next:?} {offset}");
        }
    }
}
