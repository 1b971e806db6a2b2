//! UPSERT / UPSERT_DELETE as the task runs it: records become rows of the
//! intermediate table (the `_default` Storage Write stream: at least once,
//! a duplicate is the same row again), a MERGE ([`crate::upsert`]) when
//! `mergeRecordsThreshold` or `mergeIntervalMs` says, and `pre_commit`
//! reports durable only what a finished MERGE covered.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use connector_api::{ConnectorError, PutOutcome, SinkRecord, TopicPartition, TopicPartitionOffset};
use serde_json::Value;

use super::{bad_record, key_value, now_micros, record_row, BigQuerySinkTask};
use crate::{
    config::WritePath,
    schema::{self, TableSchema},
    table::TableOptions,
    upsert::{self, Cleanup, Scope},
};

/// One partition's marks (Kafka offsets: the next one after).
#[derive(Debug, Default, Clone)]
pub(super) struct Marks {
    /// Records below are in the intermediate table (or failed/skipped).
    appended: Option<i64>,
    /// Records below are merged into the destination.
    merged: Option<i64>,
    /// The last offset `pre_commit` reported durable for the partition.
    reported: Option<i64>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Destination schemas (with the offset column), by table.
    tables: HashMap<String, TableSchema>,
    parts: BTreeMap<TopicPartition, Marks>,
    /// Records put since the last merge.
    since_merge: u64,
    last_merge: Option<Instant>,
}

impl State {
    pub(super) fn open(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.parts.insert(tp.clone(), Marks::default());
        }
    }

    pub(super) fn close(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.parts.remove(tp);
        }
    }
}

impl BigQuerySinkTask {
    fn key_column(&self) -> Result<String, ConnectorError> {
        self.cfg
            .kafka_key_field
            .as_deref()
            .map(schema::sanitize_field_name)
            .ok_or_else(|| ConnectorError::config("kafkaKeyFieldName: upsert and delete need it"))
    }

    /// Makes sure the destination (with the offset column) and its
    /// intermediate table exist. False when the destination is missing and
    /// no record of `idx` can describe it.
    fn upsert_tables(
        &mut self,
        table: &str,
        records: &[SinkRecord<'_>],
        idx: &[usize],
    ) -> Result<bool, ConnectorError> {
        if self.upsert.tables.contains_key(table) {
            return Ok(true);
        }
        let key = self.key_column()?;
        let id = self.table_id(table);
        let destination = match self.rest().get_table(&id)? {
            Some(s) => s,
            None if !self.cfg.auto_create => {
                return Err(ConnectorError::config(format!(
                    "table {id} does not exist: create it, or set autoCreateTables=true"
                )))
            }
            None => {
                let mut created = None;
                for &i in idx {
                    if let Ok(Some(s)) = self.schema_for_new_table(&records[i]) {
                        let options = self.cfg.table_options();
                        let schema = upsert::destination_schema(&s);
                        created = Some(self.rest().ensure_table(&id, &schema, &options)?);
                        self.host.info(
                            "created the table from a record",
                            &[("table", &id.to_string()), ("record", &records[i].position())],
                        );
                        break;
                    }
                }
                match created {
                    Some(s) => s,
                    None => return Ok(false),
                }
            }
        };
        upsert::check_destination(&id, &destination, &key).map_err(ConnectorError::config)?;
        let tmp = self.table_id(&upsert::intermediate_table(table, &self.cfg.intermediate_suffix));
        // Not partitioned: its rows live between two merges.
        let expected = upsert::intermediate_schema(&destination);
        let existing = self.rest().ensure_table(&tmp, &expected, &TableOptions::default())?;
        upsert::check_intermediate(&tmp, &existing, &id, &expected).map_err(ConnectorError::config)?;
        self.upsert.tables.insert(table.to_string(), destination);
        Ok(true)
    }

    pub(super) fn put_upsert(
        &mut self,
        records: &[SinkRecord<'_>],
        deletes: bool,
    ) -> Result<PutOutcome, ConnectorError> {
        let now = Instant::now();
        let last_merge = *self.upsert.last_merge.get_or_insert(now);
        let key = self.key_column()?;
        let mut outcome = PutOutcome::accepted();
        let mut by_table: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            by_table.entry(self.cfg.table_for(r.topic())).or_default().push(i);
        }
        let insert_micros = now_micros();
        for (table, idx) in by_table {
            if !self.upsert_tables(&table, records, &idx)? {
                for i in idx {
                    let r = &records[i];
                    let why = match self.value_schema(r) {
                        Ok(s) => record_row(r, s.as_ref(), &self.cfg, 0).err(),
                        Err(e) => Some(e),
                    };
                    if let Some(why) = why {
                        outcome.fail(i, bad_record(r, &table, &why));
                    }
                }
                continue;
            }
            let tmp = upsert::intermediate_table(&table, &self.cfg.intermediate_suffix);
            let encoder = self.encoder(&tmp)?;
            let mut rows: Vec<(usize, Vec<u8>)> = Vec::with_capacity(idx.len());
            for &i in &idx {
                let r = &records[i];
                let key_value = key_value(r).filter(|k| !k.is_null());
                let row = match (key_value, r.value()) {
                    (None, _) => Err(format!(
                        "the record has no key: upsert keeps one row per key ({key}, kafkaKeyFieldName); send \
                         records with a key, or drop keyless ones with a Filter transform"
                    )),
                    // Without deletes a tombstone is skipped, as Confluent's.
                    (Some(_), None) if !deletes => continue,
                    (Some(k), None) => {
                        let mut row = serde_json::Map::new();
                        row.insert(key.clone(), k);
                        Ok(row)
                    }
                    (Some(_), Some(_)) => self
                        .value_schema(r)
                        .and_then(|s| record_row(r, s.as_ref(), &self.cfg, insert_micros))
                        .map(Option::unwrap_or_default),
                };
                let encoded = row.and_then(|mut row| {
                    row.insert(upsert::OFFSET_COLUMN.into(), Value::from(r.offset()));
                    row.insert(upsert::TOPIC_COLUMN.into(), Value::from(r.topic()));
                    row.insert(upsert::PARTITION_COLUMN.into(), Value::from(r.partition()));
                    row.insert(upsert::DELETED_COLUMN.into(), Value::from(r.value().is_none()));
                    encoder.encode(&row)
                });
                match encoded {
                    Ok(bytes) => rows.push((i, bytes)),
                    Err(why) => outcome.fail(i, bad_record(r, &table, &why)),
                }
            }
            let stream = format!("{}/streams/_default", self.cfg.table_path(&tmp));
            self.append_all(&stream, &tmp, None, rows, records, &mut outcome)?;
        }
        for r in records {
            let tp = TopicPartition::new(r.topic(), r.partition());
            let marks = self.upsert.parts.entry(tp).or_default();
            marks.appended = Some(marks.appended.unwrap_or(i64::MIN).max(r.offset() + 1));
        }
        self.upsert.since_merge += records.len() as u64;
        if upsert::merge_due(self.upsert.since_merge, now - last_merge, self.cfg.merge_interval, self.cfg.merge_records)
        {
            self.merge()?;
        }
        Ok(outcome)
    }

    pub(super) fn pre_commit_upsert(&mut self) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        let elapsed = self.upsert.last_merge.map(|t| t.elapsed()).unwrap_or_default();
        if upsert::merge_due(self.upsert.since_merge, elapsed, self.cfg.merge_interval, self.cfg.merge_records) {
            self.merge()?;
        }
        let mut durable = Vec::new();
        for (tp, marks) in self.upsert.parts.iter_mut() {
            if let Some(m) = marks.merged {
                marks.reported = Some(m);
                durable.push(TopicPartitionOffset::new(tp.topic.clone(), tp.partition, m));
            }
        }
        Ok(durable)
    }

    /// Merges what this task appended into the destinations, then removes
    /// merged rows from the intermediate tables.
    fn merge(&mut self) -> Result<(), ConnectorError> {
        let pending: Vec<(TopicPartition, i64)> = self
            .upsert
            .parts
            .iter()
            .filter_map(|(tp, m)| {
                let appended = m.appended?;
                (m.merged.is_none_or(|merged| appended > merged)).then(|| (tp.clone(), appended))
            })
            .collect();
        // The fence: a task that lost a partition is refused here and
        // merges nothing of it.
        for (tp, appended) in &pending {
            self.context.commit_note(tp, &upsert::note(*appended))?;
        }
        let key = self.key_column()?;
        let mut by_table: BTreeMap<String, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, appended) in &pending {
            by_table.entry(self.cfg.table_for(&tp.topic)).or_default().push((tp.clone(), *appended));
        }
        for (table, parts) in &by_table {
            let Some(schema) = self.upsert.tables.get(table).cloned() else { continue };
            let dst = self.table_id(table);
            let tmp = self.table_id(&upsert::intermediate_table(table, &self.cfg.intermediate_suffix));
            let mut scopes: Vec<Scope<'_>> = Vec::new();
            for (tp, _) in parts {
                match scopes.iter_mut().find(|s| s.topic == tp.topic) {
                    Some(s) => s.partitions.push(tp.partition),
                    None => scopes.push(Scope { topic: &tp.topic, partitions: vec![tp.partition] }),
                }
            }
            let sql = upsert::merge_sql(
                &dst,
                &tmp,
                &schema,
                &key,
                &scopes,
                matches!(self.cfg.path, WritePath::Upsert { delete: true }),
            );
            let started = Instant::now();
            let merged = self.rest().query(&sql).map_err(|e| {
                if upsert::lost_to_concurrent_dml(e.message()) {
                    // Another task's MERGE into the same table won; the
                    // worker puts the batch again and this one merges then.
                    ConnectorError::retriable(e.message())
                } else {
                    e
                }
            })?;
            self.faults.reach("after-merge", &self.host);
            self.host.info(
                "merged the intermediate table into the destination",
                &[
                    ("table", &dst.to_string()),
                    ("rows_changed", &merged.affected_rows.unwrap_or(0).to_string()),
                    ("ms", &started.elapsed().as_millis().to_string()),
                ],
            );
            let cleanup: Vec<Cleanup<'_>> = parts
                .iter()
                .map(|(tp, appended)| Cleanup {
                    topic: &tp.topic,
                    partition: tp.partition,
                    rows_below: *appended,
                    tombstones_below: self.upsert.parts.get(tp).and_then(|m| m.reported),
                })
                .collect();
            if let Some(sql) = upsert::cleanup_sql(&tmp, &cleanup) {
                // Only a cost: merged rows left behind change no later merge.
                if let Err(e) = self.rest().query(&sql) {
                    self.host.warn(
                        "could not remove merged rows from the intermediate table; the next merge tries again",
                        &[("table", &tmp.to_string()), ("error", e.message())],
                    );
                }
            }
        }
        for (tp, appended) in pending {
            if let Some(m) = self.upsert.parts.get_mut(&tp) {
                m.merged = Some(appended);
            }
        }
        self.upsert.since_merge = 0;
        self.upsert.last_merge = Some(Instant::now());
        self.context.request_commit();
        Ok(())
    }
}
