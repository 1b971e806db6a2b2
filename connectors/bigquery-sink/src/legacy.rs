//! The legacy write path (a config without `ingestion.mode`): Confluent's
//! `tabledata.insertAll` streaming, at least once, with `insertId` =
//! `<topic>-<partition>-<offset>` for BigQuery's best-effort de-duplication.
//!
//! [`write_rows`] takes one table's rows of a batch and answers per row:
//!
//! - requests are cut at [`Limits`] (rows, bytes) and a request BigQuery
//!   finds too large (413, "Request payload size exceeds the limit", "too
//!   many rows") is halved, down to one row; one row too large on its own
//!   is a bad record;
//! - rows are sent with `skipInvalidRows=true`: the valid rows of a
//!   request land and the invalid ones come back in `insertErrors`, each a
//!   `BadRecord` carrying BigQuery's reason, location and message and the
//!   record's topic/partition/offset (docs/decisions/0006 says why not
//!   `false`);
//! - rows BigQuery reports as not written without fault of their own
//!   (`stopped`, `timeout`, `backendError`) are sent again;
//! - 429, 5xx, `backendError`, `rateLimitExceeded`, `quotaExceeded` are
//!   retried `bigQueryRetry` times, `bigQueryRetryWait` apart (longer when
//!   the answer says `Retry-After`); then the rows not written are
//!   `Retriable` — the whole call an `Err` when none of its rows landed, so
//!   the worker retries the batch with backoff and never dead-letters an
//!   outage; per row otherwise, so rows that landed are not sent twice;
//! - a 400 for a whole request of several rows is bisected to find the
//!   row it is about; 401/403 and a missing table or dataset fail the call.

use std::time::Duration;

use connector_api::{ConnectorError, ErrorKind};
use connector_kit::{classify::StatusPolicy, http::HttpError};
use serde_json::Value;

use crate::rest::{self, BigQueryRest, InsertErrors, InsertRow, RowError, TableId};

/// One record's row.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The row, a JSON object keyed by column name.
    pub json: Value,
}

impl LegacyRow {
    /// Confluent's row id (`SinkRecordConverter.getRowId`).
    pub fn insert_id(&self) -> String {
        format!("{}-{}-{}", self.topic, self.partition, self.offset)
    }

    fn position(&self) -> String {
        format!("topic {} partition {} offset {}", self.topic, self.partition, self.offset)
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// In the table (BigQuery accepted it).
    Written,
    /// Not written: `BadRecord` (the row itself) or `Retriable` (BigQuery
    /// was unavailable after the retries; some other rows of the call landed).
    Failed(ConnectorError),
}

/// Request limits. BigQuery's are 10 MB per HTTP request and 50,000 rows;
/// Google recommends about 500 rows per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rows: usize,
    /// Bytes of row JSON per request (under the 10 MB request limit, with
    /// room for the envelope and insert ids).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_rows: 500, max_bytes: 9 * 1024 * 1024 }
    }
}

/// `bigQueryRetry` / `bigQueryRetryWait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Confluent's default 0).
    pub retries: u32,
    /// Wait between attempts (Confluent's default 1000 ms).
    pub wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { retries: 0, wait: Duration::from_millis(1000) }
    }
}

/// Cuts rows (their JSON sizes) into requests of at most `limits`; every
/// request has at least one row.
pub fn cut(sizes: &[usize], limits: Limits) -> Vec<Vec<usize>> {
    let mut requests = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if !current.is_empty() && (current.len() >= limits.max_rows.max(1) || bytes + size > limits.max_bytes) {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// What BigQuery's answer says of one row of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Landed,
    /// Not written through no fault of its own: send it again.
    Again,
    /// The row is refused: its errors.
    Refused(Vec<RowError>),
}

/// Reasons that say a row was not written but is not itself at fault.
fn not_its_fault(reason: &str) -> bool {
    matches!(reason, "stopped" | "timeout" | "backendError" | "internalError")
}

/// Per row of a request of `n` rows, from its `insertErrors`.
pub fn verdicts(n: usize, errors: &InsertErrors) -> Vec<Verdict> {
    let mut out = vec![Verdict::Landed; n];
    for (index, errs) in errors {
        let Some(slot) = out.get_mut(*index) else { continue };
        *slot = if errs.iter().all(|e| not_its_fault(&e.reason)) {
            Verdict::Again
        } else {
            Verdict::Refused(errs.iter().filter(|e| !not_its_fault(&e.reason)).cloned().collect())
        };
    }
    out
}

/// A refused row's error: the record, the table, and BigQuery's words.
pub fn row_error(row: &LegacyRow, table: &TableId, errors: &[RowError]) -> ConnectorError {
    let detail: Vec<String> = errors
        .iter()
        .map(|e| {
            let location = if e.location.is_empty() { String::new() } else { format!(" at `{}`", e.location) };
            format!("{}{location}: {}", e.reason, e.message)
        })
        .collect();
    ConnectorError::bad_record(format!(
        "{}: BigQuery refused the row for table {table}: {} (fix the record or the table's schema; \
         allowNewBigQueryFields adds missing columns)",
        row.position(),
        detail.join("; ")
    ))
}

/// Whether an answer says the request was too large for BigQuery.
pub fn too_large(e: &HttpError) -> bool {
    match e {
        HttpError::Status { status: 413, .. } => true,
        HttpError::Status { status: 400, body, .. } => {
            let message = rest::error_reason(body).map(|(_, m)| m).unwrap_or_default();
            message.contains("Request payload size exceeds") || message.contains("too many rows present")
        }
        _ => false,
    }
}

/// What an error answer to a request makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Split in halves (or a single row too large: a bad record).
    TooLarge,
    /// Worth another attempt after a wait.
    Transient(ConnectorError, Option<Duration>),
    /// A 400 for the whole request: bisect to the row (one row: a bad record).
    Refused(ConnectorError),
    /// The call cannot go on (credentials, a missing table).
    Stop(ConnectorError),
}

fn failure(table: &TableId, e: &HttpError) -> Failure {
    if too_large(e) {
        return Failure::TooLarge;
    }
    let policy = StatusPolicy { auth: ErrorKind::Config, client: ErrorKind::BadRecord };
    let error = rest::to_connector_error(&format!("writing rows to table {table}"), e, policy);
    match (error.kind(), e.status()) {
        (ErrorKind::Retriable, _) => {
            let after = match e {
                HttpError::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            Failure::Transient(error, after)
        }
        (ErrorKind::BadRecord, Some(404)) => Failure::Stop(ConnectorError::fatal(format!(
            "{}: the table or its dataset is gone (recreate it, or set autoCreateTables=true)",
            error.message()
        ))),
        (ErrorKind::BadRecord, _) => Failure::Refused(error),
        _ => Failure::Stop(error),
    }
}

/// Writes one table's rows; see the [module docs](self). `sleep` waits
/// between retries (tests pass a recorder).
pub fn write_rows(
    client: &mut BigQueryRest,
    table: &TableId,
    rows: &[LegacyRow],
    limits: Limits,
    retry: RetryPolicy,
    sleep: &mut dyn FnMut(Duration),
) -> Result<Vec<RowOutcome>, ConnectorError> {
    let mut outcomes: Vec<Option<RowOutcome>> = vec![None; rows.len()];
    let sizes: Vec<usize> = rows.iter().map(|r| r.json.to_string().len() + r.insert_id().len() + 32).collect();
    // Requests still to send, each with the attempts it has used.
    let mut queue: Vec<(Vec<usize>, u32)> = cut(&sizes, limits).into_iter().map(|r| (r, 0)).collect();
    queue.reverse();
    let mut last_outage: Option<ConnectorError> = None;
    while let Some((request, attempts)) = queue.pop() {
        let body: Vec<InsertRow> =
            request.iter().map(|&i| InsertRow { insert_id: rows[i].insert_id(), json: rows[i].json.clone() }).collect();
        match client.insert_all(table, &body, true) {
            Ok(errors) => {
                let mut again = Vec::new();
                for (k, verdict) in verdicts(request.len(), &errors).into_iter().enumerate() {
                    let i = request[k];
                    match verdict {
                        Verdict::Landed => outcomes[i] = Some(RowOutcome::Written),
                        Verdict::Refused(errs) => {
                            outcomes[i] = Some(RowOutcome::Failed(row_error(&rows[i], table, &errs)))
                        }
                        Verdict::Again => again.push(i),
                    }
                }
                if !again.is_empty() {
                    // Rows stopped beside a refused one go again at once; a
                    // request where nothing but such errors came back spends
                    // an attempt, so this cannot loop for ever.
                    let spent = again.len() == request.len();
                    if spent && attempts >= retry.retries {
                        let e = ConnectorError::retriable(format!(
                            "writing rows to table {table}: BigQuery did not write them (stopped/backendError) after \
                             {} attempts",
                            attempts + 1
                        ));
                        for &i in &again {
                            outcomes[i] = Some(RowOutcome::Failed(e.clone()));
                        }
                        last_outage = Some(e);
                    } else {
                        if spent {
                            sleep(retry.wait);
                        }
                        queue.push((again, attempts + u32::from(spent)));
                    }
                }
            }
            Err(e) => match failure(table, &e) {
                Failure::TooLarge if request.len() > 1 => {
                    let (a, b) = request.split_at(request.len() / 2);
                    queue.push((b.to_vec(), attempts));
                    queue.push((a.to_vec(), attempts));
                }
                Failure::TooLarge => {
                    let i = request[0];
                    outcomes[i] = Some(RowOutcome::Failed(ConnectorError::bad_record(format!(
                        "{}: the row alone is larger than BigQuery accepts in one insertAll request ({} bytes of \
                         JSON): shrink the record or drop fields with a transform",
                        rows[i].position(),
                        sizes[i]
                    ))));
                }
                Failure::Refused(_) if request.len() > 1 => {
                    let (a, b) = request.split_at(request.len() / 2);
                    queue.push((b.to_vec(), attempts));
                    queue.push((a.to_vec(), attempts));
                }
                Failure::Refused(error) => {
                    let i = request[0];
                    outcomes[i] = Some(RowOutcome::Failed(ConnectorError::bad_record(format!(
                        "{}: {}",
                        rows[i].position(),
                        error.message()
                    ))));
                }
                Failure::Transient(error, after) if attempts < retry.retries => {
                    sleep(after.map_or(retry.wait, |a| a.max(retry.wait)));
                    queue.push((request, attempts + 1));
                    last_outage = Some(error);
                }
                Failure::Transient(error, _) => {
                    for &i in &request {
                        outcomes[i] = Some(RowOutcome::Failed(error.clone()));
                    }
                    last_outage = Some(error);
                }
                Failure::Stop(error) => return Err(error),
            },
        }
    }
    let outcomes: Vec<RowOutcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| RowOutcome::Failed(ConnectorError::retriable("row was not sent"))))
        .collect();
    let any_landed = outcomes.contains(&RowOutcome::Written);
    let outage = |o: &RowOutcome| matches!(o, RowOutcome::Failed(e) if e.kind() == ErrorKind::Retriable);
    match last_outage {
        Some(error) if !any_landed && outcomes.iter().any(outage) => Err(error),
        _ => Ok(outcomes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(reason: &str) -> RowError {
        RowError { reason: reason.into(), location: "id".into(), message: format!("{reason} message") }
    }

    #[test]
    fn rows_are_cut_by_count_and_bytes() {
        let limits = Limits { max_rows: 3, max_bytes: 100 };
        assert_eq!(cut(&[10; 7], limits), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(cut(&[60, 60, 30, 10, 200, 1], limits), vec![vec![0], vec![1, 2, 3], vec![4], vec![5]]);
        assert!(cut(&[], limits).is_empty());
        assert_eq!(cut(&[1, 1], Limits { max_rows: 0, max_bytes: 10 }), vec![vec![0], vec![1]]);
    }

    #[test]
    fn verdicts_tell_refused_rows_from_stopped_ones() {
        let errors = vec![
            (1, vec![err("invalid")]),
            (0, vec![err("stopped")]),
            (3, vec![err("stopped"), err("invalid")]),
            (9, vec![err("invalid")]),
        ];
        assert_eq!(
            verdicts(4, &errors),
            vec![
                Verdict::Again,
                Verdict::Refused(vec![err("invalid")]),
                Verdict::Landed,
                Verdict::Refused(vec![err("invalid")])
            ]
        );
        assert_eq!(verdicts(2, &Vec::new()), vec![Verdict::Landed, Verdict::Landed]);
    }

    #[test]
    fn a_refused_row_names_the_record_and_bigquerys_reason() {
        let row = LegacyRow { topic: "orders".into(), partition: 2, offset: 41, json: serde_json::json!({}) };
        assert_eq!(row.insert_id(), "orders-2-41");
        let e = row_error(&row, &TableId::new("p", "d", "t"), &[err("invalid")]);
        assert_eq!(e.kind(), ErrorKind::BadRecord);
        for part in ["topic orders partition 2 offset 41", "p.d.t", "invalid at `id`: invalid message"] {
            assert!(e.message().contains(part), "{e}");
        }
    }

    #[test]
    fn too_large_answers_are_recognised() {
        let status =
            |s: u16, body: &str| HttpError::Status { status: s, url: "u".into(), body: body.into(), retry_after: None };
        let body = |m: &str| format!(r#"{{"error":{{"code":400,"message":"{m}","errors":[{{"reason":"invalid"}}]}}}}"#);
        assert!(too_large(&status(413, "")));
        assert!(too_large(&status(400, &body("Request payload size exceeds the limit: 10485760 bytes."))));
        assert!(too_large(&status(400, &body("too many rows present in the request, limit: 50000"))));
        assert!(!too_large(&status(400, &body("No rows present in the request."))));
        assert!(!too_large(&status(500, "")));
    }
}
