//! The worker's Prometheus metrics (served at `/metrics`).

use std::sync::OnceLock;

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use rdkafka::{client::ClientContext, consumer::ConsumerContext, statistics::Statistics};

use crate::state::RunState;

/// The states `sluice_task_state` has a series for, per task.
const TASK_STATES: [RunState; 4] = [RunState::Running, RunState::Paused, RunState::Failed, RunState::Unassigned];

pub struct Metrics {
    pub registry: Registry,
    /// Records consumed from Kafka by sink tasks.
    pub records_read: IntCounterVec,
    /// Records accepted by a sink's `put`, or produced by a source task.
    pub records_written: IntCounterVec,
    pub records_filtered: IntCounterVec,
    pub records_dlq: IntCounterVec,
    pub records_rejected: IntCounterVec,
    pub put_seconds: HistogramVec,
    pub commit_seconds: HistogramVec,
    pub buffered_bytes: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    /// 1 for the task's current state, by state name.
    pub task_state: IntGaugeVec,
    pub task_restarts: IntCounterVec,
    pub rest_requests: IntCounterVec,
    pub errors: CounterVec,
    pub broker_connections: GaugeVec,
}

/// `sluice_broker_connections`, process-wide because the clients that feed
/// it are created where no `Metrics` is at hand (the cluster's, at start-up).
/// Set by the first [`Metrics::new`]; statistics arriving before are dropped.
static BROKER_CONNECTIONS: OnceLock<GaugeVec> = OnceLock::new();

/// How often the clients reporting to `sluice_broker_connections` send
/// librdkafka statistics (the JSON is parsed on librdkafka's thread; every
/// 5 s costs nothing measurable).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// A librdkafka client context that feeds `sluice_broker_connections` for
/// its client from the statistics callback (`statistics.interval.ms` must be
/// set on the client, e.g. to [`STATISTICS_INTERVAL_MS`]). The client's
/// series goes away with the client (a stopped task's clients leave no
/// stale gauge behind).
pub struct BrokerStats {
    client: String,
    /// The last connection error, so a repeated one is logged once.
    errors: crate::kafka::diagnose::Diagnosing,
}

impl BrokerStats {
    pub fn new(client: impl Into<String>) -> BrokerStats {
        let client = client.into();
        BrokerStats { errors: crate::kafka::diagnose::Diagnosing::new(client.clone()), client }
    }

    /// Kafka Connect's client ids for a task's clients:
    /// `connector-consumer-<connector>-<task>`, `connector-producer-…`,
    /// `connector-dlq-producer-…`.
    pub fn task(role: &str, connector: &str, task: i32) -> BrokerStats {
        BrokerStats::new(format!("connector-{role}-{connector}-{task}"))
    }

    /// Feeds the gauge (for contexts that wrap this one).
    pub fn record(&self, statistics: &Statistics) {
        // Bootstrap and logical brokers (the group coordinator) have node id
        // -1: they are extra names for connections already counted, or none.
        let up = statistics.brokers.values().filter(|b| b.nodeid >= 0 && b.state == "UP").count();
        if let Some(gauge) = BROKER_CONNECTIONS.get() {
            gauge.with_label_values(&[self.client.as_str()]).set(up as f64);
        }
    }
}

impl Drop for BrokerStats {
    fn drop(&mut self) {
        if let Some(gauge) = BROKER_CONNECTIONS.get() {
            let _ = gauge.remove_label_values(&[self.client.as_str()]);
        }
    }
}

/// A producer whose connections count in `sluice_broker_connections`.
pub type CountedProducer = rdkafka::producer::FutureProducer<BrokerStats>;

impl ClientContext for BrokerStats {
    fn stats(&self, statistics: Statistics) {
        self.record(&statistics);
    }

    /// Connection errors name the setting to fix (a wrong CA, password, …);
    /// librdkafka keeps retrying, so the task and the worker stay up.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::diagnose::log_connection_failure(&self.errors, level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::diagnose::report_error(&self.errors, &error, reason);
    }
}

impl ConsumerContext for BrokerStats {}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    // Names are constants of this module, so registration cannot clash.
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let task = &["connector", "task"];
        let r = &registry;
        let gauge = GaugeVec::new(
            Opts::new(
                "sluice_broker_connections",
                "Brokers a long-lived Kafka client of the worker is connected to (state UP in librdkafka's statistics)",
            ),
            &["client"],
        )?;
        let broker_connections = BROKER_CONNECTIONS.get_or_init(|| gauge).clone();
        Ok(Metrics {
            records_read: register(
                r,
                IntCounterVec::new(
                    Opts::new("sluice_records_read_total", "Records read from Kafka by sink tasks"),
                    task,
                )?,
            ),
            records_written: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sluice_records_written_total",
                        "Records written by tasks (sink: accepted by put; source: acknowledged by Kafka)",
                    ),
                    task,
                )?,
            ),
            records_filtered: register(
                r,
                IntCounterVec::new(Opts::new("sluice_records_filtered_total", "Records dropped on purpose"), task)?,
            ),
            records_dlq: register(
                r,
                IntCounterVec::new(
                    Opts::new("sluice_records_dlq_total", "Records produced to the dead-letter queue"),
                    task,
                )?,
            ),
            records_rejected: register(
                r,
                IntCounterVec::new(
                    Opts::new("sluice_records_rejected_total", "Records produced to the rejected-records topic"),
                    task,
                )?,
            ),
            put_seconds: register(
                r,
                HistogramVec::new(HistogramOpts::new("sluice_put_seconds", "Latency of a sink task's put"), task)?,
            ),
            commit_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("sluice_commit_seconds", "Latency of pre_commit plus the offset commit"),
                    task,
                )?,
            ),
            buffered_bytes: register(
                r,
                IntGaugeVec::new(
                    Opts::new("sluice_buffered_bytes", "Bytes handed to the sink and not yet durable"),
                    task,
                )?,
            ),
            consumer_lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new("sluice_consumer_lag", "High watermark minus committed offset"),
                    &["connector", "task", "topic", "partition"],
                )?,
            ),
            task_state: register(
                r,
                IntGaugeVec::new(
                    Opts::new("sluice_task_state", "1 for a task's current state"),
                    &["connector", "task", "state"],
                )?,
            ),
            task_restarts: register(
                r,
                IntCounterVec::new(
                    Opts::new("sluice_task_restarts_total", "Automatic and requested task restarts"),
                    task,
                )?,
            ),
            rest_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("sluice_rest_requests_total", "REST requests by route and status code"),
                    &["method", "route", "code"],
                )?,
            ),
            errors: register(
                r,
                CounterVec::new(
                    Opts::new("sluice_task_errors_total", "Errors by kind and stage"),
                    &["connector", "task", "kind", "stage"],
                )?,
            ),
            broker_connections: register(r, broker_connections),
            registry,
        })
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    pub fn set_task_state(&self, connector: &str, task: i32, state: RunState) {
        let task = task.to_string();
        for s in TASK_STATES {
            self.task_state.with_label_values(&[connector, &task, s.name()]).set(i64::from(s == state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_state_is_one_series_per_state_with_kafka_connects_name() {
        let metrics = Metrics::new().unwrap();
        metrics.set_task_state("c", 0, RunState::Paused);
        let shown = metrics.render();
        for (state, value) in [("RUNNING", 0), ("PAUSED", 1), ("FAILED", 0), ("UNASSIGNED", 0)] {
            let line = format!("sluice_task_state{{connector=\"c\",state=\"{state}\",task=\"0\"}} {value}");
            assert!(shown.contains(&line), "{line} not in {shown}");
        }
    }
}
