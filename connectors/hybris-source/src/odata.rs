//! hybris.mode=odata: the SAP Commerce Integration API (OData v2,
//! `/odata2webservices/<IntegrationObject>/<EntitySet>`), the only read path
//! on Commerce Cloud.
//!
//! One blocking HTTP client per task (connector-kit's, over ureq: a plugin
//! owns no async runtime of the worker's). Entities become the same [`ChangeRow`]s the SQL layer returns,
//! so both modes share the record builder and produce identical records: the
//! `$metadata` types drive the conversion, because OData v2 JSON writes
//! `Edm.Int64` and `Edm.Decimal` as strings and `Edm.DateTime` as
//! `/Date(ms)/`, and a string property that looks like a number (an order code
//! `00001000`) must stay a string.
//!
//! Delta query (why this form): OData v2 has no tuple comparison, so the
//! keyset `(modifiedtime, integrationKey) > (X, K)` is spelled out as
//! `(modifiedtime gt X) or (modifiedtime eq X and integrationKey gt 'K')`,
//! ordered by `modifiedtime,integrationKey`. Rows sharing `modifiedtime` are
//! then neither skipped (a plain `gt X` would drop the rest of a group cut by
//! a page end) nor repeated (a plain `ge X` would re-read the group), and the
//! server does the work: no page ever has to be read twice. `integrationKey`
//! is the tie-break because every integration object item has it and it is
//! unique per entity set. The upper bound `modifiedtime lt (server clock −
//! lag)` plays the role of jdbc mode's lag window; the server clock is the
//! `Date` header of its latest answer, so the connector's own clock does not
//! matter.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use chrono::{DateTime, NaiveDateTime, Timelike};
use connector_kit::{
    classify::excerpt as cut,
    http::{self, BasicAuth, ClientCredentials, HttpClient, HttpError, Request},
};
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::{
    config::{ODataAuth, ODataSettings},
    rows::{ChangeRow, Cursor},
};

/// Bodies above this are refused rather than buffered (a page of 1000
/// orders is about 1 MiB).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// Why a request failed: validation names the key to fix from it, and the
/// task turns it into Retriable or Fatal.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 401/403 from the Integration API: the user (or the token) is refused.
    Auth(String),
    /// The token endpoint refused the client id/secret (400/401/403).
    TokenClient(String),
    /// The token endpoint cannot be reached or failed (5xx, timeout).
    TokenUnavailable(String),
    /// 404: no such integration object or entity set.
    NotFound(String),
    /// 5xx, 408, 429, timeouts, refused or reset connections: try again.
    Transient(String),
    /// Anything else (400, an unreadable body).
    Other(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Auth(m)
            | Failure::TokenClient(m)
            | Failure::TokenUnavailable(m)
            | Failure::NotFound(m)
            | Failure::Transient(m)
            | Failure::Other(m) => m,
        }
    }
}

/// One entity type of `$metadata`: property name → EDM type.
#[derive(Debug, Clone, Default)]
pub struct EntityType {
    pub name: String,
    pub properties: HashMap<String, String>,
}

/// What `$metadata` says: entity set → its entity type.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub sets: HashMap<String, EntityType>,
}

/// One page of an entity set.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<ChangeRow>,
    /// `__count` of `$inlinecount=allpages`: rows matching the filter.
    pub count: Option<u64>,
}

pub struct Client {
    settings: ODataSettings,
    /// connector-kit's blocking client: the global timeout, the user agent,
    /// Basic or OAuth2 client-credentials authorization (a token refused
    /// with 401 is renewed once), the server's clock from `Date`; no retries
    /// of its own (the worker retries a poll).
    http: HttpClient,
    metadata: Option<Metadata>,
    /// Tokens fetched so far (OAuth2; for logs and tests of the refresh path).
    tokens: Option<Arc<AtomicU64>>,
}

impl Client {
    pub fn new(settings: &ODataSettings) -> Client {
        let builder = HttpClient::builder("")
            .timeout(settings.timeout)
            .connect_timeout(None)
            .read_timeout(None)
            .user_agent("sluice-hybris-source")
            .max_body(MAX_BODY);
        let (http, tokens) = match &settings.auth {
            ODataAuth::Basic { user, password } => {
                (builder.token_source(BasicAuth::new(user, password.expose())).build(), None)
            }
            // client_secret_basic (RFC 6749 §2.3.1), what Hybris' authorization
            // server accepts for the client_credentials grant.
            ODataAuth::OAuth2 { token_url, client_id, client_secret } => {
                let source = ClientCredentials::new(token_url, client_id, client_secret.expose());
                let tokens = source.fetched();
                (builder.token_source(source).build(), Some(tokens))
            }
        };
        Client { settings: settings.clone(), http, metadata: None, tokens }
    }

    fn service_url(&self) -> String {
        format!("{}/{}", self.settings.url, self.settings.integration_object)
    }

    /// The `Authorization` header value the next request carries
    /// (`refresh`: a new OAuth token).
    #[cfg(test)]
    fn authorization(&mut self, refresh: bool) -> Result<String, Failure> {
        match self.http.authorization(refresh) {
            Ok(header) => Ok(header.unwrap_or_default()),
            Err(e) => Err(failure(HttpError::Token(Box::new(e)))),
        }
    }

    /// OAuth tokens fetched so far (0 with Basic authentication).
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.as_ref().map_or(0, |t| t.load(Ordering::Relaxed))
    }

    /// A GET with authentication; an OAuth token refused with 401 is renewed
    /// once (it may have expired or been revoked early).
    fn get(&mut self, url: &str, accept: &str) -> Result<String, Failure> {
        let response = self.http.send(Request::get(url).header("Accept", accept)).map_err(failure)?;
        String::from_utf8(response.body).map_err(|e| Failure::Transient(format!("{url}: {e}")))
    }

    /// `$metadata`, read once per client.
    pub fn metadata(&mut self) -> Result<&Metadata, Failure> {
        if self.metadata.is_none() {
            let url = format!("{}/$metadata", self.service_url());
            let body = self.get(&url, "application/xml")?;
            self.metadata = Some(parse_metadata(&body));
        }
        self.metadata.as_ref().ok_or_else(|| Failure::Other("no $metadata".to_string()))
    }

    /// The server's clock now: its latest `Date` plus the time since, or
    /// this machine's clock before any answer carried one.
    pub fn server_now_ms(&self) -> i64 {
        self.http.server_now_ms()
    }

    /// One page of `entity_set` matching `filter`, in (modifiedtime,
    /// integrationKey) order, with the count of all matching rows.
    pub fn fetch_page(&mut self, entity_set: &str, filter: &str, top: usize, skip: usize) -> Result<Page, Failure> {
        let entity = self
            .metadata()?
            .sets
            .get(entity_set)
            .cloned()
            .ok_or_else(|| Failure::NotFound(format!("$metadata has no entity set {entity_set}")))?;
        // `$` stays literal in the option names (Olingo reads them raw); the
        // values are percent-encoded.
        let url = format!(
            "{}/{entity_set}?$filter={}&$orderby={}&$top={top}&$skip={skip}&$inlinecount=allpages",
            self.service_url(),
            percent_encode(filter),
            percent_encode("modifiedtime asc,integrationKey asc"),
        );
        let body = self.get(&url, "application/json")?;
        let reply: Value = serde_json::from_str(&body)
            .map_err(|e| Failure::Other(format!("{entity_set}: the answer is not JSON ({e}): {}", excerpt(&body))))?;
        // OData v2 JSON: {"d": {"results": [...], "__count": "N"}}; a bare
        // {"d": [...]} (OData v1 style) is accepted too.
        let (results, count) = match &reply["d"] {
            Value::Array(a) => (a, None),
            d => match &d["results"] {
                Value::Array(a) => (a, d.get("__count")),
                _ => return Err(Failure::Other(format!("{entity_set}: no d.results in {}", excerpt(&body)))),
            },
        };
        let count = count.and_then(|c| match c {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        });
        let rows = results
            .iter()
            .map(|e| to_row(&entity, e).map_err(|m| Failure::Other(format!("{entity_set}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { rows, count })
    }
}

/// The client's error as this module's [`Failure`] (what validation and
/// the task act on), with the messages the hand-written client had.
fn failure(e: HttpError) -> Failure {
    match e {
        HttpError::Token(inner) => match *inner {
            HttpError::Status { status: status @ (400 | 401 | 403), url, body, .. } => {
                Failure::TokenClient(format!("{url} answered HTTP {status}: {}", excerpt(&body)))
            }
            HttpError::Status { status, url, body, .. } => {
                Failure::TokenUnavailable(format!("{url} answered HTTP {status}: {}", excerpt(&body)))
            }
            HttpError::Transport { url, message, .. } | HttpError::Invalid { url, message } => {
                Failure::TokenUnavailable(format!("{url}: {message}"))
            }
            HttpError::Token(inner) => Failure::TokenUnavailable(inner.message()),
        },
        HttpError::Status { status: status @ (401 | 403), body, .. } => {
            Failure::Auth(format!("HTTP {status}: {}", excerpt(&body)))
        }
        HttpError::Status { status: 404, url, body, .. } => {
            Failure::NotFound(format!("HTTP 404 for {url}: {}", excerpt(&body)))
        }
        HttpError::Status { status: status @ (408 | 429 | 500..=599), body, .. } => {
            Failure::Transient(format!("HTTP {status}: {}", excerpt(&body)))
        }
        HttpError::Status { status, url, body, .. } => {
            Failure::Other(format!("HTTP {status} for {url}: {}", excerpt(&body)))
        }
        HttpError::Transport { message, transient: true, .. } => Failure::Transient(message),
        HttpError::Transport { message, .. } | HttpError::Invalid { message, .. } => Failure::Other(message),
    }
}

/// The start of a body for an error message.
fn excerpt(body: &str) -> String {
    cut(body, 300)
}

/// The `$filter` of a scan after `after`, below `upper_ms`. A cursor without
/// an integrationKey (an offset written by jdbc mode) reads its whole
/// timestamp again; [`after_cursor`] then drops what it already emitted.
pub fn delta_filter(after: Option<&Cursor>, upper_ms: i64) -> String {
    let upper = format!("modifiedtime lt datetime'{}'", datetime_literal(upper_ms));
    let Some(c) = after else {
        return upper;
    };
    let x = datetime_literal(parse_ts(&c.ts).unwrap_or(0));
    match &c.key {
        Some(k) => format!(
            "((modifiedtime gt datetime'{x}') or (modifiedtime eq datetime'{x}' and integrationKey gt '{}')) and {upper}",
            k.replace('\'', "''")
        ),
        None => format!("modifiedtime ge datetime'{x}' and {upper}"),
    }
}

/// Whether a row comes after `after`. With an integrationKey the server's
/// filter already guarantees it; with a jdbc-mode cursor (no key) rows of the
/// cursor's own timestamp are compared by PK, as jdbc mode ordered them.
pub fn after_cursor(row: &Cursor, after: Option<&Cursor>) -> bool {
    match after {
        Some(c) if c.key.is_none() => (row.ts.as_str(), row.pk) > (c.ts.as_str(), c.pk),
        _ => true,
    }
}

/// An entity of the JSON answer → the row jdbc mode would have read.
fn to_row(entity: &EntityType, value: &Value) -> Result<ChangeRow, String> {
    let Value::Object(map) = value else {
        return Err(format!("an entity is not an object: {}", excerpt(&value.to_string())));
    };
    let key = match map.get("integrationKey") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err("an entity has no integrationKey: model it in the integration object".to_string()),
    };
    let modified_ms = map
        .get("modifiedtime")
        .and_then(parse_odata_date)
        .ok_or_else(|| format!("entity {key}: no modifiedtime (/Date(ms)/): model it in the integration object"))?;
    let pk = map
        .get("pk")
        .and_then(|v| match v {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        })
        .ok_or_else(|| format!("entity {key}: no pk: model it in the integration object"))?;
    let created_ts = map.get("creationtime").and_then(parse_odata_date).map(format_ts);
    let mut doc = Map::new();
    doc.insert("pk".to_string(), Value::from(pk));
    for (name, v) in map {
        if matches!(name.as_str(), "__metadata" | "integrationKey" | "pk" | "creationtime" | "modifiedtime") {
            continue;
        }
        let converted = match v {
            // A navigation property: deferred (not expanded) is left out; an
            // expanded reference becomes its PK, as jdbc mode writes references.
            Value::Object(nested) => match nested.get("pk") {
                Some(Value::String(s)) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
                Some(Value::Number(n)) => Value::Number(n.clone()),
                _ => continue,
            },
            Value::String(s) => match entity.properties.get(name).map(String::as_str) {
                // Numbers OData v2 writes as strings: read back the way jdbc
                // mode reads PostgreSQL's JSON (integers stay integers).
                Some("Edm.Int64" | "Edm.Decimal" | "Edm.Double" | "Edm.Single") => {
                    match serde_json::from_str::<Value>(s) {
                        Ok(n @ Value::Number(_)) => n,
                        _ => v.clone(),
                    }
                }
                Some("Edm.DateTime") => match parse_odata_date(v) {
                    Some(ms) => Value::String(format_json_ts(ms)),
                    None => v.clone(),
                },
                _ => v.clone(),
            },
            _ => v.clone(),
        };
        doc.insert(format!("p_{}", name.to_ascii_lowercase()), converted);
    }
    Ok(ChangeRow { cursor: Cursor { ts: format_ts(modified_ms), pk, key: Some(key) }, created_ts, modified_ms, doc })
}

/// `/Date(1741003200000)/` (optionally with an offset, `/Date(…+0060)/`,
/// which OData v2 only writes for DateTimeOffset: the ms are UTC anyway).
pub fn parse_odata_date(v: &Value) -> Option<i64> {
    let s = v.as_str()?.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let digits_end = s.char_indices().skip(1).find(|(_, c)| *c == '+' || *c == '-').map(|(i, _)| i).unwrap_or(s.len());
    s[..digits_end].parse().ok()
}

/// Epoch milliseconds as a UTC date-time (chrono covers ±262,000 years;
/// beyond, the epoch).
fn utc(ms: i64) -> NaiveDateTime {
    DateTime::from_timestamp_millis(ms).unwrap_or_default().naive_utc()
}

/// The offsets' and values' format, as jdbc mode writes it: `…T10:00:00.123000`.
pub fn format_ts(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3f000").to_string()
}

/// An attribute timestamp as PostgreSQL's JSON writes it (jdbc mode):
/// no fraction when whole seconds, else without trailing zeros.
fn format_json_ts(ms: i64) -> String {
    let t = utc(ms);
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    match t.nanosecond() / 1_000_000 {
        0 => base,
        milli => format!("{base}.{}", format!("{milli:03}").trim_end_matches('0')),
    }
}

/// An OData v2 `datetime'…'` literal: `2025-03-03T10:00:00.123`.
fn datetime_literal(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` → epoch ms (sub-millisecond digits dropped).
pub fn parse_ts(ts: &str) -> Option<i64> {
    let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// Percent-encoding of a query value (everything but RFC 3986 unreserved).
fn percent_encode(s: &str) -> String {
    http::encode(s)
}

#[cfg(test)]
fn base64(s: &str) -> String {
    http::base64(s)
}

#[cfg(test)]
trait HttpDate {
    fn parse_http_date(&self) -> Option<i64>;
}

#[cfg(test)]
impl HttpDate for str {
    fn parse_http_date(&self) -> Option<i64> {
        http::parse_http_date(self)
    }
}

/// The `EntityType`s (with their `Property` and `NavigationProperty`
/// children) and `EntitySet`s of `$metadata`, by local name (tags may carry
/// a namespace prefix, `edm:EntityType`). A document that stops being
/// well-formed is read up to there.
pub fn parse_metadata(xml: &str) -> Metadata {
    let mut types: HashMap<String, EntityType> = HashMap::new();
    let mut sets: Vec<(String, String)> = Vec::new();
    let mut current: Option<EntityType> = None;
    let mut reader = quick_xml::Reader::from_str(xml);
    // Lenient as EDMX readers are: a mismatched end tag does not end the scan.
    reader.config_mut().check_end_names = false;
    loop {
        let (tag, empty) = match reader.read_event() {
            Ok(Event::Start(tag)) => (tag, false),
            Ok(Event::Empty(tag)) => (tag, true),
            Ok(Event::End(end)) => {
                if end.local_name().as_ref() == b"EntityType" {
                    if let Some(t) = current.take() {
                        types.insert(t.name.clone(), t);
                    }
                }
                continue;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => continue,
        };
        match tag.local_name().as_ref() {
            b"EntityType" => {
                current = Some(EntityType { name: attribute(&tag, "Name").unwrap_or_default(), ..Default::default() });
                if empty {
                    if let Some(t) = current.take() {
                        types.insert(t.name.clone(), t);
                    }
                }
            }
            b"Property" => {
                if let (Some(t), Some(n), Some(ty)) =
                    (current.as_mut(), attribute(&tag, "Name"), attribute(&tag, "Type"))
                {
                    t.properties.insert(n, ty);
                }
            }
            b"NavigationProperty" => {
                if let (Some(t), Some(n)) = (current.as_mut(), attribute(&tag, "Name")) {
                    t.properties.insert(n, "Navigation".to_string());
                }
            }
            b"EntitySet" => {
                if let (Some(n), Some(ty)) = (attribute(&tag, "Name"), attribute(&tag, "EntityType")) {
                    sets.push((n, ty));
                }
            }
            _ => {}
        }
    }
    let sets = sets
        .into_iter()
        .filter_map(|(set, qualified)| {
            let short = qualified.rsplit('.').next().unwrap_or(&qualified);
            types.get(short).map(|t| (set, t.clone()))
        })
        .collect();
    Metadata { sets }
}

/// Attribute `name` of a tag, XML entities decoded.
fn attribute(tag: &BytesStart<'_>, name: &str) -> Option<String> {
    let a = tag.try_get_attribute(name).ok()??;
    Some(a.unescape_value().ok()?.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_api::config::typed::Secret;

    #[test]
    fn dates_round_trip() {
        let ms = 1_741_003_200_123; // 2025-03-03T12:00:00.123Z
        assert_eq!(format_ts(ms), "2025-03-03T12:00:00.123000");
        assert_eq!(parse_ts("2025-03-03T12:00:00.123000"), Some(ms));
        assert_eq!(parse_ts("2025-03-03T12:00:00"), Some(ms - 123));
        assert_eq!(format_json_ts(ms), "2025-03-03T12:00:00.123");
        assert_eq!(format_json_ts(ms - 123 + 500), "2025-03-03T12:00:00.5");
        assert_eq!(format_json_ts(ms - 123), "2025-03-03T12:00:00");
        assert_eq!(datetime_literal(ms), "2025-03-03T12:00:00.123");
        assert_eq!(parse_odata_date(&Value::from("/Date(1741003200123)/")), Some(ms));
        assert_eq!(parse_odata_date(&Value::from("/Date(1741003200123+0060)/")), Some(ms));
        assert_eq!(parse_odata_date(&Value::from("/Date(-5)/")), Some(-5));
        assert_eq!("Mon, 03 Mar 2025 12:00:00 GMT".parse_http_date(), Some(ms - 123));
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000");
        assert_eq!(format_ts(951_782_400_000), "2000-02-29T00:00:00.000000");
    }

    #[test]
    fn filters_spell_out_the_keyset() {
        let upper = parse_ts("2025-03-03T12:00:00").unwrap();
        assert_eq!(delta_filter(None, upper), "modifiedtime lt datetime'2025-03-03T12:00:00.000'");
        let c = Cursor { ts: "2025-03-03T10:00:00.250000".into(), pk: 7, key: Some("O'1".into()) };
        assert_eq!(
            delta_filter(Some(&c), upper),
            "((modifiedtime gt datetime'2025-03-03T10:00:00.250') or (modifiedtime eq datetime'2025-03-03T10:00:00.250' \
             and integrationKey gt 'O''1')) and modifiedtime lt datetime'2025-03-03T12:00:00.000'"
        );
        let jdbc = Cursor { ts: "2025-03-03T10:00:00.000000".into(), pk: 7, key: None };
        assert!(delta_filter(Some(&jdbc), upper).starts_with("modifiedtime ge datetime'2025-03-03T10:00:00.000'"));
        let row = |pk| Cursor { ts: "2025-03-03T10:00:00.000000".into(), pk, key: Some("k".into()) };
        assert!(!after_cursor(&row(7), Some(&jdbc)) && after_cursor(&row(8), Some(&jdbc)));
    }

    #[test]
    fn metadata_and_entities() {
        let xml = r#"<?xml version="1.0"?><edmx:Edmx Version="1.0"><edmx:DataServices><Schema Namespace="HybrisCommerceOData">
            <EntityType Name="Order"><Key><PropertyRef Name="integrationKey"/></Key>
              <Property Name="integrationKey" Type="Edm.String" Nullable="false"/>
              <Property Name="pk" Type="Edm.Int64"/><Property Name="code" Type="Edm.String"/>
              <Property Name="totalprice" Type="Edm.Decimal"/><Property Name="date" Type="Edm.DateTime"/>
              <Property Name="modifiedtime" Type="Edm.DateTime"/><Property Name="creationtime" Type="Edm.DateTime"/>
              <NavigationProperty Name="entries" Relationship="x" FromRole="a" ToRole="b"/>
            </EntityType>
            <EntityContainer Name="Container" m:IsDefaultEntityContainer="true">
              <EntitySet Name="Orders" EntityType="HybrisCommerceOData.Order"/></EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"#;
        let m = parse_metadata(xml);
        let order = &m.sets["Orders"];
        assert_eq!(order.properties["totalprice"], "Edm.Decimal");
        assert_eq!(order.properties["entries"], "Navigation");
        let entity: Value = serde_json::json!({
            "__metadata": {"type": "HybrisCommerceOData.Order"},
            "integrationKey": "00001000", "pk": "8796093612055", "code": "00001000",
            "totalprice": "12.50000000", "date": "/Date(1741003200500)/", "count": "3",
            "modifiedtime": "/Date(1741003200123)/", "creationtime": "/Date(1741003200123)/",
            "entries": {"__deferred": {"uri": "x"}}, "user": {"pk": "42", "uid": "a"}
        });
        let row = to_row(order, &entity).unwrap();
        assert_eq!(
            row.cursor,
            Cursor { ts: "2025-03-03T12:00:00.123000".into(), pk: 8796093612055, key: Some("00001000".into()) }
        );
        assert_eq!(row.created_ts.as_deref(), Some("2025-03-03T12:00:00.123000"));
        assert_eq!(row.doc["p_code"], "00001000", "a string stays a string");
        assert_eq!(row.doc["p_totalprice"], 12.5);
        assert_eq!(row.doc["p_date"], "2025-03-03T12:00:00.5");
        assert_eq!(row.doc["p_count"], "3", "not in $metadata: as written");
        assert_eq!(row.doc["p_user"], 42);
        assert!(!row.doc.contains_key("p_entries") && !row.doc.contains_key("p___metadata"));
    }

    #[test]
    fn basic_auth_sends_the_password_itself_not_its_hidden_form() {
        let settings = ODataSettings {
            url: "http://127.0.0.1:1/odata2webservices".into(),
            integration_object: "Sluice".into(),
            auth: ODataAuth::Basic { user: "integrationadmin".into(), password: Secret::new("nimda") },
            timeout: std::time::Duration::from_secs(1),
            keyset_paging: false,
        };
        let header = Client::new(&settings).authorization(false).unwrap();
        assert_eq!(header, format!("Basic {}", base64("integrationadmin:nimda")));
        assert!(!format!("{settings:?}").contains("nimda"));
    }

    #[test]
    fn base64_and_percent_encoding() {
        assert_eq!(base64("integrationadmin:nimda"), "aW50ZWdyYXRpb25hZG1pbjpuaW1kYQ==");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(percent_encode("a b'c/$"), "a%20b%27c%2F%24");
    }
}
