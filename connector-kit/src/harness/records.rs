//! Records built by a builder, owned, and borrowed as [`SinkRecord`]s the
//! way the worker lends its buffers.

use abi_stable::std_types::{ROption, RSlice};
use connector_api::{record::HeaderRef, SinkRecord, TopicPartition};

/// A sink record with its own storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub key_schema: Option<String>,
    pub value_schema: Option<String>,
}

impl OwnedRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// The value as text (lossy), `""` for a tombstone.
    pub fn value_text(&self) -> String {
        self.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
    }

    /// The header references a [`SinkRecord`] borrows.
    pub fn header_refs(&self) -> Vec<HeaderRef<'_>> {
        self.headers
            .iter()
            .map(|(k, v)| HeaderRef {
                key: k.as_str().into(),
                value: match v {
                    Some(v) => ROption::RSome(RSlice::from(v.as_slice())),
                    None => ROption::RNone,
                },
            })
            .collect()
    }

    /// The record as the worker hands it, borrowing this record and `headers`
    /// (from [`header_refs`](Self::header_refs)).
    pub fn sink_record<'a>(&'a self, headers: &'a [HeaderRef<'a>]) -> SinkRecord<'a> {
        SinkRecord::new(&self.topic, self.partition, self.offset)
            .with_timestamp(self.timestamp)
            .with_key(self.key.as_deref())
            .with_value(self.value.as_deref())
            .with_headers(headers)
            .with_schemas(self.key_schema.as_deref(), self.value_schema.as_deref())
    }
}

/// Calls `f` with `records` borrowed as one batch of [`SinkRecord`]s.
///
/// ```
/// use connector_kit::harness::{borrow, RecordBuilder};
/// let records = RecordBuilder::new("orders", 0).values(["a", "b"]);
/// let offsets = borrow(&records, |batch| batch.iter().map(|r| r.offset()).collect::<Vec<_>>());
/// assert_eq!(offsets, [0, 1]);
/// ```
pub fn borrow<R>(records: &[OwnedRecord], f: impl FnOnce(&[SinkRecord<'_>]) -> R) -> R {
    let headers: Vec<Vec<HeaderRef<'_>>> = records.iter().map(OwnedRecord::header_refs).collect();
    let batch: Vec<SinkRecord<'_>> = records.iter().zip(&headers).map(|(r, h)| r.sink_record(h)).collect();
    f(&batch)
}

/// Builds records of one partition at consecutive offsets: set the fields of
/// the next record, then [`push`](Self::push) it; or make many at once with
/// [`values`](Self::values) / [`records`](Self::records).
///
/// ```
/// use connector_kit::harness::RecordBuilder;
/// let mut b = RecordBuilder::new("orders", 3).at(100);
/// b.key("k1").value(r#"{"id":1}"#).header("trace", "t-1").timestamp(1_700_000_000_000).push();
/// b.value_schema(r#"{"type":"string"}"#).value("x").push();
/// let records = b.build();
/// assert_eq!((records[0].offset, records[1].offset, records[1].partition), (100, 101, 3));
/// assert_eq!(records[1].key, None, "each record starts empty");
/// ```
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    next: OwnedRecord,
    built: Vec<OwnedRecord>,
}

impl RecordBuilder {
    /// Records of `topic`/`partition`, from offset 0.
    pub fn new(topic: &str, partition: i32) -> Self {
        RecordBuilder {
            next: OwnedRecord {
                topic: topic.to_string(),
                partition,
                offset: 0,
                timestamp: None,
                key: None,
                value: None,
                headers: Vec::new(),
                key_schema: None,
                value_schema: None,
            },
            built: Vec::new(),
        }
    }
    /// The next record's offset (later ones follow it).
    pub fn at(mut self, offset: i64) -> Self {
        self.next.offset = offset;
        self
    }
    /// Skips offsets (a gap, as compaction or transactions leave).
    pub fn skip(&mut self, n: i64) -> &mut Self {
        self.next.offset += n;
        self
    }
    pub fn key(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.next.key = Some(key.into());
        self
    }
    pub fn value(&mut self, value: impl Into<Vec<u8>>) -> &mut Self {
        self.next.value = Some(value.into());
        self
    }
    /// A null value (a tombstone).
    pub fn tombstone(&mut self) -> &mut Self {
        self.next.value = None;
        self
    }
    pub fn header(&mut self, key: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        self.next.headers.push((key.to_string(), Some(value.into())));
        self
    }
    pub fn timestamp(&mut self, millis: i64) -> &mut Self {
        self.next.timestamp = Some(millis);
        self
    }
    pub fn key_schema(&mut self, json: &str) -> &mut Self {
        self.next.key_schema = Some(json.to_string());
        self
    }
    pub fn value_schema(&mut self, json: &str) -> &mut Self {
        self.next.value_schema = Some(json.to_string());
        self
    }
    /// Adds the record being built; the next one starts empty at the next offset.
    pub fn push(&mut self) -> &mut Self {
        let offset = self.next.offset;
        let empty = OwnedRecord {
            offset: offset + 1,
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
            key_schema: None,
            value_schema: None,
            topic: self.next.topic.clone(),
            partition: self.next.partition,
        };
        self.built.push(std::mem::replace(&mut self.next, empty));
        self
    }
    /// The next offset a record would get.
    pub fn next_offset(&self) -> i64 {
        self.next.offset
    }
    /// The records pushed so far, leaving the builder empty (at the next offset).
    pub fn take(&mut self) -> Vec<OwnedRecord> {
        std::mem::take(&mut self.built)
    }
    pub fn build(mut self) -> Vec<OwnedRecord> {
        self.take()
    }
    /// One record per value, at consecutive offsets.
    pub fn values<V: Into<Vec<u8>>>(mut self, values: impl IntoIterator<Item = V>) -> Vec<OwnedRecord> {
        for v in values {
            self.value(v).push();
        }
        self.build()
    }
    /// `n` records, each filled by `fill` (given the builder and the record's offset).
    pub fn records(mut self, n: usize, mut fill: impl FnMut(&mut RecordBuilder, i64)) -> Vec<OwnedRecord> {
        for _ in 0..n {
            let offset = self.next.offset;
            fill(&mut self, offset);
            self.push();
        }
        self.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_records_borrow_as_sink_records() {
        let mut b = RecordBuilder::new("orders", 2).at(10);
        b.key("k").value("v").header("h", "1").timestamp(5).key_schema("{\"type\":\"string\"}").push();
        b.skip(3).tombstone().push();
        let records = b.records(2, |b, o| {
            b.value(format!("n{o}"));
        });
        let seen = borrow(&records, |batch| {
            batch
                .iter()
                .map(|r| {
                    (
                        r.offset(),
                        r.key().map(<[u8]>::to_vec),
                        r.value().map(<[u8]>::to_vec),
                        r.headers().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect::<Vec<_>>(),
                        r.timestamp(),
                        r.key_schema_json().map(str::to_string),
                    )
                })
                .collect::<Vec<_>>()
        });
        let table = [
            (
                10,
                Some(b"k".to_vec()),
                Some(b"v".to_vec()),
                vec![("h".to_string(), Some(b"1".to_vec()))],
                Some(5),
                Some("{\"type\":\"string\"}".to_string()),
            ),
            (14, None, None, vec![], None, None),
            (15, None, Some(b"n15".to_vec()), vec![], None, None),
            (16, None, Some(b"n16".to_vec()), vec![], None, None),
        ];
        assert_eq!(seen, table);
        assert!(records.iter().all(|r| r.topic_partition() == TopicPartition::new("orders", 2)));
        assert_eq!(records[2].value_text(), "n15");
    }
}
