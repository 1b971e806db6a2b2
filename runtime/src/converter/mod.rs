//! Converters (`key.converter` / `value.converter`): how Kafka bytes become
//! what the transforms see and the plugin gets, and back for sources.
//!
//! The plugin ABI carries bytes, so a converter decides which bytes:
//! - unset: the bytes as they are in Kafka, both ways (transforms that need
//!   structure parse them as schemaless JSON);
//! - `bytes` (ByteArrayConverter): the same bytes, opaque to transforms;
//! - `string` (StringConverter): the same bytes; transforms see a string;
//! - `json` (JsonConverter): JSON text. With `*.converter.schemas.enable`
//!   (default true, as in Kafka Connect) a sink unwraps the
//!   `{"schema":…,"payload":…}` envelope and the plugin gets the payload; a
//!   source's value is wrapped in an envelope whose schema is inferred from
//!   the value. Invalid JSON, or no envelope where one is expected, is a bad
//!   record (stage KEY_CONVERTER / VALUE_CONVERTER). JSON `null` (or a null
//!   payload) is no value, a tombstone, as Kafka Connect reads it;
//! - `avro` (Confluent's AvroConverter) and `json_schema` (Confluent's
//!   JsonSchemaConverter): records in Confluent's wire format, their schema
//!   in a Schema Registry (`registry.rs`). A sink's plugin gets the JSON
//!   JsonConverter would write for the Connect value and the Connect schema
//!   beside it (`avro.rs`, `json_schema.rs`); a source's JSON value is
//!   written with its Connect schema — inferred from the value as
//!   JsonConverter infers it, the source ABI carrying none — registered
//!   under the record's subject (`write.rs`).

pub mod avro;
pub mod json_schema;
pub mod registry;
pub mod write;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use base64::Engine;
use connector_api::ConfigIssue;
use serde_json::{json, Map, Value};

use crate::transform::Data;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Converter {
    #[default]
    PassThrough,
    Bytes,
    String,
    Json {
        schemas: bool,
    },
    /// A Schema Registry converter, with its client and schema cache.
    Registry(Arc<SchemaConverter>),
}

/// A conversion failure: `retriable` when the Schema Registry did not
/// answer (the record is fine, the registry is away), else the record is bad.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError {
    pub message: String,
    pub retriable: bool,
}

impl ConvertError {
    pub fn bad(message: impl Into<String>) -> ConvertError {
        ConvertError { message: message.into(), retriable: false }
    }
    pub fn retriable(message: impl Into<String>) -> ConvertError {
        ConvertError { message: message.into(), retriable: true }
    }
}

impl From<String> for ConvertError {
    fn from(message: String) -> ConvertError {
        ConvertError::bad(message)
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The wire format's schema types a registry converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Avro,
    JsonSchema,
}

/// A registry schema, parsed once per id.
enum Parsed {
    Avro(Box<avro::AvroSchema>),
    Json(connector_api::schema::Schema),
}

pub struct SchemaConverter {
    pub format: Format,
    pub registry: registry::Registry,
    parsed: Mutex<HashMap<u32, Arc<Result<Parsed, String>>>>,
    /// Sources: per topic and Connect schema (its JSON text), the schema id
    /// and how to write values with it; a schema Avro cannot hold is
    /// remembered as its error. Registry outages are not remembered.
    written: Mutex<HashMap<(String, String), CachedWriter>>,
}

type CachedWriter = Arc<Result<Writer, String>>;

/// How a source's values are written once the schema id is known.
enum Writer {
    Avro { id: u32, writer: write::AvroWriter },
    Json { id: u32, schema: connector_api::schema::Schema },
}

/// Distinct (topic, schema) pairs remembered before the cache starts over.
const WRITTEN_CACHE_MAX: usize = 1000;

impl std::fmt::Debug for SchemaConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaConverter").field("format", &self.format).field("registry", &self.registry).finish()
    }
}

impl PartialEq for SchemaConverter {
    fn eq(&self, other: &Self) -> bool {
        self.format == other.format && self.registry.config == other.registry.config
    }
}

impl SchemaConverter {
    fn new(format: Format, config: registry::RegistryConfig) -> SchemaConverter {
        SchemaConverter {
            format,
            registry: registry::Registry::new(config),
            parsed: Mutex::default(),
            written: Mutex::default(),
        }
    }

    fn kind(&self) -> &'static str {
        match self.format {
            Format::Avro => "AVRO",
            Format::JsonSchema => "JSON",
        }
    }

    /// The schema id and writer for a source record's Connect schema under
    /// `topic`: registered (`auto.register.schemas`, the default), the
    /// subject's latest (`use.latest.version`), or looked up.
    fn writer(&self, schema: &connector_api::schema::Schema, part: Part, topic: &str) -> Result<Writer, ConvertError> {
        let p = part.name();
        let (doc, record) = match self.format {
            Format::Avro => write::avro_schema(schema)?,
            Format::JsonSchema => (write::json_schema(schema)?, schema.name.clone()),
        };
        let text = doc.to_string();
        let config = &self.registry.config;
        let subject = registry::subject(config.strategy, topic, part, record.as_deref()).ok_or_else(|| {
            ConvertError::bad(format!(
                "{p}.converter.{p}.subject.name.strategy names subjects after the record's schema name, and this \
                 {p} schema has none (a primitive, or an unnamed JSON Schema): use TopicNameStrategy, or name the \
                 schema with a SetSchemaMetadata transform"
            ))
        })?;
        let kind = self.kind();
        if config.auto_register {
            let id = self.registry.register(&subject, kind, &text)?;
            return Ok(self.writer_for(id, doc, schema.clone()));
        }
        if config.use_latest {
            let latest = self.registry.latest(&subject)?.ok_or_else(|| {
                ConvertError::bad(format!(
                    "{p}.converter.use.latest.version=true but subject {subject} has no schema: register one, or \
                     set {p}.converter.auto.register.schemas=true"
                ))
            })?;
            if latest.kind != kind {
                return Err(ConvertError::bad(format!(
                    "the latest schema of subject {subject} (id {}) is a {} schema, not one the {:?} converter writes",
                    latest.id, latest.kind, self.format
                )));
            }
            let parsed: Value = serde_json::from_str(&latest.text)
                .map_err(|e| format!("the latest schema of subject {subject} is not JSON: {e}"))?;
            let connect = match self.format {
                Format::Avro => schema.clone(),
                Format::JsonSchema => json_schema::connect_schema(&parsed)
                    .map_err(|e| format!("the latest schema of subject {subject}: {e}"))?,
            };
            return Ok(self.writer_for(latest.id, parsed, connect));
        }
        let id = self.registry.lookup(&subject, kind, &text)?.ok_or_else(|| {
            ConvertError::bad(format!(
                "the record's {p} schema is not registered under subject {subject}, and \
                 {p}.converter.auto.register.schemas=false: register it, or set \
                 {p}.converter.use.latest.version=true to write with the subject's latest schema; the schema: {text}"
            ))
        })?;
        Ok(self.writer_for(id, doc, schema.clone()))
    }

    fn writer_for(&self, id: u32, doc: Value, connect: connector_api::schema::Schema) -> Writer {
        match self.format {
            Format::Avro => Writer::Avro { id, writer: write::AvroWriter::new(doc) },
            Format::JsonSchema => Writer::Json { id, schema: connect },
        }
    }

    /// Source: a JSON value and its Connect schema → wire-format bytes.
    fn write(
        &self,
        value: &Value,
        schema: &connector_api::schema::Schema,
        part: Part,
        topic: &str,
    ) -> Result<Vec<u8>, ConvertError> {
        let key = (topic.to_string(), schema.to_json());
        let cached = self.written.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let writer = match cached {
            Some(w) => w,
            None => {
                let w = match self.writer(schema, part, topic) {
                    Err(e) if e.retriable => return Err(e),
                    result => Arc::new(result.map_err(|e| e.message)),
                };
                let mut cache = self.written.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= WRITTEN_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, w.clone());
                w
            }
        };
        match writer.as_ref() {
            Err(e) => Err(ConvertError::bad(e.clone())),
            Ok(Writer::Avro { id, writer }) => Ok(registry::wire(*id, &writer.write(value)?)),
            Ok(Writer::Json { id, schema }) => {
                Ok(registry::wire(*id, write::json_payload(schema, value)?.to_string().as_bytes()))
            }
        }
    }

    fn parsed(&self, id: u32) -> Result<Arc<Result<Parsed, String>>, ConvertError> {
        if let Some(p) = self.parsed.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(p.clone());
        }
        let registered = self.registry.schema(id)?;
        let parsed = match (self.format, registered.kind.as_str()) {
            (Format::Avro, "AVRO") => avro::AvroSchema::parse(&registered.text).map(|s| Parsed::Avro(Box::new(s))),
            (Format::JsonSchema, "JSON") => serde_json::from_str::<Value>(&registered.text)
                .map_err(|e| format!("not a valid JSON Schema: {e}"))
                .and_then(|v| json_schema::connect_schema(&v))
                .map(Parsed::Json),
            (f, kind) => Err(format!("schema id {id} is a {kind} schema, not one the {f:?} converter reads")),
        };
        let parsed = Arc::new(parsed.map_err(|e| format!("schema id {id}: {e}")));
        self.parsed.lock().unwrap_or_else(|e| e.into_inner()).insert(id, parsed.clone());
        Ok(parsed)
    }

    /// Wire-format bytes → the Connect value as JSON, and its Connect
    /// schema (with the subject's version, as AvroConverter sets it).
    fn read(&self, bytes: &[u8], part: Part, topic: &str) -> Result<(Value, String), ConvertError> {
        let (id, payload) = registry::split_wire(bytes)?;
        let parsed = self.parsed(id)?;
        let parsed = parsed.as_ref().as_ref().map_err(|e| ConvertError::bad(e.clone()))?;
        let (value, mut schema, record) = match parsed {
            Parsed::Avro(s) => (s.to_json(payload)?, s.connect.clone(), s.record_name.clone()),
            Parsed::Json(s) => {
                let v =
                    serde_json::from_slice(payload).map_err(|e| format!("the JSON Schema payload is not JSON: {e}"))?;
                (v, s.clone(), s.name.clone())
            }
        };
        if schema.version.is_none() {
            if let Some(subject) = registry::subject(self.registry.config.strategy, topic, part, record.as_deref()) {
                let registered = self.registry.schema(id)?;
                schema.version = self.registry.version(&subject, id, &registered)?;
            }
        }
        Ok((value, schema.to_json()))
    }
}

/// Which converter, for error stages and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
    /// Kafka Connect's error-context stage.
    pub fn stage(self) -> &'static str {
        match self {
            Part::Key => "KEY_CONVERTER",
            Part::Value => "VALUE_CONVERTER",
        }
    }
}

/// The converters' Java class names.
pub fn converter_classes() -> Vec<&'static str> {
    NAMES.iter().map(|(_, class)| *class).collect()
}

const NAMES: &[(&str, &str)] = &[
    ("bytes", "org.apache.kafka.connect.converters.ByteArrayConverter"),
    ("string", "org.apache.kafka.connect.storage.StringConverter"),
    (connector_api::json::JSON_CONVERTER_SHORT, connector_api::json::JSON_CONVERTER),
    ("avro", "io.confluent.connect.avro.AvroConverter"),
    ("json_schema", "io.confluent.connect.json.JsonSchemaConverter"),
];

/// Kafka Connect's converter prefixes, each a part of the record.
const PARTS: &[&str] = &["key.converter", "value.converter", "header.converter"];

/// The config a create stores: for each part (`key`, `value`, `header`)
/// the posted config does not name a converter for, the worker's default
/// `<part>.converter` and its `<part>.converter.*` settings are copied in,
/// so the stored config says how the connector reads records and a later
/// change of the worker's defaults (or of Sluice's) never changes it. A part
/// the config names keeps only its own settings, as Kafka Connect
/// configures a connector's converter from the connector's keys alone.
pub fn with_worker_defaults(
    mut config: BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for part in PARTS {
        if config.contains_key(*part) || !defaults.contains_key(*part) {
            continue;
        }
        let settings = format!("{part}.");
        for (k, v) in defaults.iter().filter(|(k, _)| *k == part || k.starts_with(&settings)) {
            config.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    config
}

/// The envelope JsonConverter writes with schemas enabled; Kafka Connect
/// accepts exactly these two fields.
fn envelope_payload(value: Value) -> Option<Value> {
    match value {
        Value::Object(mut map) if map.len() == 2 && map.contains_key("schema") => map.remove("payload"),
        _ => None,
    }
}

/// The envelope's schema and payload.
fn envelope_parts(value: Value) -> Option<(Value, Value)> {
    match value {
        Value::Object(mut map) if map.len() == 2 && map.contains_key("schema") => {
            let payload = map.remove("payload")?;
            Some((map.remove("schema").unwrap_or(Value::Null), payload))
        }
        _ => None,
    }
}

fn not_an_envelope(part: Part) -> String {
    let p = part.name();
    format!(
        "JsonConverter with {p}.converter.schemas.enable=true requires \"schema\" and \"payload\" fields and may not \
         contain additional fields; for plain JSON set {p}.converter.schemas.enable=false"
    )
}

impl Converter {
    /// Parses `<part>.converter` and `<part>.converter.schemas.enable`.
    pub fn parse(config: &BTreeMap<String, String>, part: Part, issues: &mut Vec<ConfigIssue>) -> Converter {
        let key = format!("{}.converter", part.name());
        let Some(name) = config.get(&key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            return Converter::PassThrough;
        };
        let Some((short, _)) = NAMES.iter().find(|(s, class)| name == *s || name == *class) else {
            let known: Vec<String> = NAMES.iter().map(|(s, c)| format!("{s} ({c})")).collect();
            issues.push(ConfigIssue::new(
                &key,
                format!("Invalid value {name}: supported converters are {}", known.join(", ")),
            ));
            return Converter::PassThrough;
        };
        match *short {
            "bytes" => Converter::Bytes,
            "string" => Converter::String,
            "avro" | "json_schema" => {
                let format = if *short == "avro" { Format::Avro } else { Format::JsonSchema };
                let config = registry::parse_config(config, part, issues);
                Converter::Registry(Arc::new(SchemaConverter::new(format, config)))
            }
            _ => {
                let schemas_key = format!("{key}.schemas.enable");
                let schemas = match config.get(&schemas_key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        issues.push(ConfigIssue::new(
                            &schemas_key,
                            format!("Invalid value {other}: must be true or false"),
                        ));
                        true
                    }
                };
                Converter::Json { schemas }
            }
        }
    }

    /// Whether a sink needs owned records for this converter even without
    /// transforms (an envelope's payload is re-serialised).
    pub fn sink_needs_owned(&self) -> bool {
        matches!(self, Converter::Json { schemas: true } | Converter::Registry(_))
    }

    /// Sink, no transforms, `!sink_needs_owned()`: the bytes the plugin
    /// gets, borrowed from the consumer's message (JSON is only checked).
    pub fn view<'b>(&self, bytes: Option<&'b [u8]>, part: Part) -> Result<Option<&'b [u8]>, String> {
        match (self, bytes) {
            (Converter::Json { .. }, Some(b)) => {
                connector_api::json::check(b).map_err(|e| format!("the {} is not JSON: {e}", part.name()))?;
                Ok((b.trim_ascii() != b"null").then_some(b))
            }
            (_, None) => Ok(None),
            (_, Some(b)) => Ok(Some(b)),
        }
    }

    /// Sink: Kafka bytes → what the transforms see, and the schema the
    /// bytes carried (JsonConverter's envelope, as Kafka Connect JSON).
    pub fn to_data_with_schema(
        &self,
        bytes: Option<&[u8]>,
        part: Part,
        topic: &str,
    ) -> Result<(Option<Data>, Option<String>), ConvertError> {
        match (self, bytes) {
            (Converter::Registry(c), Some(b)) => {
                let (value, schema) = c.read(b, part, topic)?;
                Ok(((!value.is_null()).then_some(Data::Json(value)), Some(schema)))
            }
            (Converter::Json { schemas: true }, Some(b)) => {
                let v: Value =
                    serde_json::from_slice(b).map_err(|e| format!("the {} is not JSON: {e}", part.name()))?;
                if v.is_null() {
                    return Ok((None, None));
                }
                let (schema, payload) = envelope_parts(v).ok_or_else(|| not_an_envelope(part))?;
                let schema = (!schema.is_null()).then(|| schema.to_string());
                Ok(((!payload.is_null()).then_some(Data::Json(payload)), schema))
            }
            _ => Ok((self.to_data(bytes, part)?, None)),
        }
    }

    /// Sink: Kafka bytes → what the transforms see.
    pub fn to_data(&self, bytes: Option<&[u8]>, part: Part) -> Result<Option<Data>, String> {
        let Some(b) = bytes else { return Ok(None) };
        Ok(match self {
            Converter::Registry(c) => {
                let (value, _) = c.read(b, part, "").map_err(|e| e.message)?;
                (!value.is_null()).then_some(Data::Json(value))
            }
            Converter::PassThrough => Some(Data::Raw(b.to_vec())),
            Converter::Bytes => Some(Data::Bytes(b.to_vec())),
            Converter::String => Some(Data::Json(Value::String(String::from_utf8_lossy(b).into_owned()))),
            Converter::Json { schemas } => {
                let v: Value =
                    serde_json::from_slice(b).map_err(|e| format!("the {} is not JSON: {e}", part.name()))?;
                let v = if *schemas && !v.is_null() {
                    envelope_payload(v).ok_or_else(|| not_an_envelope(part))?
                } else {
                    v
                };
                (!v.is_null()).then_some(Data::Json(v))
            }
        })
    }

    /// Sink: what the transforms left → the bytes the plugin gets (a JSON
    /// payload without its envelope; a string as its UTF-8 text).
    pub fn plugin_bytes(&self, data: Option<Data>) -> Option<Vec<u8>> {
        match data? {
            Data::Raw(b) | Data::Bytes(b) => Some(b),
            Data::Json(Value::String(s)) if *self == Converter::String => Some(s.into_bytes()),
            Data::Json(v) => Some(v.to_string().into_bytes()),
        }
    }

    /// Whether this converter writes a source's value with a Connect schema
    /// it infers (a Schema Registry converter).
    pub fn infers_registry_schema(&self) -> bool {
        matches!(self, Converter::Registry(_))
    }

    /// Whether a source record must be rewritten for this converter.
    pub fn source_rewrites(&self) -> bool {
        matches!(self, Converter::Json { .. } | Converter::Registry(_))
    }

    /// Source: the plugin's bytes → what the transforms see.
    pub fn from_plugin(&self, bytes: Option<&[u8]>, part: Part) -> Result<Option<Data>, String> {
        let Some(b) = bytes else { return Ok(None) };
        Ok(match self {
            Converter::Registry(c) => {
                let v: Value = serde_json::from_slice(b).map_err(|e| {
                    format!(
                        "the source task's {p} is not JSON ({e}); {p}.converter ({f:?}) writes a JSON value with the \
                         Connect schema inferred from it, so the source must give its {p} as JSON (or use another \
                         {p}.converter for it, such as string)",
                        p = part.name(),
                        f = c.format
                    )
                })?;
                (!v.is_null()).then_some(Data::Json(v))
            }
            Converter::PassThrough => Some(Data::Raw(b.to_vec())),
            Converter::Bytes => Some(Data::Bytes(b.to_vec())),
            Converter::String => Some(Data::Json(Value::String(String::from_utf8_lossy(b).into_owned()))),
            Converter::Json { .. } => {
                let v: Value = serde_json::from_slice(b)
                    .map_err(|e| format!("the source task's {} is not JSON: {e}", part.name()))?;
                (!v.is_null()).then_some(Data::Json(v))
            }
        })
    }

    /// Source: what the transforms left → the bytes produced to Kafka. A
    /// missing value stays a tombstone (JsonConverter writes no envelope for
    /// null either). `schema`: the Connect schema (JSON form) the record
    /// carries, if any; the registry converters infer one from the value
    /// otherwise, as JsonConverter does. `topic` names the subject.
    pub fn to_kafka(
        &self,
        data: Option<Data>,
        schema: Option<&str>,
        part: Part,
        topic: &str,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        let Some(data) = data else { return Ok(None) };
        Ok(match (self, data) {
            (Converter::Registry(c), data) => {
                let value = match data {
                    Data::Json(v) => v,
                    Data::Raw(b) => serde_json::from_slice(&b)
                        .map_err(|e| format!("the {} is not JSON after the transforms: {e}", part.name()))?,
                    Data::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                };
                if value.is_null() {
                    return Ok(None);
                }
                let schema = match schema {
                    Some(text) => connector_api::schema::Schema::parse(text)?,
                    None => connector_api::schema::Schema::parse(&infer_schema(&value, false).to_string())?,
                };
                let p = part.name();
                Some(c.write(&value, &schema, part, topic).map_err(|e| ConvertError {
                    message: format!("{p}.converter ({:?}) could not write the {p}: {}", c.format, e.message),
                    retriable: e.retriable,
                })?)
            }
            (_, Data::Raw(b) | Data::Bytes(b)) => Some(b),
            (Converter::String, Data::Json(Value::String(s))) => Some(s.into_bytes()),
            (Converter::Json { schemas: true }, Data::Json(v)) => {
                Some(json!({"schema": infer_schema(&v, false), "payload": v}).to_string().into_bytes())
            }
            (_, Data::Json(v)) => Some(v.to_string().into_bytes()),
        })
    }
}

/// A Kafka Connect schema (JsonConverter's JSON form) for a value: integers
/// are int64, other numbers double; struct fields follow the object's field
/// order and are optional (the next record may lack them); an array's items
/// take the first non-null element's schema (an optional string when there
/// is none); a null field is an optional string.
pub fn infer_schema(value: &Value, optional: bool) -> Value {
    let simple = |t: &str| json!({"type": t, "optional": optional});
    match value {
        Value::Null => json!({"type": "string", "optional": true}),
        Value::Bool(_) => simple("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => simple("int64"),
        Value::Number(_) => simple("double"),
        Value::String(_) => simple("string"),
        Value::Array(items) => {
            let item = items
                .iter()
                .find(|v| !v.is_null())
                .map_or_else(|| json!({"type": "string", "optional": true}), |v| infer_schema(v, true));
            json!({"type": "array", "items": item, "optional": optional})
        }
        Value::Object(map) => {
            let fields: Vec<Value> = map
                .iter()
                .map(|(name, v)| {
                    let mut schema: Map<String, Value> = match infer_schema(v, true) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    schema.insert("field".into(), Value::String(name.clone()));
                    Value::Object(schema)
                })
                .collect();
            json!({"type": "struct", "fields": fields, "optional": optional})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (Converter, Converter, Vec<String>) {
        let config: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut issues = Vec::new();
        let k = Converter::parse(&config, Part::Key, &mut issues);
        let v = Converter::parse(&config, Part::Value, &mut issues);
        (k, v, issues.iter().map(|i| i.key.to_string()).collect())
    }

    #[test]
    fn a_create_stores_the_worker_default_of_each_part_it_does_not_name() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let defaults = map(&[
            ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
            ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
            ("value.converter.schemas.enable", "false"),
            ("header.converter.charset", "UTF-8"),
        ]);
        let posted = map(&[("topics", "t"), ("value.converter", "avro"), ("value.converter.schema.registry.url", "u")]);
        let stored = with_worker_defaults(posted, &defaults);
        assert_eq!(
            stored,
            map(&[
                ("topics", "t"),
                ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
                ("value.converter", "avro"),
                ("value.converter.schema.registry.url", "u"),
            ]),
            "the posted value converter keeps its own settings only; a header setting without its converter is no default"
        );
        let stored = with_worker_defaults(map(&[("topics", "t")]), &defaults);
        assert_eq!(stored["value.converter.schemas.enable"], "false");
        assert_eq!(with_worker_defaults(map(&[("topics", "t")]), &BTreeMap::new()), map(&[("topics", "t")]));
    }

    /// A registry on a loopback port answering GET /schemas/ids/7 and the
    /// version lookup, one request per connection; the paths it was asked.
    fn canned_registry(schema: &'static str) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let answer = match path.as_str() {
                    "/schemas/ids/7" => json!({ "schema": schema }),
                    "/subjects/orders-value" => {
                        json!({"subject": "orders-value", "id": 7, "version": 4, "schema": schema})
                    }
                    _ => json!({"error_code": 40403, "message": "Schema not found"}),
                };
                let status = if answer.get("error_code").is_some() { "404 Not Found" } else { "200 OK" };
                let text = answer.to_string();
                log.lock().unwrap().push(path);
                let mut out = stream;
                write!(out, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len())
                    .unwrap();
            }
        });
        (url, seen)
    }

    #[test]
    fn avro_records_reach_the_plugin_as_json_with_their_connect_schema_and_version() {
        let schema = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}}]}"#;
        let (url, seen) = canned_registry(schema);
        let config: BTreeMap<String, String> =
            [("value.converter", "avro"), ("value.converter.schema.registry.url", url.as_str())]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut issues = Vec::new();
        let c = Converter::parse(&config, Part::Value, &mut issues);
        assert!(issues.is_empty() && c.sink_needs_owned());
        // id 7, then long 5 (zigzag 10) and bytes [0x30, 0x39] (12345 → 123.45).
        let record = [0u8, 0, 0, 0, 7, 10, 4, 0x30, 0x39];
        for _ in 0..2 {
            let (data, schema) = c.to_data_with_schema(Some(&record), Part::Value, "orders").unwrap();
            assert_eq!(c.plugin_bytes(data), Some(br#"{"id":5,"price":"MDk="}"#.to_vec()));
            let schema = connector_api::schema::Schema::parse(&schema.unwrap()).unwrap();
            assert_eq!((schema.name.as_deref(), schema.version), (Some("shop.Order"), Some(4)));
            assert_eq!(schema.fields[1].schema.logical(), Some(connector_api::schema::Logical::Decimal { scale: 2 }));
        }
        assert_eq!(*seen.lock().unwrap(), ["/schemas/ids/7", "/subjects/orders-value"], "both answers cached");
        let e = c.to_data_with_schema(Some(&[0, 0, 0, 0, 8, 1]), Part::Value, "orders").unwrap_err();
        assert!(!e.retriable && e.message.contains("schema id 8 is not in the Schema Registry"), "{e}");
        let down = Converter::parse(
            &[
                ("value.converter".to_string(), "avro".to_string()),
                ("value.converter.schema.registry.url".to_string(), "http://127.0.0.1:9".to_string()),
            ]
            .into(),
            Part::Value,
            &mut issues,
        );
        let e = down.to_data_with_schema(Some(&record), Part::Value, "orders").unwrap_err();
        assert!(e.retriable && e.message.contains("is unavailable"), "{e}");
    }

    /// Sources: the plugin's value must be JSON (its Connect schema is
    /// inferred from it), a registry that does not answer is retriable, and
    /// both errors name the converter key.
    #[test]
    fn source_registry_converters_read_json_and_report_outages_as_retriable() {
        let config: BTreeMap<String, String> = [
            ("value.converter", "io.confluent.connect.avro.AvroConverter"),
            ("value.converter.schema.registry.url", "http://127.0.0.1:9"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut issues = Vec::new();
        let c = Converter::parse(&config, Part::Value, &mut issues);
        assert!(issues.is_empty() && c.source_rewrites());
        let e = c.from_plugin(Some(b"ORDER-1"), Part::Value).unwrap_err();
        assert!(e.contains("value is not JSON") && e.contains("value.converter (Avro)"), "{e}");
        assert_eq!(c.from_plugin(Some(b"null"), Part::Value).unwrap(), None, "JSON null is a tombstone");
        let data = c.from_plugin(Some(br#"{"id":1}"#), Part::Value).unwrap();
        let e = c.to_kafka(data, None, Part::Value, "orders").unwrap_err();
        assert!(e.retriable, "{e}");
        assert!(
            e.message.contains("value.converter (Avro) could not write the value") && e.message.contains("unavailable")
        );
        assert_eq!(c.to_kafka(None, None, Part::Value, "orders").unwrap(), None);
    }

    #[test]
    fn names_class_names_and_the_schemas_default() {
        let (k, v, issues) = parse(&[
            ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
            ("value.converter", "json"),
        ]);
        assert_eq!((k, v), (Converter::String, Converter::Json { schemas: true }));
        assert!(issues.is_empty());
        let (_, v, _) = parse(&[
            ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
            ("value.converter.schemas.enable", "false"),
        ]);
        assert_eq!(v, Converter::Json { schemas: false });
        let (k, _, _) = parse(&[]);
        assert_eq!(k, Converter::PassThrough);
        let (_, _, issues) = parse(&[
            ("key.converter", "protobuf"),
            ("value.converter", "json"),
            ("value.converter.schemas.enable", "yes"),
        ]);
        assert_eq!(issues, ["key.converter", "value.converter.schemas.enable"]);
    }

    #[test]
    fn sink_json_unwraps_the_envelope_and_rejects_what_is_not_one() {
        let c = Converter::Json { schemas: true };
        let data = c.to_data(Some(br#"{"schema":{"type":"int64"},"payload":{"id":1}}"#), Part::Value).unwrap();
        assert_eq!(c.plugin_bytes(data), Some(br#"{"id":1}"#.to_vec()));
        assert_eq!(c.to_data(Some(br#"{"schema":null,"payload":null}"#), Part::Value).unwrap(), None);
        let e = c.to_data(Some(br#"{"id":1}"#), Part::Value).unwrap_err();
        assert!(e.contains("value.converter.schemas.enable=false"), "{e}");
        assert!(c.to_data(Some(b"{nope"), Part::Key).unwrap_err().contains("key is not JSON"));
    }

    #[test]
    fn sink_json_keeps_the_envelopes_schema() {
        let c = Converter::Json { schemas: true };
        let schema = r#"{"type":"struct","fields":[{"field":"total","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}]}"#;
        let record = format!(r#"{{"schema":{schema},"payload":{{"total":"AN8="}}}}"#);
        let (data, got) = c.to_data_with_schema(Some(record.as_bytes()), Part::Value, "t").unwrap();
        assert_eq!(c.plugin_bytes(data), Some(br#"{"total":"AN8="}"#.to_vec()));
        let got: Value = serde_json::from_str(&got.unwrap()).unwrap();
        assert_eq!(got, serde_json::from_str::<Value>(schema).unwrap());
        assert_eq!(c.to_data_with_schema(Some(br#"{"schema":null,"payload":1}"#), Part::Value, "t").unwrap().1, None);
        assert!(c.to_data_with_schema(Some(br#"{"a":1}"#), Part::Value, "t").is_err());
        let plain = Converter::Json { schemas: false };
        assert_eq!(plain.to_data_with_schema(Some(br#"{"a":1}"#), Part::Value, "t").unwrap().1, None);
    }

    #[test]
    fn sink_views_borrow_and_only_check() {
        let plain = Converter::Json { schemas: false };
        let bytes = br#" {"a":1} "#.as_slice();
        assert_eq!(plain.view(Some(bytes), Part::Value).unwrap().map(<[u8]>::as_ptr), Some(bytes.as_ptr()));
        assert_eq!(plain.view(Some(b"null"), Part::Value).unwrap(), None);
        assert!(plain.view(Some(b"{"), Part::Value).is_err());
        let e = plain.view(Some(b"[\"\xff\"]"), Part::Key).unwrap_err();
        assert!(e.contains("key is not JSON: invalid UTF-8 at byte 2"), "{e}");
        assert_eq!(Converter::String.view(Some(b"\xff"), Part::Value).unwrap(), Some(b"\xff".as_slice()));
        assert!(!Converter::String.sink_needs_owned() && Converter::Json { schemas: true }.sink_needs_owned());
    }

    #[test]
    fn source_json_wraps_with_an_inferred_schema() {
        let c = Converter::Json { schemas: true };
        let data = c.from_plugin(Some(br#"{"id":1,"price":2.5,"tags":["a"],"note":null}"#), Part::Value).unwrap();
        let out: Value = serde_json::from_slice(&c.to_kafka(data, None, Part::Value, "t").unwrap().unwrap()).unwrap();
        assert_eq!(out["payload"], json!({"id": 1, "price": 2.5, "tags": ["a"], "note": null}));
        let schema = &out["schema"];
        assert_eq!(schema["type"], "struct");
        assert_eq!(schema["optional"], false);
        let types: Vec<(&str, &str)> = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["field"].as_str().unwrap(), f["type"].as_str().unwrap()))
            .collect();
        assert!(types.contains(&("id", "int64")) && types.contains(&("price", "double")));
        assert!(types.contains(&("tags", "array")) && types.contains(&("note", "string")));
        assert_eq!(c.to_kafka(None, None, Part::Value, "t").unwrap(), None);
        assert!(c.from_plugin(Some(b"nope"), Part::Value).is_err());
        let plain = Converter::Json { schemas: false };
        assert_eq!(
            plain.to_kafka(Some(Data::Json(json!([1]))), None, Part::Value, "t").unwrap(),
            Some(b"[1]".to_vec())
        );
        assert_eq!(
            Converter::String.to_kafka(Some(Data::Json(json!("hi"))), None, Part::Value, "t").unwrap(),
            Some(b"hi".to_vec())
        );
    }
}
