//! ValueToKey: the key becomes an object of the listed fields of the value.

use serde_json::{Map, Value};

use super::{object_mut, Data, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct ValueToKey {
    fields: Vec<String>,
}

impl ValueToKey {
    pub fn parse(opts: &mut Options<'_>) -> ValueToKey {
        ValueToKey { fields: opts.required_list("fields") }
    }

    /// As in Kafka Connect, the value must be an object (a tombstone fails)
    /// and a missing field becomes null in the key.
    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let map = object_mut(&mut record.value, Side::Value)
            .map_err(|e| format!("cannot copy field(s) {} to the key: {e}", self.fields.join(", ")))?;
        let key: Map<String, Value> =
            self.fields.iter().map(|f| (f.clone(), map.get(f).cloned().unwrap_or(Value::Null))).collect();
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
}
