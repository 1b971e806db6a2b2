//! Records and positions as they cross the plugin boundary.
//!
//! Sink records *borrow* their bytes from the runtime's consumer buffers for
//! the duration of one `put` call: the runtime allocates one array per batch,
//! never per record. A sink copies what it needs to keep.

use abi_stable::{
    std_types::{ROption, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::ConnectorError;

/// One Kafka partition.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: RString,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: RString::from(topic.into()), partition }
    }
}

/// A Kafka partition and an offset. From `pre_commit` it is the *next* offset
/// to read: every record below it is durable in the target.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartitionOffset {
    pub topic: RString,
    pub partition: i32,
    pub offset: i64,
}

impl TopicPartitionOffset {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        TopicPartitionOffset { topic: RString::from(topic.into()), partition, offset }
    }
}

/// A borrowed record header.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    pub key: RStr<'a>,
    pub value: ROption<RSlice<'a, u8>>,
}

/// A record handed to a sink task, borrowing the runtime's buffers.
///
/// Beside the key and value bytes, a record may carry the key's and the
/// value's schema as Kafka Connect JSON (see [`crate::schema`]): the runtime
/// fills them when a converter knows one (JsonConverter with
/// `schemas.enable`), and no transform rewrote that part.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct SinkRecord<'a> {
    topic: RStr<'a>,
    partition: i32,
    offset: i64,
    /// Milliseconds since the epoch; `i64::MIN` when the record has none.
    timestamp: i64,
    key: ROption<RSlice<'a, u8>>,
    value: ROption<RSlice<'a, u8>>,
    headers: RSlice<'a, HeaderRef<'a>>,
    key_schema: ROption<RStr<'a>>,
    value_schema: ROption<RStr<'a>>,
}

impl<'a> SinkRecord<'a> {
    /// A record at `topic`/`partition`/`offset` with no timestamp, key,
    /// value, headers or schemas; the `with_*` methods add them. Used by the
    /// runtime and by connector tests.
    pub fn new(topic: &'a str, partition: i32, offset: i64) -> Self {
        SinkRecord {
            topic: topic.into(),
            partition,
            offset,
            timestamp: i64::MIN,
            key: ROption::RNone,
            value: ROption::RNone,
            headers: RSlice::EMPTY,
            key_schema: ROption::RNone,
            value_schema: ROption::RNone,
        }
    }
    pub fn with_timestamp(mut self, millis: Option<i64>) -> Self {
        self.timestamp = millis.unwrap_or(i64::MIN);
        self
    }
    pub fn with_key(mut self, key: Option<&'a [u8]>) -> Self {
        self.key = key.map(RSlice::from).into();
        self
    }
    pub fn with_value(mut self, value: Option<&'a [u8]>) -> Self {
        self.value = value.map(RSlice::from).into();
        self
    }
    pub fn with_headers(mut self, headers: &'a [HeaderRef<'a>]) -> Self {
        self.headers = headers.into();
        self
    }
    /// The key's and the value's schema, as Kafka Connect JSON.
    pub fn with_schemas(mut self, key_schema: Option<&'a str>, value_schema: Option<&'a str>) -> Self {
        self.key_schema = key_schema.map(RStr::from).into();
        self.value_schema = value_schema.map(RStr::from).into();
        self
    }
    pub fn topic(&self) -> &'a str {
        self.topic.as_str()
    }
    pub fn partition(&self) -> i32 {
        self.partition
    }
    pub fn offset(&self) -> i64 {
        self.offset
    }
    /// Milliseconds since the epoch, if the record carries a timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != i64::MIN).then_some(self.timestamp)
    }
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key.map(|k| k.as_slice()).into_option()
    }
    /// `None` is a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value.map(|v| v.as_slice()).into_option()
    }
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.headers.as_slice().iter().map(|h| (h.key.as_str(), h.value.map(|v| v.as_slice()).into_option()))
    }
    /// The key's schema as Kafka Connect JSON, if the converter knew one.
    pub fn key_schema_json(&self) -> Option<&'a str> {
        self.key_schema.map(|s| s.as_str()).into_option()
    }
    /// The value's schema as Kafka Connect JSON, if the converter knew one.
    pub fn value_schema_json(&self) -> Option<&'a str> {
        self.value_schema.map(|s| s.as_str()).into_option()
    }
    /// The value's schema, parsed (parse once per distinct text in a hot loop).
    pub fn value_schema(&self) -> Option<Result<crate::schema::Schema, String>> {
        self.value_schema_json().map(crate::schema::Schema::parse)
    }
    /// Where the record is, for error messages: `topic T partition P offset O`.
    pub fn position(&self) -> String {
        format!("topic {} partition {} offset {}", self.topic(), self.partition(), self.offset())
    }
}

/// A record header owned by a source record.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: RString,
    pub value: ROption<RVec<u8>>,
}

/// Where a source record came from: both are JSON texts (Kafka Connect's
/// source partition and source offset maps), stored in the offsets topic.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceOffset {
    pub partition: RString,
    pub offset: RString,
}

impl SourceOffset {
    pub fn new(partition: impl Into<String>, offset: impl Into<String>) -> Self {
        SourceOffset { partition: RString::from(partition.into()), offset: RString::from(offset.into()) }
    }
}

/// A record produced by a source task.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub topic: RString,
    /// `None`: partitioned by the key (the producer's default partitioner).
    pub partition: ROption<i32>,
    pub key: ROption<RVec<u8>>,
    pub value: ROption<RVec<u8>>,
    pub headers: RVec<Header>,
    pub timestamp: ROption<i64>,
    pub source: SourceOffset,
}

impl SourceRecord {
    pub fn new(topic: impl Into<String>, source: SourceOffset) -> Self {
        SourceRecord {
            topic: RString::from(topic.into()),
            partition: ROption::RNone,
            key: ROption::RNone,
            value: ROption::RNone,
            headers: RVec::new(),
            timestamp: ROption::RNone,
            source,
        }
    }
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = ROption::RSome(RVec::from(key.into()));
        self
    }
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = ROption::RSome(RVec::from(value.into()));
        self
    }
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header { key: RString::from(key.into()), value: ROption::RSome(RVec::from(value.into())) });
        self
    }
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = ROption::RSome(millis);
        self
    }
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = ROption::RSome(partition);
        self
    }
}

/// A record of a `put` batch that failed, by its index in that batch.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub index: u32,
    pub error: ConnectorError,
}

/// One key/value detail of a failed record (the target's error code, its
/// message, the fields it named), by the record's index in the `put` batch.
/// The worker writes it on the routed record as header
/// `__sluice.errors.target.<key>` beside Kafka Connect's `__connect.errors.*`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FailureDetail {
    pub index: u32,
    pub key: RString,
    pub value: RString,
}

/// What `put` reports beside success: the records it could not take. Every
/// record not listed was accepted (it becomes durable when `pre_commit` says
/// so); every listed one is routed by the runtime per its error kind, with
/// the details given to [`fail_with_details`](Self::fail_with_details) as
/// headers of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    failures: Vec<RecordFailure>,
    details: Vec<FailureDetail>,
}

impl PutOutcome {
    /// Every record accepted.
    pub fn accepted() -> Self {
        PutOutcome::default()
    }
    /// Marks record `index` of the batch as failed.
    pub fn fail(&mut self, index: usize, error: ConnectorError) {
        self.failures.push(RecordFailure { index: index as u32, error });
    }
    /// Marks record `index` as failed, with what the target said as separate
    /// details: keys such as `code`, `message`, `fields` (lower case,
    /// digits, `.`, `_`, `-`; others are dropped by the worker). A worker
    /// older than these details routes the record with the error alone, so
    /// keep the error's message complete too.
    pub fn fail_with_details(&mut self, index: usize, error: ConnectorError, details: &[(&str, &str)]) {
        self.fail(index, error);
        self.details.extend(details.iter().map(|(key, value)| FailureDetail {
            index: index as u32,
            key: (*key).into(),
            value: (*value).into(),
        }));
    }
    pub fn failures(&self) -> &[RecordFailure] {
        self.failures.as_slice()
    }
    /// Every detail, in the order given.
    pub fn details(&self) -> &[FailureDetail] {
        self.details.as_slice()
    }
    /// The details of record `index`.
    pub fn details_of(&self, index: usize) -> impl Iterator<Item = (&str, &str)> {
        self.details.iter().filter(move |d| d.index as usize == index).map(|d| (d.key.as_str(), d.value.as_str()))
    }
    /// The ABI's two halves: the failures `put` returns, and the details the
    /// worker takes after it (`crate::ext`).
    pub fn into_parts(self) -> (abi::PutOutcome, Vec<FailureDetail>) {
        (abi::PutOutcome { failures: self.failures.into() }, self.details)
    }
    /// The worker's side: a `put` result with the details taken after it
    /// (none from a plugin without extensions).
    pub fn from_parts(outcome: abi::PutOutcome, details: Vec<FailureDetail>) -> Self {
        PutOutcome { failures: outcome.failures.into_vec(), details }
    }
}

/// The ABI's types of this module's idiomatic ones.
pub mod abi {
    use abi_stable::{std_types::RVec, StableAbi};

    use super::RecordFailure;

    /// What `FfiSinkTask::put` returns: the records it could not take. The
    /// ABI's half of [`super::PutOutcome`] (its details travel through
    /// `crate::ext`); the name is part of the layout abi_stable checks, so
    /// it stays `PutOutcome`.
    #[repr(C)]
    #[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
    pub struct PutOutcome {
        pub failures: RVec<RecordFailure>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_record_exposes_borrowed_fields() {
        let headers = [HeaderRef { key: "h".into(), value: ROption::RSome(b"v"[..].into()) }];
        let r = SinkRecord::new("t", 3, 42).with_key(Some(b"k")).with_headers(&headers);
        assert_eq!((r.topic(), r.partition(), r.offset()), ("t", 3, 42));
        assert_eq!(r.timestamp(), None);
        assert_eq!(r.key(), Some(&b"k"[..]));
        assert_eq!(r.value(), None);
        assert_eq!(r.headers().collect::<Vec<_>>(), vec![("h", Some(&b"v"[..]))]);
        assert_eq!((r.key_schema_json(), r.value_schema_json()), (None, None));
        let s = r.with_schemas(None, Some(r#"{"type":"int64"}"#));
        assert_eq!(s.value_schema().unwrap().unwrap().kind, crate::schema::SchemaType::Int64);
        assert_eq!(s.position(), "topic t partition 3 offset 42");
    }
}
