//! A contract-faithful fake of the Salesforce REST API endpoints
//! `salesforce-sink` uses, in-process on 127.0.0.1 with an ephemeral port.
//! No Salesforce server runs locally (../shared/reference/local-services.md
//! §3); this fake follows Salesforce's documented shapes, and refuses what
//! Salesforce refuses (more than 200 records, an External ID twice in one
//! collection, unknown fields, expired sessions, the daily allocation).
//!
//! One sObject (`object`) with an External ID field (`external_id`) and a
//! fixed set of fields; records are kept by `Id` and by External ID.
//! Injections: 503s, slow answers, held answers (a request waits until
//! released, for kill tests), per-record errors by External ID (e.g.
//! `UNABLE_TO_LOCK_ROW` n times), a validation rule, the daily
//! `REQUEST_LIMIT_EXCEEDED` for a while, token expiry.

use std::{
    collections::{HashMap, HashSet},
    io::BufReader,
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Map, Value};

use crate::http_fake::{parse_pairs, read_request, write_response, Request, Response};

pub const CLIENT_ID: &str = "3MVG9-sluice-test-consumer-key";
pub const CLIENT_SECRET: &str = "sluice-test-consumer-secret";
pub const USERNAME: &str = "integration@sluice.test";

/// One request the fake answered (data calls only, not tokens).
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// External IDs (or Ids) of the request's records, in order.
    pub keys: Vec<String>,
    pub status: u16,
}

/// A per-record error to answer for one External ID, `times` times.
struct Injected {
    code: String,
    message: String,
    times: usize,
}

/// A validation rule: records whose `field` equals `value` are refused.
struct Rule {
    field: String,
    value: Value,
    message: String,
}

#[derive(Default)]
struct Store {
    /// Id → fields (the External ID among them).
    by_id: HashMap<String, Map<String, Value>>,
    /// External ID → Id.
    by_ext: HashMap<String, String>,
    next_id: u64,
}

struct State {
    object: String,
    external_id: String,
    fields: HashSet<String>,
    public_key: Mutex<Option<Vec<u8>>>,
    store: Mutex<Store>,
    tokens: Mutex<HashMap<String, Instant>>,
    token_lifetime: Mutex<Duration>,
    tokens_issued: Mutex<usize>,
    failures: Mutex<usize>,
    slow: Mutex<(usize, Duration)>,
    latency: Mutex<Duration>,
    injected: Mutex<HashMap<String, Injected>>,
    rules: Mutex<Vec<Rule>>,
    api_used: Mutex<u64>,
    api_max: Mutex<u64>,
    limit_until: Mutex<Option<Instant>>,
    hold: (Mutex<bool>, Condvar),
    /// Data requests answered before every later one is held (`hold_after`).
    hold_after: Mutex<Option<usize>>,
    data_requests: AtomicUsize,
    held: Mutex<Vec<Vec<Value>>>,
    log: Mutex<Vec<Logged>>,
    jobs: Mutex<HashMap<String, Job>>,
    job_polls: Mutex<usize>,
    /// Bulk batches used in the rolling 24 hours, and the allocation.
    bulk_batches: Mutex<(u64, u64)>,
    /// ("collection" | "job-created" | "job-closed" | "job-complete", id), in order.
    events: Mutex<Vec<(&'static str, String)>>,
}

/// A Bulk API 2.0 ingest job.
struct Job {
    state: &'static str,
    csv: String,
    polls_left: usize,
    keys: Vec<String>,
    /// (row as uploaded, error) of failed rows once complete.
    failed: Vec<(Vec<String>, String)>,
    header: Vec<String>,
    processed: usize,
}

/// What the fake knows of one Bulk job, for assertions.
#[derive(Debug, Clone)]
pub struct BulkJob {
    pub id: String,
    pub state: String,
    /// The External IDs of its rows, in upload order.
    pub keys: Vec<String>,
}

/// The running fake; stops when dropped.
pub struct SalesforceFake {
    /// `salesforce.instance` (login, token and instance URL in one).
    pub url: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl SalesforceFake {
    /// `object` with External ID field `external_id` and the other `fields`
    /// it has (anything else in a request is an unknown field).
    pub fn start(object: &str, external_id: &str, fields: &[&str]) -> SalesforceFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Salesforce fake to 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let mut known: HashSet<String> = fields.iter().map(|f| f.to_string()).collect();
        known.insert(external_id.to_string());
        known.insert("Id".to_string());
        let state = Arc::new(State {
            object: object.to_string(),
            external_id: external_id.to_string(),
            fields: known,
            public_key: Mutex::new(None),
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime: Mutex::new(Duration::from_secs(7200)),
            tokens_issued: Mutex::new(0),
            failures: Mutex::new(0),
            slow: Mutex::new((0, Duration::ZERO)),
            latency: Mutex::new(Duration::ZERO),
            injected: Mutex::new(HashMap::new()),
            rules: Mutex::new(Vec::new()),
            api_used: Mutex::new(0),
            api_max: Mutex::new(1_000_000),
            limit_until: Mutex::new(None),
            hold: (Mutex::new(false), Condvar::new()),
            hold_after: Mutex::new(None),
            data_requests: AtomicUsize::new(0),
            held: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            jobs: Mutex::new(HashMap::new()),
            job_polls: Mutex::new(3),
            bulk_batches: Mutex::new((0, 15_000)),
            events: Mutex::new(Vec::new()),
        });
        Self::serve_on(listener, port, state)
    }

    /// The same, also taking the JWT bearer flow for [`USERNAME`], signed
    /// by the RSA key whose public key (DER `RSAPublicKey`) is `public_key`.
    pub fn start_with_jwt(object: &str, external_id: &str, fields: &[&str], public_key: Vec<u8>) -> SalesforceFake {
        let fake = Self::start(object, external_id, fields);
        *fake.state.public_key.lock().unwrap() = Some(public_key);
        fake
    }

    fn serve_on(listener: TcpListener, port: u16, state: Arc<State>) -> SalesforceFake {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = Arc::clone(&s);
                    thread::spawn(move || serve(&s, stream, port));
                }
            }
        });
        SalesforceFake { url: format!("http://127.0.0.1:{port}"), state, stop, port }
    }

    /// The connector keys for this fake, client credentials, upsert by
    /// External ID.
    pub fn config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("salesforce.object", self.state.object.clone()),
            ("salesforce.instance", self.url.clone()),
            ("salesforce.grant.type", "CLIENT_CREDENTIALS".into()),
            ("salesforce.consumer.key", CLIENT_ID.into()),
            ("salesforce.consumer.secret", CLIENT_SECRET.into()),
            ("salesforce.sink.object.operation", "upsert".into()),
            ("override.event.type", "true".into()),
            ("salesforce.use.custom.id.field", "true".into()),
            ("salesforce.custom.id.field.name", self.state.external_id.clone()),
        ]
    }

    /// The record with this External ID, as stored (with `Id`).
    pub fn get(&self, external_id: &str) -> Option<Map<String, Value>> {
        let store = self.state.store.lock().unwrap();
        let id = store.by_ext.get(external_id)?;
        let mut fields = store.by_id.get(id)?.clone();
        fields.insert("Id".into(), Value::String(id.clone()));
        Some(fields)
    }

    /// Every record, by External ID.
    pub fn all(&self) -> HashMap<String, Map<String, Value>> {
        let store = self.state.store.lock().unwrap();
        store.by_ext.iter().filter_map(|(ext, id)| Some((ext.clone(), store.by_id.get(id)?.clone()))).collect()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn tokens_issued(&self) -> usize {
        *self.state.tokens_issued.lock().unwrap()
    }

    /// Every session so far stops working (`401 INVALID_SESSION_ID`).
    pub fn expire_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// The org's daily Bulk API batches: used and allocation.
    pub fn set_bulk_batches(&self, used: u64, max: u64) {
        *self.state.bulk_batches.lock().unwrap() = (used, max);
    }

    /// The org's daily Bulk API batches used so far (`set_bulk_batches`'
    /// start plus ⌈rows / 10,000⌉ per upload).
    pub fn bulk_batches_used(&self) -> u64 {
        self.state.bulk_batches.lock().unwrap().0
    }

    /// Bulk jobs closed from now on answer InProgress for `n` polls.
    pub fn set_job_polls(&self, n: usize) {
        *self.state.job_polls.lock().unwrap() = n;
    }

    pub fn bulk_jobs(&self) -> Vec<BulkJob> {
        let jobs = self.state.jobs.lock().unwrap();
        jobs.iter()
            .map(|(id, j)| BulkJob { id: id.clone(), state: j.state.to_string(), keys: j.keys.clone() })
            .collect()
    }

    /// ("collection" | "job-created" | "job-closed" | "job-complete", id or
    /// path), in the order they happened.
    pub fn events(&self) -> Vec<(&'static str, String)> {
        self.state.events.lock().unwrap().clone()
    }

    /// Sessions issued from now on expire after `lifetime` (the org's
    /// session timeout; the token answer does not say it).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.state.token_lifetime.lock().unwrap() = lifetime;
    }

    /// The next `n` data calls answer `503 Service Unavailable`.
    pub fn fail_next(&self, n: usize) {
        *self.state.failures.lock().unwrap() = n;
    }

    /// The next `n` data calls wait `delay` before answering.
    pub fn slow_next(&self, n: usize, delay: Duration) {
        *self.state.slow.lock().unwrap() = (n, delay);
    }

    /// Every data call waits `delay` (a realistic round trip, for benchmarks).
    pub fn set_latency(&self, delay: Duration) {
        *self.state.latency.lock().unwrap() = delay;
    }

    /// The record with this External ID gets `code`/`message` the next
    /// `times` times it is sent.
    pub fn inject_record_error(&self, external_id: &str, code: &str, message: &str, times: usize) {
        self.state
            .injected
            .lock()
            .unwrap()
            .insert(external_id.to_string(), Injected { code: code.into(), message: message.into(), times });
    }

    /// A validation rule: a record whose `field` is `value` is refused with
    /// `FIELD_CUSTOM_VALIDATION_EXCEPTION` and `message`.
    pub fn add_validation_rule(&self, field: &str, value: Value, message: &str) {
        self.state.rules.lock().unwrap().push(Rule { field: field.into(), value, message: message.into() });
    }

    /// The org's daily allocation and what is used of it.
    pub fn set_api_usage(&self, used: u64, max: u64) {
        *self.state.api_used.lock().unwrap() = used;
        *self.state.api_max.lock().unwrap() = max;
    }

    /// Every data call answers the daily `REQUEST_LIMIT_EXCEEDED` for `d`.
    pub fn exceed_daily_limit_for(&self, d: Duration) {
        *self.state.limit_until.lock().unwrap() = Some(Instant::now() + d);
    }

    /// Data calls from now on wait (unanswered) until [`release`](Self::release).
    pub fn hold(&self) {
        *self.state.hold.0.lock().unwrap() = true;
    }

    /// Answers the next `n` data requests, then holds every later one as
    /// [`hold`](Self::hold) does, so a test can catch a request in flight
    /// however fast the sink is.
    pub fn hold_after(&self, n: usize) {
        self.state.data_requests.store(0, Ordering::SeqCst);
        *self.state.hold_after.lock().unwrap() = Some(n);
    }

    pub fn release(&self) {
        *self.state.hold_after.lock().unwrap() = None;
        *self.state.hold.0.lock().unwrap() = false;
        self.state.hold.1.notify_all();
    }

    /// The records (as sent) of each request held so far: applied, but
    /// their answer waits for [`release`](Self::release).
    pub fn held(&self) -> Vec<Vec<Value>> {
        self.state.held.lock().unwrap().clone()
    }
}

impl Drop for SalesforceFake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn respond(status: u16, body: Value) -> Response {
    Response { status, body: body.to_string(), content_type: "application/json;charset=UTF-8", extra: Vec::new() }
}

fn csv_response(status: u16, body: String) -> Response {
    Response { status, body, content_type: "text/csv", extra: Vec::new() }
}

/// REST API "Status Codes and Error Responses": errors are an array of
/// `{"message","errorCode"}` (plus `fields` where one applies).
fn rest_error(status: u16, code: &str, message: &str) -> Response {
    respond(status, json!([{"message": message, "errorCode": code}]))
}

fn serve(state: &State, stream: TcpStream, port: u16) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    // One request per connection (Connection: close).
    let Some(request) = read_request(&mut reader) else { return };
    let response = route(state, &request, port);
    let _ = write_response(&mut writer, &response, &[("Connection", "close".to_string())]);
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn route(state: &State, request: &Request, port: u16) -> Response {
    if request.method == "POST" && request.path == "/services/oauth2/token" {
        return token(state, request, port);
    }
    let Some(rest) = request.path.strip_prefix("/services/data/v") else {
        return rest_error(404, "NOT_FOUND", "The requested resource does not exist");
    };
    let Some((version, resource)) = rest.split_once('/') else {
        return rest_error(404, "NOT_FOUND", "The requested resource does not exist");
    };
    // Sessions: "Session expired or invalid" with 401 (REST API Developer
    // Guide, "Status Codes and Error Responses").
    let bearer = request.headers.get("authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    let valid = state.tokens.lock().unwrap().get(bearer).is_some_and(|expires| Instant::now() < *expires);
    if !valid {
        return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    // The daily allocation (Salesforce Developer Limits and Allocations
    // Quick Reference, "API Request Limits and Allocations"): refused calls
    // answer 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded.".
    let limited = state.limit_until.lock().unwrap().is_some_and(|until| Instant::now() < until);
    let (used, max) = (*state.api_used.lock().unwrap(), *state.api_max.lock().unwrap());
    if limited || used >= max {
        let mut r = rest_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
        r.extra.push(("Sforce-Limit-Info", format!("api-usage={used}/{max}")));
        let logged = Logged { method: request.method.clone(), path: request.path.clone(), keys: vec![], status: 403 };
        state.log.lock().unwrap().push(logged);
        return r;
    }
    let used = {
        let mut u = state.api_used.lock().unwrap();
        *u += 1;
        *u
    };
    {
        let mut failures = state.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return rest_error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable; try again later");
        }
    }
    let delay = {
        let mut slow = state.slow.lock().unwrap();
        let latency = *state.latency.lock().unwrap();
        if slow.0 > 0 {
            slow.0 -= 1;
            slow.1.max(latency)
        } else {
            latency
        }
    };
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    let version_ok = version.split_once('.').is_some_and(|(major, _)| major.parse::<u32>().is_ok_and(|m| m >= 46));
    if !version_ok {
        return rest_error(404, "NOT_FOUND", "The requested resource does not exist");
    }
    let (keys, mut response) = data(state, request, resource);
    let answered = state.data_requests.fetch_add(1, Ordering::SeqCst);
    if state.hold_after.lock().unwrap().is_some_and(|n| answered >= n) {
        *state.hold.0.lock().unwrap() = true;
    }
    if *state.hold.0.lock().unwrap() {
        let sent = serde_json::from_str::<Value>(&request.body).ok();
        let records = sent.and_then(|b| b["records"].as_array().cloned()).unwrap_or_default();
        state.held.lock().unwrap().push(records);
        let mut held = state.hold.0.lock().unwrap();
        while *held {
            held = state.hold.1.wait(held).unwrap();
        }
    }
    response.extra.push(("Sforce-Limit-Info", format!("api-usage={used}/{max}")));
    state.log.lock().unwrap().push(Logged {
        method: request.method.clone(),
        path: request.path.clone(),
        keys,
        status: response.status,
    });
    response
}

/// `POST /services/oauth2/token` (Salesforce Help, "OAuth 2.0 Client
/// Credentials Flow for Server-to-Server Integration" and "OAuth 2.0 JWT
/// Bearer Flow for Server-to-Server Integration"): a form; the answer has
/// `access_token`, `instance_url`, `id`, `token_type`, `issued_at` and no
/// `expires_in`; errors are `{"error","error_description"}` with 400.
fn token(state: &State, request: &Request, port: u16) -> Response {
    let form = parse_pairs(&request.body);
    let refuse =
        |error: &str, description: &str| respond(400, json!({"error": error, "error_description": description}));
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return refuse("invalid_client", "invalid client credentials");
            }
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(key) = state.public_key.lock().unwrap().clone() else {
                return refuse("invalid_grant", "no connected app certificate for this client");
            };
            if let Err(why) = check_assertion(form.get("assertion").map(String::as_str).unwrap_or(""), &key, port) {
                return refuse("invalid_grant", &why);
            }
        }
        _ => return refuse("unsupported_grant_type", "grant type not supported"),
    }
    let token = format!("00D-fake!{}-{}", port, *state.tokens_issued.lock().unwrap() + 1);
    let lifetime = *state.token_lifetime.lock().unwrap();
    state.tokens.lock().unwrap().insert(token.clone(), Instant::now() + lifetime);
    *state.tokens_issued.lock().unwrap() += 1;
    let url = format!("http://127.0.0.1:{port}");
    respond(
        200,
        json!({
            "access_token": token,
            "instance_url": url,
            "id": format!("{url}/id/00Dfake/005fake"),
            "token_type": "Bearer",
            "issued_at": (now_secs() * 1000).to_string(),
            "signature": "fake",
        }),
    )
}

/// The JWT bearer assertion: RS256 over `iss` (the consumer key), `sub`
/// (the user), `aud` (the login URL) and `exp` (at most 3 minutes ahead).
fn check_assertion(assertion: &str, public_key: &[u8], port: u16) -> Result<(), String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else { return Err("invalid assertion".into()) };
    let decode = |s: &str| b64.decode(s).map_err(|_| "invalid assertion encoding".to_string());
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| "invalid assertion header")?;
    if header["alg"] != "RS256" {
        return Err("invalid assertion algorithm".into());
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "invalid assertion signature".to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| "invalid assertion claims")?;
    let exp = claims["exp"].as_u64().unwrap_or(0);
    if claims["iss"] != CLIENT_ID {
        return Err("client identifier invalid".into());
    }
    if claims["sub"] != USERNAME {
        return Err("user hasn't approved this consumer".into());
    }
    if claims["aud"] != format!("http://127.0.0.1:{port}") {
        return Err("audience is invalid".into());
    }
    if exp <= now_secs() || exp > now_secs() + 300 {
        return Err("expired authorization code".into());
    }
    Ok(())
}

/// A new record Id: 18 characters, the object's key prefix first.
fn new_id(store: &mut Store) -> String {
    store.next_id += 1;
    format!("003FAKE{:011}", store.next_id)
}

/// One record's result (`SaveResult`/`UpsertResult`/`DeleteResult`).
fn failure(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

fn data(state: &State, request: &Request, resource: &str) -> (Vec<String>, Response) {
    let object = state.object.as_str();
    let ext = state.external_id.as_str();
    let upsert_path = format!("composite/sobjects/{object}/{ext}");
    let single_prefix = format!("sobjects/{object}/{ext}/");
    match (request.method.as_str(), resource) {
        // sObject Collections upsert (REST API Developer Guide, "Upsert
        // Records Using sObject Collections"): PATCH, ≤ 200 records, each
        // with attributes.type, results in order, 200 when well formed.
        ("PATCH", r) if r == upsert_path => collection(state, request, Mode::Upsert),
        // Bulk API 2.0 Developer Guide: "Create a Job", "Upload Job Data",
        // "Close or Abort a Job", "Get Job Info", "Get Job Failed Record Results".
        (_, r) if r.starts_with("jobs/ingest") => (vec![], bulk(state, request, r)),
        // "Limits" (REST API Developer Guide): the org's allocations, Max and Remaining.
        ("GET", "limits") => {
            let (used, max) = (*state.api_used.lock().unwrap(), *state.api_max.lock().unwrap());
            let batches = *state.bulk_batches.lock().unwrap();
            let limits = json!({
                "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
                "DailyBulkApiBatches": {"Max": batches.1, "Remaining": batches.1.saturating_sub(batches.0)},
            });
            (vec![], respond(200, limits))
        }
        // "Create Records Using sObject Collections": POST.
        ("POST", "composite/sobjects") => collection(state, request, Mode::Insert),
        // "Update Records Using sObject Collections": PATCH, by `id`.
        ("PATCH", "composite/sobjects") => collection(state, request, Mode::Update),
        // "Delete Records Using sObject Collections": DELETE ?ids=…
        ("DELETE", "composite/sobjects") => delete_ids(state, request),
        // "Delete a Record by External ID" (sObject Rows by External ID):
        // 204, or 404 NOT_FOUND.
        ("DELETE", r) if r.starts_with(&single_prefix) => {
            let value = r[single_prefix.len()..].to_string();
            let mut store = state.store.lock().unwrap();
            let response = match store.by_ext.remove(&value) {
                Some(id) => {
                    store.by_id.remove(&id);
                    Response { status: 204, body: String::new(), content_type: "application/json", extra: Vec::new() }
                }
                None => rest_error(404, "NOT_FOUND", "The requested resource does not exist"),
            };
            (vec![value], response)
        }
        _ => (vec![], rest_error(404, "NOT_FOUND", "The requested resource does not exist")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Insert,
    Update,
    Upsert,
}

fn collection(state: &State, request: &Request, mode: Mode) -> (Vec<String>, Response) {
    state.events.lock().unwrap().push(("collection", request.path.clone()));
    let Ok(body) = serde_json::from_str::<Value>(&request.body) else {
        return (vec![], rest_error(400, "JSON_PARSER_ERROR", "Unexpected character in the request body"));
    };
    let Some(records) = body["records"].as_array() else {
        return (vec![], rest_error(400, "INVALID_FIELD", "records is required"));
    };
    let key_field = if mode == Mode::Upsert { state.external_id.as_str() } else { "Id" };
    let key_of = |r: &Value| match &r[key_field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let keys: Vec<String> = records.iter().map(key_of).collect();
    if records.len() > 200 {
        return (
            keys,
            rest_error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            ),
        );
    }
    if body["allOrNone"].as_bool() == Some(true) {
        // Not what the sink sends; the fake does not roll back.
        return (keys, rest_error(400, "INVALID_FIELD", "the fake implements allOrNone=false only"));
    }
    // Unknown fields refuse the whole request, as Salesforce does.
    for r in records {
        let Some(fields) = r.as_object() else {
            return (keys, rest_error(400, "JSON_PARSER_ERROR", "each record must be an object"));
        };
        if fields.get("attributes").and_then(|a| a["type"].as_str()) != Some(state.object.as_str()) {
            return (keys, rest_error(400, "INVALID_TYPE", "each record needs attributes.type naming the sObject"));
        }
        for (name, value) in fields {
            let relationship = name.ends_with("__r") && value.is_object();
            if name != "attributes" && !relationship && !state.fields.contains(name) {
                let message = format!("No such column '{name}' on sobject of type {}", state.object);
                return (keys, rest_error(400, "INVALID_FIELD", &message));
            }
            if !relationship && name != "attributes" && (value.is_object() || value.is_array()) {
                let message = format!("Cannot deserialize instance of {name} from a JSON {value}");
                return (keys, rest_error(400, "JSON_PARSER_ERROR", &message));
            }
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in &keys {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let mut store = state.store.lock().unwrap();
    let mut results = Vec::with_capacity(records.len());
    for (record, key) in records.iter().zip(&keys) {
        let mut fields = record.as_object().cloned().unwrap_or_default();
        fields.remove("attributes");
        if mode == Mode::Upsert && key.is_empty() {
            results.push(failure("MISSING_ARGUMENT", &format!("{} not specified", state.external_id), &[]));
            continue;
        }
        // Two rows with one External ID in a collection: both refused.
        if mode == Mode::Upsert && counts[key.as_str()] > 1 {
            results.push(failure("DUPLICATE_VALUE", &format!("Duplicate external id specified: {key}"), &[]));
            continue;
        }
        if let Some(injected) = state.injected.lock().unwrap().get_mut(key.as_str()) {
            if injected.times > 0 {
                injected.times -= 1;
                results.push(failure(&injected.code, &injected.message, &[]));
                continue;
            }
        }
        let broken = state
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|rule| fields.get(&rule.field) == Some(&rule.value))
            .map(|rule| (rule.field.clone(), rule.message.clone()));
        if let Some((field, message)) = broken {
            results.push(failure("FIELD_CUSTOM_VALIDATION_EXCEPTION", &message, &[field.as_str()]));
            continue;
        }
        let existing = match mode {
            Mode::Upsert => store.by_ext.get(key).cloned(),
            Mode::Update => Some(key.clone()).filter(|id| store.by_id.contains_key(id)),
            Mode::Insert => None,
        };
        match (mode, existing) {
            (Mode::Update, None) => {
                results.push(failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]));
            }
            (_, Some(id)) => {
                fields.remove("Id");
                if let Some(stored) = store.by_id.get_mut(&id) {
                    for (k, v) in fields {
                        stored.insert(k, v);
                    }
                }
                results.push(json!({"id": id, "success": true, "errors": [], "created": false}));
            }
            (_, None) => {
                let id = new_id(&mut store);
                fields.remove("Id");
                if let Some(Value::String(ext)) = fields.get(&state.external_id) {
                    store.by_ext.insert(ext.clone(), id.clone());
                }
                store.by_id.insert(id.clone(), fields);
                results.push(json!({"id": id, "success": true, "errors": [], "created": true}));
            }
        }
    }
    (keys, respond(200, Value::Array(results)))
}

fn delete_ids(state: &State, request: &Request) -> (Vec<String>, Response) {
    let ids: Vec<String> =
        request.query.get("ids").map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default();
    if ids.len() > 200 {
        return (
            ids,
            rest_error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            ),
        );
    }
    let mut store = state.store.lock().unwrap();
    let results: Vec<Value> = ids
        .iter()
        .map(|id| match store.by_id.remove(id) {
            Some(fields) => {
                if let Some(Value::String(ext)) = fields.get(&state.external_id) {
                    store.by_ext.remove(ext);
                }
                json!({"id": id, "success": true, "errors": []})
            }
            None => failure("ENTITY_IS_DELETED", "entity is deleted", &[]),
        })
        .collect();
    (ids, respond(200, Value::Array(results)))
}

fn job_info(id: &str, job: &Job, state: &State) -> Value {
    json!({"id": id, "operation": "upsert", "object": state.object, "createdById": "005fake",
           "state": job.state, "externalIdFieldName": state.external_id, "concurrencyMode": "Parallel",
           "contentType": "CSV", "apiVersion": 62.0, "jobType": "V2Ingest", "lineEnding": "LF",
           "columnDelimiter": "COMMA", "numberRecordsProcessed": job.processed,
           "numberRecordsFailed": job.failed.len()})
}

fn bulk(state: &State, request: &Request, resource: &str) -> Response {
    let parts: Vec<&str> = resource.split('/').collect();
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    match (request.method.as_str(), &parts[..]) {
        ("POST", ["jobs", "ingest"]) => {
            if body["object"] != state.object.as_str() {
                return rest_error(
                    400,
                    "INVALIDENTITY",
                    &format!("sObject type '{}' is not supported", body["object"]),
                );
            }
            if body["operation"] != "upsert" || body["externalIdFieldName"] != state.external_id.as_str() {
                return rest_error(400, "INVALIDJOB", "the fake takes upsert jobs by its External ID field");
            }
            if body["contentType"] != "CSV" {
                return rest_error(400, "INVALIDJOB", "contentType must be CSV");
            }
            let mut store = state.store.lock().unwrap();
            store.next_id += 1;
            let id = format!("750FAKE{:011}", store.next_id);
            let job = Job {
                state: "Open",
                csv: String::new(),
                polls_left: 0,
                keys: vec![],
                failed: vec![],
                header: vec![],
                processed: 0,
            };
            let info = job_info(&id, &job, state);
            state.jobs.lock().unwrap().insert(id.clone(), job);
            state.events.lock().unwrap().push(("job-created", id));
            respond(200, info)
        }
        ("PUT", ["jobs", "ingest", id, "batches"]) => {
            let mut jobs = state.jobs.lock().unwrap();
            let Some(job) = jobs.get_mut(*id) else { return rest_error(404, "NOT_FOUND", "job not found") };
            if job.state != "Open" {
                return rest_error(409, "INVALIDJOBSTATE", "data can be uploaded to an Open job only");
            }
            if request.body.len() > 150 * 1024 * 1024 {
                return rest_error(400, "INVALIDBATCH", "an upload is at most 150 MB");
            }
            job.csv.push_str(&request.body);
            // Bulk API 2.0 cuts an upload into internal batches of up to
            // 10,000 records, each counted in DailyBulkApiBatches ("How
            // Requests Are Processed"; the 150,000,000 records a day are
            // those 15,000 batches); /limits reports no records entry.
            let rows = parse_csv(&request.body).1.len() as u64;
            state.bulk_batches.lock().unwrap().0 += rows.div_ceil(10_000).max(1);
            Response { status: 201, body: String::new(), content_type: "application/json", extra: Vec::new() }
        }
        ("PATCH", ["jobs", "ingest", id]) => {
            let polls = *state.job_polls.lock().unwrap();
            let mut jobs = state.jobs.lock().unwrap();
            let Some(job) = jobs.get_mut(*id) else { return rest_error(404, "NOT_FOUND", "job not found") };
            match (job.state, body["state"].as_str()) {
                ("Open", Some("UploadComplete")) => {
                    job.state = "UploadComplete";
                    job.polls_left = polls;
                    state.events.lock().unwrap().push(("job-closed", id.to_string()));
                }
                ("Open" | "UploadComplete" | "InProgress", Some("Aborted")) => job.state = "Aborted",
                _ => return rest_error(409, "INVALIDJOBSTATE", "the job cannot go to that state"),
            }
            respond(200, job_info(id, job, state))
        }
        ("GET", ["jobs", "ingest", id]) => {
            let mut jobs = state.jobs.lock().unwrap();
            let Some(job) = jobs.get_mut(*id) else { return rest_error(404, "NOT_FOUND", "job not found") };
            if matches!(job.state, "UploadComplete" | "InProgress") {
                if job.polls_left > 0 {
                    job.polls_left -= 1;
                    job.state = "InProgress";
                } else {
                    apply_job(state, job);
                    state.events.lock().unwrap().push(("job-complete", id.to_string()));
                }
            }
            respond(200, job_info(id, job, state))
        }
        ("GET", ["jobs", "ingest", id, "failedResults"]) => {
            let jobs = state.jobs.lock().unwrap();
            let Some(job) = jobs.get(*id) else { return rest_error(404, "NOT_FOUND", "job not found") };
            let mut out = String::from("\"sf__Id\",\"sf__Error\"");
            for h in &job.header {
                out.push_str(&format!(",\"{h}\""));
            }
            out.push('\n');
            for (row, error) in &job.failed {
                let mut line = vec![String::from("\"\""), format!("\"{}\"", error.replace('"', "\"\""))];
                line.extend(row.iter().map(|v| format!("\"{}\"", v.replace('"', "\"\""))));
                out.push_str(&line.join(","));
                out.push('\n');
            }
            csv_response(200, out)
        }
        _ => rest_error(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

/// Applies a job's CSV, row by row, as an upsert by External ID: `#N/A`
/// clears a field, an empty value leaves it, `Parent__r.Field__c` sets a
/// lookup; rows breaking a rule or sharing an External ID with another row
/// of the job fail.
fn apply_job(state: &State, job: &mut Job) {
    let (header, rows) = parse_csv(&job.csv);
    let ext_at = header.iter().position(|h| *h == state.external_id);
    let key = |row: &Vec<String>| ext_at.and_then(|i| row.get(i)).cloned().unwrap_or_default();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *counts.entry(key(row)).or_default() += 1;
    }
    job.keys = rows.iter().map(key).collect();
    let rules = state.rules.lock().unwrap();
    let mut store = state.store.lock().unwrap();
    for row in &rows {
        let k = key(row);
        if k.is_empty() {
            job.failed.push((row.clone(), format!("MISSING_ARGUMENT:{} not specified:--", state.external_id)));
            continue;
        }
        if counts[&k] > 1 {
            job.failed.push((row.clone(), format!("DUPLICATE_VALUE:Duplicate external id specified: {k}:--")));
            continue;
        }
        let mut fields = Map::new();
        for (h, v) in header.iter().zip(row) {
            if v.is_empty() {
                continue;
            }
            let value = if v == "#N/A" { Value::Null } else { Value::String(v.clone()) };
            match h.split_once('.') {
                Some((rel, f)) => {
                    fields.insert(rel.to_string(), json!({ f: value }));
                }
                None => {
                    fields.insert(h.clone(), value);
                }
            }
        }
        // CSV carries text: compare a rule's value as text too.
        let broken = rules.iter().find(|r| {
            fields
                .get(&r.field)
                .is_some_and(|v| v == &r.value || v.as_str() == Some(r.value.to_string().trim_matches('"')))
        });
        if let Some(rule) = broken {
            job.failed
                .push((row.clone(), format!("FIELD_CUSTOM_VALIDATION_EXCEPTION:{}:{} --", rule.message, rule.field)));
            continue;
        }
        match store.by_ext.get(&k).cloned() {
            Some(id) => {
                if let Some(stored) = store.by_id.get_mut(&id) {
                    for (f, v) in fields {
                        stored.insert(f, v);
                    }
                }
            }
            None => {
                let id = new_id(&mut store);
                store.by_ext.insert(k.clone(), id.clone());
                store.by_id.insert(id, fields);
            }
        }
    }
    job.header = header;
    job.processed = rows.len();
    job.state = "JobComplete";
}

/// RFC 4180 CSV: quoted fields with doubled quotes, LF or CRLF line ends.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    let mut iter = records.into_iter();
    (iter.next().unwrap_or_default(), iter.collect())
}
