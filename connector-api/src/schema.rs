//! Kafka Connect's schema model, as a sink sees a record's key or value
//! schema.
//!
//! A schema crosses the plugin boundary as the JSON text Kafka Connect's
//! `JsonConverter` writes in its `{"schema": …, "payload": …}` envelope
//! (`type`, `optional`, `default`, `name`, `version`, `doc`, `parameters`,
//! `fields` of a struct, `items` of an array, `keys`/`values` of a map), so
//! the ABI carries one borrowed string and every plugin parses it with this
//! module. Logical types are named schemas over a primitive, as in Kafka
//! Connect: [`Logical::Decimal`] (bytes, `scale` parameter), [`Logical::Date`]
//! (int32 days), [`Logical::Time`] (int32 ms of the day),
//! [`Logical::Timestamp`] (int64 ms since the epoch).
//!
//! A sink that sees the same schema on every record parses it once: cache
//! the parsed value by the text ([`SinkRecord::value_schema_json`]).
//!
//! [`SinkRecord::value_schema_json`]: crate::SinkRecord::value_schema_json

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Kafka Connect's schema types (`Schema.Type`), with its JSON spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float,
    Double,
    Boolean,
    String,
    Bytes,
    Array,
    Map,
    Struct,
}

/// A Connect schema. Fields absent from the JSON take Kafka Connect's
/// defaults (`optional: false`, no name, no parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    #[serde(rename = "type")]
    pub kind: SchemaType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// A struct's fields, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// An array's element schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Schema>>,
    /// A map's key schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Box<Schema>>,
    /// A map's value schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Box<Schema>>,
}

/// A struct field: its name and schema (JsonConverter writes them flat, the
/// name under `field`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    #[serde(rename = "field")]
    pub name: String,
    #[serde(flatten)]
    pub schema: Schema,
}

/// Kafka Connect's built-in logical types, by schema name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    /// `org.apache.kafka.connect.data.Decimal`: big-endian two's-complement
    /// unscaled bytes (base64 in JSON), `scale` digits after the point.
    Decimal { scale: i32 },
    /// `org.apache.kafka.connect.data.Date`: days since the epoch (int32).
    Date,
    /// `org.apache.kafka.connect.data.Time`: milliseconds of the day (int32).
    Time,
    /// `org.apache.kafka.connect.data.Timestamp`: milliseconds since the epoch (int64).
    Timestamp,
}

pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
pub const DATE: &str = "org.apache.kafka.connect.data.Date";
pub const TIME: &str = "org.apache.kafka.connect.data.Time";
pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";

impl Schema {
    /// Parses the JSON form; the error says what is wrong with it.
    pub fn parse(json: &str) -> Result<Schema, String> {
        serde_json::from_str(json).map_err(|e| format!("not a Kafka Connect schema: {e}"))
    }

    /// A schema of `kind`, required, with nothing else set.
    pub fn of(kind: SchemaType) -> Schema {
        Schema {
            kind,
            optional: false,
            default: None,
            name: None,
            version: None,
            doc: None,
            parameters: BTreeMap::new(),
            fields: Vec::new(),
            items: None,
            keys: None,
            values: None,
        }
    }

    /// The logical type this schema names, if it is one of Kafka Connect's
    /// (a Decimal without a parseable `scale` is not taken for one).
    pub fn logical(&self) -> Option<Logical> {
        match self.name.as_deref()? {
            DECIMAL => self.parameters.get("scale")?.trim().parse().ok().map(|scale| Logical::Decimal { scale }),
            DATE => Some(Logical::Date),
            TIME => Some(Logical::Time),
            TIMESTAMP => Some(Logical::Timestamp),
            _ => None,
        }
    }

    /// A struct's field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The JSON form, as JsonConverter writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"struct","name":"shop.Order","version":3,"optional":false,"fields":[
        {"field":"code","type":"string","optional":false},
        {"field":"total","type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal",
         "version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"}},
        {"field":"placed","type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp"},
        {"field":"customer","type":"struct","optional":true,"fields":[
            {"field":"uid","type":"string","optional":false}]},
        {"field":"lines","type":"array","optional":false,"items":{"type":"int32","optional":false}},
        {"field":"attrs","type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"double"}}
    ]}"#;

    #[test]
    fn parses_jsonconverter_schemas_with_logical_types_and_nesting() {
        let s = Schema::parse(ORDER).unwrap();
        assert_eq!((s.kind, s.name.as_deref(), s.version), (SchemaType::Struct, Some("shop.Order"), Some(3)));
        let logical: Vec<(&str, Option<Logical>)> =
            s.fields.iter().map(|f| (f.name.as_str(), f.schema.logical())).collect();
        assert_eq!(
            logical,
            [
                ("code", None),
                ("total", Some(Logical::Decimal { scale: 2 })),
                ("placed", Some(Logical::Timestamp)),
                ("customer", None),
                ("lines", None),
                ("attrs", None),
            ]
        );
        let customer = &s.field("customer").unwrap().schema;
        assert!(customer.optional);
        assert_eq!(customer.field("uid").unwrap().schema.kind, SchemaType::String);
        assert_eq!(s.field("lines").unwrap().schema.items.as_ref().unwrap().kind, SchemaType::Int32);
        let attrs = &s.field("attrs").unwrap().schema;
        assert_eq!(attrs.values.as_ref().unwrap().kind, SchemaType::Double);
        assert_eq!(Schema::parse(&s.to_json()).unwrap(), s, "the JSON form round-trips");
    }

    #[test]
    fn refuses_what_is_not_a_schema_and_a_decimal_without_scale() {
        assert!(Schema::parse(r#"{"type":"decimal"}"#).unwrap_err().contains("not a Kafka Connect schema"));
        assert!(Schema::parse("[1]").is_err());
        let mut d = Schema::of(SchemaType::Bytes);
        d.name = Some(DECIMAL.into());
        assert_eq!(d.logical(), None);
        d.parameters.insert("scale".into(), "x".into());
        assert_eq!(d.logical(), None);
    }
}
