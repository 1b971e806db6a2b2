//! The sink task: routes records to one open object per (Kafka partition,
//! encoded partition), rotates objects, and reports as committable only what
//! completed objects hold.
//!
//! Invariant: for every Kafka partition, the offset `pre_commit` reports is
//! `min(start offset of every object still open or completing, next offset
//! handed over)`. Records before it are in completed objects (written by
//! this task, or found there by `recovery` and skipped), were ignored (null
//! values with `ignore`), or were reported as failed (the runtime settles
//! those through the DLQ).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use connector_api::{
    ConnectorError, ErrorKind, Host, PutOutcome, SinkContext, SinkRecord, SinkTask, TopicPartition,
    TopicPartitionOffset,
};
use serde_json::Value;
use tokio::{runtime::Runtime, sync::Semaphore};

use crate::{
    completion::Completing,
    config::{Compression, Format, S3SinkConfig},
    format::{Body, RecordEncoder, Stream},
    gzip::GzipPool,
    naming::Naming,
    parquet_format::ParquetObject,
    partitioner::{Partitioner, RecordView, TimestampExtractor},
    recovery::{self, Covered, CoveredObject, Decision, OffsetRange},
    rotation,
    take::{self, Again, Fill, Limits, Taken},
    upload::{self, ObjectUpload, Uploader},
};

type Tp = (String, i32);

/// Why a record was not taken: a bad record (reported failed, the object
/// unchanged) or a task-level failure.
enum Refusal {
    Bad(String),
    Task(ConnectorError),
}

impl From<ConnectorError> for Refusal {
    fn from(e: ConnectorError) -> Self {
        Refusal::Task(e)
    }
}

/// One object being written.
struct Writer {
    start_offset: i64,
    end_offset: i64,
    records: u64,
    /// Uncompressed bytes written (for `s3.object.max.bytes`).
    raw_bytes: u64,
    /// Record time of the first record (for `rotate.interval.ms`).
    first_time: Option<i64>,
    /// Wall-clock deadline (for `rotate.schedule.interval.ms`).
    deadline: Option<i64>,
    /// Open order, to rotate the oldest when `s3.max.open.files` is reached.
    seq: u64,
    body: Option<Body>,
    upload: ObjectUpload,
}

/// What earlier incarnations left in S3 for a partition (`recovery`).
#[derive(Default)]
enum Recovery {
    /// Not looked yet: the first record handed over lists the objects.
    #[default]
    Unknown,
    /// Re-delivered records up to the covered end are checked.
    Active(Covered),
    /// Past every object found (or exactly-once objects are off).
    Done,
}

#[derive(Default)]
struct PartitionState {
    recovery: Recovery,
    /// The offset after the last record handed over (accepted, ignored or failed).
    next_offset: Option<i64>,
    /// Open objects by encoded partition.
    writers: BTreeMap<String, Writer>,
    /// Rotated objects not yet completed, oldest first. They hold the
    /// partition's committable offset back until S3 has them.
    completing: Vec<Completing>,
    /// Records reported as failed, re-reported if a batch is re-delivered
    /// after a retriable error (so none is silently taken as accepted).
    failed: BTreeMap<i64, ConnectorError>,
}

impl PartitionState {
    fn committable(&self) -> Option<i64> {
        let next = self.next_offset?;
        let open =
            self.writers.values().map(|w| w.start_offset).chain(self.completing.iter().map(|c| c.start_offset)).min();
        Some(open.map_or(next, |o| o.min(next)))
    }
}

pub struct S3SinkTask {
    rt: Runtime,
    cfg: Arc<S3SinkConfig>,
    up: Uploader,
    naming: Naming,
    encoder: RecordEncoder,
    host: Host,
    partitions: BTreeMap<Tp, PartitionState>,
    seq: u64,
    /// Scratch buffer for one encoded record.
    line: Vec<u8>,
    /// Compression threads (gzip objects only).
    gzip: Option<Arc<GzipPool>>,
    context: SinkContext,
    /// Partitions rewound (`seek`) in this call: their remaining records of
    /// the current batch come again from the seek offset.
    rewound: BTreeSet<Tp>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl S3SinkTask {
    pub fn new(cfg: S3SinkConfig, host: Host, context: SinkContext) -> Result<Self, ConnectorError> {
        // The task owns its runtime (never the worker's): two workers run the
        // background part uploads while `put` blocks on the rest.
        let rt = connector_kit::runtime::multi_thread("s3-sink-io", 2)?;
        let client = rt.block_on(upload::client(&cfg));
        let naming = Naming::new(&cfg);
        let up = Uploader {
            client,
            bucket: cfg.bucket.clone(),
            permits: Arc::new(Semaphore::new(cfg.upload_concurrency)),
            // Every object records its offsets and is created only if its
            // name is free; a re-delivery skips what earlier objects hold
            // (`recovery`), whatever cut them.
            conditional: cfg.conditional_writes,
            marker_prefix: naming.range_marker_key(""),
            tagging: cfg.tagging.clone().map(Arc::new),
            unsigned_payloads: !upload::signs_payloads(cfg.endpoint.as_deref()),
            security: Arc::new(cfg.security.clone()),
        };
        if !cfg.conditional_writes && !cfg.deterministic() {
            host.info(
                "S3 sink rotation is not deterministic (wall clock or open-file limit) and enable.conditional.writes=false: delivery is at-least-once",
                &[("bucket", &cfg.bucket)],
            );
        }
        let gzip = match (cfg.format, cfg.compression) {
            (Format::Json | Format::Bytes, Compression::Gzip) => Some(
                GzipPool::new().map_err(|e| ConnectorError::fatal(format!("cannot start the gzip threads: {e}")))?,
            ),
            _ => None,
        };
        Ok(S3SinkTask {
            gzip,
            rt,
            naming,
            encoder: RecordEncoder::new(cfg.format, cfg.bytes_separator.clone(), cfg.values_are_checked_json),
            up,
            cfg: Arc::new(cfg),
            host,
            partitions: BTreeMap::new(),
            seq: 0,
            line: Vec::new(),
            context,
            rewound: BTreeSet::new(),
        })
    }

    fn record_time(&self, record: &SinkRecord<'_>, json: Option<&Value>) -> Option<i64> {
        // rotate.interval.ms runs on record time: the time partitioner's
        // extractor when there is one, else the Kafka record timestamp.
        match &self.cfg.partitioner {
            Partitioner::Time(spec) if spec.extractor != TimestampExtractor::Wallclock => spec
                .extractor
                .extract(&RecordView { partition: record.partition(), timestamp: record.timestamp(), json, now_ms: 0 })
                .ok(),
            _ => record.timestamp(),
        }
    }

    fn schedule_deadline(&self, now: i64) -> Option<i64> {
        let interval = self.cfg.rotate_schedule_ms?;
        Some(rotation::schedule_deadline(now, interval, &self.cfg.zone))
    }

    /// Takes one record; an `Err` is a task-level failure. `now` is the wall
    /// clock of the batch (read once per put: per record it was a few
    /// percent of the task's CPU).
    fn take(&mut self, r: &SinkRecord<'_>, now: i64) -> Result<Taken, ConnectorError> {
        match self.write_record(r, now) {
            Ok(taken) => Ok(taken),
            Err(Refusal::Bad(message)) => Ok(Taken::Bad(message)),
            Err(Refusal::Task(e)) => Err(e),
        }
    }

    fn write_record(&mut self, r: &SinkRecord<'_>, now: i64) -> Result<Taken, Refusal> {
        let cfg = Arc::clone(&self.cfg);
        let value = r.value();
        if value.is_none() {
            if let Some(taken) = take::on_null(cfg.null_behavior) {
                return Ok(taken);
            }
        }
        // Parquet rows are parsed into their columns directly; a `Value` is
        // built only for a partitioner reading fields (or a schema to infer).
        let json = match (value, cfg.partitioner.needs_json()) {
            (Some(v), true) => Some(serde_json::from_slice::<Value>(v).map_err(|e| {
                Refusal::Bad(format!("value is not JSON ({e}) but partitioner.class needs a JSON value"))
            })?),
            _ => None,
        };
        let encoded = if value.is_none() {
            cfg.tombstone_partition.clone()
        } else {
            let view =
                RecordView { partition: r.partition(), timestamp: r.timestamp(), json: json.as_ref(), now_ms: now };
            cfg.partitioner.encode(&view, &cfg.directory_delim).map_err(Refusal::Bad)?
        };
        self.line.clear();
        self.encoder.encode(value, &mut self.line).map_err(Refusal::Bad)?;
        let time = self.record_time(r, json.as_ref());
        let tp: Tp = (r.topic().to_string(), r.partition());

        if self.covered(&tp, &encoded, r.offset()) {
            // In S3 already: the open object of this path ends here, where
            // the earlier object begins, so no object's range spans another's.
            self.rotate(&tp, &encoded)?;
            self.host.counter(
                "s3_sink_records_skipped_total",
                "Re-delivered records skipped: an earlier object holds them",
                &[],
                1.0,
            );
            return Ok(Taken::Ignored);
        }

        // Record-time rotation happens before the record: it starts the next object.
        let due = self
            .partitions
            .get(&tp)
            .and_then(|s| s.writers.get(&encoded))
            .is_some_and(|w| rotation::due_before(cfg.rotate_interval_ms, w.first_time, time));
        if due {
            self.rotate(&tp, &encoded)?;
        }
        let exists = self.partitions.get(&tp).is_some_and(|s| s.writers.contains_key(&encoded));
        if !exists {
            self.open_object(r, &tp, &encoded, json.as_ref(), time, now)?;
        }
        self.write_into(r, &tp, &encoded)?;
        Ok(Taken::Accepted)
    }

    /// Opens the object `r` starts (rotating the oldest first at `s3.max.open.files`).
    fn open_object(
        &mut self,
        r: &SinkRecord<'_>,
        tp: &Tp,
        encoded: &str,
        json: Option<&Value>,
        time: Option<i64>,
        now: i64,
    ) -> Result<(), Refusal> {
        if let Some(max) = self.cfg.max_open_files {
            while self.open_files() >= max {
                let Some((otp, oenc)) = self.oldest() else { break };
                self.rotate(&otp, &oenc)?;
            }
        }
        let body = self.new_body(json, r.value())?;
        self.seq += 1;
        let mut upload = ObjectUpload::new(self.naming.object_key(encoded, r.topic(), r.partition(), r.offset()));
        if self.cfg.conditional_writes {
            // Unique per object and run: two runs' uploads of one name never
            // share a marker.
            let run = self.context.incarnation();
            upload.range_id = Some(format!("{}+{}+{}-{run}-{}", r.topic(), r.partition(), r.offset(), self.seq));
        }
        let writer = Writer {
            start_offset: r.offset(),
            end_offset: r.offset(),
            records: 0,
            raw_bytes: 0,
            first_time: time,
            deadline: self.schedule_deadline(now),
            seq: self.seq,
            body: Some(body),
            upload,
        };
        self.partitions.entry(tp.clone()).or_default().writers.insert(encoded.to_string(), writer);
        Ok(())
    }

    fn new_body(&self, json: Option<&Value>, value: Option<&[u8]>) -> Result<Body, Refusal> {
        let cfg = &self.cfg;
        Ok(match cfg.format {
            Format::Parquet => {
                let schema = take::parquet_schema(cfg.parquet_schema.as_ref(), json, value).map_err(Refusal::Bad)?;
                // Row groups of half a part of values: an open object holds
                // its buffered rows and its encoded bytes until a part is
                // full, and eight of them had to fit in the worker's memory.
                let object = ParquetObject::new(schema, cfg.parquet_codec, cfg.part_size / 2)
                    .map_err(|e| ConnectorError::config(format!("parquet.schema: {e}")))?;
                Body::Parquet(Box::new(object))
            }
            _ => {
                Body::Lines(Box::new(Stream::new(cfg.compression, cfg.compression_level, self.gzip.as_ref()).map_err(
                    |e| ConnectorError::fatal(format!("cannot start the s3.compression.type compressor: {e}")),
                )?))
            }
        })
    }

    /// Writes the encoded record into its open object; cuts a part or
    /// closes the object when it is due (invariant 4).
    fn write_into(&mut self, r: &SinkRecord<'_>, tp: &Tp, encoded: &str) -> Result<(), Refusal> {
        let limits = Limits {
            part_size: self.cfg.part_size,
            flush_size: self.cfg.flush_size,
            max_object_bytes: self.cfg.max_object_bytes,
        };
        let state = self.partitions.entry(tp.clone()).or_default();
        let Some(w) = state.writers.get_mut(encoded) else {
            return Err(ConnectorError::fatal("internal: open object vanished").into());
        };
        let Some(body) = w.body.as_mut() else {
            return Err(ConnectorError::fatal("internal: open object has no body").into());
        };
        let raw = match body {
            Body::Lines(stream) => {
                stream
                    .write(&self.line)
                    .map_err(|e| ConnectorError::fatal(format!("compressing into {}: {e}", w.upload.key)))?;
                self.line.len()
            }
            Body::Parquet(object) => {
                let Some(v) = r.value() else {
                    return Err(Refusal::Bad("a null value cannot be a parquet row".into()));
                };
                if let Err(e) = object.push_json(v) {
                    // Nothing was added: the record is bad, the object unchanged.
                    return Err(Refusal::Bad(format!("value is not a parquet row of this object: {e}")));
                }
                v.len()
            }
        };
        w.records += 1;
        w.raw_bytes += raw as u64;
        w.end_offset = r.offset();
        let pending =
            body.pending().map_err(|e| ConnectorError::fatal(format!("compressing into {}: {e}", w.upload.key)))?;
        let fill = Fill { records: w.records, raw_bytes: w.raw_bytes, pending, parts: w.upload.parts() };
        let next = take::after_write(fill, limits);
        if next.push_part {
            w.upload.push_part(body.take());
        }
        // From here on the record is accepted: a failure below is retried
        // without taking it again.
        state.next_offset = Some(r.offset() + 1);
        if next.rotate {
            // Rotation moves the object to `completing` even when it fails, so
            // no later record can join a full object (invariant 4); finishing
            // sends the queued parts too.
            self.rotate(tp, encoded)?;
        } else {
            w.upload.pump(&self.rt, &self.up)?;
        }
        Ok(())
    }

    fn open_files(&self) -> usize {
        self.partitions.values().map(|s| s.writers.len()).sum()
    }

    fn oldest(&self) -> Option<(Tp, String)> {
        self.partitions
            .iter()
            .flat_map(|(tp, s)| s.writers.iter().map(move |(enc, w)| (w.seq, tp, enc)))
            .min_by_key(|(seq, _, _)| *seq)
            .map(|(_, tp, enc)| (tp.clone(), enc.clone()))
    }

    /// Closes an object: ends its body and completes it in the background.
    /// Until S3 has it, the object holds the partition's offset back.
    fn rotate(&mut self, tp: &Tp, encoded: &str) -> Result<(), ConnectorError> {
        let Some(state) = self.partitions.get_mut(tp) else { return Ok(()) };
        let Some(w) = state.writers.remove(encoded) else { return Ok(()) };
        let Writer { start_offset, end_offset, records, body, mut upload, .. } = w;
        let range =
            OffsetRange { topic: tp.0.clone(), partition: tp.1, first: start_offset, last: end_offset, records };
        self.seq += 1;
        if let Some(Err(e)) = body.map(|b| b.finish().map(|tail| upload.set_tail(tail))) {
            let err = ConnectorError::fatal(format!("finishing {}: {e}", upload.key));
            state.completing.push(Completing::lost(upload.key.clone(), range, records, self.seq, err.clone()));
            return Err(err);
        }
        state.completing.push(Completing::start(&self.rt, &self.up, upload, range, records, self.seq));
        // Each running completion holds its last part: bound them like part uploads.
        while self.running_completions() > self.cfg.upload_concurrency {
            self.wait_oldest_completion();
        }
        Ok(())
    }

    fn running_completions(&self) -> usize {
        self.partitions.values().flat_map(|s| &s.completing).filter(|c| c.is_running()).count()
    }

    fn wait_oldest_completion(&mut self) {
        let oldest = self
            .partitions
            .iter()
            .flat_map(|(tp, s)| s.completing.iter().filter(|c| c.is_running()).map(move |c| (c.seq, tp)))
            .min_by_key(|(seq, _)| *seq)
            .map(|(seq, tp)| (seq, tp.clone()));
        if let Some((seq, tp)) = oldest {
            self.settle(&tp, |c| c.seq == seq);
        }
    }

    /// Collects the background completions of `tp` that already ended, and
    /// waits for those `wait_for` selects; completed objects are dropped.
    fn settle(&mut self, tp: &Tp, wait_for: impl Fn(&Completing) -> bool) {
        let Some(state) = self.partitions.get_mut(tp) else { return };
        for c in &mut state.completing {
            let wait = wait_for(c);
            c.collect(&self.rt, &self.host, wait);
        }
        state.completing.retain(|c| !c.is_done());
    }

    /// Collects ended completions of every partition, then retries failed ones
    /// (blocking, oldest first): an error here means records must wait.
    fn complete_pending(&mut self) -> Result<(), ConnectorError> {
        let tps: Vec<Tp> =
            self.partitions.iter().filter(|(_, s)| !s.completing.is_empty()).map(|(tp, _)| tp.clone()).collect();
        for tp in tps {
            self.settle(&tp, |_| false);
            let Some(state) = self.partitions.get_mut(&tp) else { continue };
            let result = state.completing.iter_mut().try_for_each(|c| c.retry(&self.rt, &self.up, &self.host));
            state.completing.retain(|c| !c.is_done());
            if let Some((key, theirs)) =
                state.completing.iter().find_map(|c| c.conflict().map(|t| (c.key.clone(), t.cloned())))
            {
                self.rewind(&tp, &key, theirs.as_ref());
                continue;
            }
            result?;
        }
        Ok(())
    }

    /// A conditional completion lost its name to an object holding other
    /// offsets (a former owner completed late, after this task looked):
    /// drop the partition's objects, and read it again from its committable
    /// offset, checking it against S3 anew.
    fn rewind(&mut self, tp: &Tp, key: &str, theirs: Option<&OffsetRange>) {
        let back = self.partitions.get(tp).and_then(|s| s.committable());
        let theirs = theirs.map_or_else(|| "unknown".to_string(), |r| format!("{}..={}", r.first, r.last));
        self.host.warn(
            "S3 object name taken by an object with other offsets (a former owner's late completion); re-reading the partition",
            &[("key", key), ("their offsets", &theirs), ("topic", &tp.0), ("partition", &tp.1.to_string())],
        );
        self.abort_partition(tp);
        if let Some(offset) = back {
            self.context.seek(&TopicPartition::new(tp.0.as_str(), tp.1), offset);
            self.rewound.insert(tp.clone());
        }
    }

    /// Whether the record at `offset` under `path` is in an object an earlier
    /// incarnation completed (only while the re-delivery lasts).
    fn covered(&self, tp: &Tp, path: &str, offset: i64) -> bool {
        match self.partitions.get(tp).map(|s| &s.recovery) {
            Some(Recovery::Active(c)) => c.decide(path, offset) == Decision::Skip,
            _ => false,
        }
    }

    /// Tags a found object again (`s3.object.tagging`): its run may have
    /// died between completing and tagging it, and its records are skipped
    /// now, so this is the last chance.
    fn retag(&self, key: &str, range: &OffsetRange) -> Result<(), ConnectorError> {
        let Some(tagging) = &self.up.tagging else { return Ok(()) };
        let tags = tagging.for_object(range.first, range.last, range.records);
        let mut existing = ObjectUpload::existing(key.to_string());
        self.rt.block_on(existing.finish(&self.up, &tags, None, range))?;
        if let Some(why) = &existing.tagging_skipped {
            self.host.warn(
                "S3 object written but not tagged (s3.object.behavior.on.tagging.error=ignore)",
                &[("key", key), ("error", why)],
            );
        }
        Ok(())
    }

    /// Looks, before a partition's first record, for the objects earlier
    /// incarnations completed from `first` on: lists the partition's objects
    /// (the topic's, unless the default partitioner),
    /// HEADs the candidates for their ranges (`recovery::candidates`).
    fn recover(&mut self, tp: &Tp, first: i64) -> Result<Recovery, ConnectorError> {
        if !self.cfg.conditional_writes {
            return Ok(Recovery::Done);
        }
        let prefix = self.naming.listing_prefix(&self.cfg.partitioner, &tp.0, tp.1);
        let keys = upload::list_keys(&self.rt, &self.up, &prefix)?;
        let listed: BTreeMap<(String, i64), String> =
            keys.into_iter().filter_map(|k| self.naming.parse(&k, &tp.0, tp.1).map(|ps| (ps, k))).collect();
        let names: Vec<(String, i64)> = listed.keys().cloned().collect();
        let mut objects = Vec::new();
        for (path, start) in recovery::candidates(&names, first) {
            let Some(key) = listed.get(&(path.clone(), start)) else { continue };
            match self.rt.block_on(upload::head_range(&self.up, key))? {
                Some(r) if r.topic == tp.0 && r.partition == tp.1 && r.last >= first => {
                    self.retag(key, &r)?;
                    objects.push(CoveredObject { path, first: r.first, last: r.last })
                }
                Some(_) => {}
                None => self.host.warn(
                    "S3 object records no offset range (written before ranges were recorded): a re-delivery does not check it",
                    &[("key", key)],
                ),
            }
        }
        if objects.is_empty() {
            return Ok(Recovery::Done);
        }
        let any_path =
            matches!(&self.cfg.partitioner, Partitioner::Time(t) if t.extractor == TimestampExtractor::Wallclock);
        let covered = Covered::new(objects, any_path);
        let (count, end) = (names.len().to_string(), covered.end().unwrap_or(first).to_string());
        self.host.info(
            "S3 objects of earlier runs found past the committed offset; their records are not written again",
            &[
                ("topic", &tp.0),
                ("partition", &tp.1.to_string()),
                ("from", &first.to_string()),
                ("through", &end),
                ("listed", &count),
            ],
        );
        Ok(Recovery::Active(covered))
    }

    /// Waits for every object completing in the background, then retries
    /// failed ones: Ok means every rotated object is in S3 (and `pre_commit`
    /// reports their records).
    pub fn wait_for_completions(&mut self) -> Result<(), ConnectorError> {
        let tps: Vec<Tp> = self.partitions.keys().cloned().collect();
        for tp in &tps {
            self.settle(tp, |_| true);
        }
        self.complete_pending()
    }

    /// Wall-clock rotation (`rotate.schedule.interval.ms`), idle partitions included.
    fn rotate_scheduled(&mut self) -> Result<(), ConnectorError> {
        if self.cfg.rotate_schedule_ms.is_none() {
            return Ok(());
        }
        let now = now_ms();
        let due: Vec<(Tp, String)> = self
            .partitions
            .iter()
            .flat_map(|(tp, s)| {
                s.writers
                    .iter()
                    .filter(|(_, w)| w.deadline.is_some_and(|d| now >= d))
                    .map(move |(e, _)| (tp.clone(), e.clone()))
            })
            .collect();
        for (tp, enc) in due {
            self.rotate(&tp, &enc)?;
        }
        Ok(())
    }

    fn offsets(&self) -> Vec<TopicPartitionOffset> {
        self.partitions
            .iter()
            .filter_map(|((t, p), s)| s.committable().map(|o| TopicPartitionOffset::new(t.clone(), *p, o)))
            .collect()
    }

    /// Drops the partition's objects (completions running are waited for).
    fn abort_partition(&mut self, tp: &Tp) {
        let Some(state) = self.partitions.remove(tp) else { return };
        let mut uploads: Vec<ObjectUpload> = state.writers.into_values().map(|w| w.upload).collect();
        uploads.extend(state.completing.into_iter().filter_map(|c| c.into_abandoned(&self.rt)));
        for mut upload in uploads {
            if let Err(e) = upload.abort(&self.rt, &self.up) {
                self.host.warn(
                    "could not abort an S3 upload; it is retried when the partition is next opened",
                    &[("key", &upload.key), ("error", e.message())],
                );
            }
        }
    }

    /// Aborts multipart uploads a previous owner left for these partitions.
    fn abort_leftovers(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(tp.topic.to_string()).or_default().push(tp.partition);
        }
        for (topic, parts) in by_topic {
            let prefix = format!("{}{}{}", self.naming.prefix(), topic, self.cfg.directory_delim);
            let own: Vec<String> = self
                .partitions
                .values()
                .flat_map(|s| s.writers.values().map(|w| &w.upload.key).chain(s.completing.iter().map(|c| &c.key)))
                .cloned()
                .collect();
            let naming = &self.naming;
            let leftovers = upload::list_uploads(&self.rt, &self.up, &prefix, |key| {
                parts.iter().any(|p| naming.belongs_to(key, &topic, *p)) && !own.iter().any(|k| k == key)
            })?;
            for (key, id) in leftovers {
                self.host.info("aborting a multipart upload left by a previous owner", &[("key", &key)]);
                upload::abort_upload(&self.rt, &self.up, &key, &id)?;
            }
        }
        Ok(())
    }
}

impl SinkTask for S3SinkTask {
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        self.abort_leftovers(partitions)
    }

    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        // A seek asked in `pre_commit` took effect before this batch.
        self.rewound.clear();
        // Objects whose completion failed come first: nothing new is taken
        // while one is pending (the runtime backs off on the Retriable error).
        self.complete_pending()?;
        let mut outcome = PutOutcome::accepted();
        let now = now_ms();
        for (i, r) in records.iter().enumerate() {
            let tp: Tp = (r.topic().to_string(), r.partition());
            if self.rewound.contains(&tp) {
                // Comes again from the seek offset.
                continue;
            }
            let state = self.partitions.entry(tp.clone()).or_default();
            if matches!(state.recovery, Recovery::Unknown) {
                let found = self.recover(&tp, r.offset())?;
                self.partitions.entry(tp.clone()).or_default().recovery = found;
            }
            let state = self.partitions.entry(tp.clone()).or_default();
            if let Recovery::Active(c) = &state.recovery {
                if c.end().is_none_or(|end| r.offset() > end) {
                    state.recovery = Recovery::Done;
                }
            }
            match take::again(state.next_offset, r.offset(), &state.failed) {
                Again::New => {}
                // Re-delivered after a retriable error (invariant 7).
                Again::Taken => continue,
                Again::Failed(e) => {
                    outcome.fail(i, e);
                    continue;
                }
            }
            match self.take(r, now)? {
                Taken::Bad(message) => {
                    let error = ConnectorError::bad_record(format!(
                        "{}/{} offset {}: {message}",
                        r.topic(),
                        r.partition(),
                        r.offset()
                    ));
                    let state = self.partitions.entry(tp).or_default();
                    state.next_offset = Some(r.offset() + 1);
                    state.failed.insert(r.offset(), error.clone());
                    outcome.fail(i, error);
                }
                Taken::Accepted | Taken::Ignored => {
                    // Ignored records (null values with `ignore`) move the offset too.
                    if let Some(state) = self.partitions.get_mut(&tp) {
                        state.next_offset = Some(r.offset() + 1);
                    }
                }
            }
        }
        // The failure memory only needs records the runtime may re-deliver.
        for state in self.partitions.values_mut() {
            if let Some(c) = state.committable() {
                state.failed = state.failed.split_off(&c);
            }
        }
        self.rewound.clear();
        self.rotate_scheduled()?;
        Ok(outcome)
    }

    /// What completed objects cover (the sink keeps its own positions: a
    /// record is durable only once its object completed, whatever was delivered).
    fn pre_commit(&mut self, _delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        // A transient failure only holds offsets back (they are computed from
        // what completed) and is retried. A refusal fails the task here: with
        // no new records, no put would report it.
        if let Err(e) = self.complete_pending().and_then(|_| self.rotate_scheduled()) {
            if matches!(e.kind(), ErrorKind::Fatal | ErrorKind::Config) {
                return Err(e);
            }
            self.host.warn("S3 sink could not complete objects before commit", &[("error", e.message())]);
        }
        Ok(self.offsets())
    }

    fn close(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        for tp in partitions {
            self.abort_partition(&(tp.topic.to_string(), tp.partition));
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), ConnectorError> {
        // Open objects are dropped: their records were not committed and are
        // re-delivered from the committed offset.
        let tps: Vec<Tp> = self.partitions.keys().cloned().collect();
        for tp in tps {
            self.abort_partition(&tp);
        }
        Ok(())
    }
}
