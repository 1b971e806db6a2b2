//! UPSERT / UPSERT_DELETE driven by the connector kit's harness (crashes,
//! re-delivery from the committed offset in batches) against the BigQuery
//! emulator of `dev/services`: real tables, the intermediate table written
//! through the `_default` Storage Write stream, real MERGE statements.

mod bq;

use bq::{env, serial, unique, Rest};
use connector_api::{ConnectorConfig, ErrorKind, TopicPartition};
use connector_kit::harness::{OwnedRecord, RecordBuilder, SinkHarness};
use serde_json::json;
use sluice_bigquery_sink::BigQuerySink;

struct Dataset {
    rest: Rest,
    name: String,
}

impl Dataset {
    fn new(test: &str) -> Dataset {
        let mut rest = Rest::new();
        let name = unique(test);
        rest.create_dataset(&name);
        Dataset { rest, name }
    }

    fn config(&self, mode: &str, threshold: u32) -> ConnectorConfig {
        let e = env();
        ConnectorConfig::new()
            .with("topics", "orders")
            .with("project", e.project)
            .with("defaultDataset", &self.name)
            .with("ingestion.mode", mode)
            .with("kafkaKeyFieldName", "order_id")
            .with("mergeRecordsThreshold", threshold.to_string())
            // Merges in these tests come from the threshold only.
            .with("mergeIntervalMs", "3600000")
            .with("bigquery.rest.endpoint", e.rest)
            .with("bigquery.storage.endpoint", e.grpc)
    }

    /// `(order_id, version)` of every destination row, sorted.
    fn orders(&mut self) -> Vec<(String, i64)> {
        let sql = format!("SELECT order_id, version FROM `{}.{}.orders`", self.rest.project, self.name);
        let mut rows: Vec<(String, i64)> = self
            .rest
            .query(&sql)
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().parse().unwrap()))
            .collect();
        rows.sort();
        rows
    }

    fn intermediate_rows(&mut self) -> i64 {
        self.rest.count(&format!("SELECT COUNT(*) FROM `{}.{}.orders_tmp`", self.rest.project, self.name))
    }
}

/// Versions `1..=versions` of orders `0..n` in `partition`, version by
/// version (all orders' v1, then all v2, …), from offset `from`.
fn versions(partition: i32, from: i64, n: u32, versions: u32) -> Vec<OwnedRecord> {
    let mut b = RecordBuilder::new("orders", partition).at(from);
    for v in 1..=versions {
        for o in 0..n {
            b.key(format!("p{partition}-o{o}"))
                .value(json!({"status": format!("v{v}"), "version": v, "total": o * 10 + v}).to_string())
                .push();
        }
    }
    b.take()
}

fn latest(partitions: &[i32], n: u32, version: i64) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> =
        partitions.iter().flat_map(|p| (0..n).map(move |o| (format!("p{p}-o{o}"), version))).collect();
    v.sort();
    v
}

#[test]
fn each_order_ends_at_its_last_version_and_only_merged_offsets_are_durable() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_last_version");
    let (n, threshold) = (40, 100);
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT", threshold)).unwrap();
    let tps = [TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)];
    h.open(&tps).unwrap();
    // 150 records per partition in one put: 300 ≥ the threshold, merged.
    for p in [0, 1] {
        h.put(&versions(p, 0, n, 5)[..150]).unwrap();
    }
    h.commit().unwrap();
    h.assert_durable("orders", 0, 150);
    // 50 more of partition 0, below the threshold: appended, not merged,
    // not durable.
    h.put(&versions(0, 0, n, 5)[150..]).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 150);
    h.assert_durable("orders", 1, 150);
    let merged_so_far = d.orders();
    assert_eq!(merged_so_far.len(), 2 * n as usize);
    assert!(merged_so_far.iter().all(|(_, v)| *v == 3 || *v == 4), "{merged_so_far:?}");
    // After a crash partition 0's 50 come again; with partition 1's last
    // 50 they reach the threshold: a merge brings each order to v5.
    h.crash().unwrap();
    h.put(&versions(1, 0, n, 5)[150..]).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 200);
    h.assert_durable("orders", 1, 200);
    h.never_past_unsettled();
    assert_eq!(d.orders(), latest(&[0, 1], n, 5));
    // Merged rows left the intermediate table.
    assert_eq!(d.intermediate_rows(), 0);
}

/// The worker dies after a MERGE and before the offset commit; the next
/// owner gets the records again from the committed offset, and its first
/// batch (versions older than what the destination holds) is merged on its
/// own: no order may go back.
#[test]
fn a_replay_merged_in_parts_rolls_no_order_back() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_replay_split");
    let n = 20;
    let all = versions(0, 0, n, 5);
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT", 20)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    h.put(&all).unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 5));
    // The next owner (nothing was committed): v1 of every order, merged
    // alone (20 records, the threshold).
    let mut next = SinkHarness::new(BigQuerySink, d.config("UPSERT", 20)).unwrap();
    next.open(&[TopicPartition::new("orders", 0)]).unwrap();
    next.put(&all[..20]).unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 5));
    next.put(&all[20..60]).unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 5));
    next.put(&all[60..]).unwrap();
    next.commit().unwrap();
    next.assert_durable("orders", 0, 100);
    assert_eq!(d.orders(), latest(&[0], n, 5));
    // A newer version still replaces the row.
    next.put(&RecordBuilder::new("orders", 0).at(100).records(20, |b, o| {
        b.key(format!("p0-o{}", o - 100)).value(json!({"status": "v6", "version": 6, "total": 1}).to_string());
    }))
    .unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 6));
}

/// A tombstone deletes its order; a replay of the versions before it,
/// merged before the tombstone is re-delivered, does not bring it back
/// (the tombstone stays in the intermediate table until it is committed).
#[test]
fn a_tombstone_deletes_its_order_and_a_replay_does_not_bring_it_back() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_delete");
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT_DELETE", 2)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let mut b = RecordBuilder::new("orders", 0);
    for v in 1..=3 {
        b.key("gone").value(json!({"status": format!("v{v}"), "version": v, "total": v}).to_string()).push();
    }
    b.key("gone").tombstone().push();
    b.key("kept").value(json!({"status": "v1", "version": 1, "total": 7}).to_string()).push();
    b.key("kept").tombstone().push();
    b.key("kept").value(json!({"status": "v3", "version": 3, "total": 7}).to_string()).push();
    b.key("late").value(json!({"status": "v1", "version": 1, "total": 1}).to_string()).push();
    let records = b.take();
    // One put, one merge: "gone" ends deleted, "kept" deleted and back.
    h.put(&records).unwrap();
    let expect = vec![("kept".to_string(), 3), ("late".to_string(), 1)];
    assert_eq!(d.orders(), expect);
    // Nothing committed. The next owner's first batch, v1 and v2 of
    // "gone", is merged alone (the threshold is 2).
    let mut next = SinkHarness::new(BigQuerySink, d.config("UPSERT_DELETE", 2)).unwrap();
    next.open(&[TopicPartition::new("orders", 0)]).unwrap();
    next.put(&records[..2]).unwrap();
    assert_eq!(d.orders(), expect);
    next.put(&records[2..]).unwrap();
    assert_eq!(d.orders(), expect);
    next.commit().unwrap();
    next.assert_durable("orders", 0, 8);
    // Once committed a tombstone may leave the intermediate table (at the
    // next merge); a later record of the key is a row again.
    next.put(&RecordBuilder::new("orders", 0).at(8).records(2, |b, o| {
        b.key("gone").value(json!({"status": format!("v{o}"), "version": o, "total": 1}).to_string());
    }))
    .unwrap();
    next.commit().unwrap();
    next.assert_durable("orders", 0, 10);
    assert_eq!(d.orders(), vec![("gone".to_string(), 9), ("kept".to_string(), 3), ("late".to_string(), 1)]);
    next.put(&RecordBuilder::new("orders", 0).at(10).records(2, |b, o| {
        b.key("late").value(json!({"status": format!("v{o}"), "version": o, "total": 1}).to_string());
    }))
    .unwrap();
    assert_eq!(d.intermediate_rows(), 0, "merged rows and committed tombstones are removed");
}

#[test]
fn without_deletes_a_tombstone_is_skipped_and_a_keyless_record_goes_to_the_dlq() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_no_delete");
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT", 3)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let mut b = RecordBuilder::new("orders", 0);
    b.key("a").value(json!({"status": "v1", "version": 1, "total": 1}).to_string()).push();
    b.key("a").tombstone().push();
    b.value(json!({"status": "v1", "version": 1, "total": 1}).to_string()).push();
    let outcome = h.put(&b.take()).unwrap();
    let failed: Vec<u32> = outcome.failures().iter().map(|f| f.index).collect();
    assert_eq!(failed, [2]);
    let e = &outcome.failures()[0].error;
    assert_eq!(e.kind(), ErrorKind::BadRecord);
    assert!(e.message().contains("no key") && e.message().contains("offset 2"), "{}", e.message());
    h.commit().unwrap();
    h.assert_durable("orders", 0, 3);
    assert_eq!(d.orders(), vec![("a".to_string(), 1)]);
}

/// A Connect schema with a REQUIRED field: the destination keeps it
/// REQUIRED, the intermediate table relaxes it (a tombstone's row has only
/// its key), and a tombstone still deletes.
#[test]
fn tables_are_created_from_the_connect_schema_and_a_tombstone_fits_the_intermediate_table() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_connect_schema");
    let schema = json!({"type": "struct", "optional": false, "fields": [
        {"field": "status", "type": "string", "optional": false},
        {"field": "version", "type": "int64", "optional": false}
    ]})
    .to_string();
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT_DELETE", 4)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let mut b = RecordBuilder::new("orders", 0);
    for (key, v) in [("a", 1), ("b", 1), ("a", 2)] {
        b.key(key).value_schema(&schema).value(json!({"status": format!("v{v}"), "version": v}).to_string()).push();
    }
    b.key("b").tombstone().push();
    h.put(&b.take()).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 4);
    assert_eq!(d.orders(), vec![("a".to_string(), 2)]);
    let modes = |table: &str, d: &mut Dataset| -> Vec<String> {
        let t = d.rest.table(&d.name.clone(), table);
        t["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {}", f["name"].as_str().unwrap(), f["mode"].as_str().unwrap_or("NULLABLE")))
            .collect()
    };
    assert_eq!(
        modes("orders", &mut d),
        ["status REQUIRED", "version REQUIRED", "order_id NULLABLE", "_sluice_offset NULLABLE"]
    );
    assert_eq!(modes("orders_tmp", &mut d)[..2], ["status NULLABLE", "version NULLABLE"]);
}

#[test]
fn an_existing_table_without_the_offset_column_fails_the_task_with_the_fix() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_no_offset_column");
    let name = d.name.clone();
    d.rest.create_table(
        &name,
        "orders",
        json!([{"name": "order_id", "type": "STRING"}, {"name": "status", "type": "STRING"},
               {"name": "version", "type": "INTEGER"}]),
    );
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT", 1)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let e = h.put(&versions(0, 0, 1, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("ADD COLUMN _sluice_offset INT64"), "{}", e.message());
}

/// A paused former owner wakes up after the next owner took over: the
/// note committed before its MERGE is refused (the group moved on), so it
/// merges nothing; the rows it appended are older than what the next owner
/// merged and change nothing when that one merges.
#[test]
fn a_former_owner_whose_note_is_refused_merges_nothing() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_fenced");
    let n = 10;
    let all = versions(0, 0, n, 5);
    let mut former = SinkHarness::new(BigQuerySink, d.config("UPSERT", 20)).unwrap();
    former.open(&[TopicPartition::new("orders", 0)]).unwrap();
    former.put(&all[..20]).unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 2));
    // Paused here; the next owner takes every version to v5.
    let mut next = SinkHarness::new(BigQuerySink, d.config("UPSERT", 20)).unwrap();
    next.open(&[TopicPartition::new("orders", 0)]).unwrap();
    next.put(&all).unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 5));
    // The former owner wakes up with v3 and v4 in hand.
    *former.context().fenced.lock().unwrap() = Some("generation 1 is not current".into());
    let e = former.put(&all[20..40]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retriable, "{}", e.message());
    assert_eq!(d.orders(), latest(&[0], n, 5));
    next.put(&RecordBuilder::new("orders", 0).at(50).records(20, |b, o| {
        b.key(format!("p0-o{}", o % 10))
            .value(json!({"status": "v9", "version": 5 + (o - 50) / 10 + 1, "total": 1}).to_string());
    }))
    .unwrap();
    assert_eq!(d.orders(), latest(&[0], n, 7));
}

#[test]
fn an_intermediate_table_older_than_the_destination_fails_the_task_with_the_fix() {
    let _serial = serial();
    let mut d = Dataset::new("upsert_old_intermediate");
    let name = d.name.clone();
    d.rest.create_table(
        &name,
        "orders",
        json!([{"name": "order_id", "type": "STRING"}, {"name": "status", "type": "STRING"},
               {"name": "version", "type": "INTEGER"}, {"name": "total", "type": "INTEGER"},
               {"name": "_sluice_offset", "type": "INTEGER"}]),
    );
    // Created when the destination had no `total`.
    d.rest.create_table(
        &name,
        "orders_tmp",
        json!([{"name": "order_id", "type": "STRING"}, {"name": "status", "type": "STRING"},
               {"name": "version", "type": "INTEGER"}, {"name": "_sluice_offset", "type": "INTEGER"},
               {"name": "_sluice_topic", "type": "STRING"}, {"name": "_sluice_partition", "type": "INTEGER"},
               {"name": "_sluice_deleted", "type": "BOOLEAN"}]),
    );
    let mut h = SinkHarness::new(BigQuerySink, d.config("UPSERT", 1)).unwrap();
    h.open(&[TopicPartition::new("orders", 0)]).unwrap();
    let e = h.put(&versions(0, 0, 1, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("lacks column(s) total") && e.message().contains("DROP TABLE"), "{}", e.message());
}
