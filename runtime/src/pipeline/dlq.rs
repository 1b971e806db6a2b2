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
#[derive(Debug, PartialEq, Eq)]
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
    route_for(error.kind(), runtime.tolerance_all, runtime.rejected_topic.as_deref(), runtime.dlq_topic.as_deref())
}

/// `Fatal` and `Config` always fail the task, as does any failure with
/// `errors.tolerance=none`; a rejection goes to the rejected topic when one
/// is configured, anything else to the DLQ, else it is dropped.
pub fn route_for(kind: ErrorKind, tolerance_all: bool, rejected: Option<&str>, dlq: Option<&str>) -> Route {
    if !tolerance_all {
        return Route::Fail;
    }
    match (kind, rejected, dlq) {
        (ErrorKind::Fatal | ErrorKind::Config, _, _) => Route::Fail,
        (ErrorKind::Rejected, Some(t), _) => Route::Topic { topic: t.to_string(), rejected: true },
        (_, _, Some(t)) => Route::Topic { topic: t.to_string(), rejected: false },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariants 1 and 7: a failed record settles only by a route the
    /// tolerance allows; Fatal and Config never go to a topic.
    #[test]
    fn a_failure_is_routed_by_its_kind_the_tolerance_and_the_topics() {
        use ErrorKind::*;
        let dlq = || Route::Topic { topic: "dlq".into(), rejected: false };
        let rej = || Route::Topic { topic: "rej".into(), rejected: true };
        // (kind, tolerance all, rejected topic, dlq topic) → route
        let table = [
            ((BadRecord, false, Some("rej"), Some("dlq")), Route::Fail),
            ((Retriable, false, None, None), Route::Fail),
            ((Fatal, true, Some("rej"), Some("dlq")), Route::Fail),
            ((Config, true, None, Some("dlq")), Route::Fail),
            ((BadRecord, true, Some("rej"), Some("dlq")), dlq()),
            ((Retriable, true, None, Some("dlq")), dlq()),
            ((Rejected, true, Some("rej"), Some("dlq")), rej()),
            ((Rejected, true, None, Some("dlq")), dlq()),
            ((Rejected, true, Some("rej"), None), rej()),
            ((BadRecord, true, Some("rej"), None), Route::Drop),
            ((Rejected, true, None, None), Route::Drop),
        ];
        for ((kind, all, rejected, dlq), expected) in table {
            assert_eq!(route_for(kind, all, rejected, dlq), expected, "{kind:?} {all} {rejected:?} {dlq:?}");
        }
    }
}
