//! A test sink for the delivery tests. Record at offset `o` (per partition):
//! - fails as `BadRecord` when `(o + 1) % fail.bad.every == 0`;
//! - otherwise fails as `Retriable` the first time it is seen when
//!   `(o + 1) % fail.retriable.every == 0`, and is accepted on the retry;
//! - otherwise is accepted.
//!
//! Accepted records become durable in `pre_commit`, which appends them as
//! `topic partition offset` lines to `file` (fsynced) before reporting the
//! offsets: so the file is exactly the sink's durable set at every commit.
//! Duplicates (re-deliveries) are appended again, so a test can count them.
//! It reports durable what the worker says it delivered (failed records
//! included: the worker must still not commit past one until it is routed).
//!
//! The sink context, for the ABI tests: with `probe.file`, `open` appends
//! `open topic partition note=<note or ->` per partition and `pre_commit`
//! commits the note `upto=<delivered offset>` for each delivered partition
//! before reporting it; with `seek.on.open` ≥ 0, `open` seeks every
//! partition there (as a sink that finds its target already holds records).
//!
//! With `schemas.file`, `put` appends `topic partition offset<TAB>schema` for
//! every record that carries a value schema, so a test sees what crossed the ABI.

use std::{collections::HashSet, fs::OpenOptions, io::Write};

use connector_api::*;

pub struct FlakySink;

pub struct FlakyTask {
    file: String,
    bad_every: i64,
    retriable_every: i64,
    retried: HashSet<(String, i32, i64)>,
    accepted: Vec<(String, i32, i64)>,
    schemas_file: String,
    probe_file: String,
    seek_on_open: i64,
    context: SinkContext,
}

config_struct! {
    struct Settings {
        file: String = key("file").non_empty(),
        bad_every: i64 = key("fail.bad.every").default(11),
        retriable_every: i64 = key("fail.retriable.every").default(7),
        schemas_file: String = key("schemas.file").default_text(""),
        probe_file: String = key("probe.file").default_text(""),
        seek_on_open: i64 = key("seek.on.open").default(-1),
    }
}

fn append(file: &str, text: &str) -> Result<(), ConnectorError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| ConnectorError::retriable(format!("{file}: {e}")))?;
    f.write_all(text.as_bytes()).map_err(|e| ConnectorError::retriable(e.to_string()))?;
    f.sync_data().map_err(|e| ConnectorError::retriable(e.to_string()))
}

impl SinkConnector for FlakySink {
    type Task = FlakyTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "test-flaky-sink", aliases: &[], version: "0.0.0", documentation: "Fails on schedule." }
    }
    fn config_def(&self) -> ConfigDef {
        Settings::definition()
    }
    fn create_task(
        &self,
        config: &ConnectorConfig,
        _: Host,
        context: SinkContext,
    ) -> Result<FlakyTask, ConnectorError> {
        let s = Settings::parse(config).map_err(config::typed::config_error)?;
        Ok(FlakyTask {
            file: s.file,
            bad_every: s.bad_every.max(1),
            retriable_every: s.retriable_every.max(1),
            retried: HashSet::new(),
            accepted: Vec::new(),
            schemas_file: s.schemas_file,
            probe_file: s.probe_file,
            seek_on_open: s.seek_on_open,
            context,
        })
    }
}

impl SinkTask for FlakyTask {
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        if !self.probe_file.is_empty() {
            let lines: String = partitions
                .iter()
                .map(|tp| {
                    let note = self.context.note(tp).unwrap_or_else(|| "-".to_string());
                    format!("open {} {} note={note}\n", tp.topic, tp.partition)
                })
                .collect();
            append(&self.probe_file, &lines)?;
        }
        if self.seek_on_open >= 0 {
            for tp in partitions {
                self.context.seek(tp, self.seek_on_open);
            }
        }
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let mut outcome = PutOutcome::accepted();
        if !self.schemas_file.is_empty() {
            let lines: String = records
                .iter()
                .filter_map(|r| {
                    r.value_schema_json().map(|s| format!("{} {} {}\t{s}\n", r.topic(), r.partition(), r.offset()))
                })
                .collect();
            append(&self.schemas_file, &lines)?;
        }
        for (i, r) in records.iter().enumerate() {
            let id = (r.topic().to_string(), r.partition(), r.offset());
            if (r.offset() + 1) % self.bad_every == 0 {
                outcome.fail(i, ConnectorError::bad_record(format!("offset {} is bad by schedule", r.offset())));
            } else if (r.offset() + 1) % self.retriable_every == 0 && self.retried.insert(id.clone()) {
                outcome.fail(i, ConnectorError::retriable(format!("offset {} fails once by schedule", r.offset())));
            } else {
                self.accepted.push(id);
            }
        }
        Ok(outcome)
    }

    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        let text: String = self.accepted.drain(..).map(|(t, p, o)| format!("{t} {p} {o}\n")).collect();
        append(&self.file, &text)?;
        if !self.probe_file.is_empty() {
            for d in delivered {
                let tp = TopicPartition::new(d.topic.as_str(), d.partition);
                self.context.commit_note(&tp, &format!("upto={}", d.offset))?;
            }
        }
        Ok(delivered.to_vec())
    }
}

connector_api::export_plugin! { sinks: [FlakySink], sources: [] }
