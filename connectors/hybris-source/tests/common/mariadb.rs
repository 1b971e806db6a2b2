//! MariaDB (or MySQL) support for the jdbc-mode tests: a fresh database per
//! test on the `dev/services` server (`MYSQL_URL`) with the MySQL version of
//! the Hybris fixture loaded.

use std::sync::atomic::{AtomicUsize, Ordering};

use connector_api::ConnectorConfig;
use mysql::{prelude::Queryable, Conn, Opts, OptsBuilder};

use super::ORDER_TYPE_PK;

pub const SCHEMA: &str = include_str!("../../fixtures/mysql/hybris-schema.sql");
pub const SAMPLE: &str = include_str!("../../fixtures/mysql/sample-data.sql");
pub const SIMULATE_STEP: &str = include_str!("../../fixtures/mysql/simulate-step.sql");

pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| {
        panic!(
            "MYSQL_URL is not set: start MariaDB with `dev/services up` (or `dev/services up-mysql`) and run the \
             tests with `eval \"$(dev/services env)\"` (see dev/services)"
        )
    })
}

/// `mysql://…/hybris` → the same server with another database name.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, rest) = url.rsplit_once('/').expect("MYSQL_URL has a /database");
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{base}/{db}{query}")
}

/// A connection over TCP to exactly the URL's host (the driver would switch
/// to the server's socket for 127.0.0.1 otherwise).
pub fn connect(url: &str) -> Result<Conn, mysql::Error> {
    let opts = Opts::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    Conn::new(OptsBuilder::from_opts(opts).prefer_socket(false))
}

pub fn admin() -> Conn {
    connect(&mysql_url()).unwrap_or_else(|e| panic!("cannot connect to MYSQL_URL ({e}): is `dev/services up` running?"))
}

/// A database of its own for one test.
pub struct MyTestDb {
    pub name: String,
    pub url: String,
    pub conn: Conn,
}

impl MyTestDb {
    /// Creates `hyb_<test>_<pid>_<n>` and loads the schema (and the sample data).
    pub fn new(test: &str, sample: bool) -> MyTestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("hyb_{test}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut admin = admin();
        admin.query_drop(format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        admin.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")).unwrap();
        let url = with_database(&mysql_url(), &name);
        let mut conn = connect(&url).unwrap();
        conn.query_drop(SCHEMA).unwrap_or_else(|e| panic!("loading fixtures/mysql/hybris-schema.sql: {e}"));
        if sample {
            conn.query_drop(SAMPLE).unwrap_or_else(|e| panic!("loading fixtures/mysql/sample-data.sql: {e}"));
        }
        MyTestDb { name, url, conn }
    }

    pub fn config(&self, types: &str) -> ConnectorConfig {
        ConnectorConfig::new()
            .with("hybris.mode", "jdbc")
            .with("hybris.jdbc.url", format!("jdbc:{}", self.url))
            .with("hybris.item.types", types)
            .with("poll.interval.ms", "10")
            .with("hybris.poll.lag.ms", "1000")
    }

    pub fn exec(&mut self, sql: &str) {
        self.conn.query_drop(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
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

impl Drop for MyTestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = connect(&mysql_url()) {
            let _ = admin.query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

/// The database clock in UTC minus `seconds`, as a DATETIME(6) expression.
pub fn utc_now_minus(seconds: f64) -> String {
    format!("(UTC_TIMESTAMP(6) - INTERVAL {} MICROSECOND)", (seconds * 1_000_000.0) as i64)
}
