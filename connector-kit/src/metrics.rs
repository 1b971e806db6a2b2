//! Metric handles: a counter, gauge or histogram is declared once with its
//! name, help text and fixed labels, then counted without repeating them.
//!
//! The worker adds the connector and task ids to every metric and exports
//! it to Prometheus (a plugin has no registry of its own: ARCHITECTURE.md,
//! invariant 13).
//!
//! ```
//! use connector_api::Host;
//! use connector_kit::metrics::Counter;
//!
//! let host = Host::stderr();
//! let rows = Counter::new(&host, "hybris_rows_read_total", "Hybris rows turned into records")
//!     .label("itemtype", "Order");
//! rows.add(3.0);
//! rows.inc();
//! ```

use std::sync::Arc;

use connector_api::Host;

/// What every handle holds: the host, the name, the help text and labels.
#[derive(Clone)]
struct Family {
    host: Host,
    name: Arc<str>,
    help: Arc<str>,
    labels: Vec<(String, String)>,
}

impl Family {
    fn new(host: &Host, name: &str, help: &str) -> Self {
        Family { host: host.clone(), name: name.into(), help: help.into(), labels: Vec::new() }
    }
    fn labels(&self) -> Vec<(&str, &str)> {
        self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Family);

        impl $name {
            pub fn new(host: &Host, name: &str, help: &str) -> Self {
                $name(Family::new(host, name, help))
            }
            /// The same metric with one more label (a new handle: keep it).
            pub fn label(mut self, key: &str, value: &str) -> Self {
                self.0.labels.push((key.to_string(), value.to_string()));
                self
            }
            /// A sibling handle with one more label, leaving this one as it is.
            pub fn with_label(&self, key: &str, value: &str) -> Self {
                self.clone().label(key, value)
            }
            pub fn name(&self) -> &str {
                &self.0.name
            }
        }
    };
}

handle!(
    /// A monotonically increasing count.
    Counter
);
handle!(
    /// A value that goes up and down (a lag, a queue length).
    Gauge
);
handle!(
    /// Observations of a distribution (durations in seconds, sizes).
    Histogram
);

impl Counter {
    pub fn add(&self, value: f64) {
        let f = &self.0;
        f.host.counter(&f.name, &f.help, &f.labels(), value)
    }
    pub fn inc(&self) {
        self.add(1.0)
    }
}

impl Gauge {
    pub fn set(&self, value: f64) {
        let f = &self.0;
        f.host.gauge(&f.name, &f.help, &f.labels(), value)
    }
}

impl Histogram {
    pub fn observe(&self, value: f64) {
        let f = &self.0;
        f.host.histogram(&f.name, &f.help, &f.labels(), value)
    }
    /// Observes the seconds `f` took and returns its result.
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        self.observe(started.elapsed().as_secs_f64());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{Metric, MetricKind, RecordingHost};

    #[test]
    fn handles_repeat_name_help_and_labels() {
        let recording = RecordingHost::default();
        let host = recording.host();
        let rows = Counter::new(&host, "rows_total", "Rows").label("itemtype", "Order");
        let lag = Gauge::new(&host, "lag_seconds", "Lag");
        let put = Histogram::new(&host, "put_seconds", "Put time").label("a", "1").label("b", "2");
        rows.add(3.0);
        rows.inc();
        rows.with_label("extra", "x").inc();
        lag.set(1.5);
        put.observe(0.25);
        assert_eq!(put.time(|| 7), 7);
        let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let order = labels(&[("itemtype", "Order")]);
        let table = [
            (MetricKind::Counter, "rows_total", "Rows", order.clone(), 3.0),
            (MetricKind::Counter, "rows_total", "Rows", order.clone(), 1.0),
            (MetricKind::Counter, "rows_total", "Rows", labels(&[("itemtype", "Order"), ("extra", "x")]), 1.0),
            (MetricKind::Gauge, "lag_seconds", "Lag", Vec::new(), 1.5),
            (MetricKind::Histogram, "put_seconds", "Put time", labels(&[("a", "1"), ("b", "2")]), 0.25),
        ];
        let got = recording.metrics();
        for (i, (kind, name, help, labels, value)) in table.into_iter().enumerate() {
            assert_eq!(got[i], Metric { kind, name: name.into(), help: help.into(), labels, value }, "#{i}");
        }
        assert_eq!(got.len(), 6);
        assert_eq!(recording.total("rows_total"), 5.0);
        assert_eq!(rows.name(), "rows_total");
    }
}
