//! ValueToKey: the key becomes an object of the listed fields of the value;
//! with `field.syntax.version=V2` (KIP-821) a nested path keeps its nesting
//! in the key (`fields=a.b` gives the key `{"a": {"b": …}}`).

use serde_json::{Map, Value};

use super::{
    field::{FieldPath, Syntax},
    object_mut, Data, Options, Record, Side,
};

#[derive(Debug, Clone)]
pub struct ValueToKey {
    fields: Vec<FieldPath>,
}

impl ValueToKey {
    pub fn parse(opts: &mut Options<'_>) -> ValueToKey {
        let syntax = Syntax::parse(opts);
        let fields =
            opts.required_list("fields").iter().filter_map(|f| FieldPath::option(opts, "fields", f, syntax)).collect();
        ValueToKey { fields }
    }

    /// As in Kafka Connect, the value must be an object (a tombstone fails)
    /// and a missing field becomes null in the key.
    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let names = || self.fields.iter().map(FieldPath::to_string).collect::<Vec<_>>().join(", ");
        let map = object_mut(&mut record.value, Side::Value)
            .map_err(|e| format!("cannot copy field(s) {} to the key: {e}", names()))?;
        let mut key = Map::new();
        for path in &self.fields {
            let value = path.get(map)?.cloned().unwrap_or(Value::Null);
            path.insert_creating(&mut key, value);
        }
        record.key = Some(Data::Json(Value::Object(key)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    #[test]
    fn copies_fields_into_the_key() {
        let c =
            chain(&[("transforms", "v"), ("transforms.v.type", "ValueToKey"), ("transforms.v.fields", "id,missing")]);
        let out = c.apply(record(json!({"id": 9, "x": 1}))).unwrap().unwrap();
        assert_eq!(out.key, Some(Data::Json(json!({"id": 9, "missing": null}))));
        assert!(c.apply(record(json!(null))).unwrap_err().contains("tombstone"));
    }

    /// KIP-821's nested paths for ValueToKey.
    #[test]
    fn nested_fields_keep_their_nesting_with_v2() {
        let c = chain(&[
            ("transforms", "v"),
            ("transforms.v.type", "ValueToKey"),
            ("transforms.v.fields", "order.id,region"),
            ("transforms.v.field.syntax.version", "V2"),
        ]);
        let out = c.apply(record(json!({"order": {"id": 9, "n": 1}, "region": "eu"}))).unwrap().unwrap();
        assert_eq!(out.key, Some(Data::Json(json!({"order": {"id": 9}, "region": "eu"}))));
    }
}
