//! The Storage Write API client against the BigQuery emulator of
//! `dev/services` (real gRPC, no fakes): a COMMITTED stream takes rows at
//! explicit offsets, answers a repeated offset ALREADY_EXISTS and a gap
//! OUT_OF_RANGE, and the rows are visible to a query at once.

mod bq;

use bq::{env, serial, unique, Rest};
use serde_json::{json, Map, Value};
use sluice_bigquery_sink::{
    encode::RowEncoder,
    schema::{FieldMode, FieldType, TableField, TableSchema},
    storage::{proto::StreamType, AppendOutcome, StorageClient},
};

fn schema() -> TableSchema {
    let f = |name: &str, t| TableField { name: name.into(), field_type: t, mode: FieldMode::Nullable, fields: vec![] };
    TableSchema {
        fields: vec![
            f("id", FieldType::Integer),
            f("customer", FieldType::String),
            f("amount", FieldType::Float),
            f("paid", FieldType::Boolean),
            f("created", FieldType::Timestamp),
        ],
    }
}

fn row(id: i64) -> Vec<u8> {
    let Value::Object(m) = json!({"id": id, "customer": format!("c{id}"), "amount": id as f64 / 2.0,
        "paid": id % 2 == 0, "created": "2024-05-01T10:00:00Z"})
    else {
        unreachable!()
    };
    let m: Map<String, Value> = m;
    RowEncoder::new(&schema()).encode(&m).unwrap()
}

#[test]
fn a_committed_stream_takes_rows_at_explicit_offsets_once() {
    let _serial = serial();
    let e = env();
    let mut rest = Rest::new();
    let dataset = unique("storage");
    rest.create_dataset(&dataset);
    rest.create_table(
        &dataset,
        "orders",
        json!([{"name": "id", "type": "INTEGER"}, {"name": "customer", "type": "STRING"},
               {"name": "amount", "type": "FLOAT"}, {"name": "paid", "type": "BOOLEAN"},
               {"name": "created", "type": "TIMESTAMP"}]),
    );
    let table = format!("projects/{}/datasets/{dataset}/tables/orders", e.project);
    let encoder = RowEncoder::new(&schema());
    let rt = connector_kit::runtime::current_thread("bq-test").unwrap();
    rt.block_on(async {
        let client = StorageClient::new(&e.grpc, None).unwrap();
        let stream = client.create_write_stream(&table, StreamType::Committed).await.unwrap();
        assert!(stream.name.starts_with(&table), "{}", stream.name);
        // The stream carries the table's schema: rows can be encoded without a REST call.
        let from_stream = stream.table_schema.as_ref().map(sluice_bigquery_sink::storage::table_schema);
        assert_eq!(from_stream, Some(schema()));
        let mut conn = client.open_append(&stream.name).await.unwrap();
        let d = encoder.descriptor();
        assert_eq!(
            conn.append(Some(0), vec![row(1), row(2), row(3)], d).await,
            AppendOutcome::Appended { offset: Some(0) }
        );
        assert_eq!(conn.append(Some(3), vec![row(4)], d).await, AppendOutcome::Appended { offset: Some(3) });
        // A re-delivered batch at the same offset: refused, nothing doubled.
        assert!(matches!(conn.append(Some(0), vec![row(1), row(2)], d).await, AppendOutcome::AlreadyExists(_)));
        if !conn.is_usable() {
            conn = client.open_append(&stream.name).await.unwrap();
        }
        // A gap: refused.
        assert!(matches!(conn.append(Some(9), vec![row(9)], d).await, AppendOutcome::OutOfRange(_)));
        if !conn.is_usable() {
            conn = client.open_append(&stream.name).await.unwrap();
        }
        assert_eq!(conn.append(Some(4), vec![row(5)], d).await, AppendOutcome::Appended { offset: Some(4) });
        assert!(client.get_write_stream(&stream.name).await.unwrap().is_some());
        // A stream name of the same shape that was never created: gone.
        let id = stream.name.rsplit('/').next().unwrap();
        let other: String = id.chars().rev().collect();
        let gone = format!("{table}/streams/{other}");
        assert_ne!(gone, stream.name, "{}", stream.name);
        assert_eq!(client.get_write_stream(&gone).await.unwrap(), None);
    });
    let rows =
        rest.query(&format!("SELECT id, customer, amount, paid FROM `{}.{dataset}.orders` ORDER BY id", e.project));
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    assert_eq!(rows[1][1], "c2");
    assert_eq!(rows[1][3], "true");
}

#[test]
fn the_default_stream_appends_without_offsets() {
    let _serial = serial();
    let e = env();
    let mut rest = Rest::new();
    let dataset = unique("default_stream");
    rest.create_dataset(&dataset);
    rest.create_table(&dataset, "t", json!([{"name": "id", "type": "INTEGER"}, {"name": "customer", "type": "STRING"},
        {"name": "amount", "type": "FLOAT"}, {"name": "paid", "type": "BOOLEAN"}, {"name": "created", "type": "TIMESTAMP"}]));
    let stream = format!("projects/{}/datasets/{dataset}/tables/t/streams/_default", e.project);
    let rt = connector_kit::runtime::current_thread("bq-test").unwrap();
    rt.block_on(async {
        let client = StorageClient::new(&e.grpc, None).unwrap();
        let mut conn = client.open_append(&stream).await.unwrap();
        let out = conn.append(None, vec![row(1), row(2)], RowEncoder::new(&schema()).descriptor()).await;
        assert!(matches!(out, AppendOutcome::Appended { .. }), "{out:?}");
    });
    assert_eq!(rest.count(&format!("SELECT COUNT(*) FROM `{}.{dataset}.t`", e.project)), 2);
}
