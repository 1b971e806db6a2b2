//! Configuration: Confluent's S3 sink property names and defaults, with its
//! Java class names accepted as aliases of the short names, so an existing
//! Confluent config can be pasted as is.
//!
//! [`Settings`] declares every key once (type, default, checks, doc); the
//! task's [`S3SinkConfig`] is built from it by a few cross-key steps, each
//! blaming the key it is about.

use std::time::Duration;

use connector_api::{
    config::typed::{ConfigEnum, ConfigValue, Issues, Secret},
    config_enum, config_struct, ConfigDef, ConfigIssue, ConfigType, ConnectorConfig, ConnectorError,
};

use crate::{
    object_security::ObjectSecurity,
    parquet_format::{ParquetCodec, Schema},
    partitioner::{Partitioner, TimeSpec, TimestampExtractor},
    tagging::{self, OnTaggingError, Tagging},
    zone::Zone,
};

pub const MIB: i64 = 1024 * 1024;
/// S3 rejects non-final parts below 5 MiB (EntityTooSmall).
pub const MIN_PART_SIZE: i64 = 5 * MIB;
/// Confluent's upper bound for `s3.part.size` (an int of bytes).
pub const MAX_PART_SIZE: i64 = i32::MAX as i64;

config_enum! {
    pub enum Format {
        Json = "json" | "io.confluent.connect.s3.format.json.JsonFormat",
        Bytes = "bytes" | "io.confluent.connect.s3.format.bytearray.ByteArrayFormat",
        Parquet = "parquet" | "io.confluent.connect.s3.format.parquet.ParquetFormat",
    }
}

config_enum! {
    pub enum Compression { None = "none", Gzip = "gzip", Zstd = "zstd" }
}

config_enum! {
    pub enum NullBehavior { Fail = "fail", Ignore = "ignore", Write = "write" }
}

config_enum! {
    /// `partitioner.class`; the settings each needs make a [`Partitioner`].
    pub enum PartitionerClass {
        Default = "default" | "io.confluent.connect.storage.partitioner.DefaultPartitioner",
        Field = "field" | "io.confluent.connect.storage.partitioner.FieldPartitioner",
        Time = "time" | "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
        Hourly = "hourly" | "io.confluent.connect.storage.partitioner.HourlyPartitioner",
        Daily = "daily" | "io.confluent.connect.storage.partitioner.DailyPartitioner",
    }
}

config_enum! {
    /// `timestamp.extractor`; with `timestamp.field` it makes a [`TimestampExtractor`].
    pub enum Extractor {
        Wallclock = "Wallclock"
            | "io.confluent.connect.storage.partitioner.TimeBasedPartitioner$WallclockTimestampExtractor",
        Record = "Record" | "io.confluent.connect.storage.partitioner.TimeBasedPartitioner$RecordTimestampExtractor",
        RecordField = "RecordField"
            | "io.confluent.connect.storage.partitioner.TimeBasedPartitioner$RecordFieldTimestampExtractor",
    }
}

config_enum! {
    /// The AWS default credential chain, under the class names Confluent's
    /// versions default to (AWS SDK v1, then v2). Other providers (e.g. the
    /// assume-role one) are not implemented.
    pub enum CredentialsProvider {
        Default = "default"
            | "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
            | "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    }
}

config_enum! {
    /// `s3.ssea.name`: AWS's header values (Confluent's list plus DSSE-KMS,
    /// which the same header selects).
    pub enum SseAlgorithm { Aes256 = "AES256", Kms = "aws:kms", Dsse = "aws:kms:dsse" }
}

config_enum! {
    /// `s3.acl.canned`: S3's canned ACLs, as Confluent accepts them.
    pub enum CannedAcl {
        Private = "private",
        PublicRead = "public-read",
        PublicReadWrite = "public-read-write",
        AuthenticatedRead = "authenticated-read",
        AwsExecRead = "aws-exec-read",
        BucketOwnerRead = "bucket-owner-read",
        BucketOwnerFullControl = "bucket-owner-full-control",
        LogDeliveryWrite = "log-delivery-write",
    }
}

impl ConfigEnum for ParquetCodec {
    const VALUES: &'static [(Self, &'static str, &'static [&'static str])] = &[
        (ParquetCodec::Snappy, "snappy", &[]),
        (ParquetCodec::Zstd, "zstd", &[]),
        (ParquetCodec::None, "none", &["uncompressed"]),
    ];
}

impl ConfigEnum for OnTaggingError {
    const VALUES: &'static [(Self, &'static str, &'static [&'static str])] =
        &[(OnTaggingError::Ignore, "ignore", &[]), (OnTaggingError::Fail, "fail", &[])];
}

impl ConfigValue for Zone {
    const TYPE: ConfigType = ConfigType::String;
    fn parse(text: &str) -> Result<Self, String> {
        Zone::parse(text)
    }
    fn describe() -> Option<String> {
        Some("UTC, Z, a fixed offset such as +02:00, or an IANA zone id such as Europe/Berlin".into())
    }
}

impl ConfigValue for Schema {
    const TYPE: ConfigType = ConfigType::String;
    fn parse(text: &str) -> Result<Self, String> {
        Schema::parse(text)
    }
}

/// Accepts `false` only: the feature is recognised (so a Confluent config is
/// understood) but not implemented yet, and silently ignoring it would lose data.
fn only_false(what: &'static str) -> impl Fn(&bool) -> Result<(), String> + Send + Sync {
    move |on| {
        if *on {
            Err(format!("Invalid value true: {what} is not supported by this connector yet; supported values: false"))
        } else {
            Ok(())
        }
    }
}

const NOT_YET: &str = "false (true is not supported yet)";
const DEFAULT_PART_SIZE: u32 = 25 * 1024 * 1024;
const CONNECTOR: &str = "Connector";
const S3: &str = "S3";
const STORAGE: &str = "Storage";
const PARTITIONER: &str = "Partitioner";

config_struct! {
    /// Every key this connector understands, with Confluent's defaults.
    #[derive(Debug)]
    pub struct Settings {
        /// Topics to consume (or topics.regex).
        pub topics: Vec<String> = key("topics").high().group(CONNECTOR).default_text(""),
        /// Regular expression of topics to consume (or topics).
        pub topics_regex: Option<String> = key("topics.regex").high().group(CONNECTOR),
        /// Bucket objects are written to.
        pub s3_bucket_name: String = key("s3.bucket.name").high().group(S3).non_empty(),
        /// AWS region of the bucket.
        pub s3_region: String = key("s3.region").high().group(S3).default_text("us-west-2"),
        /// Custom S3 endpoint (S3-compatible stores, e.g. http://127.0.0.1:8333). Empty: AWS.
        pub store_url: Option<String> = key("store.url").high().group(S3),
        /// Path-style addressing (bucket in the path); used when store.url is set.
        pub s3_path_style_access_enabled: bool = key("s3.path.style.access.enabled").low().group(S3).default(true),
        /// Static access key id; empty uses the default AWS credential chain (environment, profile, ECS task role,
        /// instance metadata).
        pub aws_access_key_id: Option<String> = key("aws.access.key.id").high().group(S3),
        /// Static secret access key, with aws.access.key.id.
        pub aws_secret_access_key: Option<Secret> = key("aws.secret.access.key").high().group(S3),
        /// Where credentials come from when aws.access.key.id is empty: the AWS default chain (other providers are
        /// not supported yet).
        pub s3_credentials_provider_class: CredentialsProvider = key("s3.credentials.provider.class")
            .low().group(S3).class().default_text("com.amazonaws.auth.DefaultAWSCredentialsProviderChain"),
        /// Top-level prefix of object keys.
        pub topics_dir: String = key("topics.dir").high().group(STORAGE).default_text("topics").non_empty(),
        /// Delimiter between path components.
        pub directory_delim: String = key("directory.delim").low().group(STORAGE).default_text("/").non_empty(),
        /// Delimiter between topic, partition and offset in file names.
        pub file_delim: String = key("file.delim").low().group(STORAGE).default_text("+").non_empty(),
        /// Zero-padding width of the start offset in file names.
        pub filename_offset_zero_pad_width: u32 =
            key("filename.offset.zero.pad.width").low().group(STORAGE).default(10).range(0..=19),
        /// Records per object before it is rotated (deterministic).
        pub flush_size: u32 = key("flush.size").high().group(CONNECTOR).range(1..),
        /// Rotate when a record's timestamp is this far past the object's first record (record time:
        /// deterministic). -1: off.
        pub rotate_interval_ms: Option<i64> = key("rotate.interval.ms").high().group(CONNECTOR).off(-1).range(1..),
        /// Rotate open objects on this wall-clock schedule, aligned to timezone, idle partitions too
        /// (exactly once with enable.conditional.writes). -1: off.
        pub rotate_schedule_interval_ms: Option<i64> =
            key("rotate.schedule.interval.ms").group(CONNECTOR).off(-1).range(1..),
        /// Rotate an object once this many uncompressed bytes were written (beyond Confluent). -1: off.
        pub s3_object_max_bytes: Option<u64> = key("s3.object.max.bytes").group(CONNECTOR).off(-1).range(1..),
        /// Most objects open at once per task; opening one more rotates the oldest. -1: unlimited.
        pub s3_max_open_files: Option<u32> = key("s3.max.open.files").group(CONNECTOR).off(-1).range(1..),
        /// Timezone of path.format and scheduled rotation: UTC, a fixed offset or an IANA zone id (daylight
        /// saving followed).
        pub timezone: Zone = key("timezone").group(PARTITIONER).default_text("UTC"),
        /// Multipart part size in bytes (min 5 MiB). Buffers grow as needed up to it.
        pub s3_part_size: u32 = key("s3.part.size").high().group(S3).default(DEFAULT_PART_SIZE)
            .range(MIN_PART_SIZE as u32..=MAX_PART_SIZE as u32),
        /// Part uploads in flight per task; more waits (bounds memory to about this many parts).
        pub s3_part_upload_concurrency: u32 =
            key("s3.part.upload.concurrency").low().group(S3).default(4).range(1..=64),
        /// Object format.
        pub format_class: Format = key("format.class").high().group(STORAGE).class(),
        /// Separator between records of the bytes format (escapes \n, \r, \t understood).
        pub format_bytearray_separator: String =
            key("format.bytearray.separator").low().group(STORAGE).default_text("\n"),
        /// File extension of the bytes format.
        pub format_bytearray_extension: String =
            key("format.bytearray.extension").low().group(STORAGE).default_text(".bin"),
        /// Compression of parquet objects: snappy, zstd or none.
        pub parquet_codec: ParquetCodec = key("parquet.codec").group(STORAGE).default(ParquetCodec::Snappy),
        /// Columns of parquet objects as name:type,... (long, double, boolean, string, json); empty: inferred from
        /// each object's first record.
        pub parquet_schema: Option<Schema> = key("parquet.schema").group(STORAGE),
        /// Compression of json and bytes objects (parquet uses parquet.codec).
        pub s3_compression_type: Compression = key("s3.compression.type").high().group(S3).default(Compression::None),
        /// Compression level; -1: the codec's default.
        pub s3_compression_level: i32 = key("s3.compression.level").low().group(S3).default(-1).range(-1..=22),
        /// How records are grouped into paths.
        pub partitioner_class: PartitionerClass = key("partitioner.class").high().group(PARTITIONER).class()
            .default_text("io.confluent.connect.storage.partitioner.DefaultPartitioner"),
        /// Fields of the JSON value the field partitioner uses (dotted paths for nested fields).
        pub partition_field_name: Vec<String> = key("partition.field.name").group(PARTITIONER).default_text(""),
        /// Joda-style pattern of the time-based path, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH.
        pub path_format: String = key("path.format").group(PARTITIONER).default_text(""),
        /// Time bucket of the time-based partitioner in ms.
        pub partition_duration_ms: Option<i64> = key("partition.duration.ms").group(PARTITIONER).off(-1).range(1..),
        /// Accepted for compatibility; paths use numeric fields only.
        pub locale: String = key("locale").low().group(PARTITIONER).default_text("en"),
        /// Where record time comes from: Record, RecordField or Wallclock.
        pub timestamp_extractor: Extractor =
            key("timestamp.extractor").group(PARTITIONER).default(Extractor::Wallclock),
        /// Field of the JSON value holding the time for RecordField (epoch ms or RFC 3339).
        pub timestamp_field: String = key("timestamp.field").group(PARTITIONER).default_text("timestamp"),
        /// Tombstones: fail (to the DLQ), ignore, or write (under the tombstone path).
        pub behavior_on_null_values: NullBehavior =
            key("behavior.on.null.values").group(CONNECTOR).default(NullBehavior::Fail),
        /// Encoded partition of tombstones written with behavior.on.null.values=write.
        pub tombstone_encoded_partition: String =
            key("tombstone.encoded.partition").low().group(CONNECTOR).default_text("tombstone"),
        /// Sidecar key objects (not supported yet).
        pub store_kafka_keys: bool = key("store.kafka.keys").low().group(CONNECTOR).default(false)
            .check(NOT_YET, only_false("store.kafka.keys=true")),
        /// Sidecar header objects (not supported yet).
        pub store_kafka_headers: bool = key("store.kafka.headers").low().group(CONNECTOR).default(false)
            .check(NOT_YET, only_false("store.kafka.headers=true")),
        /// Tag objects with startOffset, endOffset and recordCount.
        pub s3_object_tagging: bool = key("s3.object.tagging").low().group(S3).default(false),
        /// More tags for every object, as key:value,key:value (with s3.object.tagging=true).
        pub s3_object_tagging_key_value_pairs: Vec<String> =
            key("s3.object.tagging.key.value.pairs").low().group(S3).default_text(""),
        /// When tagging an object fails: ignore (log it; the object counts as written) or fail (retry; a refusal
        /// fails the task).
        pub s3_object_behavior_on_tagging_error: OnTaggingError =
            key("s3.object.behavior.on.tagging.error").low().group(S3).default(OnTaggingError::Ignore),
        /// Retries of each S3 request (with exponential backoff and jitter) before the error is reported as
        /// retriable.
        pub s3_part_retries: u32 = key("s3.part.retries").group(S3).default(3).range(0..),
        /// Initial backoff of S3 retries.
        pub s3_retry_backoff_ms: Duration =
            key("s3.retry.backoff.ms").low().group(S3).default(Duration::from_millis(200)),
        /// Exactly-once objects: each records its offset range, is created with If-None-Match: *, and a
        /// re-delivery skips records earlier objects hold. false: unconditional overwrites (at-least-once
        /// unless rotation is deterministic).
        pub enable_conditional_writes: bool = key("enable.conditional.writes").low().group(S3).default(true),
        /// Server-side encryption: AES256 (SSE-S3, or SSE-C with s3.sse.customer.key), aws:kms or aws:kms:dsse
        /// (with s3.sse.kms.key.id, or the AWS-managed key); empty: the bucket's default.
        pub s3_ssea_name: Option<SseAlgorithm> = key("s3.ssea.name").low().group(S3),
        /// KMS key (id, ARN or alias/...) for s3.ssea.name=aws:kms or aws:kms:dsse.
        pub s3_sse_kms_key_id: Option<String> = key("s3.sse.kms.key.id").low().group(S3),
        /// SSE-C: a base64-encoded 256-bit key, with s3.ssea.name=AES256, over HTTPS only; sent with every object
        /// creation and part.
        pub s3_sse_customer_key: Option<Secret> = key("s3.sse.customer.key").low().group(S3),
        /// Canned ACL of every object, e.g. bucket-owner-full-control; empty: none.
        pub s3_acl_canned: Option<CannedAcl> = key("s3.acl.canned").low().group(S3),
    }
}

/// The keys this connector understands, with Confluent's defaults.
pub fn definition() -> ConfigDef {
    Settings::definition()
}

/// Every issue of a config, each naming its key: the keys, their
/// combinations, and the topics (which the runtime reads, not the task).
pub fn validate(config: &ConnectorConfig) -> Vec<ConfigIssue> {
    let mut issues = S3SinkConfig::check(config).err().unwrap_or_default();
    let set = |k: &str| config.get(k).is_some_and(|v| !v.trim().is_empty());
    if set(Settings::topics) == set(Settings::topics_regex) {
        issues.push(ConfigIssue::new(Settings::topics, "Exactly one of topics and topics.regex must be set"));
    }
    issues
}

/// Static credentials: `aws.access.key.id` with its secret.
pub type AccessKey = (String, Secret);

/// Everything a task needs, parsed and checked once.
#[derive(Debug, Clone)]
pub struct S3SinkConfig {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key: Option<AccessKey>,
    pub topics_dir: String,
    pub directory_delim: String,
    pub file_delim: String,
    pub zero_pad: usize,
    pub flush_size: u64,
    pub rotate_interval_ms: Option<i64>,
    pub rotate_schedule_ms: Option<i64>,
    pub max_object_bytes: Option<u64>,
    pub max_open_files: Option<usize>,
    pub zone: Zone,
    pub part_size: usize,
    pub upload_concurrency: usize,
    pub format: Format,
    pub parquet_codec: ParquetCodec,
    pub parquet_schema: Option<Schema>,
    pub bytes_separator: Vec<u8>,
    /// The runtime's JsonConverter already checked every value as JSON
    /// (`value.converter`), so the json format need not check again.
    pub values_are_checked_json: bool,
    pub bytes_extension: String,
    pub compression: Compression,
    pub compression_level: i32,
    pub partitioner: Partitioner,
    pub null_behavior: NullBehavior,
    pub tombstone_partition: String,
    /// `s3.object.tagging=true`: the fixed pairs and what a failure does.
    pub tagging: Option<Tagging>,
    pub part_retries: u32,
    pub retry_backoff: Duration,
    pub conditional_writes: bool,
    /// Server-side encryption and canned ACL of every object.
    pub security: ObjectSecurity,
}

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t").into_bytes()
}

/// What the keys that only make sense together came to.
struct Combined {
    access_key: Option<AccessKey>,
    partitioner: Partitioner,
    security: ObjectSecurity,
    tagging: Option<Tagging>,
}

impl S3SinkConfig {
    /// Parses a config for a task; a `Config` error lists every issue as `key: message`.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        Self::check(config).map_err(connector_api::config::typed::config_error)
    }

    /// Parses and checks a config: every issue, each naming its key.
    pub fn check(config: &ConnectorConfig) -> Result<Self, Vec<ConfigIssue>> {
        let s = Settings::parse(config)?;
        let mut issues = Issues::new();
        let access_key = issues.take(access_key(&s));
        // The extractor is checked whatever the partitioner, as before.
        let extractor = issues.take(extractor(&s));
        let partitioner = extractor.and_then(|e| issues.take(partitioner(&s, e)));
        let security = issues.take(security(&s));
        let tagging = issues.take(tagging(&s));
        match (access_key, partitioner, security, tagging) {
            (Some(access_key), Some(partitioner), Some(security), Some(tagging)) => {
                let combined = Combined { access_key, partitioner, security, tagging };
                issues.finish(|| Self::assemble(s, combined, config))
            }
            _ => Err(issues.into_vec()),
        }
    }

    fn assemble(s: Settings, c: Combined, config: &ConnectorConfig) -> Self {
        let ext = s.format_bytearray_extension;
        S3SinkConfig {
            bucket: s.s3_bucket_name.trim().to_string(),
            region: s.s3_region.trim().to_string(),
            endpoint: endpoint(&s.store_url),
            path_style: s.s3_path_style_access_enabled,
            access_key: c.access_key,
            topics_dir: s.topics_dir.trim_matches('/').to_string(),
            directory_delim: s.directory_delim,
            file_delim: s.file_delim,
            zero_pad: s.filename_offset_zero_pad_width as usize,
            flush_size: u64::from(s.flush_size),
            rotate_interval_ms: s.rotate_interval_ms,
            rotate_schedule_ms: s.rotate_schedule_interval_ms,
            max_object_bytes: s.s3_object_max_bytes,
            max_open_files: s.s3_max_open_files.map(|n| n as usize),
            zone: s.timezone,
            part_size: s.s3_part_size as usize,
            upload_concurrency: s.s3_part_upload_concurrency as usize,
            format: s.format_class,
            parquet_codec: s.parquet_codec,
            parquet_schema: s.parquet_schema,
            bytes_separator: unescape(&s.format_bytearray_separator),
            values_are_checked_json: config.get("value.converter").is_some_and(connector_api::json::is_json_converter),
            bytes_extension: if ext.starts_with('.') { ext } else { format!(".{ext}") },
            compression: s.s3_compression_type,
            compression_level: s.s3_compression_level,
            partitioner: c.partitioner,
            null_behavior: s.behavior_on_null_values,
            tombstone_partition: s.tombstone_encoded_partition,
            tagging: c.tagging,
            part_retries: s.s3_part_retries.min(100),
            retry_backoff: s.s3_retry_backoff_ms,
            conditional_writes: s.enable_conditional_writes,
            security: c.security,
        }
    }

    /// Object boundaries are a function of the records alone: a re-delivery
    /// produces the same objects with the same content (exactly-once).
    pub fn deterministic(&self) -> bool {
        self.rotate_schedule_ms.is_none()
            && self.max_open_files.is_none()
            && !matches!(&self.partitioner, Partitioner::Time(t) if t.extractor == TimestampExtractor::Wallclock)
    }
}

fn endpoint(store_url: &Option<String>) -> Option<String> {
    store_url.as_deref().map(|u| u.trim().to_string())
}

/// Both halves of a static key, or neither (the default credential chain).
fn access_key(s: &Settings) -> Result<Option<AccessKey>, ConfigIssue> {
    match (&s.aws_access_key_id, &s.aws_secret_access_key) {
        (Some(id), Some(secret)) => Ok(Some((id.clone(), secret.clone()))),
        (None, None) => Ok(None),
        _ => Err(ConfigIssue::new(
            Settings::aws_secret_access_key,
            "aws.access.key.id and aws.secret.access.key must be set together (or both left empty for the default \
             credential chain)",
        )),
    }
}

fn extractor(s: &Settings) -> Result<TimestampExtractor, ConfigIssue> {
    match s.timestamp_extractor {
        Extractor::Wallclock => Ok(TimestampExtractor::Wallclock),
        Extractor::Record => Ok(TimestampExtractor::Record),
        Extractor::RecordField if s.timestamp_field.trim().is_empty() => {
            Err(ConfigIssue::new(Settings::timestamp_field, "must name a field when timestamp.extractor=RecordField"))
        }
        Extractor::RecordField => Ok(TimestampExtractor::RecordField(s.timestamp_field.trim().to_string())),
    }
}

fn partitioner(s: &Settings, extractor: TimestampExtractor) -> Result<Partitioner, ConfigIssue> {
    let time = |path_format: &str, duration_ms: Option<i64>| {
        let path_format = path_format.to_string();
        if path_format.trim().is_empty() {
            return Err(ConfigIssue::new(
                Settings::path_format,
                "must be set for the time-based partitioner, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
            ));
        }
        let Some(duration_ms) = duration_ms else {
            return Err(ConfigIssue::new(
                Settings::partition_duration_ms,
                "must be a positive number of ms for the time-based partitioner",
            ));
        };
        Ok(Partitioner::Time(TimeSpec { path_format, duration_ms, zone: s.timezone, extractor }))
    };
    match s.partitioner_class {
        PartitionerClass::Default => Ok(Partitioner::Default),
        PartitionerClass::Field if s.partition_field_name.is_empty() => Err(ConfigIssue::new(
            Settings::partition_field_name,
            "must list at least one field for the field partitioner",
        )),
        PartitionerClass::Field => Ok(Partitioner::Field(s.partition_field_name.clone())),
        PartitionerClass::Time => time(&s.path_format, s.partition_duration_ms),
        PartitionerClass::Hourly => time("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", Some(3_600_000)),
        PartitionerClass::Daily => time("'year'=YYYY/'month'=MM/'day'=dd", Some(86_400_000)),
    }
}

/// Encryption and ACL; the combinations that cannot work name their key.
fn security(s: &Settings) -> Result<ObjectSecurity, ConfigIssue> {
    ObjectSecurity::parse(
        s.s3_ssea_name.map(SseAlgorithm::config_name),
        s.s3_sse_kms_key_id.as_deref().unwrap_or(""),
        s.s3_sse_customer_key.as_ref().map_or("", Secret::expose),
        s.s3_acl_canned.map(CannedAcl::config_name),
        uses_tls(endpoint(&s.store_url).as_deref()),
    )
    .map_err(|(key, message)| ConfigIssue::new(key, message))
}

fn tagging(s: &Settings) -> Result<Option<Tagging>, ConfigIssue> {
    let pairs_key = Settings::s3_object_tagging_key_value_pairs;
    let fixed =
        tagging::parse_pairs(&s.s3_object_tagging_key_value_pairs).map_err(|e| ConfigIssue::new(pairs_key, e))?;
    if s.s3_object_tagging {
        Ok(Some(Tagging { fixed, on_error: s.s3_object_behavior_on_tagging_error }))
    } else if !fixed.is_empty() {
        // Confluent ignores them then; the user meant objects to carry them.
        Err(ConfigIssue::new(pairs_key, "takes effect only with s3.object.tagging=true; set that, or remove the pairs"))
    } else {
        Ok(None)
    }
}

/// Whether requests to `endpoint` (none: AWS) go over HTTPS. A URL without
/// a scheme counts as plain HTTP.
pub fn uses_tls(endpoint: Option<&str>) -> bool {
    match endpoint {
        None => true,
        Some(url) => url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConnectorConfig {
        ConnectorConfig::new()
            .with("topics", "t")
            .with("s3.bucket.name", "b")
            .with("flush.size", "3")
            .with("format.class", "io.confluent.connect.s3.format.json.JsonFormat")
    }

    fn keys(issues: &[ConfigIssue]) -> Vec<String> {
        issues.iter().map(|i| i.key.to_string()).collect()
    }

    #[test]
    fn confluent_config_with_java_class_names_is_accepted() {
        let c = base()
            .with("partitioner.class", "io.confluent.connect.storage.partitioner.TimeBasedPartitioner")
            .with("path.format", "'year'=YYYY")
            .with("partition.duration.ms", "3600000")
            .with("timestamp.extractor", "Record")
            .with("s3.compression.type", "gzip");
        assert_eq!(validate(&c), vec![]);
        let cfg = S3SinkConfig::from_config(&c).unwrap();
        assert_eq!(cfg.format, Format::Json);
        assert_eq!(cfg.compression, Compression::Gzip);
        assert_eq!(cfg.part_size, 25 * 1024 * 1024);
        assert_eq!(cfg.region, "us-west-2");
        assert_eq!(cfg.topics_dir, "topics");
        assert!(cfg.deterministic());
        assert!(matches!(cfg.partitioner, Partitioner::Time(_)));
    }

    #[test]
    fn every_issue_names_its_key_and_lists_supported_values() {
        let c = ConnectorConfig::new()
            .with("topics", "t")
            .with("format.class", "io.confluent.connect.s3.format.avro.AvroFormat")
            .with("s3.compression.type", "snappy")
            .with("partitioner.class", "Nope")
            .with("timestamp.extractor", "Kafka")
            .with("behavior.on.null.values", "drop")
            .with("s3.part.size", "1024")
            .with("flush.size", "0")
            .with("timezone", "Mars/Olympus")
            .with("store.kafka.keys", "true")
            .with("rotate.interval.ms", "0");
        let issues = validate(&c);
        let mut k = keys(&issues);
        k.sort();
        let mut want = vec![
            "s3.bucket.name",
            "flush.size",
            "rotate.interval.ms",
            "timezone",
            "s3.part.size",
            "format.class",
            "s3.compression.type",
            "partitioner.class",
            "timestamp.extractor",
            "behavior.on.null.values",
            "store.kafka.keys",
        ];
        want.sort();
        assert_eq!(k, want, "{issues:?}");
        let fmt = issues.iter().find(|i| i.key == "format.class").unwrap();
        assert!(fmt.message.contains("json") && fmt.message.contains("bytes"), "{fmt:?}");
        let comp = issues.iter().find(|i| i.key == "s3.compression.type").unwrap();
        assert!(comp.message.contains("gzip") && comp.message.contains("zstd"), "{comp:?}");
    }

    #[test]
    fn cross_key_issues_name_their_key() {
        let c = base().with("partitioner.class", "field");
        assert_eq!(keys(&validate(&c)), vec!["partition.field.name"]);
        let c = base().with("partitioner.class", "time").with("path.format", "YYYY");
        assert_eq!(keys(&validate(&c)), vec!["partition.duration.ms"]);
        let c = base().with("partitioner.class", "time").with("partition.duration.ms", "1000");
        assert_eq!(keys(&validate(&c)), vec!["path.format"]);
        let c = base().with("topics.regex", "x.*");
        assert_eq!(keys(&validate(&c)), vec!["topics"]);
        let c = base().with("aws.access.key.id", "AKIA");
        assert_eq!(keys(&validate(&c)), vec!["aws.secret.access.key"]);
        let c = base().with("s3.sse.kms.key.id", "k");
        assert_eq!(keys(&validate(&c)), vec!["s3.sse.kms.key.id"]);
        let c = base().with("s3.object.tagging.key.value.pairs", "team:data");
        assert_eq!(keys(&validate(&c)), vec!["s3.object.tagging.key.value.pairs"]);
        let c = c.with("s3.object.tagging", "true").with("s3.object.behavior.on.tagging.error", "FAIL");
        assert_eq!(validate(&c), vec![]);
        let tagging = S3SinkConfig::from_config(&c).unwrap().tagging.unwrap();
        assert_eq!((tagging.fixed.len(), tagging.on_error), (1, crate::tagging::OnTaggingError::Fail));
        // Confluent's default, written out, is the chain sluice uses; the
        // assume-role provider is not implemented.
        let c = base().with("s3.credentials.provider.class", "com.amazonaws.auth.DefaultAWSCredentialsProviderChain");
        assert_eq!(validate(&c), vec![]);
        let c = base()
            .with("s3.credentials.provider.class", "io.confluent.connect.s3.auth.AwsAssumeRoleCredentialsProvider");
        let issues = validate(&c);
        assert_eq!(keys(&issues), vec!["s3.credentials.provider.class"]);
        assert!(issues[0].message.contains("DefaultAWSCredentialsProviderChain"), "{issues:?}");
    }

    #[test]
    fn unknown_encryption_algorithms_and_acls_name_their_key_and_the_supported_values() {
        let issues = validate(&base().with("s3.ssea.name", "aws:kms:fancy"));
        assert_eq!(keys(&issues), vec!["s3.ssea.name"]);
        assert!(issues[0].message.contains("AES256, aws:kms, aws:kms:dsse"), "{issues:?}");
        let issues = validate(&base().with("s3.acl.canned", "public"));
        assert_eq!(keys(&issues), vec!["s3.acl.canned"]);
        assert!(issues[0].message.contains("bucket-owner-full-control"), "{issues:?}");
        let c = base().with("s3.ssea.name", "aes256").with("s3.acl.canned", "Bucket-Owner-Full-Control");
        let security = S3SinkConfig::from_config(&c).unwrap().security;
        assert_eq!(
            security.encryption,
            crate::object_security::Encryption::Managed { algorithm: "AES256".into(), kms_key_id: None }
        );
        assert_eq!(security.acl.as_deref(), Some("bucket-owner-full-control"));
    }

    #[test]
    fn confluent_encryption_and_acl_settings_are_accepted_and_checked_against_the_endpoint() {
        let c = base()
            .with("s3.ssea.name", "aws:kms")
            .with("s3.sse.kms.key.id", "arn:aws:kms:eu-west-1:111122223333:key/abc")
            .with("s3.acl.canned", "bucket-owner-full-control");
        assert_eq!(validate(&c), vec![]);
        let security = S3SinkConfig::from_config(&c).unwrap().security;
        assert_eq!(security.acl.as_deref(), Some("bucket-owner-full-control"));
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let ssec = base().with("s3.ssea.name", "AES256").with("s3.sse.customer.key", key);
        // No store.url is AWS, always HTTPS; a plain-HTTP store would see the key.
        assert_eq!(validate(&ssec), vec![]);
        assert_eq!(validate(&ssec.clone().with("store.url", "https://s3.internal:9000")), vec![]);
        let issues = validate(&ssec.with("store.url", "http://127.0.0.1:8333"));
        assert_eq!(keys(&issues), vec!["s3.sse.customer.key"]);
        assert!(!issues[0].message.contains(key), "{issues:?}");
    }

    #[test]
    fn every_cross_key_issue_is_reported_at_once_and_a_task_error_names_the_keys() {
        let c = base()
            .with("aws.access.key.id", "AKIA")
            .with("partitioner.class", "field")
            .with("s3.sse.kms.key.id", "k")
            .with("s3.object.tagging.key.value.pairs", "team:data");
        let issues = validate(&c);
        let want =
            ["aws.secret.access.key", "partition.field.name", "s3.sse.kms.key.id", "s3.object.tagging.key.value.pairs"];
        assert_eq!(keys(&issues), want, "{issues:?}");
        let err = S3SinkConfig::from_config(&c).unwrap_err();
        assert!(err.message().starts_with("aws.secret.access.key: "), "{err:?}");
        assert!(want.iter().all(|k| err.message().contains(&format!("{k}: "))), "{err:?}");
        // Per-key issues come first; then the combinations can be judged.
        let issues = validate(&c.with("flush.size", "x"));
        assert_eq!(keys(&issues), ["flush.size"], "{issues:?}");
    }

    #[test]
    fn secrets_stay_out_of_debug_and_reach_the_client_only_through_expose() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let c = base()
            .with("aws.access.key.id", "AKIA")
            .with("aws.secret.access.key", "wJalrXUtnFEMI")
            .with("s3.ssea.name", "AES256")
            .with("s3.sse.customer.key", key);
        let cfg = S3SinkConfig::from_config(&c).unwrap();
        let shown = format!("{cfg:?} {:?}", Settings::parse(&c).unwrap());
        assert!(!shown.contains("wJalrXUtnFEMI") && !shown.contains(key), "{shown}");
        let (id, secret) = cfg.access_key.unwrap();
        assert_eq!((id.as_str(), secret.expose()), ("AKIA", "wJalrXUtnFEMI"));
    }

    #[test]
    fn settings_map_onto_the_task_config() {
        let c = base()
            .with("store.url", " http://127.0.0.1:8333 ")
            .with("topics.dir", "/out/")
            .with("s3.max.open.files", "8")
            .with("rotate.interval.ms", "-1")
            .with("s3.object.max.bytes", "1000")
            .with("format.bytearray.extension", "txt")
            .with("format.bytearray.separator", "\\r\\n")
            .with("s3.part.retries", "500")
            .with("s3.retry.backoff.ms", "50")
            .with("timestamp.extractor", "RecordField")
            .with("timestamp.field", " ts ")
            .with("partitioner.class", "daily");
        let cfg = S3SinkConfig::from_config(&c).unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(cfg.topics_dir, "out");
        assert_eq!((cfg.max_open_files, cfg.rotate_interval_ms, cfg.max_object_bytes), (Some(8), None, Some(1000)));
        assert_eq!((cfg.bytes_extension.as_str(), cfg.bytes_separator.as_slice()), (".txt", &b"\r\n"[..]));
        assert_eq!((cfg.part_retries, cfg.retry_backoff), (100, Duration::from_millis(50)));
        let Partitioner::Time(spec) = cfg.partitioner else { panic!("{:?}", cfg.partitioner) };
        assert_eq!((spec.duration_ms, spec.extractor), (86_400_000, TimestampExtractor::RecordField("ts".into())));
    }

    #[test]
    fn wallclock_schedule_is_not_deterministic() {
        let c = base().with("rotate.schedule.interval.ms", "60000");
        assert!(!S3SinkConfig::from_config(&c).unwrap().deterministic());
        let c = base().with("partitioner.class", "hourly");
        assert!(!S3SinkConfig::from_config(&c).unwrap().deterministic());
    }
}

#[cfg(test)]
mod readme {
    #[test]
    fn readme_lists_every_setting() {
        let readme = include_str!("../README.md");
        for key in super::definition().keys() {
            assert!(readme.contains(&format!("| `{}` |", key.name())), "README.md does not document {}", key.name());
        }
    }
}
