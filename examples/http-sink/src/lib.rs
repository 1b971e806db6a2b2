//! `example-http-sink`: a Sluice sink connector that appends every record to a file,
//! one JSON line each: `{"topic":…,"partition":…,"offset":…,"key":…,"value":…}`
//! (key and value as UTF-8 text, lossy; `null` when absent).
//!
//! Delivery is exactly once in the file:
//! - `put` only buffers; `pre_commit` writes and fsyncs the buffer, and only
//!   then reports the delivered offsets durable, so the worker never commits
//!   an offset whose record is not in the file;
//! - after a crash the worker re-delivers from the last committed offset, so
//!   `open` reads which offsets the file already holds and seeks past them;
//! - one task writes the file (`task_configs` returns one config).

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write,
};

use connector_api::*;

config_struct! {
    /// The settings of `example-http-sink`.
    #[derive(Debug)]
    pub struct ExampleHttpSinkConfig {
        /// Path of the file records are appended to, one JSON line each.
        pub file: String = key("file").high().non_empty(),
    }
}

/// The connector class `example-http-sink`.
pub struct ExampleHttpSink;

/// One task: a consumer of some of the connector's partitions.
pub struct ExampleHttpSinkTask {
    path: String,
    file: File,
    /// Lines put since the last `pre_commit`, per partition.
    pending: BTreeMap<TopicPartition, String>,
    /// Per partition, the offset after the last record in the file or pending.
    next: BTreeMap<TopicPartition, i64>,
    context: SinkContext,
    host: Host,
}

impl SinkConnector for ExampleHttpSink {
    type Task = ExampleHttpSinkTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "example-http-sink",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Appends records to a file as JSON lines, exactly once.",
        }
    }

    fn config_def(&self) -> ConfigDef {
        ExampleHttpSinkConfig::definition()
    }

    /// One file, one writer: a single task, whatever `tasks.max`.
    fn task_configs(
        &self,
        config: &ConnectorConfig,
        _max_tasks: usize,
    ) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        Ok(vec![config.clone()])
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<ExampleHttpSinkTask, ConnectorError> {
        let config = ExampleHttpSinkConfig::parse(config).map_err(|issues| {
            let all: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.key, i.message)).collect();
            ConnectorError::config(all.join("; "))
        })?;
        let path = config.file;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ConnectorError::config(format!("file: cannot open {path} for appending: {e}")))?;
        // A crash while writing may have left half a line: cut it off (its
        // record was not reported durable, so it is delivered again).
        let complete = fs::read(&path)
            .map_err(|e| ConnectorError::retriable(format!("reading {path}: {e}")))?
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        file.set_len(complete as u64).map_err(|e| ConnectorError::retriable(format!("truncating {path}: {e}")))?;
        host.info("sink task started", &[("file", &path)]);
        Ok(ExampleHttpSinkTask { path, file, pending: BTreeMap::new(), next: BTreeMap::new(), context, host })
    }
}

impl SinkTask for ExampleHttpSinkTask {
    /// Seeks each partition past the records the file already holds.
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        let in_file = next_offsets(&self.path)?;
        for partition in partitions {
            if let Some(&next) = in_file.get(partition) {
                self.context.seek(partition, next);
                self.next.insert(partition.clone(), next);
            }
        }
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        for record in records {
            let partition = TopicPartition::new(record.topic(), record.partition());
            if self.next.get(&partition).is_some_and(|next| record.offset() < *next) {
                continue; // already in the file
            }
            let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
            let line = serde_json::json!({
                "topic": record.topic(),
                "partition": record.partition(),
                "offset": record.offset(),
                "key": text(record.key()),
                "value": text(record.value()),
            });
            let pending = self.pending.entry(partition.clone()).or_default();
            pending.push_str(&line.to_string());
            pending.push('\n');
            self.next.insert(partition, record.offset() + 1);
        }
        self.host.counter("example_http_sink_records_total", "Records put", &[], records.len() as f64);
        Ok(PutOutcome::accepted())
    }

    /// Writes and syncs what was put: then everything delivered is durable.
    /// A failed write fails the task; restarted, it cuts off a torn line and
    /// `open` finds where the file ends.
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        for lines in std::mem::take(&mut self.pending).into_values() {
            self.file
                .write_all(lines.as_bytes())
                .map_err(|e| ConnectorError::fatal(format!("writing {}: {e}", self.path)))?;
        }
        self.file.sync_data().map_err(|e| ConnectorError::fatal(format!("syncing {}: {e}", self.path)))?;
        Ok(delivered.to_vec())
    }

    /// Drops the revoked partitions' unwritten lines: the next owner gets
    /// their records again from the committed offset.
    fn close(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        for partition in partitions {
            self.pending.remove(partition);
            self.next.remove(partition);
        }
        Ok(())
    }
}

/// Per partition, the offset after the last record in the file (complete
/// lines only).
fn next_offsets(path: &str) -> Result<BTreeMap<TopicPartition, i64>, ConnectorError> {
    let text = fs::read_to_string(path).map_err(|e| ConnectorError::retriable(format!("reading {path}: {e}")))?;
    let mut next = BTreeMap::new();
    for line in text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')) {
        let record: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| ConnectorError::fatal(format!("{path} holds a line that is not JSON: {e}")))?;
        if let (Some(topic), Some(partition), Some(offset)) =
            (record["topic"].as_str(), record["partition"].as_i64(), record["offset"].as_i64())
        {
            let partition = TopicPartition::new(topic, partition as i32);
            let end = next.entry(partition).or_insert(0);
            *end = (*end).max(offset + 1);
        }
    }
    Ok(next)
}

connector_api::export_plugin! { sinks: [ExampleHttpSink], sources: [] }

#[cfg(test)]
mod tests {
    use connector_api::context::{Recorded, Request};

    use super::*;

    fn config(path: &std::path::Path) -> ConnectorConfig {
        ConnectorConfig::new().with("file", path.to_string_lossy())
    }

    fn task(path: &std::path::Path) -> (ExampleHttpSinkTask, Recorded) {
        let recorded = Recorded::default();
        let task =
            ExampleHttpSink.create_task(&config(path), Host::stderr(), SinkContext::from_impl(recorded.clone())).unwrap();
        (task, recorded)
    }

    /// Records `first..end` of partition 0 of `orders`, with value `v<offset>`.
    fn put(task: &mut ExampleHttpSinkTask, first: i64, end: i64) {
        let values: Vec<String> = (first..end).map(|o| format!("v{o}")).collect();
        let records: Vec<SinkRecord<'_>> = (first..end)
            .zip(&values)
            .map(|(o, v)| SinkRecord::new("orders", 0, o).with_key(Some(b"k")).with_value(Some(v.as_bytes())))
            .collect();
        assert_eq!(task.put(&records).unwrap(), PutOutcome::accepted());
    }

    fn delivered(end: i64) -> Vec<TopicPartitionOffset> {
        vec![TopicPartitionOffset::new("orders", 0, end)]
    }

    fn offsets_in(path: &std::path::Path) -> Vec<i64> {
        let text = fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn records_are_durable_once_pre_commit_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let (mut task, recorded) = task(&path);
        let orders = TopicPartition::new("orders", 0);
        task.open(std::slice::from_ref(&orders)).unwrap();
        put(&mut task, 0, 3);
        assert_eq!(offsets_in(&path), [] as [i64; 0], "put only buffers");

        assert_eq!(task.pre_commit(&delivered(3)).unwrap(), delivered(3));
        assert_eq!(offsets_in(&path), [0, 1, 2]);
        let first: serde_json::Value =
            serde_json::from_str(fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"topic": "orders", "partition": 0, "offset": 0, "key": "k", "value": "v0"})
        );

        task.close(&[orders]).unwrap();
        task.stop().unwrap();
        assert_eq!(recorded.take(), [], "an empty file needs no seek");
    }

    #[test]
    fn after_a_crash_redelivered_records_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let orders = TopicPartition::new("orders", 0);

        // The first task makes 0..3 durable, buffers 3..5, and dies before the
        // worker commits anything: the committed offset is still 0.
        let (mut first, _) = task(&path);
        first.open(std::slice::from_ref(&orders)).unwrap();
        put(&mut first, 0, 3);
        first.pre_commit(&delivered(3)).unwrap();
        put(&mut first, 3, 5);
        drop(first);
        // A torn line, as if the process died in the middle of a write.
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"topic\":\"ord").unwrap();

        // The next owner finds 0..3 in the file and seeks past them; the
        // worker delivers from there (a record below is skipped anyway).
        let (mut second, recorded) = task(&path);
        second.open(std::slice::from_ref(&orders)).unwrap();
        assert_eq!(recorded.take(), [Request::Seek(orders.clone(), 3)]);
        put(&mut second, 2, 5);
        assert_eq!(second.pre_commit(&delivered(5)).unwrap(), delivered(5));
        assert_eq!(offsets_in(&path), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_missing_file_setting_is_refused_by_name() {
        let issues = ExampleHttpSink.validate(&ConnectorConfig::new());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key.as_str(), ExampleHttpSinkConfig::file);
    }
}
