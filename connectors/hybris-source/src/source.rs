//! The source task: one keyset poller per item type it was given.
//!
//! Offsets: source partition `{"itemtype":"Order"}`, source offset
//! `{"modifiedTS":"2025-03-03T10:00:00.000000","pk":8796093612055}` = the last
//! row emitted (plus `"deletion":{"modifiedTS":…,"pk":…}`, the last deletion
//! marker emitted, when a deletions table is configured). A cursor only moves
//! past rows that were returned from `poll`, so a restart from the committed
//! offset re-reads exactly the uncommitted tail.
//!
//! hybris.mode=odata reads the same rows through the Integration API
//! ([`crate::odata`]); its offsets add the row's `integrationKey` (its
//! tie-break at equal modifiedtime), and the records are built by the same
//! code, so both modes write identical records for identical data.

use std::{
    collections::HashMap,
    thread,
    time::{Duration, Instant},
};

use connector_api::{ConnectorError, Host, SourceOffset, SourceRecord};
use connector_kit::metrics::Counter;
use serde_json::{json, Map, Value};

use crate::{
    config::{Backend, Settings},
    db::{self, ConnectFailure, Db},
    odata,
    rows::{ChangeRow, Cursor, DeletionRow},
    schema::ItemMapping,
};

/// The longest `poll` blocks while waiting for the next query.
const MAX_POLL_WAIT: Duration = Duration::from_millis(500);

pub struct HybrisTask {
    host: Host,
    settings: Settings,
    db: Option<Db>,
    /// hybris.mode=odata: the Integration API client (token and `$metadata` cached).
    odata: Option<odata::Client>,
    pollers: Vec<TypePoller>,
    /// Where the next round of queries starts, so types share `max_records` fairly.
    next_poller: usize,
    next_query_at: Instant,
    enum_codes: HashMap<i64, Option<String>>,
}

struct TypePoller {
    item: ItemMapping,
    partition: String,
    changes: Option<Cursor>,
    deletions: Option<Cursor>,
    /// A deletions table is read: offsets carry its cursor too.
    deletions_enabled: bool,
    /// The business key's attribute name in the value (`code` for p_code).
    key_attribute: String,
    /// hybris.mode=odata: the `$skip` scan in progress.
    scan: Option<Scan>,
    /// `hybris_rows_read_total` of this item type.
    rows_read: Counter,
}

/// hybris.mode=odata: one keyset query paged with `$skip`. The filter is
/// fixed when the scan starts (after the cursor, below server clock − lag);
/// `__count` must stay the same from page to page: if it changes, rows moved
/// in or out of the window, `$skip` could jump over one, so the page is
/// dropped and a new scan starts from the cursor (which only ever moves past
/// rows returned from `poll`). This is complete under the lag window's
/// assumption: a row changed while a scan pages gets a modifiedtime above the
/// scan's upper bound, so it leaves the window and the count drops; only a
/// commit older than the lag could enter it. `hybris.odata.paging=keyset`
/// starts no scan at all: every page is a new delta query.
#[derive(Debug, Clone)]
struct Scan {
    filter: String,
    skip: usize,
    count: Option<u64>,
}

/// A change or a deletion, merged in (modifiedTS, kind, PK) order.
enum Event {
    Change(ChangeRow),
    Deletion(DeletionRow),
}

impl Event {
    fn sort_key(&self) -> (&str, u8, i64) {
        match self {
            // At equal timestamps a change sorts before a deletion: an item is
            // updated, then removed.
            Event::Change(r) => (&r.cursor.ts, 0, r.cursor.pk),
            Event::Deletion(r) => (&r.cursor.ts, 1, r.cursor.pk),
        }
    }
}

pub fn partition_json(type_name: &str) -> String {
    json!({ "itemtype": type_name }).to_string()
}

fn cursor_json(c: Option<&Cursor>) -> Value {
    match c {
        Some(Cursor { ts, pk, key: Some(key) }) => json!({ "modifiedTS": ts, "pk": pk, "integrationKey": key }),
        Some(c) => json!({ "modifiedTS": c.ts, "pk": c.pk }),
        None => json!({ "modifiedTS": null, "pk": null }),
    }
}

fn parse_cursor(v: &Value) -> Result<Option<Cursor>, String> {
    match (&v["modifiedTS"], &v["pk"]) {
        (Value::Null, Value::Null) => Ok(None),
        (Value::String(ts), pk) => match pk.as_i64() {
            Some(pk) => Ok(Some(Cursor { ts: ts.clone(), pk, key: v["integrationKey"].as_str().map(str::to_string) })),
            None => Err(format!("\"pk\" is not a whole number in {v}")),
        },
        _ => Err(format!("expected {{\"modifiedTS\": \"…\", \"pk\": N}}, got {v}")),
    }
}

/// Attribute name in the value: `p_code` → `code`.
fn attribute_name(column: &str) -> &str {
    column.strip_prefix("p_").unwrap_or(column)
}

/// A topic-safe, lower-case suffix from a routing value.
fn topic_suffix(value: &str) -> String {
    value
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect()
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl HybrisTask {
    pub fn new(settings: Settings, host: Host) -> HybrisTask {
        let pollers = settings
            .items
            .iter()
            .map(|item| TypePoller {
                partition: partition_json(&item.type_name),
                key_attribute: attribute_name(&item.key_column).to_string(),
                item: item.clone(),
                changes: None,
                deletions: None,
                deletions_enabled: settings.backend.deletions_table().is_some(),
                scan: None,
                rows_read: Counter::new(
                    &host,
                    "hybris_rows_read_total",
                    "Hybris rows (changes and deletions) turned into records",
                )
                .label("itemtype", &item.type_name),
            })
            .collect();
        HybrisTask {
            host,
            settings,
            db: None,
            odata: None,
            pollers,
            next_poller: 0,
            next_query_at: Instant::now(),
            enum_codes: HashMap::new(),
        }
    }

    pub fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
        for poller in &mut self.pollers {
            // Partitions are compared as JSON: the offsets topic may reorder keys or spacing.
            let wanted = json!({ "itemtype": poller.item.type_name });
            let Some(offset) = committed
                .iter()
                .find(|o| serde_json::from_str::<Value>(o.partition.as_str()).is_ok_and(|p| p == wanted))
            else {
                continue;
            };
            let bad = |e: String| {
                ConnectorError::fatal(format!(
                    "committed offset of {} is unreadable ({e}); reset the connector's offsets to start over",
                    poller.partition
                ))
            };
            let value: Value = serde_json::from_str(offset.offset.as_str()).map_err(|e| bad(e.to_string()))?;
            poller.changes = parse_cursor(&value).map_err(bad)?;
            if value.get("deletion").is_some() {
                poller.deletions = parse_cursor(&value["deletion"]).map_err(bad)?;
            }
            self.host.info(
                "resuming after the committed offset",
                &[("itemtype", &poller.item.type_name), ("offset", offset.offset.as_str())],
            );
        }
        Ok(())
    }

    fn connect(&mut self) -> Result<&mut Db, ConnectorError> {
        if self.db.as_ref().is_some_and(Db::is_closed) {
            self.db = None;
        }
        if self.db.is_none() {
            let Backend::Jdbc(s) = &self.settings.backend else {
                return Err(ConnectorError::fatal("hybris.mode=odata reads no database"));
            };
            // Failing to connect while running is transient: the database may
            // be restarting; the runtime retries with backoff. A URL or TLS
            // setting that cannot work fails the task instead: retrying
            // would not change the certificate.
            let db = Db::connect(s).map_err(|e| {
                let message = format!("cannot connect to the Hybris database: {}", e.message());
                match e {
                    ConnectFailure::Url(_) | ConnectFailure::Tls(_) => ConnectorError::fatal(message),
                    _ => ConnectorError::retriable(message),
                }
            })?;
            self.db = Some(db);
        }
        self.db.as_mut().ok_or_else(|| ConnectorError::retriable("no database connection"))
    }

    pub fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
        let now = Instant::now();
        if now < self.next_query_at {
            thread::sleep((self.next_query_at - now).min(MAX_POLL_WAIT));
            if Instant::now() < self.next_query_at {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        let mut caught_up = true;
        let n = self.pollers.len();
        for i in 0..n {
            let index = (self.next_poller + i) % n;
            let room = max_records.saturating_sub(out.len()).min(self.settings.batch_max_rows);
            if room == 0 {
                caught_up = false;
                break;
            }
            match self.poll_type(index, room) {
                Ok((records, full)) => {
                    caught_up &= !full;
                    out.extend(records);
                }
                Err(e) => {
                    if e.kind() == connector_api::ErrorKind::Retriable {
                        self.db = None;
                    }
                    self.host.warn(
                        "query failed",
                        &[("itemtype", &self.pollers[index].item.type_name), ("error", e.message())],
                    );
                    // Records already read for other types must still go out:
                    // their cursors have moved. The error comes back next poll.
                    if out.is_empty() {
                        return Err(e);
                    }
                    return Ok(out);
                }
            }
        }
        self.next_poller = (self.next_poller + 1) % n.max(1);
        if caught_up {
            self.next_query_at = Instant::now() + self.settings.poll_interval;
        }
        Ok(out)
    }

    /// One query round for one type: up to `limit` records and whether more
    /// may be waiting.
    fn poll_type(&mut self, index: usize, limit: usize) -> Result<(Vec<SourceRecord>, bool), ConnectorError> {
        if let Backend::OData(_) = self.settings.backend {
            return self.poll_type_odata(index, limit);
        }
        let lag = self.settings.lag_ms;
        let deletions_table = self.settings.backend.deletions_table().map(str::to_string);
        let poller = &self.pollers[index];
        let (item, changes_after, deletions_after) =
            (poller.item.clone(), poller.changes.clone(), poller.deletions.clone());
        let db = self.connect()?;
        let changes = db
            .fetch_changes(&item, changes_after.as_ref(), lag, limit)
            .map_err(|e| db::to_connector_error(&format!("reading {} from {}", item.type_name, item.table), &e))?;
        let deletions = match &deletions_table {
            Some(table) => {
                let codes =
                    if item.typecodes.is_empty() { vec![item.type_name.clone()] } else { item.typecodes.clone() };
                db.fetch_deletions(table, &codes, deletions_after.as_ref(), lag, limit)
                    .map_err(|e| db::to_connector_error(&format!("reading deletions from {table}"), &e))?
            }
            None => Vec::new(),
        };
        let changes_full = changes.len() == limit;
        let deletions_full = deletions.len() == limit;

        // A full batch may hide rows beyond its last one: merge only up to the
        // earliest end of a full batch, so neither stream is overtaken.
        let mut bound: Option<(String, u8, i64)> = None;
        if changes_full {
            bound = changes.last().map(|r| (r.cursor.ts.clone(), 0, r.cursor.pk));
        }
        if deletions_full {
            if let Some(last) = deletions.last() {
                let b = (last.cursor.ts.clone(), 1, last.cursor.pk);
                bound = Some(match bound {
                    Some(a) if a <= b => a,
                    _ => b,
                });
            }
        }
        let mut events: Vec<Event> =
            changes.into_iter().map(Event::Change).chain(deletions.into_iter().map(Event::Deletion)).collect();
        events.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        if let Some((ts, kind, pk)) = &bound {
            events.retain(|e| e.sort_key() <= (ts.as_str(), *kind, *pk));
        }
        events.truncate(limit);

        // Topics first: resolving a routing enum may fail, and no cursor may
        // move before every record of the batch can be returned.
        let mut topics = Vec::with_capacity(events.len());
        for event in &events {
            topics.push(match event {
                Event::Change(row) => self.topic_for(index, &row.doc)?,
                Event::Deletion(_) => self.base_topic(index),
            });
        }
        let poller = &mut self.pollers[index];
        let mut records = Vec::with_capacity(events.len());
        for (event, topic) in events.into_iter().zip(topics) {
            records.push(match event {
                Event::Change(row) => {
                    poller.changes = Some(row.cursor.clone());
                    change_record(poller, row, topic)
                }
                Event::Deletion(row) => {
                    poller.deletions = Some(row.cursor.clone());
                    deletion_record(poller, row, topic)
                }
            });
        }
        if !records.is_empty() {
            self.pollers[index].rows_read.add(records.len() as f64);
        }
        Ok((records, changes_full || deletions_full))
    }

    /// hybris.mode=odata: one page of the type's scan.
    fn poll_type_odata(&mut self, index: usize, limit: usize) -> Result<(Vec<SourceRecord>, bool), ConnectorError> {
        let lag = self.settings.lag_ms;
        let Backend::OData(settings) = &self.settings.backend else {
            return Err(ConnectorError::fatal("hybris.mode=jdbc has no Integration API client"));
        };
        let keyset_paging = settings.keyset_paging;
        if self.odata.is_none() {
            self.odata = Some(odata::Client::new(settings));
        }
        let Some(client) = self.odata.as_mut() else {
            return Err(ConnectorError::retriable("no Integration API client"));
        };
        let poller = &mut self.pollers[index];
        let entity_set = poller.item.entity_set.clone();
        let type_name = poller.item.type_name.clone();
        let scan = match poller.scan.clone() {
            Some(scan) => scan,
            None => {
                // $metadata first: it also sets the server clock the window needs.
                client.metadata().map_err(|f| odata_error(&type_name, &entity_set, f))?;
                let upper = client.server_now_ms() - lag;
                Scan { filter: odata::delta_filter(poller.changes.as_ref(), upper), skip: 0, count: None }
            }
        };
        let page = match client.fetch_page(&entity_set, &scan.filter, limit, scan.skip) {
            Ok(page) => page,
            Err(f) => {
                // The next attempt starts a fresh scan from the cursor.
                poller.scan = None;
                return Err(odata_error(&type_name, &entity_set, f));
            }
        };
        if let (Some(before), Some(now)) = (scan.count, page.count) {
            if before != now {
                poller.scan = None;
                self.host.info(
                    "rows moved while paging; reading again from the last row emitted",
                    &[("itemtype", &type_name), ("count", &format!("{before} -> {now}"))],
                );
                return Ok((Vec::new(), true));
            }
        }
        let read = scan.skip + page.rows.len();
        let more = page.rows.len() >= limit && page.count.is_none_or(|c| (read as u64) < c);
        // Keyset paging: the next page is a new delta query after the last row.
        poller.scan = (more && !keyset_paging).then_some(Scan { skip: read, count: page.count, ..scan });
        let after = poller.changes.clone();
        let rows: Vec<ChangeRow> =
            page.rows.into_iter().filter(|r| odata::after_cursor(&r.cursor, after.as_ref())).collect();

        let mut topics = Vec::with_capacity(rows.len());
        for row in &rows {
            topics.push(self.topic_for(index, &row.doc)?);
        }
        let poller = &mut self.pollers[index];
        let mut records = Vec::with_capacity(rows.len());
        for (row, topic) in rows.into_iter().zip(topics) {
            poller.changes = Some(row.cursor.clone());
            records.push(change_record(poller, row, topic));
        }
        if !records.is_empty() {
            self.pollers[index].rows_read.add(records.len() as f64);
        }
        Ok((records, more))
    }

    fn base_topic(&self, index: usize) -> String {
        format!("{}{}", self.settings.topic_prefix, self.pollers[index].item.type_name.to_ascii_lowercase())
    }

    /// The plain topic, or the routed one when the item has the route field.
    fn topic_for(&mut self, index: usize, doc: &Map<String, Value>) -> Result<String, ConnectorError> {
        let base = self.base_topic(index);
        let Some(field) = self.settings.route_field.clone() else {
            return Ok(base);
        };
        let value = doc.get(&format!("p_{field}")).or_else(|| doc.get(&field));
        let suffix = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A number is a reference; an enum's PK resolves to its code.
            Some(Value::Number(n)) => match n.as_i64() {
                Some(pk) => Some(self.enum_code(pk)?.unwrap_or_else(|| pk.to_string())),
                None => Some(n.to_string()),
            },
            Some(other) => Some(other.to_string()),
        };
        Ok(match suffix.map(|s| topic_suffix(&s)).filter(|s| !s.is_empty()) {
            Some(s) => format!("{base}.{s}"),
            None => base,
        })
    }

    fn enum_code(&mut self, pk: i64) -> Result<Option<String>, ConnectorError> {
        // The Integration API has no enumerationvalues table to look in: the
        // value routes as it is.
        if let Backend::OData(_) = self.settings.backend {
            return Ok(None);
        }
        if let Some(code) = self.enum_codes.get(&pk) {
            return Ok(code.clone());
        }
        let db = self.connect()?;
        let code = match db.enum_code(pk) {
            Ok(code) => code,
            // No enumerationvalues table (or no access): route by the number.
            Err(e) if !db::is_transient(&e) => None,
            Err(e) => return Err(db::to_connector_error("resolving a routing enum", &e)),
        };
        self.enum_codes.insert(pk, code.clone());
        Ok(code)
    }
}

/// An Integration API failure while running: outages are retried (the scan
/// restarts from the cursor, so nothing is skipped); refused credentials and
/// a vanished entity set are not going to heal by themselves.
fn odata_error(type_name: &str, entity_set: &str, f: odata::Failure) -> ConnectorError {
    let context = format!("reading {type_name} from the Integration API ({entity_set})");
    match f {
        odata::Failure::Transient(m) | odata::Failure::TokenUnavailable(m) => {
            ConnectorError::retriable(format!("{context}: {m}"))
        }
        odata::Failure::Auth(m) => ConnectorError::fatal(format!(
            "{context}: credentials refused ({m}); check hybris.odata.user/hybris.odata.password or the OAuth client"
        )),
        odata::Failure::TokenClient(m) => ConnectorError::fatal(format!(
            "{context}: the token endpoint refused the client ({m}); check hybris.odata.oauth.client.id and .secret"
        )),
        odata::Failure::NotFound(m) => ConnectorError::fatal(format!(
            "{context}: not found ({m}); check hybris.odata.integration.object and hybris.item.{type_name}.entity.set"
        )),
        odata::Failure::Other(m) => ConnectorError::fatal(format!("{context}: {m}")),
    }
}

fn offset_of(poller: &TypePoller, with_deletions: bool) -> SourceOffset {
    let mut offset = cursor_json(poller.changes.as_ref());
    if with_deletions {
        offset["deletion"] = cursor_json(poller.deletions.as_ref());
    }
    SourceOffset::new(poller.partition.clone(), offset.to_string())
}

fn change_record(poller: &TypePoller, row: ChangeRow, topic: String) -> SourceRecord {
    let mut value = Map::new();
    // Attributes first, so the generic fields below win on a name clash.
    for (column, v) in &row.doc {
        if column.starts_with("p_") {
            value.insert(attribute_name(column).to_string(), v.clone());
        }
    }
    let key = row.doc.get(&poller.item.key_column).and_then(key_text).unwrap_or_else(|| row.cursor.pk.to_string());
    let op = if row.created_ts.as_deref() == Some(row.cursor.ts.as_str()) { "create" } else { "update" };
    value.insert(poller.key_attribute.clone(), Value::String(key.clone()));
    value.insert("type".into(), Value::String(poller.item.type_name.clone()));
    value.insert("pk".into(), json!(row.cursor.pk));
    value.insert("createdTS".into(), json!(row.created_ts));
    value.insert("modifiedTS".into(), json!(row.cursor.ts));
    value.insert("op".into(), json!(op));
    SourceRecord::new(topic, offset_of(poller, poller.deletions_enabled))
        .with_key(key)
        .with_value(Value::Object(value).to_string())
        .with_header("hybris.type", poller.item.type_name.clone())
        .with_header("hybris.op", op)
        .with_timestamp(row.modified_ms)
}

fn deletion_record(poller: &TypePoller, row: DeletionRow, topic: String) -> SourceRecord {
    // A tombstone: no value, keyed like the item's changes so compaction
    // removes them and it lands on the same partition after them.
    SourceRecord::new(topic, offset_of(poller, true))
        .with_key(row.business_key)
        .with_header("hybris.type", poller.item.type_name.clone())
        .with_header("hybris.op", "delete")
        .with_header("hybris.pk", row.item_pk.to_string())
        .with_timestamp(row.modified_ms)
}
