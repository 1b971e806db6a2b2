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

config_struct! {
    /// The source's keys: each declared once, for the definition and the parser.
    struct Settings {
        /// Topic the numbers are written to.
        topic: String = key("topic").high().non_empty(),
        /// Numbers per poll.
        batch: u32 = key("counter.batch.size").default(100).range(1..=100_000),
        /// Pause between polls.
        interval: Duration =
            key("counter.interval.ms").default(Duration::from_millis(10)).range(Duration::ZERO..=Duration::from_secs(60)),
        /// Stop emitting after this many numbers; 0 never stops.
        max: u64 = key("counter.max").default(0).range(0..),
    }
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
        Settings::definition()
    }

    fn create_task(&self, config: &ConnectorConfig, _host: Host) -> Result<CounterTask, ConnectorError> {
        let Settings { topic, batch, interval, max } = Settings::parse(config).map_err(config::typed::config_error)?;
        Ok(CounterTask {
            source_partition: serde_json::json!({ "counter": topic }).to_string(),
            topic,
            next: 0,
            max,
            batch: batch as usize,
            interval,
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

#[cfg(test)]
mod tests {
    use connector_kit::harness::SourceHarness;

    use super::*;

    fn config() -> ConnectorConfig {
        ConnectorConfig::new().with("topic", "numbers").with("counter.interval.ms", "0").with("counter.batch.size", "3")
    }

    #[test]
    fn a_crash_resumes_after_the_committed_number_and_loses_none() {
        let mut h = SourceHarness::new(CounterSource, config(), &[]).unwrap();
        h.poll(100).unwrap();
        h.commit().unwrap();
        h.poll(100).unwrap(); // 3, 4, 5: produced, never acknowledged
        h.crash().unwrap();
        h.poll_until(3, 100, 5).unwrap();
        h.assert_no_record_lost();
        assert_eq!(h.values(), ["0", "1", "2", "3", "4", "5", "3", "4", "5"]);
        assert_eq!(h.committed_offsets(), [SourceOffset::new(r#"{"counter":"numbers"}"#, r#"{"n":2}"#)]);
    }

    #[test]
    fn a_partial_acknowledgement_commits_only_the_acknowledged_numbers() {
        let mut h = SourceHarness::new(CounterSource, config().with("counter.max", "5"), &[]).unwrap();
        h.poll_until(5, 100, 5).unwrap();
        h.commit_first(4).unwrap();
        h.crash().unwrap();
        let again = h.poll_until(1, 100, 5).unwrap();
        assert_eq!(again.len(), 1, "only number 4 is left below counter.max");
        assert_eq!(h.values().last().map(String::as_str), Some("4"));
        h.assert_no_record_lost();
    }
}
