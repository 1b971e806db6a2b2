//! ExtractField$Key / ExtractField$Value: the key or value becomes one of its
//! fields (null when the field is absent, as in Kafka Connect); `field` is
//! a path per `field.syntax.version` (KIP-821).

use super::{
    field::{FieldPath, Syntax},
    non_null, object_mut, Options, Record, Side,
};

#[derive(Debug, Clone)]
pub struct ExtractField {
    side: Side,
    field: FieldPath,
}

impl ExtractField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<ExtractField> {
        let syntax = Syntax::parse(opts);
        let text = opts.required("field")?;
        Some(ExtractField { side, field: FieldPath::option(opts, "field", text, syntax)? })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let map = object_mut(record.slot(self.side), self.side)
            .map_err(|e| format!("cannot extract field \"{}\": {e}", self.field))?;
        let extracted = self.field.get(map)?.cloned().and_then(non_null);
        *record.slot(self.side) = extracted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    #[test]
    fn extracts_a_field_of_the_value_or_the_key() {
        let c =
            chain(&[("transforms", "e"), ("transforms.e.type", "ExtractField$Value"), ("transforms.e.field", "after")]);
        let out = c.apply(record(json!({"after": {"id": 1}, "before": null}))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!({"id": 1}));
        assert_eq!(c.apply(record(json!({"other": 1}))).unwrap().unwrap().value, None);
        let c = chain(&[("transforms", "e"), ("transforms.e.type", "ExtractField$Key"), ("transforms.e.field", "id")]);
        let mut r = record(json!({}));
        r.key = Some(Data::Json(json!({"id": "k"})));
        assert_eq!(c.apply(r).unwrap().unwrap().key, Some(Data::Json(json!("k"))));
        let e = c.apply(record(json!({}))).unwrap_err();
        assert!(e.contains("field \"id\""), "{e}");
        assert!(issues(&[("transforms", "e"), ("transforms.e.type", "ExtractField$Key")])[0]
            .starts_with("transforms.e.field"));
    }

    /// Kafka's `ExtractFieldTest.testNestedSchemaless` and
    /// `testNullNestedSchemaless` (KIP-821).
    #[test]
    fn extracts_a_nested_field_with_v2_and_a_dotted_name_with_v1() {
        let c = |version: &'static str| {
            chain(&[
                ("transforms", "e"),
                ("transforms.e.type", "ExtractField$Value"),
                ("transforms.e.field", "magic.foo"),
                ("transforms.e.field.syntax.version", version),
            ])
        };
        let v = json!({"magic": {"foo": 42}, "magic.foo": 1});
        assert_eq!(json_value(&c("V2").apply(record(v.clone())).unwrap().unwrap()), json!(42));
        assert_eq!(json_value(&c("V1").apply(record(v)).unwrap().unwrap()), json!(1));
        assert_eq!(c("V2").apply(record(json!({"magic": null}))).unwrap().unwrap().value, None);
        assert!(c("V2").apply(record(json!({"magic": 3}))).unwrap_err().contains("not a JSON object"));
    }
}
