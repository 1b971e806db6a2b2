//! `example-counter-source`: emits 0, 1, 2, … to `topic`, one record per
//! number (key and value: the number as text), with the number as its source
//! offset. Restarted, it resumes after the last committed number: the
//! smallest complete example of source offsets.

use std::{thread, time::Duration};

use connector_api::*;

pub struct CounterSource;

pub struct CounterTask {
    topic: String,
    source_partition: String,
    next: u64,
    /// Stop after this many numbers (0: never).
    max: u64,
    batch: usize,
    interval: Duration,
}

fn definition() -> ConfigDef {
    ConfigDef::new()
        .define(
            ConfigKey::new("topic", ConfigType::String)
                .importance(Importance::High)
                .doc("Topic the numbers are written to.")
                .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new("counter.batch.size", ConfigType::Int)
                .default_value("100")
                .doc("Numbers per poll.")
                .validator(Validator::range(Some(1.0), Some(100000.0))),
        )
        .define(
            ConfigKey::new("counter.interval.ms", ConfigType::Long)
                .default_value("10")
                .doc("Pause between polls.")
                .validator(Validator::range(Some(0.0), Some(60000.0))),
        )
        .define(
            ConfigKey::new("counter.max", ConfigType::Long)
                .default_value("0")
                .doc("Stop emitting after this many numbers; 0 never stops.")
                .validator(Validator::range(Some(0.0), None)),
        )
}

impl SourceConnector for CounterSource {
    type Task = CounterTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "example-counter-source",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Emits an increasing counter (an example for connector authors).",
        }
    }

    fn config_def(&self) -> ConfigDef {
        definition()
    }

    fn create_task(&self, config: &ConnectorConfig, _host: Host) -> Result<CounterTask, ConnectorError> {
        let def = definition();
        let topic = config.string(&def, "topic")?;
        Ok(CounterTask {
            source_partition: serde_json::json!({ "counter": topic }).to_string(),
            topic,
            next: 0,
            max: config.long(&def, "counter.max")? as u64,
            batch: config.long(&def, "counter.batch.size")? as usize,
            interval: Duration::from_millis(config.long(&def, "counter.interval.ms")? as u64),
        })
    }
}

impl SourceTask for CounterTask {
    fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
        let Some(last) = committed.iter().find(|o| o.partition == self.source_partition.as_str()) else {
            return Ok(());
        };
        let offset: serde_json::Value = serde_json::from_str(&last.offset)
            .map_err(|e| ConnectorError::fatal(format!("committed offset {} is not JSON: {e}", last.offset)))?;
        let n = offset["n"]
            .as_u64()
            .ok_or_else(|| ConnectorError::fatal(format!("committed offset {} has no number \"n\"", last.offset)))?;
        self.next = n + 1;
        Ok(())
    }

    fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
        thread::sleep(self.interval);
        let mut count = self.batch.min(max_records) as u64;
        if self.max > 0 {
            count = count.min(self.max.saturating_sub(self.next));
        }
        let records = (self.next..self.next + count)
            .map(|n| {
                let offset = serde_json::json!({ "n": n }).to_string();
                SourceRecord::new(self.topic.clone(), SourceOffset::new(self.source_partition.clone(), offset))
                    .with_key(n.to_string())
                    .with_value(n.to_string())
            })
            .collect();
        self.next += count;
        Ok(records)
    }
}

connector_api::export_plugin! { sinks: [], sources: [CounterSource] }
