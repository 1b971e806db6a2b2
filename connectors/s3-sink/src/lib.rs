//! `sluice-s3-sink`: writes Kafka records to S3 objects, Confluent-compatible.
//!
//! - Configuration uses the Confluent S3 sink's property names and defaults;
//!   its Java class names are accepted as aliases ([`config`]).
//! - Object keys are Confluent's: `<topics.dir>/<topic>/<encoded partition>/
//!   <topic>+<partition>+<start offset>.<ext>` ([`naming`], [`partitioner`]).
//! - Records are encoded ([`format`], [`parquet_format`]) and compressed into
//!   part buffers as they arrive; full parts upload in the background;
//!   rotation ([`rotation`]) completes the object ([`upload`]).
//!
//! Threading: each task owns a 2-thread tokio runtime for S3 I/O and blocks
//! on it from the worker's task thread; it never touches the host's runtime.
//! - `pre_commit` reports, per partition, only offsets whose records are in
//!   completed objects (or were failed/ignored) ([`sink`]).

pub mod completion;
pub mod config;
pub mod format;
pub mod gzip;
pub mod naming;
pub mod object_security;
pub mod parquet_format;
pub mod partitioner;
pub mod recovery;
pub mod rotation;
pub mod sink;
pub mod tagging;
pub mod take;
pub mod upload;
pub mod zone;

use connector_api::{
    ConfigDef, ConfigIssue, ConnectorConfig, ConnectorError, ConnectorInfo, Host, SinkConnector, SinkContext,
};

pub use config::S3SinkConfig;
pub use sink::S3SinkTask;

pub struct S3Sink;

impl SinkConnector for S3Sink {
    type Task = S3SinkTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "s3-sink",
            aliases: &["io.confluent.connect.s3.S3SinkConnector"],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Writes records to Amazon S3 or an S3-compatible store as JSON lines, raw bytes or \
                            Parquet, with Confluent's object names; offsets are committed only after objects complete.",
        }
    }

    fn config_def(&self) -> ConfigDef {
        config::definition()
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        config::validate(config)
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<S3SinkTask, ConnectorError> {
        let cfg = S3SinkConfig::from_config(config)?;
        host.info("S3 sink task starting", &[("bucket", &cfg.bucket), ("topics.dir", &cfg.topics_dir)]);
        S3SinkTask::new(cfg, host, context)
    }
}

connector_api::export_plugin! { sinks: [S3Sink], sources: [] }
