//! # connector-kit: what every connector needs besides the traits
//!
//! `connector-api` is the boundary a plugin must respect; this crate is the
//! toolbox on the plugin's side of it (nothing here crosses the ABI):
//!
//! - [`classify`]: one answer to "is this error transient?" — an HTTP
//!   status, an I/O error or an SQLSTATE → [`ErrorKind`](connector_api::ErrorKind).
//! - [`retry`]: a [`RetryPolicy`](retry::RetryPolicy) (attempts, elapsed
//!   time, capped exponential backoff with full jitter) and `retry(…)`.
//! - [`http`] (feature `http`): a blocking client over ureq with timeouts, a
//!   base URL, retries, `Retry-After`, a [`TokenSource`](http::TokenSource)
//!   renewed on 401, and classified errors.
//! - [`metrics`]: [`Counter`](metrics::Counter), [`Gauge`](metrics::Gauge)
//!   and [`Histogram`](metrics::Histogram) handles declared once.
//! - [`runtime`] (feature `runtime`): a named tokio runtime of the plugin's own.
//! - [`harness`]: drive a task in unit tests as the worker would, crash it,
//!   revoke its partitions, and assert what it reported durable.
//!
//! Add it beside `connector-api` (as a dev-dependency too if you only use
//! the harness; `default-features = false` leaves out ureq and tokio):
//!
//! ```toml
//! [dependencies]
//! connector-kit = { path = "../connector-kit", default-features = false, features = ["http"] }
//! ```
//!
//! ## A sink with the kit
//!
//! A sink that keeps each record's value in a "store" (a map standing in
//! for the target), classifies the store's failures, counts through a
//! handle, and reports durable only what the store acknowledged:
//!
//! ```
//! use std::collections::BTreeMap;
//! use connector_api::*;
//! use connector_kit::{classify, metrics::Counter};
//!
//! pub struct MapSink;
//! pub struct MapTask {
//!     store: BTreeMap<(String, i32, i64), String>,
//!     written: Counter,
//! }
//!
//! impl SinkConnector for MapSink {
//!     type Task = MapTask;
//!     fn info(&self) -> ConnectorInfo {
//!         ConnectorInfo { class: "map-sink", aliases: &[], version: "1.0.0", documentation: "Keeps values." }
//!     }
//!     fn config_def(&self) -> ConfigDef {
//!         ConfigDef::new()
//!     }
//!     fn create_task(&self, _: &ConnectorConfig, host: Host, _: SinkContext) -> Result<MapTask, ConnectorError> {
//!         // Declared once: name and help are not repeated at each call.
//!         let written = Counter::new(&host, "map_sink_records_total", "Records written to the map");
//!         Ok(MapTask { store: BTreeMap::new(), written })
//!     }
//! }
//!
//! impl SinkTask for MapTask {
//!     fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
//!         let mut outcome = PutOutcome::accepted();
//!         for (i, r) in records.iter().enumerate() {
//!             match r.value().map(std::str::from_utf8) {
//!                 Some(Ok(v)) => {
//!                     self.store.insert((r.topic().to_string(), r.partition(), r.offset()), v.to_string());
//!                 }
//!                 // What a target would answer with a 422: one bad record, routed by the worker.
//!                 _ => outcome.fail(i, classify::http_error(422, &r.position(), "not UTF-8 text",
//!                                                          classify::StatusPolicy::SINK)),
//!             }
//!         }
//!         self.written.add((records.len() - outcome.failures().len()) as f64);
//!         Ok(outcome)
//!     }
//!     fn pre_commit(&mut self, delivered: &[TopicPartitionOffset])
//!         -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
//!         Ok(delivered.to_vec()) // written synchronously in put
//!     }
//! }
//!
//! // Its unit test: records from a builder, a bad one, a commit, a crash.
//! use connector_kit::harness::{RecordBuilder, SinkHarness};
//!
//! let mut h = SinkHarness::new(MapSink, ConnectorConfig::new()).unwrap();
//! h.open(&[TopicPartition::new("orders", 0)]).unwrap();
//! let mut b = RecordBuilder::new("orders", 0);
//! b.value("a").push().value(vec![0xff]).push().value("c").push();
//! let outcome = h.put(&b.take()).unwrap();
//! assert_eq!(outcome.failures()[0].error.kind(), ErrorKind::BadRecord);
//! h.commit().unwrap();
//! h.assert_durable("orders", 0, 3); // the bad record was routed (the DLQ acknowledged it)
//! b.value("d").push();
//! h.put(&b.take()).unwrap();
//! h.crash().unwrap(); // offset 3 was never committed: it is handed again
//! assert_eq!(h.task().store.len(), 1);
//! h.commit().unwrap();
//! h.assert_durable("orders", 0, 4);
//! h.never_past_unsettled();
//! ```
//!
//! ## A source with the kit
//!
//! A source reading pages from an HTTP API would build one
//! [`HttpClient`](http::HttpClient) in `create_task` and turn its errors
//! into the worker's kinds with
//! [`HttpError::to_connector_error`](http::HttpError::to_connector_error)
//! and [`StatusPolicy::SOURCE`](classify::StatusPolicy::SOURCE). Its test
//! drives it through [`SourceHarness`](harness::SourceHarness):
//!
//! ```
//! use connector_api::*;
//! use connector_kit::harness::SourceHarness;
//!
//! /// Emits the letters of a word, resuming after the committed one.
//! pub struct Letters;
//! pub struct LettersTask { word: Vec<u8>, next: usize }
//!
//! impl SourceConnector for Letters {
//!     type Task = LettersTask;
//!     fn info(&self) -> ConnectorInfo {
//!         ConnectorInfo { class: "letters", aliases: &[], version: "1.0.0", documentation: "Spells." }
//!     }
//!     fn config_def(&self) -> ConfigDef {
//!         ConfigDef::new()
//!     }
//!     fn create_task(&self, config: &ConnectorConfig, _: Host) -> Result<LettersTask, ConnectorError> {
//!         let word = config.get("word").unwrap_or("sluice").as_bytes().to_vec();
//!         Ok(LettersTask { word, next: 0 })
//!     }
//! }
//!
//! impl SourceTask for LettersTask {
//!     fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
//!         if let Some(o) = committed.first() {
//!             let at: usize = o.offset.parse().map_err(|_| ConnectorError::fatal("bad offset"))?;
//!             self.next = at + 1;
//!         }
//!         Ok(())
//!     }
//!     fn poll(&mut self, max: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
//!         let end = (self.next + max.min(2)).min(self.word.len());
//!         let records = (self.next..end)
//!             .map(|i| SourceRecord::new("letters", SourceOffset::new("{}", i.to_string()))
//!                 .with_value(vec![self.word[i]]))
//!             .collect();
//!         self.next = end;
//!         Ok(records)
//!     }
//! }
//!
//! let mut h = SourceHarness::new(Letters, ConnectorConfig::new(), &[]).unwrap();
//! h.poll(10).unwrap();           // s l
//! h.commit().unwrap();           // acknowledged: offset 1
//! h.poll(10).unwrap();           // u i, never acknowledged
//! h.crash().unwrap();            // restarts after offset 1
//! h.poll_until(4, 10, 5).unwrap(); // u i c e
//! h.assert_no_record_lost();
//! assert_eq!(h.values().concat(), "sluiuice");
//! ```

pub mod classify;
pub mod harness;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
pub mod retry;
#[cfg(feature = "runtime")]
pub mod runtime;
