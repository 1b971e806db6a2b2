//! A throwaway PostgreSQL database with the Hybris layout and (optionally)
//! the sample data, for the hybris-source end-to-end tests; dropped on drop.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use crate::service_env;

/// The text of a file in connectors/hybris-source/fixtures.
pub fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../connectors/hybris-source/fixtures").join(name)
}

pub struct HybrisDb {
    pub name: String,
    pub url: String,
    pub client: postgres::Client,
}

impl HybrisDb {
    /// A database named after `prefix` (and this process), with the schema
    /// and, when `sample`, the sample customers, products and orders.
    pub fn create(prefix: &str, sample: bool) -> HybrisDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut name = format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        name.truncate(63); // PostgreSQL's identifier limit
        let admin_url = service_env("PG_URL");
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to PG_URL");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).expect("drop an old database");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the database");
        let base = admin_url.rsplit_once('/').expect("PG_URL ends with /database").0;
        let url = format!("{base}/{name}");
        let mut db = HybrisDb { client: postgres::Client::connect(&url, postgres::NoTls).expect("connect"), name, url };
        db.exec("SET client_min_messages = warning");
        db.exec(&fixture("hybris-schema.sql"));
        if sample {
            db.exec(&fixture("sample-data.sql"));
        }
        db
    }

    pub fn exec(&mut self, sql: &str) {
        self.client.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Every live order version visible now: (pk, modifiedTS as the
    /// connector writes it) → code.
    pub fn order_versions(&mut self) -> BTreeMap<(i64, String), String> {
        let sql = "SELECT pk, to_char(modifiedts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), p_code FROM orders \
                   WHERE p_versionid IS NULL";
        let rows = self.client.query(sql, &[]).expect("query the order versions");
        rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect()
    }
}

impl Drop for HybrisDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&service_env("PG_URL"), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}
