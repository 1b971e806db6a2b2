//! TimestampConverter$Key / TimestampConverter$Value: converts a timestamp
//! field (`field`, a path per `field.syntax.version`; empty: the whole key
//! or value) to `target.type` `string` (with `format`), `unix` (with
//! `unix.precision`), `Date`, `Time` or `Timestamp`, as Kafka's
//! `TimestampConverter.applySchemaless` and its translators do.
//!
//! Schemaless input is a JSON integer (`unix`, read with `unix.precision`)
//! or a string (read with `format`), as Java's `inferTimestampType` sees a
//! Long or a String. Java hands the sink a `java.util.Date` for `Date`,
//! `Time` and `Timestamp`; JSON has no dates, so these are written as
//! JsonConverter writes those logical types: `Timestamp` epoch
//! milliseconds, `Date` days since the epoch, `Time` milliseconds since
//! midnight (UTC), as Java truncates them.

use serde_json::Value;

use super::{
    date_format::{format_millis, parse_millis, tokens, Token},
    field::{FieldPath, Syntax},
    non_null, object_mut, Data, Options, Record, Side,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct TimestampConverter {
    side: Side,
    field: Option<FieldPath>,
    target: Target,
    format: Option<(String, Vec<Token>)>,
    precision: Precision,
}

impl TimestampConverter {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> Option<TimestampConverter> {
        let syntax = Syntax::parse(opts);
        let field = match opts.get("field") {
            None => None,
            Some(f) => Some(FieldPath::option(opts, "field", f, syntax)?),
        };
        let target = match opts.required("target.type")? {
            "string" => Target::String,
            "unix" => Target::Unix,
            "Date" => Target::Date,
            "Time" => Target::Time,
            "Timestamp" => Target::Timestamp,
            other => {
                opts.invalid("target.type", format!("{other} (must be one of string, unix, Date, Time, Timestamp)"));
                return None;
            }
        };
        let precision = match opts.get("unix.precision").unwrap_or("milliseconds") {
            "seconds" => Precision::Seconds,
            "milliseconds" => Precision::Millis,
            "microseconds" => Precision::Micros,
            "nanoseconds" => Precision::Nanos,
            other => {
                opts.invalid(
                    "unix.precision",
                    format!("{other} (must be one of nanoseconds, microseconds, milliseconds, seconds)"),
                );
                return None;
            }
        };
        let format = match opts.get("format") {
            None if target == Target::String => {
                opts.invalid(
                    "format",
                    "TimestampConverter requires format option to be specified when using string timestamps",
                );
                return None;
            }
            None => None,
            Some(pattern) => match tokens(pattern) {
                Ok(t) => Some((pattern.to_string(), t)),
                Err(e) => {
                    opts.invalid("format", format!("not a SimpleDateFormat-compatible pattern: {e}"));
                    return None;
                }
            },
        };
        Some(TimestampConverter { side, field, target, format, precision })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let slot = record.slot(self.side);
        let Some(path) = &self.field else {
            // The whole key or value; a null one stays null.
            if let Some(Data::Raw(bytes)) = slot {
                let v: Value = serde_json::from_slice(bytes)
                    .map_err(|e| format!("cannot convert the {} timestamp: it is not JSON ({e})", self.side.name()))?;
                *slot = non_null(v);
            }
            return match slot {
                None => Ok(()),
                Some(Data::Json(v)) => {
                    let converted = self
                        .convert(v)
                        .map_err(|e| format!("cannot convert the {} timestamp: {e}", self.side.name()))?;
                    *slot = non_null(converted);
                    Ok(())
                }
                Some(other) => {
                    Err(format!("cannot convert the {} timestamp: it is {}", self.side.name(), super::kind_of(other)))
                }
            };
        };
        if slot.is_none() {
            return Ok(());
        }
        let map = object_mut(slot, self.side).map_err(|e| format!("cannot convert timestamp field \"{path}\": {e}"))?;
        let Some(parent) = path.parent_mut(map)? else { return Ok(()) };
        let old = parent.get(path.last()).cloned().unwrap_or(Value::Null);
        // Kafka puts the converted value back even for an absent field.
        let new = self.convert(&old).map_err(|e| format!("cannot convert timestamp field \"{path}\": {e}"))?;
        parent.insert(path.last().to_string(), new);
        Ok(())
    }

    /// `convertTimestamp`: the input's translator `toRaw`, then the
    /// target's `toType`.
    fn convert(&self, v: &Value) -> Result<Value, String> {
        let millis = match v {
            Value::Null => return Ok(Value::Null),
            Value::Number(n) => {
                let unix = n.as_i64().ok_or_else(|| {
                    format!("TimestampConverter does not support {n} (not an integer) as a timestamp")
                })?;
                match self.precision {
                    Precision::Seconds => unix.saturating_mul(1000),
                    Precision::Millis => unix,
                    Precision::Micros => unix / 1000,
                    Precision::Nanos => unix / 1_000_000,
                }
            }
            Value::String(s) => {
                let (pattern, tokens) = self.format.as_ref().ok_or_else(|| {
                    format!("the timestamp {s:?} is a string; set \"format\" to the pattern to read it with")
                })?;
                parse_millis(tokens, s).map_err(|e| {
                    format!("Could not parse timestamp: value ({s}) does not match pattern ({pattern}): {e}")
                })?
            }
            other => {
                return Err(format!(
                    "TimestampConverter does not support {} as a timestamp (an integer or a string)",
                    super::kind_of(&Data::Json(other.clone()))
                ))
            }
        };
        Ok(match self.target {
            Target::String => {
                let tokens = self.format.as_ref().map(|(_, t)| t.as_slice()).unwrap_or_default();
                Value::String(format_millis(tokens, millis))
            }
            Target::Unix => Value::from(match self.precision {
                Precision::Seconds => millis / 1000,
                Precision::Millis => millis,
                Precision::Micros => millis.saturating_mul(1000),
                Precision::Nanos => millis.saturating_mul(1_000_000),
            }),
            Target::Timestamp => Value::from(millis),
            Target::Date => Value::from(millis.div_euclid(DAY_MS)),
            Target::Time => Value::from(millis.rem_euclid(DAY_MS)),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{test_support::*, Data};

    fn converter(extra: &[(&'static str, &'static str)]) -> super::super::Chain {
        let mut pairs = vec![("transforms", "ts"), ("transforms.ts.type", "TimestampConverter$Value")];
        pairs.extend_from_slice(extra);
        chain(&pairs)
    }

    /// Kafka's `TimestampConverterTest.testSchemalessUnixToTimestamp`,
    /// `testSchemalessStringToTimestamp`, `testSchemalessTimestampToString`,
    /// `testSchemalessTimestampToDate`, `testSchemalessTimestampToTime`,
    /// `testSchemalessFieldConversion` and the `unix.precision` cases.
    #[test]
    fn converts_between_unix_strings_and_logical_types() {
        // 1_700_000_000_123 ms is 2023-11-14T22:13:20.123Z.
        let to_string = converter(&[
            ("transforms.ts.target.type", "string"),
            ("transforms.ts.format", "yyyy-MM-dd'T'HH:mm:ss.SSSX"),
        ]);
        let out = to_string.apply(record(json!(1_700_000_000_123i64))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!("2023-11-14T22:13:20.123Z"));
        let to_unix = converter(&[
            ("transforms.ts.target.type", "unix"),
            ("transforms.ts.format", "yyyy-MM-dd'T'HH:mm:ss.SSSX"),
            ("transforms.ts.unix.precision", "microseconds"),
        ]);
        let out = to_unix.apply(record(json!("2023-11-14T22:13:20.123Z"))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!(1_700_000_000_123_000i64));
        for (target, wanted) in [("Timestamp", 1_700_000_000_123i64), ("Date", 19_675), ("Time", 80_000_123)] {
            let c = converter(&[("transforms.ts.target.type", target), ("transforms.ts.field", "at")]);
            let out = c.apply(record(json!({"at": 1_700_000_000_123i64, "id": 1}))).unwrap().unwrap();
            assert_eq!(json_value(&out), json!({"at": wanted, "id": 1}), "{target}");
        }
        let seconds =
            converter(&[("transforms.ts.target.type", "Timestamp"), ("transforms.ts.unix.precision", "seconds")]);
        assert_eq!(
            json_value(&seconds.apply(record(json!(1_700_000_000))).unwrap().unwrap()),
            json!(1_700_000_000_000i64)
        );
        assert_eq!(seconds.apply(record(json!(null))).unwrap().unwrap().value, None);
    }

    #[test]
    fn nested_fields_with_v2_missing_fields_and_bad_input() {
        let c = converter(&[
            ("transforms.ts.target.type", "string"),
            ("transforms.ts.format", "yyyy-MM-dd"),
            ("transforms.ts.field", "order.placed"),
            ("transforms.ts.field.syntax.version", "V2"),
        ]);
        let out = c.apply(record(json!({"order": {"placed": 0, "n": 1}}))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!({"order": {"placed": "1970-01-01", "n": 1}}));
        assert_eq!(json_value(&c.apply(record(json!({"other": 1}))).unwrap().unwrap()), json!({"other": 1}));
        let top = converter(&[("transforms.ts.target.type", "Timestamp"), ("transforms.ts.field", "at")]);
        assert_eq!(json_value(&top.apply(record(json!({}))).unwrap().unwrap()), json!({"at": null}));
        let e = top.apply(record(json!({"at": 1.5}))).unwrap_err();
        assert!(e.contains("field \"at\"") && e.contains("not an integer"), "{e}");
        let e = top.apply(record(json!({"at": "2023"}))).unwrap_err();
        assert!(e.contains("set \"format\""), "{e}");
        let e = c.apply(record(json!({"order": {"placed": "14/11/2023"}}))).unwrap_err();
        assert!(e.contains("does not match pattern (yyyy-MM-dd)"), "{e}");
        let mut key = record(json!(null));
        key.key = Some(Data::Json(json!(86_400_000)));
        let date_key = chain(&[
            ("transforms", "ts"),
            ("transforms.ts.type", "TimestampConverter$Key"),
            ("transforms.ts.target.type", "Date"),
        ]);
        assert_eq!(date_key.apply(key).unwrap().unwrap().key, Some(Data::Json(json!(1))));
    }

    #[test]
    fn config_problems_name_their_keys() {
        for (pairs, key) in [
            (vec![], "transforms.ts.target.type"),
            (vec![("transforms.ts.target.type", "date")], "transforms.ts.target.type"),
            (vec![("transforms.ts.target.type", "string")], "transforms.ts.format"),
            (vec![("transforms.ts.target.type", "unix"), ("transforms.ts.format", "yyyy-ww")], "transforms.ts.format"),
            (
                vec![("transforms.ts.target.type", "unix"), ("transforms.ts.unix.precision", "hours")],
                "transforms.ts.unix.precision",
            ),
        ] {
            let mut all = vec![("transforms", "ts"), ("transforms.ts.type", "TimestampConverter$Value")];
            all.extend(pairs);
            let found = issues(&all);
            assert!(found[0].starts_with(key), "{found:?}");
        }
    }
}
