//! What the BigQuery sink's integration tests share: the emulator of
//! `dev/services` (BQ_REST_ENDPOINT, BQ_GRPC_ENDPOINT, BQ_PROJECT), a REST
//! helper to create datasets and tables and to query, and unique names so
//! tests never see each other's tables.
#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector_kit::http::{HttpClient, Request};
use serde_json::{json, Value};

pub struct Env {
    pub rest: String,
    pub grpc: String,
    pub project: String,
}

pub fn env() -> Env {
    let get = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run `dev/services up` and then `eval \"$(dev/services env)\"` before these tests")
        })
    };
    Env { rest: get("BQ_REST_ENDPOINT"), grpc: get("BQ_GRPC_ENDPOINT"), project: get("BQ_PROJECT") }
}

/// One test at a time per test binary: the emulator shares one DuckDB
/// connection between its REST and gRPC threads and refuses a call while
/// another runs ("connection is busy with another call"), which BigQuery
/// never does. Hold the guard for the test's length.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A name unique to this run and test: letters, digits and _.
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("it_{test}_{nanos}")
}

pub struct Rest {
    http: HttpClient,
    pub project: String,
}

impl Rest {
    pub fn new() -> Self {
        let e = env();
        Rest { http: HttpClient::builder(&format!("{}/bigquery/v2", e.rest)).build(), project: e.project }
    }

    fn post(&mut self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .send(Request::post(path.to_string(), body.to_string()).header("content-type", "application/json"))
            .unwrap_or_else(|e| panic!("POST {path}: {}", e.message()));
        r.json().unwrap()
    }

    pub fn create_dataset(&mut self, dataset: &str) {
        let p = self.project.clone();
        self.post(
            &format!("/projects/{p}/datasets"),
            json!({"datasetReference": {"projectId": p, "datasetId": dataset}, "location": "US"}),
        );
    }

    /// `fields` in BigQuery's REST shape.
    pub fn create_table(&mut self, dataset: &str, table: &str, fields: Value) {
        let p = self.project.clone();
        self.post(
            &format!("/projects/{p}/datasets/{dataset}/tables"),
            json!({"tableReference": {"projectId": p, "datasetId": dataset, "tableId": table},
                   "schema": {"fields": fields}}),
        );
    }

    /// A table's resource as `tables.get` answers it.
    pub fn table(&mut self, dataset: &str, table: &str) -> Value {
        let p = self.project.clone();
        let r = self
            .http
            .send(Request::get(format!("/projects/{p}/datasets/{dataset}/tables/{table}")))
            .unwrap_or_else(|e| panic!("GET table {table}: {}", e.message()));
        r.json().unwrap()
    }

    /// Rows of a query as f/v values turned into plain JSON arrays.
    pub fn query(&mut self, sql: &str) -> Vec<Vec<Value>> {
        let p = self.project.clone();
        let r = self.post(&format!("/projects/{p}/queries"), json!({"query": sql, "useLegacySql": false}));
        assert!(r.get("errors").is_none(), "query {sql}: {r}");
        r["rows"]
            .as_array()
            .map(|rows| {
                rows.iter().map(|row| row["f"].as_array().unwrap().iter().map(|c| c["v"].clone()).collect()).collect()
            })
            .unwrap_or_default()
    }

    /// One integer from a query such as `SELECT COUNT(*) …`.
    pub fn count(&mut self, sql: &str) -> i64 {
        let rows = self.query(sql);
        rows[0][0].as_str().unwrap().parse().unwrap()
    }
}

/// Polls `f` until it returns Some, or fails after `deadline`.
pub fn eventually<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
