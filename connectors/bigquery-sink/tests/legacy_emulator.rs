//! The legacy insertAll writer against the BigQuery emulator of
//! `dev/services`. Where a test puts the proxy of `common` in front of the
//! emulator, its comment says what the proxy answers itself and why; the
//! rows that land are always the emulator's.

mod common;

use std::time::Duration;

use common::{dataset, google_error, Proxy};
use connector_api::ErrorKind;
use serde_json::{json, Value};
use sluice_bigquery_sink::{
    legacy::{write_rows, LegacyRow, Limits, RetryPolicy, RowOutcome},
    rest::{BigQueryRest, TableId, TableOptions},
    schema::{FieldMode, FieldType, TableField, TableSchema},
};

fn schema() -> TableSchema {
    TableSchema {
        fields: vec![
            TableField::new("id", FieldType::Integer, FieldMode::Required),
            TableField::new("note", FieldType::String, FieldMode::Nullable),
        ],
    }
}

fn rows(offsets: std::ops::Range<i64>) -> Vec<LegacyRow> {
    offsets
        .map(|o| LegacyRow {
            topic: "orders".into(),
            partition: 0,
            offset: o,
            json: json!({"id": o, "note": format!("n{o}")}),
        })
        .collect()
}

/// The ids in the table, sorted.
fn ids(client: &mut BigQueryRest, table: &TableId) -> Vec<i64> {
    client
        .query(&format!("SELECT id FROM {} ORDER BY id", table.sql()))
        .unwrap()
        .rows
        .iter()
        .map(|r| r[0].as_str().unwrap().parse().unwrap())
        .collect()
}

fn table(test: &str) -> (BigQueryRest, TableId) {
    let (mut client, project, ds) = dataset(test);
    let table = TableId::new(&project, &ds, "orders");
    client.ensure_table(&table, &schema(), &TableOptions::default()).unwrap();
    (client, table)
}

fn no_sleep() -> impl FnMut(Duration) {
    |_| {}
}

#[test]
fn a_bad_row_is_a_bad_record_with_bigquerys_reason_and_the_others_land_once() {
    // The emulator alone: with skipInvalidRows=true it answers as BigQuery.
    let (mut client, table) = table("legacy_bad");
    let mut batch = rows(10..16);
    batch[2].json["id"] = json!("twelve");
    let out =
        write_rows(&mut client, &table, &batch, Limits::default(), RetryPolicy::default(), &mut no_sleep()).unwrap();
    for (i, o) in out.iter().enumerate() {
        if i == 2 {
            let RowOutcome::Failed(e) = o else { panic!("{o:?}") };
            assert_eq!(e.kind(), ErrorKind::BadRecord);
            assert!(e.message().contains("topic orders partition 0 offset 12"), "{e}");
            assert!(e.message().contains("invalid") && e.message().contains("twelve"), "{e}");
        } else {
            assert_eq!(*o, RowOutcome::Written, "row {i}");
        }
    }
    assert_eq!(ids(&mut client, &table), [10, 11, 13, 14, 15]);
}

#[test]
fn a_missing_required_field_is_refused_as_bigquery_does() {
    // The proxy answers for BigQuery here: the emulator stores a row without
    // its REQUIRED `id` as NULL (reference §2, difference 2); BigQuery, with
    // skipInvalidRows=true, writes the other rows and reports that one
    // "Missing required field". The proxy forwards the other rows to the
    // emulator and answers with BigQuery's insertErrors.
    let (mut client, table) = table("legacy_required");
    let proxy = Proxy::start(|seen, upstream| {
        if !seen.is_insert_all() {
            return upstream.forward(seen);
        }
        let mut body = seen.json();
        let all: Vec<Value> = body["rows"].as_array().unwrap().clone();
        let (bad, good): (Vec<usize>, Vec<usize>) = (0..all.len()).partition(|&i| all[i]["json"].get("id").is_none());
        body["rows"] = Value::Array(good.iter().map(|&i| all[i].clone()).collect());
        let (status, headers, reply) = upstream.send("POST", &seen.path, &body.to_string());
        assert_eq!(status, 200, "{reply}");
        let errors: Vec<Value> = bad
            .iter()
            .map(|&i| {
                json!({"index": i, "errors": [{"reason": "invalid", "location": "id", "debugInfo": "",
                "message": "Missing required field: id."}]})
            })
            .collect();
        (200, headers, json!({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors}).to_string())
    });
    let mut via_proxy = BigQueryRest::new(&proxy.url, client.project());
    let mut batch = rows(0..5);
    batch[1].json = json!({"note": "no id"});
    batch[4].json = json!({"note": "none either"});
    let out =
        write_rows(&mut via_proxy, &table, &batch, Limits::default(), RetryPolicy::default(), &mut no_sleep()).unwrap();
    let failed: Vec<(usize, String)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            RowOutcome::Failed(e) => Some((i, e.message().to_string())),
            RowOutcome::Written => None,
        })
        .collect();
    assert_eq!(failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 4]);
    assert!(failed[0].1.contains("offset 1") && failed[0].1.contains("Missing required field: id"), "{failed:?}");
    assert_eq!(ids(&mut client, &table), [0, 2, 3]);
}

#[test]
fn a_request_too_large_is_halved_until_it_fits() {
    // The proxy answers for BigQuery here: the emulator has no request size
    // limit; BigQuery's is 10 MB, answered with 400 "Request payload size
    // exceeds the limit". The proxy applies a limit of 700 bytes with that
    // answer, and forwards requests under it.
    let (mut client, table) = table("legacy_large");
    let proxy = Proxy::start(|seen, upstream| {
        if seen.is_insert_all() && seen.body.len() > 700 {
            return (
                400,
                Vec::new(),
                google_error(400, "invalid", "Request payload size exceeds the limit: 700 bytes."),
            );
        }
        upstream.forward(seen)
    });
    let mut via_proxy = BigQueryRest::new(&proxy.url, client.project());
    let mut batch = rows(0..12);
    batch[7].json["note"] = json!("x".repeat(800));
    let out =
        write_rows(&mut via_proxy, &table, &batch, Limits::default(), RetryPolicy::default(), &mut no_sleep()).unwrap();
    let RowOutcome::Failed(e) = &out[7] else { panic!("{:?}", out[7]) };
    assert_eq!(e.kind(), ErrorKind::BadRecord);
    assert!(e.message().contains("offset 7") && e.message().contains("larger than BigQuery accepts"), "{e}");
    assert!(out.iter().enumerate().all(|(i, o)| i == 7 || *o == RowOutcome::Written), "{out:?}");
    assert_eq!(ids(&mut client, &table), [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]);
    let sizes: Vec<usize> = proxy.inserts().iter().map(|s| s.json()["rows"].as_array().unwrap().len()).collect();
    assert_eq!(sizes[0], 12, "{sizes:?}");
    assert_eq!(sizes[1], 6, "halved: {sizes:?}");
    assert!(sizes.contains(&1), "down to the one row: {sizes:?}");
}

#[test]
fn throttling_is_retried_as_bigquery_retry_says_then_retriable() {
    // The proxy answers for BigQuery here (the emulator never throttles):
    // the first insertAll requests get BigQuery's 403 rateLimitExceeded, the
    // next a 503 backendError with Retry-After, then requests are forwarded.
    let (mut client, table) = table("legacy_throttle");
    let mut refusals = 2;
    let proxy = Proxy::start(move |seen, upstream| {
        if seen.is_insert_all() && refusals > 0 {
            refusals -= 1;
            return if refusals == 1 {
                (
                    403,
                    Vec::new(),
                    google_error(403, "rateLimitExceeded", "Exceeded rate limits: too many insert requests"),
                )
            } else {
                (503, vec![("retry-after".into(), "7".into())], google_error(503, "backendError", "Backend error"))
            };
        }
        upstream.forward(seen)
    });
    let mut via_proxy = BigQueryRest::new(&proxy.url, client.project());
    let retry = RetryPolicy { retries: 1, wait: Duration::from_millis(250) };

    // One retry is not enough: nothing landed, so the whole call is Retriable.
    let mut slept = Vec::new();
    let e =
        write_rows(&mut via_proxy, &table, &rows(0..3), Limits::default(), retry, &mut |d| slept.push(d)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
    assert!(e.message().contains("backendError"), "{e}");
    assert_eq!(slept, [Duration::from_millis(250)]);
    assert!(ids(&mut client, &table).is_empty());

    // The proxy now forwards: the same rows land once.
    let out = write_rows(&mut via_proxy, &table, &rows(0..3), Limits::default(), retry, &mut no_sleep()).unwrap();
    assert!(out.iter().all(|o| *o == RowOutcome::Written));
    assert_eq!(ids(&mut client, &table), [0, 1, 2]);
}

#[test]
fn retry_after_is_honoured_and_rows_that_landed_are_not_sent_again() {
    // The proxy answers for BigQuery here (the emulator never throttles):
    // the second insertAll request gets 503 backendError with Retry-After: 7
    // twice; everything else is forwarded.
    let (mut client, table) = table("legacy_partial");
    let mut n = 0;
    let proxy = Proxy::start(move |seen, upstream| {
        if seen.is_insert_all() {
            n += 1;
            if n == 2 || n == 3 {
                return (
                    503,
                    vec![("retry-after".into(), "7".into())],
                    google_error(503, "backendError", "Backend error"),
                );
            }
        }
        upstream.forward(seen)
    });
    let mut via_proxy = BigQueryRest::new(&proxy.url, client.project());
    let limits = Limits { max_rows: 2, max_bytes: 1 << 20 };
    let mut slept = Vec::new();
    // No retry: the second request's rows are Retriable per row, the first's written.
    let out = write_rows(&mut via_proxy, &table, &rows(0..4), limits, RetryPolicy::default(), &mut |d| slept.push(d))
        .unwrap();
    assert_eq!(out[..2], [RowOutcome::Written, RowOutcome::Written]);
    for o in &out[2..] {
        assert!(matches!(o, RowOutcome::Failed(e) if e.kind() == ErrorKind::Retriable), "{o:?}");
    }
    assert!(slept.is_empty());
    // The task puts the failed rows again: one retry, waiting what Retry-After says.
    let retry = RetryPolicy { retries: 1, wait: Duration::from_millis(100) };
    let out = write_rows(&mut via_proxy, &table, &rows(2..4), limits, retry, &mut |d| slept.push(d)).unwrap();
    assert!(out.iter().all(|o| *o == RowOutcome::Written), "{out:?}");
    assert_eq!(slept, [Duration::from_secs(7)]);
    assert_eq!(ids(&mut client, &table), [0, 1, 2, 3]);
}

#[test]
fn refused_credentials_and_a_missing_table_fail_the_call_naming_what_to_fix() {
    // The proxy answers for BigQuery here (the emulator checks no
    // credentials): 401 as BigQuery answers an invalid token.
    let (client, table) = table("legacy_auth");
    let proxy = Proxy::start(|_, _| {
        (401, Vec::new(), google_error(401, "authError", "Request had invalid authentication credentials."))
    });
    let mut via_proxy = BigQueryRest::new(&proxy.url, client.project());
    let e = write_rows(&mut via_proxy, &table, &rows(0..2), Limits::default(), RetryPolicy::default(), &mut no_sleep())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("keyfile"), "{e}");

    // The emulator alone: a table that is not there.
    let mut client = client;
    let gone = TableId::new(&table.project, &table.dataset, "gone");
    let e = write_rows(&mut client, &gone, &rows(0..2), Limits::default(), RetryPolicy::default(), &mut no_sleep())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal, "{e}");
    assert!(e.message().contains("gone") && e.message().contains("autoCreateTables"), "{e}");
}
