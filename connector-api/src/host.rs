//! Services the worker hands to every connector task: logging, metrics and a
//! stop flag.
//!
//! A plugin has its own copies of every static (its own `tracing` dispatcher,
//! its own tokio), so it must not log or count through them: it calls back
//! into the worker, which attaches the connector and task ids and routes the
//! call into its `tracing` subscriber and Prometheus registry.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RSlice, RStr},
    StableAbi,
};
use std::sync::Arc;

/// A borrowed key and value (log fields, metric labels).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct KeyValue<'a> {
    pub key: RStr<'a>,
    pub value: RStr<'a>,
}

/// The host's side of the services, as a stable trait object.
#[sabi_trait]
pub trait FfiHost: Send + Sync {
    /// `level`: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>);
    /// `kind`: 1 counter (add `value`), 2 gauge (set), 3 histogram (observe).
    fn metric(&self, kind: u8, name: RStr<'_>, help: RStr<'_>, labels: RSlice<'_, KeyValue<'_>>, value: f64);
    #[sabi(last_prefix_field)]
    fn stop_requested(&self) -> bool;
}

/// The boxed trait object the worker passes at task creation.
pub type FfiHostBox = FfiHost_TO<'static, RBox<()>>;

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn from_code(code: u8) -> Level {
        match code {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// What a connector task uses to log, count and learn that it should stop.
/// Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<FfiHostBox>,
}

impl Host {
    pub fn from_ffi(inner: FfiHostBox) -> Self {
        Host { inner: Arc::new(inner) }
    }

    /// A host that writes log lines to stderr and drops metrics: for unit
    /// tests of a connector outside the worker.
    pub fn stderr() -> Self {
        Host::from_ffi(FfiHost_TO::from_value(StderrHost, abi_stable::sabi_trait::TD_Opaque))
    }

    pub fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let kvs: Vec<KeyValue<'_>> =
            fields.iter().map(|(k, v)| KeyValue { key: (*k).into(), value: (*v).into() }).collect();
        self.inner.log(level as u8, "connector".into(), message.into(), kvs.as_slice().into());
    }
    pub fn error(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Error, message, fields)
    }
    pub fn warn(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Warn, message, fields)
    }
    pub fn info(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Info, message, fields)
    }
    pub fn debug(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(Level::Debug, message, fields)
    }

    fn metric(&self, kind: u8, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let kvs: Vec<KeyValue<'_>> =
            labels.iter().map(|(k, v)| KeyValue { key: (*k).into(), value: (*v).into() }).collect();
        self.inner.metric(kind, name.into(), help.into(), kvs.as_slice().into(), value);
    }
    /// Adds `value` to counter `name` (labels: the task's ids are added by the worker).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.metric(1, name, help, labels, value)
    }
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.metric(2, name, help, labels, value)
    }
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.metric(3, name, help, labels, value)
    }

    /// True once the worker wants the task to stop: long loops check it.
    pub fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }
}

struct StderrHost;

impl FfiHost for StderrHost {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>) {
        let fields: Vec<String> = fields.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
        eprintln!("{:?} {target}: {message} {}", Level::from_code(level), fields.join(" "));
    }
    fn metric(&self, _: u8, _: RStr<'_>, _: RStr<'_>, _: RSlice<'_, KeyValue<'_>>, _: f64) {}
    fn stop_requested(&self) -> bool {
        false
    }
}
