//! Schema evolution through the REST client (`fit_schema`: read, plan,
//! `tables.patch`) against the BigQuery emulator of `dev/services`.
//!
//! The emulator's own `tables.patch` updates its catalog but not its
//! storage, so every insertAll after a patch answered 500
//! (docs/decisions/0005-bigquery-emulator-merge-and-schema-evolution.md).
//! BigQuery alters both in that one call, and so does the emulator with
//! the launcher's patch (dev/bigquery/launch.py, decision 0042): new
//! top-level columns are added to its storage in the patch. Everything
//! else is the emulator's own answer; a forwarding proxy counts the
//! patches.

mod common;

use common::{dataset, forwarding_proxy};
use connector_api::ErrorKind;
use serde_json::{json, Value};
use sluice_bigquery_sink::{
    rest::{BigQueryRest, InsertRow, TableId, TableOptions},
    schema::{EvolutionPolicy, FieldMode, FieldType, TableField, TableSchema},
};

fn base() -> TableSchema {
    TableSchema {
        fields: vec![
            TableField::new("id", FieldType::Integer, FieldMode::Required),
            TableField::new("note", FieldType::String, FieldMode::Nullable),
        ],
    }
}

fn insert(client: &mut BigQueryRest, table: &TableId, rows: Vec<Value>) {
    let rows: Vec<InsertRow> =
        rows.into_iter().enumerate().map(|(i, json)| InsertRow { insert_id: format!("r{i}"), json }).collect();
    let errors = client.insert_all(table, &rows, true).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_new_field_becomes_a_nullable_column_and_later_rows_carry_it() {
    let (mut client, project, ds) = dataset("evolve_new");
    let table = TableId::new(&project, &ds, "customers");
    client.ensure_table(&table, &base(), &TableOptions::default()).unwrap();
    insert(&mut client, &table, vec![json!({"id": 1, "note": "before"})]);

    let proxy = forwarding_proxy();
    let mut via_proxy = BigQueryRest::new(&proxy.url, &project);
    let mut record = base();
    record.fields.push(TableField::new("email", FieldType::String, FieldMode::Nullable));

    // Not allowed: the record is refused, naming the field and the key; the table stays.
    let e = via_proxy.fit_schema(&table, &record, EvolutionPolicy::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRecord);
    assert!(e.message().contains("`email`") && e.message().contains("allowNewBigQueryFields=true"), "{e}");
    assert_eq!(client.get_table(&table).unwrap().unwrap(), base());

    let allow = EvolutionPolicy { allow_new_fields: true, ..Default::default() };
    let schema = via_proxy.fit_schema(&table, &record, allow).unwrap();
    assert_eq!(schema, record);
    assert_eq!(client.get_table(&table).unwrap().unwrap(), record);
    // Fitting again changes nothing.
    assert_eq!(via_proxy.fit_schema(&table, &record, allow).unwrap(), record);

    insert(&mut client, &table, vec![json!({"id": 2, "note": "after", "email": "a@example.com"})]);
    let rows = client.query(&format!("SELECT id, email FROM {} ORDER BY id", table.sql())).unwrap().rows;
    assert_eq!(rows, vec![vec![json!("1"), Value::Null], vec![json!("2"), json!("a@example.com")]]);
    let patches = proxy.seen.lock().unwrap().iter().filter(|s| s.method == "PATCH").count();
    assert_eq!(patches, 1, "one patch for the one change");
    client.delete_dataset(&project, &ds).unwrap();
}

#[test]
fn a_required_column_is_relaxed_only_when_allowed() {
    let (mut client, project, ds) = dataset("evolve_relax");
    let table = TableId::new(&project, &ds, "customers");
    client.ensure_table(&table, &base(), &TableOptions::default()).unwrap();
    let proxy = forwarding_proxy();
    let mut via_proxy = BigQueryRest::new(&proxy.url, &project);
    let record = TableSchema { fields: vec![TableField::new("note", FieldType::String, FieldMode::Nullable)] };

    let e = via_proxy.fit_schema(&table, &record, EvolutionPolicy::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRecord);
    assert!(e.message().contains("`id`") && e.message().contains("allowBigQueryRequiredFieldRelaxation=true"), "{e}");

    let relax = EvolutionPolicy { allow_relaxation: true, ..Default::default() };
    via_proxy.fit_schema(&table, &record, relax).unwrap();
    let now = client.get_table(&table).unwrap().unwrap();
    assert_eq!(now.fields[0], TableField::new("id", FieldType::Integer, FieldMode::Nullable));
    insert(&mut client, &table, vec![json!({"note": "no id"})]);
    let rows = client.query(&format!("SELECT id, note FROM {}", table.sql())).unwrap().rows;
    assert_eq!(rows, vec![vec![Value::Null, json!("no id")]]);
    client.delete_dataset(&project, &ds).unwrap();
}
