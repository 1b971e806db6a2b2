//! The legacy path as the task drives it (`LegacyWriter::put` with sink
//! records and a config parsed by the connector's own parser) against the
//! BigQuery emulator of `dev/services`.

mod common;

use common::{env, forwarding_proxy};
use connector_api::{ConnectorConfig, ErrorKind, SinkRecord};
use serde_json::{json, Value};
use sluice_bigquery_sink::{
    config::BigQuerySinkConfig,
    legacy::LegacyWriter,
    rest::{BigQueryRest, TableId},
};

const V1: &str = r#"{"type":"struct","fields":[{"field":"code","type":"string"},{"field":"qty","type":"int32"},
    {"field":"placed","type":"int64","name":"org.apache.kafka.connect.data.Timestamp"},
    {"field":"customer","type":"string","optional":true}]}"#;
const V2: &str = r#"{"type":"struct","fields":[{"field":"code","type":"string"},{"field":"qty","type":"int32"},
    {"field":"placed","type":"int64","name":"org.apache.kafka.connect.data.Timestamp"},
    {"field":"customer","type":"string","optional":true},{"field":"email","type":"string","optional":true}]}"#;
const KEY: &str = r#"{"type":"string"}"#;

fn config(dataset: &str, extra: &[(&str, &str)]) -> BigQuerySinkConfig {
    let mut c = ConnectorConfig::new()
        .with("topics", "shop.orders")
        .with("project", env("BQ_PROJECT"))
        .with("defaultDataset", dataset)
        .with("sanitizeTopics", "true")
        .with("kafkaKeyFieldName", "order_key")
        .with("timestampPartitionFieldName", "placed")
        .with("clusteringPartitionFieldNames", "customer")
        .with("bigquery.rest.endpoint", env("BQ_REST_ENDPOINT"))
        .with("bigquery.storage.endpoint", env("BQ_GRPC_ENDPOINT"));
    for (k, v) in extra {
        c.set(*k, *v);
    }
    BigQuerySinkConfig::from_config(&c).unwrap()
}

struct Owned {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    schema: &'static str,
}

fn order(offset: i64, schema: &'static str, extra: Value) -> Owned {
    let mut v = json!({"code": format!("o-{offset}"), "qty": offset, "placed": 1714557600000_i64 + offset,
        "customer": format!("c-{}", offset % 3)});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Owned { offset, key: Some(format!("\"o-{offset}\"")), value: Some(v.to_string()), schema }
}

fn records(owned: &[Owned]) -> Vec<SinkRecord<'_>> {
    owned
        .iter()
        .map(|o| {
            SinkRecord::new("shop.orders", 0, o.offset)
                .with_key(o.key.as_deref().map(str::as_bytes))
                .with_value(o.value.as_deref().map(str::as_bytes))
                .with_schemas(Some(KEY), Some(o.schema))
        })
        .collect()
}

fn rows(client: &mut BigQueryRest, table: &TableId, columns: &str) -> Vec<Vec<Value>> {
    client.query(&format!("SELECT {columns} FROM {} ORDER BY qty", table.sql())).unwrap().rows
}

#[test]
fn records_land_in_a_created_partitioned_table_and_bad_ones_are_reported_by_position() {
    let (mut client, project, dataset) = common::dataset("writer_put");
    let mut writer = LegacyWriter::new(&config(&dataset, &[])).unwrap();
    let mut batch: Vec<Owned> = (0..6).map(|o| order(o, V1, json!({}))).collect();
    batch[2].value = Some(json!({"code": "o-2", "qty": "two", "placed": 1, "customer": null}).to_string());
    batch[4].value = None;
    let outcome = writer.put(&records(&batch)).unwrap();
    let failed: Vec<(usize, ErrorKind, String)> =
        outcome.failures().iter().map(|f| (f.index as usize, f.error.kind(), f.error.message().to_string())).collect();
    assert_eq!(
        failed.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [(2, ErrorKind::BadRecord), (4, ErrorKind::BadRecord)]
    );
    assert!(failed[0].2.contains("offset 2") && failed[0].2.contains("`qty`"), "{failed:?}");
    assert!(failed[1].2.contains("offset 4") && failed[1].2.contains("tombstone"), "{failed:?}");

    let table = TableId::new(&project, &dataset, "shop_orders");
    assert_eq!(
        rows(&mut client, &table, "code, qty, order_key, UNIX_MILLIS(placed)"),
        [0, 1, 3, 5]
            .iter()
            .map(|o| vec![
                json!(format!("o-{o}")),
                json!(o.to_string()),
                json!(format!("o-{o}")),
                json!((1714557600000_i64 + o).to_string())
            ])
            .collect::<Vec<_>>()
    );
    let resource = client.get_table_resource(&table).unwrap().unwrap();
    assert_eq!(resource["timePartitioning"]["field"], "placed", "{resource}");
    assert_eq!(resource["timePartitioning"]["type"], "DAY", "{resource}");
    assert_eq!(resource["clustering"]["fields"], json!(["customer"]), "{resource}");
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn a_new_field_is_refused_by_default_and_added_when_allowed() {
    // The emulator adds the column in tables.patch with the launcher's patch (dev/bigquery/launch.py).
    let (mut client, project, dataset) = common::dataset("writer_evolve");
    let proxy = forwarding_proxy();
    let strict = config(&dataset, &[]);
    let mut writer = LegacyWriter::with_client(&strict, BigQueryRest::new(&proxy.url, &project)).unwrap();
    writer.put(&records(&[order(0, V1, json!({}))])).unwrap();
    let newer = [order(1, V2, json!({"email": "a@example.com"}))];
    let outcome = writer.put(&records(&newer)).unwrap();
    let f = &outcome.failures()[0];
    assert_eq!(f.error.kind(), ErrorKind::BadRecord);
    assert!(
        f.error.message().contains("`email`") && f.error.message().contains("allowNewBigQueryFields=true"),
        "{}",
        f.error
    );

    let open = config(&dataset, &[("allowNewBigQueryFields", "true")]);
    let mut writer = LegacyWriter::with_client(&open, BigQueryRest::new(&proxy.url, &project)).unwrap();
    let outcome =
        writer.put(&records(&[order(1, V2, json!({"email": "a@example.com"})), order(2, V1, json!({}))])).unwrap();
    assert!(
        outcome.failures().is_empty(),
        "{:?}",
        outcome.failures().iter().map(|f| f.error.to_string()).collect::<Vec<_>>()
    );
    let table = TableId::new(&project, &dataset, "shop_orders");
    assert_eq!(
        rows(&mut client, &table, "qty, email"),
        vec![vec![json!("0"), Value::Null], vec![json!("1"), json!("a@example.com")], vec![json!("2"), Value::Null]]
    );
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn a_missing_dataset_stops_the_writer_naming_default_dataset() {
    let e = LegacyWriter::new(&config("no_such_dataset_writer", &[])).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("defaultDataset"), "{e}");
}
