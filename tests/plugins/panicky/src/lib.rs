//! A test sink that panics in `put` when a record's value is `panic`, so the
//! tests can check a panic becomes a `Fatal` error and the worker survives.

use connector_api::*;

pub struct PanickySink;
pub struct PanickyTask;

impl SinkConnector for PanickySink {
    type Task = PanickyTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "test-panicky-sink", aliases: &[], version: "0.0.0", documentation: "Panics on demand." }
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn create_task(&self, _: &ConnectorConfig, _: Host, _: SinkContext) -> Result<PanickyTask, ConnectorError> {
        Ok(PanickyTask)
    }
}

impl SinkTask for PanickyTask {
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        if records.iter().any(|r| r.value() == Some(b"panic")) {
            panic!("asked to panic by the record's value");
        }
        Ok(PutOutcome::accepted())
    }
    fn pre_commit(&mut self, _: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(Vec::new())
    }
}

connector_api::export_plugin! { sinks: [PanickySink], sources: [] }
