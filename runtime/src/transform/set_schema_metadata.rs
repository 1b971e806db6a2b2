//! SetSchemaMetadata$Key / SetSchemaMetadata$Value: sets the name
//! (`schema.name`) and/or version (`schema.version`) of the key's or
//! value's schema, as Kafka's `SetSchemaMetadata.apply` does.
//!
//! Sluice's records carry a schema only where JsonConverter with
//! `schemas.enable=true` read one (the envelope's `schema`, handed to the
//! sink beside the value); that schema gets the new name and version. A
//! record without a schema passes unchanged, where Kafka fails it
//! ("Schema required for [updating schema metadata]"): most records here
//! are schemaless JSON, and a name has nothing to attach to
//! (docs/decisions/0003-transforms-on-schemaless-json.md).

use serde_json::Value;

use super::{Options, Record, Side};

#[derive(Debug, Clone)]
pub struct SetSchemaMetadata {
    side: Side,
    name: Option<String>,
    version: Option<i32>,
}

impl SetSchemaMetadata {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<SetSchemaMetadata> {
        let name = opts.get("schema.name").map(str::to_string);
        let version = match opts.get("schema.version") {
            None => None,
            Some(v) => match v.parse::<i32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    opts.invalid("schema.version", format!("{v} (must be a 32-bit integer)"));
                    return None;
                }
            },
        };
        if name.is_none() && version.is_none() {
            opts.invalid("schema.name", "Neither schema name nor version configured");
            return None;
        }
        Some(SetSchemaMetadata { side, name, version })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let schema = match self.side {
            Side::Key => &mut record.key_schema,
            Side::Value => &mut record.value_schema,
        };
        let Some(text) = schema.as_deref() else { return Ok(()) };
        let mut parsed: Value = serde_json::from_str(text)
            .map_err(|e| format!("the {} schema is not JSON ({e}), so its metadata cannot be set", self.side.name()))?;
        let Some(map) = parsed.as_object_mut() else {
            return Err(format!("the {} schema is not a JSON object, so its metadata cannot be set", self.side.name()));
        };
        if let Some(name) = &self.name {
            map.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(version) = self.version {
            map.insert("version".into(), Value::from(version));
        }
        *schema = Some(parsed.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::test_support::*;

    /// Kafka's `SetSchemaMetadataTest.schemaNameUpdate`, `schemaVersionUpdate`
    /// and `schemaNameAndVersionUpdate`, on JsonConverter's schema JSON.
    #[test]
    fn sets_the_schema_name_and_version_and_leaves_schemaless_records_alone() {
        let c = chain(&[
            ("transforms", "s"),
            ("transforms.s.type", "org.apache.kafka.connect.transforms.SetSchemaMetadata$Value"),
            ("transforms.s.schema.name", "com.example.Order"),
            ("transforms.s.schema.version", "3"),
        ]);
        assert!(c.keeps_values());
        let mut r = record(json!({"id": 1}));
        r.value_schema = Some(json!({"type": "struct", "fields": [], "optional": false, "name": "old"}).to_string());
        let out = c.apply(r).unwrap().unwrap();
        let schema: Value = serde_json::from_str(out.value_schema.as_deref().unwrap()).unwrap();
        assert_eq!(
            schema,
            json!({"type": "struct", "fields": [], "optional": false, "name": "com.example.Order", "version": 3})
        );
        assert_eq!(json_value(&out), json!({"id": 1}));
        let schemaless = c.apply(record(json!({"id": 1}))).unwrap().unwrap();
        assert_eq!((schemaless.value_schema.clone(), json_value(&schemaless)), (None, json!({"id": 1})));
        let found = issues(&[("transforms", "s"), ("transforms.s.type", "SetSchemaMetadata$Key")]);
        assert!(found[0].starts_with("transforms.s.schema.name") && found[0].contains("Neither"), "{found:?}");
        let found = issues(&[
            ("transforms", "s"),
            ("transforms.s.type", "SetSchemaMetadata$Key"),
            ("transforms.s.schema.version", "v1"),
        ]);
        assert!(found[0].starts_with("transforms.s.schema.version"), "{found:?}");
    }
}
