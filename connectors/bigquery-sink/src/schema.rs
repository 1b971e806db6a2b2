//! BigQuery table schemas: the REST JSON shape (`name`, `type`, `mode`,
//! `fields`), the mapping from a record's Kafka Connect schema (Confluent's
//! BigQuery sink mapping), a `bigquery.schema` for schemaless records, name
//! sanitising, the Kafka metadata and key columns, and the schema evolution
//! decision (what to patch, or why not) as pure functions.
//!
//! The mapping, as Confluent's `BigQuerySchemaConverter`:
//!
//! | Connect | BigQuery |
//! |---|---|
//! | int8, int16, int32, int64 | INTEGER |
//! | float32, float64 | FLOAT |
//! | boolean | BOOLEAN |
//! | string | STRING |
//! | bytes | BYTES |
//! | Decimal | NUMERIC (BIGNUMERIC above precision 38 or scale 9) |
//! | Timestamp / Date / Time | TIMESTAMP / DATE / TIME |
//! | struct | RECORD (a struct without fields is left out) |
//! | array of T | T, REPEATED |
//! | map K→V | RECORD (`key` K, `value` V), REPEATED |
//!
//! An optional schema gives NULLABLE, a required one REQUIRED (arrays and
//! maps are REPEATED either way); `all_nullable` makes every field NULLABLE
//! (what Confluent V2 does for the tables it creates).

use std::fmt;

use base64::Engine;
use connector_api::schema::{Logical, Schema, SchemaType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A table's schema, as BigQuery's REST API writes it (`{"fields": […]}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableSchema {
    #[serde(default)]
    pub fields: Vec<TableField>,
}

/// One column (or a RECORD's sub-field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableField {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// BigQuery leaves `mode` out for NULLABLE columns.
    #[serde(default)]
    pub mode: FieldMode,
    /// A RECORD's fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<TableField>,
}

/// A column type (legacy SQL names, which the REST API answers with; the
/// standard SQL synonyms are accepted on reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    Bytes,
    Integer,
    Float,
    Numeric,
    BigNumeric,
    Boolean,
    Timestamp,
    Date,
    Time,
    DateTime,
    Json,
    Record,
}

impl FieldType {
    /// The name BigQuery's REST API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "STRING",
            FieldType::Bytes => "BYTES",
            FieldType::Integer => "INTEGER",
            FieldType::Float => "FLOAT",
            FieldType::Numeric => "NUMERIC",
            FieldType::BigNumeric => "BIGNUMERIC",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Timestamp => "TIMESTAMP",
            FieldType::Date => "DATE",
            FieldType::Time => "TIME",
            FieldType::DateTime => "DATETIME",
            FieldType::Json => "JSON",
            FieldType::Record => "RECORD",
        }
    }

    /// Reads a type name, legacy or standard SQL, in any case.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "STRING" => FieldType::String,
            "BYTES" => FieldType::Bytes,
            "INTEGER" | "INT64" => FieldType::Integer,
            "FLOAT" | "FLOAT64" => FieldType::Float,
            "NUMERIC" | "DECIMAL" => FieldType::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => FieldType::BigNumeric,
            "BOOLEAN" | "BOOL" => FieldType::Boolean,
            "TIMESTAMP" => FieldType::Timestamp,
            "DATE" => FieldType::Date,
            "TIME" => FieldType::Time,
            "DATETIME" => FieldType::DateTime,
            "JSON" => FieldType::Json,
            "RECORD" | "STRUCT" => FieldType::Record,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        FieldType::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "column type `{name}` is not one this sink writes (STRING, BYTES, INTEGER, FLOAT, NUMERIC, \
                 BIGNUMERIC, BOOLEAN, TIMESTAMP, DATE, TIME, DATETIME, JSON, RECORD)"
            ))
        })
    }
}

/// A column's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FieldMode {
    #[default]
    Nullable,
    Required,
    Repeated,
}

impl FieldMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldMode::Nullable => "NULLABLE",
            FieldMode::Required => "REQUIRED",
            FieldMode::Repeated => "REPEATED",
        }
    }
}

impl fmt::Display for FieldMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FieldMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = Option::<String>::deserialize(d)?.unwrap_or_default();
        match name.trim().to_ascii_uppercase().as_str() {
            "" | "NULLABLE" => Ok(FieldMode::Nullable),
            "REQUIRED" => Ok(FieldMode::Required),
            "REPEATED" => Ok(FieldMode::Repeated),
            other => {
                Err(serde::de::Error::custom(format!("column mode `{other}` is not NULLABLE, REQUIRED or REPEATED")))
            }
        }
    }
}

impl TableField {
    pub fn new(name: impl Into<String>, field_type: FieldType, mode: FieldMode) -> TableField {
        TableField { name: name.into(), field_type, mode, fields: Vec::new() }
    }

    pub fn record(name: impl Into<String>, mode: FieldMode, fields: Vec<TableField>) -> TableField {
        TableField { name: name.into(), field_type: FieldType::Record, mode, fields }
    }
}

impl TableSchema {
    /// A column by name (BigQuery column names are case-insensitive).
    pub fn field(&self, name: &str) -> Option<&TableField> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// How a Connect schema becomes a table schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// `sanitizeFieldNames`: invalid characters become `_`, a leading
    /// character that is not a letter or `_` gets a `_` in front.
    pub sanitize_field_names: bool,
    /// Every field NULLABLE (`allBQFieldsNullable`; Confluent V2's tables).
    pub all_nullable: bool,
}

/// Why a schema cannot become a table schema; names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

/// `sanitizeFieldNames`' rule (Confluent's `FieldNameSanitizer`): every
/// character outside `[A-Za-z0-9_]` becomes `_`, and a name that does not
/// then start with a letter or `_` gets a `_` in front. `a.b` and `a-b`
/// both become `a_b`: [`from_connect`] refuses such a collision by name.
pub fn sanitize_field_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// `sanitizeTopics`' rule for a table name from a topic: every character
/// outside `[A-Za-z0-9_]` becomes `_` (BigQuery table names may start with
/// a digit, so nothing is prefixed).
pub fn sanitize_table_name(topic: &str) -> String {
    topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Whether `name` is a valid BigQuery column name as it is (letters, digits,
/// `_`, not starting with a digit, at most 300 characters).
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 300
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The table schema of a record's value schema (a struct).
pub fn from_connect(schema: &Schema, options: &ConvertOptions) -> Result<TableSchema, SchemaError> {
    if schema.kind != SchemaType::Struct {
        return Err(SchemaError(format!(
            "the record's value schema is a {:?}, not a struct: BigQuery rows need named fields (use a struct \
             schema, or bigquery.schema with schemaless JSON)",
            schema.kind
        )));
    }
    Ok(TableSchema { fields: struct_fields(schema, "", options)? })
}

fn struct_fields(schema: &Schema, path: &str, options: &ConvertOptions) -> Result<Vec<TableField>, SchemaError> {
    let mut fields: Vec<TableField> = Vec::new();
    for f in &schema.fields {
        let name = if options.sanitize_field_names { sanitize_field_name(&f.name) } else { f.name.clone() };
        let field_path = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
        if !is_valid_field_name(&name) {
            return Err(SchemaError(format!(
                "field `{field_path}`: `{name}` is not a valid BigQuery column name (letters, digits and _, not \
                 starting with a digit): set sanitizeFieldNames=true or rename it with a transform"
            )));
        }
        if let Some(other) = fields.iter().find(|g| g.name.eq_ignore_ascii_case(&name)) {
            return Err(SchemaError(format!(
                "field `{field_path}` becomes column `{name}`, which another field already became (`{}`): \
                 BigQuery column names are case-insensitive; rename one with a transform",
                other.name
            )));
        }
        if let Some(field) = convert_field(&f.schema, name, &field_path, options)? {
            fields.push(field);
        }
    }
    Ok(fields)
}

fn convert_field(
    schema: &Schema,
    name: String,
    path: &str,
    options: &ConvertOptions,
) -> Result<Option<TableField>, SchemaError> {
    let mode = if schema.optional || options.all_nullable { FieldMode::Nullable } else { FieldMode::Required };
    if let Some(logical) = schema.logical() {
        let field_type = match logical {
            Logical::Decimal { scale } => {
                let precision: Option<u32> =
                    schema.parameters.get("connect.decimal.precision").and_then(|p| p.trim().parse().ok());
                // NUMERIC holds 38 digits with at most 9 after the point.
                if scale > 9 || precision.is_some_and(|p| p > 38) || scale < 0 {
                    FieldType::BigNumeric
                } else {
                    FieldType::Numeric
                }
            }
            Logical::Timestamp => FieldType::Timestamp,
            Logical::Date => FieldType::Date,
            Logical::Time => FieldType::Time,
        };
        return Ok(Some(TableField::new(name, field_type, mode)));
    }
    let primitive = |t| Ok(Some(TableField::new(name.clone(), t, mode)));
    match schema.kind {
        SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64 => primitive(FieldType::Integer),
        SchemaType::Float | SchemaType::Double => primitive(FieldType::Float),
        SchemaType::Boolean => primitive(FieldType::Boolean),
        SchemaType::String => primitive(FieldType::String),
        SchemaType::Bytes => primitive(FieldType::Bytes),
        SchemaType::Struct => {
            let fields = struct_fields(schema, path, options)?;
            // As Confluent: a struct without fields has no column.
            Ok((!fields.is_empty()).then(|| TableField::record(name, mode, fields)))
        }
        SchemaType::Array => {
            let Some(items) = schema.items.as_deref() else {
                return Err(SchemaError(format!("field `{path}`: an array schema without `items`")));
            };
            if matches!(items.kind, SchemaType::Array) {
                return Err(SchemaError(format!(
                    "field `{path}`: an array of arrays, which BigQuery cannot store (REPEATED of REPEATED); wrap \
                     the inner array in a struct"
                )));
            }
            Ok(convert_field(items, name, path, options)?.map(|mut f| {
                f.mode = FieldMode::Repeated;
                f
            }))
        }
        SchemaType::Map => {
            let (Some(keys), Some(values)) = (schema.keys.as_deref(), schema.values.as_deref()) else {
                return Err(SchemaError(format!("field `{path}`: a map schema without `keys` or `values`")));
            };
            let key = convert_field(keys, "key".into(), &format!("{path}.key"), options)?;
            let value = convert_field(values, "value".into(), &format!("{path}.value"), options)?;
            Ok(match (key, value) {
                (Some(k), Some(v)) => Some(TableField::record(name, FieldMode::Repeated, vec![k, v])),
                _ => None,
            })
        }
    }
}

/// The `kafkaDataFieldName` column (Confluent's `KafkaDataBuilder`): a
/// NULLABLE RECORD of `topic` STRING, `partition` INTEGER, `offset`
/// INTEGER, `insertTime` TIMESTAMP.
pub fn kafka_data_field(name: &str) -> TableField {
    TableField::record(
        sanitize_field_name(name),
        FieldMode::Nullable,
        vec![
            TableField::new("topic", FieldType::String, FieldMode::Nullable),
            TableField::new("partition", FieldType::Integer, FieldMode::Nullable),
            TableField::new("offset", FieldType::Integer, FieldMode::Nullable),
            TableField::new("insertTime", FieldType::Timestamp, FieldMode::Nullable),
        ],
    )
}

/// The `kafkaKeyFieldName` column: the key's schema converted (a struct
/// key becomes a RECORD, a primitive a typed column), always NULLABLE
/// (tombstones and null keys exist); a key without schema is kept as its
/// text, STRING.
pub fn kafka_key_field(
    name: &str,
    key_schema: Option<&Schema>,
    options: &ConvertOptions,
) -> Result<Option<TableField>, SchemaError> {
    let name = sanitize_field_name(name);
    let Some(schema) = key_schema else {
        return Ok(Some(TableField::new(name, FieldType::String, FieldMode::Nullable)));
    };
    let field = convert_field(schema, name.clone(), &name, options)?;
    Ok(field.map(|mut f| {
        if f.mode == FieldMode::Required {
            f.mode = FieldMode::Nullable;
        }
        f
    }))
}

/// A record's full table schema: its value's fields, then the key column
/// and the Kafka metadata column when configured. A value field with the
/// same name as one of those is refused, naming both.
pub fn record_table_schema(
    value: TableSchema,
    key: Option<TableField>,
    kafka_data: Option<TableField>,
) -> Result<TableSchema, SchemaError> {
    let mut schema = value;
    for (extra, key_name) in [(key, "kafkaKeyFieldName"), (kafka_data, "kafkaDataFieldName")] {
        if let Some(extra) = extra {
            if schema.field(&extra.name).is_some() {
                return Err(SchemaError(format!(
                    "the record already has a field `{}`, the column {key_name} names: choose another {key_name}",
                    extra.name
                )));
            }
            schema.fields.push(extra);
        }
    }
    Ok(schema)
}

/// A `bigquery.schema` value: BigQuery's own JSON, either the fields array
/// (as `bq show --schema` prints it) or `{"fields": […]}`.
pub fn parse_bigquery_schema(json: &str) -> Result<TableSchema, SchemaError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| SchemaError(format!("bigquery.schema is not JSON: {e}")))?;
    let schema: TableSchema = if value.is_array() {
        serde_json::from_value(serde_json::json!({ "fields": value }))
    } else {
        serde_json::from_value(value)
    }
    .map_err(|e| {
        SchemaError(format!("bigquery.schema is not a BigQuery schema (a fields array of name/type/mode): {e}"))
    })?;
    if schema.fields.is_empty() {
        return Err(SchemaError("bigquery.schema has no fields".into()));
    }
    check_fields(&schema.fields, "")?;
    Ok(schema)
}

fn check_fields(fields: &[TableField], path: &str) -> Result<(), SchemaError> {
    for (i, f) in fields.iter().enumerate() {
        let p = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
        if !is_valid_field_name(&f.name) {
            return Err(SchemaError(format!(
                "bigquery.schema: `{p}` is not a valid column name (letters, digits and _, not starting with a digit)"
            )));
        }
        if fields[..i].iter().any(|g| g.name.eq_ignore_ascii_case(&f.name)) {
            return Err(SchemaError(format!("bigquery.schema: column `{p}` appears twice")));
        }
        match (f.field_type, f.fields.is_empty()) {
            (FieldType::Record, true) => {
                return Err(SchemaError(format!("bigquery.schema: RECORD `{p}` has no fields")));
            }
            (FieldType::Record, false) => check_fields(&f.fields, &p)?,
            (t, false) => {
                return Err(SchemaError(format!("bigquery.schema: `{p}` is {t} but has fields; only a RECORD has")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the configuration allows a schema update to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvolutionPolicy {
    /// `allowNewBigQueryFields` (V2: `auto.update.schemas=ADD NEW FIELDS`).
    pub allow_new_fields: bool,
    /// `allowBigQueryRequiredFieldRelaxation`.
    pub allow_relaxation: bool,
    /// `allowSchemaUnionization`.
    pub allow_unionization: bool,
}

/// A table schema change the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaPatch {
    /// The table's schema after the change (send it with `tables.patch`).
    pub schema: TableSchema,
    /// Columns added (dotted paths), NULLABLE or REPEATED.
    pub added: Vec<String>,
    /// Columns relaxed from REQUIRED to NULLABLE (dotted paths).
    pub relaxed: Vec<String>,
}

/// Whether a record with schema `record` can be written to a table with
/// schema `table`, and what must change first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evolution {
    /// The record fits the table as it is.
    Fits,
    /// The table must be patched first; the policy allows it.
    Patch(SchemaPatch),
    /// The record does not fit and the policy (or BigQuery) does not allow
    /// the change: the message names the field and what to set.
    Refused(String),
}

/// The schema evolution decision (Confluent's `SchemaManager` rules, where
/// BigQuery allows them):
///
/// - a record field the table lacks: added as NULLABLE (REPEATED stays
///   REPEATED) with `allow_new_fields`; a REQUIRED one also needs
///   `allow_relaxation` (BigQuery adds no REQUIRED column to a table that
///   has rows);
/// - a REQUIRED column the record lacks or has optional: relaxed to
///   NULLABLE with `allow_relaxation`;
/// - a NULLABLE column the record lacks: fine as it is;
/// - a type or REPEATED mismatch: refused (BigQuery cannot change them).
///
/// Columns are never dropped (`tables.patch` refuses it), so a patch is
/// always the union of both schemas: without `allow_unionization`,
/// Confluent proposes the record's schema alone and BigQuery then refuses
/// it when the record lacks a column; here the columns stay and the
/// decision is the same as with it (docs/decisions/0005).
pub fn plan_evolution(table: &TableSchema, record: &TableSchema, policy: EvolutionPolicy) -> Evolution {
    let mut added = Vec::new();
    let mut relaxed = Vec::new();
    match merge_fields(&table.fields, &record.fields, "", policy, &mut added, &mut relaxed) {
        Err(message) => Evolution::Refused(message),
        Ok(_) if added.is_empty() && relaxed.is_empty() => Evolution::Fits,
        Ok(fields) => Evolution::Patch(SchemaPatch { schema: TableSchema { fields }, added, relaxed }),
    }
}

fn merge_fields(
    table: &[TableField],
    record: &[TableField],
    path: &str,
    policy: EvolutionPolicy,
    added: &mut Vec<String>,
    relaxed: &mut Vec<String>,
) -> Result<Vec<TableField>, String> {
    let join = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    let mut out = Vec::with_capacity(table.len());
    for column in table {
        let p = join(&column.name);
        let mut merged = column.clone();
        match record.iter().find(|f| f.name.eq_ignore_ascii_case(&column.name)) {
            None => {
                if column.mode == FieldMode::Required {
                    if !policy.allow_relaxation {
                        return Err(format!(
                            "column `{p}` is REQUIRED in the table but the record has no such field: set \
                             allowBigQueryRequiredFieldRelaxation=true to make it NULLABLE"
                        ));
                    }
                    merged.mode = FieldMode::Nullable;
                    relaxed.push(p);
                }
            }
            Some(field) => {
                if field.field_type != column.field_type {
                    return Err(format!(
                        "field `{p}` is {} in the record but the column is {}: BigQuery cannot change a column's \
                         type; write it to another table (topic2TableMap) or cast it with a transform",
                        field.field_type, column.field_type
                    ));
                }
                if (field.mode == FieldMode::Repeated) != (column.mode == FieldMode::Repeated) {
                    return Err(format!(
                        "field `{p}` is {} in the record but the column is {}: BigQuery cannot change that",
                        field.mode, column.mode
                    ));
                }
                if column.mode == FieldMode::Required && field.mode == FieldMode::Nullable {
                    if !policy.allow_relaxation {
                        return Err(format!(
                            "field `{p}` is optional in the record but REQUIRED in the table: set \
                             allowBigQueryRequiredFieldRelaxation=true to make the column NULLABLE"
                        ));
                    }
                    merged.mode = FieldMode::Nullable;
                    relaxed.push(p.clone());
                }
                if column.field_type == FieldType::Record {
                    merged.fields = merge_fields(&column.fields, &field.fields, &p, policy, added, relaxed)?;
                }
            }
        }
        out.push(merged);
    }
    for field in record {
        if table.iter().any(|c| c.name.eq_ignore_ascii_case(&field.name)) {
            continue;
        }
        let p = join(&field.name);
        if !policy.allow_new_fields {
            return Err(format!(
                "field `{p}` is not a column of the table: set allowNewBigQueryFields=true (auto.update.schemas=ADD \
                 NEW FIELDS) to add it as a NULLABLE column"
            ));
        }
        if field.mode == FieldMode::Required && !policy.allow_relaxation {
            return Err(format!(
                "field `{p}` is new and REQUIRED, but BigQuery only adds NULLABLE columns: set \
                 allowBigQueryRequiredFieldRelaxation=true to add it as NULLABLE"
            ));
        }
        added.push(p);
        out.push(relax_all(field.clone()));
    }
    Ok(out)
}

/// A new column: REQUIRED becomes NULLABLE all the way down.
fn relax_all(mut field: TableField) -> TableField {
    if field.mode == FieldMode::Required {
        field.mode = FieldMode::Nullable;
    }
    field.fields = field.fields.into_iter().map(relax_all).collect();
    field
}

/// A record's value as a BigQuery JSON row (`insertAll`'s `json`), from
/// the payload JsonConverter wrote and its Connect schema (Confluent's
/// `BigQueryRecordConverter`): Decimal (base64 unscaled bytes, or a
/// number) → its decimal text; Timestamp (ms) → RFC 3339 in UTC with
/// milliseconds (the emulator reads numbers as microseconds, BigQuery as
/// seconds, so text is the one both read alike); Date (days) →
/// `YYYY-MM-DD`; Time (ms of the day) → `HH:MM:SS.mmm`; a map → `key` /
/// `value` records; bytes stay base64. Field names follow
/// `sanitize_field_names` as [`from_connect`] does. An error names the
/// field's path and what is wrong.
pub fn connect_row(value: &Value, schema: &Schema, sanitize_field_names: bool) -> Result<Map<String, Value>, String> {
    if schema.kind != SchemaType::Struct {
        return Err(format!("the value schema is a {:?}, not a struct", schema.kind));
    }
    if value.is_null() {
        return Err("the value is null (a tombstone): there is no row to write".into());
    }
    match connect_value(value, schema, "", sanitize_field_names)? {
        Value::Object(row) => Ok(row),
        Value::Null => Err("the value is null (a tombstone): there is no row to write".into()),
        other => Err(format!("the value is {other}, not an object")),
    }
}

fn connect_value(value: &Value, schema: &Schema, path: &str, sanitize: bool) -> Result<Value, String> {
    let at = || if path.is_empty() { "the value".to_string() } else { format!("field `{path}`") };
    if value.is_null() {
        return match &schema.default {
            Some(d) if !d.is_null() => connect_value(d, schema, path, sanitize),
            _ if schema.optional => Ok(Value::Null),
            _ => Err(format!("{} is null but its schema is not optional", at())),
        };
    }
    if let Some(logical) = schema.logical() {
        return logical_value(value, logical).map_err(|e| format!("{}: {e}", at()));
    }
    let wrong = |want: &str| format!("{} should be {want} (its schema is {:?}) but is {value}", at(), schema.kind);
    match schema.kind {
        SchemaType::Int8 | SchemaType::Int16 | SchemaType::Int32 | SchemaType::Int64 => {
            value.as_i64().map(Value::from).ok_or_else(|| wrong("an integer"))
        }
        SchemaType::Float | SchemaType::Double => match value {
            Value::Number(_) => Ok(value.clone()),
            // JsonConverter writes the special values as text.
            Value::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => Ok(value.clone()),
            _ => Err(wrong("a number")),
        },
        SchemaType::Boolean => value.as_bool().map(Value::from).ok_or_else(|| wrong("true or false")),
        SchemaType::String | SchemaType::Bytes => value.as_str().map(Value::from).ok_or_else(|| wrong("a string")),
        SchemaType::Struct => {
            let object = value.as_object().ok_or_else(|| wrong("an object"))?;
            let mut row = Map::new();
            for f in &schema.fields {
                let p = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
                let name = if sanitize { sanitize_field_name(&f.name) } else { f.name.clone() };
                let v = connect_value(object.get(&f.name).unwrap_or(&Value::Null), &f.schema, &p, sanitize)?;
                if !v.is_null() {
                    row.insert(name, v);
                }
            }
            Ok(Value::Object(row))
        }
        SchemaType::Array => {
            let items = schema.items.as_deref().ok_or_else(|| format!("{}: an array schema without items", at()))?;
            let list = value.as_array().ok_or_else(|| wrong("an array"))?;
            let out: Result<Vec<Value>, String> = list
                .iter()
                .enumerate()
                .map(|(i, v)| connect_value(v, items, &format!("{path}[{i}]"), sanitize))
                .collect();
            // BigQuery has no null elements in a REPEATED column.
            Ok(Value::Array(out?.into_iter().filter(|v| !v.is_null()).collect()))
        }
        SchemaType::Map => {
            let (Some(ks), Some(vs)) = (schema.keys.as_deref(), schema.values.as_deref()) else {
                return Err(format!("{}: a map schema without keys or values", at()));
            };
            // JsonConverter writes string-keyed maps as objects, others as [key, value] pairs.
            let pairs: Vec<(Value, &Value)> = match value {
                Value::Object(o) => o.iter().map(|(k, v)| (Value::from(k.as_str()), v)).collect(),
                Value::Array(a) => a
                    .iter()
                    .map(|p| match p.as_array().map(Vec::as_slice) {
                        Some([k, v]) => Ok((k.clone(), v)),
                        _ => Err(wrong("a map (an object, or [key, value] pairs)")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(wrong("a map (an object, or [key, value] pairs)")),
            };
            let mut out = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = connect_value(&k, ks, &format!("{path}.key"), sanitize)?;
                let value = connect_value(v, vs, &format!("{path}.value"), sanitize)?;
                let mut entry = Map::new();
                entry.insert("key".into(), key);
                if !value.is_null() {
                    entry.insert("value".into(), value);
                }
                out.push(Value::Object(entry));
            }
            Ok(Value::Array(out))
        }
    }
}

fn logical_value(value: &Value, logical: Logical) -> Result<Value, String> {
    match logical {
        Logical::Decimal { scale } => match value {
            Value::String(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("a Decimal should be base64 bytes ({e})"))?;
                Ok(Value::from(decimal_text(&bytes, scale)))
            }
            // decimal.format=NUMERIC writes the number itself.
            Value::Number(n) => Ok(Value::from(n.to_string())),
            other => Err(format!("a Decimal should be base64 bytes or a number, not {other}")),
        },
        Logical::Timestamp => {
            let ms = value.as_i64().ok_or_else(|| format!("a Timestamp should be milliseconds, not {value}"))?;
            let t =
                chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} is out of range"))?;
            Ok(Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
        }
        Logical::Date => {
            let days = value.as_i64().ok_or_else(|| format!("a Date should be days since 1970-01-01, not {value}"))?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("no epoch")?;
            let d = epoch
                .checked_add_signed(chrono::TimeDelta::days(days))
                .ok_or_else(|| format!("date {days} is out of range"))?;
            Ok(Value::from(d.format("%Y-%m-%d").to_string()))
        }
        Logical::Time => {
            let ms = value.as_i64().filter(|ms| (0..86_400_000).contains(ms));
            let ms = ms.ok_or_else(|| format!("a Time should be milliseconds of the day, not {value}"))?;
            Ok(Value::from(format!(
                "{:02}:{:02}:{:02}.{:03}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            )))
        }
    }
}

/// A record key's value for the `kafkaKeyFieldName` column, by the key's
/// Connect schema (any kind: a struct key becomes a RECORD value).
pub fn connect_key(value: &Value, schema: &Schema, sanitize_field_names: bool) -> Result<Value, String> {
    connect_value(value, &Schema { optional: true, ..schema.clone() }, "key", sanitize_field_names)
}

/// The decimal text of a big-endian two's-complement unscaled value with
/// `scale` digits after the point (any length: BIGNUMERIC needs 32 bytes).
pub fn decimal_text(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = bytes.to_vec();
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = String::from_utf8(digits).unwrap_or_default();
    if scale > 0 {
        let scale = scale as usize;
        if text.len() <= scale {
            text = format!("{}{text}", "0".repeat(scale - text.len() + 1));
        }
        text.insert(text.len() - scale, '.');
    } else if scale < 0 && text != "0" {
        text.push_str(&"0".repeat(scale.unsigned_abs() as usize));
    }
    if negative && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        text.insert(0, '-');
    }
    text
}

/// A schemaless record's JSON object as a row: with `sanitize_field_names`
/// every key (nested objects' too) follows [`sanitize_field_name`], and two
/// keys becoming one is refused naming both.
pub fn schemaless_row(value: &Value, sanitize_field_names: bool) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(o) if !sanitize_field_names => Ok(o.clone()),
        Value::Object(o) => sanitize_keys(o, ""),
        Value::Null => Err("the value is null (a tombstone): there is no row to write".into()),
        other => Err(format!("the value is {other}, not a JSON object: BigQuery rows need named fields")),
    }
}

fn sanitize_keys(o: &Map<String, Value>, path: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in o {
        let name = sanitize_field_name(k);
        let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        let v = match v {
            Value::Object(inner) => Value::Object(sanitize_keys(inner, &p)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(inner) => sanitize_keys(inner, &p).map(Value::Object),
                        other => Ok(other.clone()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        };
        if out.insert(name.clone(), v).is_some() {
            return Err(format!("field `{p}` becomes `{name}` with sanitizeFieldNames, as another field does"));
        }
    }
    Ok(out)
}

/// The table schema a schemaless JSON row suggests, for creating a missing
/// table from the first row (docs/decisions/0007): the types BigQuery's
/// own schema auto-detection gives JSON values — an integer that fits
/// int64 INTEGER, another number FLOAT, true/false BOOLEAN, text STRING,
/// an object RECORD, an array REPEATED of its first non-null element's
/// type — every column NULLABLE (as Confluent V2 creates them). A value
/// whose type cannot be told (null, an empty array) becomes STRING, the
/// column that accepts text, numbers and booleans alike; an empty object
/// or an array of arrays gets no column (BigQuery has none for them), so a
/// record carrying one goes to the DLQ naming the field.
pub fn infer_from_json(row: &Map<String, Value>) -> TableSchema {
    TableSchema { fields: infer_fields(row) }
}

fn infer_fields(row: &Map<String, Value>) -> Vec<TableField> {
    row.iter().filter_map(|(name, v)| infer_field(name, v, FieldMode::Nullable)).collect()
}

fn infer_field(name: &str, v: &Value, mode: FieldMode) -> Option<TableField> {
    let field_type = match v {
        Value::Null => FieldType::String,
        Value::Bool(_) => FieldType::Boolean,
        Value::Number(n) if n.is_i64() => FieldType::Integer,
        Value::Number(_) => FieldType::Float,
        Value::String(_) => FieldType::String,
        Value::Object(o) => {
            let fields = infer_fields(o);
            return (!fields.is_empty()).then(|| TableField::record(name, mode, fields));
        }
        Value::Array(items) => {
            if mode == FieldMode::Repeated {
                return None;
            }
            return match items.iter().find(|i| !i.is_null()) {
                Some(first) => infer_field(name, first, FieldMode::Repeated),
                None => Some(TableField::new(name, FieldType::String, FieldMode::Repeated)),
            };
        }
    };
    Some(TableField::new(name, field_type, mode))
}

/// The `kafkaDataFieldName` value: topic, partition, offset, and the time
/// the row was written (ms since the epoch, as RFC 3339).
pub fn kafka_data_value(topic: &str, partition: i32, offset: i64, insert_time_ms: i64) -> Value {
    let insert_time = chrono::DateTime::from_timestamp_millis(insert_time_ms)
        .map(|t| Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
        .unwrap_or(Value::Null);
    serde_json::json!({"topic": topic, "partition": partition, "offset": offset, "insertTime": insert_time})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schemaless_row_suggests_nullable_columns_by_json_type() {
        let row = serde_json::json!({
            "id": 7, "price": 9.5, "big": 18446744073709551615u64, "paid": true, "customer": "c1", "note": null,
            "address": {"city": "Bern", "zip": 3000, "empty": {}},
            "tags": ["a", "b"], "lines": [null, {"sku": "x", "qty": 2}], "none": [], "matrix": [[1]], "gone": {}
        });
        let schema = infer_from_json(row.as_object().unwrap());
        let n = FieldMode::Nullable;
        let r = FieldMode::Repeated;
        let want = vec![
            TableField::record(
                "address",
                n,
                vec![TableField::new("city", FieldType::String, n), TableField::new("zip", FieldType::Integer, n)],
            ),
            TableField::new("big", FieldType::Float, n),
            TableField::new("customer", FieldType::String, n),
            TableField::new("id", FieldType::Integer, n),
            TableField::record(
                "lines",
                r,
                vec![TableField::new("qty", FieldType::Integer, n), TableField::new("sku", FieldType::String, n)],
            ),
            TableField::new("none", FieldType::String, r),
            TableField::new("note", FieldType::String, n),
            TableField::new("paid", FieldType::Boolean, n),
            TableField::new("price", FieldType::Float, n),
            TableField::new("tags", FieldType::String, r),
        ];
        assert_eq!(schema.fields, want);
    }

    fn parse(json: &str) -> Schema {
        Schema::parse(json).unwrap()
    }

    fn f(name: &str, t: FieldType, m: FieldMode) -> TableField {
        TableField::new(name, t, m)
    }

    use FieldMode::{Nullable as N, Repeated as Rep, Required as R};
    use FieldType as T;

    #[test]
    fn rest_json_round_trips_and_synonyms_are_read() {
        let json = r#"{"fields":[{"name":"id","type":"INT64","mode":"REQUIRED"},{"name":"x","type":"FLOAT64"},
            {"name":"ok","type":"BOOL","mode":"NULLABLE"},{"name":"a","type":"STRUCT","mode":"REPEATED",
             "fields":[{"name":"b","type":"bignumeric"}]},{"name":"j","type":"JSON","description":"kept out"}]}"#;
        let schema: TableSchema = serde_json::from_str(json).unwrap();
        assert_eq!(
            schema.fields,
            vec![
                f("id", T::Integer, R),
                f("x", T::Float, N),
                f("ok", T::Boolean, N),
                TableField::record("a", Rep, vec![f("b", T::BigNumeric, N)]),
                f("j", T::Json, N),
            ]
        );
        let out = serde_json::to_value(&schema).unwrap();
        assert_eq!(out["fields"][0], serde_json::json!({"name":"id","type":"INTEGER","mode":"REQUIRED"}));
        assert_eq!(out["fields"][3]["type"], "RECORD");
        assert_eq!(
            out["fields"][3]["fields"][0],
            serde_json::json!({"name":"b","type":"BIGNUMERIC","mode":"NULLABLE"})
        );
        let e = serde_json::from_str::<TableSchema>(r#"{"fields":[{"name":"g","type":"GEOGRAPHY"}]}"#).unwrap_err();
        assert!(e.to_string().contains("GEOGRAPHY"), "{e}");
    }

    #[test]
    fn connect_schemas_map_as_confluent_does() {
        let schema = parse(
            r#"{"type":"struct","fields":[
            {"field":"i8","type":"int8"},{"field":"i64","type":"int64","optional":true},
            {"field":"f","type":"float"},{"field":"d","type":"double"},{"field":"b","type":"boolean"},
            {"field":"s","type":"string","optional":true},{"field":"raw","type":"bytes"},
            {"field":"amount","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
            {"field":"big","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"60"}},
            {"field":"fine","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"12"}},
            {"field":"at","type":"int64","name":"org.apache.kafka.connect.data.Timestamp","optional":true},
            {"field":"day","type":"int32","name":"org.apache.kafka.connect.data.Date"},
            {"field":"tod","type":"int32","name":"org.apache.kafka.connect.data.Time"},
            {"field":"tags","type":"array","items":{"type":"string"}},
            {"field":"attrs","type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"int32","optional":true}},
            {"field":"addr","type":"struct","optional":true,"fields":[{"field":"city","type":"string"}]},
            {"field":"empty","type":"struct","fields":[]},
            {"field":"lines","type":"array","items":{"type":"struct","fields":[{"field":"sku","type":"string"}]}}
        ]}"#,
        );
        let t = from_connect(&schema, &ConvertOptions::default()).unwrap();
        assert_eq!(
            t.fields,
            vec![
                f("i8", T::Integer, R),
                f("i64", T::Integer, N),
                f("f", T::Float, R),
                f("d", T::Float, R),
                f("b", T::Boolean, R),
                f("s", T::String, N),
                f("raw", T::Bytes, R),
                f("amount", T::Numeric, R),
                f("big", T::BigNumeric, R),
                f("fine", T::BigNumeric, R),
                f("at", T::Timestamp, N),
                f("day", T::Date, R),
                f("tod", T::Time, R),
                f("tags", T::String, Rep),
                TableField::record("attrs", Rep, vec![f("key", T::String, R), f("value", T::Integer, N)]),
                TableField::record("addr", N, vec![f("city", T::String, R)]),
                TableField::record("lines", Rep, vec![f("sku", T::String, R)]),
            ]
        );
        let all = from_connect(&schema, &ConvertOptions { all_nullable: true, ..Default::default() }).unwrap();
        assert_eq!(all.fields[0].mode, N);
        assert_eq!(all.fields[13].mode, Rep);
    }

    #[test]
    fn bad_schemas_are_refused_naming_the_field() {
        let e = from_connect(&parse(r#"{"type":"string"}"#), &ConvertOptions::default()).unwrap_err();
        assert!(e.0.contains("not a struct"), "{e}");
        let nested = parse(
            r#"{"type":"struct","fields":[{"field":"o","type":"struct","fields":[
            {"field":"m","type":"array","items":{"type":"array","items":{"type":"int32"}}}]}]}"#,
        );
        let e = from_connect(&nested, &ConvertOptions::default()).unwrap_err();
        assert!(e.0.contains("`o.m`") && e.0.contains("array of arrays"), "{e}");
        let dotted = parse(r#"{"type":"struct","fields":[{"field":"a.b","type":"int32"}]}"#);
        let e = from_connect(&dotted, &ConvertOptions::default()).unwrap_err();
        assert!(e.0.contains("`a.b`") && e.0.contains("sanitizeFieldNames=true"), "{e}");
        let sanitize = ConvertOptions { sanitize_field_names: true, ..Default::default() };
        assert_eq!(from_connect(&dotted, &sanitize).unwrap().fields[0].name, "a_b");
        let clash =
            parse(r#"{"type":"struct","fields":[{"field":"a.b","type":"int32"},{"field":"a-b","type":"int32"}]}"#);
        let e = from_connect(&clash, &sanitize).unwrap_err();
        assert!(e.0.contains("`a-b`") && e.0.contains("a_b"), "{e}");
    }

    #[test]
    fn names_are_sanitized_as_confluent_does() {
        for (raw, want) in [("A.1", "A_1"), ("_B1", "_B1"), ("2A/", "_2A_"), ("=/B.3", "__B_3"), ("ok", "ok")] {
            assert_eq!(sanitize_field_name(raw), want, "{raw}");
            assert!(is_valid_field_name(&sanitize_field_name(raw)));
        }
        assert_eq!(sanitize_table_name("hybris.orders-v2"), "hybris_orders_v2");
        assert_eq!(sanitize_table_name("2024_orders"), "2024_orders");
        assert!(!is_valid_field_name("9lives") && !is_valid_field_name("") && !is_valid_field_name("a b"));
    }

    #[test]
    fn kafka_key_and_data_columns() {
        let data = kafka_data_field("kafka.meta");
        assert_eq!(data.name, "kafka_meta");
        assert_eq!(data.mode, N);
        let names: Vec<&str> = data.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["topic", "partition", "offset", "insertTime"]);
        assert_eq!(data.fields[3].field_type, T::Timestamp);
        let options = ConvertOptions::default();
        let key = parse(r#"{"type":"struct","fields":[{"field":"code","type":"string"}]}"#);
        let k = kafka_key_field("key", Some(&key), &options).unwrap().unwrap();
        assert_eq!(k, TableField::record("key", N, vec![f("code", T::String, R)]));
        let k = kafka_key_field("key", Some(&parse(r#"{"type":"int64"}"#)), &options).unwrap().unwrap();
        assert_eq!(k, f("key", T::Integer, N));
        assert_eq!(kafka_key_field("key", None, &options).unwrap().unwrap(), f("key", T::String, N));
        let value = TableSchema { fields: vec![f("id", T::Integer, R)] };
        let full = record_table_schema(value.clone(), Some(k.clone()), Some(data.clone())).unwrap();
        assert_eq!(full.fields.len(), 3);
        let e = record_table_schema(value, Some(f("ID", T::String, N)), None).unwrap_err();
        assert!(e.0.contains("kafkaKeyFieldName"), "{e}");
    }

    #[test]
    fn bigquery_schema_key_reads_both_shapes_and_refuses_nonsense() {
        let a =
            parse_bigquery_schema(r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},{"name":"n","type":"STRING"}]"#)
                .unwrap();
        let b = parse_bigquery_schema(
            r#"{"fields":[{"name":"id","type":"INT64","mode":"REQUIRED"},{"name":"n","type":"STRING"}]}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        for (bad, says) in [
            ("nope", "not JSON"),
            ("[]", "no fields"),
            (r#"[{"name":"x","type":"RECORD"}]"#, "has no fields"),
            (r#"[{"name":"x","type":"STRING","fields":[{"name":"y","type":"STRING"}]}]"#, "only a RECORD"),
            (r#"[{"name":"x y","type":"STRING"}]"#, "`x y`"),
            (r#"[{"name":"x","type":"STRING"},{"name":"X","type":"STRING"}]"#, "twice"),
            (r#"[{"name":"x","type":"GEOGRAPHY"}]"#, "GEOGRAPHY"),
        ] {
            let e = parse_bigquery_schema(bad).unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
    }

    fn schema(fields: Vec<TableField>) -> TableSchema {
        TableSchema { fields }
    }

    const ALL: EvolutionPolicy =
        EvolutionPolicy { allow_new_fields: true, allow_relaxation: true, allow_unionization: true };
    const NONE: EvolutionPolicy =
        EvolutionPolicy { allow_new_fields: false, allow_relaxation: false, allow_unionization: false };

    #[test]
    fn a_record_that_fits_needs_nothing() {
        let table = schema(vec![f("id", T::Integer, R), f("note", T::String, N)]);
        assert_eq!(plan_evolution(&table, &table, NONE), Evolution::Fits);
        // A NULLABLE column the record lacks, and a REQUIRED field into a NULLABLE column, fit.
        let record = schema(vec![f("ID", T::Integer, R)]);
        assert_eq!(plan_evolution(&table, &record, NONE), Evolution::Fits);
        let record = schema(vec![f("id", T::Integer, R), f("note", T::String, R)]);
        assert_eq!(plan_evolution(&table, &record, NONE), Evolution::Fits);
    }

    #[test]
    fn new_fields_are_added_nullable_only_when_allowed() {
        let table = schema(vec![f("id", T::Integer, R)]);
        let record = schema(vec![f("id", T::Integer, R), f("email", T::String, N), f("tags", T::String, Rep)]);
        let Evolution::Refused(why) = plan_evolution(&table, &record, NONE) else { panic!() };
        assert!(why.contains("`email`") && why.contains("allowNewBigQueryFields=true"), "{why}");
        let allow_new = EvolutionPolicy { allow_new_fields: true, ..NONE };
        let Evolution::Patch(patch) = plan_evolution(&table, &record, allow_new) else { panic!() };
        assert_eq!(patch.added, ["email", "tags"]);
        assert!(patch.relaxed.is_empty());
        assert_eq!(patch.schema, record);
        // A new REQUIRED field needs relaxation too, and is added NULLABLE all the way down.
        let record = schema(vec![f("id", T::Integer, R), TableField::record("addr", R, vec![f("city", T::String, R)])]);
        let Evolution::Refused(why) = plan_evolution(&table, &record, allow_new) else { panic!() };
        assert!(why.contains("`addr`") && why.contains("allowBigQueryRequiredFieldRelaxation=true"), "{why}");
        let Evolution::Patch(patch) = plan_evolution(&table, &record, ALL) else { panic!() };
        assert_eq!(patch.schema.fields[1], TableField::record("addr", N, vec![f("city", T::String, N)]));
    }

    #[test]
    fn required_columns_are_relaxed_only_when_allowed() {
        let table = schema(vec![f("id", T::Integer, R), f("name", T::String, R), f("code", T::String, R)]);
        let record = schema(vec![f("id", T::Integer, R), f("code", T::String, N)]);
        let Evolution::Refused(why) = plan_evolution(&table, &record, NONE) else { panic!() };
        assert!(why.contains("`name`") && why.contains("allowBigQueryRequiredFieldRelaxation=true"), "{why}");
        let relax = EvolutionPolicy { allow_relaxation: true, ..NONE };
        let Evolution::Patch(patch) = plan_evolution(&table, &record, relax) else { panic!() };
        assert_eq!(patch.relaxed, ["name", "code"]);
        assert!(patch.added.is_empty());
        assert_eq!(
            patch.schema,
            schema(vec![f("id", T::Integer, R), f("name", T::String, N), f("code", T::String, N)])
        );
    }

    #[test]
    fn nested_records_evolve_and_type_changes_are_refused() {
        let table = schema(vec![TableField::record("addr", N, vec![f("city", T::String, R)])]);
        let record = schema(vec![TableField::record("addr", N, vec![f("city", T::String, R), f("zip", T::String, N)])]);
        let Evolution::Patch(patch) =
            plan_evolution(&table, &record, EvolutionPolicy { allow_new_fields: true, ..NONE })
        else {
            panic!()
        };
        assert_eq!(patch.added, ["addr.zip"]);
        assert_eq!(patch.schema, record);
        let record = schema(vec![TableField::record("addr", N, vec![f("city", T::Integer, R)])]);
        let Evolution::Refused(why) = plan_evolution(&table, &record, ALL) else { panic!() };
        assert!(why.contains("`addr.city`") && why.contains("INTEGER") && why.contains("STRING"), "{why}");
        let record = schema(vec![TableField::record("addr", Rep, vec![f("city", T::String, R)])]);
        let Evolution::Refused(why) = plan_evolution(&table, &record, ALL) else { panic!() };
        assert!(why.contains("`addr`") && why.contains("REPEATED"), "{why}");
    }

    #[test]
    fn decimals_become_their_text_at_any_length() {
        assert_eq!(decimal_text(&[0x04, 0xD2], 2), "12.34");
        assert_eq!(decimal_text(&[0xFB, 0x2E], 2), "-12.34");
        assert_eq!(decimal_text(&[0x05], 3), "0.005");
        assert_eq!(decimal_text(&[0xFF], 0), "-1");
        assert_eq!(decimal_text(&[], 2), "0.00");
        assert_eq!(decimal_text(&[0x01], -2), "100");
        // 2^128 has 17 bytes: beyond i128, as BIGNUMERIC values are.
        let mut big = vec![0x01];
        big.extend([0u8; 16]);
        assert_eq!(decimal_text(&big, 0), "340282366920938463463374607431768211456");
    }

    #[test]
    fn connect_values_become_bigquery_json() {
        let schema = parse(
            r#"{"type":"struct","fields":[
            {"field":"id","type":"int64"},{"field":"a.b","type":"string","optional":true},
            {"field":"amount","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
            {"field":"at","type":"int64","name":"org.apache.kafka.connect.data.Timestamp"},
            {"field":"day","type":"int32","name":"org.apache.kafka.connect.data.Date"},
            {"field":"tod","type":"int32","name":"org.apache.kafka.connect.data.Time"},
            {"field":"attrs","type":"map","keys":{"type":"string"},"values":{"type":"int32"}},
            {"field":"ids","type":"map","keys":{"type":"int32"},"values":{"type":"string"}},
            {"field":"tags","type":"array","items":{"type":"string","optional":true}},
            {"field":"addr","type":"struct","optional":true,"fields":[{"field":"city","type":"string"}]},
            {"field":"flag","type":"boolean","optional":true,"default":true}
        ]}"#,
        );
        let value = serde_json::json!({"id": 7, "a.b": "x", "amount": "BNI=", "at": 1714557600123_i64, "day": 19844,
            "tod": 45296789, "attrs": {"k": 1}, "ids": [[1, "one"]], "tags": ["a", null, "b"], "addr": null});
        let row = connect_row(&value, &schema, true).unwrap();
        assert_eq!(
            Value::Object(row),
            serde_json::json!({"id": 7, "a_b": "x", "amount": "12.34", "at": "2024-05-01T10:00:00.123Z",
                "day": "2024-05-01", "tod": "12:34:56.789", "attrs": [{"key": "k", "value": 1}],
                "ids": [{"key": 1, "value": "one"}], "tags": ["a", "b"], "flag": true})
        );
        let mut bad = value.clone();
        bad["id"] = Value::Null;
        assert!(connect_row(&bad, &schema, false).unwrap_err().contains("field `id` is null"));
        let mut bad = value.clone();
        bad["addr"] = serde_json::json!({"city": 5});
        let e = connect_row(&bad, &schema, false).unwrap_err();
        assert!(e.contains("field `addr.city`") && e.contains("a string"), "{e}");
        assert!(connect_row(&Value::Null, &schema, false).unwrap_err().contains("tombstone"));
    }

    #[test]
    fn schemaless_rows_are_sanitized_on_request_and_metadata_is_filled() {
        let v = serde_json::json!({"a.b": 1, "n": {"x-y": [{"1z": 2}]}});
        assert_eq!(schemaless_row(&v, false).unwrap(), v.as_object().unwrap().clone());
        assert_eq!(
            Value::Object(schemaless_row(&v, true).unwrap()),
            serde_json::json!({"a_b": 1, "n": {"x_y": [{"_1z": 2}]}})
        );
        let e = schemaless_row(&serde_json::json!({"a.b": 1, "a-b": 2}), true).unwrap_err();
        assert!(e.contains("a_b"), "{e}");
        assert!(schemaless_row(&serde_json::json!([1]), false).is_err());
        assert_eq!(
            kafka_data_value("orders", 3, 42, 1714557600000),
            serde_json::json!({"topic": "orders", "partition": 3, "offset": 42, "insertTime": "2024-05-01T10:00:00.000Z"})
        );
    }
}
