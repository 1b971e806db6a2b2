//! Parquet objects from JSON values: a flat schema (given by `parquet.schema`
//! or inferred from the object's first record), rows buffered per column and
//! written as a row group whenever about a part's worth of values is
//! buffered; the file's bytes flow into the same part pipeline as the other
//! formats.
//!
//! Rows are parsed straight from the record's bytes into the column buffers
//! (`push_json`), and text columns keep their values end to end in one
//! buffer: a `serde_json::Value` and a few allocations per field made
//! malloc/free a third of the worker's CPU in dev/bench.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use parquet::{
    basic::{Compression as Codec, LogicalType, Repetition, Type as Physical, ZstdLevel},
    data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type},
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::types::Type,
};
use serde::de::DeserializeSeed;
use serde_json::Value;

mod row;
use row::RowSeed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Long,
    Double,
    Boolean,
    String,
    /// Objects and arrays, stored as their JSON text (a UTF8 column).
    Json,
}

impl ColType {
    fn parse(s: &str) -> Option<ColType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "long" | "int64" | "int" | "integer" => ColType::Long,
            "double" | "float" | "float64" => ColType::Double,
            "boolean" | "bool" => ColType::Boolean,
            "string" | "utf8" => ColType::String,
            "json" => ColType::Json,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            ColType::Long => "long",
            ColType::Double => "double",
            ColType::Boolean => "boolean",
            ColType::String => "string",
            ColType::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCodec {
    None,
    Snappy,
    Zstd,
}

impl ParquetCodec {
    pub fn extension(self) -> &'static str {
        match self {
            ParquetCodec::None => ".parquet",
            ParquetCodec::Snappy => ".snappy.parquet",
            ParquetCodec::Zstd => ".zstd.parquet",
        }
    }
}

/// Top-level fields in order; every column is optional (missing or null → null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<(String, ColType)>,
}

impl Schema {
    /// `name:type,name:type` with types long, double, boolean, string, json.
    pub fn parse(spec: &str) -> Result<Schema, String> {
        let mut fields = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, ty) = item.split_once(':').ok_or_else(|| format!("{item:?} is not name:type"))?;
            let ty = ColType::parse(ty)
                .ok_or_else(|| format!("{ty:?} (field {name}) is not one of long, double, boolean, string, json"))?;
            fields.push((name.trim().to_string(), ty));
        }
        if fields.is_empty() {
            return Err("no fields".into());
        }
        Ok(Schema { fields })
    }

    /// From a record's JSON object: integers → long, other numbers → double,
    /// booleans, strings, objects/arrays → json. Null fields become strings
    /// (their type is unknown).
    pub fn infer(value: &Value) -> Result<Schema, String> {
        let obj = value.as_object().ok_or("the value is not a JSON object (parquet rows are objects)")?;
        let fields = obj
            .iter()
            .map(|(k, v)| {
                let ty = match v {
                    Value::Number(n) if n.is_i64() => ColType::Long,
                    Value::Number(_) => ColType::Double,
                    Value::Bool(_) => ColType::Boolean,
                    Value::String(_) | Value::Null => ColType::String,
                    Value::Array(_) | Value::Object(_) => ColType::Json,
                };
                (k.clone(), ty)
            })
            .collect();
        Ok(Schema { fields })
    }

    fn parquet_type(&self) -> Result<Type, String> {
        let mut cols = Vec::new();
        for (name, ty) in &self.fields {
            let (physical, logical) = match ty {
                ColType::Long => (Physical::INT64, None),
                ColType::Double => (Physical::DOUBLE, None),
                ColType::Boolean => (Physical::BOOLEAN, None),
                ColType::String => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                ColType::Json => (Physical::BYTE_ARRAY, Some(LogicalType::Json)),
            };
            let t = Type::primitive_type_builder(name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map_err(|e| format!("parquet column {name}: {e}"))?;
            cols.push(Arc::new(t));
        }
        Type::group_type_builder("record").with_fields(cols).build().map_err(|e| format!("parquet schema: {e}"))
    }
}

enum Column {
    Long(Vec<i64>),
    Double(Vec<f64>),
    Boolean(Vec<bool>),
    /// Values laid end to end in `data`; value i ends at `ends[i]`.
    Bytes {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
}

impl Column {
    /// Drops values from index `len` on (undoing a half-read row).
    fn truncate(&mut self, len: usize) {
        match self {
            Column::Long(c) => c.truncate(len),
            Column::Double(c) => c.truncate(len),
            Column::Boolean(c) => c.truncate(len),
            Column::Bytes { data, ends } => {
                ends.truncate(len);
                data.truncate(ends.last().copied().unwrap_or(0));
            }
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if let Column::Bytes { data, ends } = self {
            data.extend_from_slice(bytes);
            ends.push(data.len());
        }
    }

    fn clear(&mut self) {
        self.truncate(0);
    }
}

/// The file writer's sink: shared so full parts can be taken between row groups.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().map_err(|_| std::io::Error::other("parquet buffer poisoned"))?;
        v.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct ParquetObject {
    schema: Schema,
    columns: Vec<(Column, Vec<i16>)>,
    /// Complete rows buffered: every column holds this many definition levels
    /// (one more while a row is being read), and as many values as 1s among them.
    rows: usize,
    row_group_bytes: usize,
    writer: SerializedFileWriter<SharedBuf>,
    out: SharedBuf,
}

impl ParquetObject {
    pub fn new(schema: Schema, codec: ParquetCodec, row_group_bytes: usize) -> Result<Self, String> {
        let compression = match codec {
            ParquetCodec::None => Codec::UNCOMPRESSED,
            ParquetCodec::Snappy => Codec::SNAPPY,
            ParquetCodec::Zstd => Codec::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder().set_compression(compression).build();
        let out = SharedBuf::default();
        let writer = SerializedFileWriter::new(out.clone(), Arc::new(schema.parquet_type()?), Arc::new(props))
            .map_err(|e| format!("starting a parquet file: {e}"))?;
        let columns = schema.fields.iter().map(|(_, t)| (Self::empty(*t), Vec::new())).collect();
        Ok(ParquetObject { schema, columns, rows: 0, row_group_bytes, writer, out })
    }

    fn empty(t: ColType) -> Column {
        match t {
            ColType::Long => Column::Long(Vec::new()),
            ColType::Double => Column::Double(Vec::new()),
            ColType::Boolean => Column::Boolean(Vec::new()),
            ColType::String | ColType::Json => Column::Bytes { data: Vec::new(), ends: Vec::new() },
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// A row already parsed (tests, and callers holding a `Value`).
    pub fn push(&mut self, value: &Value) -> Result<(), String> {
        self.push_json(value.to_string().as_bytes())
    }

    /// Parses one JSON object straight into the columns. A bad row (not an
    /// object, a value of the wrong type, a field twice, broken JSON)
    /// changes nothing. Text in `json` columns is kept as it came.
    pub fn push_json(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = RowSeed { object: self }.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| e.to_string());
        let rows = self.rows;
        if let Err(e) = parsed {
            // Undo the half-read row (error path only: counting is fine here).
            for (col, defs) in &mut self.columns {
                defs.truncate(rows);
                col.truncate(defs.iter().filter(|d| **d == 1).count());
            }
            return Err(e);
        }
        for (_, defs) in &mut self.columns {
            if defs.len() == rows {
                defs.push(0);
            }
        }
        self.rows += 1;
        if self.buffered_bytes() >= self.row_group_bytes {
            self.write_row_group()?;
        }
        Ok(())
    }

    /// Each value's bytes plus 8 per definition level and bookkeeping.
    fn buffered_bytes(&self) -> usize {
        let text: usize =
            self.columns.iter().map(|(c, _)| if let Column::Bytes { data, .. } = c { data.len() } else { 0 }).sum();
        text + self.rows * self.columns.len() * 8
    }

    fn write_row_group(&mut self) -> Result<(), String> {
        if self.rows == 0 {
            return Ok(());
        }
        let err = |e: parquet::errors::ParquetError| format!("writing a parquet row group: {e}");
        let mut rg = self.writer.next_row_group().map_err(err)?;
        for (col, defs) in &mut self.columns {
            let Some(mut w) = rg.next_column().map_err(err)? else {
                return Err("parquet writer has fewer columns than the schema".into());
            };
            match col {
                Column::Long(c) => w.typed::<Int64Type>().write_batch(c, Some(defs), None).map(|_| ()),
                Column::Double(c) => w.typed::<DoubleType>().write_batch(c, Some(defs), None).map(|_| ()),
                Column::Boolean(c) => w.typed::<BoolType>().write_batch(c, Some(defs), None).map(|_| ()),
                Column::Bytes { data, ends } => {
                    // The values as slices of one shared buffer: no copy, no
                    // allocation per value.
                    let capacity = data.capacity();
                    let all = bytes::Bytes::from(std::mem::replace(data, Vec::with_capacity(capacity)));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let v = ByteArray::from(all.slice(start..end));
                            start = end;
                            v
                        })
                        .collect();
                    w.typed::<ByteArrayType>().write_batch(&values, Some(defs), None).map(|_| ())
                }
            }
            .map_err(err)?;
            w.close().map_err(err)?;
            defs.clear();
            col.clear();
        }
        rg.close().map_err(err)?;
        self.writer.flush().map_err(|e| format!("flushing a parquet row group: {e}"))?;
        self.rows = 0;
        Ok(())
    }

    /// File bytes written so far and not yet taken.
    pub fn pending(&self) -> usize {
        self.out.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn take(&mut self) -> Vec<u8> {
        self.out.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Writes the last row group and the footer; returns the remaining bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        self.write_row_group()?;
        let out = self.out.clone();
        self.writer.into_inner().map_err(|e| format!("writing the parquet footer: {e}"))?;
        let rest = out.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        Ok(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;

    #[test]
    fn schemas_parse_and_infer() {
        assert_eq!(
            Schema::parse("id:long, name:string,ok:bool").unwrap().fields,
            vec![("id".into(), ColType::Long), ("name".into(), ColType::String), ("ok".into(), ColType::Boolean)]
        );
        assert!(Schema::parse("id:decimal").unwrap_err().contains("id"));
        let s = Schema::infer(&json!({"a": 1, "b": 1.5, "c": "x", "d": [1], "e": true})).unwrap();
        let types: Vec<ColType> = s.fields.iter().map(|f| f.1).collect();
        assert_eq!(types, vec![ColType::Long, ColType::Double, ColType::String, ColType::Json, ColType::Boolean]);
        assert!(Schema::infer(&json!([1])).is_err());
    }

    #[test]
    fn rows_round_trip_across_row_groups_and_bad_rows_change_nothing() {
        for codec in [ParquetCodec::Snappy, ParquetCodec::Zstd, ParquetCodec::None] {
            let schema = Schema::infer(&json!({"id": 0, "name": "n", "tags": {"k": 1}})).unwrap();
            let mut p = ParquetObject::new(schema, codec, 1000).unwrap();
            let mut bytes = Vec::new();
            for i in 0..500 {
                p.push(&json!({"id": i, "name": format!("n{i}"), "tags": {"k": i}})).unwrap();
                bytes.extend(p.take());
            }
            let err = p.push(&json!({"id": "x"})).unwrap_err();
            assert!(err.contains("\"id\""), "{err}");
            p.push(&json!({"id": 500})).unwrap();
            bytes.extend(p.finish().unwrap());
            let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
            assert!(reader.metadata().num_row_groups() > 1, "{codec:?}");
            let rows: Vec<String> =
                reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_json_value().to_string()).collect();
            assert_eq!(rows.len(), 501);
            assert_eq!(rows[7], r#"{"id":7,"name":"n7","tags":"{\"k\":7}"}"#);
            assert_eq!(rows[500], r#"{"id":500,"name":null,"tags":null}"#);
        }
    }

    #[test]
    fn rows_parse_from_bytes_and_a_bad_row_changes_nothing() {
        let schema = Schema::parse("id:long,price:double,ok:bool,name:string,doc:json").unwrap();
        let mut p = ParquetObject::new(schema, ParquetCodec::None, 1 << 20).unwrap();
        p.push_json(br#"{"id":1,"price":2,"ok":true,"name":"a\"b","doc":{"x": [1, 2]},"extra":{"y":1}}"#).unwrap();
        // Escaped key, missing and null fields, a string in a json column.
        p.push_json(br#"{"\u0069d":2,"price":null,"doc":"plain"}"#).unwrap();
        for bad in [
            &br#"{"id":3,"price":"x"}"#[..],
            br#"{"id":3,"id":4}"#,
            br#"{"id":18446744073709551615}"#,
            br#"{"id":3,"name":"n""#,
            br#"[1]"#,
            br#"{"id":3} trailing"#,
        ] {
            let err = p.push_json(bad).unwrap_err();
            assert!(!err.is_empty(), "{}", String::from_utf8_lossy(bad));
        }
        let err = p.push_json(br#"{"price":"x"}"#).unwrap_err();
        assert!(err.contains("\"price\"") && err.contains("double"), "{err}");
        p.push_json(br#"{"id":5}"#).unwrap();
        let bytes = p.finish().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let rows: Vec<String> =
            reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_json_value().to_string()).collect();
        assert_eq!(
            rows,
            vec![
                // (the reader lists fields by name)
                r#"{"doc":"{\"x\": [1, 2]}","id":1,"name":"a\"b","ok":true,"price":2.0}"#,
                r#"{"doc":"plain","id":2,"name":null,"ok":null,"price":null}"#,
                r#"{"doc":null,"id":5,"name":null,"ok":null,"price":null}"#,
            ]
        );
    }
}
