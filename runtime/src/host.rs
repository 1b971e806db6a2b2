//! The worker's side of the host services a plugin task calls back into:
//! log lines become `tracing` events carrying the connector and task ids;
//! metrics land in the worker's Prometheus registry with those ids as labels.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RSlice, RStr},
};
use connector_api::host::{FfiHost, FfiHostBox, FfiHost_TO, KeyValue, Level};
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};

/// The worker's Prometheus registry.
pub type MetricsRegistry = Registry;

/// Metric families created on demand by plugins, in the worker's registry.
pub struct PluginMetrics {
    registry: Registry,
    families: Mutex<HashMap<String, Family>>,
}

#[derive(Clone)]
enum Family {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

impl PluginMetrics {
    pub fn new(registry: Registry) -> Self {
        PluginMetrics { registry, families: Mutex::new(HashMap::new()) }
    }

    fn record(&self, kind: u8, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        let family = {
            let Ok(mut families) = self.families.lock() else { return };
            match families.get(name) {
                Some(f) => f.clone(),
                None => {
                    let help = if help.is_empty() { name } else { help };
                    let created = match kind {
                        1 => CounterVec::new(Opts::new(name, help), &names).map(Family::Counter),
                        2 => GaugeVec::new(Opts::new(name, help), &names).map(Family::Gauge),
                        _ => HistogramVec::new(HistogramOpts::new(name, help), &names).map(Family::Histogram),
                    };
                    let family = match created {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::warn!(metric = name, error = %e, "a plugin metric was dropped");
                            return;
                        }
                    };
                    let collector: Box<dyn prometheus::core::Collector> = match &family {
                        Family::Counter(c) => Box::new(c.clone()),
                        Family::Gauge(g) => Box::new(g.clone()),
                        Family::Histogram(h) => Box::new(h.clone()),
                    };
                    if let Err(e) = self.registry.register(collector) {
                        tracing::warn!(metric = name, error = %e, "a plugin metric clashes with an existing one");
                    }
                    families.insert(name.to_string(), family.clone());
                    family
                }
            }
        };
        // A label set that does not match the family's first use is dropped
        // (with a log line) rather than crashing the task.
        let result = match family {
            Family::Counter(c) => c.get_metric_with_label_values(&values).map(|m| m.inc_by(value.max(0.0))),
            Family::Gauge(g) => g.get_metric_with_label_values(&values).map(|m| m.set(value)),
            Family::Histogram(h) => h.get_metric_with_label_values(&values).map(|m| m.observe(value)),
        };
        if let Err(e) = result {
            tracing::debug!(metric = name, error = %e, "a plugin metric sample was dropped");
        }
    }
}

/// The host services of one task (or of a connector-level call).
pub struct TaskHost {
    connector: String,
    task: i32,
    stop: Arc<AtomicBool>,
    metrics: Arc<PluginMetrics>,
}

impl TaskHost {
    /// `stop` is set by the worker when the task should wind down.
    pub fn new(connector: &str, task: i32, stop: Arc<AtomicBool>, metrics: Arc<PluginMetrics>) -> Self {
        TaskHost { connector: connector.to_string(), task, stop, metrics }
    }

    pub fn into_ffi(self) -> FfiHostBox {
        FfiHost_TO::from_value(self, TD_Opaque)
    }
}

impl FfiHost for TaskHost {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>, fields: RSlice<'_, KeyValue<'_>>) {
        let fields = fields.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect::<Vec<_>>().join(" ");
        let (connector, task, target, message) =
            (self.connector.as_str(), self.task, target.as_str(), message.as_str());
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(connector, task, plugin_target = target, fields = fields.as_str(), "{message}")
            };
        }
        match Level::from_code(level) {
            Level::Error => emit!(error),
            Level::Warn => emit!(warn),
            Level::Info => emit!(info),
            Level::Debug => emit!(debug),
            Level::Trace => emit!(trace),
        }
    }

    fn metric(&self, kind: u8, name: RStr<'_>, help: RStr<'_>, labels: RSlice<'_, KeyValue<'_>>, value: f64) {
        let task = self.task.to_string();
        let mut all: Vec<(&str, &str)> = vec![("connector", self.connector.as_str()), ("task", task.as_str())];
        all.extend(labels.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())));
        self.metrics.record(kind, name.as_str(), help.as_str(), &all, value);
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
