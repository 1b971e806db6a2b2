//! Cast$Key / Cast$Value: casts fields (`spec=field:type,…`) or the whole
//! key/value (`spec=type`) to int8, int16, int32, int64, float32, float64,
//! boolean or string, as Kafka's `Cast.applySchemaless` and its
//! `castTo*` methods do with Java's conversions: integer casts of numbers
//! truncate and wrap (`Number.byteValue()` …), strings are parsed
//! (`Byte.parseByte` …, out of range is an error), booleans become 1/0, a
//! number is true when its integer part is not 0, and a string is true
//! only when it reads `true` in any case (`Boolean.parseBoolean`).
//! Objects and arrays cannot be cast (Kafka: "does not support casting
//! from MAP"). Field paths follow `field.syntax.version` (KIP-821).

use serde_json::{Number, Value};

use super::{
    field::{FieldPath, Syntax},
    non_null, object_mut, Data, Options, Record, Side,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl Type {
    /// `Schema.Type.valueOf(name.toUpperCase())`, limited to Cast's outputs.
    fn parse(name: &str) -> Result<Type, String> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "float32" => Type::Float32,
            "float64" => Type::Float64,
            "boolean" => Type::Boolean,
            "string" => Type::String,
            "bytes" | "array" | "map" | "struct" => {
                return Err(format!(
                    "Cast transformation does not support casting to {}; supported types are int8, int16, int32, \
                     int64, float32, float64, boolean, string",
                    name.trim().to_ascii_uppercase()
                ))
            }
            other => return Err(format!("Invalid type found in casting spec: {other}")),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Cast {
    side: Side,
    whole: Option<Type>,
    fields: Vec<(FieldPath, Type)>,
}

impl Cast {
    /// `Cast.parseFieldTypes`: `field:type` pairs, or one type alone for the
    /// whole key or value.
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<Cast> {
        let syntax = Syntax::parse(opts);
        let spec = opts.list("spec");
        if spec.is_empty() {
            opts.invalid("spec", "Must specify at least one field to cast.");
            return None;
        }
        let mut whole = None;
        let mut fields = Vec::new();
        let mut ok = true;
        for mapping in &spec {
            let parts: Vec<&str> = mapping.split(':').collect();
            let result = match parts.as_slice() {
                [ty] => Type::parse(ty).map(|t| whole = Some(t)),
                [field, ty] => Type::parse(ty).and_then(|t| {
                    let path = FieldPath::parse(field.trim(), syntax)?;
                    fields.push((path, t));
                    Ok(())
                }),
                _ => Err(format!("Invalid cast mapping: {mapping} (field:type)")),
            };
            if let Err(e) = result {
                opts.invalid("spec", e);
                ok = false;
            }
        }
        if whole.is_some() && spec.len() > 1 {
            opts.invalid(
                "spec",
                "Cast transformations that specify a type to cast the entire value to may only specify a single cast \
                 in their spec",
            );
            return None;
        }
        ok.then_some(Cast { side, whole, fields })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let slot = record.slot(self.side);
        if slot.is_none() {
            return Ok(());
        }
        if let Some(ty) = self.whole {
            if let Some(Data::Raw(bytes)) = slot {
                let v: Value = serde_json::from_slice(bytes)
                    .map_err(|e| format!("cannot cast the {}: it is not JSON ({e})", self.side.name()))?;
                *slot = non_null(v);
            }
            return match slot {
                Some(Data::Json(v)) => {
                    let cast = cast(v, ty).map_err(|e| format!("cannot cast the {}: {e}", self.side.name()))?;
                    *slot = non_null(cast);
                    Ok(())
                }
                Some(other) => Err(format!("cannot cast the {}: it is {}", self.side.name(), super::kind_of(other))),
                None => Ok(()),
            };
        }
        let map = object_mut(slot, self.side).map_err(|e| format!("cannot cast fields: {e}"))?;
        for (path, ty) in &self.fields {
            let Some(parent) = path.parent_mut(map)? else { continue };
            let old = parent.get(path.last()).cloned().unwrap_or(Value::Null);
            // Kafka puts the cast value back even when the field was absent
            // (as null), so a missing field appears as null.
            let new = cast(&old, *ty).map_err(|e| format!("cannot cast field \"{path}\": {e}"))?;
            parent.insert(path.last().to_string(), new);
        }
        Ok(())
    }
}

/// What a JSON value is as Java sees it behind JsonConverter: an integer is
/// a Long, any other number a Double.
enum Input<'a> {
    Long(i64),
    Double(f64),
    Bool(bool),
    Str(&'a str),
}

fn input(v: &Value) -> Result<Option<Input<'_>>, String> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => Input::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Input::Long(i),
            None => Input::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Input::Str(s),
        Value::Array(_) => return Err("Cast transformation does not support casting from ARRAY".into()),
        Value::Object(_) => return Err("Cast transformation does not support casting from MAP".into()),
    }))
}

/// `Cast.castValueToType` for schemaless values.
pub fn cast(v: &Value, ty: Type) -> Result<Value, String> {
    let Some(input) = input(v)? else { return Ok(Value::Null) };
    let out_of_range = || format!("Value ({}) was out of range for requested data type", display(v));
    Ok(match ty {
        Type::Int8 | Type::Int16 | Type::Int32 | Type::Int64 => {
            let (bits, min, max) = match ty {
                Type::Int8 => (8, i8::MIN as i64, i8::MAX as i64),
                Type::Int16 => (16, i16::MIN as i64, i16::MAX as i64),
                Type::Int32 => (32, i32::MIN as i64, i32::MAX as i64),
                _ => (64, i64::MIN, i64::MAX),
            };
            let n: i64 = match input {
                Input::Long(i) => wrap(i, bits),
                // Java's double → int narrowing saturates, then byte/short wrap.
                Input::Double(d) => {
                    let as_int = if bits == 64 { d as i64 } else { d as i32 as i64 };
                    wrap(as_int, bits)
                }
                Input::Bool(b) => i64::from(b),
                Input::Str(s) => {
                    let n: i64 = java_int(s).ok_or_else(out_of_range)?;
                    if n < min || n > max {
                        return Err(out_of_range());
                    }
                    n
                }
            };
            Value::from(n)
        }
        Type::Float32 => {
            let f: f32 = match input {
                Input::Long(i) => i as f32,
                Input::Double(d) => d as f32,
                Input::Bool(b) => f32::from(u8::from(b)),
                Input::Str(s) => java_double(s).ok_or_else(out_of_range)? as f32,
            };
            // Float.toString's shortest digits, not the widened double's.
            let d: f64 = f.to_string().parse().unwrap_or(f64::NAN);
            Value::Number(Number::from_f64(d).ok_or_else(|| format!("{f} cannot be written as JSON"))?)
        }
        Type::Float64 => {
            let d = match input {
                Input::Long(i) => i as f64,
                Input::Double(d) => d,
                Input::Bool(b) => f64::from(u8::from(b)),
                Input::Str(s) => java_double(s).ok_or_else(out_of_range)?,
            };
            Value::Number(Number::from_f64(d).ok_or_else(|| format!("{d} cannot be written as JSON"))?)
        }
        Type::Boolean => Value::Bool(match input {
            Input::Long(i) => i != 0,
            Input::Double(d) => d as i64 != 0,
            Input::Bool(b) => b,
            Input::Str(s) => s.eq_ignore_ascii_case("true"),
        }),
        Type::String => Value::String(display(v)),
    })
}

/// Keeps the low `bits` bits as a signed number (Java's narrowing casts).
fn wrap(n: i64, bits: u32) -> i64 {
    match bits {
        8 => n as i8 as i64,
        16 => n as i16 as i64,
        32 => n as i32 as i64,
        _ => n,
    }
}

/// `Long.parseLong`: optional sign, ASCII digits, no spaces.
fn java_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Double.parseDouble`: surrounding whitespace allowed, a trailing `d`/`f`
/// type suffix too.
fn java_double(s: &str) -> Option<f64> {
    let t = s.trim();
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    // NaN and the infinities parse in Java but have no JSON form.
    t.parse::<f64>().ok().filter(|d| d.is_finite())
}

/// `Object.toString()` of the value Java would hold: Long and Boolean as
/// usual, Double as `Double.toString` (`1.0`, `1.0E10`, `1.0E-5`), a
/// string as itself.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(d) if n.is_f64() => java_double_string(d),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn java_double_string(d: f64) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let magnitude = d.abs();
    if (1e-3..1e7).contains(&magnitude) {
        let s = d.to_string();
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust's `{:e}` gives the same shortest digits: "1.5e-5" → "1.5E-5".
        let s = format!("{d:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
        format!("{mantissa}E{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{super::test_support::*, *};

    /// Kafka's `CastTest.castFieldsSchemaless` and `castWholeRecordValueSchemaless*`.
    #[test]
    fn casts_fields_and_whole_values_as_java_does() {
        let c = chain(&[
            ("transforms", "c"),
            ("transforms.c.type", "org.apache.kafka.connect.transforms.Cast$Value"),
            (
                "transforms.c.spec",
                "int8:int16,int16:int32,int32:int64,bigint:int8,f:int32,s:int64,b:float64,t:string,m:int8",
            ),
        ]);
        let out = c
            .apply(record(json!({"int8": 8, "int16": 16, "int32": 32, "bigint": 300, "f": 2.9, "s": "42", "b": true, "t": 1.5e10, "other": "x"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            json_value(&out),
            json!({"int8": 8, "int16": 16, "int32": 32, "bigint": 44, "f": 2, "s": 42, "b": 1.0, "t": "1.5E10", "m": null, "other": "x"})
        );
        let whole = |ty: &str, v: Value| {
            chain(&[("transforms", "c"), ("transforms.c.type", "Cast$Value"), ("transforms.c.spec", ty)])
                .apply(record(v))
                .map(|r| json_value(&r.unwrap()))
        };
        assert_eq!(whole("boolean", json!(0.5)).unwrap(), json!(false));
        assert_eq!(whole("boolean", json!("TRUE")).unwrap(), json!(true));
        assert_eq!(whole("boolean", json!("yes")).unwrap(), json!(false));
        assert_eq!(whole("float32", json!(1.1)).unwrap(), json!(1.1));
        assert_eq!(whole("string", json!(100.0)).unwrap(), json!("100.0"));
        assert_eq!(whole("string", json!(true)).unwrap(), json!("true"));
        assert_eq!(whole("int32", json!(" 7")).unwrap_err(), "transform \"c\" (Cast$Value) failed on the record at topic orders partition 2 offset 42: cannot cast the value: Value ( 7) was out of range for requested data type");
        assert!(whole("int8", json!("128")).unwrap_err().contains("out of range"));
        assert!(whole("int64", json!({"a": 1})).unwrap_err().contains("MAP"));
        let mut raw = record(json!(null));
        raw.value = Some(Data::Raw(b"\"12\"".to_vec()));
        let c = chain(&[("transforms", "c"), ("transforms.c.type", "Cast$Value"), ("transforms.c.spec", "int32")]);
        assert_eq!(json_value(&c.apply(raw).unwrap().unwrap()), json!(12));
        assert_eq!(c.apply(record(json!(null))).unwrap().unwrap().value, None);
    }

    #[test]
    fn nested_fields_with_v2_and_config_errors_name_the_spec() {
        let c = chain(&[
            ("transforms", "c"),
            ("transforms.c.type", "Cast$Key"),
            ("transforms.c.spec", "id.n:string,`a.b`:int32"),
            ("transforms.c.field.syntax.version", "v2"),
        ]);
        let mut r = record(json!({}));
        r.key = Some(Data::Json(json!({"id": {"n": 5}, "a.b": "3"})));
        assert_eq!(c.apply(r).unwrap().unwrap().key, Some(Data::Json(json!({"id": {"n": "5"}, "a.b": 3}))));
        for (spec, wanted) in [
            ("a:bytes", "does not support casting to BYTES"),
            ("a:int9", "Invalid type found in casting spec: int9"),
            ("int8,a:int16", "may only specify a single cast"),
            ("a:b:c", "Invalid cast mapping"),
        ] {
            let found =
                issues(&[("transforms", "c"), ("transforms.c.type", "Cast$Value"), ("transforms.c.spec", spec)]);
            assert!(found[0].starts_with("transforms.c.spec") && found[0].contains(wanted), "{spec}: {found:?}");
        }
        let found = issues(&[
            ("transforms", "c"),
            ("transforms.c.type", "Cast$Value"),
            ("transforms.c.spec", "a:int8"),
            ("transforms.c.field.syntax.version", "V3"),
        ]);
        assert!(found[0].starts_with("transforms.c.field.syntax.version"), "{found:?}");
    }

    #[test]
    fn doubles_print_as_java_prints_them() {
        for (d, s) in [(1.0, "1.0"), (1e7, "1.0E7"), (123.456, "123.456"), (1e-4, "1.0E-4"), (-2.5e-10, "-2.5E-10")] {
            assert_eq!(java_double_string(d), s);
        }
    }
}
