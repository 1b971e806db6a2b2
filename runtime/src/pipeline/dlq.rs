//! Routing failed records: the dead-letter queue (bad records, exhausted
//! retries; sink- and source-side) and the rejected-records topic (business
//! rejections), with Kafka Connect's `__connect.errors.*` context headers,
//! and the target's own error details a sink gave
//! (`PutOutcome::fail_with_details`) as `__sluice.errors.target.*`.
//! `rest/dlq_replay.rs` reads these headers back to replay a record.

use std::collections::BTreeMap;

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

/// Where a sink's error details go: `__sluice.errors.target.<key>`.
pub const TARGET_HEADER_PREFIX: &str = "__sluice.errors.target.";

/// The headers of a sink's error details, in the order given: a key is kept
/// when it is 1–64 characters of `a-z`, `0-9`, `.`, `_`, `-` (a header name
/// tools can match on, never one of Kafka Connect's), the first of equal
/// keys wins. The second list holds the keys dropped, for a warning.
pub fn target_headers<'a>(details: &[(&'a str, &'a str)]) -> (Vec<(String, &'a str)>, Vec<&'a str>) {
    let mut kept: Vec<(String, &str)> = Vec::new();
    let mut dropped = Vec::new();
    for &(key, value) in details {
        let valid = (1..=64).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        let name = format!("{TARGET_HEADER_PREFIX}{key}");
        if !valid || kept.iter().any(|(k, _)| *k == name) {
            dropped.push(key);
        } else {
            kept.push((name, value));
        }
    }
    (kept, dropped)
}

/// A `put`'s error details by the batch index of their record (`pending[i]`
/// is the batch index of the put's record `i`); details of indices the put
/// did not have are dropped.
pub fn details_by_record(
    details: &[connector_api::FailureDetail],
    pending: &[usize],
) -> BTreeMap<usize, Vec<(String, String)>> {
    let mut by_record: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for d in details {
        if let Some(&i) = pending.get(d.index as usize) {
            by_record.entry(i).or_default().push((d.key.to_string(), d.value.to_string()));
        }
    }
    by_record
}

/// Queues the record to `topic`; the caller waits for the acknowledgement
/// before the record counts as settled. `details` (the sink's error
/// details) go out with the context headers.
pub fn send(
    producer: &CountedProducer,
    topic: &str,
    record: &FailedRecord<'_>,
    error: &ConnectorError,
    details: &[(&str, &str)],
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
        let (target, dropped) = target_headers(details);
        if !dropped.is_empty() {
            tracing::warn!(connector = context.connector, task = context.task, keys = ?dropped,
                "error details with unusable keys (a-z, 0-9, '.', '_', '-', up to 64) or given twice were not written as headers");
        }
        for (key, value) in &target {
            headers = headers.insert(Header { key: key.as_str(), value: Some(value.as_bytes()) });
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

    #[test]
    fn error_details_become_target_headers_under_names_tools_can_match() {
        let details = [
            ("code", "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            ("message", "Email must be a valid address"),
            ("fields", "Email"),
            ("Code", "upper case"),
            ("", "empty"),
            ("a b", "space"),
            ("code", "given twice"),
            ("x.y_z-9", "kept"),
        ];
        let (kept, dropped) = target_headers(&details);
        assert_eq!(
            kept,
            [
                ("__sluice.errors.target.code".to_string(), "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
                ("__sluice.errors.target.message".to_string(), "Email must be a valid address"),
                ("__sluice.errors.target.fields".to_string(), "Email"),
                ("__sluice.errors.target.x.y_z-9".to_string(), "kept"),
            ]
        );
        assert_eq!(dropped, ["Code", "", "a b", "code"]);
        assert_eq!(target_headers(&[(&"k".repeat(65), "too long")]).0, []);
    }

    #[test]
    fn a_puts_details_land_on_the_batch_records_it_was_handed() {
        let mut outcome = connector_api::PutOutcome::accepted();
        outcome.fail_with_details(0, ConnectorError::rejected("a"), &[("code", "A"), ("fields", "Email")]);
        outcome.fail_with_details(2, ConnectorError::bad_record("c"), &[("code", "C")]);
        outcome.fail_with_details(9, ConnectorError::bad_record("?"), &[("code", "none")]);
        // The put was handed batch records 4, 7 and 8.
        let by_record = details_by_record(outcome.details(), &[4, 7, 8]);
        let expected: BTreeMap<usize, Vec<(String, String)>> = [
            (4, vec![("code".into(), "A".into()), ("fields".into(), "Email".into())]),
            (8, vec![("code".into(), "C".into())]),
        ]
        .into();
        assert_eq!(by_record, expected);
    }

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
