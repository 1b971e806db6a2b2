//! A contract-faithful fake of the Marketing Cloud Engagement REST endpoints
//! `salesforce-marketing-cloud-sink` uses, in-process on 127.0.0.1 (no local
//! server exists; ../shared/reference/local-services.md §3).
//!
//! One data extension (external key `key`) with primary-key columns; async
//! upsert requests stay Pending for a configurable number of status polls
//! (or a duration), then are applied in order, row by row, with per-row
//! errors from a rule. Tokens last `expires_in` 1079 s and are counted.
//!
//! The result items of `GET /data/v1/async/{id}/results` carry no row key in
//! the documented example; the fake lists one item per row in request order
//! (`status` "OK" or "Error"), which is what the sink relies on.

use std::{
    collections::HashMap,
    io::BufReader,
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Map, Value};

use crate::http_fake::{read_request, write_response, Response};

pub const CLIENT_ID: &str = "sluice-mc-client";
pub const CLIENT_SECRET: &str = "sluice-mc-secret";
pub const ACCOUNT_ID: &str = "514009999";

struct AsyncRequest {
    items: Vec<Map<String, Value>>,
    polls_left: usize,
    pending_until: Instant,
    /// Per row once applied: None (OK) or (errorCode, message).
    results: Option<Vec<Option<(String, String)>>>,
}

#[derive(Default)]
struct State {
    key: String,
    primary_keys: Vec<String>,
    rows: Mutex<HashMap<String, Map<String, Value>>>,
    requests: Mutex<HashMap<String, AsyncRequest>>,
    /// Sizes and primary keys of each upsert request, in arrival order.
    log: Mutex<Vec<Vec<String>>>,
    tokens: Mutex<Vec<String>>,
    /// ("accepted" | "polled" | "completed", requestId), in order.
    events: Mutex<Vec<(&'static str, String)>>,
    polls: Mutex<(usize, Duration)>,
    rule: Mutex<Option<(String, Value, String, String)>>,
    seq: AtomicU64,
}

/// The running fake; stops when dropped.
pub struct MarketingCloudFake {
    /// `sfmc.auth.url` (and the REST instance URL the token answer names).
    pub url: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl MarketingCloudFake {
    pub fn start(key: &str, primary_keys: &[&str]) -> MarketingCloudFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Marketing Cloud fake to 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(State {
            key: key.to_string(),
            primary_keys: primary_keys.iter().map(|k| k.to_string()).collect(),
            polls: Mutex::new((1, Duration::ZERO)),
            ..State::default()
        });
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
        MarketingCloudFake { url: format!("http://127.0.0.1:{port}"), state, stop, port }
    }

    pub fn config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sfmc.auth.url", self.url.clone()),
            ("sfmc.client.id", CLIENT_ID.into()),
            ("sfmc.client.secret", CLIENT_SECRET.into()),
            ("sfmc.account.id", ACCOUNT_ID.into()),
            ("sfmc.data.extension.key", self.state.key.clone()),
            ("sfmc.primary.keys", self.state.primary_keys.join(",")),
        ]
    }

    /// Requests accepted from now on answer Pending for `polls` status
    /// polls and at least `duration`.
    pub fn pending_for(&self, polls: usize, duration: Duration) {
        *self.state.polls.lock().unwrap() = (polls, duration);
    }

    /// Rows whose `column` is `value` fail with `code` and `message`.
    pub fn add_row_rule(&self, column: &str, value: Value, code: &str, message: &str) {
        *self.state.rule.lock().unwrap() = Some((column.into(), value, code.into(), message.into()));
    }

    /// The rows, by primary key (values joined with `|`).
    pub fn rows(&self) -> HashMap<String, Map<String, Value>> {
        self.state.rows.lock().unwrap().clone()
    }

    /// The primary keys of each upsert request, in arrival order.
    pub fn requests(&self) -> Vec<Vec<String>> {
        self.state.log.lock().unwrap().clone()
    }

    /// ("accepted" | "polled" | "completed", requestId), in the order they
    /// happened ("polled": a status poll answered Pending).
    pub fn events(&self) -> Vec<(&'static str, String)> {
        self.state.events.lock().unwrap().clone()
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.tokens.lock().unwrap().len()
    }
}

impl Drop for MarketingCloudFake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(state: &State, stream: TcpStream, port: u16) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    // One request per connection (Connection: close).
    let Some(request) = read_request(&mut reader) else { return };
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    let (status, answer) =
        route(state, &request.method, &request.raw_path, &request.raw_query, &request.headers, &body, port);
    let response = Response { status, content_type: "application/json", body: answer.to_string(), extra: Vec::new() };
    let _ = write_response(&mut writer, &response, &[("Connection", "close".to_string())]);
}

fn route(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    body: &Value,
    port: u16,
) -> (u16, Value) {
    if method == "POST" && path == "/v2/token" {
        return token(state, body, port);
    }
    let bearer = headers.get("authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    if !state.tokens.lock().unwrap().iter().any(|t| t == bearer) {
        // REST API error for a missing or expired token.
        return (401, json!({"documentation": "", "errorcode": 0, "message": "Not Authorized"}));
    }
    let upsert = format!("/data/v1/async/dataextensions/key:{}/rows", state.key);
    match method {
        // "Upsert Data Extension Rows by Key (async)": PUT, {"items":[…]},
        // at most 32,000 rows; 202 with a requestId.
        "PUT" if path == upsert => rows(state, body),
        // "Get Async Status": GET /data/v1/async/{requestId}/status.
        "GET" if path.starts_with("/data/v1/async/") && path.ends_with("/status") => {
            let id = &path["/data/v1/async/".len()..path.len() - "/status".len()];
            status(state, id)
        }
        // "Get Async Results": GET /data/v1/async/{requestId}/results, paged.
        "GET" if path.starts_with("/data/v1/async/") && path.ends_with("/results") => {
            let id = &path["/data/v1/async/".len()..path.len() - "/results".len()];
            results(state, id, query)
        }
        _ => (404, json!({"message": "Not Found", "errorcode": 404})),
    }
}

/// "Request an Access Token for Server-to-Server Integrations":
/// POST /v2/token, JSON; `expires_in` 1079 s.
fn token(state: &State, body: &Value, port: u16) -> (u16, Value) {
    let ok = body["grant_type"] == "client_credentials"
        && body["client_id"] == CLIENT_ID
        && body["client_secret"] == CLIENT_SECRET
        && (body["account_id"].is_null() || body["account_id"] == ACCOUNT_ID);
    if !ok {
        return (
            401,
            json!({"error": "invalid_client", "error_description": "Client authentication failed.", "error_uri": ""}),
        );
    }
    let token = format!("mc-token-{}", state.seq.fetch_add(1, Ordering::SeqCst));
    state.tokens.lock().unwrap().push(token.clone());
    let url = format!("http://127.0.0.1:{port}");
    (
        200,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 1079, "scope": "data_extensions_write",
               "soap_instance_url": format!("{url}/soap"), "rest_instance_url": url}),
    )
}

fn pk(state: &State, row: &Map<String, Value>) -> Option<String> {
    let values: Option<Vec<String>> = state
        .primary_keys
        .iter()
        .map(|k| match row.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    values.map(|v| v.join("|"))
}

fn rows(state: &State, body: &Value) -> (u16, Value) {
    let Some(items) = body["items"].as_array() else {
        return (400, json!({"message": "items is required", "errorcode": 10000}));
    };
    if items.len() > 32_000 {
        return (400, json!({"message": "The request exceeds 32000 items", "errorcode": 10000}));
    }
    let mut rows = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        let Some(row) = item.as_object().cloned() else {
            return (400, json!({"message": "each item must be an object", "errorcode": 10000}));
        };
        keys.push(pk(state, &row).unwrap_or_default());
        rows.push(row);
    }
    state.log.lock().unwrap().push(keys);
    let id = format!("9b13d627-0000-4000-8000-{:012}", state.seq.fetch_add(1, Ordering::SeqCst));
    let (polls, duration) = *state.polls.lock().unwrap();
    state.requests.lock().unwrap().insert(
        id.clone(),
        AsyncRequest { items: rows, polls_left: polls, pending_until: Instant::now() + duration, results: None },
    );
    state.events.lock().unwrap().push(("accepted", id.clone()));
    (202, json!({"requestId": id, "resultMessages": []}))
}

fn status(state: &State, id: &str) -> (u16, Value) {
    let mut requests = state.requests.lock().unwrap();
    let Some(request) = requests.get_mut(id) else {
        return (
            200,
            json!({"requestId": "c3e4c4da", "resultMessages": [{"resultType": "Operational", "resultClass": "Error",
                   "resultCode": "AsyncRequestStatusNotFound",
                   "message": format!("Unable to locate an Async Request Status Record for the provided RequestId: {id}.")}]}),
        );
    };
    if request.results.is_none() {
        if request.polls_left > 0 || Instant::now() < request.pending_until {
            request.polls_left = request.polls_left.saturating_sub(1);
            state.events.lock().unwrap().push(("polled", id.to_string()));
            return (
                200,
                json!({"status": {"requestStatus": "Pending", "hasErrors": false, "requestId": id}, "requestId": id}),
            );
        }
        // Applied now, in order: a late request overwrites what came before it.
        let rule = state.rule.lock().unwrap().clone();
        let mut stored = state.rows.lock().unwrap();
        let results: Vec<Option<(String, String)>> = request
            .items
            .iter()
            .map(|row| {
                if let Some((column, value, code, message)) = &rule {
                    if row.get(column) == Some(value) {
                        return Some((code.clone(), message.clone()));
                    }
                }
                match pk(state, row) {
                    Some(key) => {
                        let entry = stored.entry(key).or_default();
                        for (k, v) in row {
                            entry.insert(k.clone(), v.clone());
                        }
                        None
                    }
                    None => Some(("RequiredValueMissing".into(), "A primary key value is missing".into())),
                }
            })
            .collect();
        request.results = Some(results);
        state.events.lock().unwrap().push(("completed", id.to_string()));
    }
    let has_errors = request.results.as_ref().is_some_and(|r| r.iter().any(Option::is_some));
    (
        200,
        json!({"status": {"requestStatus": "Complete", "resultStatus": "OK", "hasErrors": has_errors, "requestId": id},
               "requestId": id}),
    )
}

fn results(state: &State, id: &str, query: &str) -> (u16, Value) {
    let param = |name: &str| -> Option<usize> {
        query.split('&').find_map(|p| p.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
    };
    let (page, size) = (param("page").unwrap_or(1).max(1), param("pageSize").unwrap_or(50).max(1));
    let requests = state.requests.lock().unwrap();
    let Some(results) = requests.get(id).and_then(|r| r.results.as_ref()) else {
        return (404, json!({"message": "Not Found", "errorcode": 404}));
    };
    let items: Vec<Value> = results
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|r| match r {
            None => json!({"status": "OK"}),
            Some((code, message)) => json!({"errorCode": code, "message": message, "status": "Error"}),
        })
        .collect();
    (200, json!({"page": page, "pageSize": size, "count": results.len(), "items": items, "requestId": id}))
}
