//! The idiomatic traits connector authors implement.

use crate::{
    config::{ConfigDef, ConfigIssue, ConnectorConfig},
    context::SinkContext,
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
///
/// The worker calls `info`, `config_def`, `validate` and `task_configs` on
/// whichever worker answers a REST request, on a REST thread; they must not
/// block on I/O for long (a validation that needs the target should time
/// out within seconds). `create_task` runs on the task's own thread.
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

    /// Creates a task for a validated task config (secrets resolved). Keep
    /// the `host` (logging, metrics, stop flag) and the `context` (seek,
    /// pause, commit requests, durable notes) for the task's lifetime. An
    /// error fails the task: `Config` and `Fatal` say the config or the
    /// target refused, `Retriable` that the target was unreachable (the
    /// worker restarts the task with backoff either way).
    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<Self::Task, ConnectorError>;
}

/// A running sink task.
///
/// # Lifecycle
///
/// One task is one consumer in group `connect-<connector>`. Every call
/// comes from the same worker thread, one at a time, in this order:
///
/// ```text
/// create_task ─► ( open(assigned) ─► ( put(batch) | pre_commit(delivered) )* ─► close(revoked) )* ─► stop
/// ```
///
/// - `open` when partitions are assigned (also after a rebalance), before
///   any of their records are put. Read [`SinkContext::note`] here to find
///   what an earlier owner left unfinished; [`SinkContext::seek`] past what
///   the target already holds.
/// - `put` with records in offset order per partition, only with records.
///   It must return well within the consumer's `max.poll.interval.ms`
///   (default 300 s): hand slow work to your own threads and report it
///   durable later through `pre_commit`.
/// - `pre_commit` every `offset.flush.interval.ms` (default 60 s), on revoke
///   (before `close`), on [`SinkContext::request_commit`], and at stop; with
///   or without records since the last call.
/// - `close` when partitions are revoked: drop their unfinished work, it is
///   re-delivered to the next owner from the committed offset.
/// - `stop` once, after the final `pre_commit` and `close`.
///
/// The worker never commits a partition's offset past what `pre_commit`
/// reported durable, nor past a record that failed and was not yet routed
/// (ARCHITECTURE.md, invariant 1). After a crash the next owner gets every
/// record from the last committed offset again: a sink must write so that
/// a record written twice lands once (deterministic object names, upsert
/// keys, stream offsets), or find out in `open` what is already there.
///
/// # Errors
///
/// What the worker does with an `Err` or a per-record failure, by kind:
///
/// | kind | from `put` (whole batch) | per record in [`PutOutcome`] | from `pre_commit` |
/// |---|---|---|---|
/// | `Retriable` | the same batch again, with backoff, until taken (partitions paused meanwhile) | retried up to `errors.retry.timeout`, then as `BadRecord` | this commit skipped |
/// | `BadRecord` | every record of the batch to the DLQ (per `errors.tolerance`) | to the DLQ | this commit skipped |
/// | `Rejected` | every record to the rejected topic | to the rejected topic | this commit skipped |
/// | `Fatal`, `Config` | the task FAILS (restarted with backoff) | — | the task FAILS |
///
/// A record failed with [`PutOutcome::fail_with_details`] is routed with
/// its details as headers `__sluice.errors.target.<key>` beside Kafka
/// Connect's `__connect.errors.*` (which stay as they are, the error's
/// message included): give the target's error code, message and the fields
/// it named there, so that whoever reads the DLQ or rejected topic need not
/// parse the message. A worker older than the details routes the record
/// without them.
///
/// # Status
///
/// A task that waits for something the user should know of, without
/// failing (the target's API allocation used up, say), says so with
/// [`SinkContext::report_status`]: its state stays `RUNNING` and the REST
/// status shows the message until the task reports `None` or ends. Not for
/// failures: return an error, the worker shows it as `FAILED` with a trace.
///
/// Calls are guarded: a panic fails the task with the panic message.
pub trait SinkTask: Send + 'static {
    /// The task now owns these partitions.
    fn open(&mut self, _partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Takes a batch, in offset order per partition. The records borrow the
    /// worker's buffers: copy what you keep. Per-record failures go in the
    /// outcome; an `Err` fails the whole batch (see the table above).
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError>;

    /// Per partition, the offset below which everything handed over is
    /// durable in the target. The worker never commits past it. Partitions
    /// not listed have nothing new settled.
    ///
    /// `delivered` is, per partition the task owns, the offset after the
    /// last record handed to `put` (under the topic names the sink saw,
    /// after transforms): Kafka Connect's `currentOffsets`. It counts the
    /// records of every `put` that returned `Ok`, those failed in its
    /// outcome included (the worker holds the commit until they are routed);
    /// a `put` that returned `Err` delivered nothing. A sink that
    /// writes synchronously in `put` is durable up to there, and returns it:
    ///
    /// ```
    /// # use connector_api::*;
    /// # struct Synchronous;
    /// # impl SinkTask for Synchronous {
    /// # fn put(&mut self, _: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> { Ok(PutOutcome::accepted()) }
    /// fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
    ///     Ok(delivered.to_vec())
    /// }
    /// # }
    /// ```
    ///
    /// A buffering sink returns less: only what it flushed. There is no
    /// default, so that a buffering sink cannot inherit "everything
    /// delivered is durable".
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError>;

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

/// A running source task.
///
/// # Lifecycle
///
/// Every call comes from the task's own worker thread, one at a time:
///
/// ```text
/// create_task ─► start(committed) ─► ( poll | commit(acknowledged) )* ─► stop
/// ```
///
/// - `start` once, with the last committed source offset of each source
///   partition this task had (empty on a first start).
/// - `poll` in a loop; it may block for about a second at most and return
///   no records (the worker checks its stop flag between polls).
/// - `commit` after every record of earlier polls up to these offsets was
///   acknowledged by Kafka (`acks=all`, idempotent producer) and the
///   offsets were stored (ARCHITECTURE.md, invariant 3).
///
/// What a source must guarantee: a record's source offset says where to
/// resume so that nothing after it is lost. After a crash the task starts
/// from the last *committed* offset, so records polled after it are polled
/// again. The worker's exactly-once sources (on unless the connector sets
/// `exactly.once.source.support=disabled`; ARCHITECTURE.md, "Exactly-once
/// sources") then skip the ones already in Kafka, by their (source
/// partition, source offset), which holds only if the source guarantees:
///
/// - **deterministic offsets**: a record polled again after `start` from a
///   committed offset has the same source partition and offset (the same
///   JSON text) as the first time, and no two records share them;
/// - **the same order**: records of one source partition are polled again
///   in the order they were polled the first time;
/// - nothing of a source partition is skipped between the committed offset
///   and the records polled after it.
///
/// A source that cannot promise these (an offset that is a wall-clock
/// time, records merged from a changing set) is at least once: document
/// that its users set `exactly.once.source.support=disabled`.
///
/// Errors: `Retriable` from `poll` is retried with backoff; any other kind
/// fails the task. Records the worker cannot convert or transform go to the
/// DLQ per `errors.tolerance`.
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
