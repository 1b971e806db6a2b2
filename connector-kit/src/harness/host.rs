//! A [`Host`] that records what a task logs and counts, for assertions.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RSlice, RStr},
};
use connector_api::{
    host::{FfiHost, FfiHost_TO, KeyValue},
    Host, Level,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric call.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub kind: MetricKind,
    pub name: String,
    pub help: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Default)]
struct Recorded {
    metrics: Vec<Metric>,
    logs: Vec<LogLine>,
    stop: bool,
}

/// Records logs and metrics; its stop flag is set by the test.
#[derive(Clone, Default)]
pub struct RecordingHost {
    inner: Arc<Mutex<Recorded>>,
}

impl RecordingHost {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// The [`Host`] to hand to a task (clones share the recording).
    pub fn host(&self) -> Host {
        Host::from_ffi(FfiHost_TO::from_value(self.clone(), TD_Opaque))
    }
    pub fn metrics(&self) -> Vec<Metric> {
        self.lock().metrics.clone()
    }
    pub fn logs(&self) -> Vec<LogLine> {
        self.lock().logs.clone()
    }
    /// The sum of every value of counter `name` (all labels).
    pub fn total(&self, name: &str) -> f64 {
        self.lock().metrics.iter().filter(|m| m.kind == MetricKind::Counter && m.name == name).map(|m| m.value).sum()
    }
    /// Makes `stop_requested` true.
    pub fn request_stop(&self) {
        self.lock().stop = true;
    }
}

fn pairs(kvs: RSlice<'_, KeyValue<'_>>) -> Vec<(String, String)> {
    kvs.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect()
}

impl FfiHost for RecordingHost {
    fn log(&self, level: u8, _target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>) {
        let line = LogLine { level: Level::from_code(level), message: message.to_string(), fields: pairs(fields) };
        self.lock().logs.push(line);
    }
    fn metric(&self, kind: u8, name: RStr<'_>, help: RStr<'_>, labels: RSlice<'_, KeyValue<'_>>, value: f64) {
        let kind = match kind {
            1 => MetricKind::Counter,
            2 => MetricKind::Gauge,
            _ => MetricKind::Histogram,
        };
        let metric = Metric { kind, name: name.to_string(), help: help.to_string(), labels: pairs(labels), value };
        self.lock().metrics.push(metric);
    }
    fn stop_requested(&self) -> bool {
        self.lock().stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_the_stop_flag_are_recorded() {
        let r = RecordingHost::default();
        let host = r.host();
        host.warn("slow", &[("ms", "900")]);
        assert!(!host.stop_requested());
        r.request_stop();
        assert!(host.stop_requested());
        assert_eq!(
            r.logs(),
            [LogLine { level: Level::Warn, message: "slow".into(), fields: vec![("ms".into(), "900".into())] }]
        );
    }
}
