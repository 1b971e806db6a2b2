//! The STREAMING exactly-once task driven by the connector kit's harness
//! (as the worker drives it: crashes, re-delivery from the committed
//! offset, notes that survive a crash) against the BigQuery emulator of
//! `dev/services`: real gRPC streams, real tables, counted by a query.

mod bq;

use bq::{env, serial, unique, Rest};
use connector_api::{
    context::Recorded, ConnectorConfig, ErrorKind, SinkConnector, SinkContext, SinkTask, TopicPartition,
};
use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};
use serde_json::json;
use sluice_bigquery_sink::{streaming::Checkpoint, BigQuerySink};

struct Table {
    rest: Rest,
    dataset: String,
    sql: String,
}

/// The test config of `dataset`'s `orders` table.
fn config_of(dataset: &str) -> ConnectorConfig {
    let e = env();
    ConnectorConfig::new()
        .with("topics", "orders")
        .with("project", e.project)
        .with("defaultDataset", dataset)
        .with("ingestion.mode", "STREAMING")
        .with("kafkaDataFieldName", "kafka")
        .with("bigquery.rest.endpoint", e.rest)
        .with("bigquery.storage.endpoint", e.grpc)
}

/// `name TYPE MODE` of each column (nested as `name.sub`), as BigQuery
/// answers `tables.get`.
fn columns(resource: &serde_json::Value) -> Vec<String> {
    fn walk(fields: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        for f in fields.as_array().into_iter().flatten() {
            let name = format!("{prefix}{}", f["name"].as_str().unwrap());
            let mode = f["mode"].as_str().unwrap_or("NULLABLE");
            out.push(format!("{name} {} {mode}", f["type"].as_str().unwrap()));
            walk(&f["fields"], &format!("{name}."), out);
        }
    }
    let mut out = Vec::new();
    walk(&resource["schema"]["fields"], "", &mut out);
    out
}

impl Table {
    fn new(test: &str) -> Table {
        let mut rest = Rest::new();
        let dataset = unique(test);
        rest.create_dataset(&dataset);
        rest.create_table(
            &dataset,
            "orders",
            json!([{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "customer", "type": "STRING"},
                   {"name": "kafka", "type": "RECORD", "fields": [{"name": "topic", "type": "STRING"},
                     {"name": "partition", "type": "INTEGER"}, {"name": "offset", "type": "INTEGER"},
                     {"name": "insertTime", "type": "TIMESTAMP"}]}]),
        );
        let sql = format!("`{}.{dataset}.orders`", rest.project);
        Table { rest, dataset, sql }
    }

    fn config(&self) -> ConnectorConfig {
        config_of(&self.dataset)
    }

    /// (partition, offset) of every row, sorted, duplicates kept.
    fn rows(&mut self) -> Vec<(i64, i64)> {
        let rows = self.rest.query(&format!("SELECT kafka.partition, kafka.offset FROM {}", self.sql));
        let mut out: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| (r[0].as_str().unwrap().parse().unwrap(), r[1].as_str().unwrap().parse().unwrap()))
            .collect();
        out.sort();
        out
    }
}

/// Records `from..to` of a partition: `{"id": offset, …}`, or an invalid
/// one (id not a number) where `bad` says.
fn records(partition: i32, from: i64, to: i64, bad: impl Fn(i64) -> bool) -> Vec<OwnedRecord> {
    let mut b = RecordBuilder::new("orders", partition).at(from);
    for o in from..to {
        let v = if bad(o) { json!({"id": "not-a-number"}) } else { json!({"id": o, "customer": format!("c{o}")}) };
        b.value(v.to_string()).push();
    }
    b.take()
}

fn once(partitions: &[i32], to: i64, bad: impl Fn(i64) -> bool) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> =
        partitions.iter().flat_map(|&p| (0..to).filter(|o| !bad(*o)).map(move |o| (p as i64, o))).collect();
    v.sort();
    v
}

#[test]
fn a_crash_before_the_offset_commit_re_appends_nothing_twice() {
    let _serial = serial();
    let mut t = Table::new("crash_before_commit");
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    let tps = [TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)];
    h.open(&tps).unwrap();
    for p in [0, 1] {
        h.put(&records(p, 0, 10, |_| false)).unwrap();
    }
    h.commit().unwrap();
    h.assert_durable("orders", 0, 10);
    for p in [0, 1] {
        h.put(&records(p, 10, 20, |_| false)).unwrap();
    }
    // Rows 10..20 are in the table, their offsets not committed: the next
    // incarnation gets them again and appends them at the same stream
    // offsets, which answer ALREADY_EXISTS.
    h.crash().unwrap();
    assert_eq!(t.rows(), once(&[0, 1], 20, |_| false));
    // The note ran ahead of the offset commit (a crash between the two):
    // the records below the note's offset are skipped, the rest appended.
    for p in [0, 1] {
        h.put(&records(p, 20, 25, |_| false)).unwrap();
    }
    let noted = h.task_mut().pre_commit(&[]).unwrap();
    assert_eq!(noted.iter().map(|t| t.offset).collect::<Vec<_>>(), [25, 25]);
    h.crash().unwrap();
    for p in [0, 1] {
        h.put(&records(p, 25, 30, |_| false)).unwrap();
    }
    h.commit().unwrap();
    h.assert_durable("orders", 1, 30);
    h.never_past_unsettled();
    assert_eq!(t.rows(), once(&[0, 1], 30, |_| false));
}

#[test]
fn invalid_records_fail_alone_and_take_no_stream_offset() {
    let _serial = serial();
    let mut t = Table::new("invalid_records");
    let bad = |o: i64| o % 7 == 3;
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let outcome = h.put(&records(0, 0, 20, bad)).unwrap();
    let failed: Vec<u32> = outcome.failures().iter().map(|f| f.index).collect();
    assert_eq!(failed, [3, 10, 17], "{:?}", outcome.failures()[0].error);
    let f = &outcome.failures()[0].error;
    assert_eq!(f.kind(), ErrorKind::BadRecord);
    assert!(f.message().contains("id") && f.message().contains("partition 0 offset 3"), "{}", f.message());
    // Not committed: after a crash the same records give the same rows at
    // the same stream offsets (the bad ones again take none).
    h.crash().unwrap();
    h.put(&records(0, 20, 40, bad)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 40);
    assert_eq!(t.rows(), once(&[0], 40, bad));
}

/// BigQuery (not the sink's own checks) refuses some rows, and the worker
/// dies between the note and the offset commit: the re-delivered records
/// below the note are skipped, except the refused ones, which go to the
/// DLQ again. The emulator never answers row errors: the sink's test-only
/// fault point `SLUICE_BQ_FAULT_REFUSE` answers as BigQuery does for rows
/// holding the marker (a row error naming the row, nothing of the request
/// appended).
#[test]
fn rows_bigquery_refused_go_to_the_dlq_again_after_a_crash_before_the_commit() {
    let _serial = serial();
    const MARKER: &str = "refused-by-bigquery-3f9c";
    // Read when a task's stream writer is made; only this test's rows
    // hold the marker, so the other tests of the binary are not affected.
    std::env::set_var("SLUICE_BQ_FAULT_REFUSE", MARKER);
    let mut t = Table::new("refused_replay");
    let refused = |o: i64| o == 4 || o == 13 || o == 14 || o == 17;
    let batch = |from: i64, to: i64| {
        let mut b = RecordBuilder::new("orders", 0).at(from);
        for o in from..to {
            let customer = if refused(o) { MARKER.to_string() } else { format!("c{o}") };
            b.value(json!({"id": o, "customer": customer}).to_string()).push();
        }
        b.take()
    };
    let routed = |h: &SinkHarness<BigQuerySink>| -> Vec<i64> { h.routed().iter().map(|(r, _)| r.offset).collect() };
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&batch(0, 10)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 10);
    h.put(&batch(10, 20)).unwrap();
    assert_eq!(routed(&h), [4, 13, 14, 17]);
    let (_, error) = &h.routed()[1];
    assert_eq!(error.kind(), ErrorKind::BadRecord);
    assert!(
        error.message().contains("BigQuery refused the row") && error.message().contains("offset 13"),
        "{}",
        error.message()
    );
    // The note moves to 20 (it carries 13, 14, 17), then the worker dies
    // before committing 20: 10..20 are re-delivered.
    let noted = h.task_mut().pre_commit(&[]).unwrap();
    assert_eq!(noted.iter().map(|t| t.offset).collect::<Vec<_>>(), [20]);
    let note = h.context().notes.lock().unwrap().get(&TopicPartition::new("orders", 0)).cloned().unwrap();
    // 4 too: the task is not told which offsets the worker committed, so it
    // keeps every refusal since its first record (README, sequence 3).
    assert_eq!(Checkpoint::parse(&note).unwrap().refused, [4, 13, 14, 17], "{note}");
    h.crash().unwrap();
    assert_eq!(routed(&h), [4, 13, 14, 17, 13, 14, 17], "the refused records go to the DLQ again");
    let (_, again) = &h.routed()[4];
    assert_eq!(again.kind(), ErrorKind::BadRecord);
    assert!(again.message().contains("offset 13"), "{}", again.message());
    h.put(&batch(20, 25)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 25);
    h.never_past_unsettled();
    assert_eq!(t.rows(), once(&[0], 25, refused));
    // Once committed past them, the note stops carrying them.
    let note = h.context().notes.lock().unwrap().get(&TopicPartition::new("orders", 0)).cloned().unwrap();
    h.crash().unwrap();
    assert_eq!(routed(&h).len(), 7, "nothing re-delivered below the commit: {note}");
    assert_eq!(t.rows(), once(&[0], 25, refused));
}

#[test]
fn streaming_creates_a_missing_table_from_the_first_json_values() {
    let _serial = serial();
    let mut rest = Rest::new();
    let dataset = unique("autocreate_json");
    rest.create_dataset(&dataset);
    let sql = format!("`{}.{dataset}.orders`", rest.project);
    let mut h = SinkHarness::new(BigQuerySink, config_of(&dataset)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let mut b = RecordBuilder::new("orders", 0);
    b.tombstone().push();
    for o in 1..10 {
        let v = json!({"id": o, "customer": format!("c{o}"), "total": o as f64 + 0.5, "paid": o % 2 == 0,
                       "address": {"city": "Bern", "zip": 3000 + o}, "tags": ["a"], "note": null});
        b.value(v.to_string()).push();
    }
    // A later record whose total is not a number fails alone.
    b.value(json!({"id": 10, "total": "n/a"}).to_string()).push();
    let outcome = h.put(&b.take()).unwrap();
    let failed: Vec<u32> = outcome.failures().iter().map(|f| f.index).collect();
    assert_eq!(failed, [10], "{:?}", outcome.failures().first().map(|f| f.error.message()));
    h.commit().unwrap();
    h.assert_durable("orders", 0, 11);
    let table = rest.table(&dataset, "orders");
    assert_eq!(
        columns(&table),
        [
            "address RECORD NULLABLE",
            "address.city STRING NULLABLE",
            "address.zip INTEGER NULLABLE",
            "customer STRING NULLABLE",
            "id INTEGER NULLABLE",
            "note STRING NULLABLE",
            "paid BOOLEAN NULLABLE",
            "tags STRING REPEATED",
            "total FLOAT NULLABLE",
            "kafka RECORD NULLABLE",
            "kafka.topic STRING NULLABLE",
            "kafka.partition INTEGER NULLABLE",
            "kafka.offset INTEGER NULLABLE",
            "kafka.insertTime TIMESTAMP NULLABLE",
        ],
        "{table}"
    );
    assert_eq!(table["timePartitioning"]["type"], "DAY", "created tables are time-partitioned: {table}");
    let rows = rest.query(&format!("SELECT id, address.zip FROM {sql} ORDER BY id"));
    let got: Vec<(String, String)> =
        rows.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string())).collect();
    let want: Vec<(String, String)> = (1..10).map(|o| (o.to_string(), (3000 + o).to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn streaming_creates_a_missing_table_from_the_connect_schema() {
    let _serial = serial();
    let mut rest = Rest::new();
    let dataset = unique("autocreate_schema");
    rest.create_dataset(&dataset);
    let sql = format!("`{}.{dataset}.orders`", rest.project);
    let schema = json!({"type": "struct", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "amount", "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "2"}},
        {"field": "created", "type": "int64", "optional": true, "name": "org.apache.kafka.connect.data.Timestamp"}
    ]})
    .to_string();
    let mut h = SinkHarness::new(BigQuerySink, config_of(&dataset).with("kafkaKeyFieldName", "order_key")).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let mut b = RecordBuilder::new("orders", 0);
    for o in 0..5i64 {
        // 12.34 as a Decimal of scale 2: the unscaled 1234 big-endian, base64.
        let v = json!({"id": o, "amount": "BNI=", "created": 1_700_000_000_000i64 + o});
        b.key(format!("k{o}")).value_schema(&schema).value(v.to_string()).push();
    }
    h.put(&b.take()).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 5);
    let table = rest.table(&dataset, "orders");
    assert_eq!(
        columns(&table)[..4],
        ["id INTEGER REQUIRED", "amount NUMERIC NULLABLE", "created TIMESTAMP NULLABLE", "order_key STRING NULLABLE"],
        "{table}"
    );
    // The Timestamp's milliseconds are written as that instant (not read
    // as microseconds), the Decimal as its value.
    let rows =
        rest.query(&format!("SELECT id, amount = 12.34, UNIX_MILLIS(created), order_key FROM {sql} ORDER BY id"));
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[1], [json!("1"), json!("true"), json!("1700000000001"), json!("k1")], "{rows:?}");
}

#[test]
fn without_auto_create_a_missing_table_fails_the_task_naming_the_key() {
    let _serial = serial();
    let mut rest = Rest::new();
    let dataset = unique("no_autocreate");
    rest.create_dataset(&dataset);
    let mut h = SinkHarness::new(BigQuerySink, config_of(&dataset).with("autoCreateTables", "false")).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let e = h.put(&records(0, 0, 3, |_| false)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("autoCreateTables=true"), "{}", e.message());
}

/// A Storage Write endpoint that accepts connections and never answers (as
/// the emulator does once its handler threads are all held by open
/// AppendRows calls): the call ends after `bigquery.append.timeout.ms` as a
/// retriable error naming the key, instead of blocking the task forever.
#[test]
fn a_storage_write_call_without_an_answer_is_a_retriable_error() {
    let _serial = serial();
    let mut t = Table::new("no_answer");
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten() {
            held.push(s);
        }
    });
    let config = t
        .config()
        .with("bigquery.storage.endpoint", format!("http://{addr}"))
        .with("bigquery.append.timeout.ms", "1000");
    let mut h = SinkHarness::new(BigQuerySink, config).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let e = h.put(&records(0, 0, 5, |_| false)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retriable, "{}", e.message());
    assert!(e.message().contains("bigquery.append.timeout.ms"), "{}", e.message());
    assert!(t.rows().is_empty());
}

#[test]
fn a_paused_former_owner_appends_nothing_twice() {
    let _serial = serial();
    let mut t = Table::new("paused_owner");
    let config = t.config();
    let tp = TopicPartition::new("orders", 0);
    // A owns the partition, commits 0..10, appends 10..20, then pauses.
    let mut a = SinkHarness::new(BigQuerySink, config.clone()).unwrap();
    a.open(std::slice::from_ref(&tp)).unwrap();
    a.put(&records(0, 0, 10, |_| false)).unwrap();
    a.commit().unwrap();
    a.put(&records(0, 10, 20, |_| false)).unwrap();
    // B takes over with what the broker holds: offset 10 and A's note.
    let notes = a.context().notes.lock().unwrap().clone();
    let b_context =
        Recorded { incarnation: 2, notes: std::sync::Arc::new(std::sync::Mutex::new(notes)), ..Default::default() };
    let mut b =
        BigQuerySink.create_task(&config, connector_api::Host::stderr(), SinkContext::from_impl(b_context)).unwrap();
    b.open(std::slice::from_ref(&tp)).unwrap();
    let owned = records(0, 10, 30, |_| false);
    connector_kit::harness::borrow(&owned, |batch| b.put(batch)).unwrap();
    b.pre_commit(&[]).unwrap();
    // A wakes up and goes on with its next batch: every row it appends is
    // already there (B appended the same records at the same offsets).
    a.put(&records(0, 20, 30, |_| false)).unwrap();
    // Its commit is fenced by the broker (the group moved on).
    *a.context().fenced.lock().unwrap() = Some("generation 1 is not current".into());
    assert!(a.commit().is_err());
    assert_eq!(t.rows(), once(&[0], 30, |_| false));
}

#[test]
fn a_garbage_collected_stream_resumes_after_what_the_table_holds() {
    let _serial = serial();
    let mut t = Table::new("lost_stream");
    let tp = TopicPartition::new("orders", 0);
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    h.open(std::slice::from_ref(&tp)).unwrap();
    h.put(&records(0, 0, 10, |_| false)).unwrap();
    h.commit().unwrap();
    h.put(&records(0, 10, 15, |_| false)).unwrap();
    // The noted stream is gone (BigQuery collects streams idle for days):
    // the note names one that does not exist any more.
    let note = h.context().notes.lock().unwrap().get(&tp).cloned().unwrap();
    let mut cp = Checkpoint::parse(&note).unwrap();
    let id = cp.stream.rsplit('/').next().unwrap().to_string();
    cp.stream = cp.stream.replace(&id, &id.chars().rev().collect::<String>());
    h.context().notes.lock().unwrap().insert(tp.clone(), cp.to_note());
    h.crash().unwrap();
    h.put(&records(0, 15, 20, |_| false)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 20);
    let now = Checkpoint::parse(h.context().notes.lock().unwrap().get(&tp).unwrap()).unwrap();
    assert_ne!(now.stream, cp.stream, "a new stream");
    assert_eq!(t.rows(), once(&[0], 20, |_| false));
}

#[test]
fn the_default_stream_writes_at_least_once() {
    let _serial = serial();
    let mut t = Table::new("default_stream");
    let mut h = SinkHarness::new(BigQuerySink, t.config().with("bigquery.exactly.once", "false")).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&records(0, 0, 10, |o| o == 4)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 10);
    assert_eq!(t.rows(), once(&[0], 10, |o| o == 4));
    assert!(h.context().notes.lock().unwrap().is_empty(), "no notes without exactly once");
}

#[test]
fn without_ingestion_mode_the_task_writes_through_insert_all() {
    let _serial = serial();
    let mut t = Table::new("legacy_dispatch");
    let mut config = t.config();
    config = config
        .into_map()
        .into_iter()
        .filter(|(k, _)| k != "ingestion.mode")
        .fold(ConnectorConfig::new(), |c, (k, v)| c.with(k, v));
    let mut h = SinkHarness::new(BigQuerySink, config).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&records(0, 0, 10, |_| false)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 10);
    assert_eq!(t.rows(), once(&[0], 10, |_| false));
    assert!(h.context().notes.lock().unwrap().is_empty(), "insertAll keeps no notes");
}

/// Schema evolution in STREAMING, with the emulator's `tables.patch`
/// completed by the launcher's patch (dev/bigquery/launch.py, decision
/// 0042): a crash after the table changed and rows with the new field
/// were appended, before their offsets were committed. The replay finds
/// the table changed already, makes the same rows and appends nothing
/// twice; every later record carries the field.
#[test]
fn a_crash_after_a_new_field_was_added_appends_nothing_twice() {
    let _serial = serial();
    let mut t = Table::new("evolve_crash");
    let config = t.config().with("allowNewBigQueryFields", "true");
    let mut h = SinkHarness::new(BigQuerySink, config).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&records(0, 0, 10, |_| false)).unwrap();
    h.commit().unwrap();
    let with_email = |from: i64, to: i64| {
        let mut b = RecordBuilder::new("orders", 0).at(from);
        for o in from..to {
            b.value(json!({"id": o, "customer": format!("c{o}"), "email": format!("{o}@example.com")}).to_string())
                .push();
        }
        b.take()
    };
    let outcome = h.put(&with_email(10, 20)).unwrap();
    assert!(outcome.failures().is_empty(), "{:?}", outcome.failures().first().map(|f| f.error.to_string()));
    assert!(columns(&t.rest.table(&t.dataset, "orders")).contains(&"email STRING NULLABLE".to_string()));
    assert_eq!(t.rows(), once(&[0], 20, |_| false));
    h.crash().unwrap();
    h.put(&with_email(20, 25)).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 25);
    h.never_past_unsettled();
    assert_eq!(t.rows(), once(&[0], 25, |_| false));
    let sql = format!(
        "SELECT COUNTIF(email IS NULL AND kafka.offset < 10), \
         COUNTIF(email = CONCAT(CAST(kafka.offset AS STRING), '@example.com') AND kafka.offset >= 10) FROM {}",
        t.sql
    );
    assert_eq!(t.rest.query(&sql), vec![vec![json!("10"), json!("15")]]);
}
