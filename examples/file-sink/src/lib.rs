//! `example-file-sink`: appends every record to a local file, one line each:
//! `topic<TAB>partition<TAB>offset<TAB>key<TAB>value` (key and value as UTF-8,
//! lossy). Lines are buffered by `put` and made durable (flushed and fsynced)
//! by `pre_commit`, which only then reports their offsets: the smallest
//! complete example of the commit-after-durable contract.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
};

use connector_api::*;

pub struct FileSink;

pub struct FileSinkTask {
    path: String,
    out: BufWriter<File>,
    host: Host,
}

config_struct! {
    /// The sink's keys: each declared once, for the definition and the parser.
    struct Settings {
        /// Path of the file records are appended to.
        file: String = key("file").high().non_empty(),
        /// A secret the sink does not use; it shows how password values are hidden.
        _token: Secret = key("file.token").low().default_text(""),
    }
}

impl SinkConnector for FileSink {
    type Task = FileSinkTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "example-file-sink",
            aliases: &["org.apache.kafka.connect.file.FileStreamSinkConnector"],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Appends records to a local file (an example for connector authors).",
        }
    }

    fn config_def(&self) -> ConfigDef {
        Settings::definition()
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        _: SinkContext,
    ) -> Result<FileSinkTask, ConnectorError> {
        let path = Settings::parse(config).map_err(config::typed::config_error)?.file;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ConnectorError::config(format!("\"file\": cannot open {path} for appending: {e}")))?;
        host.info("file sink task started", &[("file", &path)]);
        Ok(FileSinkTask { path, out: BufWriter::new(file), host })
    }
}

impl SinkTask for FileSinkTask {
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        for r in records {
            let key = r.key().map(String::from_utf8_lossy).unwrap_or_default();
            let value = r.value().map(String::from_utf8_lossy).unwrap_or_default();
            writeln!(self.out, "{}\t{}\t{}\t{}\t{}", r.topic(), r.partition(), r.offset(), key, value)
                .map_err(|e| ConnectorError::retriable(format!("writing {}: {e}", self.path)))?;
        }
        self.host.counter(
            "file_sink_lines_total",
            "Lines appended by the example file sink",
            &[],
            records.len() as f64,
        );
        Ok(PutOutcome::accepted())
    }

    /// Once flushed and synced, every line put is durable: so is what was delivered.
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        self.out.flush().map_err(|e| ConnectorError::retriable(format!("flushing {}: {e}", self.path)))?;
        self.out.get_ref().sync_data().map_err(|e| ConnectorError::retriable(format!("syncing {}: {e}", self.path)))?;
        Ok(delivered.to_vec())
    }

    fn stop(&mut self) -> Result<(), ConnectorError> {
        self.out.flush().map_err(|e| ConnectorError::fatal(format!("flushing {}: {e}", self.path)))
    }
}

connector_api::export_plugin! { sinks: [FileSink], sources: [] }
