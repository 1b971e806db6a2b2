//! Configuration: the keys of Confluent's BigQuery sink, legacy
//! (`com.wepay.kafka.connect.bigquery.BigQuerySinkConnector`) and V2
//! (`ingestion.mode`, `auto.create.tables`, …), so a pasted Confluent
//! config works or gets a 400 naming each refused key and why.
//!
//! [`Settings`] declares every key once; [`BigQuerySinkConfig`] is what a
//! task needs, built by small cross-key steps that each blame their key.

use std::{collections::BTreeMap, time::Duration};

use connector_api::{
    config::typed::{Issues, Secret},
    config_enum, config_struct, ConfigDef, ConfigIssue, ConnectorConfig, ConnectorError,
};

use crate::table::{PartitionType, TableOptions, TimePartitioning};

config_enum! {
    /// Where `keyfile` comes from.
    pub enum KeySource {
        /// `keyfile` is the path of a service-account JSON key.
        File = "FILE",
        /// `keyfile` is the service-account JSON key itself.
        Json = "JSON",
        /// Application-default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server).
        ApplicationDefault = "APPLICATION_DEFAULT",
    }
}

config_enum! {
    /// Confluent V2's `ingestion.mode`.
    pub enum IngestionMode {
        Streaming = "STREAMING",
        BatchLoading = "BATCH LOADING",
        Upsert = "UPSERT",
        UpsertDelete = "UPSERT_DELETE",
    }
}

config_enum! {
    pub enum PartitioningType { Hour = "HOUR", Day = "DAY", Month = "MONTH", Year = "YEAR" }
}

config_enum! {
    /// Confluent V2's `auto.create.tables`.
    pub enum AutoCreate {
        Disabled = "DISABLED",
        NonPartitioned = "NON-PARTITIONED",
        IngestionTime = "PARTITION by INGESTION TIME",
        ByField = "PARTITION by FIELD",
    }
}

config_enum! {
    /// Confluent V2's `auto.update.schemas`.
    pub enum AutoUpdate { Disabled = "DISABLED", AddNewFields = "ADD NEW FIELDS" }
}

const CONNECTOR: &str = "Connector";
const TABLES: &str = "Tables";
const SCHEMA: &str = "Schema";
const UPSERT: &str = "Upsert";
const V2: &str = "V2";
const SLUICE: &str = "Sluice";

/// Google's endpoints; tests and the emulator set plain-HTTP ones.
pub const GOOGLE_REST: &str = "https://bigquery.googleapis.com";
pub const GOOGLE_STORAGE: &str = "https://bigquerystorage.googleapis.com";

config_struct! {
    /// Every key this connector understands, with Confluent's defaults.
    #[derive(Debug)]
    pub struct Settings {
        /// Topics to consume (or topics.regex).
        pub topics: Vec<String> = key("topics").high().group(CONNECTOR).default_text(""),
        /// Regular expression of topics to consume (or topics).
        pub topics_regex: Option<String> = key("topics.regex").high().group(CONNECTOR),
        /// The BigQuery project tables are written in.
        pub project: String = key("project").high().group(CONNECTOR).non_empty(),
        /// The dataset tables are written in.
        pub default_dataset: String = key("defaultDataset").high().group(CONNECTOR).non_empty(),
        /// The service-account key: a file path (keySource=FILE) or the JSON itself (keySource=JSON).
        pub keyfile: Option<Secret> = key("keyfile").high().group(CONNECTOR),
        /// Where credentials come from: FILE, JSON or APPLICATION_DEFAULT.
        pub key_source: KeySource = key("keySource").high().group(CONNECTOR).default(KeySource::File),
        /// Table per topic as topic:table,topic:table; other topics write to a table named as the topic.
        pub topic2_table_map: Vec<String> = key("topic2TableMap").group(TABLES).default_text(""),
        /// Replace characters a table name cannot hold with _ in topic-derived table names.
        pub sanitize_topics: bool = key("sanitizeTopics").group(TABLES).default(false),
        /// Replace characters a column name cannot hold with _ (prefix _ before a leading digit).
        pub sanitize_field_names: bool = key("sanitizeFieldNames").group(SCHEMA).default(false),
        /// Create missing tables from the record's schema (or bigquery.schema).
        pub auto_create_tables: bool = key("autoCreateTables").group(TABLES).default(true),
        /// Add new fields of records to the table as NULLABLE columns.
        pub allow_new_big_query_fields: bool = key("allowNewBigQueryFields").group(SCHEMA).default(false),
        /// Relax REQUIRED columns a record leaves out to NULLABLE.
        pub allow_big_query_required_field_relaxation: bool =
            key("allowBigQueryRequiredFieldRelaxation").group(SCHEMA).default(false),
        /// Union the table's schema with the record's when updating it.
        pub allow_schema_unionization: bool = key("allowSchemaUnionization").group(SCHEMA).default(false),
        /// Column a created table is partitioned by; empty: ingestion time.
        pub timestamp_partition_field_name: Option<String> = key("timestampPartitionFieldName").group(TABLES),
        /// Time partitioning of created tables: HOUR, DAY, MONTH or YEAR.
        pub time_partitioning_type: PartitioningType =
            key("timePartitioningType").group(TABLES).default(PartitioningType::Day),
        /// Partition expiration of created tables in ms; empty: never.
        pub partition_expiration_ms: Option<i64> = key("partitionExpirationMs").group(TABLES).range(1..),
        /// Clustering columns of created tables (at most 4).
        pub clustering_partition_field_names: Vec<String> =
            key("clusteringPartitionFieldNames").group(TABLES).default_text(""),
        /// Column holding the record's key; required for upsert and delete.
        pub kafka_key_field_name: Option<String> = key("kafkaKeyFieldName").group(SCHEMA),
        /// RECORD column holding the record's topic, partition, offset and insertTime. Needed to resume exactly
        /// once after a write stream was garbage-collected.
        pub kafka_data_field_name: Option<String> = key("kafkaDataFieldName").group(SCHEMA),
        /// Retries of a BigQuery call that failed transiently (backoff grows from bigQueryRetryWait); after them
        /// the batch is retried by the worker with nothing committed.
        pub big_query_retry: u32 = key("bigQueryRetry").group(CONNECTOR).default(0).range(0..=100),
        /// First wait between those retries.
        pub big_query_retry_wait: Duration =
            key("bigQueryRetryWait").group(CONNECTOR).default(Duration::from_millis(1000)),
        /// Legacy upsert: each kafkaKeyFieldName's latest row, by a periodic MERGE.
        pub upsert_enabled: bool = key("upsertEnabled").group(UPSERT).default(false),
        /// Legacy delete: a tombstone deletes its key's row (with upsertEnabled).
        pub delete_enabled: bool = key("deleteEnabled").group(UPSERT).default(false),
        /// MERGE interval of upsert/delete in ms; -1: only by mergeRecordsThreshold.
        pub merge_interval_ms: Option<i64> = key("mergeIntervalMs").group(UPSERT).default(60_000).off(-1).range(1..),
        /// MERGE after this many records; -1: only by mergeIntervalMs.
        pub merge_records_threshold: Option<i64> =
            key("mergeRecordsThreshold").group(UPSERT).default(-1).off(-1).range(1..),
        /// Suffix of upsert's intermediate tables.
        pub intermediate_table_suffix: String =
            key("intermediateTableSuffix").group(UPSERT).default_text("tmp").non_empty(),
        /// V2: STREAMING (Storage Write API, exactly once), BATCH LOADING, UPSERT or UPSERT_DELETE; absent: the
        /// legacy connector's insertAll.
        pub ingestion_mode: Option<IngestionMode> = key("ingestion.mode").high().group(V2),
        /// V2: DISABLED, NON-PARTITIONED, PARTITION by INGESTION TIME or PARTITION by FIELD (overrides
        /// autoCreateTables).
        pub auto_create_tables_v2: Option<AutoCreate> = key("auto.create.tables").group(V2),
        /// V2: DISABLED or ADD NEW FIELDS (overrides allowNewBigQueryFields).
        pub auto_update_schemas: Option<AutoUpdate> = key("auto.update.schemas").group(V2),
        /// V2 BATCH LOADING: seconds between commits of pending streams.
        pub commit_interval: u32 = key("commit.interval").group(V2).default(60).range(60..=14_400),
        /// V2: clustering columns per topic as topic:[f1;f2],topic2:[f3].
        pub topic2clustering_fields_map: Option<String> = key("topic2clustering.fields.map").group(V2),
        /// V2: time partitioning of created tables (overrides timePartitioningType).
        pub partitioning_type: Option<PartitioningType> = key("partitioning.type").group(V2),
        /// V2: column created tables are partitioned by (overrides timestampPartitionFieldName).
        pub timestamp_partition_field_name_v2: Option<String> = key("timestamp.partition.field.name").group(V2),
        /// STREAMING: true writes exactly once through a COMMITTED stream per table and partition; false
        /// appends to the table's _default stream (at least once).
        pub exactly_once: bool = key("bigquery.exactly.once").group(SLUICE).default(true),
        /// BigQuery's REST endpoint (the emulator's for tests).
        pub rest_endpoint: String = key("bigquery.rest.endpoint").low().group(SLUICE).default_text(GOOGLE_REST),
        /// The Storage Write API's gRPC endpoint (the emulator's for tests); http:// is plain HTTP/2.
        pub storage_endpoint: String =
            key("bigquery.storage.endpoint").low().group(SLUICE).default_text(GOOGLE_STORAGE),
        /// Largest append request in bytes of encoded rows (BigQuery refuses 10 MB).
        pub append_max_bytes: u32 = key("bigquery.append.max.bytes").low().group(SLUICE)
            .default(8 * 1024 * 1024).range(1024..=9 * 1024 * 1024),
        /// How long a Storage Write call (an append, CreateWriteStream,
        /// GetWriteStream) may wait for BigQuery's answer before it counts
        /// as a transient failure.
        pub append_timeout: Duration = key("bigquery.append.timeout.ms").low().group(SLUICE)
            .default(Duration::from_millis(120_000)),
    }
}

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Legacy: `tabledata.insertAll` with Confluent's insertId.
    InsertAll,
    /// V2 STREAMING through the Storage Write API.
    Streaming { exactly_once: bool },
    /// V2 `UPSERT` / `UPSERT_DELETE`, legacy `upsertEnabled` /
    /// `deleteEnabled`: an intermediate table and a periodic MERGE keeping
    /// each key's latest row by Kafka offset ([`crate::upsert`]).
    Upsert { delete: bool },
    /// V2 BATCH LOADING: PENDING streams committed every `commit.interval`
    /// (exactly once, [`crate::batch`]).
    BatchLoading { commit_interval: Duration },
}

/// Everything a task needs, parsed and checked once.
#[derive(Debug, Clone)]
pub struct BigQuerySinkConfig {
    pub project: String,
    pub dataset: String,
    pub keyfile: Option<Secret>,
    pub key_source: KeySource,
    pub path: WritePath,
    pub topic_tables: BTreeMap<String, String>,
    pub sanitize_topics: bool,
    pub sanitize_field_names: bool,
    pub auto_create: bool,
    pub allow_new_fields: bool,
    pub allow_required_relaxation: bool,
    pub allow_schema_unionization: bool,
    pub partition_field: Option<String>,
    pub partitioning: PartitioningType,
    /// Created tables are time-partitioned (all but V2's
    /// `auto.create.tables=NON-PARTITIONED`).
    pub time_partitioned: bool,
    pub partition_expiration_ms: Option<i64>,
    pub clustering: Vec<String>,
    pub kafka_key_field: Option<String>,
    pub kafka_data_field: Option<String>,
    pub retries: u32,
    pub retry_wait: Duration,
    pub rest_endpoint: String,
    pub storage_endpoint: String,
    pub append_max_bytes: usize,
    pub append_timeout: Duration,
    /// Upsert: the intermediate tables' suffix (`<table>_<suffix>`).
    pub intermediate_suffix: String,
    /// Upsert: MERGE at least this often (`mergeIntervalMs`; None: -1).
    pub merge_interval: Option<Duration>,
    /// Upsert: MERGE after this many records (`mergeRecordsThreshold`; None: -1).
    pub merge_records: Option<u64>,
}

/// The keys this connector understands.
pub fn definition() -> ConfigDef {
    Settings::definition()
}

/// Every issue of a config, each naming its key.
pub fn validate(config: &ConnectorConfig) -> Vec<ConfigIssue> {
    let mut issues = BigQuerySinkConfig::check(config).err().unwrap_or_default();
    let set = |k: &str| config.get(k).is_some_and(|v| !v.trim().is_empty());
    if set(Settings::topics) == set(Settings::topics_regex) {
        issues.push(ConfigIssue::new(Settings::topics, "Exactly one of topics and topics.regex must be set"));
    }
    issues
}

/// The write path the mode keys select (refusing contradictory switches, and upsert without its key).
pub fn write_path(s: &Settings) -> Result<WritePath, ConfigIssue> {
    let legacy_upsert = s.upsert_enabled || s.delete_enabled;
    let path = match s.ingestion_mode {
        None if legacy_upsert && !s.upsert_enabled => {
            // Confluent's delete-only merge appends every other record
            // (no key dedup); not built: the upsert merge covers order sync.
            return Err(ConfigIssue::new(
                Settings::delete_enabled,
                "deleteEnabled=true needs upsertEnabled=true here (deletes without upserts are not supported); \
                 set both, or use ingestion.mode=UPSERT_DELETE",
            ));
        }
        None if legacy_upsert => WritePath::Upsert { delete: s.delete_enabled },
        None => WritePath::InsertAll,
        Some(_) if legacy_upsert => {
            let key = if s.upsert_enabled { Settings::upsert_enabled } else { Settings::delete_enabled };
            return Err(ConfigIssue::new(
                key,
                "upsertEnabled/deleteEnabled are the legacy connector's switches; with ingestion.mode set use \
                 ingestion.mode=UPSERT or UPSERT_DELETE instead",
            ));
        }
        Some(IngestionMode::Streaming) => WritePath::Streaming { exactly_once: s.exactly_once },
        Some(IngestionMode::BatchLoading) => {
            WritePath::BatchLoading { commit_interval: Duration::from_secs(u64::from(s.commit_interval)) }
        }
        Some(IngestionMode::Upsert) => WritePath::Upsert { delete: false },
        Some(IngestionMode::UpsertDelete) => WritePath::Upsert { delete: true },
    };
    if matches!(path, WritePath::Upsert { .. }) && s.kafka_key_field_name.as_deref().is_none_or(|k| k.trim().is_empty())
    {
        return Err(ConfigIssue::new(
            Settings::kafka_key_field_name,
            "upsert and delete need kafkaKeyFieldName: the column holding each record's key, by which rows are \
             merged",
        ));
    }
    Ok(path)
}

/// `keyfile` is needed unless credentials are application-default, or both
/// endpoints are plain HTTP (a local emulator, which checks none).
pub fn credentials(s: &Settings) -> Result<Option<Secret>, ConfigIssue> {
    let local = !s.rest_endpoint.starts_with("https://") && !s.storage_endpoint.starts_with("https://");
    match (&s.keyfile, s.key_source) {
        (Some(k), _) if !k.is_empty() => Ok(Some(k.clone())),
        (_, KeySource::ApplicationDefault) => Ok(None),
        _ if local => Ok(None),
        (_, source) => Err(ConfigIssue::new(
            Settings::keyfile,
            format!(
                "keySource={} needs keyfile (the service account's JSON key, or its path); or set \
                 keySource=APPLICATION_DEFAULT",
                match source {
                    KeySource::Json => "JSON",
                    _ => "FILE",
                }
            ),
        )),
    }
}

/// `topic2TableMap`: `topic:table` pairs.
pub fn topic_tables(s: &Settings) -> Result<BTreeMap<String, String>, ConfigIssue> {
    let mut map = BTreeMap::new();
    for pair in s.topic2_table_map.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        match pair.split_once(':') {
            Some((topic, table)) if !topic.trim().is_empty() && valid_table(table.trim()) => {
                if map.insert(topic.trim().to_string(), table.trim().to_string()).is_some() {
                    return Err(ConfigIssue::new(
                        Settings::topic2_table_map,
                        format!("topic {:?} is mapped twice", topic.trim()),
                    ));
                }
            }
            _ => {
                return Err(ConfigIssue::new(
                    Settings::topic2_table_map,
                    format!(
                        "{pair:?} is not topic:table (a table name is letters, digits and _, up to 1024 characters)"
                    ),
                ))
            }
        }
    }
    Ok(map)
}

fn valid_table(name: &str) -> bool {
    !name.is_empty() && name.len() <= 1024 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A table name from a topic, Confluent's way: characters a table name
/// cannot hold become `_`.
pub fn sanitize_table(topic: &str) -> String {
    topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

impl BigQuerySinkConfig {
    /// Parses a config for a task; a `Config` error lists every issue as `key: message`.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        Self::check(config).map_err(connector_api::config::typed::config_error)
    }

    pub fn check(config: &ConnectorConfig) -> Result<Self, Vec<ConfigIssue>> {
        let s = Settings::parse(config)?;
        let mut issues = Issues::new();
        let path = issues.take(write_path(&s));
        let keyfile = issues.take(credentials(&s));
        let topic_tables = issues.take(topic_tables(&s));
        if s.merge_interval_ms.is_none() && s.merge_records_threshold.is_none() {
            issues.blame(Settings::merge_interval_ms, "mergeIntervalMs and mergeRecordsThreshold cannot both be -1");
        }
        if s.clustering_partition_field_names.iter().filter(|f| !f.trim().is_empty()).count() > 4 {
            issues.blame(Settings::clustering_partition_field_names, "BigQuery clusters by at most 4 columns");
        }
        for (key, endpoint) in
            [(Settings::rest_endpoint, &s.rest_endpoint), (Settings::storage_endpoint, &s.storage_endpoint)]
        {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                issues.blame(key, format!("{endpoint:?} is not an http:// or https:// URL"));
            }
        }
        let (Some(path), Some(keyfile), Some(topic_tables)) = (path, keyfile, topic_tables) else {
            return Err(issues.into_vec());
        };
        issues.finish(|| {
            let auto_create = match s.auto_create_tables_v2 {
                Some(a) => a != AutoCreate::Disabled,
                None => s.auto_create_tables,
            };
            let allow_new_fields = match s.auto_update_schemas {
                Some(a) => a == AutoUpdate::AddNewFields,
                None => s.allow_new_big_query_fields,
            };
            BigQuerySinkConfig {
                project: s.project.trim().to_string(),
                dataset: s.default_dataset.trim().to_string(),
                keyfile,
                key_source: s.key_source,
                path,
                topic_tables,
                sanitize_topics: s.sanitize_topics,
                sanitize_field_names: s.sanitize_field_names,
                auto_create,
                allow_new_fields,
                allow_required_relaxation: s.allow_big_query_required_field_relaxation,
                allow_schema_unionization: s.allow_schema_unionization,
                // V2's `PARTITION by INGESTION TIME` ignores a partition field.
                partition_field: match s.auto_create_tables_v2 {
                    Some(AutoCreate::IngestionTime) => None,
                    _ => s.timestamp_partition_field_name_v2.or(s.timestamp_partition_field_name),
                },
                partitioning: s.partitioning_type.unwrap_or(s.time_partitioning_type),
                time_partitioned: s.auto_create_tables_v2 != Some(AutoCreate::NonPartitioned),
                partition_expiration_ms: s.partition_expiration_ms,
                clustering: s
                    .clustering_partition_field_names
                    .iter()
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect(),
                kafka_key_field: s.kafka_key_field_name.filter(|f| !f.trim().is_empty()),
                kafka_data_field: s.kafka_data_field_name.filter(|f| !f.trim().is_empty()),
                retries: s.big_query_retry,
                retry_wait: s.big_query_retry_wait,
                rest_endpoint: s.rest_endpoint.trim_end_matches('/').to_string(),
                storage_endpoint: s.storage_endpoint.trim_end_matches('/').to_string(),
                append_max_bytes: s.append_max_bytes as usize,
                append_timeout: s.append_timeout,
                intermediate_suffix: s.intermediate_table_suffix.trim().to_string(),
                merge_interval: s.merge_interval_ms.map(|ms| Duration::from_millis(ms.unsigned_abs())),
                merge_records: s.merge_records_threshold.map(i64::unsigned_abs),
            }
        })
    }

    /// What tables this sink creates are created with: time partitioning
    /// (as Confluent's connectors: on `timestampPartitionFieldName`, else
    /// ingestion time; none with V2's `NON-PARTITIONED`) and clustering.
    pub fn table_options(&self) -> TableOptions {
        let kind = match self.partitioning {
            PartitioningType::Hour => PartitionType::Hour,
            PartitioningType::Day => PartitionType::Day,
            PartitioningType::Month => PartitionType::Month,
            PartitioningType::Year => PartitionType::Year,
        };
        TableOptions {
            time_partitioning: self.time_partitioned.then(|| TimePartitioning {
                kind,
                field: self.partition_field.clone(),
                expiration_ms: self.partition_expiration_ms,
            }),
            clustering: self.clustering.clone(),
        }
    }

    /// The table a topic's records go to.
    pub fn table_for(&self, topic: &str) -> String {
        match self.topic_tables.get(topic) {
            Some(t) => t.clone(),
            None if self.sanitize_topics => sanitize_table(topic),
            None => topic.to_string(),
        }
    }

    /// `projects/{p}/datasets/{d}/tables/{t}`: the Storage Write API's name of a table.
    pub fn table_path(&self, table: &str) -> String {
        format!("projects/{}/datasets/{}/tables/{}", self.project, self.dataset, table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConnectorConfig {
        ConnectorConfig::new()
            .with("topics", "orders")
            .with("project", "p")
            .with("defaultDataset", "d")
            .with("keyfile", "{\"type\":\"service_account\",\"private_key\":\"SECRET-KEY\"}")
            .with("keySource", "JSON")
    }

    fn keys(config: &ConnectorConfig) -> Vec<String> {
        validate(config).into_iter().map(|i| i.key.to_string()).collect()
    }

    #[test]
    fn a_confluent_legacy_config_is_insert_all_and_the_key_stays_hidden() {
        let c = BigQuerySinkConfig::from_config(
            &base()
                .with("topic2TableMap", "orders:order_rows,customers:people")
                .with("sanitizeTopics", "true")
                .with("clusteringPartitionFieldNames", "region,customer")
                .with("timestampPartitionFieldName", "created")
                .with("bigQueryRetry", "3"),
        )
        .unwrap();
        assert_eq!(c.path, WritePath::InsertAll);
        assert_eq!(c.table_for("orders"), "order_rows");
        assert_eq!(c.table_for("hybris.orders-v1"), "hybris_orders_v1");
        assert_eq!(c.clustering, ["region", "customer"]);
        assert_eq!(c.partition_field.as_deref(), Some("created"));
        assert_eq!(c.table_path("t"), "projects/p/datasets/d/tables/t");
        assert!(c.keyfile.as_ref().unwrap().expose().contains("SECRET-KEY"));
        assert!(!format!("{c:?}").contains("SECRET-KEY"), "the key never shows in Debug");
        let def = definition();
        assert_eq!(def.key("keyfile").map(|k| format!("{:?}", k.config_type())), Some("Password".into()));
    }

    #[test]
    fn created_tables_follow_v2_auto_create_tables() {
        let options = |extra: &[(&str, &str)]| {
            let mut c = base().with("ingestion.mode", "STREAMING").with("timestampPartitionFieldName", "created");
            for (k, v) in extra {
                c = c.with(*k, *v);
            }
            BigQuerySinkConfig::from_config(&c).unwrap().table_options().time_partitioning
        };
        let by_field = options(&[]).unwrap();
        assert_eq!((by_field.kind, by_field.field.as_deref()), (PartitionType::Day, Some("created")));
        assert_eq!(options(&[("auto.create.tables", "PARTITION by FIELD")]), Some(by_field));
        let ingestion = options(&[("auto.create.tables", "PARTITION by INGESTION TIME")]).unwrap();
        assert_eq!(ingestion.field, None);
        assert_eq!(options(&[("auto.create.tables", "NON-PARTITIONED")]), None);
    }

    #[test]
    fn v2_names_select_streaming_and_override_legacy_ones() {
        let c = BigQuerySinkConfig::from_config(
            &base()
                .with("ingestion.mode", "STREAMING")
                .with("auto.create.tables", "DISABLED")
                .with("auto.update.schemas", "ADD NEW FIELDS")
                .with("partitioning.type", "HOUR"),
        )
        .unwrap();
        assert_eq!(c.path, WritePath::Streaming { exactly_once: true });
        assert!(!c.auto_create && c.allow_new_fields);
        assert_eq!(c.partitioning, PartitioningType::Hour);
        let c = BigQuerySinkConfig::from_config(
            &base().with("ingestion.mode", "STREAMING").with("bigquery.exactly.once", "false"),
        )
        .unwrap();
        assert_eq!(c.path, WritePath::Streaming { exactly_once: false });
    }

    #[test]
    fn upsert_modes_from_v2_and_legacy_keys() {
        let path = |c: ConnectorConfig| BigQuerySinkConfig::from_config(&c.with("kafkaKeyFieldName", "id")).unwrap();
        assert_eq!(path(base().with("ingestion.mode", "UPSERT")).path, WritePath::Upsert { delete: false });
        assert_eq!(path(base().with("ingestion.mode", "UPSERT_DELETE")).path, WritePath::Upsert { delete: true });
        assert_eq!(path(base().with("upsertEnabled", "true")).path, WritePath::Upsert { delete: false });
        let c = path(
            base()
                .with("upsertEnabled", "true")
                .with("deleteEnabled", "true")
                .with("mergeIntervalMs", "-1")
                .with("mergeRecordsThreshold", "500")
                .with("intermediateTableSuffix", "stage"),
        );
        assert_eq!(c.path, WritePath::Upsert { delete: true });
        assert_eq!((c.merge_interval, c.merge_records), (None, Some(500)));
        assert_eq!(c.intermediate_suffix, "stage");
        let defaults = path(base().with("ingestion.mode", "UPSERT"));
        assert_eq!((defaults.merge_interval, defaults.merge_records), (Some(Duration::from_secs(60)), None));
    }

    #[test]
    fn batch_loading_commits_every_commit_interval_within_v2s_range() {
        let c = BigQuerySinkConfig::from_config(&base().with("ingestion.mode", "BATCH LOADING")).unwrap();
        assert_eq!(c.path, WritePath::BatchLoading { commit_interval: Duration::from_secs(60) }, "V2's default");
        let c = BigQuerySinkConfig::from_config(
            &base().with("ingestion.mode", "BATCH LOADING").with("commit.interval", "14400"),
        )
        .unwrap();
        assert_eq!(c.path, WritePath::BatchLoading { commit_interval: Duration::from_secs(14_400) });
        for outside in ["59", "14401"] {
            let config = base().with("ingestion.mode", "BATCH LOADING").with("commit.interval", outside);
            assert_eq!(keys(&config), ["commit.interval"], "{outside}");
        }
    }

    #[test]
    fn refusals_name_their_key() {
        assert_eq!(keys(&base().with("ingestion.mode", "FAST")), ["ingestion.mode"]);
        assert_eq!(keys(&base().with("ingestion.mode", "UPSERT")), ["kafkaKeyFieldName"]);
        assert_eq!(keys(&base().with("upsertEnabled", "true")), ["kafkaKeyFieldName"]);
        assert_eq!(keys(&base().with("deleteEnabled", "true").with("kafkaKeyFieldName", "k")), ["deleteEnabled"]);
        let streaming_upsert = base().with("ingestion.mode", "STREAMING").with("upsertEnabled", "true");
        assert_eq!(keys(&streaming_upsert.with("kafkaKeyFieldName", "k")), ["upsertEnabled"]);
        assert_eq!(keys(&base().with("commit.interval", "30")), ["commit.interval"]);
        assert_eq!(keys(&base().with("topic2TableMap", "orders")), ["topic2TableMap"]);
        assert_eq!(keys(&base().with("mergeIntervalMs", "-1")), ["mergeIntervalMs"]);
        assert_eq!(keys(&base().with("clusteringPartitionFieldNames", "a,b,c,d,e")), ["clusteringPartitionFieldNames"]);
        assert_eq!(keys(&base().with("topics.regex", "o.*")), ["topics"]);
        let no_key = ConnectorConfig::new().with("topics", "t").with("project", "p").with("defaultDataset", "d");
        assert_eq!(keys(&no_key), ["keyfile"]);
        let issues = validate(&no_key.clone().with("keySource", "JSON"));
        assert!(issues[0].message.contains("keySource=JSON needs keyfile"), "{issues:?}");
        // The emulator: plain HTTP endpoints need no credentials; nor does ADC.
        let local = no_key
            .clone()
            .with("bigquery.rest.endpoint", "http://127.0.0.1:9050")
            .with("bigquery.storage.endpoint", "http://127.0.0.1:9060");
        assert!(keys(&local).is_empty());
        assert!(keys(&no_key.with("keySource", "APPLICATION_DEFAULT")).is_empty());
        // A bad keyfile value is never quoted back.
        let bad = ConnectorConfig::new().with("topics", "t").with("keyfile", "hunter2");
        assert!(validate(&bad).iter().all(|i| !i.message.contains("hunter2")));
    }
}
