//! The Schema Registry converters, source side: a Kafka Connect schema and
//! the record's JSON value (Kafka Connect's JSON form: bytes and decimals
//! as base64, dates and times as numbers) → an Avro schema and Avro binary,
//! or a JSON Schema document and its JSON payload, as Confluent's
//! `AvroData.fromConnectSchema`/`fromConnectData` and `JsonSchemaData` make
//! them (docs/decisions/0030-avro-and-json-schema-converters.md has the
//! mapping and where we differ). Pure functions; the registry calls are in
//! `mod.rs`.
//!
//! Avro bytes are written by walking the *Avro* schema with the value, not
//! the Connect schema, so a record can also be written with a schema the
//! registry already holds (`use.latest.version`): the value either fits it
//! or the error names the field that does not.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use connector_api::schema::{Field, Schema, SchemaType, DATE, DECIMAL, TIME, TIMESTAMP};
use serde_json::{json, Map, Value};

use super::avro::{collect_names, full_name, namespace_of, FIELD_DEFAULT, FIELD_DOC, PRECISION, RECORD_DOC, UNION};

/// AvroData's namespace for the records it names itself.
const NAMESPACE: &str = "io.confluent.connect.avro";
const DEFAULT_NAME: &str = "ConnectDefault";
/// AvroData's decimal precision when the Connect schema states none.
const DEFAULT_PRECISION: i64 = 64;

/// The Avro schema for a Connect schema (`AvroData.fromConnectSchema`, with
/// `connect.meta.data=true` and `enhanced.avro.schema.support=false`), and
/// the full name of its top-level record, if it is one.
pub fn avro_schema(schema: &Schema) -> Result<(Value, Option<String>), String> {
    let mut ctx = AvroCtx::default();
    let avro = ctx.node(schema, false, "")?;
    let record = match &avro {
        Value::Object(o) if o.get("type") == Some(&json!("record")) => {
            o.get("name").and_then(Value::as_str).map(|n| full_name(n, o.get("namespace"), ""))
        }
        _ => None,
    };
    Ok((avro, record))
}

#[derive(Default)]
struct AvroCtx {
    /// Unnamed structs named so far (ConnectDefault, ConnectDefault2, …).
    unnamed: u32,
    /// Records defined so far, by full name, with the Connect schema each
    /// came from: Avro forbids a second definition, so a repeat is a reference.
    defined: HashMap<String, Schema>,
    /// An unnamed struct seen before gets the record defined for it then, as
    /// AvroData reuses the Avro schema of an equal Connect schema.
    reused: HashMap<String, String>,
}

fn is_avro_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a struct schema becomes in an Avro schema being written.
enum Record {
    /// Defined earlier: a reference by its full name.
    Reference(String),
    /// Defined here: name, namespace, doc and fields are in the node.
    Defined,
}

impl AvroCtx {
    /// `path` names the field for error messages.
    fn node(&mut self, s: &Schema, ignore_optional: bool, path: &str) -> Result<Value, String> {
        if s.kind == SchemaType::Struct && s.name.as_deref() == Some(UNION) {
            return self.union(s, path);
        }
        if s.kind == SchemaType::Struct && s.optional && !ignore_optional {
            let mut inner = s.clone();
            inner.optional = false;
            return Ok(json!(["null", self.node(&inner, false, path)?]));
        }
        let mut o = Map::new();
        let (kind, connect_type) = match s.kind {
            SchemaType::Int8 => ("int", Some("int8")),
            SchemaType::Int16 => ("int", Some("int16")),
            SchemaType::Int32 => ("int", None),
            SchemaType::Int64 => ("long", None),
            SchemaType::Float => ("float", None),
            SchemaType::Double => ("double", None),
            SchemaType::Boolean => ("boolean", None),
            SchemaType::String => ("string", None),
            SchemaType::Bytes => ("bytes", None),
            SchemaType::Array => {
                let items = s.items.as_deref().ok_or_else(|| format!("{}: an array schema without items", at(path)))?;
                o.insert("items".into(), self.node(items, false, &join(path, "[]"))?);
                ("array", None)
            }
            SchemaType::Map => {
                o.insert("values".into(), self.map_values(s, path)?);
                ("map", None)
            }
            SchemaType::Struct => match self.record(s, path, &mut o)? {
                Record::Reference(name) => return Ok(json!(name)),
                Record::Defined => ("record", None),
            },
        };
        o.insert("type".into(), json!(kind));
        connect_metadata(s, connect_type, &mut o);
        logical_type(s, path, &mut o)?;
        // A primitive without properties is written as its bare name, as
        // Avro prints it.
        let base = if o.len() == 1 { json!(kind) } else { Value::Object(o) };
        Ok(if s.optional && !ignore_optional { nullable(s, base) } else { base })
    }

    /// Connect's union struct (io.confluent.connect.avro.Union): its fields
    /// are the union's branches.
    fn union(&mut self, s: &Schema, path: &str) -> Result<Value, String> {
        let mut members = Vec::new();
        if s.optional {
            members.push(json!("null"));
        }
        for f in &s.fields {
            let mut member = f.schema.clone();
            member.optional = false;
            members.push(self.node(&member, true, &join(path, &f.name))?);
        }
        Ok(Value::Array(members))
    }

    fn map_values(&mut self, s: &Schema, path: &str) -> Result<Value, String> {
        let (keys, values) = match (s.keys.as_deref(), s.values.as_deref()) {
            (Some(k), Some(v)) => (k, v),
            _ => return Err(format!("{}: a map schema without keys or values", at(path))),
        };
        if keys.kind != SchemaType::String || keys.optional {
            // AvroData writes such a map as an array of MapEntry
            // records; Kafka Connect's JSON form of it is not an
            // object, which sources hand us, so it is refused.
            return Err(format!(
                "{}: a map with {:?} keys has no Avro form here (only string keys)",
                at(path),
                keys.kind
            ));
        }
        self.node(values, false, &join(path, "{}"))
    }

    /// A struct: a reference when a struct of that name (or, unnamed, of
    /// that shape) was defined already, else its definition into `o`.
    fn record(&mut self, s: &Schema, path: &str, o: &mut Map<String, Value>) -> Result<Record, String> {
        let key = serde_json::to_string(s).unwrap_or_default();
        if let Some(name) = s.name.as_deref() {
            if let Some(first) = self.defined.get(name) {
                return if first == s {
                    Ok(Record::Reference(name.to_string()))
                } else {
                    Err(format!("{}: two different structs are both named {name}", at(path)))
                };
            }
        } else if let Some(name) = self.reused.get(&key) {
            return Ok(Record::Reference(name.clone()));
        }
        let (namespace, name) = self.record_name(s);
        let full = match &namespace {
            Some(ns) => format!("{ns}.{name}"),
            None => name.clone(),
        };
        if !is_avro_name(&name) || !namespace.iter().flat_map(|ns| ns.split('.')).all(is_avro_name) {
            return Err(format!("{}: {full} is not a valid Avro record name", at(path)));
        }
        self.defined.insert(full.clone(), s.clone());
        if s.name.is_none() {
            self.reused.insert(key, full);
        }
        o.insert("name".into(), json!(name));
        if let Some(ns) = namespace {
            o.insert("namespace".into(), json!(ns));
        }
        if let Some(doc) = s.parameters.get(RECORD_DOC) {
            o.insert("doc".into(), json!(doc));
        }
        let fields = s.fields.iter().map(|f| self.field(s, f, path)).collect::<Result<Vec<_>, _>>()?;
        o.insert("fields".into(), Value::Array(fields));
        Ok(Record::Defined)
    }

    /// (namespace, short name): the schema's name split at its last dot,
    /// or AvroData's default name numbered for the second unnamed struct on.
    fn record_name(&mut self, s: &Schema) -> (Option<String>, String) {
        match s.name.as_deref() {
            Some(n) => match n.rsplit_once('.') {
                Some((ns, short)) => (Some(ns.to_string()), short.to_string()),
                None => (None, n.to_string()),
            },
            None => {
                self.unnamed += 1;
                let n = if self.unnamed > 1 { self.unnamed.to_string() } else { String::new() };
                (Some(NAMESPACE.to_string()), format!("{DEFAULT_NAME}{n}"))
            }
        }
    }

    fn field(&mut self, record: &Schema, f: &Field, path: &str) -> Result<Value, String> {
        let field_path = join(path, &f.name);
        if !is_avro_name(&f.name) {
            return Err(format!(
                "{}: {:?} is not a valid Avro field name (letters, digits and _, not starting with a \
                 digit); rename it with a ReplaceField transform",
                at(&field_path),
                f.name
            ));
        }
        let mut field = Map::new();
        field.insert("name".into(), json!(f.name));
        field.insert("type".into(), self.node(&f.schema, false, &field_path)?);
        if let Some(doc) = record.parameters.get(&format!("{FIELD_DOC}{}", f.name)) {
            field.insert("doc".into(), json!(doc));
        }
        match &f.schema.default {
            Some(d) if !d.is_null() => {
                field.insert("default".into(), d.clone());
            }
            _ if f.schema.optional => {
                field.insert("default".into(), Value::Null);
            }
            _ => {}
        }
        Ok(Value::Object(field))
    }
}

/// Connect's metadata, as AvroData keeps it (connect.meta.data=true).
fn connect_metadata(s: &Schema, connect_type: Option<&str>, o: &mut Map<String, Value>) {
    if let Some(doc) = &s.doc {
        o.insert("connect.doc".into(), json!(doc));
    }
    if let Some(v) = s.version {
        o.insert("connect.version".into(), json!(v));
    }
    let params: Map<String, Value> =
        s.parameters.iter().filter(|(k, _)| k.as_str() != FIELD_DEFAULT).map(|(k, v)| (k.clone(), json!(v))).collect();
    if !params.is_empty() {
        o.insert("connect.parameters".into(), Value::Object(params));
    }
    if let Some(d) = &s.default {
        if !s.parameters.contains_key(FIELD_DEFAULT) && !d.is_null() {
            o.insert("connect.default".into(), d.clone());
        }
    }
    if let Some(name) = &s.name {
        o.insert("connect.name".into(), json!(name));
    }
    if let Some(t) = connect_type {
        o.insert("connect.type".into(), json!(t));
    }
}

/// Avro's logical type for Connect's Decimal, Date, Time and Timestamp.
fn logical_type(s: &Schema, path: &str, o: &mut Map<String, Value>) -> Result<(), String> {
    match s.name.as_deref() {
        Some(DECIMAL) if s.kind == SchemaType::Bytes => {
            let scale = s
                .parameters
                .get("scale")
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("{}: a Decimal schema without a numeric \"scale\" parameter", at(path)))?;
            let precision = match s.parameters.get(PRECISION) {
                Some(p) => p
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{}: the Decimal's {PRECISION} parameter {p:?} is not a number", at(path)))?,
                None => DEFAULT_PRECISION,
            };
            o.insert("logicalType".into(), json!("decimal"));
            o.insert("precision".into(), json!(precision));
            o.insert("scale".into(), json!(scale));
        }
        Some(DATE) if s.kind == SchemaType::Int32 => {
            o.insert("logicalType".into(), json!("date"));
        }
        Some(TIME) if s.kind == SchemaType::Int32 => {
            o.insert("logicalType".into(), json!("time-millis"));
        }
        Some(TIMESTAMP) if s.kind == SchemaType::Int64 => {
            o.insert("logicalType".into(), json!("timestamp-millis"));
        }
        _ => {}
    }
    Ok(())
}

/// An optional schema as a union with null. AvroData puts null second when
/// the default is not null, so the default fits the union's first branch.
fn nullable(s: &Schema, base: Value) -> Value {
    match &s.default {
        Some(d) if !d.is_null() => json!([base, "null"]),
        _ => json!(["null", base]),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the schema".to_string()
    } else {
        format!("field {path}")
    }
}

/// An Avro schema (JSON) ready to write values with: the schema and its
/// named types.
pub struct AvroWriter {
    schema: Value,
    names: HashMap<String, (Value, String)>,
}

impl AvroWriter {
    pub fn new(schema: Value) -> AvroWriter {
        let mut names = HashMap::new();
        collect_names(&schema, "", &mut names);
        AvroWriter { schema, names }
    }

    /// The value (Kafka Connect's JSON form) as Avro binary; the error names
    /// the field that does not fit.
    pub fn write(&self, value: &Value) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.encode(&self.schema, "", value, "", &mut out)?;
        Ok(out)
    }

    fn resolve<'n>(&'n self, node: &'n Value, ns: &str) -> Result<(&'n Value, String), String> {
        match node {
            Value::String(s) if !super::avro::PRIMITIVES.contains(&s.as_str()) => [full_name(s, None, ns), s.clone()]
                .iter()
                .find_map(|n| self.names.get(n))
                .map(|(def, def_ns)| (def, def_ns.clone()))
                .ok_or_else(|| format!("the Avro schema refers to an unknown type {s}")),
            Value::Object(o) => match o.get("type") {
                Some(t @ (Value::Array(_) | Value::Object(_))) => self.resolve(t, ns),
                _ => Ok((node, ns.to_string())),
            },
            _ => Ok((node, ns.to_string())),
        }
    }

    fn encode(&self, node: &Value, ns: &str, v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), String> {
        let (node, ns) = self.resolve(node, ns)?;
        if let Value::Array(members) = node {
            return self.union(members, &ns, v, path, out);
        }
        let kind = match node {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or_default(),
            _ => "",
        };
        let prop = |k: &str| node.get(k);
        let logical = prop("logicalType").and_then(Value::as_str).unwrap_or_default();
        let wrong = |want: &str| format!("{}: expected {want}, got {}", at(path), short(v));
        match kind {
            "null" if v.is_null() => {}
            "boolean" => out.push(u8::from(v.as_bool().ok_or_else(|| wrong("a boolean"))?)),
            "int" => {
                let n = v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| wrong("a 32-bit integer"))?;
                let range = match prop("connect.type").and_then(Value::as_str) {
                    Some("int8") => i64::from(i8::MIN)..=i64::from(i8::MAX),
                    Some("int16") => i64::from(i16::MIN)..=i64::from(i16::MAX),
                    _ => i64::from(i32::MIN)..=i64::from(i32::MAX),
                };
                if !range.contains(&i64::from(n)) {
                    return Err(wrong(&format!("an integer in {range:?}")));
                }
                zigzag(i64::from(n), out);
            }
            "long" => zigzag(v.as_i64().ok_or_else(|| wrong("a 64-bit integer"))?, out),
            "float" => out.extend_from_slice(&(v.as_f64().ok_or_else(|| wrong("a number"))? as f32).to_le_bytes()),
            "double" => out.extend_from_slice(&v.as_f64().ok_or_else(|| wrong("a number"))?.to_le_bytes()),
            "string" => {
                let s = v.as_str().ok_or_else(|| wrong("a string"))?;
                zigzag(s.len() as i64, out);
                out.extend_from_slice(s.as_bytes());
            }
            "bytes" | "fixed" => {
                let bytes = if logical == "decimal" {
                    let scale = prop("scale").and_then(Value::as_i64).unwrap_or(0);
                    let unscaled = decimal_unscaled(v, scale).map_err(|e| format!("{}: {e}", at(path)))?;
                    match (kind, prop("size").and_then(Value::as_u64)) {
                        ("fixed", Some(size)) => sign_extend(&unscaled, size as usize)
                            .ok_or_else(|| format!("{}: the decimal does not fit {size} bytes", at(path)))?,
                        _ => unscaled,
                    }
                } else {
                    let text = v.as_str().ok_or_else(|| wrong("base64 bytes"))?;
                    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| wrong("base64 bytes"))?
                };
                match (kind, prop("size").and_then(Value::as_u64)) {
                    ("fixed", Some(size)) if bytes.len() as u64 != size => {
                        return Err(wrong(&format!("{size} bytes")));
                    }
                    ("fixed", _) => {}
                    _ => zigzag(bytes.len() as i64, out),
                }
                out.extend_from_slice(&bytes);
            }
            "enum" => {
                let symbols = prop("symbols").and_then(Value::as_array).cloned().unwrap_or_default();
                let i = symbols
                    .iter()
                    .position(|s| Some(s) == Some(v))
                    .ok_or_else(|| wrong("one of the enum's symbols"))?;
                zigzag(i as i64, out);
            }
            "array" => {
                let items = v.as_array().ok_or_else(|| wrong("an array"))?;
                let item_schema = prop("items").ok_or("an Avro array without items")?;
                if !items.is_empty() {
                    zigzag(items.len() as i64, out);
                    for (i, item) in items.iter().enumerate() {
                        self.encode(item_schema, &ns, item, &format!("{path}[{i}]"), out)?;
                    }
                }
                out.push(0);
            }
            "map" => {
                let entries = v.as_object().ok_or_else(|| wrong("an object"))?;
                let value_schema = prop("values").ok_or("an Avro map without values")?;
                if !entries.is_empty() {
                    zigzag(entries.len() as i64, out);
                    for (k, item) in entries {
                        zigzag(k.len() as i64, out);
                        out.extend_from_slice(k.as_bytes());
                        self.encode(value_schema, &ns, item, &join(path, k), out)?;
                    }
                }
                out.push(0);
            }
            "record" | "error" => {
                let object = v.as_object().ok_or_else(|| wrong("an object"))?;
                let fields = prop("fields").and_then(Value::as_array).cloned().unwrap_or_default();
                let name = prop("name").and_then(Value::as_str).unwrap_or_default();
                let inner_ns = namespace_of(&full_name(name, prop("namespace"), &ns));
                let known: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
                if let Some(extra) = object.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(format!("{}: the schema has no such field", at(&join(path, extra))));
                }
                for f in &fields {
                    let field = f["name"].as_str().unwrap_or_default();
                    let field_path = join(path, field);
                    let given = object.get(field).filter(|x| !x.is_null());
                    // An absent field takes the schema's default, or null.
                    let value = match (given, f.get("default")) {
                        (Some(x), _) => x,
                        (None, Some(d)) => d,
                        (None, None) => &Value::Null,
                    };
                    self.encode(&f["type"], &inner_ns, value, &field_path, out)?;
                }
            }
            "null" => return Err(wrong("null")),
            other => return Err(format!("{}: unsupported Avro type {other:?}", at(path))),
        }
        Ok(())
    }

    /// A union: null takes the null branch, anything else the first
    /// branch it fits.
    fn union(&self, members: &[Value], ns: &str, v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), String> {
        let mut last = None;
        for (i, m) in members.iter().enumerate() {
            let is_null = m == "null";
            if v.is_null() != is_null {
                continue;
            }
            let mut branch = Vec::new();
            zigzag(i as i64, &mut branch);
            match self.encode(m, ns, v, path, &mut branch) {
                Ok(()) => {
                    out.extend_from_slice(&branch);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            format!("{}: {} fits no branch of the union {}", at(path), short(v), Value::Array(members.to_vec()))
        }))
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A decimal's unscaled value as big-endian two's complement: from Kafka
/// Connect's JSON form (base64 of those bytes), or from a JSON number with
/// at most `scale` digits after the point.
fn decimal_unscaled(v: &Value, scale: i64) -> Result<Vec<u8>, String> {
    match v {
        Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| format!("expected a decimal (base64 of its unscaled value, or a number), got {}", short(v))),
        Value::Number(n) => {
            let text = n.to_string();
            let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
            if text.contains(['e', 'E']) || frac.len() as i64 > scale {
                return Err(format!("the decimal {text} does not fit scale {scale}"));
            }
            let digits = format!("{int}{frac}{}", "0".repeat((scale - frac.len() as i64) as usize));
            let unscaled: i128 = digits.parse().map_err(|_| format!("the decimal {text} is too large"))?;
            Ok(super::avro::minimal_twos_complement(&unscaled.to_be_bytes()))
        }
        _ => Err(format!("expected a decimal (base64 of its unscaled value, or a number), got {}", short(v))),
    }
}

fn sign_extend(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    if bytes.len() > size {
        return None;
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut out = vec![fill; size - bytes.len()];
    out.extend_from_slice(bytes);
    Some(out)
}

/// The JSON Schema for a Connect schema, as `JsonSchemaData.fromConnectSchema`
/// writes the common shapes: integers and numbers with their `connect.type`,
/// bytes as a string with `connect.type` bytes (a Decimal as a number),
/// structs as objects whose properties carry `connect.index`, optional ones
/// as `oneOf` null and the type, string-keyed maps as objects with
/// `additionalProperties` and `connect.type` map; the name as `title`, the
/// doc as `description`.
pub fn json_schema(schema: &Schema) -> Result<Value, String> {
    json_node(schema, None, false, "")
}

fn json_node(s: &Schema, index: Option<usize>, ignore_optional: bool, path: &str) -> Result<Value, String> {
    let mut o = Map::new();
    let mut connect_type = None;
    let decimal = s.kind == SchemaType::Bytes && s.name.as_deref() == Some(DECIMAL);
    match s.kind {
        SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64 => {
            o.insert("type".into(), json!("integer"));
            connect_type = Some(format!("{:?}", s.kind).to_ascii_lowercase());
        }
        SchemaType::Float | SchemaType::Double => {
            o.insert("type".into(), json!("number"));
            connect_type = Some(if s.kind == SchemaType::Float { "float32" } else { "float64" }.to_string());
        }
        SchemaType::Boolean => {
            o.insert("type".into(), json!("boolean"));
        }
        SchemaType::String => {
            o.insert("type".into(), json!("string"));
        }
        SchemaType::Bytes => {
            o.insert("type".into(), json!(if decimal { "number" } else { "string" }));
            connect_type = Some("bytes".into());
        }
        SchemaType::Array => {
            let items = s.items.as_deref().ok_or_else(|| format!("{}: an array schema without items", at(path)))?;
            o.insert("type".into(), json!("array"));
            o.insert("items".into(), json_node(items, None, false, &join(path, "[]"))?);
        }
        SchemaType::Map => match (s.keys.as_deref(), s.values.as_deref()) {
            (Some(k), Some(v)) if k.kind == SchemaType::String && !k.optional => {
                o.insert("type".into(), json!("object"));
                o.insert("additionalProperties".into(), json_node(v, None, false, &join(path, "{}"))?);
                connect_type = Some("map".into());
            }
            _ => return Err(format!("{}: only maps with string keys have a JSON Schema form here", at(path))),
        },
        SchemaType::Struct => {
            if s.optional && !ignore_optional {
                let mut inner = s.clone();
                inner.optional = false;
                let mut one_of = json!({"oneOf": [{"type": "null"}, json_node(&inner, None, false, path)?]});
                if let Some(i) = index {
                    one_of["connect.index"] = json!(i);
                }
                return Ok(one_of);
            }
            let mut props = Map::new();
            for (i, f) in s.fields.iter().enumerate() {
                props.insert(f.name.clone(), json_node(&f.schema, Some(i), false, &join(path, &f.name))?);
            }
            o.insert("type".into(), json!("object"));
            o.insert("properties".into(), Value::Object(props));
        }
    }
    if let Some(name) = &s.name {
        o.insert("title".into(), json!(name));
    }
    if let Some(v) = s.version {
        o.insert("connect.version".into(), json!(v));
    }
    if let Some(doc) = &s.doc {
        o.insert("description".into(), json!(doc));
    }
    let params: BTreeMap<&String, &String> =
        s.parameters.iter().filter(|(k, _)| !k.starts_with("io.confluent.connect.json")).collect();
    if !params.is_empty() {
        o.insert("connect.parameters".into(), json!(params));
    }
    if let Some(d) = &s.default {
        o.insert("default".into(), d.clone());
    }
    if let Some(t) = connect_type {
        o.insert("connect.type".into(), json!(t));
    }
    if s.optional && !ignore_optional {
        let mut one_of = json!({"oneOf": [{"type": "null"}, Value::Object(o)]});
        if let Some(i) = index {
            one_of["connect.index"] = json!(i);
        }
        return Ok(one_of);
    }
    if let Some(i) = index {
        o.insert("connect.index".into(), json!(i));
    }
    Ok(Value::Object(o))
}

/// The JSON payload for a value, as `JsonSchemaData.fromConnectData` writes
/// it: every field of a struct (null when absent and optional), a Decimal
/// as a number; a value that does not fit the schema is an error naming
/// the field.
pub fn json_payload(s: &Schema, v: &Value) -> Result<Value, String> {
    payload(s, v, "")
}

fn payload(s: &Schema, v: &Value, path: &str) -> Result<Value, String> {
    if v.is_null() {
        return match &s.default {
            Some(d) if !d.is_null() => Ok(d.clone()),
            _ if s.optional => Ok(Value::Null),
            _ => Err(format!("{}: null for a required {:?}", at(path), s.kind)),
        };
    }
    let wrong = |want: &str| format!("{}: expected {want}, got {}", at(path), short(v));
    Ok(match s.kind {
        SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64 => {
            let n = v.as_i64().ok_or_else(|| wrong("an integer"))?;
            let fits = match s.kind {
                SchemaType::Int8 => i8::try_from(n).is_ok(),
                SchemaType::Int16 => i16::try_from(n).is_ok(),
                SchemaType::Int32 => i32::try_from(n).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(wrong(&format!("an {:?}", s.kind).to_ascii_lowercase()));
            }
            v.clone()
        }
        SchemaType::Float | SchemaType::Double => {
            v.as_f64().ok_or_else(|| wrong("a number"))?;
            v.clone()
        }
        SchemaType::Boolean => {
            v.as_bool().ok_or_else(|| wrong("a boolean"))?;
            v.clone()
        }
        SchemaType::String => {
            v.as_str().ok_or_else(|| wrong("a string"))?;
            v.clone()
        }
        SchemaType::Bytes if s.name.as_deref() == Some(DECIMAL) => {
            let scale = s.parameters.get("scale").and_then(|x| x.trim().parse::<i64>().ok()).unwrap_or(0);
            match v {
                Value::Number(_) => v.clone(),
                _ => {
                    let unscaled = decimal_unscaled(v, scale).map_err(|e| format!("{}: {e}", at(path)))?;
                    decimal_number(&unscaled, scale).ok_or_else(|| wrong("a decimal of at most 38 digits"))?
                }
            }
        }
        SchemaType::Bytes => {
            let text = v.as_str().ok_or_else(|| wrong("base64 bytes"))?;
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| wrong("base64 bytes"))?;
            v.clone()
        }
        SchemaType::Array => {
            let items = s.items.as_deref().ok_or("an array schema without items")?;
            let list = v.as_array().ok_or_else(|| wrong("an array"))?;
            Value::Array(
                list.iter()
                    .enumerate()
                    .map(|(i, x)| payload(items, x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        SchemaType::Map => {
            let values = s.values.as_deref().ok_or("a map schema without values")?;
            let entries = v.as_object().ok_or_else(|| wrong("an object"))?;
            Value::Object(
                entries
                    .iter()
                    .map(|(k, x)| Ok((k.clone(), payload(values, x, &join(path, k))?)))
                    .collect::<Result<_, String>>()?,
            )
        }
        SchemaType::Struct => {
            let object = v.as_object().ok_or_else(|| wrong("an object"))?;
            if let Some(extra) = object.keys().find(|k| s.field(k).is_none()) {
                return Err(format!("{}: the schema has no such field", at(&join(path, extra))));
            }
            let mut out = Map::new();
            for f in &s.fields {
                let x = object.get(&f.name).unwrap_or(&Value::Null);
                out.insert(f.name.clone(), payload(&f.schema, x, &join(path, &f.name))?);
            }
            Value::Object(out)
        }
    })
}

/// A decimal's unscaled two's complement bytes and scale as a JSON number.
fn decimal_number(unscaled: &[u8], scale: i64) -> Option<Value> {
    if unscaled.len() > 16 {
        return None;
    }
    let fill = if unscaled.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - unscaled.len()..].copy_from_slice(unscaled);
    let n = i128::from_be_bytes(buf);
    let digits = n.unsigned_abs().to_string();
    let scale = usize::try_from(scale).ok()?;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if n < 0 { "-" } else { "" };
    let text = if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as Avro;

    use super::*;

    fn schema(v: Value) -> Schema {
        Schema::parse(&v.to_string()).unwrap()
    }

    /// Decodes with apache-avro (an independent reader) after parsing the
    /// schema text we would register.
    fn decode(avro: &Value, bytes: &[u8]) -> Avro {
        let parsed = apache_avro::Schema::parse_str(&avro.to_string()).unwrap();
        let mut reader = bytes;
        let v = apache_avro::from_avro_datum(&parsed, &mut reader, None).unwrap();
        assert!(reader.is_empty(), "every byte read");
        v
    }

    const ORDER: &str = r#"{"type":"struct","name":"shop.Order","version":2,"optional":false,"fields":[
        {"field":"id","type":"int64","optional":false},
        {"field":"qty","type":"int16","optional":false},
        {"field":"total","type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal",
         "version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"}},
        {"field":"day","type":"int32","optional":true,"name":"org.apache.kafka.connect.data.Date","version":1},
        {"field":"at","type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1},
        {"field":"note","type":"string","optional":true},
        {"field":"blob","type":"bytes","optional":false},
        {"field":"tags","type":"array","optional":false,"items":{"type":"string","optional":false}},
        {"field":"attrs","type":"map","optional":true,"keys":{"type":"string","optional":false},
         "values":{"type":"double","optional":false}},
        {"field":"customer","type":"struct","optional":true,"fields":[
            {"field":"uid","type":"string","optional":false}]}
    ]}"#;

    #[test]
    fn connect_schemas_become_avro_as_avrodata_names_them() {
        let (avro, record) = avro_schema(&Schema::parse(ORDER).unwrap()).unwrap();
        assert_eq!(record.as_deref(), Some("shop.Order"));
        assert_eq!((avro["name"].clone(), avro["namespace"].clone()), (json!("Order"), json!("shop")));
        assert_eq!((avro["connect.name"].clone(), avro["connect.version"].clone()), (json!("shop.Order"), json!(2)));
        let f = |n: &str| avro["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(f("id")["type"], "long");
        assert_eq!(f("qty")["type"], json!({"type": "int", "connect.type": "int16"}));
        assert_eq!(
            f("total")["type"],
            json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2, "connect.version": 1,
                   "connect.name": DECIMAL, "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}})
        );
        assert_eq!(f("day")["type"][1]["logicalType"], "date");
        assert_eq!((f("day")["type"][0].clone(), f("day")["default"].clone()), (json!("null"), Value::Null));
        assert_eq!(f("at")["type"]["logicalType"], "timestamp-millis");
        assert_eq!(f("note"), json!({"name": "note", "type": ["null", "string"], "default": null}));
        assert!(f("blob").get("default").is_none(), "a required field has no default");
        assert_eq!(f("tags")["type"], json!({"type": "array", "items": "string"}));
        assert_eq!(f("attrs")["type"][1], json!({"type": "map", "values": "double"}));
        assert_eq!(f("customer")["type"][1]["name"], "ConnectDefault");
        assert_eq!(f("customer")["type"][1]["namespace"], NAMESPACE);

        // What we write decodes with an independent reader to the values given.
        let value = json!({"id": 7, "qty": -3, "total": "MDk=", "day": 19000, "at": 1700000000123i64,
                           "note": null, "blob": "AQL/", "tags": ["a", "b"], "attrs": {"k": 0.5},
                           "customer": {"uid": "u1"}});
        let bytes = AvroWriter::new(avro.clone()).write(&value).unwrap();
        let Avro::Record(fields) = decode(&avro, &bytes) else { panic!("a record") };
        let got: BTreeMap<String, Avro> = fields.into_iter().collect();
        assert_eq!(got["id"], Avro::Long(7));
        assert_eq!(got["qty"], Avro::Int(-3));
        assert_eq!(got["total"], Avro::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])));
        assert_eq!(got["day"], Avro::Union(1, Box::new(Avro::Date(19000))));
        assert_eq!(got["at"], Avro::TimestampMillis(1_700_000_000_123));
        assert_eq!(got["note"], Avro::Union(0, Box::new(Avro::Null)));
        assert_eq!(got["blob"], Avro::Bytes(vec![1, 2, 255]));
        assert_eq!(got["tags"], Avro::Array(vec![Avro::String("a".into()), Avro::String("b".into())]));
        assert_eq!(
            got["customer"],
            Avro::Union(1, Box::new(Avro::Record(vec![("uid".into(), Avro::String("u1".into()))])))
        );
        // And the sink side reads it back to the same JSON.
        let back = super::super::avro::AvroSchema::parse(&avro.to_string()).unwrap();
        assert_eq!(back.to_json(&bytes).unwrap(), value);
        assert_eq!(back.connect.name.as_deref(), Some("shop.Order"));
    }

    #[test]
    fn values_that_do_not_fit_name_the_field() {
        let (avro, _) = avro_schema(&Schema::parse(ORDER).unwrap()).unwrap();
        let w = AvroWriter::new(avro);
        let base = json!({"id": 7, "qty": 1, "total": "MDk=", "at": 1, "blob": "", "tags": []});
        assert!(w.write(&base).is_ok(), "absent optional fields are null");
        let mut bad = base.clone();
        bad["qty"] = json!(40000);
        assert!(w.write(&bad).unwrap_err().contains("field qty: expected an integer in"), "int16 range");
        let mut bad = base.clone();
        bad["customer"] = json!({"uid": 5});
        let e = w.write(&bad).unwrap_err();
        assert!(e.contains("field customer.uid: expected a string, got 5"), "{e}");
        let mut bad = base.clone();
        bad["surprise"] = json!(1);
        assert!(w.write(&bad).unwrap_err().contains("field surprise: the schema has no such field"));
        let mut bad = base;
        bad.as_object_mut().unwrap().remove("id");
        assert!(w.write(&bad).unwrap_err().contains("field id: expected a 64-bit integer, got null"));
    }

    #[test]
    fn inferred_schemas_name_unnamed_structs_and_reuse_equal_ones() {
        let inferred = schema(super::super::infer_schema(
            &json!({"a": {"x": 1}, "b": {"x": 2}, "c": {"y": "s"}, "n": null, "f": 1.5}),
            false,
        ));
        let (avro, record) = avro_schema(&inferred).unwrap();
        assert_eq!(record.as_deref(), Some("io.confluent.connect.avro.ConnectDefault"));
        let f = |n: &str| avro["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(f("a")["type"][1]["name"], "ConnectDefault2");
        assert_eq!(f("b")["type"][1], "io.confluent.connect.avro.ConnectDefault2", "an equal struct is a reference");
        assert_eq!(f("c")["type"][1]["name"], "ConnectDefault3");
        assert_eq!(f("n")["type"], json!(["null", "string"]));
        assert_eq!(f("f")["type"], json!(["null", "double"]));
        let v = json!({"a": {"x": 1}, "b": {"x": 2}, "c": {"y": "s"}, "n": null, "f": 1.5});
        let bytes = AvroWriter::new(avro.clone()).write(&v).unwrap();
        decode(&avro, &bytes);
        let bad = schema(json!({"type": "struct", "fields": [{"field": "a-b", "type": "int32"}]}));
        assert!(avro_schema(&bad).unwrap_err().contains("\"a-b\" is not a valid Avro field name"));
        assert_eq!(avro_schema(&schema(json!({"type": "int64"}))).unwrap(), (json!("long"), None));
    }

    #[test]
    fn writing_with_a_registered_schema_picks_union_branches_enums_and_fixed_decimals() {
        let registered = json!({"type": "record", "name": "R", "fields": [
            {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {"name": "u", "type": ["null", "long", "string"]},
            {"name": "d", "type": {"type": "fixed", "name": "D", "size": 4, "logicalType": "decimal",
                                   "precision": 8, "scale": 2}},
            {"name": "later", "type": "int", "default": 9}]});
        let w = AvroWriter::new(registered.clone());
        let bytes = w.write(&json!({"e": "GREEN", "u": "s", "d": -1.5})).unwrap();
        let Avro::Record(fields) = decode(&registered, &bytes) else { panic!("a record") };
        assert_eq!(fields[0].1, Avro::Enum(1, "GREEN".into()));
        assert_eq!(fields[1].1, Avro::Union(2, Box::new(Avro::String("s".into()))));
        assert_eq!(fields[2].1, Avro::Decimal(apache_avro::Decimal::from(vec![0xff, 0xff, 0xff, 0x6a])));
        assert_eq!(fields[3].1, Avro::Int(9), "an absent field takes its default");
        assert!(w.write(&json!({"e": "BLUE", "d": 1})).unwrap_err().contains("field e: expected one of the enum"));
        assert!(w.write(&json!({"e": "RED", "d": 1.234})).unwrap_err().contains("does not fit scale 2"));
    }

    #[test]
    fn json_schema_documents_and_payloads_follow_jsonschemadata() {
        let s = Schema::parse(ORDER).unwrap();
        let doc = json_schema(&s).unwrap();
        assert_eq!((doc["type"].clone(), doc["title"].clone()), (json!("object"), json!("shop.Order")));
        let p = &doc["properties"];
        assert_eq!(p["id"], json!({"type": "integer", "connect.type": "int64", "connect.index": 0}));
        assert_eq!(p["total"]["type"], "number");
        assert_eq!(p["total"]["connect.type"], "bytes");
        assert_eq!(p["total"]["title"], DECIMAL);
        assert_eq!(p["note"], json!({"oneOf": [{"type": "null"}, {"type": "string"}], "connect.index": 5}));
        assert_eq!(p["blob"], json!({"type": "string", "connect.type": "bytes", "connect.index": 6}));
        assert_eq!(p["attrs"]["oneOf"][1]["additionalProperties"]["connect.type"], "float64");
        assert_eq!(p["customer"]["oneOf"][1]["properties"]["uid"]["type"], "string");
        let payload = json_payload(
            &s,
            &json!({"id": 7, "qty": 1, "total": "/4U=", "at": 1, "blob": "AQ==",
                                               "tags": ["x"]}),
        )
        .unwrap();
        assert_eq!(payload["total"], json!(-1.23), "a Decimal as a number, as JsonSchemaData writes it");
        assert_eq!((payload["note"].clone(), payload["customer"].clone()), (Value::Null, Value::Null));
        // The sink side reads the document back to the same shapes.
        let back = super::super::json_schema::connect_schema(&doc).unwrap();
        assert!(back.field("note").unwrap().schema.optional);
        assert_eq!(back.field("qty").unwrap().schema.kind, SchemaType::Int16);
        let e = json_payload(&s, &json!({"id": "x"})).unwrap_err();
        assert!(e.contains("field id: expected an integer"), "{e}");
    }
}
