//! UPSERT / UPSERT_DELETE (legacy `upsertEnabled` / `deleteEnabled`): the
//! decisions, as pure functions. The task (`task/upsert_io.rs`) appends
//! each record as a row of an intermediate table and runs the statements
//! built here; the crate README ("UPSERT") gives the crash sequences.
//!
//! - The destination holds one row per `kafkaKeyFieldName` value and, in
//!   [`OFFSET_COLUMN`], the Kafka offset of the record that row came from.
//! - The intermediate table `<table>_<intermediateTableSuffix>` holds the
//!   destination's columns (all NULLABLE: a tombstone has no values) plus
//!   the record's topic, partition and whether it is a tombstone.
//! - [`merge_sql`] takes, per key, the intermediate row of the largest
//!   offset and applies it only when that offset is larger than the one the
//!   destination row holds: re-merging rows already merged changes nothing,
//!   and an older version never replaces a newer one.
//! - [`cleanup_sql`] removes merged rows from the intermediate table; a
//!   tombstone stays until its offset was reported durable, so a replay of
//!   older versions cannot bring its key back (the destination no longer
//!   has a row to remember the offset by).

use std::time::Duration;

use crate::{
    rest::TableId,
    schema::{FieldMode, FieldType, TableField, TableSchema},
};

/// The destination's column holding the Kafka offset of the record its row
/// came from.
pub const OFFSET_COLUMN: &str = "_sluice_offset";
/// Intermediate table: the record's topic.
pub const TOPIC_COLUMN: &str = "_sluice_topic";
/// Intermediate table: the record's partition.
pub const PARTITION_COLUMN: &str = "_sluice_partition";
/// Intermediate table: true for a tombstone (a delete).
pub const DELETED_COLUMN: &str = "_sluice_deleted";

/// The intermediate table of `table` (Confluent's naming, without its
/// random part, so the next owner of a partition finds the rows).
pub fn intermediate_table(table: &str, suffix: &str) -> String {
    format!("{table}_{suffix}")
}

/// The destination schema for a record's schema: its columns plus
/// [`OFFSET_COLUMN`].
pub fn destination_schema(record: &TableSchema) -> TableSchema {
    let mut schema = record.clone();
    if schema.field(OFFSET_COLUMN).is_none() {
        schema.fields.push(TableField::new(OFFSET_COLUMN, FieldType::Integer, FieldMode::Nullable));
    }
    schema
}

/// The intermediate table's schema: the destination's columns, REQUIRED
/// ones relaxed (a tombstone's row has only its key), plus topic,
/// partition and the tombstone flag.
pub fn intermediate_schema(destination: &TableSchema) -> TableSchema {
    fn relax(f: &TableField) -> TableField {
        let mut f = f.clone();
        if f.mode == FieldMode::Required {
            f.mode = FieldMode::Nullable;
        }
        f.fields = f.fields.iter().map(relax).collect();
        f
    }
    let mut fields: Vec<TableField> = destination.fields.iter().map(relax).collect();
    for (name, kind) in [
        (TOPIC_COLUMN, FieldType::String),
        (PARTITION_COLUMN, FieldType::Integer),
        (DELETED_COLUMN, FieldType::Boolean),
    ] {
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            fields.push(TableField::new(name, kind, FieldMode::Nullable));
        }
    }
    TableSchema { fields }
}

/// Why a destination table cannot be merged into: it lacks the offset or
/// the key column. The message says what to change.
pub fn check_destination(table: &TableId, schema: &TableSchema, key: &str) -> Result<(), String> {
    match schema.field(OFFSET_COLUMN) {
        Some(f) if f.field_type == FieldType::Integer && f.mode != FieldMode::Repeated => {}
        _ => {
            return Err(format!(
                "table {table} has no INTEGER column {OFFSET_COLUMN}, which upsert needs to keep each key's latest \
                 row by Kafka offset: run `ALTER TABLE {} ADD COLUMN {OFFSET_COLUMN} INT64`, or let the sink create \
                 the table (autoCreateTables=true)",
                table.sql()
            ))
        }
    }
    match schema.field(key) {
        Some(f) if f.mode != FieldMode::Repeated => Ok(()),
        _ => Err(format!(
            "table {table} has no column {key} (kafkaKeyFieldName) to merge rows by: add it, or set \
             kafkaKeyFieldName to the key column"
        )),
    }
}

/// Why an existing intermediate table cannot take the destination's rows:
/// it lacks some of the columns [`intermediate_schema`] gives it (the
/// destination gained columns since it was created). Dropping it is safe:
/// its rows are merged already or belong to records not yet committed,
/// which Kafka delivers again.
pub fn check_intermediate(
    intermediate: &TableId,
    schema: &TableSchema,
    destination: &TableId,
    expected: &TableSchema,
) -> Result<(), String> {
    let missing: Vec<&str> =
        expected.fields.iter().filter(|f| schema.field(&f.name).is_none()).map(|f| f.name.as_str()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "intermediate table {intermediate} lacks column(s) {} of table {destination} (it was created before they \
         were added): drop {intermediate} (`DROP TABLE {}`; the sink creates it again, and records not yet merged \
         are delivered again) or add the columns to it",
        missing.join(", "),
        intermediate.sql()
    ))
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', ""))
}

fn text(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Which intermediate rows one merge or cleanup covers: per topic, the
/// partitions this task owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope<'a> {
    pub topic: &'a str,
    pub partitions: Vec<i32>,
}

fn scope_sql(scopes: &[Scope<'_>]) -> String {
    let parts: Vec<String> = scopes
        .iter()
        .filter(|s| !s.partitions.is_empty())
        .map(|s| {
            let list: Vec<String> = s.partitions.iter().map(i32::to_string).collect();
            format!(
                "({} = {} AND {} IN ({}))",
                quote(TOPIC_COLUMN),
                text(s.topic),
                quote(PARTITION_COLUMN),
                list.join(", ")
            )
        })
        .collect();
    if parts.is_empty() {
        "FALSE".into()
    } else {
        parts.join(" OR ")
    }
}

/// The MERGE of the intermediate rows of `scopes` into `destination`,
/// whose schema (with [`OFFSET_COLUMN`]) is `schema`: per key the row of
/// the largest offset (duplicates from re-delivery are the same row); a
/// matched row is replaced (or deleted, for a tombstone when `deletes`)
/// only by a larger offset; a new key is inserted unless its latest record
/// is a tombstone. Without `deletes` tombstones are never written to the
/// intermediate table.
///
/// A RECORD key is compared as `TO_JSON_STRING` (BigQuery cannot
/// partition by a STRUCT); other keys as they are.
pub fn merge_sql(
    destination: &TableId,
    intermediate: &TableId,
    schema: &TableSchema,
    key: &str,
    scopes: &[Scope<'_>],
    deletes: bool,
) -> String {
    let record_key = schema.field(key).is_some_and(|f| f.field_type == FieldType::Record);
    let k = |alias: &str| {
        let column = if alias.is_empty() { quote(key) } else { format!("{alias}.{}", quote(key)) };
        if record_key {
            format!("TO_JSON_STRING({column})")
        } else {
            column
        }
    };
    let off = quote(OFFSET_COLUMN);
    let deleted = quote(DELETED_COLUMN);
    let columns: Vec<String> = schema.fields.iter().map(|f| quote(&f.name)).collect();
    let set: Vec<String> = schema
        .fields
        .iter()
        .filter(|f| !f.name.eq_ignore_ascii_case(key))
        .map(|f| format!("{0} = src.{0}", quote(&f.name)))
        .collect();
    let values: Vec<String> = columns.iter().map(|c| format!("src.{c}")).collect();
    let newer = format!("src.{off} > IFNULL(dst.{off}, -1)");
    let mut sql = format!(
        "MERGE {dst} dst\nUSING (SELECT * FROM {tmp} WHERE {k} IS NOT NULL AND ({scope}) \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY {pk} ORDER BY {off} DESC) = 1) src\nON {dk} = {sk}\n",
        dst = destination.sql(),
        tmp = intermediate.sql(),
        k = quote(key),
        scope = scope_sql(scopes),
        pk = k(""),
        dk = k("dst"),
        sk = k("src"),
    );
    if deletes {
        sql.push_str(&format!("WHEN MATCHED AND {newer} AND src.{deleted} THEN DELETE\n"));
    }
    if !set.is_empty() {
        sql.push_str(&format!(
            "WHEN MATCHED AND {newer} AND NOT IFNULL(src.{deleted}, FALSE) THEN UPDATE SET {}\n",
            set.join(", ")
        ));
    }
    sql.push_str(&format!(
        "WHEN NOT MATCHED AND NOT IFNULL(src.{deleted}, FALSE) THEN INSERT ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    ));
    sql
}

/// One partition's cleanup bounds: merged rows below `rows_below` go; a
/// tombstone only below `tombstones_below` (what was reported durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub rows_below: i64,
    pub tombstones_below: Option<i64>,
}

/// The DELETE of merged intermediate rows; None when there is nothing to
/// delete.
pub fn cleanup_sql(intermediate: &TableId, parts: &[Cleanup<'_>]) -> Option<String> {
    let off = quote(OFFSET_COLUMN);
    let deleted = quote(DELETED_COLUMN);
    let conditions: Vec<String> = parts
        .iter()
        .map(|c| {
            let tombstones = match c.tombstones_below {
                Some(t) => format!("{off} < {}", t.min(c.rows_below)),
                None => "FALSE".into(),
            };
            format!(
                "({} = {} AND {} = {} AND {off} < {} AND (NOT IFNULL({deleted}, FALSE) OR {tombstones}))",
                quote(TOPIC_COLUMN),
                text(c.topic),
                quote(PARTITION_COLUMN),
                c.partition,
                c.rows_below,
            )
        })
        .collect();
    (!conditions.is_empty()).then(|| format!("DELETE FROM {} WHERE {}", intermediate.sql(), conditions.join(" OR ")))
}

/// Whether a merge is due: `records` appended since the last one reached
/// `mergeRecordsThreshold`, or `elapsed` since it reached
/// `mergeIntervalMs` (with anything to merge).
pub fn merge_due(records: u64, elapsed: Duration, interval: Option<Duration>, threshold: Option<u64>) -> bool {
    if records == 0 {
        return false;
    }
    threshold.is_some_and(|t| records >= t) || interval.is_some_and(|i| elapsed >= i)
}

/// Whether a failed MERGE lost to another DML statement on the same table
/// (BigQuery serialises DML per table and aborts one of two that touch the
/// same data: "Could not serialize access to table … due to concurrent
/// update", "Transaction is aborted due to concurrent update"): worth
/// running again, unlike an error in the statement.
pub fn lost_to_concurrent_dml(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("concurrent update") || m.contains("could not serialize access")
}

/// The note committed for a partition before each merge: `bqu1 <offset>`,
/// records below `offset` are in the intermediate table. Committing it is
/// the fence: a task that lost the partition is refused and does not merge.
pub fn note(offset: i64) -> String {
    format!("bqu1 {offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: &str) -> TableId {
        TableId::new("p", "d", t)
    }

    fn orders() -> TableSchema {
        destination_schema(&TableSchema {
            fields: vec![
                TableField::new("status", FieldType::String, FieldMode::Required),
                TableField::new("total", FieldType::Numeric, FieldMode::Nullable),
                TableField::new("order_id", FieldType::String, FieldMode::Nullable),
            ],
        })
    }

    #[test]
    fn the_intermediate_table_relaxes_required_columns_and_adds_kafka_columns() {
        let tmp = intermediate_schema(&orders());
        let names: Vec<String> = tmp.fields.iter().map(|f| format!("{} {} {}", f.name, f.field_type, f.mode)).collect();
        assert_eq!(
            names,
            [
                "status STRING NULLABLE",
                "total NUMERIC NULLABLE",
                "order_id STRING NULLABLE",
                "_sluice_offset INTEGER NULLABLE",
                "_sluice_topic STRING NULLABLE",
                "_sluice_partition INTEGER NULLABLE",
                "_sluice_deleted BOOLEAN NULLABLE",
            ]
        );
        assert_eq!(intermediate_table("orders", "tmp"), "orders_tmp");
        assert_eq!(destination_schema(&orders()), orders(), "the offset column is added once");
    }

    #[test]
    fn the_merge_keeps_the_latest_row_by_offset_and_deletes_only_when_asked() {
        let scopes = [Scope { topic: "orders", partitions: vec![0, 2] }];
        let sql = merge_sql(&id("o"), &id("o_tmp"), &orders(), "order_id", &scopes, true);
        assert_eq!(
            sql,
            "MERGE `p.d.o` dst\nUSING (SELECT * FROM `p.d.o_tmp` WHERE `order_id` IS NOT NULL AND \
             ((`_sluice_topic` = 'orders' AND `_sluice_partition` IN (0, 2))) QUALIFY ROW_NUMBER() OVER \
             (PARTITION BY `order_id` ORDER BY `_sluice_offset` DESC) = 1) src\nON dst.`order_id` = src.`order_id`\n\
             WHEN MATCHED AND src.`_sluice_offset` > IFNULL(dst.`_sluice_offset`, -1) AND src.`_sluice_deleted` THEN \
             DELETE\nWHEN MATCHED AND src.`_sluice_offset` > IFNULL(dst.`_sluice_offset`, -1) AND NOT \
             IFNULL(src.`_sluice_deleted`, FALSE) THEN UPDATE SET `status` = src.`status`, `total` = src.`total`, \
             `_sluice_offset` = src.`_sluice_offset`\nWHEN NOT MATCHED AND NOT IFNULL(src.`_sluice_deleted`, FALSE) \
             THEN INSERT (`status`, `total`, `order_id`, `_sluice_offset`) VALUES (src.`status`, src.`total`, \
             src.`order_id`, src.`_sluice_offset`)"
        );
        let upsert_only = merge_sql(&id("o"), &id("o_tmp"), &orders(), "order_id", &scopes, false);
        assert!(!upsert_only.contains("DELETE"), "{upsert_only}");
        // A topic name cannot break out of its quotes.
        let odd = merge_sql(
            &id("o"),
            &id("o_tmp"),
            &orders(),
            "order_id",
            &[Scope { topic: "a'b", partitions: vec![1] }],
            true,
        );
        assert!(odd.contains("'a\\'b'"), "{odd}");
        // No partition owned: the merge reads nothing.
        assert!(merge_sql(&id("o"), &id("o_tmp"), &orders(), "order_id", &[], true).contains("AND (FALSE)"));
    }

    #[test]
    fn a_record_key_is_compared_as_json_text() {
        let mut schema = orders();
        schema.fields.push(TableField::record(
            "k",
            FieldMode::Nullable,
            vec![TableField::new("id", FieldType::Integer, FieldMode::Nullable)],
        ));
        let sql = merge_sql(&id("o"), &id("o_tmp"), &schema, "k", &[Scope { topic: "t", partitions: vec![0] }], false);
        assert!(sql.contains("PARTITION BY TO_JSON_STRING(`k`)"), "{sql}");
        assert!(sql.contains("ON TO_JSON_STRING(dst.`k`) = TO_JSON_STRING(src.`k`)"), "{sql}");
    }

    #[test]
    fn cleanup_keeps_tombstones_until_they_were_reported_durable() {
        let parts = [
            Cleanup { topic: "orders", partition: 0, rows_below: 100, tombstones_below: Some(40) },
            Cleanup { topic: "orders", partition: 1, rows_below: 7, tombstones_below: None },
        ];
        assert_eq!(
            cleanup_sql(&id("o_tmp"), &parts).unwrap(),
            "DELETE FROM `p.d.o_tmp` WHERE (`_sluice_topic` = 'orders' AND `_sluice_partition` = 0 AND \
             `_sluice_offset` < 100 AND (NOT IFNULL(`_sluice_deleted`, FALSE) OR `_sluice_offset` < 40)) OR \
             (`_sluice_topic` = 'orders' AND `_sluice_partition` = 1 AND `_sluice_offset` < 7 AND (NOT \
             IFNULL(`_sluice_deleted`, FALSE) OR FALSE))"
        );
        assert_eq!(cleanup_sql(&id("o_tmp"), &[]), None);
    }

    #[test]
    fn a_merge_is_due_by_records_or_by_time_and_only_with_something_to_merge() {
        let s = Duration::from_secs;
        assert!(merge_due(500, s(1), Some(s(60)), Some(500)));
        assert!(!merge_due(499, s(1), Some(s(60)), Some(500)));
        assert!(merge_due(1, s(60), Some(s(60)), None));
        assert!(!merge_due(1, s(59), Some(s(60)), None));
        assert!(!merge_due(0, s(600), Some(s(60)), Some(1)));
        assert!(!merge_due(10_000, s(600), None, None));
    }

    #[test]
    fn a_merge_that_lost_to_another_dml_statement_is_worth_another_attempt() {
        assert!(lost_to_concurrent_dml(
            "running query `MERGE …`: invalidQuery: Could not serialize access to table p:d.o due to concurrent update"
        ));
        assert!(lost_to_concurrent_dml("Transaction is aborted due to concurrent update against table p.d.o"));
        assert!(!lost_to_concurrent_dml("invalidQuery: Unrecognized name: status"));
    }

    #[test]
    fn an_intermediate_table_older_than_the_destination_is_refused_with_the_fix() {
        let expected = intermediate_schema(&orders());
        assert_eq!(check_intermediate(&id("o_tmp"), &expected, &id("o"), &expected), Ok(()));
        let mut old = expected.clone();
        old.fields.retain(|f| f.name != "total");
        let e = check_intermediate(&id("o_tmp"), &old, &id("o"), &expected).unwrap_err();
        assert!(e.contains("lacks column(s) total of table p.d.o") && e.contains("DROP TABLE `p.d.o_tmp`"), "{e}");
    }

    #[test]
    fn a_destination_without_the_offset_column_is_refused_with_the_fix() {
        let t = id("o");
        assert_eq!(check_destination(&t, &orders(), "order_id"), Ok(()));
        let mut no_offset = orders();
        no_offset.fields.retain(|f| f.name != OFFSET_COLUMN);
        let e = check_destination(&t, &no_offset, "order_id").unwrap_err();
        assert!(e.contains("ALTER TABLE `p.d.o` ADD COLUMN _sluice_offset INT64"), "{e}");
        let e = check_destination(&t, &orders(), "id").unwrap_err();
        assert!(e.contains("kafkaKeyFieldName"), "{e}");
    }
}
