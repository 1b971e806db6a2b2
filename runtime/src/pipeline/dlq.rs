//! Routing failed records: the dead-letter queue (bad records, exhausted
//! retries; sink- and source-side) and the rejected-records topic (business
//! rejections), with Kafka Connect's `__connect.errors.*` context headers.
//! `rest/dlq_replay.rs` reads these headers back to replay a record.

use anyhow::anyhow;
use connector_api::{ConnectorError, ErrorKind};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureRecord},
};

use crate::metrics::CountedProducer;

/// A failed record, borrowed from the consumer's message (sink side) or the
/// plugin's record (source side).
pub struct FailedRecord<'a> {
    /// Source side: the topic the plugin intended.
    pub topic: &'a str,
    /// Source side: the plugin's partition, or -1 when it chose none.
    pub partition: i32,
    /// Source side: -1 (a source record has no Kafka offset yet).
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Where a failed record goes.
pub enum Route {
    Topic {
        topic: String,
        rejected: bool,
    },
    /// Tolerated and dropped (no topic configured).
    Drop,
    /// Not tolerated: the task fails.
    Fail,
}

/// Decides per `errors.tolerance` and the topics configured.
pub fn route(error: &ConnectorError, runtime: &crate::connector_config::RuntimeConfig) -> Route {
    if !runtime.tolerance_all {
        return Route::Fail;
    }
    match (error.kind(), &runtime.rejected_topic, &runtime.dlq_topic) {
        (ErrorKind::Fatal | ErrorKind::Config, _, _) => Route::Fail,
        (ErrorKind::Rejected, Some(t), _) => Route::Topic { topic: t.clone(), rejected: true },
        (_, _, Some(t)) => Route::Topic { topic: t.clone(), rejected: false },
        _ => Route::Drop,
    }
}

pub struct ErrorContext<'a> {
    pub connector: &'a str,
    pub task: i32,
    pub class: &'a str,
    pub stage: &'a str,
}

/// Queues the record to `topic`; the caller waits for the acknowledgement
/// before the record counts as settled.
pub fn send(
    producer: &CountedProducer,
    topic: &str,
    record: &FailedRecord<'_>,
    error: &ConnectorError,
    context: &ErrorContext<'_>,
    context_headers: bool,
) -> anyhow::Result<DeliveryFuture> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &record.headers {
        headers = headers.insert(Header { key, value: *value });
    }
    if context_headers {
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let task = context.task.to_string();
        let pairs: [(&str, &str); 10] = [
            ("__connect.errors.topic", record.topic),
            ("__connect.errors.partition", &partition),
            ("__connect.errors.offset", &offset),
            ("__connect.errors.connector.name", context.connector),
            ("__connect.errors.task.id", &task),
            ("__connect.errors.stage", context.stage),
            ("__connect.errors.class.name", context.class),
            ("__connect.errors.exception.class.name", error.kind().name()),
            ("__connect.errors.exception.message", error.message()),
            ("__connect.errors.exception.stacktrace", error.message()),
        ];
        for (key, value) in pairs {
            headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
        }
    }
    let mut out = FutureRecord::to(topic).headers(headers);
    if let Some(k) = record.key {
        out = out.key(k);
    }
    if let Some(v) = record.value {
        out = out.payload(v);
    }
    producer.send_result(out).map_err(|(e, _)| anyhow!("queueing a record to {topic}: {e}"))
}
