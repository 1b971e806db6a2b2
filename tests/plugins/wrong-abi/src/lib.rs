//! A test plugin that declares ABI version 1 (the one before this worker's): the
//! loader must refuse it, naming the file, both versions and what changed.

use connector_api::*;

pub struct WrongAbiSink;
pub struct NeverTask;

impl SinkConnector for WrongAbiSink {
    type Task = NeverTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "wrong-abi-sink", aliases: &[], version: "0.0.0", documentation: "" }
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn create_task(&self, _: &ConnectorConfig, _: Host, _: SinkContext) -> Result<NeverTask, ConnectorError> {
        Ok(NeverTask)
    }
}

impl SinkTask for NeverTask {
    fn put(&mut self, _: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        Ok(PutOutcome::accepted())
    }
    fn pre_commit(&mut self, _: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(Vec::new())
    }
}

connector_api::__export_plugin_with_abi_version! { abi_version: 1, sinks: [WrongAbiSink], sources: [] }
