//! Configuration: Confluent's S3 sink property names and defaults, with its
//! Java class names accepted as aliases of the short names, so an existing
//! Confluent config can be pasted as is.

use std::time::Duration;

use connector_api::{
    ConfigDef, ConfigIssue, ConfigKey, ConfigType, ConnectorConfig, ConnectorError, Importance, Validator,
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

/// Supported values per key, with their Confluent aliases: (canonical, aliases).
const FORMATS: &[(&str, &[&str])] = &[
    ("json", &["io.confluent.connect.s3.format.json.JsonFormat"]),
    ("bytes", &["io.confluent.connect.s3.format.bytearray.ByteArrayFormat"]),
    ("parquet", &["io.confluent.connect.s3.format.parquet.ParquetFormat"]),
];
const PARQUET_CODECS: &[(&str, &[&str])] = &[("snappy", &[]), ("zstd", &[]), ("none", &["uncompressed"])];
const PARTITIONERS: &[(&str, &[&str])] = &[
    ("default", &["io.confluent.connect.storage.partitioner.DefaultPartitioner"]),
    ("field", &["io.confluent.connect.storage.partitioner.FieldPartitioner"]),
    ("time", &["io.confluent.connect.storage.partitioner.TimeBasedPartitioner"]),
    ("hourly", &["io.confluent.connect.storage.partitioner.HourlyPartitioner"]),
    ("daily", &["io.confluent.connect.storage.partitioner.DailyPartitioner"]),
];
const EXTRACTORS: &[(&str, &[&str])] = &[
    ("Wallclock", &["io.confluent.connect.storage.partitioner.TimeBasedPartitioner$WallclockTimestampExtractor"]),
    ("Record", &["io.confluent.connect.storage.partitioner.TimeBasedPartitioner$RecordTimestampExtractor"]),
    ("RecordField", &["io.confluent.connect.storage.partitioner.TimeBasedPartitioner$RecordFieldTimestampExtractor"]),
];
const COMPRESSIONS: &[(&str, &[&str])] = &[("none", &[]), ("gzip", &[]), ("zstd", &[])];
const NULL_BEHAVIORS: &[(&str, &[&str])] = &[("fail", &[]), ("ignore", &[]), ("write", &[])];
const ON_TAGGING_ERROR: &[(&str, &[&str])] = &[("ignore", &[]), ("fail", &[])];
/// `s3.ssea.name`: AWS's header values (Confluent's list plus DSSE-KMS,
/// which the same header selects); empty leaves the bucket's default.
const SSE_ALGORITHMS: &[(&str, &[&str])] = &[("AES256", &[]), ("aws:kms", &[]), ("aws:kms:dsse", &[])];
/// `s3.acl.canned`: S3's canned ACLs, as Confluent accepts them; empty: none.
const CANNED_ACLS: &[(&str, &[&str])] = &[
    ("private", &[]),
    ("public-read", &[]),
    ("public-read-write", &[]),
    ("authenticated-read", &[]),
    ("aws-exec-read", &[]),
    ("bucket-owner-read", &[]),
    ("bucket-owner-full-control", &[]),
    ("log-delivery-write", &[]),
];
/// The AWS default credential chain, under the class names Confluent's
/// versions default to (AWS SDK v1, then v2). Other providers (e.g. the
/// assume-role one) are not implemented.
const CREDENTIALS_PROVIDERS: &[(&str, &[&str])] = &[(
    "default",
    &[
        "com.amazonaws.auth.DefaultAWSCredentialsProviderChain",
        "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    ],
)];

/// The canonical name of `value` among `table`, case-insensitively for the
/// short names (Confluent accepts `IGNORE` as well as `ignore`).
fn canonical(table: &[(&'static str, &[&str])], value: &str) -> Option<&'static str> {
    let value = value.trim();
    table
        .iter()
        .find(|(short, aliases)| short.eq_ignore_ascii_case(value) || aliases.contains(&value))
        .map(|(short, _)| *short)
}

fn supported(table: &[(&str, &[&str])]) -> String {
    table
        .iter()
        .map(
            |(short, aliases)| {
                if aliases.is_empty() {
                    short.to_string()
                } else {
                    format!("{short} ({})", aliases.join(", "))
                }
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_of_aliases(table: &'static [(&'static str, &'static [&'static str])]) -> Validator {
    Validator::custom(format!("one of {}", supported(table)), move |v| {
        canonical(table, v)
            .map(|_| ())
            .ok_or_else(|| format!("Invalid value {v}: supported values are {}", supported(table)))
    })
}

/// Like [`one_of_aliases`], for a setting that may also stay empty (unset).
fn empty_or_one_of(table: &'static [(&'static str, &'static [&'static str])]) -> Validator {
    Validator::custom(format!("empty or one of {}", supported(table)), move |v| {
        if v.trim().is_empty() || canonical(table, v).is_some() {
            Ok(())
        } else {
            Err(format!("Invalid value {v}: supported values are {} (or empty)", supported(table)))
        }
    })
}

/// Accepts `false` only: the feature is recognised (so a Confluent config is
/// understood) but not implemented yet, and silently ignoring it would lose data.
fn only_false(what: &'static str) -> Validator {
    Validator::custom("false (true is not supported yet)", move |v| {
        if v.trim().eq_ignore_ascii_case("false") {
            Ok(())
        } else {
            Err(format!("Invalid value {v}: {what} is not supported by this connector yet; supported values: false"))
        }
    })
}

fn timezone_validator() -> Validator {
    Validator::custom("UTC, Z, a fixed offset such as +02:00, or an IANA zone id such as Europe/Berlin", |v| {
        Zone::parse(v).map(|_| ())
    })
}

fn key(name: &str, ty: ConfigType, default: Option<&str>, importance: Importance, doc: &str) -> ConfigKey {
    let k = ConfigKey::new(name, ty).importance(importance).doc(doc);
    match default {
        Some(d) => k.default_value(d),
        None => k,
    }
}

/// The keys this connector understands, with Confluent's defaults.
pub fn definition() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    let positive = || Validator::range(Some(1.0), None);
    let interval = || {
        Validator::custom("-1 (off) or a positive number", |v| match v.trim().parse::<i64>() {
            Ok(n) if n == -1 || n > 0 => Ok(()),
            _ => Err(format!("Invalid value {v}: must be -1 (off) or a positive number of milliseconds")),
        })
    };
    ConfigDef::new()
        .define(key("topics", List, Some(""), High, "Topics to consume (or topics.regex)."))
        .define(key("topics.regex", String, Some(""), High, "Regular expression of topics to consume (or topics)."))
        .define(key("s3.bucket.name", String, None, High, "Bucket objects are written to.").validator(Validator::NonEmpty))
        .define(key("s3.region", String, Some("us-west-2"), High, "AWS region of the bucket."))
        .define(key("store.url", String, Some(""), High, "Custom S3 endpoint (S3-compatible stores, e.g. http://127.0.0.1:8333). Empty: AWS."))
        .define(key("s3.path.style.access.enabled", Boolean, Some("true"), Low, "Path-style addressing (bucket in the path); used when store.url is set."))
        .define(key("aws.access.key.id", String, Some(""), High, "Static access key id; empty uses the default AWS credential chain (environment, profile, ECS task role, instance metadata)."))
        .define(key("aws.secret.access.key", Password, Some(""), High, "Static secret access key, with aws.access.key.id."))
        .define(key("s3.credentials.provider.class", Class, Some("com.amazonaws.auth.DefaultAWSCredentialsProviderChain"), Low, "Where credentials come from when aws.access.key.id is empty: the AWS default chain (other providers are not supported yet).").validator(one_of_aliases(CREDENTIALS_PROVIDERS)))
        .define(key("topics.dir", String, Some("topics"), High, "Top-level prefix of object keys.").validator(Validator::NonEmpty))
        .define(key("directory.delim", String, Some("/"), Low, "Delimiter between path components.").validator(Validator::NonEmpty))
        .define(key("file.delim", String, Some("+"), Low, "Delimiter between topic, partition and offset in file names.").validator(Validator::NonEmpty))
        .define(key("filename.offset.zero.pad.width", Int, Some("10"), Low, "Zero-padding width of the start offset in file names.").validator(Validator::range(Some(0.0), Some(19.0))))
        .define(key("flush.size", Int, None, High, "Records per object before it is rotated (deterministic).").validator(positive()))
        .define(key("rotate.interval.ms", Long, Some("-1"), High, "Rotate when a record's timestamp is this far past the object's first record (record time: deterministic). -1: off.").validator(interval()))
        .define(key("rotate.schedule.interval.ms", Long, Some("-1"), Medium, "Rotate open objects on this wall-clock schedule, aligned to timezone, idle partitions too (at-least-once). -1: off.").validator(interval()))
        .define(key("s3.object.max.bytes", Long, Some("-1"), Medium, "Rotate an object once this many uncompressed bytes were written (beyond Confluent). -1: off.").validator(interval()))
        .define(key("s3.max.open.files", Int, Some("-1"), Medium, "Most objects open at once per task; opening one more rotates the oldest. -1: unlimited.").validator(interval()))
        .define(key("timezone", String, Some("UTC"), Medium, "Timezone of path.format and scheduled rotation: UTC, a fixed offset or an IANA zone id (daylight saving followed).").validator(timezone_validator()))
        .define(key("s3.part.size", Int, Some(&(25 * MIB).to_string()), High, "Multipart part size in bytes (min 5 MiB). Buffers grow as needed up to it.").validator(Validator::range(Some(MIN_PART_SIZE as f64), Some(MAX_PART_SIZE as f64))))
        .define(key("s3.part.upload.concurrency", Int, Some("4"), Low, "Part uploads in flight per task; more waits (bounds memory to about this many parts).").validator(Validator::range(Some(1.0), Some(64.0))))
        .define(key("format.class", Class, None, High, "Object format.").validator(one_of_aliases(FORMATS)))
        .define(key("format.bytearray.separator", String, Some("\n"), Low, "Separator between records of the bytes format (escapes \\n, \\r, \\t understood)."))
        .define(key("format.bytearray.extension", String, Some(".bin"), Low, "File extension of the bytes format."))
        .define(key("parquet.codec", String, Some("snappy"), Medium, "Compression of parquet objects: snappy, zstd or none.").validator(one_of_aliases(PARQUET_CODECS)))
        .define(key("parquet.schema", String, Some(""), Medium, "Columns of parquet objects as name:type,... (long, double, boolean, string, json); empty: inferred from each object's first record."))
        .define(key("s3.compression.type", String, Some("none"), High, "Compression of json and bytes objects (parquet uses parquet.codec).").validator(one_of_aliases(COMPRESSIONS)))
        .define(key("s3.compression.level", Int, Some("-1"), Low, "Compression level; -1: the codec's default.").validator(Validator::range(Some(-1.0), Some(22.0))))
        .define(key("partitioner.class", Class, Some("io.confluent.connect.storage.partitioner.DefaultPartitioner"), High, "How records are grouped into paths.").validator(one_of_aliases(PARTITIONERS)))
        .define(key("partition.field.name", List, Some(""), Medium, "Fields of the JSON value the field partitioner uses (dotted paths for nested fields)."))
        .define(key("path.format", String, Some(""), Medium, "Joda-style pattern of the time-based path, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH."))
        .define(key("partition.duration.ms", Long, Some("-1"), Medium, "Time bucket of the time-based partitioner in ms.").validator(interval()))
        .define(key("locale", String, Some("en"), Low, "Accepted for compatibility; paths use numeric fields only."))
        .define(key("timestamp.extractor", String, Some("Wallclock"), Medium, "Where record time comes from: Record, RecordField or Wallclock.").validator(one_of_aliases(EXTRACTORS)))
        .define(key("timestamp.field", String, Some("timestamp"), Medium, "Field of the JSON value holding the time for RecordField (epoch ms or RFC 3339)."))
        .define(key("behavior.on.null.values", String, Some("fail"), Medium, "Tombstones: fail (to the DLQ), ignore, or write (under the tombstone path).").validator(one_of_aliases(NULL_BEHAVIORS)))
        .define(key("tombstone.encoded.partition", String, Some("tombstone"), Low, "Encoded partition of tombstones written with behavior.on.null.values=write."))
        .define(key("store.kafka.keys", Boolean, Some("false"), Low, "Sidecar key objects (not supported yet).").validator(only_false("store.kafka.keys=true")))
        .define(key("store.kafka.headers", Boolean, Some("false"), Low, "Sidecar header objects (not supported yet).").validator(only_false("store.kafka.headers=true")))
        .define(key("s3.object.tagging", Boolean, Some("false"), Low, "Tag objects with startOffset, endOffset and recordCount."))
        .define(key("s3.object.tagging.key.value.pairs", List, Some(""), Low, "More tags for every object, as key:value,key:value (with s3.object.tagging=true)."))
        .define(key("s3.object.behavior.on.tagging.error", String, Some("ignore"), Low, "When tagging an object fails: ignore (log it; the object counts as written) or fail (retry; a refusal fails the task).").validator(one_of_aliases(ON_TAGGING_ERROR)))
        .define(key("s3.part.retries", Int, Some("3"), Medium, "Retries of each S3 request (with exponential backoff and jitter) before the error is reported as retriable.").validator(Validator::range(Some(0.0), None)))
        .define(key("s3.retry.backoff.ms", Long, Some("200"), Low, "Initial backoff of S3 retries.").validator(Validator::range(Some(0.0), None)))
        .define(key("enable.conditional.writes", Boolean, Some("true"), Low, "Create objects with If-None-Match: * when rotation is deterministic; an existing object counts as written."))
        .define(key("s3.ssea.name", String, Some(""), Low, "Server-side encryption: AES256 (SSE-S3, or SSE-C with s3.sse.customer.key), aws:kms or aws:kms:dsse (with s3.sse.kms.key.id, or the AWS-managed key); empty: the bucket's default.").validator(empty_or_one_of(SSE_ALGORITHMS)))
        .define(key("s3.sse.kms.key.id", String, Some(""), Low, "KMS key (id, ARN or alias/...) for s3.ssea.name=aws:kms or aws:kms:dsse."))
        .define(key("s3.sse.customer.key", Password, Some(""), Low, "SSE-C: a base64-encoded 256-bit key, with s3.ssea.name=AES256, over HTTPS only; sent with every object creation and part."))
        .define(key("s3.acl.canned", String, Some(""), Low, "Canned ACL of every object, e.g. bucket-owner-full-control; empty: none.").validator(empty_or_one_of(CANNED_ACLS)))
}

/// Cross-key checks beyond the per-key definition.
pub fn validate(config: &ConnectorConfig) -> Vec<ConfigIssue> {
    let def = definition();
    let mut issues = def.validate(config);
    if !issues.is_empty() {
        return issues;
    }
    let get = |k: &str| config.string(&def, k).unwrap_or_default();
    let topics = get("topics");
    let regex = get("topics.regex");
    if topics.trim().is_empty() == regex.trim().is_empty() {
        issues.push(ConfigIssue::new("topics", "Exactly one of topics and topics.regex must be set"));
    }
    if get("aws.access.key.id").is_empty() != get("aws.secret.access.key").is_empty() {
        issues.push(ConfigIssue::new(
            "aws.secret.access.key",
            "aws.access.key.id and aws.secret.access.key must be set together (or both left empty for the default credential chain)",
        ));
    }
    if let Err(e) = S3SinkConfig::from_config(config) {
        // The parse names its key first: "<key>: message".
        let msg = e.message().to_string();
        let key = msg.split(':').next().unwrap_or("").trim_matches('"').to_string();
        issues.push(ConfigIssue::new(key, msg));
    }
    issues
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Bytes,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullBehavior {
    Fail,
    Ignore,
    Write,
}

/// Everything a task needs, parsed and checked once.
#[derive(Clone)]
pub struct S3SinkConfig {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key: Option<(String, String)>,
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

impl std::fmt::Debug for S3SinkConfig {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3SinkConfig").field("bucket", &self.bucket).field("topics_dir", &self.topics_dir).finish()
    }
}

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t").into_bytes()
}

impl S3SinkConfig {
    /// Parses a config; errors are `Config` errors whose message starts with the key.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        let def = definition();
        let s = |k: &str| config.string(&def, k);
        let l = |k: &str| config.long(&def, k);
        let b = |k: &str| config.boolean(&def, k);
        let bad = |k: &str, msg: String| ConnectorError::config(format!("{k}: {msg}"));
        let pick = |k: &str, table: &[(&'static str, &[&str])]| -> Result<&'static str, ConnectorError> {
            let v = s(k)?;
            canonical(table, &v)
                .ok_or_else(|| bad(k, format!("{v} is not supported; supported values are {}", supported(table))))
        };
        let opt_pos = |k: &str| -> Result<Option<i64>, ConnectorError> {
            let v = l(k)?;
            Ok((v > 0).then_some(v))
        };

        let endpoint = Some(s("store.url")?.trim().to_string()).filter(|u| !u.is_empty());
        let key_id = s("aws.access.key.id")?;
        let secret = s("aws.secret.access.key")?;
        let access_key = (!key_id.is_empty()).then_some((key_id, secret));
        let zone = Zone::parse(&s("timezone")?).map_err(|e| bad("timezone", e))?;
        let rotate_interval_ms = opt_pos("rotate.interval.ms")?;
        let rotate_schedule_ms = opt_pos("rotate.schedule.interval.ms")?;

        let format = match pick("format.class", FORMATS)? {
            "bytes" => Format::Bytes,
            "parquet" => Format::Parquet,
            _ => Format::Json,
        };
        let parquet_codec = match pick("parquet.codec", PARQUET_CODECS)? {
            "zstd" => ParquetCodec::Zstd,
            "none" => ParquetCodec::None,
            _ => ParquetCodec::Snappy,
        };
        let schema_spec = s("parquet.schema")?;
        let parquet_schema = if schema_spec.trim().is_empty() {
            None
        } else {
            Some(Schema::parse(&schema_spec).map_err(|e| bad("parquet.schema", e))?)
        };
        let compression = match pick("s3.compression.type", COMPRESSIONS)? {
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            _ => Compression::None,
        };
        let null_behavior = match pick("behavior.on.null.values", NULL_BEHAVIORS)? {
            "ignore" => NullBehavior::Ignore,
            "write" => NullBehavior::Write,
            _ => NullBehavior::Fail,
        };

        let extractor = match pick("timestamp.extractor", EXTRACTORS)? {
            "Record" => TimestampExtractor::Record,
            "RecordField" => {
                let field = s("timestamp.field")?;
                if field.trim().is_empty() {
                    return Err(bad(
                        "timestamp.field",
                        "must name a field when timestamp.extractor=RecordField".into(),
                    ));
                }
                TimestampExtractor::RecordField(field.trim().to_string())
            }
            _ => TimestampExtractor::Wallclock,
        };
        let time = |path_format: String, duration_ms: i64| -> Result<Partitioner, ConnectorError> {
            if path_format.trim().is_empty() {
                return Err(bad(
                    "path.format",
                    "must be set for the time-based partitioner, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH".into(),
                ));
            }
            if duration_ms <= 0 {
                return Err(bad(
                    "partition.duration.ms",
                    "must be a positive number of ms for the time-based partitioner".into(),
                ));
            }
            Ok(Partitioner::Time(TimeSpec { path_format, duration_ms, zone, extractor: extractor.clone() }))
        };
        let partitioner = match pick("partitioner.class", PARTITIONERS)? {
            "field" => {
                let fields = config.list(&def, "partition.field.name")?;
                if fields.is_empty() {
                    return Err(bad(
                        "partition.field.name",
                        "must list at least one field for the field partitioner".into(),
                    ));
                }
                Partitioner::Field(fields)
            }
            "time" => time(s("path.format")?, l("partition.duration.ms")?)?,
            "hourly" => time("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH".into(), 3_600_000)?,
            "daily" => time("'year'=YYYY/'month'=MM/'day'=dd".into(), 86_400_000)?,
            _ => Partitioner::Default,
        };

        let pick_unless_empty = |k: &str, table| -> Result<Option<&'static str>, ConnectorError> {
            if s(k)?.trim().is_empty() {
                Ok(None)
            } else {
                pick(k, table).map(Some)
            }
        };
        let security = ObjectSecurity::parse(
            pick_unless_empty("s3.ssea.name", SSE_ALGORITHMS)?,
            &s("s3.sse.kms.key.id")?,
            &s("s3.sse.customer.key")?,
            pick_unless_empty("s3.acl.canned", CANNED_ACLS)?,
            crate::upload::uses_tls(endpoint.as_deref()),
        )
        .map_err(|(k, msg)| bad(k, msg))?;

        let fixed_tags = tagging::parse_pairs(&config.list(&def, "s3.object.tagging.key.value.pairs")?)
            .map_err(|e| bad("s3.object.tagging.key.value.pairs", e))?;
        let tagging = if b("s3.object.tagging")? {
            let on_error = match pick("s3.object.behavior.on.tagging.error", ON_TAGGING_ERROR)? {
                "fail" => OnTaggingError::Fail,
                _ => OnTaggingError::Ignore,
            };
            Some(Tagging { fixed: fixed_tags, on_error })
        } else if !fixed_tags.is_empty() {
            // Confluent ignores them then; the user meant objects to carry them.
            return Err(bad(
                "s3.object.tagging.key.value.pairs",
                "takes effect only with s3.object.tagging=true; set that, or remove the pairs".into(),
            ));
        } else {
            None
        };

        let bytes_extension = s("format.bytearray.extension")?;
        let cfg = S3SinkConfig {
            bucket: s("s3.bucket.name")?.trim().to_string(),
            region: s("s3.region")?.trim().to_string(),
            endpoint,
            path_style: b("s3.path.style.access.enabled")?,
            access_key,
            topics_dir: s("topics.dir")?.trim_matches('/').to_string(),
            directory_delim: s("directory.delim")?,
            file_delim: s("file.delim")?,
            zero_pad: l("filename.offset.zero.pad.width")?.clamp(0, 19) as usize,
            flush_size: l("flush.size")?.max(1) as u64,
            rotate_interval_ms,
            rotate_schedule_ms,
            max_object_bytes: opt_pos("s3.object.max.bytes")?.map(|v| v as u64),
            max_open_files: opt_pos("s3.max.open.files")?.map(|v| v as usize),
            zone,
            part_size: l("s3.part.size")?.clamp(MIN_PART_SIZE, MAX_PART_SIZE) as usize,
            upload_concurrency: l("s3.part.upload.concurrency")?.clamp(1, 64) as usize,
            format,
            parquet_codec,
            parquet_schema,
            bytes_separator: unescape(&s("format.bytearray.separator")?),
            values_are_checked_json: config.get("value.converter").is_some_and(connector_api::json::is_json_converter),
            bytes_extension: if bytes_extension.starts_with('.') {
                bytes_extension
            } else {
                format!(".{bytes_extension}")
            },
            compression,
            compression_level: l("s3.compression.level")? as i32,
            partitioner,
            null_behavior,
            tombstone_partition: s("tombstone.encoded.partition")?,
            tagging,
            part_retries: l("s3.part.retries")?.clamp(0, 100) as u32,
            retry_backoff: Duration::from_millis(l("s3.retry.backoff.ms")?.max(0) as u64),
            conditional_writes: b("enable.conditional.writes")?,
            security,
        };
        if cfg.bucket.is_empty() {
            return Err(bad("s3.bucket.name", "must not be empty".into()));
        }
        Ok(cfg)
    }

    /// Object boundaries are a function of the records alone: a re-delivery
    /// produces the same objects with the same content (exactly-once).
    pub fn deterministic(&self) -> bool {
        self.rotate_schedule_ms.is_none()
            && self.max_open_files.is_none()
            && !matches!(&self.partitioner, Partitioner::Time(t) if t.extractor == TimestampExtractor::Wallclock)
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
