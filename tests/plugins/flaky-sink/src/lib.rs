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

use std::{
    collections::{BTreeMap, HashSet},
    fs::OpenOptions,
    io::Write,
};

use connector_api::*;

pub struct FlakySink;

pub struct FlakyTask {
    file: String,
    bad_every: i64,
    retriable_every: i64,
    retried: HashSet<(String, i32, i64)>,
    accepted: Vec<(String, i32, i64)>,
    handed: BTreeMap<(String, i32), i64>,
}

fn definition() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::new("file", ConfigType::String).validator(Validator::NonEmpty))
        .define(ConfigKey::new("fail.bad.every", ConfigType::Long).default_value("11"))
        .define(ConfigKey::new("fail.retriable.every", ConfigType::Long).default_value("7"))
}

impl SinkConnector for FlakySink {
    type Task = FlakyTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "test-flaky-sink", aliases: &[], version: "0.0.0", documentation: "Fails on schedule." }
    }
    fn config_def(&self) -> ConfigDef {
        definition()
    }
    fn create_task(&self, config: &ConnectorConfig, _: Host) -> Result<FlakyTask, ConnectorError> {
        let def = definition();
        Ok(FlakyTask {
            file: config.string(&def, "file")?,
            bad_every: config.long(&def, "fail.bad.every")?.max(1),
            retriable_every: config.long(&def, "fail.retriable.every")?.max(1),
            retried: HashSet::new(),
            accepted: Vec::new(),
            handed: BTreeMap::new(),
        })
    }
}

impl SinkTask for FlakyTask {
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let mut outcome = PutOutcome::accepted();
        for (i, r) in records.iter().enumerate() {
            let id = (r.topic().to_string(), r.partition(), r.offset());
            let next = self.handed.entry((id.0.clone(), id.1)).or_insert(0);
            *next = (*next).max(r.offset() + 1);
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

    fn pre_commit(&mut self) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| ConnectorError::retriable(format!("{}: {e}", self.file)))?;
        let mut text = String::new();
        for (t, p, o) in self.accepted.drain(..) {
            text.push_str(&format!("{t} {p} {o}\n"));
        }
        file.write_all(text.as_bytes()).map_err(|e| ConnectorError::retriable(e.to_string()))?;
        file.sync_data().map_err(|e| ConnectorError::retriable(e.to_string()))?;
        // Reports everything handed over, failed records included: the worker
        // must still not commit past a failure until it is routed.
        Ok(self.handed.iter().map(|((t, p), o)| TopicPartitionOffset::new(t.clone(), *p, *o)).collect())
    }
}

connector_api::export_plugin! { sinks: [FlakySink], sources: [] }
