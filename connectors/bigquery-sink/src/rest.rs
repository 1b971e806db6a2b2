//! BigQuery's REST API v2, blocking (the plugin has no async runtime for
//! it), on connector-kit's HTTP client: datasets, tables (get, create with
//! time partitioning and clustering, schema patch), `tabledata.insertAll`
//! and `jobs.query`.
//!
//! The endpoint is the root (`https://bigquery.googleapis.com`, or the
//! emulator's `BQ_REST_ENDPOINT`); paths under `/bigquery/v2` are added
//! here. Errors come back as [`ConnectorError`]s whose kind follows
//! BigQuery's error `reason` first and the status second (a 403
//! `rateLimitExceeded` is an outage, not refused credentials), and whose
//! message names the table and what to fix.

use std::time::{Duration, Instant};

use connector_api::{ConnectorError, ErrorKind};
use connector_kit::{
    classify::{self, StatusPolicy},
    http::{encode, HttpClient, HttpError, Method, Request, TokenSource},
};
use serde_json::{json, Value};

use crate::schema::{plan_evolution, Evolution, EvolutionPolicy, TableSchema};
pub use crate::table::{PartitionType, TableOptions, TimePartitioning};

/// Google's endpoint.
pub const GOOGLE_ENDPOINT: &str = "https://bigquery.googleapis.com";

/// A table's full name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl TableId {
    pub fn new(project: &str, dataset: &str, table: &str) -> TableId {
        TableId { project: project.into(), dataset: dataset.into(), table: table.into() }
    }

    /// The table's path under `/bigquery/v2`.
    fn path(&self) -> String {
        format!("projects/{}/datasets/{}/tables/{}", encode(&self.project), encode(&self.dataset), encode(&self.table))
    }

    /// The name as standard SQL quotes it: `` `p.d.t` ``.
    pub fn sql(&self) -> String {
        format!("`{}.{}.{}`", self.project, self.dataset, self.table)
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// The `tables.insert` body of a table (pure, for tests).
pub fn table_resource(table: &TableId, schema: &TableSchema, options: &TableOptions) -> Value {
    let mut body = json!({
        "tableReference": {"projectId": table.project, "datasetId": table.dataset, "tableId": table.table},
        "schema": schema,
    });
    if let Some(p) = &options.time_partitioning {
        let mut tp = json!({"type": p.kind.as_str()});
        if let Some(field) = &p.field {
            tp["field"] = json!(field);
        }
        if let Some(ms) = p.expiration_ms {
            // int64 travels as a string in BigQuery's JSON.
            tp["expirationMs"] = json!(ms.to_string());
        }
        body["timePartitioning"] = tp;
    }
    if !options.clustering.is_empty() {
        body["clustering"] = json!({"fields": options.clustering});
    }
    body
}

/// One row of `tabledata.insertAll`.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRow {
    /// Best-effort de-duplication id (`<topic>-<partition>-<offset>`).
    pub insert_id: String,
    /// The row, a JSON object keyed by column name.
    pub json: Value,
}

/// One error of one row, as BigQuery reports it in `insertErrors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// `invalid`, `stopped`, …
    pub reason: String,
    /// The field the error is about, when BigQuery says.
    pub location: String,
    pub message: String,
}

/// `insertErrors`: row index → its errors (rows not listed were inserted).
pub type InsertErrors = Vec<(usize, Vec<RowError>)>;

/// A BigQuery error body's first `reason` (`notFound`, `rateLimitExceeded`,
/// …) and its message.
pub fn error_reason(body: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let error = v.get("error")?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
    let reason = error
        .get("errors")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .or_else(|| error.get("status").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    Some((reason, message))
}

/// The kind of a BigQuery `reason` where it decides alone (BigQuery's
/// error table): outages and throttling are `Retriable` whatever the
/// status (quota and rate errors come as 403).
pub fn reason_kind(reason: &str) -> Option<ErrorKind> {
    match reason {
        "backendError" | "rateLimitExceeded" | "quotaExceeded" | "internalError" | "jobBackendError"
        | "jobInternalError" | "tableUnavailable" | "UNAVAILABLE" | "INTERNAL" | "RESOURCE_EXHAUSTED" => {
            Some(ErrorKind::Retriable)
        }
        _ => None,
    }
}

/// An [`HttpError`] of a call about `what`, as the worker should act on it.
pub fn to_connector_error(what: &str, e: &HttpError, policy: StatusPolicy) -> ConnectorError {
    if let HttpError::Token(inner) = e {
        let error = crate::auth::GoogleAuth::to_connector_error(inner);
        return ConnectorError::new(error.kind(), format!("{what}: {}", error.message()));
    }
    if let HttpError::Status { status, body, .. } = e {
        let (reason, message) = error_reason(body).unwrap_or_default();
        if let Some(kind) = reason_kind(&reason) {
            return ConnectorError::new(
                kind,
                format!("{what}: BigQuery is unavailable or throttling ({status} {reason}): {message}"),
            );
        }
        if matches!(status, 401 | 403) {
            return ConnectorError::new(
                policy.auth,
                format!(
                    "{what}: BigQuery refused the credentials (HTTP {status} {reason}: {message}); check keyfile and \
                     keySource, and that the account has the BigQuery Data Editor role on the dataset"
                ),
            );
        }
        if !reason.is_empty() {
            let kind = classify::http_status(*status, policy).unwrap_or(ErrorKind::Fatal);
            return ConnectorError::new(kind, format!("{what}: HTTP {status} {reason}: {message}"));
        }
    }
    e.to_connector_error(what, policy)
}

/// A query's answer: column names and rows of JSON values (BigQuery's
/// `f`/`v` cells flattened: a RECORD is an array of its fields' values, a
/// REPEATED column an array).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Rows a DML statement (MERGE, DELETE, …) changed.
    pub affected_rows: Option<u64>,
}

/// A cell in BigQuery's `{"v": …}` encoding, flattened.
fn cell(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("f") => match o.get("f") {
            Some(Value::Array(fields)) => Value::Array(fields.iter().map(|f| cell(&f["v"])).collect()),
            _ => Value::Null,
        },
        Value::Array(items) => Value::Array(items.iter().map(|i| cell(&i["v"])).collect()),
        other => other.clone(),
    }
}

/// The rows of a `jobs.query` / `getQueryResults` answer.
pub fn query_rows(answer: &Value) -> Vec<Vec<Value>> {
    let Some(rows) = answer.get("rows").and_then(Value::as_array) else { return Vec::new() };
    rows.iter()
        .map(|r| {
            r.get("f").and_then(Value::as_array).map(|f| f.iter().map(|c| cell(&c["v"])).collect()).unwrap_or_default()
        })
        .collect()
}

/// A query's error when the answer carries one (BigQuery puts errors of a
/// finished job under `status.errorResult`; the emulator answers 200 with a
/// top-level `errors` array).
pub fn query_error(answer: &Value) -> Option<(String, String)> {
    let pick = |e: &Value| {
        Some((
            e.get("reason").and_then(Value::as_str).unwrap_or_default().to_string(),
            e.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        ))
    };
    if let Some(e) = answer.get("errors").and_then(|e| e.get(0)) {
        return pick(e);
    }
    answer.get("status").and_then(|s| s.get("errorResult")).and_then(pick)
}

/// `insertErrors` of an insertAll answer.
pub fn insert_errors(answer: &Value) -> InsertErrors {
    let Some(list) = answer.get("insertErrors").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter_map(|e| {
            let index = e.get("index").and_then(|i| i.as_u64().or_else(|| i.as_str()?.parse().ok()))? as usize;
            let errors = e
                .get("errors")
                .and_then(Value::as_array)
                .map(|errors| {
                    errors
                        .iter()
                        .map(|x| RowError {
                            reason: x.get("reason").and_then(Value::as_str).unwrap_or_default().to_string(),
                            location: x.get("location").and_then(Value::as_str).unwrap_or_default().to_string(),
                            message: x.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some((index, errors))
        })
        .collect()
}

/// The REST client. Methods take `&mut self` (the HTTP client caches its
/// token and connections).
pub struct BigQueryRest {
    http: HttpClient,
    /// The project that runs (and pays for) queries.
    project: String,
}

impl BigQueryRest {
    /// A client for `endpoint` (the root, e.g. [`GOOGLE_ENDPOINT`]) without
    /// authentication (the emulator does not check it).
    pub fn new(endpoint: &str, project: &str) -> BigQueryRest {
        Self::from_http(Self::builder(endpoint).build(), project)
    }

    /// A client whose requests carry `auth`'s tokens.
    pub fn with_auth(endpoint: &str, project: &str, auth: impl TokenSource + 'static) -> BigQueryRest {
        Self::from_http(Self::builder(endpoint).token_source(auth).build(), project)
    }

    /// A client on an HTTP client built elsewhere (its base URL the root).
    pub fn from_http(http: HttpClient, project: &str) -> BigQueryRest {
        BigQueryRest { http, project: project.to_string() }
    }

    fn builder(endpoint: &str) -> connector_kit::http::HttpClientBuilder {
        HttpClient::builder(endpoint)
            .timeout(Duration::from_secs(120))
            .user_agent("sluice-bigquery-sink")
            .header("Accept", "application/json")
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    fn call(&mut self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, HttpError> {
        let mut request = Request::new(method, format!("bigquery/v2/{path}"));
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let response = match self.http.send(request.clone()) {
            // A pooled connection the server closed meanwhile fails the
            // next request on it (the emulator resets one after each 500);
            // a read is safe to send again on a fresh one.
            Err(HttpError::Transport { .. }) if method == Method::Get => self.http.send(request)?,
            other => other?,
        };
        if response.body.is_empty() {
            return Ok(Value::Null);
        }
        response.json().map_err(|message| HttpError::Invalid { url: path.to_string(), message })
    }

    /// Checks that `project.dataset` exists; a missing one is a `Config`
    /// error naming `defaultDataset` (the sink does not create datasets).
    pub fn check_dataset(&mut self, project: &str, dataset: &str) -> Result<(), ConnectorError> {
        let path = format!("projects/{}/datasets/{}", encode(project), encode(dataset));
        match self.call(Method::Get, &path, None) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Err(ConnectorError::config(format!(
                "dataset {project}.{dataset} does not exist: create it, or set defaultDataset (and project) to an \
                 existing one"
            ))),
            Err(e) => Err(to_connector_error(&format!("reading dataset {project}.{dataset}"), &e, StatusPolicy::SINK)),
        }
    }

    /// Whether the dataset answers (false only on a 404; other failures
    /// read as "exists" so the caller reports its own error).
    fn dataset_exists(&mut self, project: &str, dataset: &str) -> bool {
        let path = format!("projects/{}/datasets/{}", encode(project), encode(dataset));
        !matches!(self.call(Method::Get, &path, None), Err(e) if e.status() == Some(404))
    }

    /// Creates a dataset (tests and the demo; the sink itself does not).
    pub fn create_dataset(&mut self, project: &str, dataset: &str) -> Result<(), ConnectorError> {
        let body = json!({"datasetReference": {"projectId": project, "datasetId": dataset}});
        match self.call(Method::Post, &format!("projects/{}/datasets", encode(project)), Some(&body)) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => {
                Err(to_connector_error(&format!("creating dataset {project}.{dataset}"), &e, StatusPolicy::SOURCE))
            }
        }
    }

    /// Deletes a dataset and its tables (tests).
    pub fn delete_dataset(&mut self, project: &str, dataset: &str) -> Result<(), ConnectorError> {
        let path = format!("projects/{}/datasets/{}?deleteContents=true", encode(project), encode(dataset));
        match self.call(Method::Delete, &path, None) {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => {
                Err(to_connector_error(&format!("deleting dataset {project}.{dataset}"), &e, StatusPolicy::SOURCE))
            }
        }
    }

    /// The table resource as BigQuery answers it (`None`: no such table).
    pub fn get_table_resource(&mut self, table: &TableId) -> Result<Option<Value>, ConnectorError> {
        match self.call(Method::Get, &table.path(), None) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(to_connector_error(&format!("reading table {table}"), &e, StatusPolicy::SINK)),
        }
    }

    /// The table's schema (`None`: no such table).
    pub fn get_table(&mut self, table: &TableId) -> Result<Option<TableSchema>, ConnectorError> {
        let Some(resource) = self.get_table_resource(table)? else { return Ok(None) };
        parse_schema(table, &resource).map(Some)
    }

    /// The table's schema, creating the table from `schema` and `options`
    /// when it does not exist. A 409 means another task created it first:
    /// its schema is read and returned (the caller then decides whether the
    /// record fits).
    pub fn ensure_table(
        &mut self,
        table: &TableId,
        schema: &TableSchema,
        options: &TableOptions,
    ) -> Result<TableSchema, ConnectorError> {
        if let Some(existing) = self.get_table(table)? {
            return Ok(existing);
        }
        let path = format!("projects/{}/datasets/{}/tables", encode(&table.project), encode(&table.dataset));
        match self.call(Method::Post, &path, Some(&table_resource(table, schema, options))) {
            Ok(resource) => parse_schema(table, &resource),
            Err(e) if e.status() == Some(409) => self.get_table(table)?.ok_or_else(|| {
                ConnectorError::retriable(format!("table {table} was reported to exist (409) but cannot be read yet"))
            }),
            // BigQuery answers 404 for a missing dataset, the emulator 500:
            // asking for the dataset tells both apart from an outage.
            Err(e) if e.status() != Some(409) && !self.dataset_exists(&table.project, &table.dataset) => {
                Err(ConnectorError::config(format!(
                    "creating table {table}: dataset {}.{} does not exist: create it, or set defaultDataset to an \
                     existing one",
                    table.project, table.dataset
                )))
            }
            Err(e) => Err(to_connector_error(&format!("creating table {table}"), &e, StatusPolicy::SINK)),
        }
    }

    /// Replaces the table's schema with `schema` (a superset of the current
    /// one: new NULLABLE columns, REQUIRED relaxed). Column attributes this
    /// sink does not model (descriptions, policy tags, max lengths) are kept
    /// from the current table. Returns the schema BigQuery answers with.
    pub fn patch_schema(&mut self, table: &TableId, schema: &TableSchema) -> Result<TableSchema, ConnectorError> {
        let current = self.get_table_resource(table)?.unwrap_or(Value::Null);
        let current_fields = current.get("schema").and_then(|s| s.get("fields")).cloned().unwrap_or(json!([]));
        let fields = serde_json::to_value(&schema.fields)
            .map_err(|e| ConnectorError::fatal(format!("patching table {table}: {e}")))?;
        let body = json!({"schema": {"fields": keep_attributes(&fields, &current_fields)}});
        match self.call(Method::Patch, &table.path(), Some(&body)) {
            Ok(resource) => parse_schema(table, &resource),
            Err(e) => Err(to_connector_error(&format!("updating the schema of table {table}"), &e, StatusPolicy::SINK)),
        }
    }

    /// Makes the table fit a record of schema `record`, as `policy`
    /// allows ([`plan_evolution`]): nothing when it fits, else a patch.
    /// Another task may patch the same table at the same moment (a patch
    /// is the whole schema, so the later one would drop the earlier one's
    /// column and BigQuery refuses it): the table is then read and the
    /// change planned again, up to three times. A change the policy does
    /// not allow is a `BadRecord` naming the field and the key to set.
    /// Returns the table's schema after the change.
    pub fn fit_schema(
        &mut self,
        table: &TableId,
        record: &TableSchema,
        policy: EvolutionPolicy,
    ) -> Result<TableSchema, ConnectorError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(current) = self.get_table(table)? else {
                return Err(ConnectorError::fatal(format!(
                    "table {table} is gone (recreate it, or set autoCreateTables=true)"
                )));
            };
            let patch = match plan_evolution(&current, record, policy) {
                Evolution::Fits => return Ok(current),
                Evolution::Refused(why) => {
                    return Err(ConnectorError::bad_record(format!("the record does not fit table {table}: {why}")))
                }
                Evolution::Patch(patch) => patch,
            };
            match self.patch_schema(table, &patch.schema) {
                Ok(schema) => return Ok(schema),
                Err(e) if attempt < 3 && e.kind() != ErrorKind::Retriable && e.kind() != ErrorKind::Config => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `tabledata.insertAll`; `Ok` carries the rows' `insertErrors`. The raw
    /// HTTP error comes back so the caller can tell "request too large"
    /// (it splits the batch) from the rest.
    pub fn insert_all(
        &mut self,
        table: &TableId,
        rows: &[InsertRow],
        skip_invalid_rows: bool,
    ) -> Result<InsertErrors, HttpError> {
        let body = json!({
            "kind": "bigquery#tableDataInsertAllRequest",
            "skipInvalidRows": skip_invalid_rows,
            "ignoreUnknownValues": false,
            "rows": rows.iter().map(|r| json!({"insertId": r.insert_id, "json": r.json})).collect::<Vec<_>>(),
        });
        let answer = self.call(Method::Post, &format!("{}/insertAll", table.path()), Some(&body))?;
        Ok(insert_errors(&answer))
    }

    /// Runs a standard SQL statement (`jobs.query`, then `getQueryResults`
    /// until the job is done and every page is read; at most `timeout`).
    pub fn query_with_timeout(&mut self, sql: &str, timeout: Duration) -> Result<QueryResult, ConnectorError> {
        let deadline = Instant::now() + timeout;
        let project = encode(&self.project);
        let what = || format!("running query `{}`", classify::excerpt(sql, 200));
        let body = json!({"query": sql, "useLegacySql": false, "timeoutMs": 10_000});
        let mut answer = self
            .call(Method::Post, &format!("projects/{project}/queries"), Some(&body))
            .map_err(|e| to_connector_error(&what(), &e, StatusPolicy::SOURCE))?;
        let mut result = QueryResult::default();
        loop {
            if let Some((reason, message)) = query_error(&answer) {
                let kind = reason_kind(&reason).unwrap_or(ErrorKind::Fatal);
                return Err(ConnectorError::new(kind, format!("{}: {reason}: {message}", what())));
            }
            let complete = answer.get("jobComplete").and_then(Value::as_bool).unwrap_or(true);
            if complete {
                if result.columns.is_empty() {
                    result.columns = answer["schema"]["fields"]
                        .as_array()
                        .map(|f| f.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
                        .unwrap_or_default();
                }
                result.rows.extend(query_rows(&answer));
                if let Some(n) = answer.get("numDmlAffectedRows") {
                    result.affected_rows = n.as_u64().or_else(|| n.as_str()?.parse().ok());
                }
            }
            let token = answer.get("pageToken").and_then(Value::as_str).map(String::from);
            if complete && token.is_none() {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                return Err(ConnectorError::retriable(format!("{}: not finished within {timeout:?}", what())));
            }
            let job = answer["jobReference"]["jobId"].as_str().unwrap_or_default().to_string();
            let mut path = format!("projects/{project}/queries/{}?timeoutMs=10000", encode(&job));
            if let Some(location) = answer["jobReference"]["location"].as_str() {
                path.push_str(&format!("&location={}", encode(location)));
            }
            if let (true, Some(token)) = (complete, token) {
                path.push_str(&format!("&pageToken={}", encode(&token)));
            }
            answer = self
                .call(Method::Get, &path, None)
                .map_err(|e| to_connector_error(&what(), &e, StatusPolicy::SOURCE))?;
        }
    }

    /// [`Self::query_with_timeout`] with ten minutes.
    pub fn query(&mut self, sql: &str) -> Result<QueryResult, ConnectorError> {
        self.query_with_timeout(sql, Duration::from_secs(600))
    }
}

fn parse_schema(table: &TableId, resource: &Value) -> Result<TableSchema, ConnectorError> {
    let schema = resource.get("schema").cloned().unwrap_or(json!({"fields": []}));
    serde_json::from_value(schema)
        .map_err(|e| ConnectorError::fatal(format!("table {table} has a schema this sink cannot read: {e}")))
}

/// `new` fields (JSON) with the attributes of the same-named `current`
/// fields that this sink does not model kept (descriptions, policy tags,
/// …), recursively into RECORDs.
fn keep_attributes(new: &Value, current: &Value) -> Value {
    let Some(new) = new.as_array() else { return new.clone() };
    let current = current.as_array().cloned().unwrap_or_default();
    Value::Array(
        new.iter()
            .map(|field| {
                let name = field["name"].as_str().unwrap_or_default();
                let Some(old) =
                    current.iter().find(|c| c["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                else {
                    return field.clone();
                };
                let mut merged = old.clone();
                if let (Some(m), Some(f)) = (merged.as_object_mut(), field.as_object()) {
                    for (k, v) in f {
                        if k != "fields" {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    if let Some(sub) = f.get("fields") {
                        m.insert("fields".into(), keep_attributes(sub, &old["fields"]));
                    }
                }
                merged
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FieldMode, FieldType, TableField};

    #[test]
    fn table_resources_carry_partitioning_and_clustering() {
        let t = TableId::new("p", "d", "orders");
        let schema = TableSchema { fields: vec![TableField::new("id", FieldType::Integer, FieldMode::Required)] };
        let plain = table_resource(&t, &schema, &TableOptions::default());
        assert_eq!(plain["tableReference"], json!({"projectId":"p","datasetId":"d","tableId":"orders"}));
        assert!(plain.get("timePartitioning").is_none() && plain.get("clustering").is_none());
        let options = TableOptions {
            time_partitioning: Some(TimePartitioning {
                kind: PartitionType::Hour,
                field: Some("created".into()),
                expiration_ms: Some(86_400_000),
            }),
            clustering: vec!["customer".into(), "id".into()],
        };
        let r = table_resource(&t, &schema, &options);
        assert_eq!(r["timePartitioning"], json!({"type":"HOUR","field":"created","expirationMs":"86400000"}));
        assert_eq!(r["clustering"], json!({"fields":["customer","id"]}));
        let ingestion = TableOptions { time_partitioning: Some(TimePartitioning::default()), clustering: vec![] };
        assert_eq!(table_resource(&t, &schema, &ingestion)["timePartitioning"], json!({"type":"DAY"}));
        assert_eq!(t.sql(), "`p.d.orders`");
        assert_eq!(PartitionType::parse("month"), Some(PartitionType::Month));
        assert_eq!(PartitionType::parse("week"), None);
    }

    #[test]
    fn errors_read_bigquery_reasons_before_statuses() {
        let status =
            |s: u16, body: &str| HttpError::Status { status: s, url: "u".into(), body: body.into(), retry_after: None };
        let body = |reason: &str| {
            format!(r#"{{"error":{{"code":403,"message":"m {reason}","errors":[{{"reason":"{reason}"}}]}}}}"#)
        };
        let cases = [
            (status(403, &body("rateLimitExceeded")), ErrorKind::Retriable, "rateLimitExceeded"),
            (status(403, &body("quotaExceeded")), ErrorKind::Retriable, "quotaExceeded"),
            (status(500, &body("backendError")), ErrorKind::Retriable, "backendError"),
            (status(503, "not json"), ErrorKind::Retriable, "503"),
            (status(403, &body("accessDenied")), ErrorKind::Config, "keyfile"),
            (status(401, "{}"), ErrorKind::Config, "keyfile"),
            (status(400, &body("invalid")), ErrorKind::BadRecord, "invalid"),
            (HttpError::Token(Box::new(status(400, "{\"error\":\"invalid_grant\"}"))), ErrorKind::Config, "keyfile"),
            (HttpError::Token(Box::new(status(503, "{}"))), ErrorKind::Retriable, "503"),
        ];
        for (e, kind, says) in cases {
            let c = to_connector_error("writing t", &e, StatusPolicy::SINK);
            assert_eq!(c.kind(), kind, "{c}");
            assert!(c.message().contains(says), "{c}");
        }
        assert_eq!(error_reason(&body("notFound")), Some(("notFound".into(), "m notFound".into())));
    }

    #[test]
    fn query_answers_are_flattened_and_errors_found() {
        let answer = json!({"jobComplete":true,"rows":[
            {"f":[{"v":"1"},{"v":"alice"},{"v":[{"v":"a"},{"v":"b"}]},{"v":{"f":[{"v":"Berlin"},{"v":null}]}}]}]});
        assert_eq!(
            query_rows(&answer),
            vec![vec![json!("1"), json!("alice"), json!(["a", "b"]), json!(["Berlin", null])]]
        );
        assert_eq!(query_error(&answer), None);
        let emulator = json!({"errors":[{"reason":"invalidQuery","message":"syntax"}],"rows":[]});
        assert_eq!(query_error(&emulator), Some(("invalidQuery".into(), "syntax".into())));
        let job = json!({"status":{"errorResult":{"reason":"notFound","message":"no table"}}});
        assert_eq!(query_error(&job), Some(("notFound".into(), "no table".into())));
    }

    #[test]
    fn insert_errors_are_read_by_index() {
        let answer = json!({"insertErrors":[
            {"index":1,"errors":[{"reason":"invalid","location":"id","message":"Cannot convert"}]},
            {"index":"2","errors":[{"reason":"stopped","location":"","message":""}]}]});
        let errors = insert_errors(&answer);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, 1);
        assert_eq!(
            errors[0].1[0],
            RowError { reason: "invalid".into(), location: "id".into(), message: "Cannot convert".into() }
        );
        assert_eq!(errors[1].0, 2);
        assert!(insert_errors(&json!({"kind":"x"})).is_empty());
    }

    #[test]
    fn a_patch_keeps_what_the_sink_does_not_model() {
        let current = json!([{"name":"id","type":"INTEGER","mode":"REQUIRED","description":"order id"},
            {"name":"a","type":"RECORD","fields":[{"name":"c","type":"STRING","policyTags":{"names":["x"]}}]}]);
        let new = json!([{"name":"id","type":"INTEGER","mode":"NULLABLE"},
            {"name":"a","type":"RECORD","mode":"NULLABLE","fields":[{"name":"c","type":"STRING","mode":"NULLABLE"},
                {"name":"z","type":"STRING","mode":"NULLABLE"}]},{"name":"n","type":"STRING","mode":"NULLABLE"}]);
        let merged = keep_attributes(&new, &current);
        assert_eq!(merged[0], json!({"name":"id","type":"INTEGER","mode":"NULLABLE","description":"order id"}));
        assert_eq!(merged[1]["fields"][0]["policyTags"], json!({"names":["x"]}));
        assert_eq!(merged[1]["fields"][1]["name"], "z");
        assert_eq!(merged[2]["name"], "n");
    }
}
