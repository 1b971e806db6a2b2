//! RequireFields (Sluice): fails a record whose value (or key, with
//! `RequireFields$Key`) lacks one of `fields` or has null there, so it goes
//! to the dead-letter queue like any bad record.

use super::{object_mut, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct RequireFields {
    side: Side,
    fields: Vec<String>,
}

impl RequireFields {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> RequireFields {
        RequireFields { side, fields: opts.required_list("fields") }
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let map = object_mut(record.slot(self.side), self.side)
            .map_err(|e| format!("required field(s) {} are missing: {e}", self.fields.join(", ")))?;
        let missing: Vec<&str> =
            self.fields.iter().filter(|f| map.get(*f).is_none_or(|v| v.is_null())).map(String::as_str).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "required field(s) {} missing or null in the {}; fix the producer or drop the requirement",
                missing.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", "),
                self.side.name()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    #[test]
    fn fails_a_record_missing_a_field_or_with_null_there() {
        let c = chain(&[
            ("transforms", "req"),
            ("transforms.req.type", "RequireFields"),
            ("transforms.req.fields", "id,sku"),
        ]);
        assert!(c.apply(record(json!({"id": 1, "sku": "a"}))).unwrap().is_some());
        let e = c.apply(record(json!({"id": 1, "sku": null}))).unwrap_err();
        assert!(e.contains("\"sku\"") && !e.contains("\"id\"") && e.contains("\"req\""), "{e}");
        let e = c.apply(record(json!({}))).unwrap_err();
        assert!(e.contains("\"id\", \"sku\""), "{e}");
        assert!(c.apply(record(json!(null))).unwrap_err().contains("tombstone"));
        assert!(issues(&[("transforms", "r"), ("transforms.r.type", "RequireFields")])[0]
            .starts_with("transforms.r.fields"));
    }
}
