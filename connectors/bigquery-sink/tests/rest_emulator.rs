//! The REST client against the BigQuery emulator of `dev/services`
//! (BQ_REST_ENDPOINT, BQ_PROJECT): datasets, table creation with time
//! partitioning and clustering, the race on creation, schema reads,
//! insertAll's per-row errors, queries (MERGE included) and the errors a
//! user sees. Each test uses its own dataset.

mod common;

use common::{env, Proxy};
use connector_api::ErrorKind;
use serde_json::json;
use sluice_bigquery_sink::{
    rest::{BigQueryRest, InsertRow, PartitionType, TableId, TableOptions, TimePartitioning},
    schema::{FieldMode, FieldType, TableField, TableSchema},
};

/// A client and a fresh dataset of its own.
fn setup(test: &str) -> (BigQueryRest, String, String) {
    common::dataset(&format!("rest_{test}"))
}

fn orders_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            TableField::new("id", FieldType::Integer, FieldMode::Required),
            TableField::new("customer", FieldType::String, FieldMode::Nullable),
            TableField::new("created", FieldType::Timestamp, FieldMode::Nullable),
            TableField::new("tags", FieldType::String, FieldMode::Repeated),
            TableField::record(
                "address",
                FieldMode::Nullable,
                vec![TableField::new("city", FieldType::String, FieldMode::Nullable)],
            ),
        ],
    }
}

#[test]
fn ensure_table_creates_a_partitioned_clustered_table_once_and_reads_it_back() {
    let (mut client, project, dataset) = setup("ensure");
    let table = TableId::new(&project, &dataset, "orders");
    assert_eq!(client.get_table(&table).unwrap(), None, "no table yet");
    let options = TableOptions {
        time_partitioning: Some(TimePartitioning {
            kind: PartitionType::Hour,
            field: Some("created".into()),
            expiration_ms: Some(7 * 86_400_000),
        }),
        clustering: vec!["customer".into(), "id".into()],
    };
    let created = client.ensure_table(&table, &orders_schema(), &options).unwrap();
    assert_eq!(created, orders_schema());
    let resource = client.get_table_resource(&table).unwrap().unwrap();
    assert_eq!(resource["timePartitioning"]["type"], "HOUR", "{resource}");
    assert_eq!(resource["timePartitioning"]["field"], "created", "{resource}");
    assert_eq!(resource["timePartitioning"]["expirationMs"], "604800000", "{resource}");
    assert_eq!(resource["clustering"]["fields"], json!(["customer", "id"]), "{resource}");

    // A second task with another idea of the schema gets the table's own.
    let other = TableSchema { fields: vec![TableField::new("x", FieldType::String, FieldMode::Nullable)] };
    assert_eq!(client.ensure_table(&table, &other, &TableOptions::default()).unwrap(), orders_schema());
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn a_missing_dataset_is_a_config_error_naming_default_dataset() {
    let project = env("BQ_PROJECT");
    let mut client = BigQueryRest::new(&env("BQ_REST_ENDPOINT"), &project);
    let e = client.check_dataset(&project, "no_such_dataset_rest").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("defaultDataset") && e.message().contains("no_such_dataset_rest"), "{e}");
    let table = TableId::new(&project, "no_such_dataset_rest", "t");
    let e = client.ensure_table(&table, &orders_schema(), &TableOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("defaultDataset"), "{e}");
    let (mut client, project, dataset) = setup("dscheck");
    client.check_dataset(&project, &dataset).unwrap();
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn insert_all_reports_bad_rows_by_index_and_lands_the_others() {
    let (mut client, project, dataset) = setup("insert");
    let table = TableId::new(&project, &dataset, "orders");
    client.ensure_table(&table, &orders_schema(), &TableOptions::default()).unwrap();
    let row = |id: serde_json::Value, insert_id: &str| InsertRow {
        insert_id: insert_id.into(),
        json: json!({"id": id, "customer": "alice", "created": "2024-05-01T10:00:00Z", "tags": ["a", "b"],
                     "address": {"city": "Berlin"}}),
    };
    let rows = vec![row(json!(1), "orders-0-1"), row(json!("not-a-number"), "orders-0-2"), row(json!(3), "orders-0-3")];
    let errors = client.insert_all(&table, &rows, true).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 1);
    assert_eq!(errors[0].1[0].reason, "invalid");
    let result = client.query(&format!("SELECT id, customer, tags, address FROM {} ORDER BY id", table.sql())).unwrap();
    assert_eq!(result.columns, ["id", "customer", "tags", "address"]);
    assert_eq!(
        result.rows,
        vec![
            vec![json!("1"), json!("alice"), json!(["a", "b"]), json!(["Berlin"])],
            vec![json!("3"), json!("alice"), json!(["a", "b"]), json!(["Berlin"])],
        ]
    );
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn queries_run_merge_and_report_errors() {
    let (mut client, project, dataset) = setup("merge");
    let schema = TableSchema {
        fields: vec![
            TableField::new("k", FieldType::String, FieldMode::Required),
            TableField::new("v", FieldType::Integer, FieldMode::Nullable),
            TableField::new("off", FieldType::Integer, FieldMode::Nullable),
        ],
    };
    let target = TableId::new(&project, &dataset, "t");
    let staging = TableId::new(&project, &dataset, "t_tmp");
    client.ensure_table(&target, &schema, &TableOptions::default()).unwrap();
    client.ensure_table(&staging, &schema, &TableOptions::default()).unwrap();
    let rows = |r: &[(&str, Option<i64>, i64)]| -> Vec<InsertRow> {
        r.iter()
            .map(|(k, v, off)| InsertRow { insert_id: format!("{k}-{off}"), json: json!({"k": k, "v": v, "off": off}) })
            .collect()
    };
    assert!(client.insert_all(&target, &rows(&[("a", Some(1), 1), ("b", Some(1), 2)]), false).unwrap().is_empty());
    let staged = rows(&[("a", Some(2), 5), ("a", Some(3), 6), ("c", Some(9), 7), ("b", None, 8)]);
    assert!(client.insert_all(&staging, &staged, false).unwrap().is_empty());
    // The upsert mode's statement: the latest row per key by offset; a null value deletes.
    let merge = format!(
        "MERGE {t} dst USING (SELECT ARRAY_AGG(x ORDER BY x.off DESC LIMIT 1)[OFFSET(0)] src FROM {s} x GROUP BY x.k) \
         ON dst.k = src.k WHEN MATCHED AND src.v IS NULL THEN DELETE \
         WHEN MATCHED AND src.off > dst.off THEN UPDATE SET v = src.v, off = src.off \
         WHEN NOT MATCHED AND src.v IS NOT NULL THEN INSERT (k, v, off) VALUES (src.k, src.v, src.off)",
        t = target.sql(),
        s = staging.sql()
    );
    assert_eq!(client.query(&merge).unwrap().affected_rows, Some(3));
    let rows = client.query(&format!("SELECT k, v, off FROM {} ORDER BY k", target.sql())).unwrap().rows;
    assert_eq!(rows, vec![vec![json!("a"), json!("3"), json!("6")], vec![json!("c"), json!("9"), json!("7")]]);
    // Run again: nothing older can roll a row back.
    assert_eq!(client.query(&merge).unwrap().affected_rows, Some(0));

    let e = client.query(&format!("SELECT nope FROM {}", target.sql())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal, "{e}");
    assert!(e.message().contains("SELECT nope"), "{e}");
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn a_table_created_by_another_task_meanwhile_is_read_not_refused() {
    // The proxy hides the table from the first read (404), as if another
    // task created it between this task's read and its create; the create
    // then gets the emulator's own 409 and the table is read.
    let (mut client, project, dataset) = setup("race");
    let table = TableId::new(&project, &dataset, "orders");
    client.ensure_table(&table, &orders_schema(), &TableOptions::default()).unwrap();
    let mut hidden = false;
    let proxy = Proxy::start(move |seen, upstream| {
        if seen.method == "GET" && seen.path.ends_with("/tables/orders") && !hidden {
            hidden = true;
            return (404, Vec::new(), common::google_error(404, "notFound", "Not found: Table"));
        }
        upstream.forward(seen)
    });
    let mut racing = BigQueryRest::new(&proxy.url, &project);
    let other = TableSchema { fields: vec![TableField::new("x", FieldType::String, FieldMode::Nullable)] };
    assert_eq!(racing.ensure_table(&table, &other, &TableOptions::default()).unwrap(), orders_schema());
    let seen: Vec<String> = proxy.seen.lock().unwrap().iter().map(|s| s.method.clone()).collect();
    assert_eq!(seen, ["GET", "POST", "GET"], "read, create refused with 409, read");
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn a_connect_record_becomes_a_table_and_a_row_the_emulator_stores_as_meant() {
    use connector_api::schema::Schema;
    use sluice_bigquery_sink::schema::{
        connect_row, from_connect, kafka_data_field, kafka_data_value, record_table_schema, ConvertOptions,
    };
    let (mut client, project, dataset) = setup("connect");
    let schema = Schema::parse(
        r#"{"type":"struct","fields":[
        {"field":"code","type":"string"},
        {"field":"total","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
        {"field":"placed","type":"int64","name":"org.apache.kafka.connect.data.Timestamp"},
        {"field":"day","type":"int32","name":"org.apache.kafka.connect.data.Date","optional":true},
        {"field":"attrs","type":"map","keys":{"type":"string"},"values":{"type":"string"}},
        {"field":"lines","type":"array","items":{"type":"struct","fields":[{"field":"sku","type":"string"},{"field":"qty","type":"int32"}]}}
    ]}"#,
    )
    .unwrap();
    let value = serde_json::from_str(
        r#"{"code":"o-1","total":"BNI=","placed":1714557600123,"day":19844,"attrs":{"channel":"web"},
        "lines":[{"sku":"a","qty":2},{"sku":"b","qty":1}]}"#,
    )
    .unwrap();
    let columns = from_connect(&schema, &ConvertOptions::default()).unwrap();
    // The emulator cannot create a RECORD with a sub-field named `offset`,
    // which the kafkaDataFieldName column has (docs/decisions/0005): that
    // column's value is put under a RECORD of the other three here.
    let mut kafka = kafka_data_field("kafka");
    kafka.fields.retain(|f| f.name != "offset");
    let columns = record_table_schema(columns, None, Some(kafka)).unwrap();
    let table = TableId::new(&project, &dataset, "orders");
    assert_eq!(client.ensure_table(&table, &columns, &TableOptions::default()).unwrap(), columns);
    let mut row = connect_row(&value, &schema, false).unwrap();
    let mut kafka = kafka_data_value("orders", 1, 42, 1714557600000);
    kafka.as_object_mut().unwrap().remove("offset");
    row.insert("kafka".into(), kafka);
    let errors =
        client.insert_all(&table, &[InsertRow { insert_id: "orders-1-42".into(), json: row.into() }], false).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let sql = format!(
        "SELECT code, total = NUMERIC '12.34', UNIX_MILLIS(placed), CAST(day AS STRING), \
         attrs, lines, kafka.topic, kafka.partition, FORMAT_TIMESTAMP('%F %T', kafka.insertTime) FROM {}",
        table.sql()
    );
    let rows = client.query(&sql).unwrap().rows;
    assert_eq!(
        rows,
        vec![vec![
            json!("o-1"),
            json!("true"),
            json!("1714557600123"),
            json!("2024-05-01"),
            json!([["channel", "web"]]),
            json!([["a", "2"], ["b", "1"]]),
            json!("orders"),
            json!("1"),
            json!("2024-05-01 10:00:00"),
        ]]
    );
    client.delete_dataset(&project, &dataset).unwrap();
}

#[test]
fn requests_carry_the_service_accounts_token_and_a_401_renews_it() {
    // The proxy answers for Google here (the emulator checks no
    // credentials): it serves the key's token endpoint, answers BigQuery's
    // 401 to the first token as to an expired one, and forwards requests
    // that carry a later token.
    use sluice_bigquery_sink::auth::{GoogleAuth, KeySource};
    let (mut client, project, dataset) = setup("auth");
    let table = TableId::new(&project, &dataset, "orders");
    client.ensure_table(&table, &orders_schema(), &TableOptions::default()).unwrap();
    let mut minted = 0;
    let proxy = Proxy::start(move |seen, upstream| {
        if seen.path == "/token" {
            minted += 1;
            assert!(
                seen.body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
                "{}",
                seen.body
            );
            return (200, Vec::new(), format!(r#"{{"access_token":"tok-{minted}","expires_in":3600}}"#));
        }
        match seen.headers.get("authorization").map(String::as_str) {
            Some("Bearer tok-1") => (
                401,
                Vec::new(),
                common::google_error(401, "authError", "Request had invalid authentication credentials."),
            ),
            Some(a) if a.starts_with("Bearer tok-") => upstream.forward(seen),
            other => panic!("no token: {other:?}"),
        }
    });
    let mut key: serde_json::Value = serde_json::from_str(include_str!("fixtures/test-service-account.json")).unwrap();
    key["token_uri"] = json!(format!("{}/token", proxy.url));
    let auth = GoogleAuth::from_config(KeySource::Json, Some(&key.to_string())).unwrap();
    let mut authed = BigQueryRest::with_auth(&proxy.url, &project, auth.clone());
    assert_eq!(authed.get_table(&table).unwrap(), Some(orders_schema()));
    assert_eq!(authed.get_table(&table).unwrap(), Some(orders_schema()), "the renewed token is cached");
    assert_eq!(auth.fetched(), 2);
    let tokens: Vec<String> = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path != "/token")
        .map(|s| s.headers["authorization"].clone())
        .collect();
    assert_eq!(tokens, ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]);
    client.delete_dataset(&project, &dataset).unwrap();
}
