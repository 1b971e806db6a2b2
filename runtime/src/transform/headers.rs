//! The header transforms: InsertHeader (`header`, `value.literal`),
//! DropHeaders (`headers`) and HeaderFrom$Key / HeaderFrom$Value (`fields`,
//! `headers`, `operation=move|copy`), after Kafka's classes of those names.
//!
//! Header values are bytes here (the plugin API and Kafka carry bytes), so
//! a value becomes what Kafka's default `SimpleHeaderConverter` writes for
//! it: a string as its text, other values as their JSON text, null as a
//! null header.

use serde_json::Value;

use super::{
    field::{FieldPath, Syntax},
    object_mut, Options, Record, Side,
};

/// InsertHeader: adds `header` with `value.literal` (`InsertHeader.apply`
/// adds, it does not replace headers of that name).
#[derive(Debug, Clone)]
pub struct InsertHeader {
    header: String,
    literal: Vec<u8>,
}

impl InsertHeader {
    pub fn parse(opts: &mut Options<'_>) -> Option<InsertHeader> {
        let header = opts.required("header").map(str::to_string);
        // The literal is taken as written: spaces may be part of it.
        let literal = opts.raw("value.literal").map(|v| v.as_bytes().to_vec());
        if literal.is_none() {
            let key = opts.key("value.literal");
            opts.issues.push(connector_api::ConfigIssue::new(
                &key,
                format!("Missing required configuration \"{key}\" which has no default value."),
            ));
        }
        Some(InsertHeader { header: header?, literal: literal? })
    }

    pub fn apply(&self, record: &mut Record) {
        record.headers.push((self.header.clone(), Some(self.literal.clone())));
    }
}

/// DropHeaders: removes every header with one of the names.
#[derive(Debug, Clone)]
pub struct DropHeaders {
    headers: Vec<String>,
}

impl DropHeaders {
    pub fn parse(opts: &mut Options<'_>) -> DropHeaders {
        DropHeaders { headers: opts.required_list("headers") }
    }

    pub fn apply(&self, record: &mut Record) {
        record.headers.retain(|(name, _)| !self.headers.contains(name));
    }
}

/// HeaderFrom: copies or moves fields of the key or value into headers.
#[derive(Debug, Clone)]
pub struct HeaderFrom {
    side: Side,
    fields: Vec<(FieldPath, String)>,
    moving: bool,
}

impl HeaderFrom {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<HeaderFrom> {
        let syntax = Syntax::parse(opts);
        let fields = opts.required_list("fields");
        let headers = opts.required_list("headers");
        let moving = match opts.required("operation") {
            Some("move") => Some(true),
            Some("copy") => Some(false),
            Some(other) => {
                opts.invalid("operation", format!("{other} (must be move or copy)"));
                None
            }
            None => None,
        };
        if !fields.is_empty() && !headers.is_empty() && fields.len() != headers.len() {
            opts.invalid("fields", "'fields' config must have the same number of elements as 'headers' config.");
            return None;
        }
        let mut paths = Vec::new();
        for (field, header) in fields.iter().zip(headers) {
            paths.push((FieldPath::option(opts, "fields", field, syntax)?, header));
        }
        Some(HeaderFrom { side, fields: paths, moving: moving? })
    }

    /// Whether the key or value stays as it was (`operation=copy`).
    pub fn copies(&self) -> bool {
        !self.moving
    }

    /// `HeaderFrom.applySchemaless`: the key or value must be an object (a
    /// tombstone fails, as `requireMap` does); a missing field gives a null
    /// header.
    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let names = || self.fields.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ");
        let map = object_mut(record.slot(self.side), self.side)
            .map_err(|e| format!("cannot copy field(s) {} to headers: {e}", names()))?;
        let mut added = Vec::with_capacity(self.fields.len());
        for (path, header) in &self.fields {
            let value = match path.parent_mut(map)? {
                Some(parent) if self.moving => parent.remove(path.last()),
                Some(parent) => parent.get(path.last()).cloned(),
                None => None,
            };
            added.push((header.clone(), value.as_ref().and_then(header_bytes)));
        }
        record.headers.extend(added);
        Ok(())
    }
}

/// What `SimpleHeaderConverter` writes for a schemaless value.
pub fn header_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    fn header_text(r: &super::Record, name: &str) -> Vec<Option<String>> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    /// Kafka's `InsertHeaderTest.insertionWithExistingOtherHeader` and
    /// `DropHeadersTest.dropExistingHeaderWithMultipleValues`.
    #[test]
    fn insert_adds_a_literal_header_and_drop_removes_every_header_of_a_name() {
        let c = chain(&[
            ("transforms", "ins,ins2,drop"),
            ("transforms.ins.type", "org.apache.kafka.connect.transforms.InsertHeader"),
            ("transforms.ins.header", "trace"),
            ("transforms.ins.value.literal", " two words "),
            ("transforms.ins2.type", "InsertHeader"),
            ("transforms.ins2.header", "source"),
            ("transforms.ins2.value.literal", "sluice"),
            ("transforms.drop.type", "DropHeaders"),
            ("transforms.drop.headers", "source, nope"),
        ]);
        let out = c.apply(record(json!({"a": 1}))).unwrap().unwrap();
        assert_eq!(header_text(&out, "trace"), [Some("abc".into()), Some(" two words ".into())]);
        assert!(header_text(&out, "source").is_empty());
        let found = issues(&[
            ("transforms", "i,d"),
            ("transforms.i.type", "InsertHeader"),
            ("transforms.d.type", "DropHeaders"),
        ]);
        let keys: Vec<&str> = found.iter().map(|i| i.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["transforms.i.header", "transforms.i.value.literal", "transforms.d.headers"]);
    }

    /// Kafka's `HeaderFromTest` (schemaless cases: copy and move of a
    /// field, a missing field giving a null header) with a nested V2 path.
    #[test]
    fn header_from_copies_or_moves_fields_into_headers() {
        let config = |op: &'static str| {
            chain(&[
                ("transforms", "h"),
                ("transforms.h.type", "HeaderFrom$Value"),
                ("transforms.h.fields", "id,customer.name,missing"),
                ("transforms.h.headers", "id,who,none"),
                ("transforms.h.operation", op),
                ("transforms.h.field.syntax.version", "V2"),
            ])
        };
        let v = json!({"id": 7, "customer": {"name": "Ann", "tier": 1}, "doc": {"x": [1]}});
        let copied = config("copy").apply(record(v.clone())).unwrap().unwrap();
        assert_eq!(json_value(&copied), v);
        assert_eq!(header_text(&copied, "id"), [Some("7".into())]);
        assert_eq!(header_text(&copied, "who"), [Some("Ann".into())]);
        assert_eq!(header_text(&copied, "none"), [None]);
        let moved = config("move").apply(record(v)).unwrap().unwrap();
        assert_eq!(json_value(&moved), json!({"customer": {"tier": 1}, "doc": {"x": [1]}}));
        assert!(config("move").apply(record(json!(null))).unwrap_err().contains("tombstone"));
        let c = chain(&[
            ("transforms", "h"),
            ("transforms.h.type", "HeaderFrom$Key"),
            ("transforms.h.fields", "doc"),
            ("transforms.h.headers", "doc"),
            ("transforms.h.operation", "copy"),
        ]);
        let mut r = record(json!(null));
        r.key = Some(Data::Json(json!({"doc": {"x": [1]}})));
        assert_eq!(header_text(&c.apply(r).unwrap().unwrap(), "doc"), [Some(r#"{"x":[1]}"#.into())]);
        let found = issues(&[
            ("transforms", "h"),
            ("transforms.h.type", "HeaderFrom$Value"),
            ("transforms.h.fields", "a,b"),
            ("transforms.h.headers", "a"),
            ("transforms.h.operation", "cut"),
        ]);
        let keys: Vec<&str> = found.iter().map(|i| i.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["transforms.h.operation", "transforms.h.fields"], "{found:?}");
    }
}
