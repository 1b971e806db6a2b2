//! BATCH LOADING (PENDING streams committed every `commit.interval`)
//! driven by the connector kit's harness against the BigQuery emulator of
//! `dev/services`: real gRPC streams, real tables, counted by a query.
//!
//! The emulator differs from BigQuery in three ways that matter here, each
//! answered as BigQuery does by a patch in `dev/bigquery/launch.py` (the
//! emulator must run with it): GetWriteStream leaves `commit_time` out of
//! a committed PENDING stream, committing a stream twice answered
//! INVALID_STREAM_STATE instead of STREAM_ALREADY_COMMITTED, and one
//! BatchCommitWriteStreams committed streams of several tables.
//!
//! The tests end an interval with the task's test-only
//! `end_batch_interval_now` instead of waiting a minute, and stop a
//! `pre_commit` at a point with `stop_batch_commit_after` (the harness then
//! crashes the task there, as a worker killed at that point).

mod bq;

use bq::{env, serial, unique, Rest};
use connector_api::{
    context::Recorded, ConnectorConfig, SinkConnector, SinkContext, SinkTask, TopicPartition, TopicPartitionOffset,
};
use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};
use serde_json::json;
use sluice_bigquery_sink::{
    batch::Sealed,
    encode::RowEncoder,
    schema::{FieldMode, FieldType, TableField, TableSchema},
    storage::{proto::StreamType, AppendOutcome, StorageClient},
    BigQuerySink,
};

struct Table {
    rest: Rest,
    dataset: String,
    sql: String,
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
        let e = env();
        ConnectorConfig::new()
            .with("topics", "orders")
            .with("project", e.project)
            .with("defaultDataset", &self.dataset)
            .with("ingestion.mode", "BATCH LOADING")
            .with("kafkaDataFieldName", "kafka")
            .with("bigquery.rest.endpoint", e.rest)
            .with("bigquery.storage.endpoint", e.grpc)
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

fn records(partition: i32, from: i64, to: i64) -> Vec<OwnedRecord> {
    let mut b = RecordBuilder::new("orders", partition).at(from);
    for o in from..to {
        b.value(json!({"id": o, "customer": format!("c{o}")}).to_string()).push();
    }
    b.take()
}

fn once(partitions: &[i32], to: i64) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = partitions.iter().flat_map(|&p| (0..to).map(move |o| (p as i64, o))).collect();
    v.sort();
    v
}

fn offsets(durable: &[TopicPartitionOffset]) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = durable.iter().map(|t| (t.partition, t.offset)).collect();
    v.sort();
    v
}

/// The interval's end, as the worker's next offset commit after it.
fn commit_interval(h: &mut SinkHarness<BigQuerySink>) -> Vec<TopicPartitionOffset> {
    h.task_mut().end_batch_interval_now();
    h.commit().unwrap()
}

#[test]
fn pending_streams_on_the_emulator_behave_as_bigquery_documents() {
    let _serial = serial();
    let e = env();
    let mut t = Table::new("pending_measure");
    let f =
        |name: &str, ft| TableField { name: name.into(), field_type: ft, mode: FieldMode::Nullable, fields: vec![] };
    let schema = TableSchema { fields: vec![f("id", FieldType::Integer), f("customer", FieldType::String)] };
    let encoder = RowEncoder::new(&schema);
    let row = |id: i64| {
        let serde_json::Value::Object(m) = json!({"id": id, "customer": "c"}) else { unreachable!() };
        encoder.encode(&m).unwrap()
    };
    let table = format!("projects/{}/datasets/{}/tables/orders", e.project, t.dataset);
    let rt = connector_kit::runtime::current_thread("bq-test").unwrap();
    rt.block_on(async {
        let client = StorageClient::new(&e.grpc, None).unwrap();
        let s = client.create_write_stream(&table, StreamType::Pending).await.unwrap().name;
        let mut conn = client.open_append(&s).await.unwrap();
        let d = encoder.descriptor();
        assert_eq!(conn.append(Some(0), vec![row(0), row(1)], d).await, AppendOutcome::Appended { offset: Some(0) });
        assert!(matches!(conn.append(Some(0), vec![row(0)], d).await, AppendOutcome::AlreadyExists(_)));
        if !conn.is_usable() {
            conn = client.open_append(&s).await.unwrap();
        }
        assert_eq!(conn.append(Some(2), vec![row(2)], d).await, AppendOutcome::Appended { offset: Some(2) });
        assert!(client.get_write_stream(&s).await.unwrap().unwrap().commit_time.is_none());
        assert_eq!(client.finalize_write_stream(&s).await.unwrap(), 3);
        assert_eq!(client.finalize_write_stream(&s).await.unwrap(), 3, "finalize is idempotent");
        let after = conn.append(Some(3), vec![row(3)], d).await;
        assert!(!matches!(after, AppendOutcome::Appended { .. }), "a finalized stream takes no rows: {after:?}");
        drop(conn);
        assert!(client.get_write_stream(&s).await.unwrap().unwrap().commit_time.is_none());
        // Launcher patch: BigQuery commits streams of the parent table only.
        let elsewhere = format!("projects/{}/datasets/{}/tables/other", e.project, t.dataset);
        assert!(client.batch_commit(&elsewhere, vec![s.clone()]).await.is_err());
        client.batch_commit(&table, vec![s.clone()]).await.unwrap();
        // Launcher patch: BigQuery sets commit_time, the emulator did not.
        assert!(client.get_write_stream(&s).await.unwrap().unwrap().commit_time.is_some());
        // Launcher patch: STREAM_ALREADY_COMMITTED, as BigQuery answers.
        let again = client.batch_commit(&table, vec![s.clone()]).await.unwrap_err();
        assert!(again.message().contains("already committed"), "{again:?}");
    });
    // Invisible until the commit, then all at once (counted after it: the
    // emulator answers one call at a time).
    assert_eq!(t.rest.count(&format!("SELECT COUNT(*) FROM {}", t.sql)), 3);
}

#[test]
fn rows_are_visible_only_after_the_interval_commit() {
    let _serial = serial();
    let mut t = Table::new("batch_visible");
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    h.open(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)]).unwrap();
    for p in [0, 1] {
        h.put(&records(p, 0, 10)).unwrap();
    }
    // Offset commits within the interval: nothing settled, nothing visible.
    assert!(h.commit().unwrap().is_empty());
    assert!(t.rows().is_empty(), "rows of a pending stream are invisible");
    for p in [0, 1] {
        h.put(&records(p, 10, 20)).unwrap();
    }
    assert_eq!(offsets(&commit_interval(&mut h)), [(0, 20), (1, 20)]);
    assert_eq!(t.rows(), once(&[0, 1], 20));
    h.assert_durable("orders", 0, 20);
    // The next interval goes to new streams.
    h.put(&records(0, 20, 25)).unwrap();
    assert!(h.commit().unwrap().is_empty(), "nothing newly settled within the interval");
    h.assert_durable("orders", 0, 20);
    assert_eq!(t.rows(), once(&[0, 1], 20));
    assert_eq!(offsets(&commit_interval(&mut h)), [(0, 25)]);
    h.assert_durable("orders", 1, 20);
    h.never_past_unsettled();
    let mut want = once(&[0, 1], 20);
    want.extend((20..25).map(|o| (0, o)));
    want.sort();
    assert_eq!(t.rows(), want);
}

/// A worker killed at each point of the interval's commit: after the
/// restart every record is in the table once.
#[test]
fn a_crash_at_any_point_of_the_commit_loses_and_doubles_nothing() {
    let _serial = serial();
    for point in ["after-append", "after-finalize", "after-note", "after-batch-commit", "after-offset-commit"] {
        let mut t = Table::new(&format!("batch_crash_{}", point.replace('-', "_")));
        let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
        h.open(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)]).unwrap();
        for p in [0, 1] {
            h.put(&records(p, 0, 10)).unwrap();
        }
        commit_interval(&mut h);
        for p in [0, 1] {
            h.put(&records(p, 10, 20)).unwrap();
        }
        match point {
            "after-append" => {}
            "after-offset-commit" => {
                commit_interval(&mut h);
            }
            stop => {
                h.task_mut().stop_batch_commit_after(stop);
                h.task_mut().end_batch_interval_now();
                assert!(h.commit().is_err(), "{point}");
            }
        }
        // Re-delivered from the committed offset (10, or 20 after the
        // offset commit).
        h.crash().unwrap();
        for p in [0, 1] {
            h.put(&records(p, 20, 25)).unwrap();
        }
        assert_eq!(offsets(&commit_interval(&mut h)), [(0, 25), (1, 25)], "{point}");
        h.never_past_unsettled();
        assert_eq!(t.rows(), once(&[0, 1], 25), "{point}");
    }
}

/// A former owner paused after it noted its stream as sealed, before its
/// BatchCommit: the new owner commits that stream and goes on; the former
/// owner wakes up, its late commit of the same stream is refused (or finds
/// it committed) and its next pending stream is never committed (its note
/// is fenced).
#[test]
fn a_paused_former_owner_commits_nothing_twice() {
    let _serial = serial();
    let mut t = Table::new("batch_paused_owner");
    let config = t.config();
    let tp = TopicPartition::new("orders", 0);
    let mut a = SinkHarness::new(BigQuerySink, config.clone()).unwrap();
    a.open(std::slice::from_ref(&tp)).unwrap();
    a.put(&records(0, 0, 10)).unwrap();
    commit_interval(&mut a);
    a.put(&records(0, 10, 20)).unwrap();
    a.task_mut().stop_batch_commit_after("after-note");
    a.task_mut().end_batch_interval_now();
    assert!(a.commit().is_err());
    let note = a.context().notes.lock().unwrap().get(&tp).cloned().unwrap();
    let sealed = Sealed::parse(&note).unwrap();
    assert_eq!((sealed.start, sealed.end, sealed.rows), (10, 20, 10), "{note}");
    assert!(t.rows().len() == 10, "A's sealed stream is not committed yet");
    // B takes over with what the broker holds: offset 10 and A's note.
    let notes = a.context().notes.lock().unwrap().clone();
    let b_context =
        Recorded { incarnation: 2, notes: std::sync::Arc::new(std::sync::Mutex::new(notes)), ..Default::default() };
    let mut b =
        BigQuerySink.create_task(&config, connector_api::Host::stderr(), SinkContext::from_impl(b_context)).unwrap();
    b.open(std::slice::from_ref(&tp)).unwrap();
    let owned = records(0, 10, 30);
    connector_kit::harness::borrow(&owned, |batch| b.put(batch)).unwrap();
    b.end_batch_interval_now();
    assert_eq!(offsets(&b.pre_commit(&[]).unwrap()), [(0, 30)]);
    assert_eq!(t.rows(), once(&[0], 30));
    // A wakes up: it finishes its sealed stream's commit (B committed it:
    // nothing lands twice) and appends its next batch to a new pending
    // stream, whose note the broker refuses: it is never committed.
    *a.context().fenced.lock().unwrap() = Some("generation 1 is not current".into());
    a.put(&records(0, 20, 40)).unwrap();
    a.task_mut().end_batch_interval_now();
    assert!(a.commit().is_err());
    assert_eq!(t.rows(), once(&[0], 30));
}

/// BigQuery refuses some rows (row errors), and the worker dies after the
/// BatchCommit, before the offset commit: the re-delivered records of the
/// committed stream are skipped, except the refused ones, which go to the
/// DLQ again (the sealed note lists them). The emulator never answers row
/// errors: the sink's test-only fault point `SLUICE_BQ_FAULT_REFUSE`
/// answers as BigQuery does for rows holding the marker.
#[test]
fn rows_bigquery_refused_go_to_the_dlq_again_after_a_crash_before_the_offset_commit() {
    let _serial = serial();
    const MARKER: &str = "refused-by-bigquery-b47d";
    // Read when a stream writer is made; only this test's rows hold it.
    std::env::set_var("SLUICE_BQ_FAULT_REFUSE", MARKER);
    let mut t = Table::new("batch_refused");
    let refused = |o: i64| o == 13 || o == 17;
    let batch = |from: i64, to: i64| {
        let mut b = RecordBuilder::new("orders", 0).at(from);
        for o in from..to {
            let customer = if refused(o) { MARKER.to_string() } else { format!("c{o}") };
            b.value(json!({"id": o, "customer": customer}).to_string()).push();
        }
        b.take()
    };
    let routed = |h: &SinkHarness<BigQuerySink>| -> Vec<i64> { h.routed().iter().map(|(r, _)| r.offset).collect() };
    let tp = TopicPartition::new("orders", 0);
    let mut h = SinkHarness::new(BigQuerySink, t.config()).unwrap();
    h.open(std::slice::from_ref(&tp)).unwrap();
    h.put(&batch(0, 10)).unwrap();
    commit_interval(&mut h);
    h.put(&batch(10, 20)).unwrap();
    assert_eq!(routed(&h), [13, 17]);
    h.task_mut().stop_batch_commit_after("after-batch-commit");
    h.task_mut().end_batch_interval_now();
    assert!(h.commit().is_err());
    let note = h.context().notes.lock().unwrap().get(&tp).cloned().unwrap();
    assert_eq!(Sealed::parse(&note).unwrap().refused, [13, 17], "{note}");
    h.crash().unwrap();
    assert_eq!(routed(&h), [13, 17, 13, 17], "the refused records go to the DLQ again, the others are skipped");
    let (_, again) = &h.routed()[2];
    assert!(again.message().contains("offset 13"), "{}", again.message());
    h.put(&batch(20, 25)).unwrap();
    assert_eq!(offsets(&commit_interval(&mut h)), [(0, 25)]);
    h.never_past_unsettled();
    let want: Vec<(i64, i64)> = (0..25).filter(|&o| !refused(o)).map(|o| (0, o)).collect();
    assert_eq!(t.rows(), want);
    std::env::remove_var("SLUICE_BQ_FAULT_REFUSE");
}

/// A TCP forwarder in front of the emulator's gRPC port that can be taken
/// down: open connections are cut and new ones closed at once, as a
/// BigQuery outage looks to the sink.
struct Outage {
    url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Outage {
    fn start(upstream: &str) -> Outage {
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (u, o) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                for s in [&client, &server] {
                    o.lock().unwrap().push(s.try_clone().unwrap());
                }
                let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c2, mut s2) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(Shutdown::Both);
                });
            }
        });
        Outage { url, up, open }
    }

    fn set(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// BigQuery unavailable at the interval's end: the pending stream cannot
/// be finalized, so it is never committed; nothing is reported durable and
/// the task asks the worker to read the partition again from the stream's
/// start, into a new stream once BigQuery is back: every record once.
#[test]
fn bigquery_unavailable_at_the_interval_end_commits_nothing_and_everything_once_after() {
    let _serial = serial();
    let mut t = Table::new("batch_outage");
    let outage = Outage::start(&env().grpc);
    let config = t.config().with("bigquery.storage.endpoint", &outage.url);
    let tp = TopicPartition::new("orders", 0);
    let mut h = SinkHarness::new(BigQuerySink, config).unwrap();
    h.open(std::slice::from_ref(&tp)).unwrap();
    h.put(&records(0, 0, 10)).unwrap();
    outage.set(false);
    let during = h.task_mut().pre_commit(&[]);
    assert!(matches!(&during, Ok(d) if d.is_empty()), "nothing durable during the outage: {during:?}");
    h.task_mut().end_batch_interval_now();
    let during = h.task_mut().pre_commit(&[]);
    assert!(matches!(&during, Ok(d) if d.is_empty()), "nothing durable during the outage: {during:?}");
    assert_eq!(h.take_seeks(), [(tp.clone(), 0)], "the partition is read again from the stream's start");
    outage.set(true);
    assert!(t.rows().is_empty());
    // The worker re-delivers from the seek.
    h.put(&records(0, 0, 15)).unwrap();
    assert_eq!(offsets(&commit_interval(&mut h)), [(0, 15)]);
    h.never_past_unsettled();
    assert_eq!(t.rows(), once(&[0], 15));
}

/// Two topics into two tables: BigQuery commits streams of one table per
/// BatchCommitWriteStreams (the emulator allowed more; the launcher patch
/// refuses it as BigQuery does), so each table's streams are committed by
/// a call of their own, and both tables' rows appear at the interval's end.
#[test]
fn each_table_s_streams_are_committed_together_at_the_interval_end() {
    let _serial = serial();
    let mut t = Table::new("batch_two_tables");
    let returns_columns = t.rest.table(&t.dataset, "orders")["schema"]["fields"].clone();
    t.rest.create_table(&t.dataset, "returns", returns_columns);
    let config = t.config().with("topics", "orders,returns");
    let mut h = SinkHarness::new(BigQuerySink, config).unwrap();
    let tps = [TopicPartition::new("orders", 0), TopicPartition::new("returns", 0), TopicPartition::new("returns", 1)];
    h.open(&tps).unwrap();
    h.put(&records(0, 0, 10)).unwrap();
    for p in [0, 1] {
        let mut b = RecordBuilder::new("returns", p);
        for o in 0..7 {
            b.value(json!({"id": o, "customer": format!("r{o}")}).to_string()).push();
        }
        h.put(&b.take()).unwrap();
    }
    let returns_sql = format!("`{}.{}.returns`", t.rest.project, t.dataset);
    let count_returns = |t: &mut Table| t.rest.count(&format!("SELECT COUNT(*) FROM {returns_sql}"));
    assert!(h.commit().unwrap().is_empty());
    assert_eq!((t.rows().len(), count_returns(&mut t)), (0, 0), "nothing visible within the interval");
    let durable = commit_interval(&mut h);
    let mut got: Vec<(String, i32, i64)> =
        durable.iter().map(|d| (d.topic.to_string(), d.partition, d.offset)).collect();
    got.sort();
    assert_eq!(got, [("orders".into(), 0, 10), ("returns".into(), 0, 7), ("returns".into(), 1, 7)]);
    assert_eq!(t.rows(), once(&[0], 10));
    assert_eq!(count_returns(&mut t), 14);
}
