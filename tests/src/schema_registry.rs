//! A Confluent Schema Registry fake, for the converters' tests: no Schema
//! Registry installs from the registries these machines reach.
//!
//! It follows Confluent's documented REST API for the calls a serializer
//! and a converter make (docs.confluent.io, "Schema Registry API
//! Reference"):
//! - `GET /schemas/ids/{id}` → `{"schema": …}` (`schemaType` only when not
//!   AVRO), else 404 `{"error_code":40403,…}`;
//! - `POST /subjects/{subject}/versions` `{"schema", "schemaType"?}` →
//!   `{"id"}`: the same schema (and type) gets the same id in every subject,
//!   a new one the next id from 1; a subject's versions count from 1;
//! - `POST /subjects/{subject}` (is this schema registered here?) →
//!   `{"subject","id","version","schema"}`, else 404 with 40401 (no such
//!   subject) or 40403 (not under it);
//! - `GET /subjects/{subject}/versions/latest`, `GET /subjects`;
//! - HTTP basic auth when started with credentials: 401
//!   `{"error_code":401,"message":"Unauthorized"}` without them.
//!
//! Schemas compare as parsed JSON (Confluent compares a canonical form; the
//! clients send the text they were given, so that is enough here). The
//! registry can be made unavailable (503 `{"error_code":50003}`) to show
//! what an outage does.

use std::{
    collections::HashMap,
    io::BufReader,
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
};

use base64::Engine;
use serde_json::{json, Value};

use crate::http_fake::{decode_path, read_request, write_response, Response};

#[derive(Default)]
struct Store {
    /// By id - 1: (type, text).
    schemas: Vec<(String, String)>,
    /// Subject → the ids of its versions, in order.
    subjects: HashMap<String, Vec<u32>>,
}

struct State {
    store: Mutex<Store>,
    /// `Basic <base64>` expected, when set.
    auth: Option<String>,
    unavailable: AtomicBool,
    /// (method, path, status) of every request.
    log: Mutex<Vec<(String, String, u16)>>,
}

pub struct SchemaRegistry {
    pub url: String,
    state: Arc<State>,
}

impl SchemaRegistry {
    /// Listens on 127.0.0.1; `user_info` (`user:password`) turns basic auth on.
    pub fn start(user_info: Option<&str>) -> SchemaRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Schema Registry fake to 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(State {
            store: Mutex::default(),
            auth: user_info.map(|u| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(u))),
            unavailable: AtomicBool::new(false),
            log: Mutex::default(),
        });
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || serve(&s, stream));
            }
        });
        SchemaRegistry { url: format!("http://127.0.0.1:{port}"), state }
    }

    /// Answers 503 to everything while `true`.
    pub fn set_unavailable(&self, down: bool) {
        self.state.unavailable.store(down, Ordering::SeqCst);
    }

    /// Registers `schema` (Avro when `kind` is `AVRO`) under `subject`, as a
    /// serializer would; the id.
    pub fn register(&self, subject: &str, kind: &str, schema: &str) -> u32 {
        register(&mut self.state.store.lock().unwrap(), subject, kind, schema).expect("a valid schema")
    }

    /// (method, path, status) of the requests so far.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.state.log.lock().unwrap().clone()
    }
}

fn same(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn register(store: &mut Store, subject: &str, kind: &str, schema: &str) -> Result<u32, String> {
    serde_json::from_str::<Value>(schema).map_err(|e| format!("Invalid schema: {e}"))?;
    let id = match store.schemas.iter().position(|(k, t)| k == kind && same(t, schema)) {
        Some(i) => i as u32 + 1,
        None => {
            store.schemas.push((kind.to_string(), schema.to_string()));
            store.schemas.len() as u32
        }
    };
    let versions = store.subjects.entry(subject.to_string()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    Ok(id)
}

struct Reply {
    status: u16,
    body: Value,
}

fn error(status: u16, code: u32, message: impl Into<String>) -> Reply {
    Reply { status, body: json!({"error_code": code, "message": message.into()}) }
}

fn schema_json(kind: &str, text: &str) -> Value {
    let mut v = json!({ "schema": text });
    if kind != "AVRO" {
        v["schemaType"] = json!(kind);
    }
    v
}

fn route(state: &State, method: &str, path: &str, headers: &HashMap<String, String>, body: &str) -> Reply {
    if state.unavailable.load(Ordering::SeqCst) {
        return error(503, 50003, "Error while forwarding the request to the leader");
    }
    if let Some(expected) = &state.auth {
        if headers.get("authorization") != Some(expected) {
            return error(401, 401, "Unauthorized");
        }
    }
    let mut store = state.store.lock().unwrap();
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode_path).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let request: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = request["schemaType"].as_str().unwrap_or("AVRO").to_string();
    let text = request["schema"].as_str().unwrap_or_default().to_string();
    match (method, segments.as_slice()) {
        ("GET", ["schemas", "ids", id]) => {
            match id.parse::<usize>().ok().and_then(|i| store.schemas.get(i.wrapping_sub(1))) {
                Some((kind, text)) => Reply { status: 200, body: schema_json(kind, text) },
                None => error(404, 40403, format!("Schema {id} not found")),
            }
        }
        ("GET", ["subjects"]) => {
            let mut names: Vec<&String> = store.subjects.keys().collect();
            names.sort();
            Reply { status: 200, body: json!(names) }
        }
        ("POST", ["subjects", subject, "versions"]) => match register(&mut store, subject, &kind, &text) {
            Ok(id) => Reply { status: 200, body: json!({ "id": id }) },
            Err(e) => error(422, 42201, e),
        },
        ("POST", ["subjects", subject]) => {
            let Some(versions) = store.subjects.get(*subject) else {
                return error(404, 40401, format!("Subject '{subject}' not found."));
            };
            let found = versions.iter().enumerate().find(|(_, id)| {
                let (k, t) = &store.schemas[**id as usize - 1];
                *k == kind && same(t, &text)
            });
            match found {
                Some((i, id)) => {
                    let mut v = schema_json(&kind, &store.schemas[*id as usize - 1].1);
                    v["subject"] = json!(subject);
                    v["id"] = json!(id);
                    v["version"] = json!(i + 1);
                    Reply { status: 200, body: v }
                }
                None => error(404, 40403, "Schema not found"),
            }
        }
        ("GET", ["subjects", subject, "versions", "latest"]) => match store.subjects.get(*subject) {
            Some(versions) if !versions.is_empty() => {
                let id = versions[versions.len() - 1];
                let (k, t) = &store.schemas[id as usize - 1];
                let mut v = schema_json(k, t);
                v["subject"] = json!(subject);
                v["id"] = json!(id);
                v["version"] = json!(versions.len());
                Reply { status: 200, body: v }
            }
            _ => error(404, 40401, format!("Subject '{subject}' not found.")),
        },
        _ => error(404, 404, format!("HTTP 404 Not Found: {method} {path}")),
    }
}

fn serve(state: &State, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    // Keep-alive: the clients reuse connections; answer until they close.
    while let Some(request) = read_request(&mut reader) {
        let reply = route(state, &request.method, &request.raw_path, &request.headers, &request.body);
        state.log.lock().unwrap().push((request.method, request.raw_path, reply.status));
        let response = Response {
            status: reply.status,
            content_type: "application/vnd.schemaregistry.v1+json",
            body: reply.body.to_string(),
            extra: Vec::new(),
        };
        if write_response(&mut writer, &response, &[]).is_err() {
            return;
        }
    }
}
