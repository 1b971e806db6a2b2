//! BATCH LOADING in the task: the I/O around [`crate::batch`]'s decisions.
//! Appends share STREAMING's path (`put_streaming`, with PENDING streams
//! made here instead of COMMITTED ones); the interval's finalize, note and
//! BatchCommitWriteStreams are here. Crash points: crate README.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use connector_api::{ConnectorError, PutOutcome, SinkRecord, TopicPartition, TopicPartitionOffset};

use super::{no_answer, BigQuerySinkTask};
use crate::{
    batch::{at_interval, commit_interval, due, recover, AtInterval, Recovery, Sealed, StreamState, TableHolds},
    schema,
    storage::{proto::StreamType, StorageError},
    streaming::{trim_refused, Position, MAX_REFUSED_BYTES},
};

/// A partition's BATCH LOADING state beside its [`super::Part`].
#[derive(Debug, Default)]
pub(super) struct BatchPart {
    /// The note read at assignment, until the first put recovers from it.
    resume: Option<Sealed>,
    /// The first Kafka offset of the current pending stream.
    start: i64,
    /// Records below this are handled and their rows committed.
    settled: Option<i64>,
    /// Noted as sealed, its BatchCommit not yet confirmed.
    sealed: Option<Sealed>,
    /// Offsets of records BigQuery refused that may be re-delivered,
    /// carried from the last sealed stream into the next one.
    refused: Vec<i64>,
}

#[derive(Debug)]
pub(super) struct BatchState {
    parts: BTreeMap<TopicPartition, BatchPart>,
    interval: Duration,
    /// The first put since the last commit.
    first_put: Option<Instant>,
    /// The last put failed: positions were rolled back and the stream may
    /// hold rows past them until the worker puts the batch again.
    failed_put: bool,
    /// Test-only: `pre_commit` stops with an error right after this point
    /// (the harness then crashes the task there).
    stop_after: Option<String>,
}

impl BatchState {
    pub(super) fn new(configured: Duration) -> Self {
        let test_override = std::env::var("SLUICE_BQ_TEST_COMMIT_INTERVAL_MS").ok();
        BatchState {
            parts: BTreeMap::new(),
            interval: commit_interval(configured, test_override.as_deref()),
            first_put: None,
            failed_put: false,
            stop_after: None,
        }
    }
}

impl BigQuerySinkTask {
    /// Test-only: the next `pre_commit` of BATCH LOADING stops with an error
    /// right after `point` (`after-finalize`, `after-note`,
    /// `after-batch-commit`), as a worker killed there would.
    #[doc(hidden)]
    pub fn stop_batch_commit_after(&mut self, point: &str) {
        self.batch.stop_after = Some(point.to_string());
    }

    /// Test-only: the commit interval counts as over, so the next
    /// `pre_commit` commits (the harness tests do not wait a minute).
    #[doc(hidden)]
    pub fn end_batch_interval_now(&mut self) {
        let now = Instant::now();
        self.batch.first_put = Some(now.checked_sub(self.batch.interval).unwrap_or(now));
    }

    fn batch_point(&mut self, point: &'static str) -> Result<(), ConnectorError> {
        self.faults.reach(point, &self.host);
        if self.batch.stop_after.as_deref() == Some(point) {
            self.batch.stop_after = None;
            return Err(ConnectorError::fatal(format!("test stop point {point} reached")));
        }
        Ok(())
    }

    pub(super) fn open_batch(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            let note = self.context.note(tp);
            let resume = note.as_deref().and_then(Sealed::parse);
            if let (Some(note), None) = (&note, &resume) {
                // STREAMING's note after a change of ingestion.mode: its rows
                // are in the table up to the committed offset, where the
                // records resume.
                self.host.info(
                    "not a BATCH LOADING note: resuming at the committed offset",
                    &[("topic", &tp.topic), ("partition", &tp.partition.to_string()), ("note", note)],
                );
            }
            let table = self.cfg.table_for(&tp.topic);
            self.parts.insert(tp.clone(), super::Part { table, resume: None, position: None, noted: None });
            self.batch.parts.insert(tp.clone(), BatchPart { resume, ..BatchPart::default() });
        }
    }

    pub(super) fn close_batch(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            // A pending stream is abandoned (never committed); a sealed one
            // is committed by the next owner, from the note.
            self.batch.parts.remove(tp);
        }
    }

    pub(super) fn put_batch(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        self.batch.first_put.get_or_insert_with(Instant::now);
        let result = self.put_streaming(records, true);
        self.batch.failed_put = result.is_err();
        if due(self.batch.first_put.map(|t| t.elapsed()), self.batch.interval) {
            self.context.request_commit();
        }
        result
    }

    fn storage_call<T>(
        &self,
        call: &str,
        on: &str,
        f: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let timeout = self.cfg.append_timeout;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, f).await })
            .unwrap_or_else(|_| Err(StorageError::Transient(no_answer(call, on, timeout))))
    }

    fn stream_state(&self, stream: &str) -> Result<StreamState, ConnectorError> {
        let found = self
            .storage_call("GetWriteStream", stream, self.storage.get_write_stream(stream))
            .map_err(StorageError::into_connector_error)?;
        Ok(match found {
            Some(ws) if ws.commit_time.is_some() => StreamState::Committed,
            Some(_) => StreamState::Uncommitted,
            None => StreamState::Gone,
        })
    }

    /// Makes a partition ready to append: finishes what its note says
    /// (once per assignment), then opens a PENDING stream.
    pub(super) fn prepare_batch(&mut self, tp: &TopicPartition, first_offset: i64) -> Result<(), ConnectorError> {
        let table = self.cfg.table_for(&tp.topic);
        let part = self.parts.entry(tp.clone()).or_default();
        part.table = table.clone();
        if part.position.is_some() {
            return Ok(());
        }
        let bp = self.batch.parts.entry(tp.clone()).or_default();
        if let Some(sealed) = bp.resume.take() {
            match self.recover_sealed(tp, &table, &sealed, first_offset) {
                Ok(resume_at) => {
                    let bp = self.batch.parts.entry(tp.clone()).or_default();
                    bp.settled = Some(resume_at);
                    bp.refused = sealed.refused.iter().copied().filter(|&o| o >= first_offset).collect();
                }
                Err(e) => {
                    self.batch.parts.entry(tp.clone()).or_default().resume = Some(sealed);
                    return Err(e);
                }
            }
        }
        let bp = self.batch.parts.entry(tp.clone()).or_default();
        let next_kafka = bp.settled.map_or(first_offset, |s| s.max(first_offset));
        let refused = bp.refused.clone();
        let stream = self.create_stream_of(&table, StreamType::Pending)?;
        let bp = self.batch.parts.entry(tp.clone()).or_default();
        bp.start = next_kafka;
        if let Some(p) = self.parts.get_mut(tp) {
            p.position = Some(Position { stream, next_kafka, next_row: 0, refused });
        }
        Ok(())
    }

    /// Finishes the sealed stream a former owner noted; returns where the
    /// partition's records go on.
    fn recover_sealed(
        &mut self,
        tp: &TopicPartition,
        table: &str,
        sealed: &Sealed,
        first_offset: i64,
    ) -> Result<i64, ConnectorError> {
        let state = self.stream_state(&sealed.stream)?;
        let holds = match (state, self.cfg.kafka_data_field.clone()) {
            (StreamState::Gone, Some(field)) if first_offset < sealed.end => {
                TableHolds::Max(self.max_offset_in_table(tp, table, &field)?)
            }
            _ => TableHolds::Unknown,
        };
        let at = [("topic", tp.topic.as_str()), ("stream", sealed.stream.as_str())];
        match recover(sealed, state, first_offset, holds) {
            Recovery::Resume { resume_at } => Ok(resume_at),
            Recovery::CommitThenResume { resume_at } => {
                self.commit_streams(table, std::slice::from_ref(&sealed.stream))?;
                self.host.info("committed the pending stream a former owner had sealed", &at);
                Ok(resume_at)
            }
            Recovery::Guess { resume_at } => {
                self.host.warn(
                    "the sealed pending stream of this partition is gone and kafkaDataFieldName is not set: its \
                     records are written again; if it had been committed, their rows are in the table twice",
                    &at,
                );
                Ok(resume_at)
            }
        }
    }

    fn max_offset_in_table(
        &mut self,
        tp: &TopicPartition,
        table: &str,
        field: &str,
    ) -> Result<Option<i64>, ConnectorError> {
        let field = schema::sanitize_field_name(field);
        let sql = format!(
            "SELECT MAX({field}.offset) FROM {} WHERE {field}.topic = '{}' AND {field}.partition = {}",
            self.table_id(table).sql(),
            tp.topic.replace('\\', "\\\\").replace('\'', "\\'"),
            tp.partition
        );
        let result = self.rest().query(&sql)?;
        Ok(result.rows.first().and_then(|r| r.first()).and_then(|v| match v {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }))
    }

    /// Commits `streams` of `table` (each finalized, or finalized here:
    /// FinalizeWriteStream is idempotent) so that each is committed once.
    /// BatchCommitWriteStreams is atomic and refuses a stream committed
    /// already (a former owner's late commit, or ours whose answer was
    /// lost): after a refusal each stream's `commit_time` says which are
    /// in, and the others are committed again.
    fn commit_streams(&mut self, table: &str, streams: &[String]) -> Result<(), ConnectorError> {
        let parent = self.cfg.table_path(table);
        let mut last_error = String::new();
        for _ in 0..3 {
            let mut waiting = Vec::new();
            for s in streams {
                match self.stream_state(s)? {
                    StreamState::Committed => {}
                    StreamState::Uncommitted => waiting.push(s.clone()),
                    StreamState::Gone => {
                        return Err(ConnectorError::fatal(format!(
                            "the pending stream {s} of table {} is gone before its commit: restart the task (it \
                             resumes from the partition's note)",
                            self.table_id(table)
                        )))
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            for s in &waiting {
                // An error here (already finalized elsewhere) shows in the
                // commit's answer.
                let _ = self.storage_call("FinalizeWriteStream", s, self.storage.finalize_write_stream(s));
            }
            match self.storage_call(
                "BatchCommitWriteStreams",
                &parent,
                self.storage.batch_commit(&parent, waiting.clone()),
            ) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e.message().to_string(),
            }
        }
        Err(ConnectorError::retriable(format!(
            "{last_error}: the pending streams of table {} are not committed yet; nothing is reported durable until \
             they are",
            self.table_id(table)
        )))
    }

    pub(super) fn pre_commit_batch(&mut self) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        if self.appended_since_commit {
            self.faults.reach("after-append", &self.host);
        }
        // A commit that failed earlier is finished before anything else is
        // sealed: the note holds one sealed stream per partition.
        let mut waiting: BTreeMap<String, Vec<(TopicPartition, Sealed)>> = BTreeMap::new();
        for (tp, bp) in &self.batch.parts {
            if let Some(s) = &bp.sealed {
                waiting.entry(self.cfg.table_for(&tp.topic)).or_default().push((tp.clone(), s.clone()));
            }
        }
        for (table, sealed) in waiting {
            self.commit_sealed(&table, sealed)?;
        }
        let interval_over = due(self.batch.first_put.map(|t| t.elapsed()), self.batch.interval);
        if interval_over && !self.batch.failed_put {
            self.seal_and_commit()?;
            self.batch.first_put = None;
        }
        let durable: Vec<TopicPartitionOffset> = self
            .batch
            .parts
            .iter()
            .filter_map(|(tp, bp)| Some(TopicPartitionOffset::new(tp.topic.clone(), tp.partition, bp.settled?)))
            .collect();
        self.appended_since_commit = false;
        self.committed_since_append = !durable.is_empty();
        Ok(durable)
    }

    /// The interval's end: every pending stream is finalized; those holding
    /// exactly what was appended are noted as sealed (fenced: a task that
    /// lost a partition stops here), then committed per table in one
    /// BatchCommitWriteStreams.
    fn seal_and_commit(&mut self) -> Result<(), ConnectorError> {
        let pending: Vec<(TopicPartition, String, Position)> =
            self.parts.iter().filter_map(|(tp, p)| Some((tp.clone(), p.table.clone(), p.position.clone()?))).collect();
        let mut by_table: BTreeMap<String, Vec<(TopicPartition, Sealed)>> = BTreeMap::new();
        for (tp, table, mut position) in pending {
            let finalized = match position.next_row {
                0 => None,
                _ => {
                    let s = &position.stream;
                    self.storage_call("FinalizeWriteStream", s, self.storage.finalize_write_stream(s)).ok()
                }
            };
            self.writers.remove(&position.stream);
            if let Some(p) = self.parts.get_mut(&tp) {
                p.position = None;
            }
            let start = self.batch.parts.get(&tp).map_or(position.next_kafka, |bp| bp.start);
            match at_interval(position.next_row, finalized) {
                AtInterval::NothingToCommit => {
                    let bp = self.batch.parts.entry(tp.clone()).or_default();
                    bp.settled = Some(position.next_kafka);
                    bp.refused = position.refused;
                }
                AtInterval::Abandon { why } => {
                    self.host.warn(
                        "not committing this pending stream: the partition is read again from the stream's start \
                         into a new one",
                        &[
                            ("topic", &tp.topic),
                            ("partition", &tp.partition.to_string()),
                            ("stream", &position.stream),
                            ("why", &why),
                        ],
                    );
                    self.context.seek(&tp, start);
                }
                AtInterval::Seal => {
                    let dropped = trim_refused(&mut position.refused, MAX_REFUSED_BYTES);
                    if !dropped.is_empty() {
                        self.host.warn(
                            "too many records refused by BigQuery to keep in the partition's note: if the worker \
                             dies before their offsets are committed, these are not routed to the dead letter queue \
                             again",
                            &[("topic", &tp.topic), ("partition", &tp.partition.to_string())],
                        );
                    }
                    let sealed = Sealed {
                        stream: position.stream.clone(),
                        start,
                        end: position.next_kafka,
                        rows: position.next_row,
                        refused: position.refused,
                    };
                    by_table.entry(table).or_default().push((tp, sealed));
                }
            }
        }
        if !by_table.is_empty() {
            self.batch_point("after-finalize")?;
        }
        let mut first_error = None;
        for (table, sealed) in by_table {
            let mut noted = Vec::new();
            let mut refused_note = None;
            for (tp, s) in sealed {
                if refused_note.is_some() {
                    // Not noted: never committed; read again into a new stream.
                    self.context.seek(&tp, s.start);
                    continue;
                }
                // Fenced: a former owner is refused here and never commits.
                match self.context.commit_note(&tp, &s.to_note()) {
                    Ok(()) => {
                        self.batch.parts.entry(tp.clone()).or_default().sealed = Some(s.clone());
                        noted.push((tp, s));
                    }
                    Err(e) => {
                        self.context.seek(&tp, s.start);
                        refused_note = Some(e);
                    }
                }
            }
            self.batch_point("after-note")?;
            // Noted streams are committed now, or at the next pre_commit
            // (or by the next owner, from the note).
            let committed = self.commit_sealed(&table, noted);
            if let Some(e) = refused_note.or(committed.err()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn commit_sealed(&mut self, table: &str, sealed: Vec<(TopicPartition, Sealed)>) -> Result<(), ConnectorError> {
        let streams: Vec<String> = sealed.iter().map(|(_, s)| s.stream.clone()).collect();
        self.commit_streams(table, &streams)?;
        self.batch_point("after-batch-commit")?;
        for (tp, s) in sealed {
            // A stream opened while this one waited for its commit carries
            // its refusals on: its note replaces this one's.
            if let Some(position) = self.parts.get_mut(&tp).and_then(|p| p.position.as_mut()) {
                for &offset in &s.refused {
                    position.refuse(offset);
                }
            }
            let bp = self.batch.parts.entry(tp).or_default();
            bp.settled = Some(s.end);
            bp.refused = s.refused;
            bp.sealed = None;
        }
        Ok(())
    }
}
