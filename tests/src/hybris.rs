//! A throwaway PostgreSQL database with the Hybris layout and (optionally)
//! the sample data, for the hybris-source end-to-end tests; dropped on drop.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use serde_json::Value;

use crate::{s3::Bucket, service_env};

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

/// One JSON object the s3-sink wrote: its key, the partition and start
/// offset parsed from the key, and its records.
pub struct Object {
    pub key: String,
    pub partition: i32,
    pub start: i64,
    pub records: Vec<Value>,
}

/// Parses `<dir>/<topic>/partition=<n>/<topic>+<n>+<offset padded to 10>.json`.
pub fn parse_key(key: &str, dir: &str, topic: &str) -> Result<(i32, i64), String> {
    let rest = key.strip_prefix(&format!("{dir}/{topic}/partition=")).ok_or("wrong prefix")?;
    let (partition, file) = rest.split_once('/').ok_or("no file name")?;
    let partition: i32 = partition.parse().map_err(|_| "partition is not a number")?;
    let name = file.strip_suffix(".json").ok_or("not .json")?;
    let offset = name.strip_prefix(&format!("{topic}+{partition}+")).ok_or("file name is not <topic>+<partition>+")?;
    if offset.len() != 10 || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return Err("start offset is not zero-padded to 10 digits".into());
    }
    Ok((partition, offset.parse().map_err(|_| "offset")?))
}

/// Every object under `<dir>/` of `bucket`, each key checked against
/// Confluent's naming for `topic`.
pub fn objects(bucket: &Bucket, dir: &str, topic: &str) -> Vec<Object> {
    bucket
        .keys(&format!("{dir}/"))
        .into_iter()
        .map(|key| {
            let (partition, start) = parse_key(&key, dir, topic)
                .unwrap_or_else(|e| panic!("object key {key} does not follow Confluent's naming: {e}"));
            let records = bucket
                .text(&key)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: not JSON ({e}): {l}")))
                .collect();
            Object { key, partition, start, records }
        })
        .collect()
}

/// Every order version of `expected` ((pk, modifiedTS) → code, from
/// [`HybrisDb::order_versions`]) is in exactly one record of `objects`,
/// with its code, and nothing else is.
pub fn assert_every_version_once(expected: &BTreeMap<(i64, String), String>, objects: &[Object]) {
    let mut seen: BTreeMap<(i64, String), &str> = BTreeMap::new();
    for o in objects {
        for r in &o.records {
            let id = (r["pk"].as_i64().expect("pk"), r["modifiedTS"].as_str().expect("modifiedTS").to_string());
            assert!(expected.contains_key(&id), "{}: unexpected event {r}", o.key);
            assert_eq!(r["code"].as_str(), Some(expected[&id].as_str()), "{}: wrong code in {r}", o.key);
            if let Some(first) = seen.insert(id.clone(), &o.key) {
                panic!("event {id:?} written twice: in {first} and {}", o.key);
            }
        }
    }
    let missing: Vec<_> = expected.keys().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "events missing from S3: {missing:?}");
}

/// The objects of each partition tile its offsets from 0 with no gap or
/// overlap, and the events of one order sit on one partition in the order
/// they happened (by modifiedTS).
pub fn assert_tiled_and_in_order(objects: &[Object]) {
    // Objects of one partition tile its offsets from 0 with no gap or overlap.
    let mut by_partition: BTreeMap<i32, Vec<&Object>> = BTreeMap::new();
    for o in objects {
        by_partition.entry(o.partition).or_default().push(o);
    }
    for (partition, list) in by_partition.iter_mut() {
        list.sort_by_key(|o| o.start);
        let mut next = 0;
        for o in list.iter() {
            assert_eq!(
                o.start, next,
                "partition {partition}: {} does not start where the previous object ended",
                o.key
            );
            next += o.records.len() as i64;
        }
    }

    // Per order: one partition, events in the order they happened.
    let mut per_order: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    for o in objects {
        for (i, r) in o.records.iter().enumerate() {
            let code = r["code"].as_str().expect("code").to_string();
            let ts = r["modifiedTS"].as_str().expect("modifiedTS").to_string();
            per_order.entry(code).or_default().push((o.partition, o.start + i as i64, ts));
        }
    }
    for (code, mut events) in per_order {
        let partitions: BTreeSet<i32> = events.iter().map(|e| e.0).collect();
        assert_eq!(partitions.len(), 1, "order {code} is spread over partitions {partitions:?}");
        events.sort_by_key(|e| e.1);
        for pair in events.windows(2) {
            assert!(pair[0].2 < pair[1].2, "order {code}: events out of order by offset: {pair:?}");
        }
    }
}
