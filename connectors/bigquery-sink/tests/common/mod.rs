//! What the REST-side tests share: the emulator of `dev/services`
//! (BQ_REST_ENDPOINT, BQ_PROJECT), a dataset per test, and a small HTTP
//! proxy in front of the emulator whose handler may answer a request
//! itself (as BigQuery would where the emulator differs, or with an
//! injected fault) or forward it.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use connector_kit::http::{HttpClient, HttpError, Method, Request};
use sluice_bigquery_sink::rest::BigQueryRest;

pub fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| {
        panic!("{k} is not set: run `dev/services up-bigquery` and `eval \"$(dev/services env)\"` before these tests")
    })
}

/// A client on the emulator and a fresh dataset of the test's own.
pub fn dataset(test: &str) -> (BigQueryRest, String, String) {
    let project = env("BQ_PROJECT");
    let mut client = BigQueryRest::new(&env("BQ_REST_ENDPOINT"), &project);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dataset = format!("{test}_{nanos}");
    client.create_dataset(&project, &dataset).unwrap();
    (client, project, dataset)
}

/// A request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn is_insert_all(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/insertAll")
    }
}

/// An answer: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// Forwards requests to the emulator.
pub struct Upstream {
    client: HttpClient,
}

impl Upstream {
    pub fn forward(&mut self, seen: &Seen) -> Answer {
        self.send(&seen.method, &seen.path, &seen.body)
    }

    pub fn send(&mut self, method: &str, path: &str, body: &str) -> Answer {
        let method = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => panic!("proxy: method {other}"),
        };
        let mut request = Request::new(method, path.to_string());
        if !body.is_empty() {
            request = request.header("Content-Type", "application/json").body(body.as_bytes().to_vec());
        }
        match self.client.send(request) {
            Ok(r) => (r.status, Vec::new(), r.text().into_owned()),
            Err(HttpError::Status { status, body, .. }) => (status, Vec::new(), body),
            Err(e) => (502, Vec::new(), format!(r#"{{"error":{{"code":502,"message":"proxy: {e}"}}}}"#)),
        }
    }
}

/// The proxy: one thread, one connection at a time (`connection: close`).
pub struct Proxy {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    pub fn start(mut handler: impl FnMut(&Seen, &mut Upstream) -> Answer + Send + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mut upstream = Upstream { client: HttpClient::builder(&env("BQ_REST_ENDPOINT")).build() };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request = Seen { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };
                let (status, extra, reply) = handler(&request, &mut upstream);
                log.lock().unwrap().push(request);
                let mut stream = reader.into_inner();
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    reply.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                let _ = stream.write_all(format!("{head}\r\n{reply}").as_bytes());
            }
        });
        Proxy { url, seen }
    }

    /// The insertAll requests seen so far.
    pub fn inserts(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.is_insert_all()).cloned().collect()
    }
}

/// BigQuery's error body.
pub fn google_error(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}})
    .to_string()
}

/// A proxy that forwards every request to the emulator and records it
/// (tests count the `tables.patch` calls). It used to complete the
/// emulator's `tables.patch` with an `ALTER TABLE`; the emulator's
/// launcher does that itself now (dev/bigquery/launch.py,
/// docs/decisions/0042-bigquery-streaming-schema-evolution.md).
pub fn forwarding_proxy() -> Proxy {
    Proxy::start(|seen, upstream| upstream.forward(seen))
}
