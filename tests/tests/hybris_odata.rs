//! hybris-source in `hybris.mode=odata` against the OData v2 fake of
//! `sluice_tests::odata` (the Integration API's shapes, backed by the same
//! PostgreSQL Hybris-layout database jdbc mode reads): driven in-process
//! through the connector traits, and once through a real worker and Kafka.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use connector_api::{ConnectorConfig, ErrorKind, Host, SourceConnector, SourceOffset, SourceRecord, SourceTask};
use rdkafka::Message;
use serde_json::{json, Value};
use sluice_hybris_source::{HybrisSource, HybrisTask};
use sluice_tests::{consume, hybris::HybrisDb, odata::ODataServer, unique, WorkerProcess};

const ORDER_TYPE_PK: i64 = 8796093317202;
const DEADLINE: Duration = Duration::from_secs(30);

/// A database of its own (named after the test) with the Hybris schema and,
/// when `sample`, the sample data.
fn test_db(test: &str, sample: bool) -> HybrisDb {
    HybrisDb::create(&format!("hyb_odata_{test}"), sample)
}

trait InsertOrders {
    fn insert_orders(&mut self, rows: &[(i64, String, f64)]);
}

impl InsertOrders for HybrisDb {
    /// Inserts orders `(pk, code, seconds ago)`; timestamps at millisecond
    /// precision, as Hybris writes them.
    fn insert_orders(&mut self, rows: &[(i64, String, f64)]) {
        let values: Vec<String> = rows
            .iter()
            .map(|(pk, code, ago)| {
                let ts = ago_ms(*ago);
                format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {pk}, '{code}', 8796093054980, 8796093874267, {ts}, 12.5)")
            })
            .collect();
        self.exec(&format!(
            "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user, p_channel, p_date, \
             p_totalprice) VALUES {}",
            values.join(", ")
        ));
    }
}

/// "Now" minus `seconds` in the database's zone-less UTC, to the millisecond.
fn ago_ms(seconds: f64) -> String {
    format!("date_trunc('milliseconds', now() AT TIME ZONE 'UTC' - interval '{seconds} seconds')")
}

fn config(pairs: Vec<(&'static str, String)>, types: &str) -> ConnectorConfig {
    pairs
        .into_iter()
        .fold(ConnectorConfig::new(), |c, (k, v)| c.with(k, v))
        .with("hybris.item.types", types)
        .with("poll.interval.ms", "10")
        .with("hybris.poll.lag.ms", "1000")
}

fn task(config: &ConnectorConfig, committed: &[SourceOffset]) -> HybrisTask {
    let mut task = HybrisSource.create_task(config, Host::stderr()).expect("create_task");
    SourceTask::start(&mut task, committed).expect("start");
    task
}

/// Polls until the task has been idle three polls in a row (everything
/// visible read), retrying Retriable errors as the runtime does; returns
/// the records and how many Retriable errors it met. Any other error fails.
fn drain(task: &mut HybrisTask, max_records: usize) -> (Vec<SourceRecord>, usize) {
    let deadline = Instant::now() + DEADLINE;
    let (mut out, mut retried, mut empty) = (Vec::new(), 0, 0);
    while empty < 3 {
        assert!(Instant::now() < deadline, "still polling at the deadline; {} records so far", out.len());
        match SourceTask::poll(task, max_records) {
            Ok(batch) if batch.is_empty() => empty += 1,
            Ok(batch) => {
                empty = 0;
                out.extend(batch);
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
                retried += 1;
                empty = 0;
            }
        }
    }
    (out, retried)
}

/// Polls until `want` records arrived, with no error allowed.
fn poll_until(task: &mut HybrisTask, want: usize, max_records: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(Instant::now() < deadline, "{} of {want} records before the deadline", out.len());
        out.extend(SourceTask::poll(task, max_records).expect("poll"));
    }
    out
}

fn key(r: &SourceRecord) -> String {
    String::from_utf8(r.key.as_ref().into_option().expect("a key").to_vec()).unwrap()
}

fn offset(r: &SourceRecord) -> Value {
    serde_json::from_str(r.source.offset.as_str()).unwrap()
}

/// (modifiedTS, integrationKey) of a record's offset: odata mode's order.
fn odata_keyset(r: &SourceRecord) -> (String, String) {
    let o = offset(r);
    (o["modifiedTS"].as_str().unwrap().to_string(), o["integrationKey"].as_str().unwrap().to_string())
}

fn assert_once_in_order(records: &[SourceRecord]) {
    let keys: Vec<_> = records.iter().map(key).collect();
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len(), "a duplicate: {keys:?}");
    let order: Vec<_> = records.iter().map(odata_keyset).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "not in (modifiedtime, integrationKey) order: {order:?}");
}

#[test]
fn odata_paging_reads_every_row_once_in_modifiedtime_key_order() {
    let mut db = test_db("paging", false);
    // 23 orders, some sharing a modifiedtime, codes not in PK order.
    let rows: Vec<(i64, String, f64)> =
        (0..23).map(|i| (8796300000000 + (23 - i), format!("P{:03}", (i * 7) % 23), 200.0 - (i / 3) as f64)).collect();
    db.insert_orders(&rows);
    let server = ODataServer::start(&db.url);
    let mut t = task(&config(server.basic_config(), "Order").with("batch.max.rows", "4"), &[]);
    let (got, retried) = drain(&mut t, 100);
    assert_eq!(retried, 0);
    assert_eq!(got.len(), 23, "{:?}", got.iter().map(key).collect::<Vec<_>>());
    assert_once_in_order(&got);
    let expected: HashSet<String> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(got.iter().map(key).collect::<HashSet<_>>(), expected);

    // It paged: $top=4 with $skip moving on inside a scan, and the count asked for.
    let reads: Vec<_> = server.requests().into_iter().filter(|r| r.path.ends_with("/Orders")).collect();
    assert!(reads.iter().all(|r| r.query.get("$top").map(String::as_str) == Some("4")), "{reads:?}");
    assert!(reads.iter().all(|r| r.query.get("$inlinecount").map(String::as_str) == Some("allpages")));
    assert!(reads.iter().any(|r| r.query.get("$skip").map(String::as_str) == Some("4")), "{reads:?}");
    assert!(reads.iter().all(|r| r.query["$orderby"] == "modifiedtime asc,integrationKey asc"));
}

#[test]
fn odata_keyset_paging_reads_every_row_once_without_skip() {
    let mut db = test_db("keyset", true);
    let rows: Vec<(i64, String, f64)> =
        (0..11).map(|i| (8796300000200 + (11 - i), format!("Q{:02}", (i * 5) % 11), 150.0 - (i / 4) as f64)).collect();
    db.insert_orders(&rows);
    let server = ODataServer::start(&db.url);
    let config =
        config(server.basic_config(), "Order").with("batch.max.rows", "3").with("hybris.odata.paging", "keyset");
    let (got, _) = drain(&mut task(&config, &[]), 100);
    assert_eq!(got.len(), 14);
    assert_once_in_order(&got);
    let reads: Vec<_> = server.requests().into_iter().filter(|r| r.path.ends_with("/Orders")).collect();
    assert!(reads.len() >= 5, "14 rows in pages of 3: {reads:?}");
    assert!(reads.iter().all(|r| r.query["$skip"] == "0"), "{reads:?}");
}

#[test]
fn odata_rows_leaving_the_window_while_paging_are_neither_skipped_nor_lost() {
    let mut db = test_db("moving", false);
    let rows: Vec<(i64, String, f64)> =
        (0..12).map(|i| (8796300000300 + i, format!("M{i:02}"), 100.0 - i as f64)).collect();
    db.insert_orders(&rows);
    let server = ODataServer::start(&db.url);
    let mut t = task(&config(server.basic_config(), "Order").with("batch.max.rows", "3"), &[]);
    let mut got = poll_until(&mut t, 3, 3);
    assert_eq!(got.iter().map(key).collect::<Vec<_>>(), vec!["M00", "M01", "M02"]);

    // The scan goes on with $skip=3; M01 (already read) and M07 (not yet)
    // change now. Both leave the scan's window: without the __count check
    // the next $skip would jump over M03.
    db.exec(&format!(
        "UPDATE orders SET hjmpts = hjmpts + 1, modifiedts = {} WHERE p_code IN ('M01', 'M07')",
        ago_ms(0.0)
    ));
    got.extend(poll_until(&mut t, 10, 3));
    let keys: Vec<_> = got.iter().map(key).collect();
    let mut expected: Vec<String> = (0..12).filter(|i| *i != 7).map(|i| format!("M{i:02}")).collect();
    expected.extend(["M01".to_string(), "M07".to_string()]);
    assert_eq!(keys, expected, "every row once, the changed ones again at their new place");
    assert!(drain(&mut t, 3).0.is_empty());
    let reads: Vec<_> = server.requests().into_iter().filter(|r| r.path.ends_with("/Orders")).collect();
    let counts: HashSet<_> = reads.iter().filter_map(|r| r.query.get("$skip")).collect();
    assert!(counts.contains(&"3".to_string()), "it paged with $skip: {reads:?}");
}

#[test]
fn odata_rows_sharing_a_modifiedtime_across_a_page_boundary_are_each_read_once() {
    let mut db = test_db("samets", true);
    let ts = ago_ms(120.0);
    let values: Vec<String> = (0..7)
        .map(|i| format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'SAME-{i}', 8796093054980)", 8796300000000i64 + (7 - i)))
        .collect();
    // One statement: every row gets the very same modifiedts.
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
        values.join(", ")
    ));
    let server = ODataServer::start(&db.url);
    let config = config(server.basic_config(), "Order").with("batch.max.rows", "3");
    let mut t = task(&config, &[]);
    let (got, _) = drain(&mut t, 3);
    let keys: Vec<_> = got.iter().map(key).collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert_once_in_order(&got);

    // A restart from any record's offset (a page end or not) reads exactly
    // what follows it: the tie-break neither skips nor repeats the group.
    for (i, r) in got.iter().enumerate() {
        let mut resumed = task(&config, std::slice::from_ref(&r.source));
        let rest: Vec<_> = drain(&mut resumed, 3).0.iter().map(key).collect();
        assert_eq!(rest, keys[i + 1..].to_vec(), "resuming after {}", keys[i]);
    }
}

#[test]
fn odata_rows_changed_after_a_poll_are_picked_up_by_the_next() {
    let mut db = test_db("changes", true);
    let server = ODataServer::start(&db.url);
    let mut t = task(&config(server.basic_config(), "Order"), &[]);
    let first = poll_until(&mut t, 3, 100);
    assert_eq!(first.iter().map(key).collect::<Vec<_>>(), vec!["00001000", "00001001", "00001002"]);

    db.insert_orders(&[(8796200000001, "00002000".into(), 60.0)]);
    db.exec(&format!(
        "UPDATE orders SET p_status = 8796093775963, hjmpts = hjmpts + 1, modifiedts = {} WHERE p_code = '00001000'",
        ago_ms(30.0)
    ));
    let next = poll_until(&mut t, 2, 100);
    assert_eq!(next.iter().map(key).collect::<Vec<_>>(), vec!["00002000", "00001000"]);
    let update: Value = serde_json::from_slice(next[1].value.as_ref().into_option().unwrap()).unwrap();
    assert_eq!((update["op"].as_str(), update["status"].as_i64()), (Some("update"), Some(8796093775963)));
    assert!(drain(&mut t, 100).0.is_empty(), "nothing read twice");
}

#[test]
fn odata_server_errors_and_slow_answers_are_retried_without_gap_or_duplicate() {
    let mut db = test_db("faults", false);
    let rows: Vec<(i64, String, f64)> =
        (0..12).map(|i| (8796300000100 + i, format!("F{i:02}"), 100.0 - (i / 2) as f64)).collect();
    db.insert_orders(&rows);
    let server = ODataServer::start(&db.url);
    let config =
        config(server.basic_config(), "Order").with("batch.max.rows", "3").with("hybris.odata.timeout.ms", "1000");
    let mut t = task(&config, &[]);
    let mut got = poll_until(&mut t, 3, 3);

    // Two 500s mid-scan, then an answer slower than the request timeout.
    server.fail_next(2);
    let mut retried = 0;
    let deadline = Instant::now() + DEADLINE;
    while retried < 2 {
        assert!(Instant::now() < deadline, "the 500s were not reported");
        match SourceTask::poll(&mut t, 3) {
            Ok(batch) => got.extend(batch),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
                assert!(e.message().contains("500"), "{e}");
                retried += 1;
            }
        }
    }
    server.slow_next(1, Duration::from_secs(4));
    let (rest, timeouts) = drain(&mut t, 3);
    assert!(timeouts >= 1, "the slow answer should have timed out and been retried");
    got.extend(rest);
    assert_eq!(got.len(), 12, "{:?}", got.iter().map(key).collect::<Vec<_>>());
    assert_once_in_order(&got);
}

fn issues(config: &ConnectorConfig) -> Vec<(String, String)> {
    HybrisSource.validate(config).into_iter().map(|i| (i.key.to_string(), i.message.to_string())).collect()
}

#[test]
fn odata_validation_names_the_key_at_fault() {
    let db = test_db("validate", true);
    let server = ODataServer::start(&db.url);
    assert_eq!(issues(&config(server.basic_config(), "Order,Customer,Product")), vec![]);
    assert_eq!(issues(&config(server.oauth_config(), "Order,Customer,Product")), vec![]);

    let bad_password = issues(&config(server.basic_config(), "Order").with("hybris.odata.password", "wrong"));
    assert_eq!(bad_password.len(), 1, "{bad_password:?}");
    assert_eq!(bad_password[0].0, "hybris.odata.user");
    assert!(
        bad_password[0].1.contains("401") && bad_password[0].1.contains("hybris.odata.password"),
        "{bad_password:?}"
    );

    let bad_secret = issues(&config(server.oauth_config(), "Order").with("hybris.odata.oauth.client.secret", "nope"));
    assert_eq!(bad_secret[0].0, "hybris.odata.oauth.client.id", "{bad_secret:?}");
    assert!(bad_secret[0].1.contains("hybris.odata.oauth.client.secret"), "{bad_secret:?}");

    let unknown = issues(&config(server.basic_config(), "Order,Enrollment"));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0].0, "hybris.item.types");
    assert!(unknown[0].1.contains("Enrollment") && unknown[0].1.contains("Enrollments"), "{unknown:?}");
    let mapped =
        issues(&config(server.basic_config(), "Enrollment").with("hybris.item.Enrollment.entity.set", "Visits"));
    assert_eq!(mapped[0].0, "hybris.item.Enrollment.entity.set", "{mapped:?}");

    let no_object = issues(&config(server.basic_config(), "Order").with("hybris.odata.integration.object", "Nope"));
    assert_eq!(no_object[0].0, "hybris.odata.integration.object", "{no_object:?}");
    let unreachable = issues(
        &config(server.basic_config(), "Order")
            .with("hybris.odata.url", "http://127.0.0.1:1/odata2webservices")
            .with("hybris.odata.timeout.ms", "2000"),
    );
    assert_eq!(unreachable[0].0, "hybris.odata.url", "{unreachable:?}");
    let deletions =
        issues(&config(server.basic_config(), "Order").with("hybris.deletions.table", "itemdeletionmarkers"));
    assert_eq!(deletions[0].0, "hybris.deletions.table", "{deletions:?}");
}

#[test]
fn odata_oauth_token_refused_after_expiry_is_renewed() {
    let mut db = test_db("oauth", true);
    let server = ODataServer::start(&db.url);
    let mut t = task(&config(server.oauth_config(), "Order"), &[]);
    assert_eq!(poll_until(&mut t, 3, 100).len(), 3);
    assert_eq!(server.tokens_issued(), 1, "one token, cached");

    server.expire_tokens();
    db.insert_orders(&[(8796200000002, "AFTER-EXPIRY".into(), 30.0)]);
    let next = poll_until(&mut t, 1, 100);
    assert_eq!(next.iter().map(key).collect::<Vec<_>>(), vec!["AFTER-EXPIRY"]);
    assert_eq!(server.tokens_issued(), 2, "the refused token was renewed once");
    let refused = server.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "one 401, then the renewed token worked");
}

/// A record without its offset: what both modes must agree on.
fn comparable(r: &SourceRecord) -> (String, String, Value, Vec<(String, String)>, i64) {
    let value = serde_json::from_slice(r.value.as_ref().into_option().expect("a value")).expect("JSON value");
    let headers = r
        .headers
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8(h.value.as_ref().into_option().map(|v| v.to_vec()).unwrap_or_default()).unwrap(),
            )
        })
        .collect();
    (r.topic.to_string(), key(r), value, headers, r.timestamp.into_option().unwrap_or(-1))
}

#[test]
fn jdbc_and_odata_modes_write_identical_records_for_the_same_data() {
    let mut db = test_db("parity", true);
    // More orders at millisecond precision, two sharing one modifiedtime,
    // with a timestamp attribute and a decimal, and an updated customer.
    db.insert_orders(&[
        (8796200000011, "PAR-1".into(), 90.123),
        (8796200000012, "PAR-2".into(), 80.5),
        (8796200000013, "PAR-3".into(), 80.5),
    ]);
    db.exec(&format!(
        "UPDATE users SET p_name = 'Anna S.', modifiedts = {} WHERE p_uid = 'anna.schmidt@example.com'",
        ago_ms(70.25)
    ));
    let server = ODataServer::start(&db.url);
    let types = "Order,Customer,Product";
    let jdbc_config = config(vec![("hybris.mode", "jdbc".into()), ("hybris.jdbc.url", db.url.clone())], types);
    let odata_config = config(server.basic_config(), types);
    let (jdbc, _) = drain(&mut task(&jdbc_config, &[]), 100);
    let (odata, retried) = drain(&mut task(&odata_config, &[]), 100);
    assert_eq!(retried, 0);
    assert_eq!(jdbc.len(), 16, "3+3 orders, 5 customers, 5 products");

    let by_id = |records: &[SourceRecord]| -> BTreeMap<(String, String, String), _> {
        records
            .iter()
            .map(|r| ((r.topic.to_string(), key(r), offset(r)["modifiedTS"].to_string()), comparable(r)))
            .collect()
    };
    let (j, o) = (by_id(&jdbc), by_id(&odata));
    assert_eq!(j.keys().collect::<Vec<_>>(), o.keys().collect::<Vec<_>>());
    for (id, record) in &j {
        assert_eq!(record, &o[id], "record {id:?} differs between the modes");
    }
    // Same offsets, plus the integrationKey tie-break in odata mode.
    for r in &odata {
        let o = offset(r);
        let twin = jdbc.iter().find(|j| key(j) == key(r) && j.topic == r.topic).expect("the jdbc twin");
        assert_eq!((&o["modifiedTS"], &o["pk"]), (&offset(twin)["modifiedTS"], &offset(twin)["pk"]));
        assert_eq!(o["integrationKey"], key(r));
    }

    // Switching modes keeps the offsets: odata resumes after a jdbc offset
    // (inside the group of PAR-2/PAR-3) with exactly the rows after it.
    let orders: Vec<&SourceRecord> = jdbc.iter().filter(|r| r.topic.as_str() == "hybris.order").collect();
    let at = orders.iter().position(|r| key(r) == "PAR-2").expect("PAR-2");
    let mut resumed = task(&config(server.basic_config(), "Order"), std::slice::from_ref(&orders[at].source));
    let rest: HashSet<_> = drain(&mut resumed, 100).0.iter().map(key).collect();
    let expected: HashSet<_> = orders[at + 1..].iter().map(|r| key(r)).collect();
    assert_eq!(rest, expected);
}

#[test]
fn odata_through_a_worker_into_kafka_each_order_once_in_order() {
    let mut db = test_db("worker", true);
    let server = ODataServer::start(&db.url);
    let worker = WorkerProcess::start(&unique("hybris-odata"), &[], &[]);
    let prefix = format!("{}.", unique("odata"));
    let topic = format!("{prefix}order");
    let mut connector = json!({
        "connector.class": "hybris-source",
        "tasks.max": "1",
        "hybris.item.types": "Order",
        "hybris.poll.lag.ms": "500",
        "poll.interval.ms": "200",
        "batch.max.rows": "2",
        "topic.prefix": prefix,
        "topic.creation.default.partitions": "3",
    });
    for (k, v) in server.basic_config() {
        connector[k] = Value::String(v);
    }

    // Bad credentials: 400 at create, naming the key.
    let mut bad = connector.clone();
    bad["hybris.odata.password"] = json!("wrong");
    let (code, reply) = worker.request("POST", "/connectors", Some(&json!({"name": "bad", "config": bad}).to_string()));
    assert_eq!(code, 400, "{reply}");
    assert!(reply.to_string().contains("hybris.odata.user"), "{reply}");

    let (code, reply) =
        worker.request("POST", "/connectors", Some(&json!({"name": "odata", "config": connector}).to_string()));
    assert!(code == 201 || code == 200, "HTTP {code} {reply}\n{}", worker.log_text());
    worker.wait_tasks_state("odata", 1, "RUNNING", Duration::from_secs(60));

    // The sample orders and new ones; once they are in Kafka, updates of two
    // of them (a keyset poller sees the versions it polls, so the test waits
    // for the first versions before writing the second).
    db.insert_orders(&[(8796200000021, "W-1".into(), 20.0), (8796200000022, "W-2".into(), 20.0)]);
    consume(&topic, 3, 5, Duration::from_secs(60));
    db.exec(&format!("UPDATE orders SET modifiedts = {} WHERE p_code IN ('00001001', 'W-1')", ago_ms(10.0)));
    let expected = 3 + 2 + 2;
    let messages = consume(&topic, 3, expected, Duration::from_secs(60));
    let mut events: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for m in &messages {
        let code = String::from_utf8(m.key().expect("key").to_vec()).unwrap();
        let value: Value = serde_json::from_slice(m.payload().expect("value")).unwrap();
        let ts = value["modifiedTS"].as_str().unwrap().to_string();
        assert!(seen.insert((code.clone(), ts.clone())), "{code} at {ts} twice");
        events.entry(code).or_default().push((m.partition(), m.offset(), ts));
    }
    assert_eq!(events.keys().cloned().collect::<Vec<_>>(), vec!["00001000", "00001001", "00001002", "W-1", "W-2"]);
    for (code, list) in events {
        assert!(list.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1 && w[0].2 < w[1].2), "{code}: {list:?}");
    }
}
