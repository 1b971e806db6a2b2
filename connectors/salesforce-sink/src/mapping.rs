//! From a record to a Salesforce row: the operation (`_EventType` or
//! `salesforce.sink.object.operation`), the match key (External ID or `Id`)
//! and the fields, after `salesforce.ignore.fields` and the renames of
//! `salesforce.field.mapping`. Pure: the task calls it per record.

use serde_json::{Map, Value};

use crate::config::{Matching, Operation};

/// What one row asks of Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Upsert,
    Delete,
}

/// One record mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub op: Op,
    /// The External ID (or `Id`) value; `None` only for inserts.
    pub key: Option<String>,
    /// The fields sent (for a delete: none).
    pub fields: Map<String, Value>,
}

/// The mapping's settings.
#[derive(Debug, Clone)]
pub struct Spec {
    pub operation: Operation,
    pub override_event_type: bool,
    pub matching: Matching,
    pub ignore_fields: Vec<String>,
    pub renames: Vec<(String, String)>,
}

impl Spec {
    /// The field that holds the key, in Salesforce's names.
    pub fn key_field(&self) -> &str {
        match &self.matching {
            Matching::External(f) => f,
            Matching::RecordId => "Id",
        }
    }
}

/// Maps one record (its key and value bytes). The error says what is
/// wrong and what to do; the caller adds the record's position.
pub fn map_record(spec: &Spec, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Row, String> {
    let Some(value) = value else {
        // A tombstone: delete the row the record key names.
        return Ok(Row { op: Op::Delete, key: Some(key_of_tombstone(spec, key)?), fields: Map::new() });
    };
    let parsed: Value = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not JSON ({e}); the sink takes JSON objects (value.converter=json)"))?;
    let Value::Object(object) = parsed else {
        return Err(format!("the value is JSON {} but must be an object of fields", kind(&parsed)));
    };
    let op = operation(spec, &object)?;
    let mut fields = Map::new();
    for (name, value) in object {
        // Confluent's CDC metadata (`_EventType`, `_ObjectType`) is not a field.
        if name.starts_with('_') || spec.ignore_fields.contains(&name) {
            continue;
        }
        let target = spec.renames.iter().find(|(from, _)| *from == name).map(|(_, to)| to.as_str()).unwrap_or(&name);
        if let Some((relationship, parent_key)) = target.split_once('.') {
            // A lookup set through the parent's External ID:
            // `"Account__r": {"Account_Code__c": "A-1"}`.
            if !is_scalar(&value) || value.is_null() {
                return Err(format!(
                    "field {name} (mapped to {target}) must hold the parent's External ID, not {}",
                    kind(&value)
                ));
            }
            let mut parent = Map::new();
            parent.insert(parent_key.to_string(), value);
            fields.insert(relationship.to_string(), Value::Object(parent));
            continue;
        }
        if !is_scalar(&value) {
            return Err(format!(
                "field {name} holds a JSON {}: Salesforce fields take text, numbers, booleans or null; map it \
                 with salesforce.field.mapping ({name}:Parent__r.External_Id__c) or list it in \
                 salesforce.ignore.fields",
                kind(&value)
            ));
        }
        fields.insert(target.to_string(), value);
    }
    let key = match op {
        Op::Insert => None,
        _ => Some(key_value(spec, &fields)?),
    };
    if op == Op::Delete {
        fields.clear();
    }
    Ok(Row { op, key, fields })
}

fn operation(spec: &Spec, object: &Map<String, Value>) -> Result<Op, String> {
    let configured = match spec.operation {
        Operation::Insert => Op::Insert,
        Operation::Update => Op::Update,
        Operation::Upsert => Op::Upsert,
        Operation::Delete => Op::Delete,
    };
    let by_event = match (spec.override_event_type, object.get("_EventType")) {
        (true, _) | (false, None | Some(Value::Null)) => configured,
        (false, Some(Value::String(t))) => match t.to_ascii_lowercase().as_str() {
            "created" => Op::Insert,
            "updated" => Op::Update,
            "deleted" => Op::Delete,
            "undeleted" => Op::Update,
            other => {
                return Err(format!(
                    "_EventType {other:?} is not created, updated, deleted or undeleted; set override.event.type=true \
                     to use salesforce.sink.object.operation for every record"
                ))
            }
        },
        (false, Some(other)) => return Err(format!("_EventType must be text, not {}", kind(other))),
    };
    // sObject Collections update by Id only: matched by an External ID, an
    // update is an upsert (documented in the README).
    Ok(match (by_event, &spec.matching) {
        (Op::Update, Matching::External(_)) => Op::Upsert,
        (op, _) => op,
    })
}

fn key_value(spec: &Spec, fields: &Map<String, Value>) -> Result<String, String> {
    let field = spec.key_field();
    match fields.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) if !other.is_null() => Err(format!("the key field {field} holds {}, not text", kind(other))),
        _ => Err(format!(
            "the key field {field} is missing or empty (after salesforce.field.mapping); every record needs it to be \
             matched in Salesforce"
        )),
    }
}

fn key_of_tombstone(spec: &Spec, key: Option<&[u8]>) -> Result<String, String> {
    let field = spec.key_field();
    let Some(key) = key else {
        return Err(format!("a tombstone (null value) without a record key: nothing names the {field} to delete"));
    };
    match serde_json::from_slice::<Value>(key) {
        Ok(Value::Object(o)) => {
            let renamed = |name: &String| spec.renames.iter().any(|(from, to)| from == name && to == field);
            let hit = o.iter().find(|(k, _)| *k == field || renamed(k)).map(|(_, v)| v);
            match hit {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!("a tombstone whose key object has no {field}")),
            }
        }
        Ok(Value::String(s)) if !s.is_empty() => Ok(s),
        Ok(Value::Number(n)) => Ok(n.to_string()),
        _ => match std::str::from_utf8(key) {
            Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
            _ => Err(format!("a tombstone whose key is not text naming the {field}")),
        },
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn upsert_spec() -> Spec {
        Spec {
            operation: Operation::Upsert,
            override_event_type: true,
            matching: Matching::External("Customer_Id__c".into()),
            ignore_fields: vec!["internal".into()],
            renames: vec![
                ("uid".into(), "Customer_Id__c".into()),
                ("email".into(), "Email".into()),
                ("account".into(), "Account__r.Account_Code__c".into()),
            ],
        }
    }

    fn map(spec: &Spec, value: Value) -> Result<Row, String> {
        map_record(spec, None, Some(value.to_string().as_bytes()))
    }

    #[test]
    fn fields_are_renamed_ignored_nulled_and_relationships_nested() {
        let row = map(
            &upsert_spec(),
            json!({"uid": "C-1", "email": "a@b.c", "LastName": "Ng", "Phone": null, "internal": 7,
                   "account": "A-9", "_ObjectType": "Contact"}),
        )
        .unwrap();
        assert_eq!(row.op, Op::Upsert);
        assert_eq!(row.key.as_deref(), Some("C-1"));
        assert_eq!(
            Value::Object(row.fields),
            json!({"Customer_Id__c": "C-1", "Email": "a@b.c", "LastName": "Ng", "Phone": null,
                   "Account__r": {"Account_Code__c": "A-9"}})
        );
    }

    #[test]
    fn unmappable_records_say_what_is_wrong_and_what_to_do() {
        let spec = upsert_spec();
        let no_key = map(&spec, json!({"email": "a@b.c"})).unwrap_err();
        assert!(no_key.contains("Customer_Id__c is missing"), "{no_key}");
        let nested = map(&spec, json!({"uid": "C-1", "address": {"city": "Oslo"}})).unwrap_err();
        assert!(nested.contains("field address holds a JSON object") && nested.contains("salesforce.ignore.fields"));
        assert!(map_record(&spec, None, Some(b"not json")).unwrap_err().contains("not JSON"));
        assert!(map(&spec, json!([1])).unwrap_err().contains("must be an object"));
        let bad_parent = map(&spec, json!({"uid": "C-1", "account": null})).unwrap_err();
        assert!(bad_parent.contains("parent's External ID"), "{bad_parent}");
    }

    #[test]
    fn event_types_decide_unless_overridden() {
        let mut spec = upsert_spec();
        spec.override_event_type = false;
        spec.operation = Operation::Insert;
        let op = |v: Value| map(&spec, v).map(|r| r.op);
        assert_eq!(op(json!({"uid": "C-1", "_EventType": "created"})), Ok(Op::Insert));
        // Matched by External ID, an update is an upsert.
        assert_eq!(op(json!({"uid": "C-1", "_EventType": "updated"})), Ok(Op::Upsert));
        assert_eq!(op(json!({"uid": "C-1", "_EventType": "deleted"})), Ok(Op::Delete));
        assert_eq!(op(json!({"uid": "C-1"})), Ok(Op::Insert));
        assert!(op(json!({"uid": "C-1", "_EventType": "merged"})).unwrap_err().contains("override.event.type"));
        let deleted = map(&spec, json!({"uid": "C-1", "_EventType": "deleted", "email": "x"})).unwrap();
        assert!(deleted.fields.is_empty(), "a delete sends no fields");
    }

    #[test]
    fn tombstones_delete_by_the_record_key() {
        let spec = upsert_spec();
        let by_text = map_record(&spec, Some(b"C-7"), None).unwrap();
        assert_eq!((by_text.op, by_text.key.as_deref()), (Op::Delete, Some("C-7")));
        let by_object = map_record(&spec, Some(br#"{"uid":"C-8"}"#), None).unwrap();
        assert_eq!(by_object.key.as_deref(), Some("C-8"));
        assert!(map_record(&spec, None, None).unwrap_err().contains("without a record key"));
    }
}
