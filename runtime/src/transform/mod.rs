//! Single message transforms with Kafka Connect's names and options
//! (`transforms=a,b`, `transforms.<alias>.type`, `.predicate`, `.negate`,
//! `predicates=p`, `predicates.<p>.type`, …), over schemaless JSON values as
//! Kafka Connect's JsonConverter with `schemas.enable=false` produces them.
//!
//! One small module per transform family; this one holds the record the
//! transforms see, the chain and its config parsing. A transform error is a
//! bad record (the pipeline routes it with stage `TRANSFORMATION`); a config
//! error names its key.

mod cast;
mod date_format;
mod extract_field;
mod field;
mod flatten;
mod headers;
mod hoist_field;
mod insert_field;
mod mask_field;
mod predicate;
mod set_schema_metadata;
mod timestamp_converter;

pub use predicate::predicate_classes;
mod regex_router;
mod replace_field;
mod require_fields;
pub mod routing;
mod timestamp_router;
mod value_to_key;

use std::collections::{BTreeMap, BTreeSet};

use connector_api::ConfigIssue;
use serde_json::{Map, Value};

use predicate::Predicate;

/// A key or a value as the transforms see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Bytes no converter interpreted (no `*.converter` configured): parsed
    /// as JSON the first time a transform needs structure.
    Raw(Vec<u8>),
    /// Opaque bytes (ByteArrayConverter): never parsed.
    Bytes(Vec<u8>),
    /// A JSON value (JsonConverter's payload, or StringConverter's string).
    Json(Value),
}

/// The owned record a transform chain works on. `offset` is `None` for
/// source records (they have none before they are produced).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp: Option<i64>,
    pub key: Option<Data>,
    pub value: Option<Data>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The converter's schemas (JsonConverter's JSON form) where it read
    /// one; only SetSchemaMetadata changes them.
    pub key_schema: Option<String>,
    pub value_schema: Option<String>,
}

impl Record {
    /// The record's coordinates for error messages.
    pub fn describe(&self) -> String {
        match (self.partition, self.offset) {
            (Some(p), Some(o)) => format!("topic {} partition {p} offset {o}", self.topic),
            (Some(p), None) => format!("topic {} partition {p}", self.topic),
            _ => format!("topic {}", self.topic),
        }
    }

    fn slot(&mut self, side: Side) -> &mut Option<Data> {
        match side {
            Side::Key => &mut self.key,
            Side::Value => &mut self.value,
        }
    }
}

/// Which part of the record a `$Key` / `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Key,
    Value,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// What a kind of data is called in error messages.
fn kind_of(data: &Data) -> &'static str {
    match data {
        Data::Raw(_) | Data::Bytes(_) => "bytes",
        Data::Json(Value::Null) => "null",
        Data::Json(Value::Bool(_)) => "a JSON boolean",
        Data::Json(Value::Number(_)) => "a JSON number",
        Data::Json(Value::String(_)) => "a JSON string",
        Data::Json(Value::Array(_)) => "a JSON array",
        Data::Json(Value::Object(_)) => "a JSON object",
    }
}

/// The key or value as a JSON object, for transforms that need structure;
/// `Err` says what it is instead. Unconverted bytes are parsed here.
fn object_mut(slot: &mut Option<Data>, side: Side) -> Result<&mut Map<String, Value>, String> {
    if let Some(Data::Raw(bytes)) = slot {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => *slot = Some(Data::Json(v)),
            Err(e) => return Err(format!("the {} is not JSON ({e})", side.name())),
        }
    }
    match slot {
        Some(Data::Json(Value::Object(map))) => Ok(map),
        None => Err(format!("the {} is null (a tombstone), not a JSON object", side.name())),
        Some(other) => Err(format!("the {} is {}, not a JSON object", side.name(), kind_of(other))),
    }
}

/// JSON null is no value, as Kafka Connect's converters read it.
fn non_null(value: Value) -> Option<Data> {
    (!value.is_null()).then_some(Data::Json(value))
}

/// Whether a transform keeps the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Keep,
    Drop,
}

#[derive(Debug, Clone)]
enum Transform {
    InsertField(insert_field::InsertField),
    ReplaceField(replace_field::ReplaceField),
    MaskField(mask_field::MaskField),
    ValueToKey(value_to_key::ValueToKey),
    ExtractField(extract_field::ExtractField),
    Filter,
    RegexRouter(regex_router::RegexRouter),
    TimestampRouter(timestamp_router::TimestampRouter),
    RequireFields(require_fields::RequireFields),
    Cast(cast::Cast),
    Flatten(flatten::Flatten),
    HoistField(hoist_field::HoistField),
    TimestampConverter(timestamp_converter::TimestampConverter),
    InsertHeader(headers::InsertHeader),
    DropHeaders(headers::DropHeaders),
    HeaderFrom(headers::HeaderFrom),
    SetSchemaMetadata(set_schema_metadata::SetSchemaMetadata),
}

impl Transform {
    fn apply(&self, record: &mut Record) -> Result<Step, String> {
        match self {
            Transform::InsertField(t) => t.apply(record).map(|_| Step::Keep),
            Transform::ReplaceField(t) => t.apply(record).map(|_| Step::Keep),
            Transform::MaskField(t) => t.apply(record).map(|_| Step::Keep),
            Transform::ValueToKey(t) => t.apply(record).map(|_| Step::Keep),
            Transform::ExtractField(t) => t.apply(record).map(|_| Step::Keep),
            Transform::Filter => Ok(Step::Drop),
            Transform::RegexRouter(t) => t.apply(record).map(|_| Step::Keep),
            Transform::TimestampRouter(t) => t.apply(record).map(|_| Step::Keep),
            Transform::RequireFields(t) => t.apply(record).map(|_| Step::Keep),
            Transform::Cast(t) => t.apply(record).map(|_| Step::Keep),
            Transform::Flatten(t) => t.apply(record).map(|_| Step::Keep),
            Transform::HoistField(t) => t.apply(record).map(|_| Step::Keep),
            Transform::TimestampConverter(t) => t.apply(record).map(|_| Step::Keep),
            Transform::InsertHeader(t) => {
                t.apply(record);
                Ok(Step::Keep)
            }
            Transform::DropHeaders(t) => {
                t.apply(record);
                Ok(Step::Keep)
            }
            Transform::HeaderFrom(t) => t.apply(record).map(|_| Step::Keep),
            Transform::SetSchemaMetadata(t) => t.apply(record).map(|_| Step::Keep),
        }
    }
}

/// The transform families: (short name, needs `$Key`/`$Value`).
const FAMILIES: &[(&str, bool)] = &[
    ("InsertField", true),
    ("ReplaceField", true),
    ("MaskField", true),
    ("ValueToKey", false),
    ("ExtractField", true),
    ("Filter", false),
    ("RegexRouter", false),
    ("TimestampRouter", false),
    ("RequireFields", false),
    ("Cast", true),
    ("Flatten", true),
    ("HoistField", true),
    ("TimestampConverter", true),
    ("InsertHeader", false),
    ("DropHeaders", false),
    ("HeaderFrom", true),
    ("SetSchemaMetadata", true),
];

const TRANSFORMS_PACKAGE: &str = "org.apache.kafka.connect.transforms.";

/// The transforms' Java class names, `$Key`/`$Value` variants spelled out,
/// as Kafka Connect lists them under `/connector-plugins?connectorsOnly=false`.
pub fn transform_classes() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|(name, sided)| {
            let sides: &[&str] = if *sided { &["$Key", "$Value"] } else { &[""] };
            sides.iter().map(move |side| format!("{TRANSFORMS_PACKAGE}{name}{side}"))
        })
        .collect()
}

/// Reads one transform's or predicate's options (`<prefix><option>`) and
/// records problems, each naming its full key.
struct Options<'a> {
    config: &'a BTreeMap<String, String>,
    prefix: String,
    issues: &'a mut Vec<ConfigIssue>,
}

impl<'a> Options<'a> {
    fn key(&self, option: &str) -> String {
        format!("{}{option}", self.prefix)
    }

    fn get(&self, option: &str) -> Option<&'a str> {
        self.config.get(&self.key(option)).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The value as written (untrimmed, possibly empty), for options where
    /// spaces are part of the value (a delimiter, a header's literal).
    fn raw(&self, option: &str) -> Option<&'a str> {
        self.config.get(&self.key(option)).map(String::as_str)
    }

    fn required(&mut self, option: &str) -> Option<&'a str> {
        let value = self.get(option);
        if value.is_none() {
            let key = self.key(option);
            self.issues.push(ConfigIssue::new(
                &key,
                format!("Missing required configuration \"{key}\" which has no default value."),
            ));
        }
        value
    }

    /// A comma-separated list (empty when unset).
    fn list(&self, option: &str) -> Vec<String> {
        self.get(option)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn required_list(&mut self, option: &str) -> Vec<String> {
        let list = self.list(option);
        if list.is_empty() {
            let key = self.key(option);
            self.issues.push(ConfigIssue::new(&key, format!("\"{key}\" must list at least one field")));
        }
        list
    }

    fn invalid(&mut self, option: &str, message: impl std::fmt::Display) {
        let key = self.key(option);
        self.issues.push(ConfigIssue::new(&key, format!("Invalid value for \"{key}\": {message}")));
    }
}

#[derive(Debug, Clone)]
struct Stage {
    alias: String,
    type_name: String,
    transform: Transform,
    predicate: Option<(Predicate, bool)>,
}

/// The configured transforms, applied in order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    stages: Vec<Stage>,
}

fn aliases(config: &BTreeMap<String, String>, key: &str, issues: &mut Vec<ConfigIssue>) -> Vec<String> {
    let list: Vec<String> = config
        .get(key)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for alias in &list {
        if !seen.insert(alias.as_str()) {
            issues.push(ConfigIssue::new(key, format!("Duplicate alias provided: {alias}")));
        }
    }
    list
}

impl Chain {
    /// Parses `transforms` and `predicates`; `Err` lists every problem.
    pub fn parse(config: &BTreeMap<String, String>) -> Result<Chain, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut predicates: BTreeMap<String, Predicate> = BTreeMap::new();
        for name in aliases(config, "predicates", &mut issues) {
            let mut opts = Options { config, prefix: format!("predicates.{name}."), issues: &mut issues };
            if let Some(p) = Predicate::parse(&mut opts) {
                predicates.insert(name, p);
            }
        }
        let mut stages = Vec::new();
        for alias in aliases(config, "transforms", &mut issues) {
            let mut opts = Options { config, prefix: format!("transforms.{alias}."), issues: &mut issues };
            let Some(type_name) = opts.required("type") else { continue };
            let Some(transform) = parse_transform(type_name, &mut opts) else { continue };
            let negate = match opts.get("negate").map(str::to_ascii_lowercase).as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    opts.invalid("negate", format!("{other} (must be true or false)"));
                    false
                }
            };
            let predicate = match opts.get("predicate") {
                None => {
                    if negate {
                        opts.invalid("negate", "negate=true needs a predicate on the transform");
                    }
                    None
                }
                Some(p) => match predicates.get(p) {
                    Some(pred) => Some((pred.clone(), negate)),
                    None => {
                        let key = opts.key("predicate");
                        opts.issues.push(ConfigIssue::new(
                            &key,
                            format!("Invalid value for \"{key}\": {p} is not a predicate listed in \"predicates\""),
                        ));
                        None
                    }
                },
            };
            let short = short_name(type_name).to_string();
            stages.push(Stage { alias, type_name: short, transform, predicate });
        }
        if issues.is_empty() {
            Ok(Chain { stages })
        } else {
            Err(issues)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether a transform may rename the record's topic (the sink pipeline
    /// then maps the sink's durable offsets back, see [`routing`]).
    pub fn changes_topic(&self) -> bool {
        self.stages.iter().any(|s| matches!(s.transform, Transform::RegexRouter(_) | Transform::TimestampRouter(_)))
    }

    /// Whether no transform of the chain rewrites keys or values, so the
    /// converter's schemas still describe them. Sluice's transforms work on
    /// schemaless JSON; only these leave key and value as they were
    /// (SetSchemaMetadata renames the schema itself).
    pub fn keeps_values(&self) -> bool {
        self.stages.iter().all(|s| match &s.transform {
            Transform::HeaderFrom(h) => h.copies(),
            t => matches!(
                t,
                Transform::Filter
                    | Transform::RegexRouter(_)
                    | Transform::TimestampRouter(_)
                    | Transform::RequireFields(_)
                    | Transform::InsertHeader(_)
                    | Transform::DropHeaders(_)
                    | Transform::SetSchemaMetadata(_)
            ),
        })
    }

    /// Runs the chain: `Ok(None)` when a transform dropped the record; `Err`
    /// names the transform, the problem and the record's coordinates.
    pub fn apply(&self, mut record: Record) -> Result<Option<Record>, String> {
        let at = record.describe();
        for stage in &self.stages {
            if let Some((predicate, negate)) = &stage.predicate {
                if predicate.test(&record) == *negate {
                    continue;
                }
            }
            match stage.transform.apply(&mut record) {
                Ok(Step::Keep) => {}
                Ok(Step::Drop) => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "transform \"{}\" ({}) failed on the record at {at}: {e}",
                        stage.alias, stage.type_name
                    ))
                }
            }
        }
        Ok(Some(record))
    }
}

fn short_name(type_name: &str) -> &str {
    type_name.strip_prefix(TRANSFORMS_PACKAGE).unwrap_or(type_name)
}

fn parse_transform(type_name: &str, opts: &mut Options<'_>) -> Option<Transform> {
    let (family, side) = match short_name(type_name).split_once('$') {
        Some((f, "Key")) => (f, Some(Side::Key)),
        Some((f, "Value")) => (f, Some(Side::Value)),
        Some((f, _)) => (f, None),
        None => (short_name(type_name), None),
    };
    let known = FAMILIES.iter().find(|(name, _)| *name == family);
    let wrong = match known {
        None => true,
        Some((_, needs_side)) => *needs_side != side.is_some() && !(family == "RequireFields" && side.is_some()),
    };
    if wrong {
        let names: Vec<String> = FAMILIES
            .iter()
            .map(|(n, sided)| if *sided { format!("{n}$Key, {n}$Value") } else { n.to_string() })
            .collect();
        opts.invalid(
            "type",
            format!(
                "unknown transform {type_name}; known: {} (short names or with the {TRANSFORMS_PACKAGE} prefix)",
                names.join(", ")
            ),
        );
        return None;
    }
    let side = side.unwrap_or(Side::Value);
    Some(match family {
        "InsertField" => Transform::InsertField(insert_field::InsertField::parse(opts, side)),
        "ReplaceField" => Transform::ReplaceField(replace_field::ReplaceField::parse(opts, side)),
        "MaskField" => Transform::MaskField(mask_field::MaskField::parse(opts, side)),
        "ValueToKey" => Transform::ValueToKey(value_to_key::ValueToKey::parse(opts)),
        "ExtractField" => Transform::ExtractField(extract_field::ExtractField::parse(opts, side)?),
        "Filter" => Transform::Filter,
        "RegexRouter" => Transform::RegexRouter(regex_router::RegexRouter::parse(opts)?),
        "TimestampRouter" => Transform::TimestampRouter(timestamp_router::TimestampRouter::parse(opts)?),
        "Cast" => Transform::Cast(cast::Cast::parse(opts, side)?),
        "Flatten" => Transform::Flatten(flatten::Flatten::parse(opts, side)),
        "HoistField" => Transform::HoistField(hoist_field::HoistField::parse(opts, side)?),
        "TimestampConverter" => {
            Transform::TimestampConverter(timestamp_converter::TimestampConverter::parse(opts, side)?)
        }
        "InsertHeader" => Transform::InsertHeader(headers::InsertHeader::parse(opts)?),
        "DropHeaders" => Transform::DropHeaders(headers::DropHeaders::parse(opts)),
        "HeaderFrom" => Transform::HeaderFrom(headers::HeaderFrom::parse(opts, side)?),
        "SetSchemaMetadata" => Transform::SetSchemaMetadata(set_schema_metadata::SetSchemaMetadata::parse(opts, side)?),
        _ => Transform::RequireFields(require_fields::RequireFields::parse(opts, side)),
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    pub fn chain(pairs: &[(&str, &str)]) -> Chain {
        Chain::parse(&config(pairs)).unwrap_or_else(|e| panic!("{e:?}"))
    }

    pub fn issues(pairs: &[(&str, &str)]) -> Vec<String> {
        Chain::parse(&config(pairs)).unwrap_err().iter().map(|i| format!("{}: {}", i.key, i.message)).collect()
    }

    pub fn record(value: Value) -> Record {
        Record {
            topic: "orders".into(),
            partition: Some(2),
            offset: Some(42),
            timestamp: Some(1_700_000_000_000),
            key: Some(Data::Json(Value::String("k1".into()))),
            value: non_null(value),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
            key_schema: None,
            value_schema: None,
        }
    }

    pub fn json_value(r: &Record) -> Value {
        match &r.value {
            Some(Data::Json(v)) => v.clone(),
            Some(Data::Raw(b)) => serde_json::from_slice(b).unwrap(),
            other => panic!("not JSON: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{test_support::*, *};

    #[test]
    fn transforms_run_in_order_and_accept_java_class_names() {
        let c = chain(&[
            ("transforms", "route,insert"),
            ("transforms.route.type", "org.apache.kafka.connect.transforms.RegexRouter"),
            ("transforms.route.regex", "orders"),
            ("transforms.route.replacement", "orders-v2"),
            ("transforms.insert.type", "InsertField$Value"),
            ("transforms.insert.topic.field", "t"),
        ]);
        assert!(c.changes_topic());
        let out = c.apply(record(json!({"a": 1}))).unwrap().unwrap();
        assert_eq!(out.topic, "orders-v2");
        assert_eq!(json_value(&out), json!({"a": 1, "t": "orders-v2"}));
    }

    #[test]
    fn a_predicate_decides_whether_a_transform_applies_and_negate_inverts_it() {
        let pairs = |negate: &'static str| {
            chain(&[
                ("transforms", "drop"),
                ("transforms.drop.type", "Filter"),
                ("transforms.drop.predicate", "isOrders"),
                ("transforms.drop.negate", negate),
                ("predicates", "isOrders"),
                ("predicates.isOrders.type", "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"),
                ("predicates.isOrders.pattern", "ord.*"),
            ])
        };
        assert_eq!(pairs("false").apply(record(json!({}))).unwrap(), None);
        assert!(pairs("true").apply(record(json!({}))).unwrap().is_some());
    }

    #[test]
    fn config_problems_name_their_keys() {
        let found = issues(&[
            ("transforms", "a,b,c,d"),
            ("transforms.a.type", "NoSuchTransform"),
            ("transforms.b.type", "RegexRouter"),
            ("transforms.b.regex", "(unclosed"),
            ("transforms.b.replacement", "x"),
            ("transforms.c.type", "Filter"),
            ("transforms.c.predicate", "missing"),
            ("transforms.d.type", "MaskField$Value"),
        ]);
        let keys: Vec<&str> = found.iter().map(|i| i.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["transforms.a.type", "transforms.b.regex", "transforms.c.predicate", "transforms.d.fields"]);
        assert!(issues(&[("transforms", "x")])[0].starts_with("transforms.x.type"));
        assert!(issues(&[("transforms", "x"), ("transforms.x.type", "InsertField")])[0].contains("InsertField$Value"));
        let p = issues(&[("predicates", "p"), ("predicates.p.type", "TopicNameMatches")]);
        assert!(p[0].starts_with("predicates.p.pattern"), "{p:?}");
    }

    #[test]
    fn an_error_names_the_alias_the_field_and_the_record() {
        let c = chain(&[
            ("transforms", "ins"),
            ("transforms.ins.type", "InsertField$Value"),
            ("transforms.ins.static.field", "src"),
        ]);
        let e = c.apply(record(json!([1, 2]))).unwrap_err();
        assert!(e.contains("\"ins\"") && e.contains("src") && e.contains("topic orders partition 2 offset 42"), "{e}");
        assert!(e.contains("JSON array"), "{e}");
    }

    #[test]
    fn unconverted_bytes_are_parsed_when_a_transform_needs_structure() {
        let c = chain(&[("transforms", "m"), ("transforms.m.type", "MaskField$Value"), ("transforms.m.fields", "p")]);
        let mut r = record(Value::Null);
        r.value = Some(Data::Raw(br#"{"p":"secret","q":1}"#.to_vec()));
        assert_eq!(json_value(&c.apply(r.clone()).unwrap().unwrap()), json!({"p": "", "q": 1}));
        r.value = Some(Data::Raw(b"not json".to_vec()));
        assert!(c.apply(r.clone()).unwrap_err().contains("not JSON"));
        r.value = Some(Data::Bytes(br#"{"p":1}"#.to_vec()));
        assert!(c.apply(r).unwrap_err().contains("is bytes"));
    }
}
