//! Confluent's JsonSchemaConverter, sink side: the payload after the wire
//! format's header is JSON text, which Kafka Connect's JsonConverter
//! (schemas disabled) writes back unchanged for the types below; the JSON
//! Schema becomes a Connect schema as Confluent's `JsonSchemaData` maps it
//! (docs/decisions/0030-avro-and-json-schema-converters.md).

use connector_api::schema::{Field, Schema, SchemaType};
use serde_json::Value;

/// A JSON Schema → a Connect schema: `object` with `properties` → struct
/// (a property not in `required` is optional; properties in the order the
/// registry's text lists them, sorted by name here since our JSON maps are
/// sorted), `object` with only `additionalProperties` → map of string keys,
/// `array` → array, `integer` → int64 (or the `connect.type` annotation),
/// `number` → float64, `string`, `boolean`; `oneOf`/`anyOf`/a `type` list
/// with `null` and one other type → that type, optional; `title` → the
/// schema's name.
pub fn connect_schema(node: &Value) -> Result<Schema, String> {
    schema(node, false)
}

fn schema(node: &Value, optional: bool) -> Result<Schema, String> {
    let Value::Object(o) = node else {
        return match node {
            Value::Bool(true) => Err("a JSON Schema of `true` (anything) has no Kafka Connect equivalent".into()),
            _ => Err("not a JSON Schema object".into()),
        };
    };
    for alt in ["oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = o.get(alt) {
            let non_null: Vec<&Value> =
                members.iter().filter(|m| m.get("type") != Some(&Value::from("null"))).collect();
            return match non_null.as_slice() {
                [one] => schema(one, optional || non_null.len() < members.len()),
                _ => Err(format!("a JSON Schema {alt} of several types is not supported yet")),
            };
        }
    }
    let (kind, nullable) = match o.get("type") {
        Some(Value::String(t)) => (t.as_str(), false),
        Some(Value::Array(ts)) => {
            let non_null: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [one] => (*one, non_null.len() < ts.len()),
                _ => return Err("a JSON Schema type list of several types is not supported yet".into()),
            }
        }
        None if o.contains_key("properties") => ("object", false),
        _ => return Err("a JSON Schema without a \"type\" is not supported".into()),
    };
    let connect_type = o.get("connect.type").and_then(Value::as_str);
    let mut s = match (kind, connect_type) {
        ("integer", Some("int8")) => Schema::of(SchemaType::Int8),
        ("integer", Some("int16")) => Schema::of(SchemaType::Int16),
        ("integer", Some("int32")) => Schema::of(SchemaType::Int32),
        ("integer", _) => Schema::of(SchemaType::Int64),
        ("number", Some("float32")) => Schema::of(SchemaType::Float),
        ("number", _) => Schema::of(SchemaType::Double),
        ("string", Some("bytes")) => Schema::of(SchemaType::Bytes),
        ("string", _) => Schema::of(SchemaType::String),
        ("boolean", _) => Schema::of(SchemaType::Boolean),
        ("array", _) => {
            let mut s = Schema::of(SchemaType::Array);
            let items = o.get("items").ok_or("a JSON Schema array without \"items\"")?;
            s.items = Some(Box::new(schema(items, false)?));
            s
        }
        ("object", _) => match o.get("properties") {
            Some(Value::Object(props)) => {
                let required: Vec<&str> = o
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut s = Schema::of(SchemaType::Struct);
                for (name, p) in props {
                    let field = schema(p, !required.contains(&name.as_str()))?;
                    s.fields.push(Field { name: name.clone(), schema: field });
                }
                s
            }
            _ => {
                let mut s = Schema::of(SchemaType::Map);
                s.keys = Some(Box::new(Schema::of(SchemaType::String)));
                let values = match o.get("additionalProperties") {
                    Some(v @ Value::Object(_)) => schema(v, false)?,
                    _ => return Err("a JSON Schema object without properties or a typed additionalProperties".into()),
                };
                s.values = Some(Box::new(values));
                s
            }
        },
        (other, _) => return Err(format!("unsupported JSON Schema type {other:?}")),
    };
    s.name = o.get("title").and_then(Value::as_str).map(str::to_string);
    s.doc = o.get("description").and_then(Value::as_str).map(str::to_string);
    s.optional = optional || nullable;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_become_structs_with_required_fields() {
        let s = connect_schema(&json!({"type":"object","title":"shop.Order","properties":{
            "id":{"type":"integer"},"price":{"type":"number"},"note":{"oneOf":[{"type":"null"},{"type":"string"}]},
            "qty":{"type":"integer","connect.type":"int32"},"tags":{"type":"array","items":{"type":"string"}},
            "attrs":{"type":"object","additionalProperties":{"type":"boolean"}}},"required":["id","price","tags"]}))
        .unwrap();
        let got: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(got["name"], "shop.Order");
        let f = |n: &str| got["fields"].as_array().unwrap().iter().find(|f| f["field"] == n).unwrap().clone();
        assert_eq!((f("id")["type"].clone(), f("id")["optional"].clone()), (json!("int64"), json!(false)));
        assert_eq!(f("price")["type"], "double");
        assert_eq!((f("note")["type"].clone(), f("note")["optional"].clone()), (json!("string"), json!(true)));
        assert_eq!(f("qty")["type"], "int32");
        assert_eq!(f("tags")["items"]["type"], "string");
        assert_eq!(
            (f("attrs")["type"].clone(), f("attrs")["values"]["type"].clone()),
            (json!("map"), json!("boolean"))
        );
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        assert!(connect_schema(&json!(true)).is_err());
        assert!(connect_schema(&json!({"oneOf":[{"type":"string"},{"type":"integer"}]}))
            .unwrap_err()
            .contains("oneOf"));
        assert!(connect_schema(&json!({"type":"object"})).is_err());
        let s = connect_schema(&json!({"type":["null","integer"]})).unwrap();
        assert!(s.optional && s.kind == SchemaType::Int64);
    }
}
