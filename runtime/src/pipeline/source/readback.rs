//! Exactly-once sources without broker transactions (ARCHITECTURE.md,
//! "Exactly-once sources"). Every produced record carries its source
//! partition, source offset and the task's incarnation in headers; the task
//! stores, with its source offsets, the producer-acknowledged position of
//! every topic-partition it writes to. A starting task reads each of those
//! topic-partitions back from the stored position to the end and skips a
//! re-polled record whose (source partition, source offset) is already
//! there: exact membership, not a maximum.
//!
//! The pure parts (headers, positions, the set of records already written)
//! are at the top; `read_back` and `first_positions` are the thin I/O.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Headers, Message},
    Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};

use crate::kafka::KafkaSettings;

/// Header holding the record's source partition (the plugin's JSON text).
pub const HEADER_PARTITION: &str = "__sluice.source.partition";
/// Header holding the record's source offset (the plugin's JSON text).
pub const HEADER_OFFSET: &str = "__sluice.source.offset";
/// Header holding the producing task's incarnation (decimal).
pub const HEADER_INCARNATION: &str = "__sluice.source.incarnation";
/// Header holding the record's place among what its incarnation produced
/// (decimal, from 0): with the incarnation, the order in which records were
/// produced across topic-partitions.
pub const HEADER_SEQUENCE: &str = "__sluice.source.sequence";

/// A topic-partition a task writes to.
pub type TopicPartition = (String, i32);

/// What one task stores beside its source offsets (JSON in the offsets
/// topic under `["__sluice.source.positions", connector, task]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The incarnation of the task that wrote it.
    pub incarnation: u64,
    /// (topic, partition, next Kafka offset to read back from): every record
    /// of this task not covered by its stored source offsets is at or after it.
    pub positions: Vec<(String, i32, i64)>,
}

/// The read-back positions: topic-partition → the first Kafka offset that
/// may hold a record whose source offset was not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(pub BTreeMap<TopicPartition, i64>);

impl Positions {
    /// Where a starting task reads back from, given every task's stored
    /// record: the lowest position per topic-partition (another task, or an
    /// earlier task count, may have written there last), and an incarnation
    /// above every stored one (clocks of two hosts may disagree).
    pub fn start(stored: &[Stored], now_ms: u64) -> (Positions, u64) {
        let mut positions = BTreeMap::new();
        let mut incarnation = now_ms;
        for s in stored {
            incarnation = incarnation.max(s.incarnation + 1);
            for (topic, partition, next) in &s.positions {
                let entry = positions.entry((topic.clone(), *partition)).or_insert(*next);
                *entry = (*entry).min(*next);
            }
        }
        (Positions(positions), incarnation)
    }

    /// A delivery report: the record at `offset` is acknowledged.
    pub fn acked(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self.0.entry((topic.to_string(), partition)).or_insert(offset + 1);
        *entry = (*entry).max(offset + 1);
    }

    /// Whether the task already knows where `topic` is read back from.
    pub fn knows_topic(&self, topic: &str) -> bool {
        self.0.keys().any(|(t, _)| t == topic)
    }

    /// What the task stores: its positions, held back to the read-back
    /// records not re-polled yet (`Seen::holds`).
    pub fn to_stored(&self, incarnation: u64, seen: &Seen) -> Stored {
        let holds = seen.holds();
        let positions = self
            .0
            .iter()
            .map(|((t, p), n)| (t.clone(), *p, holds.get(&(t.clone(), *p)).map_or(*n, |h| (*h).min(*n))))
            .collect();
        Stored { incarnation, positions }
    }
}

/// The (source partition, source offset) pairs earlier incarnations wrote
/// past the stored positions.
#[derive(Debug, Default)]
pub struct Seen(BTreeMap<(String, String), Written>);

/// Where a read-back record is, and when it was produced.
#[derive(Debug, Clone)]
struct Written {
    at: TopicPartition,
    offset: i64,
    /// (incarnation, sequence), if the record has both headers.
    order: Option<(u64, u64)>,
}

impl Seen {
    /// A record read back at `at` (topic-partition, Kafka offset): `headers`
    /// are its headers (key, value).
    pub fn read<'a>(&mut self, at: (&str, i32, i64), headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) {
        let (mut partition, mut offset, mut incarnation, mut sequence) = (None, None, None, None);
        let number = |v: Option<&[u8]>| v.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        for (key, value) in headers {
            match key {
                HEADER_PARTITION => partition = value,
                HEADER_OFFSET => offset = value,
                HEADER_INCARNATION => incarnation = number(value),
                HEADER_SEQUENCE => sequence = number(value),
                _ => {}
            }
        }
        // A record without both headers was not written by an exactly-once
        // source task (another producer, or the key turned off): nothing to skip.
        if let (Some(p), Some(o)) = (partition, offset) {
            let pair = (String::from_utf8_lossy(p).into_owned(), String::from_utf8_lossy(o).into_owned());
            let order = incarnation.zip(sequence);
            self.0.entry(pair).or_insert(Written { at: (at.0.to_string(), at.1), offset: at.2, order });
        }
    }

    /// Whether the polled record (source partition, source offset) is
    /// already in Kafka; a hit is forgotten (a source offset names one
    /// record, so it cannot come again).
    pub fn already_written(&mut self, partition: &str, offset: &str) -> bool {
        !self.0.is_empty() && self.0.remove(&(partition.to_string(), offset.to_string())).is_some()
    }

    /// Where each topic-partition must still be read back from for the
    /// records not re-polled yet: their source offsets are not stored, so a
    /// position past them would let the next incarnation produce them again.
    pub fn holds(&self) -> BTreeMap<TopicPartition, i64> {
        let mut holds: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for w in self.0.values() {
            let entry = holds.entry(w.at.clone()).or_insert(w.offset);
            *entry = (*entry).min(w.offset);
        }
        holds
    }

    /// Forgets the read-back records the stored source offsets already
    /// cover: they will not be polled again, so they must not hold the
    /// positions back. Per source partition, the record carrying the stored
    /// offset and every one of that partition produced before it (by
    /// incarnation, then sequence: the source's order, as records are
    /// re-read in the same order and each is in Kafka once) are covered.
    /// A stored offset not among the records read back was written before
    /// the positions, so every record of its partition read back is after it.
    /// `stored`: source partition (as JSON, any spelling) → offset text.
    pub fn drop_covered(&mut self, stored: &BTreeMap<String, String>) {
        let stored: BTreeMap<String, &str> = stored.iter().map(|(p, o)| (normalise(p), o.as_str())).collect();
        let mut upto: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((partition, offset), w) in &self.0 {
            let key = normalise(partition);
            if stored.get(&key) == Some(&offset.as_str()) {
                if let Some(order) = w.order {
                    upto.insert(key, order);
                }
            }
        }
        self.0.retain(|(partition, _), w| match (upto.get(&normalise(partition)), w.order) {
            (Some(limit), Some(order)) => order > *limit,
            _ => true,
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// A source partition's JSON text in one spelling (the offsets topic keeps
/// it re-encoded; a record's header keeps the plugin's text).
fn normalise(partition: &str) -> String {
    serde_json::from_str::<serde_json::Value>(partition).map_or_else(|_| partition.to_string(), |v| v.to_string())
}

/// `message.timeout.ms` of an exactly-once source's producer, from the
/// worker's session timeout (the takeover time: a task moves one session
/// timeout after its worker's last heartbeat, sent every quarter of it): a
/// record queued just before a pause, up to a quarter after the last
/// heartbeat, expires at half, a quarter before any new owner starts.
pub fn message_timeout_ms(session_timeout_ms: u32) -> String {
    (session_timeout_ms / 2).to_string()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How long the read-back may go without a record or end-of-partition before
/// the task fails (and is restarted with backoff).
const STALL: Duration = Duration::from_secs(60);

/// Reads every topic-partition of `positions` from its position to its end
/// and returns what is there, with the positions moved to the ends (all of
/// it is now known to this incarnation).
///
/// The end is the end-of-partition a fetch reports (the fetch response's high
/// watermark), not ListOffsets: measured on the test broker, ListOffsets
/// answered the last batch's base offset + 1 while fetches reported the true
/// end (`tests/tests/broker_contract.rs` checks both).
pub fn read_back(settings: &KafkaSettings, group: &str, positions: &Positions) -> anyhow::Result<(Seen, Positions)> {
    let mut seen = Seen::default();
    let mut ends = positions.clone();
    let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((topic, partition), next) in &positions.0 {
        topics.entry(topic.as_str()).or_default().push((*partition, *next));
    }
    // One consumer per topic: an end-of-partition event names only the partition.
    for (topic, partitions) in topics {
        let consumer: BaseConsumer = settings.consumer(group).set("enable.partition.eof", "true").create()?;
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in &partitions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        consumer.assign(&tpl)?;
        let mut open: BTreeSet<i32> = partitions.iter().map(|(p, _)| *p).collect();
        let mut progress = Instant::now();
        while !open.is_empty() {
            anyhow::ensure!(
                progress.elapsed() < STALL,
                "reading back {topic} (what earlier incarnations wrote): no record and no end of partitions {open:?} \
                 for {}s",
                STALL.as_secs()
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
            progress = Instant::now();
            match message {
                Ok(m) => {
                    let headers: Vec<(&str, Option<&[u8]>)> =
                        m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
                    seen.read((m.topic(), m.partition(), m.offset()), headers);
                    ends.acked(m.topic(), m.partition(), m.offset());
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    open.remove(&partition);
                }
                Err(e) => anyhow::bail!("reading back {topic} (what earlier incarnations wrote): {e}"),
            }
        }
    }
    Ok((seen, ends))
}

/// Where a topic the task has not written to yet is read back from, should
/// the task die before its first store: the broker's ListOffsets high
/// watermark, a lower bound of the end (measured on the test broker: the
/// last batch's base offset + 1; exact on Kafka), so nothing written after
/// this call is missed.
pub fn first_positions(settings: &KafkaSettings, group: &str, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let consumer: BaseConsumer = settings.consumer(group).create()?;
    // A topic just created may take a moment to appear in every broker's metadata.
    let deadline = Instant::now() + STALL;
    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !partitions.is_empty() {
            break partitions;
        }
        anyhow::ensure!(Instant::now() < deadline, "topic {topic} has no partitions in the metadata");
        std::thread::sleep(Duration::from_millis(200));
    };
    partitions.into_iter().map(|p| Ok((p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(p: &'a str, o: &'a str) -> Vec<(&'a str, Option<&'a [u8]>)> {
        ordered(p, o, "7", "0")
    }

    fn ordered<'a>(p: &'a str, o: &'a str, incarnation: &'a str, seq: &'a str) -> Vec<(&'a str, Option<&'a [u8]>)> {
        vec![
            ("user", Some(b"x".as_slice())),
            (HEADER_PARTITION, Some(p.as_bytes())),
            (HEADER_OFFSET, Some(o.as_bytes())),
            (HEADER_INCARNATION, Some(incarnation.as_bytes())),
            (HEADER_SEQUENCE, Some(seq.as_bytes())),
        ]
    }

    /// Records the stored offsets cover (a death after the offsets were
    /// stored, before the positions) are forgotten, so they do not hold the
    /// positions back for ever; the ones after them are kept. The order is
    /// the producing incarnation and sequence, across topic-partitions, not
    /// the Kafka offset or the offset text.
    #[test]
    fn records_the_stored_offsets_cover_are_forgotten() {
        let mut seen = Seen::default();
        // Partition {"t":"a"} (written as the plugin spells it): incarnation
        // 5 wrote 10, 11 (on two topic-partitions), then 9 ("9" > "10" as
        // text: order is not the text); incarnation 6 wrote 12.
        seen.read(("t", 1, 40), ordered(r#"{ "t": "a" }"#, "10", "5", "0"));
        seen.read(("t", 0, 40), ordered(r#"{ "t": "a" }"#, "11", "5", "1"));
        seen.read(("t", 1, 41), ordered(r#"{ "t": "a" }"#, "9", "5", "2"));
        seen.read(("t", 0, 41), ordered(r#"{ "t": "a" }"#, "12", "6", "0"));
        // Partition b: its stored offset was not read back (stored earlier).
        seen.read(("t", 0, 42), ordered("\"b\"", "3", "6", "1"));
        let stored: BTreeMap<String, String> =
            [(r#"{"t":"a"}"#.to_string(), "11".to_string()), ("\"b\"".to_string(), "2".to_string())].into();
        seen.drop_covered(&stored);
        let left: Vec<(&str, i64)> = seen.0.iter().map(|((_, o), w)| (o.as_str(), w.offset)).collect();
        assert_eq!(left, vec![("3", 42), ("12", 41), ("9", 41)]);
        assert_eq!(seen.holds(), [(("t".to_string(), 0), 41), (("t".to_string(), 1), 41)].into());
    }

    /// The skip decision is exact membership: a record re-polled is skipped
    /// only if that very (partition, offset) was read back, not because a
    /// later offset of its partition was (a gap left by a failed delivery
    /// is produced again).
    #[test]
    fn a_re_polled_record_is_skipped_only_if_that_exact_record_was_read_back() {
        let mut seen = Seen::default();
        for (at, (p, o)) in
            [(r#"{"t":"a"}"#, "1"), (r#"{"t":"a"}"#, "3"), (r#"{"t":"b"}"#, "2")].into_iter().enumerate()
        {
            seen.read(("t", 0, at as i64), headers(p, o));
        }
        // Records without both headers (another producer, or written with
        // the key off) are not remembered.
        seen.read(("t", 0, 3), vec![(HEADER_PARTITION, Some(br#"{"t":"a"}"#.as_slice()))]);
        seen.read(("t", 0, 4), vec![(HEADER_OFFSET, Some(b"2".as_slice()))]);
        assert_eq!(seen.len(), 3);
        let polled = [(r#"{"t":"a"}"#, "1"), (r#"{"t":"a"}"#, "2"), (r#"{"t":"a"}"#, "3"), (r#"{"t":"a"}"#, "4")];
        let skipped: Vec<bool> = polled.iter().map(|(p, o)| seen.already_written(p, o)).collect();
        assert_eq!(skipped, [true, false, true, false]);
        // A hit is forgotten; the other partition's record is still there.
        assert!(!seen.already_written(r#"{"t":"a"}"#, "1"));
        assert!(seen.already_written(r#"{"t":"b"}"#, "2"));
    }

    /// A starting task reads each topic-partition back from the lowest
    /// position any task stored there, and its incarnation is above every
    /// stored one even when this host's clock is behind.
    #[test]
    fn the_start_takes_the_lowest_position_and_a_higher_incarnation() {
        let stored = [
            Stored { incarnation: 500, positions: vec![("t".into(), 0, 10), ("t".into(), 1, 4)] },
            Stored { incarnation: 900, positions: vec![("t".into(), 0, 7), ("dlq".into(), 0, 2)] },
        ];
        let (positions, incarnation) = Positions::start(&stored, 100);
        let expected: BTreeMap<TopicPartition, i64> =
            [(("dlq".into(), 0), 2), (("t".into(), 0), 7), (("t".into(), 1), 4)].into();
        assert_eq!(positions.0, expected);
        assert_eq!(incarnation, 901, "above every stored incarnation although the clock says 100");
        assert_eq!(Positions::start(&stored, 5_000).1, 5_000);
        assert_eq!(Positions::start(&[], 42), (Positions::default(), 42));
    }

    /// Delivery reports move a position to one past the acknowledged record,
    /// never back (reports of one partition may be seen out of order across
    /// polls' waits), and a new topic-partition appears with its first report.
    #[test]
    fn acknowledgements_move_positions_forward_only() {
        let mut positions = Positions::default();
        assert!(!positions.knows_topic("t"));
        positions.acked("t", 0, 5);
        positions.acked("t", 0, 3);
        positions.acked("t", 1, 0);
        assert!(positions.knows_topic("t"));
        let stored = positions.to_stored(9, &Seen::default());
        assert_eq!(stored, Stored { incarnation: 9, positions: vec![("t".into(), 0, 6), ("t".into(), 1, 1)] });
        let json = serde_json::to_string(&stored).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Stored>(&json).ok(), Some(stored));
    }

    /// A paused producer's records expire before the takeover (default
    /// session timeout 10 s: 5 s, a quarter of the session to spare after
    /// the last heartbeat's quarter).
    #[test]
    fn queued_records_expire_before_a_takeover() {
        for session in [10_000u32, 6_000, 45_000] {
            let timeout: u32 = message_timeout_ms(session).parse().unwrap_or(u32::MAX);
            assert!(session / 4 + timeout < session, "{session}: {timeout}");
        }
        assert_eq!(message_timeout_ms(10_000), "5000");
    }

    /// A stored position never passes a read-back record that was not
    /// re-polled yet: were the task to die then, the next incarnation must
    /// still find it (and not produce it a third time).
    #[test]
    fn a_stored_position_is_held_at_the_first_record_not_re_polled_yet() {
        let mut seen = Seen::default();
        seen.read(("t", 0, 4), headers("p", "1"));
        seen.read(("t", 0, 5), headers("p", "2"));
        seen.read(("dlq", 0, 0), headers("q", "9"));
        let mut positions = Positions::default();
        for (topic, offset) in [("t", 5), ("t", 20), ("dlq", 0), ("u", 3)] {
            positions.acked(topic, 0, offset);
        }
        let held = |seen: &Seen| positions.to_stored(1, seen).positions;
        assert_eq!(held(&seen), vec![("dlq".into(), 0, 0), ("t".into(), 0, 4), ("u".into(), 0, 4)]);
        assert!(seen.already_written("p", "1"));
        assert_eq!(held(&seen), vec![("dlq".into(), 0, 0), ("t".into(), 0, 5), ("u".into(), 0, 4)]);
        assert!(seen.already_written("p", "2") && seen.already_written("q", "9"));
        assert_eq!(held(&seen), vec![("dlq".into(), 0, 1), ("t".into(), 0, 21), ("u".into(), 0, 4)]);
    }
}
