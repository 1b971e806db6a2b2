//! Schema evolution on the Storage Write path (STREAMING), as pure
//! decisions: what table schema a record needs, and whether an append
//! refused right after this task changed the table's schema is worth
//! retrying. The change itself is the REST side's
//! ([`crate::rest::BigQueryRest::fit_schema`] with
//! [`crate::schema::plan_evolution`], shared with the legacy path);
//! docs/decisions/0042-bigquery-streaming-schema-evolution.md says why it
//! keeps exactly once.

use serde_json::{Map, Value};

use crate::{
    schema::{self, EvolutionPolicy, FieldMode, TableSchema},
    storage::StorageError,
};

/// Whether the policy allows any change at all (else a record that does
/// not fit goes to the DLQ as the encoder says, and no table is read).
pub fn evolution_allowed(policy: EvolutionPolicy) -> bool {
    policy.allow_new_fields || policy.allow_relaxation
}

/// The table schema a schemaless JSON row needs, for
/// [`schema::plan_evolution`] against `table`. A column the table has
/// keeps the table's definition (JSON cannot tell a TIMESTAMP from a
/// STRING, so the row's own guess would be a type conflict that is not
/// there), asked NULLABLE when the row's value is null; a field the table
/// lacks is typed from its value as an auto-created table's would be
/// ([`schema::infer_from_json`]: NULLABLE, null → STRING). A REQUIRED
/// column the row lacks is left out, which asks for it to be relaxed.
/// New sub-fields of an existing RECORD are not proposed: the encoder
/// refuses them, naming the field.
pub fn schemaless_needs(table: &TableSchema, row: &Map<String, Value>) -> TableSchema {
    let mut fields = Vec::with_capacity(row.len());
    for (name, value) in row {
        match table.field(name) {
            Some(column) => {
                let mut column = column.clone();
                if value.is_null() && column.mode == FieldMode::Required {
                    column.mode = FieldMode::Nullable;
                }
                fields.push(column);
            }
            None => {
                let mut one = Map::new();
                one.insert(name.clone(), value.clone());
                fields.extend(schema::infer_from_json(&one).fields);
            }
        }
    }
    TableSchema { fields }
}

/// An append refused as a whole (INVALID_ARGUMENT) on a stream whose
/// table this task has just changed: BigQuery documents that a write
/// stream takes a while to see a schema update, and until then refuses
/// rows carrying the new columns. Retried with backoff like an outage
/// (nothing committed meanwhile); once an append on the new schema has
/// landed, the same refusal is the request's fault and fails the task.
pub fn schema_not_seen_yet(error: &StorageError, schema_changed: bool) -> bool {
    schema_changed && matches!(error, StorageError::Refused(m) if m.to_ascii_lowercase().contains("schema"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{plan_evolution, Evolution, FieldType, TableField};

    fn table() -> TableSchema {
        TableSchema {
            fields: vec![
                TableField::new("id", FieldType::Integer, FieldMode::Required),
                TableField::new("created", FieldType::Timestamp, FieldMode::Nullable),
            ],
        }
    }

    fn row(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        }
    }

    const ADD: EvolutionPolicy =
        EvolutionPolicy { allow_new_fields: true, allow_relaxation: false, allow_unionization: false };
    const RELAX: EvolutionPolicy =
        EvolutionPolicy { allow_new_fields: false, allow_relaxation: true, allow_unionization: false };

    #[test]
    fn a_row_that_fits_needs_no_change_even_where_json_cannot_tell_the_type() {
        let needs = schemaless_needs(&table(), &row(json!({"id": 1, "created": "2026-12-01T10:00:00Z"})));
        assert_eq!(plan_evolution(&table(), &needs, ADD), Evolution::Fits);
        let needs = schemaless_needs(&table(), &row(json!({"id": 1})));
        assert_eq!(plan_evolution(&table(), &needs, ADD), Evolution::Fits, "a NULLABLE column may be absent");
    }

    #[test]
    fn a_new_field_is_proposed_as_a_nullable_column_of_its_values_type() {
        let needs = schemaless_needs(&table(), &row(json!({"id": 1, "email": "a@example.com", "score": 2.5})));
        let Evolution::Patch(patch) = plan_evolution(&table(), &needs, ADD) else { panic!("a patch") };
        let mut want = table().fields;
        want.push(TableField::new("email", FieldType::String, FieldMode::Nullable));
        want.push(TableField::new("score", FieldType::Float, FieldMode::Nullable));
        assert_eq!(patch.schema.fields, want);
        assert_eq!(patch.added, ["email", "score"]);
        // Not allowed: refused, naming the field and the key.
        let Evolution::Refused(why) = plan_evolution(&table(), &needs, RELAX) else { panic!("refused") };
        assert!(why.contains("email") && why.contains("allowNewBigQueryFields"), "{why}");
    }

    #[test]
    fn a_required_column_missing_or_null_asks_for_relaxation() {
        for r in [json!({"created": "2026-12-01T10:00:00Z"}), json!({"id": null})] {
            let needs = schemaless_needs(&table(), &row(r.clone()));
            let Evolution::Patch(patch) = plan_evolution(&table(), &needs, RELAX) else { panic!("a patch for {r}") };
            assert_eq!(patch.relaxed, ["id"], "{r}");
            assert_eq!(patch.schema.fields[0].mode, FieldMode::Nullable);
            assert!(matches!(plan_evolution(&table(), &needs, ADD), Evolution::Refused(_)), "{r}");
        }
    }

    #[test]
    fn only_a_schema_refusal_right_after_a_change_is_retried() {
        let refused = StorageError::Refused(
            "AppendRows: InvalidArgument: Input schema has more fields than BigQuery schema".into(),
        );
        assert!(schema_not_seen_yet(&refused, true));
        assert!(!schema_not_seen_yet(&refused, false), "no change of ours: the request's own fault");
        assert!(!schema_not_seen_yet(&StorageError::Refused("AppendRows: InvalidArgument: bad offset".into()), true));
        assert!(!schema_not_seen_yet(&StorageError::Auth("schema".into()), true));
        assert!(!evolution_allowed(EvolutionPolicy::default()));
        assert!(evolution_allowed(ADD) && evolution_allowed(RELAX));
    }
}
