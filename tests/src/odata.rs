//! A fake of the SAP Commerce Integration API (OData v2), started in-process
//! on 127.0.0.1 with an ephemeral port, that reads the same PostgreSQL
//! Hybris-layout database as jdbc mode (connectors/hybris-source/fixtures).
//!
//! It follows the documented request and response shapes:
//! - `GET /odata2webservices/<IntegrationObject>/$metadata`: EDMX with one
//!   entity type per item type, keyed by `integrationKey`;
//! - `GET /odata2webservices/<IntegrationObject>/<EntitySet>` with `$filter`
//!   (comparisons `eq ne gt ge lt le` on properties, `datetime'…'` and string
//!   literals, `and`, `or`, parentheses), `$orderby`, `$top`, `$skip`,
//!   `$inlinecount=allpages`: `{"d": {"results": [...], "__count": "N"}}`,
//!   `Edm.Int64`/`Edm.Decimal` as strings, `Edm.DateTime` as `/Date(ms)/`;
//! - Basic auth, or a bearer token from
//!   `POST /authorizationserver/oauth/token` (client credentials);
//! - errors as OData error bodies: 401 (bad credentials or an expired token),
//!   404 (unknown integration object or entity set), 400 (a `$filter` it
//!   cannot read), and on demand a number of 500s or slow answers.
//!
//! The integration object `SluiceStream` has the entity sets `Orders`,
//! `Customers` and `Products`. Their properties are the item's columns:
//! `pk`, `creationtime`, `modifiedtime` and every `p_` attribute without the
//! prefix; references are exposed as their PK. Timestamps are served at
//! millisecond precision, as Hybris (java.util.Date) stores them, and the
//! filter compares the served values.

use std::{
    collections::HashMap,
    io::BufReader,
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

use crate::http_fake::{parse_pairs, read_request, write_response, Request, Response};

pub const INTEGRATION_OBJECT: &str = "SluiceStream";
pub const USER: &str = "integrationadmin";
pub const PASSWORD: &str = "nimda-1234";
pub const CLIENT_ID: &str = "sluice-client";
pub const CLIENT_SECRET: &str = "sluice-secret";
const NAMESPACE: &str = "HybrisCommerceOData";

/// One entity set: item type, deployment table, business key (the
/// integrationKey), composed type and an extra predicate.
struct EntitySet {
    name: &'static str,
    type_name: &'static str,
    table: &'static str,
    key: &'static str,
    typecode: &'static str,
    extra: &'static str,
}

const SETS: &[EntitySet] = &[
    // Order snapshots (p_versionid) are not orders a client sees.
    EntitySet {
        name: "Orders",
        type_name: "Order",
        table: "orders",
        key: "p_code",
        typecode: "Order",
        extra: "t.p_versionid IS NULL",
    },
    EntitySet {
        name: "Customers",
        type_name: "Customer",
        table: "users",
        key: "p_uid",
        typecode: "Customer",
        extra: "true",
    },
    EntitySet {
        name: "Products",
        type_name: "Product",
        table: "products",
        key: "p_code",
        typecode: "Product",
        extra: "true",
    },
];

/// The columns the integration object exposes: the item's `p_` attributes
/// and `pk`, `createdts`, `modifiedts`; not the persistence columns (`hjmpts`,
/// `typepkstring`, `aclts`, …) nor system columns without the prefix.
fn exposed(column: &str) -> bool {
    column.starts_with("p_") || matches!(column, "pk" | "createdts" | "modifiedts")
}

/// A request the server answered, for assertions.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// Decoded query options (`$filter` → `modifiedtime gt …`).
    pub query: HashMap<String, String>,
    pub status: u16,
}

struct State {
    db: Mutex<postgres::Client>,
    tokens: Mutex<HashMap<String, Instant>>,
    token_lifetime: Mutex<Duration>,
    tokens_issued: AtomicUsize,
    failures: AtomicUsize,
    slow: Mutex<(usize, Duration)>,
    log: Mutex<Vec<Logged>>,
}

/// The running server; stops when dropped.
pub struct ODataServer {
    /// `http://127.0.0.1:<port>/odata2webservices`: `hybris.odata.url`.
    pub url: String,
    /// `hybris.odata.oauth.token.url`.
    pub token_url: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl ODataServer {
    /// Serves the Hybris database at `db_url` (a `postgres://` URL).
    pub fn start(db_url: &str) -> ODataServer {
        let db = postgres::Client::connect(db_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("the OData fake cannot connect to {db_url}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OData fake to 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(State {
            db: Mutex::new(db),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            tokens_issued: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
            slow: Mutex::new((0, Duration::ZERO)),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = s.clone();
                    thread::spawn(move || serve(&s, stream, port));
                }
            }
        });
        ODataServer {
            url: format!("http://127.0.0.1:{port}/odata2webservices"),
            token_url: format!("http://127.0.0.1:{port}/authorizationserver/oauth/token"),
            state,
            stop,
            port,
        }
    }

    /// The next `n` entity-set reads answer 500.
    pub fn fail_next(&self, n: usize) {
        self.state.failures.store(n, Ordering::SeqCst);
    }

    /// The next `n` entity-set reads wait `delay` before answering.
    pub fn slow_next(&self, n: usize, delay: Duration) {
        *self.state.slow.lock().unwrap() = (n, delay);
    }

    /// Every token issued so far stops working (as after its expiry).
    pub fn expire_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.state.token_lifetime.lock().unwrap() = lifetime;
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// The connector keys for this server with Basic auth.
    pub fn basic_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hybris.mode", "odata".into()),
            ("hybris.odata.url", self.url.clone()),
            ("hybris.odata.integration.object", INTEGRATION_OBJECT.into()),
            ("hybris.odata.user", USER.into()),
            ("hybris.odata.password", PASSWORD.into()),
        ]
    }

    /// The connector keys for this server with OAuth2 client credentials.
    pub fn oauth_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hybris.mode", "odata".into()),
            ("hybris.odata.url", self.url.clone()),
            ("hybris.odata.integration.object", INTEGRATION_OBJECT.into()),
            ("hybris.odata.auth", "oauth2".into()),
            ("hybris.odata.oauth.token.url", self.token_url.clone()),
            ("hybris.odata.oauth.client.id", CLIENT_ID.into()),
            ("hybris.odata.oauth.client.secret", CLIENT_SECRET.into()),
        ]
    }
}

impl Drop for ODataServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(state: &State, stream: TcpStream, port: u16) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    // One request per connection (Connection: close): simple and enough.
    let Some(request) = read_request(&mut reader) else { return };
    let response = route(state, &request, port);
    state.log.lock().unwrap().push(Logged {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        status: response.status,
    });
    let fixed = [
        ("Date", http_date(SystemTime::now())),
        ("DataServiceVersion", "2.0".to_string()),
        ("Connection", "close".to_string()),
    ];
    // The client may have given up (a slow answer): nothing to do then.
    let _ = write_response(&mut writer, &response, &fixed);
}

fn odata_error(status: u16, code: &str, message: &str) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: json!({"error": {"code": code, "message": {"lang": "en", "value": message}}}).to_string(),
        extra: Vec::new(),
    }
}

fn route(state: &State, request: &Request, port: u16) -> Response {
    if request.path == "/authorizationserver/oauth/token" {
        return token(state, request);
    }
    let Some(rest) = request.path.strip_prefix("/odata2webservices/") else {
        return odata_error(404, "not_found", "no such service");
    };
    let (object, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if !authorized(state, request) {
        let mut r = odata_error(401, "unauthorized", "Full authentication is required to access this resource");
        r.extra.push(("WWW-Authenticate", "Basic realm=\"integrationapi\"".into()));
        return r;
    }
    if object != INTEGRATION_OBJECT {
        return odata_error(404, "not_found", &format!("Integration object '{object}' not found"));
    }
    if request.method != "GET" {
        return odata_error(405, "method_not_allowed", "only reads are served");
    }
    let mut db = state.db.lock().unwrap();
    if resource == "$metadata" {
        return match metadata(&mut db) {
            Ok(xml) => Response { status: 200, content_type: "application/xml", body: xml, extra: Vec::new() },
            Err(e) => odata_error(500, "internal_error", &e),
        };
    }
    let Some(set) = SETS.iter().find(|s| s.name == resource) else {
        return odata_error(
            404,
            "not_found",
            &format!("Could not find an entity set or function import for '{resource}'."),
        );
    };
    drop(db);
    // Injected faults come after authentication and routing, like a backend
    // failing behind a healthy front end.
    let delay = {
        let mut slow = state.slow.lock().unwrap();
        if slow.0 > 0 {
            slow.0 -= 1;
            Some(slow.1)
        } else {
            None
        }
    };
    if let Some(d) = delay {
        thread::sleep(d);
    }
    if state.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return odata_error(500, "internal_error", "There was an internal error (injected)");
    }
    let mut db = state.db.lock().unwrap();
    match entities(&mut db, set, &request.query, port) {
        Ok(body) => Response { status: 200, content_type: "application/json", body, extra: Vec::new() },
        Err((status, message)) => odata_error(status, "invalid_query", &message),
    }
}

fn authorized(state: &State, request: &Request) -> bool {
    let Some(value) = request.headers.get("authorization") else { return false };
    if let Some(b64) = value.strip_prefix("Basic ") {
        return base64_decode(b64).is_some_and(|c| c == format!("{USER}:{PASSWORD}"));
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        return state.tokens.lock().unwrap().get(token).is_some_and(|expiry| Instant::now() < *expiry);
    }
    false
}

fn token(state: &State, request: &Request) -> Response {
    if request.method != "POST" {
        return odata_error(405, "method_not_allowed", "POST the client credentials");
    }
    let form = parse_pairs(&request.body);
    let from_header = request
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|c| c.split_once(':').map(|(a, b)| (a.to_string(), b.to_string())));
    let (id, secret) = from_header.unwrap_or_else(|| {
        (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned().unwrap_or_default())
    });
    let oauth = |status, body: Value| Response {
        status,
        content_type: "application/json",
        body: body.to_string(),
        extra: vec![("Cache-Control", "no-store".into())],
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth(400, json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}));
    }
    if id != CLIENT_ID || secret != CLIENT_SECRET {
        return oauth(401, json!({"error": "invalid_client", "error_description": "Bad client credentials"}));
    }
    let n = state.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let token = format!("tok-{n}-{nanos:x}");
    let lifetime = *state.token_lifetime.lock().unwrap();
    state.tokens.lock().unwrap().insert(token.clone(), Instant::now() + lifetime);
    oauth(
        200,
        json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs(), "scope": "basic openid"}),
    )
}

/// Columns of a table: (name, PostgreSQL type), in table order.
fn columns(db: &mut postgres::Client, table: &str) -> Result<Vec<(String, String)>, String> {
    let rows = db
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).filter(|(c, _): &(String, String)| exposed(c)).collect())
}

/// Column → (property name, EDM type).
fn property(column: &str, pg_type: &str) -> (String, &'static str) {
    let name = match column {
        "createdts" => "creationtime".to_string(),
        "modifiedts" => "modifiedtime".to_string(),
        c => c.strip_prefix("p_").unwrap_or(c).to_string(),
    };
    let edm = match pg_type {
        "bigint" => "Edm.Int64",
        "integer" => "Edm.Int32",
        "smallint" => "Edm.Int16",
        "numeric" => "Edm.Decimal",
        "double precision" | "real" => "Edm.Double",
        "boolean" => "Edm.Boolean",
        t if t.starts_with("timestamp") => "Edm.DateTime",
        _ => "Edm.String",
    };
    (name, edm)
}

fn metadata(db: &mut postgres::Client) -> Result<String, String> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\n\
         <edmx:Edmx Version=\"1.0\" xmlns:edmx=\"http://schemas.microsoft.com/ado/2007/06/edmx\">\n\
         <edmx:DataServices m:DataServiceVersion=\"2.0\" xmlns:m=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\">\n",
    );
    xml.push_str(&format!(
        "<Schema Namespace=\"{NAMESPACE}\" xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\" xmlns:s=\"http://schemas.sap.com/commerce\">\n"
    ));
    for set in SETS {
        xml.push_str(&format!(
            "<EntityType Name=\"{}\"><Key><PropertyRef Name=\"integrationKey\"/></Key>\n\
             <Property Name=\"integrationKey\" Type=\"Edm.String\" Nullable=\"false\" s:Alias=\"{}\"/>\n",
            set.type_name,
            property(set.key, "").0
        ));
        for (column, pg_type) in columns(db, set.table)? {
            let (name, edm) = property(&column, &pg_type);
            let unique = if column == set.key { " s:IsUnique=\"true\"" } else { "" };
            xml.push_str(&format!("<Property Name=\"{name}\" Type=\"{edm}\" Nullable=\"true\"{unique}/>\n"));
        }
        xml.push_str("</EntityType>\n");
    }
    xml.push_str("<EntityContainer Name=\"Container\" m:IsDefaultEntityContainer=\"true\">\n");
    for set in SETS {
        xml.push_str(&format!("<EntitySet Name=\"{}\" EntityType=\"{NAMESPACE}.{}\"/>\n", set.name, set.type_name));
    }
    xml.push_str("</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n");
    Ok(xml)
}

/// The SQL of a property in filters and orderings: the values as served
/// (timestamps at millisecond precision; strings compared by code point).
fn property_sql(set: &EntitySet, cols: &[(String, String)], name: &str) -> Option<String> {
    match name {
        "integrationKey" => Some(format!("(t.{})::text COLLATE \"C\"", set.key)),
        "modifiedtime" => Some("date_trunc('milliseconds', t.modifiedts)".into()),
        "creationtime" => Some("date_trunc('milliseconds', t.createdts)".into()),
        _ => cols.iter().find(|(c, t)| property(c, t).0 == name).map(|(c, t)| {
            if t.starts_with("timestamp") {
                format!("date_trunc('milliseconds', t.{c})")
            } else if t == "character varying" || t == "text" {
                format!("(t.{c})::text COLLATE \"C\"")
            } else {
                format!("t.{c}")
            }
        }),
    }
}

fn date_json(expr: &str) -> String {
    format!("'/Date(' || (extract(epoch FROM date_trunc('milliseconds', {expr})) * 1000)::int8 || ')/'")
}

fn entities(
    db: &mut postgres::Client,
    set: &EntitySet,
    query: &HashMap<String, String>,
    port: u16,
) -> Result<String, (u16, String)> {
    let cols = columns(db, set.table).map_err(|e| (500, e))?;
    let mut params: Vec<String> = vec![set.typecode.to_string()];
    let filter = match query.get("$filter") {
        Some(f) => {
            Filter::parse(f, set, &cols, &mut params).map_err(|e| (400, format!("Invalid $filter '{f}': {e}")))?
        }
        None => "true".to_string(),
    };
    let mut order = Vec::new();
    for item in query.get("$orderby").map(String::as_str).unwrap_or("").split(',').filter(|s| !s.trim().is_empty()) {
        let mut words = item.split_whitespace();
        let name = words.next().unwrap_or("");
        let dir = match words.next() {
            None | Some("asc") => "ASC",
            Some("desc") => "DESC",
            Some(other) => return Err((400, format!("Invalid $orderby direction '{other}'"))),
        };
        let sql = property_sql(set, &cols, name).ok_or((400, format!("Invalid $orderby property '{name}'")))?;
        order.push(format!("{sql} {dir}"));
    }
    order.push("t.pk".into());
    let number = |key: &str, default: usize| -> Result<usize, (u16, String)> {
        query.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| (400, format!("Invalid {key} '{v}'"))))
    };
    let (top, skip) = (number("$top", 1000)?.min(1000), number("$skip", 0)?);

    let mut select = vec![
        format!("(t.{})::text AS \"integrationKey\"", set.key),
        "t.pk::text AS \"pk\"".to_string(),
        format!("{} AS \"creationtime\"", date_json("t.createdts")),
        format!("{} AS \"modifiedtime\"", date_json("t.modifiedts")),
    ];
    for (column, pg_type) in &cols {
        if matches!(column.as_str(), "pk" | "createdts" | "modifiedts") {
            continue;
        }
        let (name, edm) = property(column, pg_type);
        let expr = match edm {
            "Edm.Int64" | "Edm.Decimal" => format!("(t.{column})::text"),
            "Edm.DateTime" => date_json(&format!("t.{column}")),
            _ => format!("t.{column}"),
        };
        select.push(format!("{expr} AS \"{name}\""));
    }
    let from = format!(
        "FROM {table} t JOIN composedtypes ct ON ct.pk = t.typepkstring \
         WHERE ct.internalcode = $1::text AND ({extra}) AND ({filter})",
        table = set.table,
        extra = set.extra
    );
    let sql = format!(
        "SELECT row_to_json(x)::text FROM (SELECT {} {from} ORDER BY {} LIMIT {top} OFFSET {skip}) x",
        select.join(", "),
        order.join(", ")
    );
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)).collect();
    let rows = db.query(&sql, &refs).map_err(|e| (400, format!("{e}")))?;
    let base = format!("http://127.0.0.1:{port}/odata2webservices/{INTEGRATION_OBJECT}/{}", set.name);
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.get(0);
        let mut entity: serde_json::Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| (500, e.to_string()))?;
        let key = entity["integrationKey"].as_str().unwrap_or("").replace('\'', "''");
        let uri = format!("{base}('{key}')");
        entity.insert(
            "__metadata".into(),
            json!({"id": uri, "uri": uri, "type": format!("{NAMESPACE}.{}", set.type_name)}),
        );
        results.push(Value::Object(entity));
    }
    let mut d = json!({ "results": results });
    if query.get("$inlinecount").map(String::as_str) == Some("allpages") {
        let count: i64 =
            db.query_one(&format!("SELECT count(*) {from}"), &refs).map_err(|e| (400, format!("{e}")))?.get(0);
        d["__count"] = Value::String(count.to_string());
    }
    Ok(json!({ "d": d }).to_string())
}

/// `$filter` → SQL: comparisons joined by and/or, with parentheses.
struct Filter<'a> {
    tokens: Vec<String>,
    at: usize,
    set: &'a EntitySet,
    cols: &'a [(String, String)],
}

impl<'a> Filter<'a> {
    fn parse(
        text: &str,
        set: &'a EntitySet,
        cols: &'a [(String, String)],
        params: &mut Vec<String>,
    ) -> Result<String, String> {
        let mut f = Filter { tokens: tokenize(text)?, at: 0, set, cols };
        let sql = f.or(params)?;
        match f.tokens.get(f.at) {
            None => Ok(sql),
            Some(t) => Err(format!("unexpected '{t}'")),
        }
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn or(&mut self, params: &mut Vec<String>) -> Result<String, String> {
        let mut parts = vec![self.and(params)?];
        while self.peek() == Some("or") {
            self.at += 1;
            parts.push(self.and(params)?);
        }
        Ok(format!("({})", parts.join(" OR ")))
    }

    fn and(&mut self, params: &mut Vec<String>) -> Result<String, String> {
        let mut parts = vec![self.primary(params)?];
        while self.peek() == Some("and") {
            self.at += 1;
            parts.push(self.primary(params)?);
        }
        Ok(format!("({})", parts.join(" AND ")))
    }

    fn primary(&mut self, params: &mut Vec<String>) -> Result<String, String> {
        if self.peek() == Some("(") {
            self.at += 1;
            let inner = self.or(params)?;
            return match self.next().as_deref() {
                Some(")") => Ok(inner),
                _ => Err("missing ')'".into()),
            };
        }
        let name = self.next().ok_or("expected a property")?;
        let column = property_sql(self.set, self.cols, &name).ok_or(format!("unknown property '{name}'"))?;
        let op = match self.next().as_deref() {
            Some("eq") => "=",
            Some("ne") => "<>",
            Some("gt") => ">",
            Some("ge") => ">=",
            Some("lt") => "<",
            Some("le") => "<=",
            other => return Err(format!("unsupported operator {other:?}")),
        };
        let literal = self.next().ok_or("expected a literal")?;
        let value = if let Some(dt) = literal.strip_prefix("datetime'").and_then(|l| l.strip_suffix('\'')) {
            params.push(dt.to_string());
            format!("CAST(${}::text AS timestamp)", params.len())
        } else if let Some(s) = literal.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
            params.push(s.replace("''", "'"));
            format!("${}::text", params.len())
        } else if literal.parse::<f64>().is_ok() {
            params.push(literal.trim_end_matches(['L', 'M', 'm', 'd']).to_string());
            format!("CAST(${}::text AS numeric)", params.len())
        } else {
            return Err(format!("unsupported literal {literal}"));
        };
        Ok(format!("{column} {op} {value}"))
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            tokens.push(c.to_string());
            i += 1;
        } else {
            // A word, possibly with a quoted part (datetime'…', '…' with '' escapes).
            let mut token = String::new();
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '(' && chars[i] != ')' {
                if chars[i] == '\'' {
                    token.push('\'');
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err("unterminated string".into()),
                            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                                token.push_str("''");
                                i += 2;
                            }
                            Some('\'') => {
                                token.push('\'');
                                i += 1;
                                break;
                            }
                            Some(&ch) => {
                                token.push(ch);
                                i += 1;
                            }
                        }
                    }
                } else {
                    token.push(chars[i]);
                    i += 1;
                }
            }
            tokens.push(token);
        }
    }
    Ok(tokens)
}

fn base64_decode(s: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// IMF-fixdate (the `Date` header).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 };
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
