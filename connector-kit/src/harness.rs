//! A test harness for connector tasks, outside the worker: records built by
//! a builder, a sink driven through `open → put → pre_commit → close` with
//! the worker's bookkeeping (what is committed, what is re-delivered after a
//! crash or a revoke), injected failures, and a source driven through
//! `start → poll → commit` with crashes.
//!
//! Everything here is for tests: it panics on misuse and in its assertions.

mod host;
mod records;
mod sink;
mod source;

pub use host::{LogLine, Metric, MetricKind, RecordingHost};
pub use records::{borrow, OwnedRecord, RecordBuilder};
pub use sink::{Commit, SinkHarness};
pub use source::{Polled, SourceHarness};

#[cfg(test)]
mod tests;
