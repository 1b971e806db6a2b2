//! MaskField$Key / MaskField$Value: replaces fields' values by their type's
//! empty value (`""`, `0`, `false`, `[]`, `{}`) or by `replacement`;
//! `fields` are paths per `field.syntax.version` (KIP-821).

use serde_json::{Map, Number, Value};

use super::{
    field::{FieldPath, Syntax},
    object_mut, Options, Record, Side,
};

#[derive(Debug, Clone)]
pub struct MaskField {
    side: Side,
    fields: Vec<FieldPath>,
    replacement: Option<String>,
}

impl MaskField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> MaskField {
        let syntax = Syntax::parse(opts);
        let fields =
            opts.required_list("fields").iter().filter_map(|f| FieldPath::option(opts, "fields", f, syntax)).collect();
        MaskField { side, fields, replacement: opts.get("replacement").map(str::to_string) }
    }

    fn mask(&self, field: &FieldPath, value: &Value) -> Result<Value, String> {
        let Some(r) = &self.replacement else {
            return Ok(match value {
                Value::Null => Value::Null,
                Value::Bool(_) => Value::Bool(false),
                Value::Number(_) => Value::from(0),
                Value::String(_) => Value::String(String::new()),
                Value::Array(_) => Value::Array(Vec::new()),
                Value::Object(_) => Value::Object(Map::new()),
            });
        };
        match value {
            Value::Null => Ok(Value::Null),
            Value::String(_) => Ok(Value::String(r.clone())),
            Value::Number(_) => r
                .parse::<i64>()
                .map(Value::from)
                .ok()
                .or_else(|| r.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number))
                .ok_or_else(|| format!("field \"{field}\" is a number and the replacement {r:?} is not one")),
            Value::Bool(_) => r
                .parse::<bool>()
                .map(Value::Bool)
                .map_err(|_| format!("field \"{field}\" is a boolean and the replacement {r:?} is not one")),
            Value::Array(_) | Value::Object(_) => {
                Err(format!("field \"{field}\" is an array or object, which a replacement cannot mask"))
            }
        }
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let names = || self.fields.iter().map(FieldPath::to_string).collect::<Vec<_>>().join(", ");
        let map = object_mut(record.slot(self.side), self.side)
            .map_err(|e| format!("cannot mask field(s) {}: {e}", names()))?;
        for field in &self.fields {
            let Some(parent) = field.parent_mut(map)? else { continue };
            if let Some(v) = parent.get(field.last()) {
                let masked = self.mask(field, v)?;
                parent.insert(field.last().to_string(), masked);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    #[test]
    fn masks_by_type_or_with_a_replacement() {
        let c =
            chain(&[("transforms", "m"), ("transforms.m.type", "MaskField$Value"), ("transforms.m.fields", "s,n,b,l")]);
        let out = c.apply(record(json!({"s": "x", "n": 5, "b": true, "l": [1], "keep": "y"}))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!({"s": "", "n": 0, "b": false, "l": [], "keep": "y"}));
        let c = chain(&[
            ("transforms", "m"),
            ("transforms.m.type", "MaskField$Value"),
            ("transforms.m.fields", "card,pin"),
            ("transforms.m.replacement", "****"),
        ]);
        assert_eq!(json_value(&c.apply(record(json!({"card": "4111"}))).unwrap().unwrap()), json!({"card": "****"}));
        let e = c.apply(record(json!({"pin": 1234}))).unwrap_err();
        assert!(e.contains("\"pin\"") && e.contains("not one"), "{e}");
    }

    /// KIP-821's nested paths for MaskField.
    #[test]
    fn masks_nested_fields_with_v2() {
        let c = chain(&[
            ("transforms", "m"),
            ("transforms.m.type", "MaskField$Value"),
            ("transforms.m.fields", "card.number,card.missing,nothing.here"),
            ("transforms.m.field.syntax.version", "V2"),
        ]);
        let out = c.apply(record(json!({"card": {"number": "4111", "exp": "12/30"}}))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!({"card": {"number": "", "exp": "12/30"}}));
    }
}
