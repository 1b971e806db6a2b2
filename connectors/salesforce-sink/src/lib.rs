//! `salesforce-sink`: writes Kafka records to a Salesforce (Sales Cloud)
//! sObject through sObject Collections (≤ 200 rows a request, `allOrNone`
//! false, upsert by External ID), with Confluent's SObject sink keys and
//! class name. See the README for every key and the design.
//!
//! - `config.rs`: the keys and their cross-key checks;
//! - `auth.rs`: OAuth 2.0 JWT bearer (RS256) and client credentials, one
//!   token per task renewed on `401 INVALID_SESSION_ID`;
//! - `mapping.rs`: a record to a row (operation, key, renamed fields);
//! - `plan.rs`: the decisions (rows into requests, per-record results,
//!   refused requests, the API allocation);
//! - `sink.rs`: the task, thin I/O around them.

pub mod auth;
pub mod bulk;
pub mod config;
pub mod mapping;
pub mod marketing_cloud;
pub mod plan;
pub mod sink;

use connector_api::*;

pub use sink::SalesforceTask;

/// The connector class `salesforce-sink`.
pub struct SalesforceSink;

impl SinkConnector for SalesforceSink {
    type Task = SalesforceTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "salesforce-sink",
            aliases: &["io.confluent.salesforce.SalesforceSObjectSinkConnector"],
            version: env!("CARGO_PKG_VERSION"),
            documentation:
                "Writes records to a Salesforce sObject through sObject Collections (upsert by External ID), \
                            with OAuth2 JWT bearer or client credentials.",
        }
    }

    fn config_def(&self) -> ConfigDef {
        config::Settings::definition()
    }

    /// The keys, then the combinations (PASSWORD, the key of JWT_BEARER, …).
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        let issues = self.config_def().validate(config);
        if !issues.is_empty() {
            return issues;
        }
        config::SalesforceConfig::parse(config).err().unwrap_or_default()
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<SalesforceTask, ConnectorError> {
        SalesforceTask::new(config, host, context)
    }
}

connector_api::export_plugin! { sinks: [SalesforceSink, marketing_cloud::MarketingCloudSink], sources: [] }
