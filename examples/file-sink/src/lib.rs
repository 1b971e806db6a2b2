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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};

    use super::*;

    fn harness() -> (tempfile::TempDir, std::path::PathBuf, SinkHarness<FileSink>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tsv");
        let config = ConnectorConfig::new().with("file", path.to_str().unwrap());
        let h = SinkHarness::new(FileSink, config).unwrap();
        (dir, path, h)
    }

    fn records(partition: i32, from: i64, n: usize) -> Vec<OwnedRecord> {
        RecordBuilder::new("orders", partition).at(from).records(n, |b, o| {
            b.key(format!("k{o}")).value(format!("v{o}"));
        })
    }

    /// (partition, offset) → lines holding it.
    fn lines(path: &std::path::Path) -> BTreeMap<(i32, i64), usize> {
        let mut seen = BTreeMap::new();
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "{line}");
            *seen.entry((f[1].parse().unwrap(), f[2].parse().unwrap())).or_insert(0) += 1;
        }
        seen
    }

    #[test]
    fn after_a_crash_the_lines_not_synced_come_back_from_the_committed_offset() {
        let (_dir, path, mut h) = harness();
        h.open(&[TopicPartition::new("orders", 0)]).unwrap();
        h.put(&records(0, 0, 4)).unwrap();
        h.commit().unwrap();
        h.assert_durable("orders", 0, 4);
        // Buffered but never synced when the process dies.
        h.put(&records(0, 4, 3)).unwrap();
        h.crash_without_destructors().unwrap();
        h.commit().unwrap();
        h.assert_durable("orders", 0, 7);
        let lines = lines(&path);
        assert_eq!(lines.values().copied().collect::<Vec<_>>(), [1; 7], "{lines:?}");
        for r in h.durable_records() {
            assert!(lines.contains_key(&(r.partition, r.offset)));
        }
        h.never_past_unsettled();
    }

    #[test]
    fn a_partition_revoked_mid_batch_keeps_only_what_was_committed_and_comes_back_whole() {
        let (_dir, path, mut h) = harness();
        let (p0, p1) = (TopicPartition::new("orders", 0), TopicPartition::new("orders", 1));
        h.open(&[p0.clone(), p1.clone()]).unwrap();
        let (a, b) = (records(0, 0, 4), records(1, 0, 4));
        h.put(&[&a[..2], &b[..2]].concat()).unwrap();
        h.revoke(std::slice::from_ref(&p1)).unwrap();
        h.put(&[&a[2..], &b[2..]].concat()).unwrap();
        h.commit().unwrap();
        assert_eq!(h.durable(), BTreeMap::from([(p0.clone(), 4), (p1.clone(), 2)]));
        assert!(!lines(&path).contains_key(&(1, 2)), "records of a revoked partition are not put");
        h.open(std::slice::from_ref(&p1)).unwrap();
        h.redeliver().unwrap();
        h.commit().unwrap();
        assert_eq!(h.durable(), BTreeMap::from([(p0, 4), (p1, 4)]));
        assert_eq!(lines(&path).values().copied().collect::<Vec<_>>(), [1; 8]);
        h.never_past_unsettled();
    }

    #[test]
    fn lines_carry_key_and_value_and_a_tombstone_is_empty() {
        let (_dir, path, mut h) = harness();
        h.open(&[TopicPartition::new("t", 2)]).unwrap();
        let mut b = RecordBuilder::new("t", 2).at(9);
        b.key("k").value("v").header("h", "x").push().tombstone().push();
        h.put(&b.build()).unwrap();
        h.stop().unwrap();
        h.assert_durable("t", 2, 11);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "t\t2\t9\tk\tv\nt\t2\t10\t\t\n");
    }
}
