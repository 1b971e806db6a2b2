//! hybris-source against a real PostgreSQL holding the Hybris layout
//! (fixtures/hybris-schema.sql + sample-data.sql), driven in-process through
//! the connector traits.

mod common;

use std::collections::HashSet;

use common::*;
use connector_api::{ConnectorConfig, ErrorKind, SourceConnector, SourceOffset};
use sluice_hybris_source::HybrisSource;

#[test]
fn incremental_poll_picks_up_inserts_and_updates_in_keyset_order() {
    let mut db = TestDb::new("incremental", true);
    let mut task = task(&db.config("Order"), &[]);

    let first = poll_until(&mut task, 3, 100);
    assert_eq!(first.iter().map(key).collect::<Vec<_>>(), vec!["00001000", "00001001", "00001002"]);

    // Record shape: key, topic, headers, value fields, offset.
    let r = &first[0];
    assert_eq!(r.topic.as_str(), "hybris.order");
    assert_eq!(header(r, "hybris.type").as_deref(), Some("Order"));
    assert_eq!(r.source.partition.as_str(), r#"{"itemtype":"Order"}"#);
    let v = value(r);
    assert_eq!(v["type"], "Order");
    assert_eq!(v["pk"], 8796093612055i64);
    assert_eq!(v["code"], "00001000");
    assert_eq!(v["op"], "create");
    assert_eq!(v["createdTS"], "2025-03-03T10:00:00.000000");
    assert_eq!(v["modifiedTS"], "2025-03-03T10:00:00.000000");
    assert_eq!(v["user"], 8796093054980i64, "references are PKs");
    assert_eq!(v["guid"], "a1b2c3d4-0001");
    assert!(v.get("p_code").is_none() && v.get("hjmpts").is_none(), "only p_ attributes, prefix stripped: {v}");
    assert_eq!(offset(r), serde_json::json!({"modifiedTS": "2025-03-03T10:00:00.000000", "pk": 8796093612055i64}));
    assert_eq!(value(&first[1])["op"], "update", "00001001 was modified after it was created");

    // A new order and an update of an existing one, both committed in the past.
    db.insert_order(8796200000001, "00002000", 60, 60);
    db.exec(&format!(
        "UPDATE orders SET p_status = 8796093775963, hjmpts = hjmpts + 1, modifiedts = {} WHERE p_code = '00001000'",
        utc_now_minus(30.0)
    ));
    let next = poll_until(&mut task, 2, 100);
    assert_eq!(next.iter().map(key).collect::<Vec<_>>(), vec!["00002000", "00001000"]);
    assert_eq!(value(&next[0])["op"], "create");
    assert_eq!(value(&next[1])["op"], "update");
    assert_eq!(value(&next[1])["status"], 8796093775963i64);

    let all: Vec<_> = first.iter().chain(&next).map(keyset).collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "records come in (modifiedTS, PK) order");
    assert!(drain(&mut task, 100).is_empty(), "nothing is emitted twice");
}

#[test]
fn type_filter_separates_customers_from_employees_in_users() {
    let db = TestDb::new("typefilter", true);
    let mut customers = task(&db.config("Customer"), &[]);
    let got = drain(&mut customers, 100);
    let uids: Vec<_> = got.iter().map(key).collect();
    assert_eq!(uids.len(), 5, "{uids:?}");
    assert!(!uids.contains(&"admin".to_string()) && !uids.contains(&"csagent".to_string()), "{uids:?}");
    assert!(got.iter().all(|r| r.topic.as_str() == "hybris.customer"));
    assert_eq!(value(&got[0])["uid"], key(&got[0]));

    let mut employees = task(&db.config("Employee"), &[]);
    let got: HashSet<_> = drain(&mut employees, 100).iter().map(key).collect();
    assert_eq!(got, HashSet::from(["admin".to_string(), "csagent".to_string()]));
}

#[test]
fn restart_from_the_committed_offset_resumes_without_gap_or_duplicate() {
    let db = TestDb::new("restart", true);
    let config = db.config("Customer").with("batch.max.rows", "2");
    let mut everything = task(&config, &[]);
    let all: Vec<_> = drain(&mut everything, 100).iter().map(key).collect();
    assert_eq!(all.len(), 5);

    let mut first = task(&config, &[]);
    let head = poll_until(&mut first, 2, 2);
    assert_eq!(head.len(), 2);
    let committed = head[1].source.clone();
    drop(first);

    let mut second = task(&config, &[SourceOffset::new("{\"itemtype\": \"Customer\"}", committed.offset.to_string())]);
    let tail: Vec<_> = drain(&mut second, 100).iter().map(key).collect();
    let resumed: Vec<_> = head.iter().map(key).chain(tail).collect();
    assert_eq!(resumed, all);
}

#[test]
fn rows_sharing_a_modified_ts_across_batch_boundaries_are_each_emitted_once() {
    let mut db = TestDb::new("samets", true);
    let ts = utc_now_minus(120.0);
    let mut values = Vec::new();
    for i in 0..7 {
        values.push(format!(
            "(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'SAME-{i}', 8796093054980)",
            8796300000000i64 + (7 - i) * 10
        ));
    }
    // One statement: every row gets the very same modifiedts.
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
        values.join(", ")
    ));
    let mut task = task(&db.config("Order").with("batch.max.rows", "3"), &[]);
    let got = drain(&mut task, 3);
    let keys: Vec<_> = got.iter().map(key).collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 10, "a duplicate: {keys:?}");
    let same: Vec<_> = got.iter().filter(|r| key(r).starts_with("SAME-")).map(keyset).collect();
    assert_eq!(same.len(), 7);
    assert!(same.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1), "PK order within one ts: {same:?}");
}

#[test]
fn rows_inside_the_lag_window_wait_until_they_are_older_than_the_lag() {
    let mut db = TestDb::new("lag", false);
    db.insert_order(8796200000010, "OLD", 120, 120);
    db.insert_order(8796200000011, "RECENT", 30, 30);
    // A 60 s lag: RECENT (30 s old) is still inside the window.
    let mut lagging = task(&db.config("Order").with("hybris.poll.lag.ms", "60000"), &[]);
    let got: Vec<_> = drain(&mut lagging, 100).iter().map(key).collect();
    assert_eq!(got, vec!["OLD"]);
    // A transaction still open holds LATE, written before RECENT: while it
    // is open the poller must not move past it.
    let mut open_tx = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let mut tx = open_tx.transaction().unwrap();
    tx.batch_execute(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) \
         VALUES (1, {ts}, {ts}, {ORDER_TYPE_PK}, 8796200000012, 'LATE', 8796093054980)",
        ts = utc_now_minus(40.0)
    ))
    .unwrap();
    assert!(drain(&mut lagging, 100).is_empty());
    tx.commit().unwrap();
    // With a 1 s lag (same database clock) both are old enough, and LATE
    // comes in its (modifiedTS, PK) place, before RECENT.
    let mut short = task(&db.config("Order").with("hybris.poll.lag.ms", "1000"), &[]);
    let got: Vec<_> = drain(&mut short, 100).iter().map(key).collect();
    assert_eq!(got, vec!["OLD", "LATE", "RECENT"]);
}

#[test]
fn routes_by_an_enum_field_and_emits_deletions_as_tombstones() {
    let mut db = TestDb::new("routing", true);
    let config =
        db.config("Order").with("topic.route.field", "channel").with("hybris.deletions.table", "itemdeletionmarkers");
    let mut task = task(&config, &[]);
    let got = poll_until(&mut task, 3, 100);
    let topics: Vec<_> = got.iter().map(|r| r.topic.to_string()).collect();
    assert_eq!(topics, vec!["hybris.order.online", "hybris.order.store", "hybris.order.international"]);
    assert!(offset(&got[0]).get("deletion").is_some());

    db.exec(&format!(
        "DELETE FROM orders WHERE p_code = '00001001'; \
         INSERT INTO itemdeletionmarkers (createdts, modifiedts, pk, p_itemtype, p_itempk, p_businesskey) \
         VALUES ({ts}, {ts}, 8796200000100, 'Order', 8796093644823, '00001001'), \
                ({ts}, {ts}, 8796200000101, 'Customer', 8796093054980, 'anna.schmidt@example.com')",
        ts = utc_now_minus(10.0)
    ));
    let deleted = poll_until(&mut task, 1, 100);
    assert_eq!(deleted.len(), 1, "only the Order marker");
    let t = &deleted[0];
    assert_eq!(key(t), "00001001");
    assert!(t.value.is_none(), "a tombstone");
    assert_eq!(t.topic.as_str(), "hybris.order");
    assert_eq!(header(t, "hybris.op").as_deref(), Some("delete"));
    assert_eq!(offset(t)["deletion"]["pk"], 8796200000101i64 - 1);
    assert_eq!(offset(t)["pk"], 8796093677591i64, "the change cursor is kept");

    // Resuming from that offset re-emits nothing.
    let mut again = common::task(&config, std::slice::from_ref(&t.source));
    assert!(drain(&mut again, 100).is_empty());
}

#[test]
fn a_dropped_connection_is_retriable_and_loses_no_row() {
    let mut db = TestDb::new("transient", true);
    let mut task = task(&db.config("Order"), &[]);
    assert_eq!(poll_until(&mut task, 3, 100).len(), 3);
    db.insert_order(8796200000020, "AFTER-OUTAGE", 60, 60);
    let dbname = db.url.rsplit('/').next().unwrap().to_string();
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'sluice-hybris-source' AND datname = '{dbname}'"
    ));
    // The next query fails as Retriable; the one after reconnects and goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = Vec::new();
    let mut saw_retriable = false;
    while got.is_empty() && std::time::Instant::now() < deadline {
        match task.poll(100) {
            Ok(records) => got.extend(records),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
                saw_retriable = true;
            }
        }
    }
    assert!(saw_retriable, "the killed connection was noticed");
    assert_eq!(got.iter().map(key).collect::<Vec<_>>(), vec!["AFTER-OUTAGE"]);
}

fn issue_keys(config: &ConnectorConfig) -> Vec<(String, String)> {
    HybrisSource.validate(config).into_iter().map(|i| (i.key.to_string(), i.message.to_string())).collect()
}

#[test]
fn validation_names_the_key_at_fault() {
    let db = TestDb::new("validate", true);
    assert_eq!(issue_keys(&db.config("Order,Customer,Product")), vec![]);

    let unknown = issue_keys(&db.config("Order,Enrollment"));
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].0, "hybris.item.types");
    assert!(unknown[0].1.contains("Enrollment"), "{unknown:?}");

    let missing = issue_keys(&db.config("Enrollment").with("hybris.item.Enrollment.table", "eventregistrations"));
    assert_eq!(missing[0].0, "hybris.item.Enrollment.table", "{missing:?}");
    assert!(missing[0].1.contains("eventregistrations"));

    let bad_user = issue_keys(&db.config("Order").with("hybris.jdbc.user", "nobody_here"));
    assert_eq!(bad_user[0].0, "hybris.jdbc.user", "{bad_user:?}");

    let unreachable = issue_keys(
        &db.config("Order")
            .with("hybris.jdbc.url", "postgres://postgres@127.0.0.1:1/hybris")
            .with("hybris.jdbc.connect.timeout.ms", "2000"),
    );
    assert_eq!(unreachable[0].0, "hybris.jdbc.url", "{unreachable:?}");

    let no_db = issue_keys(&db.config("Order").with("hybris.jdbc.url", format!("{}_missing", db.url)));
    assert_eq!(no_db[0].0, "hybris.jdbc.url", "{no_db:?}");

    // odata mode has keys of its own (tested in tests/tests/hybris_odata.rs).
    let odata = issue_keys(&db.config("Order").with("hybris.mode", "odata"));
    assert!(odata.iter().any(|(k, m)| k == "hybris.odata.user" && m.contains("required")), "{odata:?}");

    let no_url = issue_keys(&db.config("Order").with("hybris.jdbc.url", ""));
    assert_eq!(no_url[0].0, "hybris.jdbc.url", "{no_url:?}");

    // MySQL/MariaDB URLs are tested in tests/mariadb.rs; other databases are refused.
    let other = issue_keys(&db.config("Order").with("hybris.jdbc.url", "jdbc:oracle:thin:@db:1521/hybris"));
    assert_eq!(other[0].0, "hybris.jdbc.url");
    assert!(other[0].1.contains("jdbc:postgresql://"), "{other:?}");

    let zone = issue_keys(&db.config("Order").with("hybris.db.timezone", "Mars/Olympus_Mons"));
    assert_eq!(zone[0].0, "hybris.db.timezone", "{zone:?}");

    let deletions = issue_keys(&db.config("Order").with("hybris.deletions.table", "nodeletions"));
    assert_eq!(deletions[0].0, "hybris.deletions.table", "{deletions:?}");
}

#[test]
fn task_configs_give_one_task_per_item_type() {
    let config = ConnectorConfig::new()
        .with("hybris.jdbc.url", "postgres://x/y")
        .with("hybris.item.types", "Order,Customer,Product");
    let tasks = HybrisSource.task_configs(&config, 8).unwrap();
    let types: Vec<_> = tasks.iter().map(|c| c.get("hybris.item.types").unwrap().to_string()).collect();
    assert_eq!(types, vec!["Order", "Customer", "Product"]);
    assert!(tasks.iter().all(|c| c.get("hybris.jdbc.url") == Some("postgres://x/y")));

    let two = HybrisSource.task_configs(&config, 2).unwrap();
    let types: Vec<_> = two.iter().map(|c| c.get("hybris.item.types").unwrap().to_string()).collect();
    assert_eq!(types, vec!["Order,Product", "Customer"]);

    let defaults = HybrisSource.task_configs(&ConnectorConfig::new(), 10).unwrap();
    assert_eq!(defaults.len(), 3, "default hybris.item.types is Order,Customer,Product");
}

#[test]
fn a_task_with_several_types_polls_them_all() {
    let db = TestDb::new("multitype", true);
    let mut task = task(&db.config("Order,Customer,Product"), &[]);
    let got = drain(&mut task, 100);
    let mut per_topic = std::collections::BTreeMap::new();
    for r in &got {
        *per_topic.entry(r.topic.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        per_topic.into_iter().collect::<Vec<_>>(),
        vec![("hybris.customer".to_string(), 5), ("hybris.order".to_string(), 3), ("hybris.product".to_string(), 5)]
    );
}

#[test]
fn changes_and_deletions_interleave_in_time_order_across_small_batches() {
    let mut db = TestDb::new("interleave", false);
    // Changes at -100, -90, …; deletion markers in between, at -95, -85, …
    let mut changes = Vec::new();
    let mut markers = Vec::new();
    for i in 0..5i64 {
        let (c, d) = (utc_now_minus(100.0 - 10.0 * i as f64), utc_now_minus(95.0 - 10.0 * i as f64));
        changes.push(format!("(1, {c}, {c}, {ORDER_TYPE_PK}, {}, 'C{i}', 8796093054980)", 8796400000000i64 + i));
        markers.push(format!("({d}, {d}, {}, 'Order', {}, 'D{i}')", 8796500000000i64 + i, 8796600000000i64 + i));
    }
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}; \
         INSERT INTO itemdeletionmarkers (createdts, modifiedts, pk, p_itemtype, p_itempk, p_businesskey) VALUES {}",
        changes.join(", "),
        markers.join(", ")
    ));
    let config = db.config("Order").with("batch.max.rows", "2").with("hybris.deletions.table", "itemdeletionmarkers");
    let mut t = task(&config, &[]);
    let got = drain(&mut t, 2);
    let keys: Vec<_> = got.iter().map(key).collect();
    assert_eq!(keys, vec!["C0", "D0", "C1", "D1", "C2", "D2", "C3", "D3", "C4", "D4"]);
    assert!(got.iter().all(|r| r.value.is_none() == key(r).starts_with('D')));

    // Restarting from any record's offset re-emits exactly what follows it.
    for (i, r) in got.iter().enumerate() {
        let mut resumed = task(&config, std::slice::from_ref(&r.source));
        let rest: Vec<_> = drain(&mut resumed, 2).iter().map(key).collect();
        assert_eq!(rest, keys[i + 1..].to_vec(), "resuming after {}", keys[i]);
    }
}

#[test]
fn the_demo_simulator_steps_reach_the_topics_once_each() {
    let mut db = TestDb::new("simulator", true);
    for _ in 0..3 {
        db.exec(SIMULATE_STEP);
    }
    let codes: HashSet<String> =
        db.client.query("SELECT p_code FROM orders", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let uids: HashSet<String> = db
        .client
        .query("SELECT p_uid FROM users WHERE typepkstring = $1", &[&CUSTOMER_TYPE_PK])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!((codes.len(), uids.len()), (6, 8));

    // The simulator writes "now": poll (with a deadline) until the 1 s lag has passed.
    let mut t = task(&db.config("Order,Customer").with("topic.route.field", "channel"), &[]);
    let got = poll_until(&mut t, codes.len() + uids.len(), 100);
    let orders: Vec<_> = got.iter().filter(|r| header(r, "hybris.type").as_deref() == Some("Order")).collect();
    assert_eq!(orders.iter().map(|r| key(r)).collect::<HashSet<_>>(), codes);
    assert_eq!(orders.len(), codes.len(), "each order once (its latest state)");
    assert!(orders.iter().all(|r| r.topic.starts_with("hybris.order.")), "routed by channel");
    let customers: HashSet<_> =
        got.iter().filter(|r| header(r, "hybris.type").as_deref() == Some("Customer")).map(key).collect();
    assert_eq!(customers, uids);
    assert!(drain(&mut t, 100).is_empty());
}
