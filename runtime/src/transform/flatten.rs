//! Flatten$Key / Flatten$Value: nested objects become top-level fields named
//! by joining the names on the way with `delimiter` (default `.`), as
//! Kafka's `Flatten.applySchemaless` does; arrays and their contents are
//! left as they are, a null field stays null, and a null key or value
//! (a tombstone) passes unchanged.

use serde_json::{Map, Value};

use super::{object_mut, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct Flatten {
    side: Side,
    delimiter: String,
}

impl Flatten {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Flatten {
        // The delimiter may be blank-looking text (`_`, `-`), so it is read
        // untrimmed; only an absent key takes the default.
        let delimiter = opts.raw("delimiter").unwrap_or(".").to_string();
        Flatten { side, delimiter }
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let map = object_mut(record.slot(self.side), self.side).map_err(|e| format!("cannot flatten: {e}"))?;
        let mut out = Map::new();
        self.flatten(std::mem::take(map), "", &mut out);
        *map = out;
        Ok(())
    }

    fn flatten(&self, map: Map<String, Value>, prefix: &str, out: &mut Map<String, Value>) {
        for (key, value) in map {
            let name = if prefix.is_empty() { key } else { format!("{prefix}{}{key}", self.delimiter) };
            match value {
                Value::Object(inner) => self.flatten(inner, &name, out),
                other => {
                    out.insert(name, other);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    /// Kafka's `FlattenTest.testNestedMapWithDelimiter` and
    /// `testOptionalAndDefaultValuesNested` (schemaless parts).
    #[test]
    fn nested_objects_become_delimited_top_level_fields() {
        let c = chain(&[("transforms", "f"), ("transforms.f.type", "Flatten$Value"), ("transforms.f.delimiter", "#")]);
        let v = json!({"A": {"B": {"int8": 8, "array": [{"x": 1}], "null": null}, "s": "x"}, "top": true, "empty": {}});
        let out = c.apply(record(v)).unwrap().unwrap();
        assert_eq!(
            json_value(&out),
            json!({"A#B#int8": 8, "A#B#array": [{"x": 1}], "A#B#null": null, "A#s": "x", "top": true})
        );
        let c = chain(&[("transforms", "f"), ("transforms.f.type", "Flatten$Key")]);
        let mut r = record(json!(null));
        r.key = Some(Data::Json(json!({"a": {"b": 1}})));
        let out = c.apply(r).unwrap().unwrap();
        assert_eq!(out.key, Some(Data::Json(json!({"a.b": 1}))));
        assert_eq!(out.value, None);
        assert!(c.apply(record(json!({}))).unwrap_err().contains("key is a JSON string"));
    }
}
