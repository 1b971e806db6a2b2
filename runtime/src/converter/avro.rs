//! Confluent's AvroConverter, sink side: an Avro schema becomes a Kafka
//! Connect schema, and an Avro datum the JSON Kafka Connect's JsonConverter
//! (schemas disabled) writes for the Connect value, as Confluent's `AvroData`
//! does it (docs/decisions/0030-avro-and-json-schema-converters.md has the
//! whole mapping). Decoding is apache-avro's; the walk over the schema JSON
//! is ours, since AvroData's names, optionality and union fields depend on
//! the schema as written (a `["null", T]` union is an optional T, any other
//! union a struct `io.confluent.connect.avro.Union` with one field per
//! member).

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value as Avro;
use base64::Engine;
use connector_api::schema::{Field, Schema, SchemaType, DATE, DECIMAL, TIME, TIMESTAMP};
use serde_json::{Map, Number, Value};

pub(super) const UNION: &str = "io.confluent.connect.avro.Union";
const ENUM: &str = "io.confluent.connect.avro.Enum";
pub(super) const RECORD_DOC: &str = "io.confluent.connect.avro.record.doc";
pub(super) const FIELD_DOC: &str = "io.confluent.connect.avro.field.doc.";
const ENUM_DOC: &str = "io.confluent.connect.avro.enum.doc.";
pub(super) const FIELD_DEFAULT: &str = "io.confluent.connect.avro.field.default";
pub(super) const PRECISION: &str = "connect.decimal.precision";
const DEFAULT_NAME: &str = "io.confluent.connect.avro.ConnectDefault";

/// A registered Avro schema, ready for records: apache-avro's parsed form
/// for decoding, the JSON for our walk, its named types, and the Connect
/// schema (computed once per schema id).
#[derive(Debug)]
pub struct AvroSchema {
    parsed: apache_avro::Schema,
    json: Value,
    names: HashMap<String, (Value, String)>,
    pub connect: Schema,
    /// The top-level record's full name (the subject under RecordNameStrategy).
    pub record_name: Option<String>,
}

impl AvroSchema {
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        let parsed = apache_avro::Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let mut names = HashMap::new();
        collect_names(&json, "", &mut names);
        let walk = Walk { names: &names };
        let connect = walk.schema(&json, "", false, None, &mut Vec::new())?;
        let record_name = match &json {
            Value::Object(o) if matches!(o.get("type").and_then(Value::as_str), Some("record" | "enum" | "fixed")) => {
                o.get("name").and_then(Value::as_str).map(|n| full_name(n, o.get("namespace"), ""))
            }
            _ => None,
        };
        Ok(AvroSchema { parsed, json, names, connect, record_name })
    }

    /// An Avro datum (the wire format's payload) → the JSON of its Connect value.
    pub fn to_json(&self, payload: &[u8]) -> Result<Value, String> {
        let mut reader = payload;
        let datum = apache_avro::from_avro_datum(&self.parsed, &mut reader, None)
            .map_err(|e| format!("the Avro payload does not match its schema: {e}"))?;
        if !reader.is_empty() {
            return Err(format!("{} bytes left after the Avro datum", reader.len()));
        }
        Walk { names: &self.names }.value(&datum, &self.json, "")
    }
}

pub(super) fn full_name(name: &str, namespace: Option<&Value>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    let ns = namespace.and_then(Value::as_str).unwrap_or(enclosing);
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

pub(super) fn namespace_of(full: &str) -> String {
    full.rsplit_once('.').map(|(ns, _)| ns.to_string()).unwrap_or_default()
}

/// Every named type (record, enum, fixed) by full name, with the namespace
/// its own references resolve in.
pub(super) fn collect_names(node: &Value, ns: &str, names: &mut HashMap<String, (Value, String)>) {
    match node {
        Value::Array(members) => members.iter().for_each(|m| collect_names(m, ns, names)),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut inner_ns = ns.to_string();
            if matches!(kind, "record" | "error" | "enum" | "fixed") {
                if let Some(name) = o.get("name").and_then(Value::as_str) {
                    let full = full_name(name, o.get("namespace"), ns);
                    inner_ns = namespace_of(&full);
                    names.insert(full, (node.clone(), inner_ns.clone()));
                }
            }
            if let Some(fields) = o.get("fields").and_then(Value::as_array) {
                for f in fields {
                    if let Some(t) = f.get("type") {
                        collect_names(t, &inner_ns, names);
                    }
                }
            }
            for k in ["items", "values"] {
                if let Some(t) = o.get(k) {
                    collect_names(t, &inner_ns, names);
                }
            }
            if let Some(t @ (Value::Object(_) | Value::Array(_))) = o.get("type") {
                collect_names(t, ns, names);
            }
        }
        _ => {}
    }
}

struct Walk<'a> {
    names: &'a HashMap<String, (Value, String)>,
}

pub(super) const PRIMITIVES: &[&str] = &["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

impl Walk<'_> {
    /// A node with references resolved: (the definition, its namespace).
    fn resolve<'n>(&'n self, node: &'n Value, ns: &str) -> Result<(&'n Value, String), String> {
        match node {
            Value::String(s) if !PRIMITIVES.contains(&s.as_str()) => {
                let candidates = [full_name(s, None, ns), s.clone()];
                candidates
                    .iter()
                    .find_map(|n| self.names.get(n))
                    .map(|(def, def_ns)| (def, def_ns.clone()))
                    .ok_or_else(|| format!("the Avro schema refers to an unknown type {s}"))
            }
            Value::Object(o) => match o.get("type") {
                // {"type": "int"} or {"type": {…}}: the same as its type,
                // unless it carries a logical type or is itself named.
                Some(t @ (Value::Array(_) | Value::Object(_))) => self.resolve(t, ns),
                Some(Value::String(s))
                    if !matches!(s.as_str(), "record" | "error" | "enum" | "fixed" | "array" | "map")
                        && !PRIMITIVES.contains(&s.as_str()) =>
                {
                    self.resolve(&o["type"], ns)
                }
                _ => Ok((node, ns.to_string())),
            },
            _ => Ok((node, ns.to_string())),
        }
    }

    fn kind(node: &Value) -> &str {
        match node {
            Value::String(s) => s,
            Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or_default(),
            Value::Array(_) => "union",
            _ => "",
        }
    }

    fn prop<'n>(node: &'n Value, key: &str) -> Option<&'n Value> {
        node.as_object().and_then(|o| o.get(key))
    }

    /// AvroData's `toConnectSchema`: `optional` for a member of a union
    /// with null, `default` the record field's Avro default.
    fn schema(
        &self,
        node: &Value,
        ns: &str,
        optional: bool,
        default: Option<&Value>,
        stack: &mut Vec<String>,
    ) -> Result<Schema, String> {
        let (node, ns) = self.resolve(node, ns)?;
        let kind = Self::kind(node);
        let logical = Self::prop(node, "logicalType").and_then(Value::as_str).unwrap_or_default();
        let mut s = match kind {
            "boolean" => Schema::of(SchemaType::Boolean),
            "bytes" | "fixed" if logical.eq_ignore_ascii_case("decimal") => Self::decimal(node),
            "bytes" | "fixed" => Schema::of(SchemaType::Bytes),
            "double" => Schema::of(SchemaType::Double),
            "float" => Schema::of(SchemaType::Float),
            "int" => match (logical, Self::prop(node, "connect.type").and_then(Value::as_str)) {
                ("date", _) => named(SchemaType::Int32, DATE),
                ("time-millis", _) => named(SchemaType::Int32, TIME),
                (_, Some("int8")) => Schema::of(SchemaType::Int8),
                (_, Some("int16")) => Schema::of(SchemaType::Int16),
                _ => Schema::of(SchemaType::Int32),
            },
            "long" if logical == "timestamp-millis" => named(SchemaType::Int64, TIMESTAMP),
            "long" => Schema::of(SchemaType::Int64),
            "string" => Schema::of(SchemaType::String),
            "array" => {
                let items = node.get("items").ok_or("an Avro array without \"items\"")?;
                let mut s = Schema::of(SchemaType::Array);
                s.items = Some(Box::new(self.schema(items, &ns, false, None, stack)?));
                s
            }
            "map" => {
                let values = node.get("values").ok_or("an Avro map without \"values\"")?;
                let mut s = Schema::of(SchemaType::Map);
                s.keys = Some(Box::new(Schema::of(SchemaType::String)));
                s.values = Some(Box::new(self.schema(values, &ns, false, None, stack)?));
                s
            }
            "record" | "error" => self.record(node, &ns, stack)?,
            "enum" => Self::enumeration(node, &ns),
            "union" => return self.union(node, &ns, stack),
            "null" => return Err("a standalone Avro null schema has no Kafka Connect equivalent".into()),
            other => return Err(format!("unsupported Avro type {other:?}")),
        };
        Self::connect_metadata(node, &mut s);
        if let Some(d) = default.filter(|d| !d.is_null()) {
            s.parameters.insert(FIELD_DEFAULT.into(), "true".into());
            s.default = simple_default(&s, d);
        }
        s.optional = optional;
        Ok(s)
    }

    /// Connect's Decimal from Avro's `decimal` logical type (precision 64,
    /// AvroData's default, is left implicit).
    fn decimal(node: &Value) -> Schema {
        let scale = Self::prop(node, "scale").and_then(Value::as_i64).unwrap_or(0);
        let mut s = Schema::of(SchemaType::Bytes);
        s.name = Some(DECIMAL.into());
        s.version = Some(1);
        s.parameters.insert("scale".into(), scale.to_string());
        if let Some(p) = Self::prop(node, "precision").and_then(Value::as_i64) {
            if p != 64 {
                s.parameters.insert(PRECISION.into(), p.to_string());
            }
        }
        s
    }

    fn record(&self, node: &Value, ns: &str, stack: &mut Vec<String>) -> Result<Schema, String> {
        let name = full_name(node["name"].as_str().unwrap_or_default(), node.get("namespace"), ns);
        if stack.contains(&name) {
            return Err(format!("the Avro record {name} contains itself; recursive schemas are not supported"));
        }
        stack.push(name.clone());
        let mut s = Schema::of(SchemaType::Struct);
        if let Some(doc) = node.get("doc").and_then(Value::as_str) {
            s.parameters.insert(RECORD_DOC.into(), doc.into());
        }
        for f in node.get("fields").and_then(Value::as_array).into_iter().flatten() {
            let fname = f["name"].as_str().unwrap_or_default().to_string();
            if let Some(doc) = f.get("doc").and_then(Value::as_str) {
                s.parameters.insert(format!("{FIELD_DOC}{fname}"), doc.into());
            }
            let schema = self.schema(&f["type"], &namespace_of(&name), false, f.get("default"), stack)?;
            s.fields.push(Field { name: fname, schema });
        }
        stack.pop();
        s.name = Some(name);
        Ok(s)
    }

    /// An Avro enum as AvroData maps it: a string with the symbols (and the
    /// enum's doc and default) in its parameters.
    fn enumeration(node: &Value, ns: &str) -> Schema {
        let name = full_name(node["name"].as_str().unwrap_or_default(), node.get("namespace"), ns);
        let short = name.rsplit('.').next().unwrap_or(&name).to_string();
        let mut s = Schema::of(SchemaType::String);
        if let Some(doc) = node.get("doc").and_then(Value::as_str) {
            s.parameters.insert(format!("{ENUM_DOC}{short}"), doc.into());
        }
        if let Some(d) = node.get("default").and_then(Value::as_str) {
            s.parameters.insert(format!("io.confluent.connect.avro.enum.default.{short}"), d.into());
        }
        s.parameters.insert(ENUM.into(), name.clone());
        for sym in node.get("symbols").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            s.parameters.insert(format!("{ENUM}.{sym}"), sym.into());
        }
        s.name = Some(name);
        s
    }

    /// A union with null is its other member, optional; any other union is
    /// Connect's union struct, one field per member.
    fn union(&self, node: &Value, ns: &str, stack: &mut Vec<String>) -> Result<Schema, String> {
        let members = node.as_array().map(Vec::as_slice).unwrap_or_default();
        if let Some(other) = nullable(members) {
            return self.schema(other, ns, true, None, stack);
        }
        let mut s = Schema::of(SchemaType::Struct);
        s.name = Some(UNION.into());
        for m in members {
            let (def, _) = self.resolve(m, ns)?;
            if Self::kind(def) == "null" {
                s.optional = true;
                continue;
            }
            let field = self.member_field(m, ns)?;
            if s.field(&field).is_some() {
                return Err(format!("two members of an Avro union map to the Connect field {field}"));
            }
            s.fields.push(Field { name: field, schema: self.schema(m, ns, true, None, stack)? });
        }
        Ok(s)
    }

    /// The Connect metadata AvroData keeps in the Avro schema.
    fn connect_metadata(node: &Value, s: &mut Schema) {
        if let Some(v) = Self::prop(node, "connect.version").and_then(Value::as_i64) {
            s.version = Some(v as i32);
        }
        if let Some(d) = Self::prop(node, "connect.doc").and_then(Value::as_str) {
            s.doc = Some(d.into());
        }
        if let Some(Value::Object(params)) = Self::prop(node, "connect.parameters") {
            for (k, v) in params {
                if let Some(v) = v.as_str() {
                    s.parameters.insert(k.clone(), v.into());
                }
            }
        }
        if let Some(name) = Self::prop(node, "connect.name").and_then(Value::as_str) {
            s.name = Some(name.into());
        }
        if s.name.as_deref() == Some(DEFAULT_NAME) {
            s.name = None;
        }
    }

    /// AvroData's `unionMemberFieldName`: a record's or enum's short name,
    /// else the Avro type's name (`fixed` included).
    fn member_field(&self, member: &Value, ns: &str) -> Result<String, String> {
        let (def, def_ns) = self.resolve(member, ns)?;
        Ok(match Self::kind(def) {
            "record" | "error" | "enum" => {
                let full = full_name(def["name"].as_str().unwrap_or_default(), def.get("namespace"), &def_ns);
                full.rsplit('.').next().unwrap_or(&full).to_string()
            }
            k => k.to_string(),
        })
    }

    /// AvroData's `toConnectData` followed by JsonConverter's
    /// `convertToJson` with schemas disabled.
    fn value(&self, v: &Avro, node: &Value, ns: &str) -> Result<Value, String> {
        let (node, ns) = self.resolve(node, ns)?;
        if let (Avro::Union(i, inner), Value::Array(members)) = (v, node) {
            let chosen = members.get(*i as usize).ok_or("a union branch outside its schema")?;
            if matches!(**inner, Avro::Null) {
                return Ok(Value::Null);
            }
            if nullable(members).is_some() {
                return self.value(inner, chosen, &ns);
            }
            let mut out = Map::new();
            for (j, m) in members.iter().enumerate() {
                let (def, _) = self.resolve(m, &ns)?;
                if Self::kind(def) == "null" {
                    continue;
                }
                let field = self.member_field(m, &ns)?;
                let value = if j == *i as usize { self.value(inner, m, &ns)? } else { Value::Null };
                out.insert(field, value);
            }
            return Ok(Value::Object(out));
        }
        let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
        Ok(match v {
            Avro::Null => Value::Null,
            Avro::Boolean(b) => Value::Bool(*b),
            Avro::Int(n) | Avro::Date(n) | Avro::TimeMillis(n) => Value::from(*n),
            Avro::Long(n)
            | Avro::TimeMicros(n)
            | Avro::TimestampMillis(n)
            | Avro::TimestampMicros(n)
            | Avro::TimestampNanos(n)
            | Avro::LocalTimestampMillis(n)
            | Avro::LocalTimestampMicros(n)
            | Avro::LocalTimestampNanos(n) => Value::from(*n),
            // Java writes a float by its shortest decimal form, not the
            // double it widens to.
            Avro::Float(f) => float(f.to_string().parse::<f64>().unwrap_or(f64::from(*f)))?,
            Avro::Double(f) => float(*f)?,
            Avro::Bytes(b) | Avro::Fixed(_, b) => b64(b),
            Avro::String(s) => Value::String(s.clone()),
            Avro::Uuid(u) => Value::String(u.to_string()),
            Avro::Enum(_, sym) => Value::String(sym.clone()),
            Avro::Decimal(d) => {
                let bytes = <Vec<u8>>::try_from(d).map_err(|e| format!("a bad Avro decimal: {e}"))?;
                b64(&minimal_twos_complement(&bytes))
            }
            Avro::Duration(d) => b64(&<[u8; 12]>::from(*d)),
            Avro::BigDecimal(_) => {
                return Err("the Avro big-decimal logical type has no Kafka Connect equivalent".into())
            }
            Avro::Array(items) => {
                let item = node.get("items").ok_or("an Avro array without \"items\"")?;
                Value::Array(items.iter().map(|x| self.value(x, item, &ns)).collect::<Result<_, _>>()?)
            }
            Avro::Map(entries) => {
                let values = node.get("values").ok_or("an Avro map without \"values\"")?;
                let sorted: BTreeMap<&String, &Avro> = entries.iter().collect();
                let mut out = Map::new();
                for (k, x) in sorted {
                    out.insert(k.clone(), self.value(x, values, &ns)?);
                }
                Value::Object(out)
            }
            Avro::Record(fields) => {
                let defs = node.get("fields").and_then(Value::as_array).ok_or("an Avro record without \"fields\"")?;
                let inner_ns =
                    namespace_of(&full_name(node["name"].as_str().unwrap_or_default(), node.get("namespace"), &ns));
                let mut out = Map::new();
                for ((name, x), def) in fields.iter().zip(defs) {
                    out.insert(name.clone(), self.value(x, &def["type"], &inner_ns)?);
                }
                Value::Object(out)
            }
            Avro::Union(_, inner) => self.value(inner, node, &ns)?,
        })
    }
}

fn named(kind: SchemaType, name: &str) -> Schema {
    let mut s = Schema::of(kind);
    s.name = Some(name.into());
    s.version = Some(1);
    s
}

/// The non-null member of a two-member union with null.
fn nullable(members: &[Value]) -> Option<&Value> {
    match members {
        [a, b] if a == "null" && b != "null" => Some(b),
        [a, b] if b == "null" && a != "null" => Some(a),
        _ => None,
    }
}

/// A field default Connect's JSON schema can carry as it is: a primitive
/// of a schema without a logical type (others are left out; the flag
/// parameter still says the field had one).
fn simple_default(s: &Schema, d: &Value) -> Option<Value> {
    if s.name.is_some() && !s.parameters.contains_key(ENUM) {
        return None;
    }
    match (s.kind, d) {
        (SchemaType::Boolean, Value::Bool(_)) | (SchemaType::String, Value::String(_)) => Some(d.clone()),
        (SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64, Value::Number(n))
            if n.is_i64() =>
        {
            Some(d.clone())
        }
        (SchemaType::Float | SchemaType::Double, Value::Number(_)) => Some(d.clone()),
        _ => None,
    }
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("{f} has no JSON form"))
}

/// Java's `BigInteger.toByteArray`: the shortest big-endian two's
/// complement (a fixed decimal's padding dropped), as JsonConverter's
/// base64 decimal carries it.
pub fn minimal_twos_complement(bytes: &[u8]) -> Vec<u8> {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    if bytes.is_empty() {
        vec![0]
    } else {
        bytes[start..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::{to_avro_datum, types::Record};
    use serde_json::json;

    use super::*;

    fn connect(schema: &str) -> Value {
        serde_json::from_str(&AvroSchema::parse(schema).unwrap().connect.to_json()).unwrap()
    }

    #[test]
    fn twos_complement_is_minimal_like_java() {
        assert_eq!(minimal_twos_complement(&[0, 0, 0x30, 0x39]), [0x30, 0x39]);
        assert_eq!(minimal_twos_complement(&[0, 0x80]), [0, 0x80]);
        assert_eq!(minimal_twos_complement(&[0xff, 0xff, 0x85]), [0x85]);
        assert_eq!(minimal_twos_complement(&[0xff, 0x7f]), [0xff, 0x7f]);
        assert_eq!(minimal_twos_complement(&[0, 0, 0]), [0]);
        assert_eq!(minimal_twos_complement(&[]), [0]);
    }

    #[test]
    fn logical_types_become_connect_logical_types() {
        let s = connect(
            r#"{"type":"record","name":"R","namespace":"shop","doc":"an order","fields":[
              {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
              {"name":"big","type":{"type":"fixed","name":"F","size":16,"logicalType":"decimal","precision":64,"scale":0}},
              {"name":"day","type":{"type":"int","logicalType":"date"}},
              {"name":"at","type":{"type":"int","logicalType":"time-millis"}},
              {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
              {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
              {"name":"id","type":{"type":"string","logicalType":"uuid"}},
              {"name":"n","type":"int","default":7,"doc":"count"}]}"#,
        );
        assert_eq!(s["name"], "shop.R");
        assert_eq!(s["parameters"][RECORD_DOC], "an order");
        assert_eq!(s["parameters"]["io.confluent.connect.avro.field.doc.n"], "count");
        let f = |name: &str| s["fields"].as_array().unwrap().iter().find(|f| f["field"] == name).unwrap().clone();
        assert_eq!(
            f("price"),
            json!({"field":"price","type":"bytes","optional":false,"name":DECIMAL,"version":1,
                   "parameters":{"scale":"2","connect.decimal.precision":"10"}})
        );
        assert_eq!(f("big")["parameters"], json!({"scale":"0"}), "precision 64 is AvroData's default");
        assert_eq!((f("day")["type"].clone(), f("day")["name"].clone()), (json!("int32"), json!(DATE)));
        assert_eq!(f("at")["name"], TIME);
        assert_eq!(f("ts")["name"], TIMESTAMP);
        assert_eq!((f("us")["type"].clone(), f("us").get("name").cloned()), (json!("int64"), None));
        assert_eq!(f("id")["type"], "string");
        assert_eq!(f("n")["default"], 7);
        assert_eq!(f("n")["parameters"][FIELD_DEFAULT], "true");
    }

    #[test]
    fn unions_enums_maps_and_references() {
        let text = r#"{"type":"record","name":"R","namespace":"a","fields":[
              {"name":"maybe","type":["null","string"],"default":null},
              {"name":"opt_either","type":["null","long","boolean"]},
              {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
              {"name":"attrs","type":{"type":"map","values":"double"}},
              {"name":"blob","type":"bytes"},
              {"name":"tags","type":{"type":"array","items":"string"}},
              {"name":"first","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"float"}]}},
              {"name":"second","type":"a.Inner"},
              {"name":"either","type":["int","string","Inner"]}]}"#;
        let schema = AvroSchema::parse(text).unwrap();
        let s: Value = serde_json::from_str(&schema.connect.to_json()).unwrap();
        let f = |name: &str| s["fields"].as_array().unwrap().iter().find(|f| f["field"] == name).unwrap().clone();
        assert_eq!(f("maybe"), json!({"field":"maybe","type":"string","optional":true}));
        let either = f("either");
        assert_eq!((either["name"].clone(), either["optional"].clone()), (json!(UNION), json!(false)));
        let names: Vec<&str> =
            either["fields"].as_array().unwrap().iter().map(|x| x["field"].as_str().unwrap()).collect();
        assert_eq!(names, ["int", "string", "Inner"]);
        assert_eq!(f("opt_either")["optional"], true);
        assert_eq!(f("color")["parameters"][ENUM], "a.Color");
        assert_eq!(f("color")["parameters"]["io.confluent.connect.avro.Enum.GREEN"], "GREEN");
        assert_eq!(
            (f("attrs")["keys"]["type"].clone(), f("attrs")["values"]["type"].clone()),
            (json!("string"), json!("double"))
        );
        assert_eq!(f("second")["name"], "a.Inner");
        assert_eq!(schema.record_name.as_deref(), Some("a.R"));

        let parsed = apache_avro::Schema::parse_str(text).unwrap();
        let mut r = Record::new(&parsed).unwrap();
        r.put("maybe", Avro::Union(1, Box::new(Avro::String("m".into()))));
        r.put("either", Avro::Union(1, Box::new(Avro::String("s".into()))));
        r.put("opt_either", Avro::Union(0, Box::new(Avro::Null)));
        r.put("color", Avro::Enum(1, "GREEN".into()));
        r.put("attrs", Avro::Map([("k".to_string(), Avro::Double(0.5))].into()));
        r.put("blob", Avro::Bytes(vec![1, 2, 255]));
        r.put("tags", Avro::Array(vec![Avro::String("t".into())]));
        r.put("first", Avro::Record(vec![("x".into(), Avro::Float(0.1))]));
        r.put("second", Avro::Record(vec![("x".into(), Avro::Float(2.5))]));
        let bytes = to_avro_datum(&parsed, r).unwrap();
        assert_eq!(
            schema.to_json(&bytes).unwrap(),
            json!({"maybe":"m","either":{"int":null,"string":"s","Inner":null},"opt_either":null,"color":"GREEN",
                   "attrs":{"k":0.5},"blob":"AQL/","tags":["t"],"first":{"x":0.1},"second":{"x":2.5}})
        );
        let e = schema.to_json(&bytes[..3]).unwrap_err();
        assert!(e.contains("does not match its schema"), "{e}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(schema.to_json(&longer).unwrap_err().contains("1 bytes left"));
    }

    #[test]
    fn refuses_what_connect_cannot_hold() {
        assert!(AvroSchema::parse(r#""null""#).unwrap_err().contains("standalone Avro null"));
        assert!(AvroSchema::parse("{").unwrap_err().contains("not a valid Avro schema"));
        let recursive = r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#;
        assert!(AvroSchema::parse(recursive).unwrap_err().contains("recursive"));
        let s = AvroSchema::parse(r#"{"type":"long","connect.name":"x.Y","connect.version":3}"#).unwrap();
        assert_eq!((s.connect.name.as_deref(), s.connect.version, s.record_name), (Some("x.Y"), Some(3), None));
    }
}
