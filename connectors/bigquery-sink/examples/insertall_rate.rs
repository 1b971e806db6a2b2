//! Measures the legacy insertAll writer against the emulator of
//! `dev/services`: N order-like rows in put batches of 500 (the writer's
//! request size), rows/s of the whole run and of a query counting them.
//!
//! `eval "$(dev/services env)"; cargo run -p sluice-bigquery-sink --example insertall_rate -- 20000`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_bigquery_sink::{
    legacy::{write_rows, LegacyRow, Limits, RetryPolicy, RowOutcome},
    rest::{BigQueryRest, TableId, TableOptions},
    schema::{FieldMode, FieldType, TableField, TableSchema},
};

fn main() -> Result<(), String> {
    let n: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set: eval \"$(dev/services env)\""));
    let project = env("BQ_PROJECT")?;
    let mut client = BigQueryRest::new(&env("BQ_REST_ENDPOINT")?, &project);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dataset = format!("rate_{nanos}");
    client.create_dataset(&project, &dataset).map_err(|e| e.to_string())?;
    let table = TableId::new(&project, &dataset, "orders");
    let schema = TableSchema {
        fields: vec![
            TableField::new("code", FieldType::String, FieldMode::Required),
            TableField::new("customer", FieldType::String, FieldMode::Nullable),
            TableField::new("total", FieldType::Numeric, FieldMode::Nullable),
            TableField::new("placed", FieldType::Timestamp, FieldMode::Nullable),
            TableField::new("status", FieldType::String, FieldMode::Nullable),
        ],
    };
    client.ensure_table(&table, &schema, &TableOptions::default()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut written = 0;
    for chunk_start in (0..n).step_by(500) {
        let rows: Vec<LegacyRow> = (chunk_start..(chunk_start + 500).min(n))
            .map(|o| LegacyRow {
                topic: "orders".into(),
                partition: (o % 4) as i32,
                offset: o,
                json: json!({"code": format!("o-{o}"), "customer": format!("c-{}", o % 977),
                    "total": format!("{}.{:02}", o % 1000, o % 100), "placed": "2024-05-01T10:00:00.000Z",
                    "status": "CREATED"}),
            })
            .collect();
        let out =
            write_rows(&mut client, &table, &rows, Limits::default(), RetryPolicy::default(), &mut |d: Duration| {
                std::thread::sleep(d)
            })
            .map_err(|e| e.to_string())?;
        written += out.iter().filter(|o| **o == RowOutcome::Written).count();
    }
    let elapsed = started.elapsed();
    let counted = client.query(&format!("SELECT COUNT(*) FROM {}", table.sql())).map_err(|e| e.to_string())?;
    println!(
        "{written} rows written in {:.2} s: {:.0} rows/s; the table counts {}",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        counted.rows.first().and_then(|r| r.first()).cloned().unwrap_or_default()
    );
    client.delete_dataset(&project, &dataset).map_err(|e| e.to_string())?;
    Ok(())
}
