//! The idiomatic traits connector authors implement.

use crate::{
    config::{ConfigDef, ConfigIssue, ConnectorConfig},
    host::Host,
    record::{PutOutcome, SinkRecord, SourceOffset, SourceRecord, TopicPartition, TopicPartitionOffset},
    ConnectorError,
};

/// Who a connector class is.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    /// The short class name users put in `connector.class`.
    pub class: &'static str,
    /// Other accepted class names (e.g. the Confluent Java class).
    pub aliases: &'static [&'static str],
    pub version: &'static str,
    pub documentation: &'static str,
}

/// A sink connector class: a stateless factory of sink tasks.
pub trait SinkConnector: Send + Sync + 'static {
    type Task: SinkTask;

    fn info(&self) -> ConnectorInfo;
    fn config_def(&self) -> ConfigDef;

    /// Errors per key; empty when the config is valid. The default checks the
    /// definition; override to add cross-key checks (and call the default).
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        self.config_def().validate(config)
    }

    /// Splits the work into at most `max_tasks` task configs. A sink's tasks
    /// share one consumer group, so the default gives each the same config.
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        Ok(vec![config.clone(); max_tasks.max(1)])
    }

    fn create_task(&self, config: &ConnectorConfig, host: Host) -> Result<Self::Task, ConnectorError>;
}

/// A running sink task. Each runs on its own thread in the worker: calls may
/// block, and a task that needs async I/O owns its own runtime.
pub trait SinkTask: Send + 'static {
    /// The task now owns these partitions.
    fn open(&mut self, _partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Takes a batch, in offset order per partition. The records borrow the
    /// worker's buffers: copy what you keep. Per-record failures go in the
    /// outcome; an `Err` fails the whole batch (a `Retriable` one is retried).
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError>;

    /// Per partition, the offset below which everything handed over is
    /// durable in the target. The worker never commits past it. Partitions
    /// not listed have nothing new settled. It is called on the commit
    /// interval whether records arrive or not (`put` is called only with
    /// records): a `Fatal` or `Config` error fails the task, any other only
    /// skips this commit.
    fn pre_commit(&mut self) -> Result<Vec<TopicPartitionOffset>, ConnectorError>;

    /// The task loses these partitions: drop their unfinished work (it will be
    /// re-delivered to the next owner from the committed offset).
    fn close(&mut self, _partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn stop(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// A source connector class: splits its work and creates tasks.
pub trait SourceConnector: Send + Sync + 'static {
    type Task: SourceTask;

    fn info(&self) -> ConnectorInfo;
    fn config_def(&self) -> ConfigDef;

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        self.config_def().validate(config)
    }

    /// Splits the work into at most `max_tasks` task configs (for example one
    /// per table). The default is a single task.
    fn task_configs(
        &self,
        config: &ConnectorConfig,
        _max_tasks: usize,
    ) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        Ok(vec![config.clone()])
    }

    fn create_task(&self, config: &ConnectorConfig, host: Host) -> Result<Self::Task, ConnectorError>;
}

/// A running source task, on its own thread in the worker.
pub trait SourceTask: Send + 'static {
    /// Called once before the first poll with the last committed offsets of
    /// this task's source partitions (empty on a first start).
    fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError>;

    /// Returns up to `max_records` records; may block briefly (about a
    /// second at most) and return none.
    fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError>;

    /// These offsets are now durable in Kafka (every record up to them was
    /// acknowledged) and stored in the offsets topic.
    fn commit(&mut self, _offsets: &[SourceOffset]) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn stop(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
