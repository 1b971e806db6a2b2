//! HoistField$Key / HoistField$Value: the key or value becomes an object
//! with one field `field` holding it, as Kafka's `HoistField.apply` does
//! for schemaless data, a null included (`{field: null}`: a tombstone is
//! hoisted too).

use serde_json::{Map, Value};

use super::{Data, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct HoistField {
    side: Side,
    field: String,
}

impl HoistField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<HoistField> {
        Some(HoistField { side, field: opts.required("field")?.to_string() })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let slot = record.slot(self.side);
        let inner = match slot.take() {
            None => Value::Null,
            Some(Data::Json(v)) => v,
            Some(Data::Raw(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
                format!("cannot hoist the {} into field \"{}\": it is not JSON ({e})", self.side.name(), self.field)
            })?,
            Some(bytes @ Data::Bytes(_)) => {
                *slot = Some(bytes);
                return Err(format!(
                    "cannot hoist the {} into field \"{}\": it is bytes (ByteArrayConverter); use a JSON or string converter",
                    self.side.name(),
                    self.field
                ));
            }
        };
        let mut map = Map::new();
        map.insert(self.field.clone(), inner);
        *slot = Some(Data::Json(Value::Object(map)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    /// Kafka's `HoistFieldTest.schemaless` and the null case of `apply`.
    #[test]
    fn wraps_the_value_or_key_in_a_field() {
        let c =
            chain(&[("transforms", "h"), ("transforms.h.type", "HoistField$Value"), ("transforms.h.field", "magic")]);
        assert_eq!(json_value(&c.apply(record(json!(42))).unwrap().unwrap()), json!({"magic": 42}));
        assert_eq!(json_value(&c.apply(record(json!(null))).unwrap().unwrap()), json!({"magic": null}));
        let mut raw = record(json!(null));
        raw.value = Some(Data::Raw(b"[1,2]".to_vec()));
        assert_eq!(json_value(&c.apply(raw).unwrap().unwrap()), json!({"magic": [1, 2]}));
        let mut bytes = record(json!(null));
        bytes.value = Some(Data::Bytes(vec![0xff]));
        assert!(c.apply(bytes).unwrap_err().contains("field \"magic\""));
        let c = chain(&[("transforms", "h"), ("transforms.h.type", "HoistField$Key"), ("transforms.h.field", "id")]);
        assert_eq!(c.apply(record(json!({}))).unwrap().unwrap().key, Some(Data::Json(json!({"id": "k1"}))));
        assert!(issues(&[("transforms", "h"), ("transforms.h.type", "HoistField$Key")])[0]
            .starts_with("transforms.h.field"));
    }
}
