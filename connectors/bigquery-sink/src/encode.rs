//! Rows → protobuf bytes for the Storage Write API, and the
//! `DescriptorProto` that describes them, both from the table's schema.
//!
//! Each column is field `i + 1` of a proto2 message named `Row` (nested
//! RECORDs become nested message types inside it, so the descriptor is
//! self-contained as the API asks). Types follow Google's documented
//! conversions: INTEGER int64, FLOAT double, BOOLEAN bool, TIMESTAMP int64
//! microseconds, DATE int32 days, RECORD a message, everything else
//! (STRING, NUMERIC, BIGNUMERIC, TIME, DATETIME, JSON) a string, BYTES
//! bytes. Every column is an optional (or repeated) proto field: BigQuery
//! checks REQUIRED itself, and so does [`RowEncoder::encode`], so that a
//! missing required field is that record's error, not the batch's.
//!
//! A value that cannot become its column's type, an unknown field or a
//! missing required one is an error naming the field's path: the record
//! goes to the DLQ. The verdict depends only on the record and the schema,
//! which the exactly-once bookkeeping relies on (crate README).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost_types::{field_descriptor_proto::Label, field_descriptor_proto::Type, DescriptorProto, FieldDescriptorProto};
use serde_json::{Map, Value};

use crate::schema::{FieldMode, FieldType, TableField, TableSchema};

/// Encodes rows of one table schema.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    fields: Vec<TableField>,
    descriptor: DescriptorProto,
}

impl RowEncoder {
    pub fn new(schema: &TableSchema) -> Self {
        RowEncoder { fields: schema.fields.clone(), descriptor: descriptor("Row", &schema.fields) }
    }

    pub fn descriptor(&self) -> &DescriptorProto {
        &self.descriptor
    }

    /// The table schema it encodes for.
    pub fn schema(&self) -> TableSchema {
        TableSchema { fields: self.fields.clone() }
    }

    /// One row's protobuf bytes, or why not (naming the field's path).
    pub fn encode(&self, row: &Map<String, Value>) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64);
        encode_message(&self.fields, row, "", &mut out)?;
        Ok(out)
    }
}

fn proto_type(t: FieldType) -> Type {
    match t {
        FieldType::Integer | FieldType::Timestamp => Type::Int64,
        FieldType::Float => Type::Double,
        FieldType::Boolean => Type::Bool,
        FieldType::Date => Type::Int32,
        FieldType::Bytes => Type::Bytes,
        FieldType::Record => Type::Message,
        FieldType::String
        | FieldType::Numeric
        | FieldType::BigNumeric
        | FieldType::Time
        | FieldType::DateTime
        | FieldType::Json => Type::String,
    }
}

fn nested_name(field: &str) -> String {
    format!("Record_{field}")
}

fn descriptor(name: &str, fields: &[TableField]) -> DescriptorProto {
    let mut d = DescriptorProto { name: Some(name.to_string()), ..Default::default() };
    for (i, f) in fields.iter().enumerate() {
        let t = proto_type(f.field_type);
        let label = if f.mode == FieldMode::Repeated { Label::Repeated } else { Label::Optional };
        let mut fd = FieldDescriptorProto {
            name: Some(f.name.clone()),
            number: Some(i as i32 + 1),
            label: Some(label as i32),
            r#type: Some(t as i32),
            ..Default::default()
        };
        if t == Type::Message {
            let nested = nested_name(&f.name);
            // Relative to the enclosing message: resolvable without a file.
            fd.type_name = Some(nested.clone());
            d.nested_type.push(descriptor(&nested, &f.fields));
        }
        d.field.push(fd);
    }
    d
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn encode_message(
    fields: &[TableField],
    row: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    for name in row.keys() {
        if !fields.iter().any(|f| &f.name == name) {
            return Err(format!("no such field: {}", path(prefix, name)));
        }
    }
    for (i, f) in fields.iter().enumerate() {
        let tag = i as u32 + 1;
        let p = path(prefix, &f.name);
        match (row.get(&f.name), f.mode) {
            (None | Some(Value::Null), FieldMode::Required) => return Err(format!("missing required field: {p}")),
            (None | Some(Value::Null), _) => {}
            (Some(Value::Array(items)), FieldMode::Repeated) => {
                for (j, item) in items.iter().enumerate() {
                    if item.is_null() {
                        return Err(format!("invalid: {p}[{j}] is null; a repeated field cannot hold nulls"));
                    }
                    encode_value(f, tag, item, &format!("{p}[{j}]"), out)?;
                }
            }
            (Some(_), FieldMode::Repeated) => {
                return Err(format!("invalid: {p} is a repeated field and needs an array"))
            }
            (Some(v), _) => encode_value(f, tag, v, &p, out)?,
        }
    }
    Ok(())
}

fn encode_value(f: &TableField, tag: u32, v: &Value, p: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = |what: &str| format!("invalid: {p}: cannot convert {} to {what}", excerpt(v));
    match f.field_type {
        FieldType::Integer => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| bad("INTEGER"))?;
            encode_key(tag, WireType::Varint, out);
            encode_varint(n as u64, out);
        }
        FieldType::Float => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(|| bad("FLOAT"))?;
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&n.to_le_bytes());
        }
        FieldType::Boolean => {
            let b = match v {
                Value::Bool(b) => Some(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            }
            .ok_or_else(|| bad("BOOLEAN"))?;
            encode_key(tag, WireType::Varint, out);
            encode_varint(b as u64, out);
        }
        FieldType::Timestamp => {
            let micros = match v {
                // Microseconds since the epoch, as Confluent's V2 connector reads them.
                Value::Number(n) => n.as_i64(),
                Value::String(s) => timestamp_micros(s),
                _ => None,
            }
            .ok_or_else(|| bad("TIMESTAMP (RFC 3339 text or microseconds since the epoch)"))?;
            encode_key(tag, WireType::Varint, out);
            encode_varint(micros as u64, out);
        }
        FieldType::Date => {
            let days = match v {
                Value::Number(n) => n.as_i64().and_then(|d| i32::try_from(d).ok()),
                Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .map(|d| (d - NaiveDate::default()).num_days() as i32),
                _ => None,
            }
            .ok_or_else(|| bad("DATE (YYYY-MM-DD or days since the epoch)"))?;
            encode_key(tag, WireType::Varint, out);
            // int32 on the wire: negative values sign-extended to 64 bits.
            encode_varint(days as i64 as u64, out);
        }
        FieldType::Record => {
            let Value::Object(inner) = v else { return Err(bad("RECORD (an object)")) };
            let mut buf = Vec::with_capacity(32);
            encode_message(&f.fields, inner, p, &mut buf)?;
            encode_bytes(tag, &buf, out);
        }
        FieldType::Bytes => {
            let Value::String(s) = v else { return Err(bad("BYTES (base64 text)")) };
            let bytes = base64_decode(s).ok_or_else(|| bad("BYTES (base64 text)"))?;
            encode_bytes(tag, &bytes, out);
        }
        FieldType::Json => match v {
            Value::String(s) => encode_bytes(tag, s.as_bytes(), out),
            other => encode_bytes(tag, other.to_string().as_bytes(), out),
        },
        FieldType::String | FieldType::Numeric | FieldType::BigNumeric | FieldType::Time | FieldType::DateTime => {
            match v {
                Value::String(s) => encode_bytes(tag, s.as_bytes(), out),
                Value::Number(n) => encode_bytes(tag, n.to_string().as_bytes(), out),
                Value::Bool(b) if f.field_type == FieldType::String => encode_bytes(tag, b.to_string().as_bytes(), out),
                _ => return Err(bad(&format!("{:?}", f.field_type).to_uppercase())),
            }
        }
    }
    Ok(())
}

fn encode_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// RFC 3339, or BigQuery's canonical `YYYY-MM-DD HH:MM:SS[.f]` (UTC).
pub fn timestamp_micros(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let t = s.strip_suffix(" UTC").unwrap_or(s);
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(t, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

fn excerpt(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use serde_json::json;

    fn field(name: &str, t: FieldType, mode: FieldMode) -> TableField {
        TableField { name: name.into(), field_type: t, mode, fields: vec![] }
    }

    fn schema() -> TableSchema {
        let mut address = field("address", FieldType::Record, FieldMode::Nullable);
        address.fields = vec![field("city", FieldType::String, FieldMode::Nullable)];
        TableSchema {
            fields: vec![
                field("id", FieldType::Integer, FieldMode::Required),
                field("amount", FieldType::Float, FieldMode::Nullable),
                field("paid", FieldType::Boolean, FieldMode::Nullable),
                field("tags", FieldType::String, FieldMode::Repeated),
                address,
                field("created", FieldType::Timestamp, FieldMode::Nullable),
                field("day", FieldType::Date, FieldMode::Nullable),
            ],
        }
    }

    /// The same row as prost's own encoding of an equivalent message.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Address {
        #[prost(string, optional, tag = "1")]
        city: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Row {
        #[prost(int64, optional, tag = "1")]
        id: Option<i64>,
        #[prost(double, optional, tag = "2")]
        amount: Option<f64>,
        #[prost(bool, optional, tag = "3")]
        paid: Option<bool>,
        #[prost(string, repeated, tag = "4")]
        tags: Vec<String>,
        #[prost(message, optional, tag = "5")]
        address: Option<Address>,
        #[prost(int64, optional, tag = "6")]
        created: Option<i64>,
        #[prost(int32, optional, tag = "7")]
        day: Option<i32>,
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn rows_decode_as_the_descriptor_says() {
        let e = RowEncoder::new(&schema());
        let bytes = e
            .encode(&obj(json!({"id": 7, "amount": "12.5", "paid": true, "tags": ["a", "b"],
                "address": {"city": "Berlin"}, "created": "2024-05-01T10:00:00.5Z", "day": "1969-12-31"})))
            .unwrap();
        let row = Row::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            row,
            Row {
                id: Some(7),
                amount: Some(12.5),
                paid: Some(true),
                tags: vec!["a".into(), "b".into()],
                address: Some(Address { city: Some("Berlin".into()) }),
                created: Some(1_714_557_600_500_000),
                day: Some(-1),
            }
        );
        let d = e.descriptor();
        assert_eq!(d.field.len(), 7);
        assert_eq!(d.field[3].label, Some(Label::Repeated as i32));
        assert_eq!(d.field[4].type_name.as_deref(), Some("Record_address"));
        assert_eq!(d.nested_type[0].name.as_deref(), Some("Record_address"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = RowEncoder::new(&schema());
        let err = |v: Value| e.encode(&obj(v)).unwrap_err();
        assert_eq!(err(json!({"amount": 1})), "missing required field: id");
        assert!(err(json!({"id": "x"})).starts_with("invalid: id: cannot convert \"x\" to INTEGER"));
        assert_eq!(err(json!({"id": 1, "colour": "red"})), "no such field: colour");
        assert_eq!(err(json!({"id": 1, "address": {"zip": 1}})), "no such field: address.zip");
        assert!(err(json!({"id": 1, "tags": "a"})).contains("tags is a repeated field"));
        assert!(err(json!({"id": 1, "created": "yesterday"})).contains("created"));
        // Nulls and absent nullable fields are simply left out.
        let bytes = e.encode(&obj(json!({"id": 1, "amount": null}))).unwrap();
        assert_eq!(Row::decode(bytes.as_slice()).unwrap(), Row { id: Some(1), ..Row::default() });
    }

    #[test]
    fn timestamps_and_base64() {
        assert_eq!(timestamp_micros("1970-01-01 00:00:01.25 UTC"), Some(1_250_000));
        assert_eq!(timestamp_micros("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a"), None);
    }
}
