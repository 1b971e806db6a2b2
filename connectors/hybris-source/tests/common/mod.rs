//! Shared test support: a fresh PostgreSQL database per test with the
//! Hybris-layout fixture loaded, and a deadline-bounded poll loop.
#![allow(dead_code)]

pub mod mariadb;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use connector_api::{ConnectorConfig, Host, SourceConnector, SourceOffset, SourceRecord};
use serde_json::Value;
use sluice_hybris_source::{HybrisSource, HybrisTask};

pub const SCHEMA: &str = include_str!("../../fixtures/hybris-schema.sql");
pub const SAMPLE: &str = include_str!("../../fixtures/sample-data.sql");
pub const SIMULATE_STEP: &str = include_str!("../../fixtures/simulate-step.sql");

pub const ORDER_TYPE_PK: i64 = 8796093317202;
pub const CUSTOMER_TYPE_PK: i64 = 8796093153362;

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub client: postgres::Client,
}

fn pg_url() -> String {
    std::env::var("PG_URL").unwrap_or_else(|_| {
        panic!(
            "PG_URL is not set: start PostgreSQL with `dev/services up` and run the tests with \
             `eval \"$(dev/services env)\"` (see dev/services)"
        )
    })
}

/// `postgres://…/hybris` → the same server with another database name.
fn with_database(url: &str, db: &str) -> String {
    let (base, rest) = url.rsplit_once('/').expect("PG_URL has a /database");
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{base}/{db}{query}")
}

impl TestDb {
    /// Creates `hyb_<test>_<pid>_<n>` and loads the schema (and the sample data).
    pub fn new(test: &str, sample: bool) -> TestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("hyb_{test}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let admin_url = pg_url();
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to PG_URL ({e}): is `dev/services up` running?"));
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = with_database(&admin_url, &name);
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client.batch_execute("SET client_min_messages = warning").unwrap();
        client.batch_execute(SCHEMA).unwrap();
        if sample {
            client.batch_execute(SAMPLE).unwrap();
        }
        TestDb { name, url, client }
    }

    pub fn config(&self, types: &str) -> ConnectorConfig {
        ConnectorConfig::new()
            .with("hybris.mode", "jdbc")
            .with("hybris.jdbc.url", self.url.clone())
            .with("hybris.item.types", types)
            .with("poll.interval.ms", "10")
            .with("hybris.poll.lag.ms", "1000")
    }

    pub fn exec(&mut self, sql: &str) {
        self.client.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Inserts an order whose timestamps are `age` seconds before the database clock.
    pub fn insert_order(&mut self, pk: i64, code: &str, created_ago_s: i64, modified_ago_s: i64) {
        self.exec(&format!(
            "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user, p_channel) VALUES \
             (1, {}, {}, {ORDER_TYPE_PK}, {pk}, '{code}', 8796093054980, 8796093874267)",
            utc_now_minus(created_ago_s as f64),
            utc_now_minus(modified_ago_s as f64)
        ));
    }
}

impl Drop for TestDb {
    // Leaves the server as it was; a failed test's database is dropped too
    // (rerun with a breakpoint to inspect one).
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&pg_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Timestamps in the database are UTC without a zone: the "now" of a row
/// written by a test is `now() AT TIME ZONE 'UTC'`.
pub fn utc_now_minus(seconds: f64) -> String {
    format!("(now() AT TIME ZONE 'UTC' - interval '{seconds} seconds')")
}

pub fn task(config: &ConnectorConfig, committed: &[SourceOffset]) -> HybrisTask {
    let mut task = HybrisSource.create_task(config, Host::stderr()).expect("create_task");
    task.start(committed).expect("start");
    task
}

/// Polls until `want` records arrived (or the deadline passes: then returns
/// what it has, and the caller's assertion reports the shortfall).
pub fn poll_until(task: &mut HybrisTask, want: usize, max_records: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        out.extend(task.poll(max_records).expect("poll"));
    }
    out
}

/// Polls until a poll returns nothing after the database has been caught up
/// with, twice in a row (the task is idle): everything currently visible.
pub fn drain(task: &mut HybrisTask, max_records: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 3 && Instant::now() < deadline {
        let batch = task.poll(max_records).expect("poll");
        if batch.is_empty() {
            empty += 1;
        } else {
            empty = 0;
        }
        out.extend(batch);
    }
    out
}

pub fn value(r: &SourceRecord) -> Value {
    serde_json::from_slice(r.value.as_ref().into_option().expect("a value")).expect("value is JSON")
}

pub fn key(r: &SourceRecord) -> String {
    String::from_utf8(r.key.as_ref().into_option().expect("a key").to_vec()).unwrap()
}

pub fn header(r: &SourceRecord, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|h| h.key.as_str() == name)
        .and_then(|h| h.value.as_ref().into_option().map(|v| String::from_utf8(v.to_vec()).unwrap()))
}

pub fn offset(r: &SourceRecord) -> Value {
    serde_json::from_str(r.source.offset.as_str()).unwrap()
}

/// (modifiedTS, pk) of a record's offset, for order checks.
pub fn keyset(r: &SourceRecord) -> (String, i64) {
    let o = offset(r);
    (o["modifiedTS"].as_str().unwrap().to_string(), o["pk"].as_i64().unwrap())
}
