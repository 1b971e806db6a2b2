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

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use connector_api::{schema::Schema, ConnectorError, ErrorKind, PutOutcome, SinkRecord};
use connector_kit::{classify::StatusPolicy, http::HttpError};
use serde_json::Value;

use crate::{
    auth::GoogleAuth,
    config::BigQuerySinkConfig,
    rest::{self, BigQueryRest, InsertErrors, InsertRow, RowError, TableId, TableOptions},
    schema::{self, ConvertOptions, Evolution, EvolutionPolicy, TableSchema},
};

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

/// The legacy path as the task uses it: records in, one outcome per
/// record out. It turns each record into a row (its value by its Connect
/// schema, or schemaless JSON; the `kafkaKeyFieldName` and
/// `kafkaDataFieldName` columns), finds or creates each table, patches
/// its schema when the config allows and the record needs it, and writes
/// each table's rows with [`write_rows`].
pub struct LegacyWriter {
    client: BigQueryRest,
    config: BigQuerySinkConfig,
    /// Table schemas known to fit what was written so far, by table name.
    tables: HashMap<String, TableSchema>,
    /// Parsed value and key schemas, by their JSON text.
    schemas: HashMap<String, Result<Schema, String>>,
    limits: Limits,
    sleep: fn(Duration),
}

/// One record on its way to a table.
struct Pending {
    index: usize,
    row: LegacyRow,
    /// The table schema the record needs (known when it has a Connect schema).
    needs: Option<TableSchema>,
}

impl LegacyWriter {
    /// A writer for `config`; checks that the dataset exists (a missing one
    /// is a `Config` error naming `defaultDataset`).
    pub fn new(config: &BigQuerySinkConfig) -> Result<LegacyWriter, ConnectorError> {
        let client = match GoogleAuth::for_config(config)? {
            Some(auth) => BigQueryRest::with_auth(&config.rest_endpoint, &config.project, auth),
            None => BigQueryRest::new(&config.rest_endpoint, &config.project),
        };
        Self::with_client(config, client)
    }

    /// A writer on a client built elsewhere (tests put a proxy in front).
    pub fn with_client(config: &BigQuerySinkConfig, mut client: BigQueryRest) -> Result<LegacyWriter, ConnectorError> {
        client.check_dataset(&config.project, &config.dataset)?;
        Ok(LegacyWriter {
            client,
            config: config.clone(),
            tables: HashMap::new(),
            schemas: HashMap::new(),
            limits: Limits::default(),
            sleep: std::thread::sleep,
        })
    }

    fn parsed(&mut self, json: &str) -> Result<Schema, String> {
        self.schemas.entry(json.to_string()).or_insert_with(|| Schema::parse(json)).clone()
    }

    fn options(&self) -> TableOptions {
        self.config.table_options()
    }

    /// One record as a row and the table schema it needs, or why not.
    fn row_of(&mut self, record: &SinkRecord<'_>, now_ms: i64) -> Result<(LegacyRow, Option<TableSchema>), String> {
        let Some(bytes) = record.value() else {
            return Err("the value is null (a tombstone): insertAll mode appends rows and has none to append; \
                        drop tombstones with a Filter transform and the RecordIsTombstone predicate"
                .into());
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the value is not JSON ({e}); use the JsonConverter"))?;
        let sanitize = self.config.sanitize_field_names;
        let options = ConvertOptions { sanitize_field_names: sanitize, all_nullable: false };
        let (mut row, mut needs) = match record.value_schema_json() {
            Some(text) => {
                let schema = self.parsed(text)?;
                let row = schema::connect_row(&value, &schema, sanitize)?;
                (row, Some(schema::from_connect(&schema, &options).map_err(|e| e.0)?))
            }
            None => (schema::schemaless_row(&value, sanitize)?, None),
        };
        if let Some(name) = self.config.kafka_key_field.clone() {
            let key_schema = match record.key_schema_json() {
                Some(text) => Some(self.parsed(text)?),
                None => None,
            };
            let key: Value = match (record.key(), &key_schema) {
                (None, _) => Value::Null,
                (Some(k), Some(ks)) => {
                    let json: Value = serde_json::from_slice(k).map_err(|e| format!("the key is not JSON ({e})"))?;
                    schema::connect_key(&json, ks, sanitize)?
                }
                (Some(k), None) => Value::from(String::from_utf8_lossy(k).into_owned()),
            };
            let field = schema::kafka_key_field(&name, key_schema.as_ref(), &options).map_err(|e| e.0)?;
            if let (Some(field), Some(n)) = (field, needs.as_mut()) {
                n.fields.push(field);
            }
            if !key.is_null() {
                row.insert(schema::sanitize_field_name(&name), key);
            }
        }
        if let Some(name) = self.config.kafka_data_field.clone() {
            if let Some(n) = needs.as_mut() {
                n.fields.push(schema::kafka_data_field(&name));
            }
            row.insert(
                schema::sanitize_field_name(&name),
                schema::kafka_data_value(record.topic(), record.partition(), record.offset(), now_ms),
            );
        }
        let row = LegacyRow {
            topic: record.topic().to_string(),
            partition: record.partition(),
            offset: record.offset(),
            json: Value::Object(row),
        };
        Ok((row, needs))
    }

    /// The table's schema, creating the table when allowed and needed.
    fn table(&mut self, name: &str, needs: Option<&TableSchema>) -> Result<TableSchema, ConnectorError> {
        if let Some(known) = self.tables.get(name) {
            return Ok(known.clone());
        }
        let id = TableId::new(&self.config.project, &self.config.dataset, name);
        let schema = match (self.client.get_table(&id)?, needs) {
            (Some(schema), _) => schema,
            (None, Some(needs)) if self.config.auto_create => {
                let options = self.options();
                self.client.ensure_table(&id, needs, &options)?
            }
            (None, _) if self.config.auto_create => {
                return Err(ConnectorError::fatal(format!(
                    "table {id} does not exist and its records carry no schema to create it from: create the \
                     table, or send records with a schema (JsonConverter with schemas.enable=true, Avro)"
                )))
            }
            (None, _) => {
                return Err(ConnectorError::fatal(format!(
                    "table {id} does not exist: create it, or set autoCreateTables=true"
                )))
            }
        };
        self.tables.insert(name.to_string(), schema.clone());
        Ok(schema)
    }

    /// Writes a batch; see the [type docs](LegacyWriter). An `Err` is the
    /// whole batch's: `Retriable` when BigQuery was unavailable and nothing
    /// landed, `Fatal`/`Config` when the task cannot go on.
    pub fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let mut outcome = PutOutcome::accepted();
        let mut by_table: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            match self.row_of(record, now_ms) {
                Ok((row, needs)) => by_table.entry(self.config.table_for(record.topic())).or_default().push(Pending {
                    index,
                    row,
                    needs,
                }),
                Err(why) => outcome.fail(index, ConnectorError::bad_record(format!("{}: {why}", record.position()))),
            }
        }
        let policy = EvolutionPolicy {
            allow_new_fields: self.config.allow_new_fields,
            allow_relaxation: self.config.allow_required_relaxation,
            allow_unionization: self.config.allow_schema_unionization,
        };
        let retry = RetryPolicy { retries: self.config.retries, wait: self.config.retry_wait };
        let mut landed = false;
        let mut outage: Option<ConnectorError> = None;
        for (name, pending) in by_table {
            let first_needs = pending.iter().find_map(|p| p.needs.clone());
            let mut table_schema = self.table(&name, first_needs.as_ref())?;
            let id = TableId::new(&self.config.project, &self.config.dataset, &name);
            let mut rows = Vec::with_capacity(pending.len());
            let mut indices = Vec::with_capacity(pending.len());
            for p in pending {
                if let Some(needs) = &p.needs {
                    match schema::plan_evolution(&table_schema, needs, policy) {
                        Evolution::Fits => {}
                        Evolution::Refused(why) => {
                            outcome.fail(
                                p.index,
                                ConnectorError::bad_record(format!(
                                    "topic {} partition {} offset {}: the record does not fit table {id}: {why}",
                                    p.row.topic, p.row.partition, p.row.offset
                                )),
                            );
                            continue;
                        }
                        Evolution::Patch(_) => match self.client.fit_schema(&id, needs, policy) {
                            Ok(schema) => {
                                table_schema = schema.clone();
                                self.tables.insert(name.clone(), schema);
                            }
                            Err(e) if e.kind() == ErrorKind::BadRecord => {
                                outcome.fail(p.index, e);
                                continue;
                            }
                            Err(e) => return Err(e),
                        },
                    }
                }
                indices.push(p.index);
                rows.push(p.row);
            }
            if rows.is_empty() {
                continue;
            }
            match write_rows(&mut self.client, &id, &rows, self.limits, retry, &mut |d| (self.sleep)(d)) {
                Ok(outcomes) => {
                    for (k, o) in outcomes.into_iter().enumerate() {
                        match o {
                            RowOutcome::Written => landed = true,
                            RowOutcome::Failed(e) => outcome.fail(indices[k], e),
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::Retriable => {
                    for &i in &indices {
                        outcome.fail(i, e.clone());
                    }
                    outage = Some(e);
                }
                Err(e) => {
                    // The cached schema may be stale (a table deleted or changed).
                    self.tables.remove(&name);
                    return Err(e);
                }
            }
        }
        match outage {
            // Nothing landed: the worker retries the batch as a whole.
            Some(e) if !landed => Err(e),
            _ => Ok(outcome),
        }
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
