//! # connector-api: write a Sluice connector
//!
//! A Sluice connector is a Rust `cdylib` that the worker loads at start-up
//! from its `--plugin-path`. This crate is both the stable ABI the worker and
//! the plugin agree on (built on `abi_stable`, checked at load) and the
//! idiomatic layer you program against: implement [`SinkConnector`] +
//! [`SinkTask`] or [`SourceConnector`] + [`SourceTask`], then call
//! [`export_plugin!`] once.
//!
//! A plugin crate is a `cdylib` depending on `connector-api` and on
//! `abi_stable = "0.11"` (the export attribute refers to it by path):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! connector-api = { path = "../connector-api" }
//! abi_stable = "0.11"
//! ```
//!
//! Rules of the road:
//!
//! - Every call into your code is guarded: a panic becomes a `Fatal` error
//!   carrying the panic message and fails only that task.
//! - Each task runs on its own worker thread; calls may block. Never assume
//!   the worker's tokio runtime: if you need async I/O, own a runtime.
//! - Log and count through the [`Host`] you receive, not through your own
//!   `tracing`/`prometheus` globals (a plugin has its own copies of them).
//! - A sink's `pre_commit` decides what the worker commits: report only what
//!   is durable in the target. Records that failed go in the `put` outcome
//!   with an [`ErrorKind`]; the worker routes them (DLQ, rejected topic,
//!   retries) and keeps the committed offset contiguous. What the target
//!   said about a record (its error code, the fields it named) can go with
//!   it as headers of their own ([`PutOutcome::fail_with_details`]); what
//!   the task wants its status to say while it runs, through
//!   [`SinkContext::report_status`].
//!
//! ## Write your own connector
//!
//! A complete sink that keeps lines in memory and a source that counts:
//!
//! ```
//! use connector_api::*;
//!
//! /// Appends each record's value as a line; everything put is durable at once.
//! pub struct LinesSink;
//!
//! pub struct LinesTask {
//!     lines: Vec<String>,
//!     host: Host,
//! }
//!
//! impl SinkConnector for LinesSink {
//!     type Task = LinesTask;
//!     fn info(&self) -> ConnectorInfo {
//!         ConnectorInfo { class: "lines-sink", aliases: &[], version: "1.0.0", documentation: "Keeps lines." }
//!     }
//!     fn config_def(&self) -> ConfigDef {
//!         ConfigDef::new().define(
//!             ConfigKey::new("lines.max", ConfigType::Int)
//!                 .default_value("1000")
//!                 .importance(Importance::High)
//!                 .doc("How many lines to keep.")
//!                 .validator(Validator::range(Some(1.0), None)),
//!         )
//!     }
//!     fn create_task(&self, _config: &ConnectorConfig, host: Host, _context: SinkContext)
//!         -> Result<LinesTask, ConnectorError> {
//!         Ok(LinesTask { lines: Vec::new(), host })
//!     }
//! }
//!
//! impl SinkTask for LinesTask {
//!     fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
//!         let mut outcome = PutOutcome::accepted();
//!         for (i, record) in records.iter().enumerate() {
//!             match record.value().map(std::str::from_utf8) {
//!                 Some(Ok(line)) => self.lines.push(line.to_string()),
//!                 _ => outcome.fail(i, ConnectorError::bad_record("value is not UTF-8 text")),
//!             }
//!         }
//!         self.host.counter("lines_written_total", "Lines kept", &[], records.len() as f64);
//!         Ok(outcome)
//!     }
//!     // Written synchronously in put: everything delivered is durable. (A
//!     // failed record is settled by the worker once it is routed.)
//!     fn pre_commit(&mut self, delivered: &[TopicPartitionOffset])
//!         -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
//!         Ok(delivered.to_vec())
//!     }
//! }
//!
//! /// Emits 0, 1, 2, … and resumes after the last committed number.
//! pub struct CountSource;
//! pub struct CountTask { next: u64 }
//!
//! impl SourceConnector for CountSource {
//!     type Task = CountTask;
//!     fn info(&self) -> ConnectorInfo {
//!         ConnectorInfo { class: "count-source", aliases: &[], version: "1.0.0", documentation: "Counts." }
//!     }
//!     fn config_def(&self) -> ConfigDef {
//!         ConfigDef::new().define(ConfigKey::new("topic", ConfigType::String).validator(Validator::NonEmpty))
//!     }
//!     fn create_task(&self, _config: &ConnectorConfig, _host: Host) -> Result<CountTask, ConnectorError> {
//!         Ok(CountTask { next: 0 })
//!     }
//! }
//!
//! impl SourceTask for CountTask {
//!     fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
//!         if let Some(last) = committed.first() {
//!             self.next = last.offset.parse::<u64>().map_err(|e| ConnectorError::fatal(e.to_string()))? + 1;
//!         }
//!         Ok(())
//!     }
//!     fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
//!         let records = (0..max_records.min(100) as u64).map(|i| {
//!             let n = self.next + i;
//!             SourceRecord::new("counts", SourceOffset::new("{}", n.to_string())).with_value(n.to_string())
//!         });
//!         let records: Vec<_> = records.collect();
//!         self.next += records.len() as u64;
//!         Ok(records)
//!     }
//! }
//!
//! export_plugin! { sinks: [LinesSink], sources: [CountSource] }
//!
//! # fn main() {
//! # let def = LinesSink.config_def();
//! # let issues = def.validate(&ConnectorConfig::new().with("lines.max", "0"));
//! # assert_eq!(issues[0].key.as_str(), "lines.max");
//! # }
//! ```

#![allow(non_local_definitions)] // abi_stable's sabi_trait expands to impls inside consts.

pub mod config;
pub mod context;
mod error;
pub mod export;
pub mod ext;
pub mod ffi;
pub mod host;
pub mod json;
pub mod record;
pub mod schema;
mod traits;

pub use config::typed::{ConfigEnum, Issues, Key, Secret};
pub use config::{
    ConfigDef, ConfigIssue, ConfigKey, ConfigKeyInfo, ConfigType, ConnectorConfig, Importance, Validator,
};
pub use context::SinkContext;
pub use error::{ConnectorError, ErrorKind};
pub use host::{Host, Level};
pub use record::{
    FailureDetail, Header, HeaderRef, PutOutcome, RecordFailure, SinkRecord, SourceOffset, SourceRecord,
    TopicPartition, TopicPartitionOffset,
};
pub use schema::Schema;
pub use traits::{ConnectorInfo, SinkConnector, SinkTask, SourceConnector, SourceTask};
