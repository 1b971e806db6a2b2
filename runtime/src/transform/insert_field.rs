//! InsertField$Key / InsertField$Value: adds the record's topic, partition,
//! offset, timestamp and/or a static value as fields.

use serde_json::Value;

use super::{object_mut, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct InsertField {
    side: Side,
    topic: Option<String>,
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
    static_field: Option<(String, Value)>,
}

/// Kafka Connect marks a field optional (`?`) or required (`!`) by a suffix;
/// schemaless values have no schema to mark, so only the name counts.
fn field_name(spec: &str) -> String {
    spec.trim_end_matches(['?', '!']).to_string()
}

impl InsertField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> InsertField {
        let name = |o: &str| opts.get(o).map(field_name);
        let static_field = name("static.field").map(|f| {
            let value = opts.get("static.value").map_or(Value::Null, |v| Value::String(v.to_string()));
            (f, value)
        });
        InsertField {
            side,
            topic: name("topic.field"),
            partition: name("partition.field"),
            offset: name("offset.field"),
            timestamp: name("timestamp.field"),
            static_field,
        }
    }

    fn fields(&self) -> Vec<&str> {
        [&self.topic, &self.partition, &self.offset, &self.timestamp]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .chain(self.static_field.as_ref().map(|(f, _)| f.as_str()))
            .collect()
    }

    /// A tombstone stays a tombstone (as in Kafka Connect).
    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let topic = Value::String(record.topic.clone());
        let partition = record.partition.map_or(Value::Null, Value::from);
        let offset = record.offset;
        let timestamp = record.timestamp.map_or(Value::Null, Value::from);
        let fields = self.fields();
        let map = object_mut(record.slot(self.side), self.side)
            .map_err(|e| format!("cannot insert field(s) {}: {e}", fields.join(", ")))?;
        if let Some(f) = &self.topic {
            map.insert(f.clone(), topic);
        }
        if let Some(f) = &self.partition {
            map.insert(f.clone(), partition);
        }
        // A source record has no offset yet: the field is left out.
        if let (Some(f), Some(o)) = (&self.offset, offset) {
            map.insert(f.clone(), Value::from(o));
        }
        if let Some(f) = &self.timestamp {
            map.insert(f.clone(), timestamp);
        }
        if let Some((f, v)) = &self.static_field {
            map.insert(f.clone(), v.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    #[test]
    fn inserts_coordinates_and_a_static_value() {
        let c = chain(&[
            ("transforms", "i"),
            ("transforms.i.type", "org.apache.kafka.connect.transforms.InsertField$Value"),
            ("transforms.i.topic.field", "t"),
            ("transforms.i.partition.field", "p!"),
            ("transforms.i.offset.field", "o?"),
            ("transforms.i.timestamp.field", "ts"),
            ("transforms.i.static.field", "env"),
            ("transforms.i.static.value", "prod"),
        ]);
        let out = c.apply(record(json!({"a": 1}))).unwrap().unwrap();
        assert_eq!(
            json_value(&out),
            json!({"a": 1, "t": "orders", "p": 2, "o": 42, "ts": 1_700_000_000_000i64, "env": "prod"})
        );
    }

    #[test]
    fn works_on_the_key_and_leaves_tombstones_alone() {
        let c =
            chain(&[("transforms", "i"), ("transforms.i.type", "InsertField$Key"), ("transforms.i.topic.field", "t")]);
        let mut r = record(json!(null));
        r.key = Some(Data::Json(json!({"id": 7})));
        let out = c.apply(r).unwrap().unwrap();
        assert_eq!(out.key, Some(Data::Json(json!({"id": 7, "t": "orders"}))));
        assert_eq!(out.value, None);
        let string_key = record(json!({}));
        let e = c.apply(string_key).unwrap_err();
        assert!(e.contains("field(s) t") && e.contains("key is a JSON string"), "{e}");
    }
}
