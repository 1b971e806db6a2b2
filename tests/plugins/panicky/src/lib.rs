//! A test sink that panics in `put` when a record's value is `panic`, so the
//! tests can check a panic becomes a `Fatal` error and the worker survives.
//! With `fail.task=N`, task N fails when it is created (the others run), so a
//! test can have one FAILED and one RUNNING task of one connector.

use connector_api::*;

pub struct PanickySink;
pub struct PanickyTask;

impl SinkConnector for PanickySink {
    type Task = PanickyTask;
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo { class: "test-panicky-sink", aliases: &[], version: "0.0.0", documentation: "Panics on demand." }
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new().define(ConfigKey::new("fail.task", ConfigType::Long).default_value("-1"))
    }
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        Ok((0..max_tasks.max(1)).map(|t| config.clone().with("task.index", t.to_string())).collect())
    }
    fn create_task(&self, config: &ConnectorConfig, _: Host, _: SinkContext) -> Result<PanickyTask, ConnectorError> {
        let fail = config.get("fail.task").unwrap_or("-1");
        if config.get("task.index") == Some(fail) {
            return Err(ConnectorError::fatal(format!("task {fail} fails by its config (fail.task)")));
        }
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
