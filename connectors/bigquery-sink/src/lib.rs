//! `sluice-bigquery-sink`: writes Kafka records to BigQuery tables.
//!
//! - [`config`]: Confluent's BigQuery sink keys (legacy and V2 names); its
//!   Java class names are aliases of `bigquery-sink`.
//! - [`task`]: the sink task. `ingestion.mode=STREAMING` writes exactly
//!   once through a COMMITTED Storage Write API stream per table and
//!   partition ([`streaming`]: the decisions, [`storage`]: the gRPC client,
//!   [`encode`]: rows as protobuf, [`evolve`]: schema changes on that
//!   path); without `ingestion.mode` it is the
//!   legacy connector's `tabledata.insertAll` ([`legacy`]).
//!   `ingestion.mode=BATCH LOADING` appends the same way to PENDING
//!   streams committed every `commit.interval` ([`batch`]); UPSERT and
//!   UPSERT_DELETE append to an intermediate table and MERGE ([`upsert`]).
//! - [`rest`], [`auth`], [`schema`]: tables, credentials, table schemas.
//!
//! Threading: each task owns a current-thread tokio runtime for gRPC and
//! blocks on it from the worker's task thread; it never touches the host's.

pub mod config;
pub mod encode;
pub mod evolve;
pub mod storage;
pub mod streaming;
pub mod task;

pub mod auth;
pub mod batch;
pub mod legacy;
pub mod rest;
pub mod schema;
pub mod table;
pub mod upsert;

use connector_api::{
    ConfigDef, ConfigIssue, ConnectorConfig, ConnectorError, ConnectorInfo, Host, SinkConnector, SinkContext,
};

pub use config::BigQuerySinkConfig;
pub use task::BigQuerySinkTask;

pub struct BigQuerySink;

impl SinkConnector for BigQuerySink {
    type Task = BigQuerySinkTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "bigquery-sink",
            aliases: &["com.wepay.kafka.connect.bigquery.BigQuerySinkConnector", "BigQueryStorageSink", "BigQuerySink"],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Writes JSON records to BigQuery tables with Confluent's configuration: exactly once \
                            through the Storage Write API (ingestion.mode=STREAMING, or BATCH LOADING: committed every \
                            commit.interval), or insertAll (legacy).",
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
    ) -> Result<BigQuerySinkTask, ConnectorError> {
        let cfg = BigQuerySinkConfig::from_config(config)?;
        host.info(
            "BigQuery sink task starting",
            &[("project", &cfg.project), ("dataset", &cfg.dataset), ("mode", &format!("{:?}", cfg.path))],
        );
        BigQuerySinkTask::new(cfg, host, context)
    }
}

connector_api::export_plugin! { sinks: [BigQuerySink], sources: [] }
