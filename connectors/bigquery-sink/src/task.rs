//! The sink task: mode dispatch (STREAMING through the Storage Write API,
//! or the legacy insertAll) and the exactly-once bookkeeping of STREAMING
//! (crate README, "Exactly once").
//!
//! Threading: the task owns a current-thread tokio runtime and blocks on
//! it from the worker's task thread (nothing runs between calls); the
//! REST client is blocking.

mod batch_task;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use connector_api::{
    schema::Schema, ConnectorError, Host, PutOutcome, SinkContext, SinkRecord, SinkTask, TopicPartition,
    TopicPartitionOffset,
};
use connector_kit::http::{HttpClient, TokenSource};
use prost_types::DescriptorProto;
use serde_json::{Map, Value};
use tokio::runtime::Runtime;

use crate::{
    auth::{self, GoogleAuth},
    config::{BigQuerySinkConfig, KeySource, WritePath},
    encode::RowEncoder,
    evolve::{evolution_allowed, schema_not_seen_yet, schemaless_needs},
    legacy::LegacyWriter,
    rest::{BigQueryRest, TableId},
    schema::{self, plan_evolution, Evolution, EvolutionPolicy},
    storage::{proto::StreamType, AppendConnection, AppendOutcome, Authorization, StorageClient, StorageError},
    streaming::{
        cut_by_bytes, put_rows, resume_after_lost_stream, trim_refused, Append, Checkpoint, Position, PutFailure,
        Replay, MAX_REFUSED_BYTES,
    },
};

mod upsert_io;

/// Test-only fault points: `SLUICE_BQ_FAULT=<point>@<n>` makes the worker
/// process die at once (abort: no unwinding, no commit, as `kill -9`) the
/// n-th time it reaches `<point>`; `SLUICE_BQ_FAULT_MARK=<file>` makes it
/// fire once across restarts (the file is created just before). Points:
/// `mid-append` (a put's rows partly appended: after one append request
/// when more follow),
/// `after-append` (rows appended, before the offset commit: at the start of
/// `pre_commit`), `after-commit` (an offset commit done, before the next
/// append: at the start of the next put), `after-merge` (UPSERT: a MERGE
/// done, before its offsets are reported durable); BATCH LOADING's interval
/// commit adds `after-finalize`, `after-note` (streams sealed in the notes,
/// before BatchCommitWriteStreams) and `after-batch-commit` (before the
/// offsets are reported durable). With `SLUICE_BQ_FAULT_ACTION=stop` the
/// process stops itself there instead (SIGSTOP, as a paused worker) and goes
/// on from that point when continued.
/// `SLUICE_BQ_FAULT_REFUSE=<text>` makes an append request holding a row
/// whose bytes contain `<text>` answer as BigQuery does for a row it
/// refuses (a row error naming the row, nothing of the request appended):
/// the emulator never answers row errors. Unset in production.
#[derive(Debug, Default)]
struct Faults {
    point: Option<(String, u32)>,
    mark: Option<String>,
    stop: bool,
    seen: BTreeMap<&'static str, u32>,
}

/// The row errors BigQuery would answer for `rows` under
/// `SLUICE_BQ_FAULT_REFUSE` (see [`Faults`]), if any.
fn injected_row_errors(refuse: Option<&[u8]>, rows: &[Vec<u8>]) -> Option<AppendOutcome> {
    let marker = refuse.filter(|m| !m.is_empty())?;
    let errors: Vec<(usize, String)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.windows(marker.len()).any(|w| w == marker))
        .map(|(i, _)| (i, "Field customer: invalid value (test fault SLUICE_BQ_FAULT_REFUSE)".to_string()))
        .collect();
    (!errors.is_empty()).then_some(AppendOutcome::RowErrors(errors))
}

impl Faults {
    fn from_env() -> Faults {
        let point = std::env::var("SLUICE_BQ_FAULT").ok().and_then(|v| {
            let (p, n) = v.split_once('@')?;
            Some((p.to_string(), n.parse().ok()?))
        });
        Faults {
            point,
            mark: std::env::var("SLUICE_BQ_FAULT_MARK").ok(),
            stop: std::env::var("SLUICE_BQ_FAULT_ACTION").is_ok_and(|a| a == "stop"),
            seen: BTreeMap::new(),
        }
    }

    fn refuse_marker() -> Option<Vec<u8>> {
        std::env::var("SLUICE_BQ_FAULT_REFUSE").ok().map(String::into_bytes)
    }

    fn reach(&mut self, point: &'static str, host: &Host) {
        let Some((want, n)) = &self.point else { return };
        if want != point {
            return;
        }
        let seen = self.seen.entry(point).or_default();
        *seen += 1;
        if *seen != *n {
            return;
        }
        if let Some(mark) = &self.mark {
            if std::path::Path::new(mark).exists() {
                return;
            }
            let _ = std::fs::write(mark, point);
        }
        if self.stop {
            host.warn("test fault point reached: the worker stops itself (SIGSTOP) now", &[("point", point)]);
            // SAFETY: raise only sends a signal to the calling thread; SIGSTOP
            // stops the whole process before raise returns, so nothing of the
            // sink runs between the point and the pause.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
            host.warn("test fault point: the worker was continued", &[("point", point)]);
            return;
        }
        host.warn("test fault point reached: the worker dies now", &[("point", point)]);
        std::process::abort();
    }
}

/// A partition's state.
#[derive(Debug, Default)]
struct Part {
    table: String,
    /// The note read at assignment, until the first put resumes from it.
    resume: Option<Checkpoint>,
    position: Option<Position>,
    /// The checkpoint last committed as the partition's note.
    noted: Option<Checkpoint>,
}

/// An append connection to one stream, reopened when the server ended it.
struct StreamWriter {
    client: StorageClient,
    stream: String,
    conn: Option<AppendConnection>,
    descriptor: DescriptorProto,
    /// Test-only (`SLUICE_BQ_FAULT_REFUSE`, see [`Faults`]).
    refuse: Option<Vec<u8>>,
    /// `bigquery.append.timeout.ms`.
    timeout: std::time::Duration,
    /// This task changed the table's schema and no append on the new one
    /// has landed yet ([`schema_not_seen_yet`]).
    schema_changed: bool,
}

impl StreamWriter {
    async fn send(&mut self, offset: Option<i64>, rows: Vec<Vec<u8>>) -> AppendOutcome {
        if let Some(refused) = injected_row_errors(self.refuse.as_deref(), &rows) {
            return refused;
        }
        let timeout = self.timeout;
        let answered = tokio::time::timeout(timeout, self.send_now(offset, rows)).await;
        match answered {
            Ok(outcome) => outcome,
            Err(_) => {
                // The rows may still land: the retry appends them again at
                // the same offsets, where ALREADY_EXISTS counts as written.
                self.conn = None;
                AppendOutcome::Failed(StorageError::Transient(no_answer("AppendRows", &self.stream, timeout)))
            }
        }
    }

    async fn send_now(&mut self, offset: Option<i64>, rows: Vec<Vec<u8>>) -> AppendOutcome {
        if !self.conn.as_ref().is_some_and(AppendConnection::is_usable) {
            match self.client.open_append(&self.stream).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => return AppendOutcome::Failed(e),
            }
        }
        let outcome = match self.conn.as_mut() {
            Some(c) => c.append(offset, rows, &self.descriptor).await,
            None => AppendOutcome::Failed(StorageError::Transient("no append connection".into())),
        };
        match outcome {
            AppendOutcome::Failed(e) if schema_not_seen_yet(&e, self.schema_changed) => {
                self.conn = None;
                AppendOutcome::Failed(StorageError::Transient(format!(
                    "{}; the table's schema was just changed and the write stream does not see it yet: retrying",
                    e.message()
                )))
            }
            outcome => {
                if matches!(outcome, AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists(_)) {
                    self.schema_changed = false;
                }
                outcome
            }
        }
    }
}

impl Append for StreamWriter {
    fn append(&mut self, offset: i64, rows: Vec<Vec<u8>>) -> impl std::future::Future<Output = AppendOutcome> + Send {
        self.send(Some(offset), rows)
    }
}

fn no_answer(call: &str, on: &str, timeout: std::time::Duration) -> String {
    format!(
        "no answer from BigQuery to {call} on {on} within {} ms (bigquery.append.timeout.ms); retrying",
        timeout.as_millis()
    )
}

/// Appends to the `_default` stream: no offsets (at least once).
struct DefaultAppend<'a>(&'a mut StreamWriter);

impl Append for DefaultAppend<'_> {
    fn append(&mut self, _: i64, rows: Vec<Vec<u8>>) -> impl std::future::Future<Output = AppendOutcome> + Send {
        self.0.send(None, rows)
    }
}

pub struct BigQuerySinkTask {
    cfg: BigQuerySinkConfig,
    host: Host,
    context: SinkContext,
    rt: Runtime,
    storage: StorageClient,
    auth: Option<GoogleAuth>,
    rest: Option<BigQueryRest>,
    /// Per table: its schema's encoder.
    encoders: HashMap<String, Arc<RowEncoder>>,
    /// Parsed Connect schemas, by their JSON text.
    schemas: HashMap<String, Result<Schema, String>>,
    parts: BTreeMap<TopicPartition, Part>,
    /// Per stream name.
    writers: HashMap<String, StreamWriter>,
    /// Legacy mode's writer, made at the first put.
    legacy: Option<LegacyWriter>,
    faults: Faults,
    appended_since_commit: bool,
    committed_since_append: bool,
    /// Tables whose schema this task changed and on which no append has
    /// landed since: a writer made for one now starts with
    /// `schema_changed` (a partition's first batch may change the table
    /// before its writer exists).
    changed_tables: std::collections::HashSet<String>,
    /// UPSERT / UPSERT_DELETE.
    upsert: upsert_io::State,
    /// BATCH LOADING's pending streams and commits.
    batch: batch_task::BatchState,
}

impl std::fmt::Debug for BigQuerySinkTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuerySinkTask").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

fn auth_source(k: KeySource) -> auth::KeySource {
    match k {
        KeySource::File => auth::KeySource::File,
        KeySource::Json => auth::KeySource::Json,
        KeySource::ApplicationDefault => auth::KeySource::ApplicationDefault,
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A record's row as a JSON object, or None for a tombstone (skipped, as
/// Confluent's sink does without deletes), or why not. With the value's
/// Connect schema (JsonConverter with schemas.enable, Avro) the row is
/// converted as the legacy path converts it (logical types to BigQuery's
/// text forms: a Timestamp's milliseconds are not read as microseconds).
pub fn record_row(
    r: &SinkRecord<'_>,
    value_schema: Option<&Schema>,
    cfg: &BigQuerySinkConfig,
    insert_micros: i64,
) -> Result<Option<Map<String, Value>>, String> {
    let Some(value) = r.value() else { return Ok(None) };
    let parsed: Value = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not JSON ({e}); this sink writes JSON objects"))?;
    let mut row = match value_schema {
        Some(schema) => schema::connect_row(&parsed, schema, cfg.sanitize_field_names)?,
        None => {
            let Value::Object(row) = parsed else {
                return Err("the value is not a JSON object; each record becomes one row of its fields".into());
            };
            if cfg.sanitize_field_names {
                sanitize(row)
            } else {
                row
            }
        }
    };
    if let Some(field) = &cfg.kafka_key_field {
        row.insert(schema::sanitize_field_name(field), key_value(r).unwrap_or(Value::Null));
    }
    if let Some(field) = &cfg.kafka_data_field {
        let mut meta = Map::new();
        meta.insert("topic".into(), Value::String(r.topic().to_string()));
        meta.insert("partition".into(), Value::from(r.partition()));
        meta.insert("offset".into(), Value::from(r.offset()));
        meta.insert("insertTime".into(), Value::from(insert_micros));
        row.insert(schema::sanitize_field_name(field), Value::Object(meta));
    }
    Ok(Some(row))
}

/// The `kafkaKeyFieldName` value of a record: its key as JSON, or as text
/// when it is not JSON.
fn key_value(r: &SinkRecord<'_>) -> Option<Value> {
    r.key()
        .map(|k| serde_json::from_slice(k).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(k).into_owned())))
}

fn sanitize(row: Map<String, Value>) -> Map<String, Value> {
    row.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Object(m) => Value::Object(sanitize(m)),
                other => other,
            };
            (schema::sanitize_field_name(&k), v)
        })
        .collect()
}

fn bad_record(r: &SinkRecord<'_>, table: &str, why: &str) -> ConnectorError {
    ConnectorError::bad_record(format!(
        "BigQuery table {table}: {why} ({}); fix the record or the table's schema",
        r.position()
    ))
}

impl BigQuerySinkTask {
    pub fn new(cfg: BigQuerySinkConfig, host: Host, context: SinkContext) -> Result<Self, ConnectorError> {
        let rt = connector_kit::runtime::current_thread("bigquery-sink-io")?;
        let local = !cfg.storage_endpoint.starts_with("https://") && !cfg.rest_endpoint.starts_with("https://");
        let auth = if local && cfg.keyfile.is_none() {
            None
        } else {
            Some(GoogleAuth::from_config(auth_source(cfg.key_source), cfg.keyfile.as_ref().map(|k| k.expose()))?)
        };
        let authorization: Option<Authorization> = auth.clone().map(|a| {
            let agent = HttpClient::builder("").build().agent().clone();
            let a = Arc::new(Mutex::new(a));
            let f: Authorization = Arc::new(move |refresh| {
                let mut a = a.lock().unwrap_or_else(|p| p.into_inner());
                a.authorization(&agent, refresh)
                    .map_err(|e| ConnectorError::config(format!("keyfile: {}", e.message())))
            });
            f
        });
        let storage = rt.block_on(async { StorageClient::new(&cfg.storage_endpoint, authorization) })?;
        let batch = batch_task::BatchState::new(match cfg.path {
            WritePath::BatchLoading { commit_interval } => commit_interval,
            _ => std::time::Duration::ZERO,
        });
        Ok(BigQuerySinkTask {
            cfg,
            host,
            context,
            rt,
            storage,
            auth,
            rest: None,
            encoders: HashMap::new(),
            schemas: HashMap::new(),
            parts: BTreeMap::new(),
            writers: HashMap::new(),
            legacy: None,
            faults: Faults::from_env(),
            appended_since_commit: false,
            committed_since_append: false,
            changed_tables: Default::default(),
            upsert: upsert_io::State::default(),
            batch,
        })
    }

    fn rest(&mut self) -> &mut BigQueryRest {
        let (endpoint, project, auth) = (&self.cfg.rest_endpoint, &self.cfg.project, &self.auth);
        self.rest.get_or_insert_with(|| match auth {
            Some(a) => BigQueryRest::with_auth(endpoint, project, a.clone()),
            None => BigQueryRest::new(endpoint, project),
        })
    }

    fn table_id(&self, table: &str) -> TableId {
        TableId::new(&self.cfg.project, &self.cfg.dataset, table)
    }

    /// The table's encoder, from its schema as tables.get answers it (the
    /// schema a write stream reports is not used: the emulator leaves
    /// RECORD sub-fields out of it).
    fn encoder(&mut self, table: &str) -> Result<Arc<RowEncoder>, ConnectorError> {
        if let Some(e) = self.encoders.get(table) {
            return Ok(e.clone());
        }
        let id = self.table_id(table);
        let schema = self.rest().get_table(&id)?.ok_or_else(|| {
            ConnectorError::config(format!("table {id} does not exist: create it, or set autoCreateTables=true"))
        })?;
        let e = Arc::new(RowEncoder::new(&schema));
        self.encoders.insert(table.to_string(), e.clone());
        Ok(e)
    }

    fn value_schema(&mut self, r: &SinkRecord<'_>) -> Result<Option<Schema>, String> {
        let Some(text) = r.value_schema_json() else { return Ok(None) };
        self.schemas.entry(text.to_string()).or_insert_with(|| Schema::parse(text)).clone().map(Some)
    }

    /// The table schema a record would create its table with: from its
    /// Connect schema as Confluent's converter does, else from its JSON
    /// values ([`schema::infer_from_json`]); with the key and Kafka
    /// metadata columns when configured. Err says why not (the record's
    /// own fault).
    fn schema_for_new_table(&mut self, r: &SinkRecord<'_>) -> Result<Option<schema::TableSchema>, String> {
        let options =
            schema::ConvertOptions { sanitize_field_names: self.cfg.sanitize_field_names, all_nullable: false };
        let value_schema = self.value_schema(r)?;
        let Some(row) = record_row(r, value_schema.as_ref(), &self.cfg, 0)? else { return Ok(None) };
        let value = match &value_schema {
            Some(s) => schema::from_connect(s, &options).map_err(|e| e.0)?,
            None => {
                let mut inferred = schema::infer_from_json(&row);
                // record_row put the key and metadata columns in the row;
                // they are added with their own types below.
                for extra in [&self.cfg.kafka_key_field, &self.cfg.kafka_data_field].into_iter().flatten() {
                    let name = schema::sanitize_field_name(extra);
                    inferred.fields.retain(|f| f.name != name);
                }
                inferred
            }
        };
        let key = match &self.cfg.kafka_key_field {
            Some(name) => {
                let key_schema = match r.key_schema_json() {
                    Some(text) => Some(Schema::parse(text)?),
                    None => None,
                };
                match (&key_schema, row.get(&schema::sanitize_field_name(name))) {
                    (None, Some(k)) if !k.is_null() => {
                        let mut one = Map::new();
                        one.insert(schema::sanitize_field_name(name), k.clone());
                        schema::infer_from_json(&one).fields.pop()
                    }
                    _ => schema::kafka_key_field(name, key_schema.as_ref(), &options).map_err(|e| e.0)?,
                }
            }
            None => None,
        };
        let data = self.cfg.kafka_data_field.as_deref().map(schema::kafka_data_field);
        schema::record_table_schema(value, key, data).map(Some).map_err(|e| e.0)
    }

    /// Makes sure `table` exists before a stream is made on it: a missing
    /// one is created (`autoCreateTables`) from the first record of `idx`
    /// that can describe it. False when it is missing and none can (every
    /// record of the group then fails or is skipped on its own).
    fn ensure_table(&mut self, table: &str, records: &[SinkRecord<'_>], idx: &[usize]) -> Result<bool, ConnectorError> {
        if self.encoders.contains_key(table) {
            return Ok(true);
        }
        let id = self.table_id(table);
        match self.rest().get_table(&id)? {
            Some(schema) => {
                self.encoders.insert(table.to_string(), Arc::new(RowEncoder::new(&schema)));
                return Ok(true);
            }
            // Creating the stream says what to do.
            None if !self.cfg.auto_create => return Ok(true),
            None => {}
        }
        for &i in idx {
            // A tombstone, or a record that cannot be a row, fails on its
            // own; the next one may describe the table.
            if let Ok(Some(schema)) = self.schema_for_new_table(&records[i]) {
                let options = self.cfg.table_options();
                let created = self.rest().ensure_table(&id, &schema, &options)?;
                self.host.info(
                    "created the table from a record",
                    &[("table", &id.to_string()), ("record", &records[i].position())],
                );
                self.encoders.insert(table.to_string(), Arc::new(RowEncoder::new(&created)));
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn writer(&mut self, stream: &str, table: &str) -> Result<&mut StreamWriter, ConnectorError> {
        if !self.writers.contains_key(stream) {
            let encoder = self.encoder(table)?;
            self.writers.insert(
                stream.to_string(),
                StreamWriter {
                    client: self.storage.clone(),
                    stream: stream.to_string(),
                    conn: None,
                    descriptor: encoder.descriptor().clone(),
                    refuse: Faults::refuse_marker(),
                    timeout: self.cfg.append_timeout,
                    schema_changed: self.changed_tables.contains(table),
                },
            );
        }
        self.writers.get_mut(stream).ok_or_else(|| ConnectorError::fatal(format!("no writer for stream {stream}")))
    }

    fn create_stream(&mut self, table: &str) -> Result<String, ConnectorError> {
        self.create_stream_of(table, StreamType::Committed)
    }

    fn create_stream_of(&mut self, table: &str, kind: StreamType) -> Result<String, ConnectorError> {
        let path = self.cfg.table_path(table);
        let timeout = self.cfg.append_timeout;
        let created = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, self.storage.create_write_stream(&path, kind)).await })
            .unwrap_or_else(|_| Err(StorageError::Transient(no_answer("CreateWriteStream", &path, timeout))));
        let ws = match created {
            Ok(ws) => ws,
            Err(StorageError::NotFound(m)) => {
                return Err(ConnectorError::config(format!(
                    "{m}: table {} does not exist: create it (or its dataset defaultDataset), or set \
                     autoCreateTables=true",
                    self.table_id(table)
                )))
            }
            Err(e) => return Err(e.into_connector_error()),
        };
        self.encoder(table)?;
        Ok(ws.name)
    }

    /// Makes a partition ready to append: resumes the noted stream, or
    /// (first assignment ever, or the stream is gone) creates one and
    /// commits its note before any row goes to it.
    fn prepare(&mut self, tp: &TopicPartition, first_offset: i64) -> Result<(), ConnectorError> {
        let table = self.cfg.table_for(&tp.topic);
        let part = self.parts.entry(tp.clone()).or_default();
        part.table = table.clone();
        if part.position.is_some() {
            return Ok(());
        }
        let resume = part.resume.take();
        let position = match resume {
            Some(cp) => {
                let timeout = self.cfg.append_timeout;
                let found = self
                    .rt
                    .block_on(async { tokio::time::timeout(timeout, self.storage.get_write_stream(&cp.stream)).await })
                    .unwrap_or_else(|_| Err(StorageError::Transient(no_answer("GetWriteStream", &cp.stream, timeout))));
                match found {
                    Ok(Some(_)) => {
                        self.encoder(&table)?;
                        if let Some(p) = self.parts.get_mut(tp) {
                            p.noted = Some(cp.clone());
                        }
                        Position::from_checkpoint(&cp, first_offset)
                    }
                    Ok(None) => self.replace_lost_stream(tp, &table, &cp, first_offset)?,
                    Err(e) => {
                        if let Some(p) = self.parts.get_mut(tp) {
                            p.resume = Some(cp);
                        }
                        return Err(e.into_connector_error());
                    }
                }
            }
            None => {
                let stream = self.create_stream(&table)?;
                let position = Position { stream, next_kafka: first_offset, next_row: 0, refused: Vec::new() };
                self.note(tp, &position.checkpoint())?;
                position
            }
        };
        if let Some(p) = self.parts.get_mut(tp) {
            p.position = Some(position);
        }
        Ok(())
    }

    /// The noted stream was garbage-collected: a new one, resumed after
    /// what the table holds for the partition when the Kafka metadata
    /// column says it, else at the checkpoint (rows appended after it to
    /// the lost stream may then be written twice: said in the log).
    fn replace_lost_stream(
        &mut self,
        tp: &TopicPartition,
        table: &str,
        cp: &Checkpoint,
        first_offset: i64,
    ) -> Result<Position, ConnectorError> {
        let max = match self.cfg.kafka_data_field.clone() {
            Some(field) => {
                let field = schema::sanitize_field_name(&field);
                let sql = format!(
                    "SELECT MAX({field}.offset) FROM {} WHERE {field}.topic = '{}' AND {field}.partition = {}",
                    self.table_id(table).sql(),
                    tp.topic.replace('\\', "\\\\").replace('\'', "\\'"),
                    tp.partition
                );
                let result = self.rest().query(&sql)?;
                result.rows.first().and_then(|r| r.first()).and_then(|v| match v {
                    Value::String(s) => s.parse::<i64>().ok(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                })
            }
            None => {
                self.host.warn(
                    "the write stream of this partition is gone and kafkaDataFieldName is not set: resuming at the last \
                     checkpoint; rows appended after it may be written twice",
                    &[("topic", &tp.topic), ("partition", &tp.partition.to_string()), ("stream", &cp.stream)],
                );
                None
            }
        };
        let next_kafka = resume_after_lost_stream(cp, max);
        let stream = self.create_stream(table)?;
        self.host.info(
            "the write stream was gone; a new one resumes the partition",
            &[("topic", &tp.topic), ("partition", &tp.partition.to_string()), ("offset", &next_kafka.to_string())],
        );
        // Records below next_kafka are skipped on the new stream too: the
        // ones BigQuery refused still go to the DLQ again.
        let refused = Position::from_checkpoint(cp, first_offset).refused;
        let position = Position { stream, next_kafka, next_row: 0, refused };
        self.note(tp, &position.checkpoint())?;
        Ok(position)
    }

    /// Commits the partition's note (fenced: a task that lost the
    /// partition is refused and must not go on).
    fn note(&mut self, tp: &TopicPartition, cp: &Checkpoint) -> Result<(), ConnectorError> {
        self.context.commit_note(tp, &cp.to_note())?;
        if let Some(p) = self.parts.get_mut(tp) {
            p.noted = Some(cp.clone());
        }
        Ok(())
    }

    /// Appends `rows` (each with its record's index) from `start`, taking
    /// rows BigQuery refuses out (to the DLQ) and appending the others.
    /// Returns how many rows landed and the Kafka offsets of the records
    /// whose rows BigQuery refused.
    fn append_all(
        &mut self,
        stream: &str,
        table: &str,
        start: Option<i64>,
        mut rows: Vec<(usize, Vec<u8>)>,
        records: &[SinkRecord<'_>],
        outcome: &mut PutOutcome,
    ) -> Result<(i64, Vec<i64>), ConnectorError> {
        let mut refused = Vec::new();
        let max_bytes = self.cfg.append_max_bytes;
        let (retries, wait) = (self.cfg.retries, self.cfg.retry_wait);
        let mut done = 0usize;
        let mut attempt = 0u32;
        while done < rows.len() {
            let sizes: Vec<usize> = rows[done..].iter().map(|(_, b)| b.len()).collect();
            let Some(chunk) = cut_by_bytes(&sizes, max_bytes).into_iter().next() else { break };
            let chunk = done + chunk.start..done + chunk.end;
            let bytes: Vec<Vec<u8>> = rows[chunk.clone()].iter().map(|(_, b)| b.clone()).collect();
            self.writer(stream, table)?;
            let (rt, writers) = (&self.rt, &mut self.writers);
            let writer = writers
                .get_mut(stream)
                .ok_or_else(|| ConnectorError::fatal(format!("no writer for stream {stream}")))?;
            let result = match start {
                Some(s) => rt.block_on(put_rows(writer, s + chunk.start as i64, &bytes)),
                None => rt.block_on(put_rows(&mut DefaultAppend(writer), 0, &bytes)),
            };
            match result {
                Ok(()) => {
                    done = chunk.end;
                    attempt = 0;
                    self.appended_since_commit = true;
                    self.changed_tables.remove(table);
                    if done < rows.len() {
                        self.faults.reach("mid-append", &self.host);
                    }
                }
                Err(PutFailure::RowErrors(errors)) => {
                    let mut bad: Vec<usize> = Vec::new();
                    for (i, reason) in errors {
                        if let Some((record, _)) = rows.get(chunk.start + i) {
                            outcome.fail(
                                *record,
                                bad_record(&records[*record], table, &format!("BigQuery refused the row: {reason}")),
                            );
                            bad.push(chunk.start + i);
                            refused.push(records[*record].offset());
                        }
                    }
                    if bad.is_empty() {
                        return Err(ConnectorError::fatal(format!("append to {stream}: row errors without rows")));
                    }
                    for i in bad.into_iter().rev() {
                        rows.remove(i);
                    }
                }
                Err(PutFailure::Gap(m)) => {
                    return Err(ConnectorError::fatal(format!(
                    "append to {stream}: the stream ends before rows this sink counted as written ({m}); the stream \
                         was changed by someone else: stop other writers of it and restart the task"
                )))
                }
                Err(PutFailure::Storage(StorageError::Transient(m))) if attempt < retries => {
                    self.host.warn("BigQuery is unavailable; retrying", &[("error", &m)]);
                    std::thread::sleep(wait.saturating_mul(1 << attempt.min(6)));
                    attempt += 1;
                }
                Err(PutFailure::Storage(e)) => {
                    self.writers.remove(stream);
                    return Err(e.into_connector_error());
                }
            }
        }
        Ok((rows.len() as i64, refused))
    }

    fn put_streaming(&mut self, records: &[SinkRecord<'_>], exactly_once: bool) -> Result<PutOutcome, ConnectorError> {
        if self.committed_since_append {
            self.faults.reach("after-commit", &self.host);
        }
        let mut outcome = PutOutcome::accepted();
        let mut groups: Vec<(TopicPartition, Vec<usize>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match groups.iter_mut().find(|(tp, _)| tp.topic == r.topic() && tp.partition == r.partition()) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((TopicPartition::new(r.topic(), r.partition()), vec![i])),
            }
        }
        let mut ready = Vec::with_capacity(groups.len());
        for (tp, idx) in groups {
            let table = self.cfg.table_for(&tp.topic);
            if self.ensure_table(&table, records, &idx)? {
                ready.push((tp, idx));
                continue;
            }
            // No table, and no record to create it from: each record fails
            // with its own reason (tombstones are skipped).
            for i in idx {
                let r = &records[i];
                let why = match self.value_schema(r) {
                    Ok(schema) => record_row(r, schema.as_ref(), &self.cfg, 0).err(),
                    Err(e) => Some(e),
                };
                if let Some(why) = why {
                    outcome.fail(i, bad_record(r, &table, &why));
                }
            }
        }
        let groups = ready;
        if exactly_once {
            let batch = matches!(self.cfg.path, WritePath::BatchLoading { .. });
            for (tp, idx) in &groups {
                match batch {
                    true => self.prepare_batch(tp, records[idx[0]].offset())?,
                    false => self.prepare(tp, records[idx[0]].offset())?,
                }
            }
        }
        // A failed put leaves the positions as they were: the worker puts
        // the same batch again, whose rows then take the same offsets.
        let saved: Vec<(TopicPartition, Option<Position>)> =
            self.parts.iter().map(|(tp, p)| (tp.clone(), p.position.clone())).collect();
        let result = self.write_groups(&groups, records, exactly_once, &mut outcome);
        if result.is_err() {
            for (tp, position) in saved {
                if let Some(p) = self.parts.get_mut(&tp) {
                    p.position = position;
                }
            }
        }
        result.map(|()| outcome)
    }

    fn write_groups(
        &mut self,
        groups: &[(TopicPartition, Vec<usize>)],
        records: &[SinkRecord<'_>],
        exactly_once: bool,
        outcome: &mut PutOutcome,
    ) -> Result<(), ConnectorError> {
        let insert_micros = now_micros();
        for (tp, idx) in groups {
            let table = self.cfg.table_for(&tp.topic);
            let unfit = self.evolve(&table, records, idx, outcome)?;
            let encoder = match exactly_once {
                true => self.encoder(&table)?,
                false => {
                    let default = format!("{}/streams/_default", self.cfg.table_path(&table));
                    self.writer(&default, &table)?;
                    self.encoder(&table)?
                }
            };
            let position = self.parts.get(tp).and_then(|p| p.position.clone());
            let mut rows: Vec<(usize, Vec<u8>)> = Vec::new();
            for &i in idx.iter().filter(|i| !unfit.contains(i)) {
                let r = &records[i];
                let row = self
                    .value_schema(r)
                    .and_then(|schema| record_row(r, schema.as_ref(), &self.cfg, insert_micros))
                    .and_then(|row| match row {
                        Some(map) => encoder.encode(&map).map(Some),
                        None => Ok(None),
                    });
                match row {
                    Err(why) => outcome.fail(i, bad_record(r, &table, &why)),
                    Ok(None) => {}
                    Ok(Some(bytes)) => match position.as_ref().map_or(Replay::Append, |p| p.replay(r.offset())) {
                        Replay::Append => rows.push((i, bytes)),
                        Replay::Skip => {}
                        Replay::RouteAgain => outcome.fail(
                            i,
                            bad_record(
                                r,
                                &table,
                                "BigQuery refused the row when it was first appended, before the task restarted \
                                 (its reason is in the dead letter record of that attempt, if it was routed then)",
                            ),
                        ),
                    },
                }
            }
            let last = records[idx[idx.len() - 1]].offset();
            match position {
                Some(mut p) => {
                    let (landed, refused) =
                        self.append_all(&p.stream.clone(), &table, Some(p.next_row), rows, records, outcome)?;
                    p.next_row += landed;
                    for offset in refused {
                        p.refuse(offset);
                    }
                    p.next_kafka = p.next_kafka.max(last + 1);
                    if let Some(part) = self.parts.get_mut(tp) {
                        part.position = Some(p);
                    }
                }
                None => {
                    let default = format!("{}/streams/_default", self.cfg.table_path(&table));
                    self.append_all(&default, &table, None, rows, records, outcome)?;
                }
            }
        }
        Ok(())
    }

    fn policy(&self) -> EvolutionPolicy {
        EvolutionPolicy {
            allow_new_fields: self.cfg.allow_new_fields,
            allow_relaxation: self.cfg.allow_required_relaxation,
            allow_unionization: self.cfg.allow_schema_unionization,
        }
    }

    /// Makes `table` fit the records of `idx` where the policy allows
    /// (`allowNewBigQueryFields`, `allowBigQueryRequiredFieldRelaxation`),
    /// before any of them is encoded: every record of the group is then
    /// encoded with the table's final schema, so whoever replays these
    /// records later (the table changed already) makes the same rows. A
    /// change makes a new encoder and a new append connection to the
    /// table's streams, whose first request carries the new writer schema;
    /// the stream, and so the stream offsets, stay. Returns the records
    /// refused (failed into `outcome`, naming the field and the key).
    fn evolve(
        &mut self,
        table: &str,
        records: &[SinkRecord<'_>],
        idx: &[usize],
        outcome: &mut PutOutcome,
    ) -> Result<Vec<usize>, ConnectorError> {
        let policy = self.policy();
        let mut unfit = Vec::new();
        if !evolution_allowed(policy) {
            return Ok(unfit);
        }
        let mut current = self.encoder(table)?.schema();
        for &i in idx {
            let r = &records[i];
            let needs = match self.value_schema(r) {
                Ok(Some(_)) => match self.schema_for_new_table(r) {
                    Ok(Some(needs)) => needs,
                    // The encoder says what is wrong with it.
                    _ => continue,
                },
                Ok(None) => match record_row(r, None, &self.cfg, 0) {
                    Ok(Some(row)) => schemaless_needs(&current, &row),
                    _ => continue,
                },
                Err(_) => continue,
            };
            match plan_evolution(&current, &needs, policy) {
                Evolution::Fits => {}
                Evolution::Refused(why) => {
                    outcome.fail(i, bad_record(r, table, &format!("the record does not fit the table: {why}")));
                    unfit.push(i);
                }
                Evolution::Patch(_) => {
                    let id = self.table_id(table);
                    match self.rest().fit_schema(&id, &needs, policy) {
                        Ok(schema) => {
                            self.host.info(
                                "changed the table's schema for a record",
                                &[("table", &id.to_string()), ("record", &r.position())],
                            );
                            self.schema_changed(table, &schema);
                            current = schema;
                        }
                        Err(e) if e.kind() == connector_api::ErrorKind::BadRecord => {
                            outcome.fail(i, bad_record(r, table, e.message()));
                            unfit.push(i);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(unfit)
    }

    /// The table has a new schema: a new encoder, and the writers of its
    /// streams send the new descriptor on a new connection.
    fn schema_changed(&mut self, table: &str, schema: &schema::TableSchema) {
        let encoder = Arc::new(RowEncoder::new(schema));
        let prefix = format!("{}/streams/", self.cfg.table_path(table));
        for (stream, writer) in self.writers.iter_mut() {
            if stream.starts_with(&prefix) {
                writer.descriptor = encoder.descriptor().clone();
                writer.conn = None;
                writer.schema_changed = true;
            }
        }
        self.encoders.insert(table.to_string(), encoder);
        self.changed_tables.insert(table.to_string());
    }

    /// Legacy mode: the REST side's writer (tables found or created,
    /// schemas fitted, insertAll with Confluent's row ids).
    fn put_insert_all(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        if self.legacy.is_none() {
            self.legacy = Some(LegacyWriter::new(&self.cfg)?);
        }
        match self.legacy.as_mut() {
            Some(writer) => writer.put(records),
            None => Err(ConnectorError::fatal("the insertAll writer is missing")),
        }
    }
}

impl SinkTask for BigQuerySinkTask {
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        if let WritePath::Upsert { .. } = self.cfg.path {
            self.upsert.open(partitions);
            return Ok(());
        }
        if matches!(self.cfg.path, WritePath::BatchLoading { .. }) {
            self.open_batch(partitions);
            return Ok(());
        }
        for tp in partitions {
            let note = self.context.note(tp);
            let resume = note.as_deref().and_then(Checkpoint::parse);
            if note.is_some() && resume.is_none() {
                self.host.warn("ignoring a note this sink did not write", &[("topic", &tp.topic)]);
            }
            let table = self.cfg.table_for(&tp.topic);
            self.parts.insert(tp.clone(), Part { table, resume, position: None, noted: None });
        }
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        match self.cfg.path {
            WritePath::Streaming { exactly_once } => self.put_streaming(records, exactly_once),
            WritePath::InsertAll => self.put_insert_all(records),
            WritePath::Upsert { delete } => self.put_upsert(records, delete),
            WritePath::BatchLoading { .. } => self.put_batch(records),
        }
    }

    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        if let WritePath::Upsert { .. } = self.cfg.path {
            // Durable is what a MERGE covered, not what was appended.
            return self.pre_commit_upsert();
        }
        if matches!(self.cfg.path, WritePath::BatchLoading { .. }) {
            return self.pre_commit_batch();
        }
        if self.cfg.path != (WritePath::Streaming { exactly_once: true }) {
            // Written synchronously in put: durable up to what was delivered.
            return Ok(delivered.to_vec());
        }
        if self.appended_since_commit {
            self.faults.reach("after-append", &self.host);
        }
        let mut durable = Vec::new();
        let owned: Vec<(TopicPartition, Position, Option<Checkpoint>)> =
            self.parts.iter().filter_map(|(tp, p)| Some((tp.clone(), p.position.clone()?, p.noted.clone()))).collect();
        for (tp, mut position, noted) in owned {
            let dropped = trim_refused(&mut position.refused, MAX_REFUSED_BYTES);
            if !dropped.is_empty() {
                self.host.warn(
                    "too many records refused by BigQuery to keep in the partition's note: if the worker dies before \
                     their offsets are committed, these are not routed to the dead letter queue again",
                    &[
                        ("topic", &tp.topic),
                        ("partition", &tp.partition.to_string()),
                        ("offsets", &format!("{}..={}", dropped[0], dropped[dropped.len() - 1])),
                    ],
                );
                if let Some(p) = self.parts.get_mut(&tp) {
                    p.position = Some(position.clone());
                }
            }
            // The note first: a commit of this offset must never exist
            // without the checkpoint that says where its rows end.
            let cp = position.checkpoint();
            if noted.as_ref() != Some(&cp) {
                self.note(&tp, &cp)?;
            }
            durable.push(TopicPartitionOffset::new(tp.topic.clone(), tp.partition, position.next_kafka));
        }
        self.appended_since_commit = false;
        self.committed_since_append = !durable.is_empty();
        Ok(durable)
    }

    fn close(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        self.upsert.close(partitions);
        self.close_batch(partitions);
        for tp in partitions {
            if let Some(p) = self.parts.remove(tp) {
                if let Some(pos) = p.position {
                    self.writers.remove(&pos.stream);
                }
            }
        }
        Ok(())
    }
}
