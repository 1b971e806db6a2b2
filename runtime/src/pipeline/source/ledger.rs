//! The pure decisions of one source poll: what happens to each polled record
//! (produce, filtered, routed to the DLQ, skipped, or the task fails), and
//! which source offsets the poll may store once every delivery it queued was
//! acknowledged (ARCHITECTURE.md invariant 3). No I/O: the poll loop in
//! `source.rs` queues the deliveries and waits for them around these.

use std::{collections::BTreeMap, time::Duration};

use connector_api::{ConnectorError, ErrorKind};

use crate::pipeline::dlq::Route;

/// What the poll loop does with one polled record.
#[derive(Debug)]
pub enum Disposition<T> {
    /// Produce it: `Some` as transformed and converted, `None` as polled.
    Produce(Option<T>),
    /// A transform dropped it on purpose.
    Filtered,
    /// A transform or converter failed it, and `errors.tolerance=all`:
    /// routed to `dlq` (`None`: tolerated without a DLQ, skipped).
    Tolerated { error: ConnectorError, stage: &'static str, dlq: Option<String> },
    /// A transform or converter failed it, and it is not tolerated: the poll
    /// stops before it and the task fails with this trace. `kind`: the
    /// error kind counted (`Retriable` when a service did not answer).
    Fail { stage: &'static str, trace: String, kind: ErrorKind },
}

/// Why a transform or converter could not handle a polled record.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    pub stage: &'static str,
    /// A service the converter needs (the Schema Registry) did not answer:
    /// not the record's fault.
    pub retriable: bool,
}

impl Failure {
    pub fn bad(message: String, stage: &'static str) -> Failure {
        Failure { message, stage, retriable: false }
    }
}

/// Kafka Connect's order for sources: transforms then converters produced
/// `transformed` (`None`: nothing configured that changes records); a
/// failure is routed by `route` (`dlq::route` over the runtime config),
/// except a retriable one, which fails the task whatever the tolerance
/// (invariant 7: an outage never empties a source into the DLQ).
pub fn dispose<T>(
    transformed: Option<Result<Option<T>, Failure>>,
    route: impl FnOnce(&ConnectorError) -> Route,
) -> Disposition<T> {
    let Failure { message, stage, retriable } = match transformed {
        None => return Disposition::Produce(None),
        Some(Ok(Some(t))) => return Disposition::Produce(Some(t)),
        Some(Ok(None)) => return Disposition::Filtered,
        Some(Err(failed)) => failed,
    };
    if retriable {
        let trace = format!(
            "{message} (stage {stage}); the record is not at fault, so it is neither skipped nor sent to the \
             DLQ: the task fails before this poll's source offsets are stored, and once restarted the source \
             resumes from the last stored offsets (nothing is lost)"
        );
        return Disposition::Fail { stage, trace, kind: ErrorKind::Retriable };
    }
    let error = ConnectorError::bad_record(message);
    let dlq = match route(&error) {
        Route::Fail => {
            let trace = format!(
                "{error} (stage {stage}); errors.tolerance is none: fix the source data or the \
                 transform/converter config, or set errors.tolerance=all to skip such records \
                 (with errors.deadletterqueue.topic.name to keep them)"
            );
            return Disposition::Fail { stage, trace, kind: ErrorKind::BadRecord };
        }
        Route::Drop => None,
        Route::Topic { topic, .. } => Some(topic),
    };
    Disposition::Tolerated { error, stage, dlq }
}

/// What one poll has decided so far, before any acknowledgement.
#[derive(Debug, Default)]
pub struct PollLedger {
    /// The last source offset per source partition (JSON texts).
    last: BTreeMap<String, String>,
    filtered: u64,
    failed: Option<String>,
}

/// What a poll's end does once every delivery it queued was acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Store these offsets (source partition → offset), then the plugin's
    /// `commit`; `filtered` records were dropped by a transform.
    Store { offsets: BTreeMap<String, String>, filtered: u64 },
    /// A record failed untolerated: nothing of this poll is stored (the
    /// records before it were acknowledged, and a restart re-polls them: at
    /// least once), and the task fails with this trace.
    Fail(String),
}

impl PollLedger {
    /// Every polled record's offset counts once the records before it are
    /// acknowledged, whether it was produced, dropped by a transform or
    /// skipped as a tolerated failure (as in Kafka Connect).
    pub fn saw(&mut self, partition: &str, offset: &str) {
        self.last.insert(partition.to_string(), offset.to_string());
    }

    pub fn filtered(&mut self) {
        self.filtered += 1;
    }

    /// The poll stops at this record; nothing of it will be stored.
    pub fn fail(&mut self, trace: String) {
        self.failed = Some(trace);
    }

    pub fn settle(self) -> Settlement {
        match self.failed {
            Some(trace) => Settlement::Fail(trace),
            None => Settlement::Store { offsets: self.last, filtered: self.filtered },
        }
    }
}

/// After a failed `poll`: retry after this wait (then with `attempt + 1`),
/// or `None`: the error is not retriable and the task fails.
pub fn poll_retry(kind: ErrorKind, attempt: u32, max: Duration) -> Option<Duration> {
    (kind == ErrorKind::Retriable).then(|| crate::pipeline::backoff(attempt, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_dlq(_: &ConnectorError) -> Route {
        Route::Topic { topic: "dlq".into(), rejected: false }
    }
    fn drop(_: &ConnectorError) -> Route {
        Route::Drop
    }
    fn fail(_: &ConnectorError) -> Route {
        Route::Fail
    }

    /// Invariant 3: every polled record ends in exactly one disposition, and
    /// only an untolerated failure stops the poll.
    #[test]
    fn each_polled_record_is_produced_filtered_routed_skipped_or_fails_the_task() {
        type Case = (Option<Result<Option<&'static str>, Failure>>, fn(&ConnectorError) -> Route, &'static str);
        let bad = || Err(Failure::bad("not JSON".to_string(), "VALUE_CONVERTER"));
        let away = || {
            Err(Failure {
                message: "the Schema Registry is unavailable".into(),
                stage: "VALUE_CONVERTER",
                retriable: true,
            })
        };
        let table: [Case; 9] = [
            (None, fail, "produce as polled"),
            (Some(Ok(Some("t"))), fail, "produce transformed"),
            (Some(Ok(None)), fail, "filtered"),
            (Some(bad()), to_dlq, "dlq"),
            (Some(bad()), drop, "skipped"),
            (Some(bad()), fail, "fail"),
            (Some(Err(Failure::bad("boom".to_string(), "TRANSFORMATION"))), fail, "fail"),
            (Some(away()), to_dlq, "outage"),
            (Some(away()), drop, "outage"),
        ];
        for (input, route, expected) in table {
            let got = match dispose(input, route) {
                Disposition::Produce(None) => "produce as polled",
                Disposition::Produce(Some(_)) => "produce transformed",
                Disposition::Filtered => "filtered",
                Disposition::Tolerated { dlq: Some(t), error, .. } => {
                    assert_eq!((t.as_str(), error.kind()), ("dlq", ErrorKind::BadRecord));
                    "dlq"
                }
                Disposition::Tolerated { dlq: None, .. } => "skipped",
                Disposition::Fail { trace, stage, kind: ErrorKind::Retriable } => {
                    assert!(trace.contains("nothing is lost"), "{trace}");
                    assert!(trace.contains(stage) && trace.contains("neither skipped nor sent to the DLQ"), "{trace}");
                    "outage"
                }
                Disposition::Fail { trace, stage, kind } => {
                    assert_eq!(kind, ErrorKind::BadRecord);
                    assert!(trace.contains(stage) && trace.contains("errors.tolerance is none"), "{trace}");
                    "fail"
                }
            };
            assert_eq!(got, expected);
        }
    }

    /// Invariant 3: a poll stores the last offset of each source partition,
    /// counting filtered and tolerated records; after an untolerated failure
    /// it stores nothing.
    #[test]
    fn a_poll_stores_its_last_offsets_only_when_no_record_failed_untolerated() {
        type Step = (&'static str, &'static str, Option<&'static str>);
        let table: [(&[Step], Settlement); 4] = [
            (&[], Settlement::Store { offsets: BTreeMap::new(), filtered: 0 }),
            (
                &[("a", "1", None), ("b", "1", Some("filtered")), ("a", "2", Some("tolerated"))],
                Settlement::Store {
                    offsets: [("a".to_string(), "2".to_string()), ("b".to_string(), "1".to_string())].into(),
                    filtered: 1,
                },
            ),
            (&[("a", "1", None), ("a", "2", Some("fail"))], Settlement::Fail("trace".into())),
            (&[("a", "1", Some("fail"))], Settlement::Fail("trace".into())),
        ];
        for (steps, expected) in table {
            let mut ledger = PollLedger::default();
            for (partition, offset, what) in steps {
                ledger.saw(partition, offset);
                match what {
                    Some("filtered") => ledger.filtered(),
                    Some("fail") => ledger.fail("trace".into()),
                    _ => {}
                }
            }
            assert_eq!(ledger.settle(), expected, "{steps:?}");
        }
    }

    /// Invariant 7 (outages are not bad data): a retriable poll error backs
    /// off and polls again; any other kind fails the task.
    #[test]
    fn only_a_retriable_poll_error_is_retried() {
        let max = Duration::from_secs(60);
        for (kind, retried) in [
            (ErrorKind::Retriable, true),
            (ErrorKind::BadRecord, false),
            (ErrorKind::Rejected, false),
            (ErrorKind::Fatal, false),
            (ErrorKind::Config, false),
        ] {
            assert_eq!(poll_retry(kind, 0, max).is_some(), retried, "{kind:?}");
        }
        let first = poll_retry(ErrorKind::Retriable, 0, max).unwrap_or_default();
        assert!(first >= Duration::from_millis(240) && first <= Duration::from_millis(360), "{first:?}");
        assert!(poll_retry(ErrorKind::Retriable, 30, max).unwrap_or_default() <= max.mul_f64(1.2));
    }
}
