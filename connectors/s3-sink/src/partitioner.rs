//! Partitioners: which path (Confluent's "encoded partition") a record goes
//! under. Same rules and spellings as Confluent's storage-common partitioners
//! so existing downstream readers (Hive/Athena layouts) keep working.

use chrono::{Datelike, Timelike};
use serde_json::Value;

use crate::zone::Zone;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampExtractor {
    /// The Kafka record timestamp (deterministic).
    Record,
    /// A field of the JSON value: epoch ms or an RFC 3339 string (deterministic).
    RecordField(String),
    /// Processing time (not deterministic).
    Wallclock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSpec {
    pub path_format: String,
    pub duration_ms: i64,
    pub zone: Zone,
    pub extractor: TimestampExtractor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// `partition=<kafka partition>`.
    Default,
    /// `<field>=<value>` per configured field, joined by the directory delimiter.
    Field(Vec<String>),
    Time(TimeSpec),
}

/// What a partitioner or extractor sees of a record.
pub struct RecordView<'a> {
    pub partition: i32,
    pub timestamp: Option<i64>,
    /// The parsed JSON value, when the value is JSON (parsed lazily by the caller).
    pub json: Option<&'a Value>,
    pub now_ms: i64,
}

impl Partitioner {
    /// Whether encoding needs the value parsed as JSON.
    pub fn needs_json(&self) -> bool {
        match self {
            Partitioner::Field(_) => true,
            Partitioner::Time(t) => matches!(t.extractor, TimestampExtractor::RecordField(_)),
            Partitioner::Default => false,
        }
    }

    /// The encoded partition, or a message naming the field that is missing.
    pub fn encode(&self, record: &RecordView<'_>, delim: &str) -> Result<String, String> {
        match self {
            Partitioner::Default => Ok(format!("partition={}", record.partition)),
            Partitioner::Field(fields) => {
                let mut parts = Vec::with_capacity(fields.len());
                for field in fields {
                    let value = record
                        .json
                        .and_then(|v| lookup(v, field))
                        .ok_or_else(|| format!("field \"{field}\" (partition.field.name) is missing from the value"))?;
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(format!(
                                "field \"{field}\" (partition.field.name) must be a string, number or boolean, not {}",
                                kind(other)
                            ))
                        }
                    };
                    parts.push(format!("{field}={text}"));
                }
                Ok(parts.join(delim))
            }
            Partitioner::Time(spec) => {
                let ts = spec.extractor.extract(record)?;
                Ok(format_time(&spec.path_format, bucket_start(ts, spec.duration_ms, &spec.zone), &spec.zone))
            }
        }
    }
}

impl TimestampExtractor {
    pub fn extract(&self, record: &RecordView<'_>) -> Result<i64, String> {
        match self {
            TimestampExtractor::Wallclock => Ok(record.now_ms),
            TimestampExtractor::Record => {
                record.timestamp.ok_or_else(|| "the record has no timestamp (timestamp.extractor=Record)".to_string())
            }
            TimestampExtractor::RecordField(field) => {
                let v = record
                    .json
                    .and_then(|v| lookup(v, field))
                    .ok_or_else(|| format!("field \"{field}\" (timestamp.field) is missing from the value"))?;
                match v {
                    Value::Number(n) => n.as_i64().ok_or_else(|| {
                        format!("field \"{field}\" (timestamp.field) is not whole epoch milliseconds: {n}")
                    }),
                    Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                        .map(|d| d.timestamp_millis())
                        .or_else(|_| s.parse::<i64>())
                        .map_err(|_| {
                            format!("field \"{field}\" (timestamp.field) is neither epoch ms nor RFC 3339: {s:?}")
                        }),
                    other => Err(format!(
                        "field \"{field}\" (timestamp.field) must be a number or string, not {}",
                        kind(other)
                    )),
                }
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A dotted path into nested objects (`a.b.c`); a top-level key containing
/// dots wins over nesting.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(value, |v, k| v.get(k))
}

/// Start of the time bucket holding `ts`, with buckets aligned in local time
/// (Confluent's `TimeBasedPartitioner.getPartition`: to local time, down to
/// the bucket, back to an instant).
pub fn bucket_start(ts_ms: i64, duration_ms: i64, zone: &Zone) -> i64 {
    let local = ts_ms + zone.offset_ms_at(ts_ms);
    zone.local_to_utc(local.div_euclid(duration_ms) * duration_ms)
}

/// Formats `ts_ms` with a Joda-style pattern: quoted literals ('year'), and
/// the numeric fields YYYY/yyyy, YY/yy, MM, dd, HH, mm, ss (runs of a letter
/// set the zero-padding). Other letters are kept as is.
pub fn format_time(pattern: &str, ts_ms: i64, zone: &Zone) -> String {
    let Some(t) = zone.local(ts_ms) else { return pattern.to_string() };
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // '' is a literal quote; otherwise copy up to the closing quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let value: Option<i64> = match c {
            'Y' | 'y' => Some(if run == 2 { (t.year() % 100) as i64 } else { t.year() as i64 }),
            'M' => Some(t.month() as i64),
            'd' => Some(t.day() as i64),
            'H' => Some(t.hour() as i64),
            'm' => Some(t.minute() as i64),
            's' => Some(t.second() as i64),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&format!("{v:0run$}")),
            None => (0..run).for_each(|_| out.push(c)),
        }
        i += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(json: Option<&Value>, ts: Option<i64>) -> RecordView<'_> {
        RecordView { partition: 7, timestamp: ts, json, now_ms: 0 }
    }

    #[test]
    fn default_partitioner() {
        assert_eq!(Partitioner::Default.encode(&view(None, None), "/").unwrap(), "partition=7");
    }

    #[test]
    fn field_partitioner_joins_fields_and_names_missing_ones() {
        let v = json!({"country": "DE", "n": 3, "a": {"b": true}});
        let p = Partitioner::Field(vec!["country".into(), "n".into(), "a.b".into()]);
        assert_eq!(p.encode(&view(Some(&v), None), "/").unwrap(), "country=DE/n=3/a.b=true");
        let err = Partitioner::Field(vec!["missing".into()]).encode(&view(Some(&v), None), "/").unwrap_err();
        assert!(err.contains("\"missing\""), "{err}");
        let err = Partitioner::Field(vec!["a".into()]).encode(&view(Some(&v), None), "/").unwrap_err();
        assert!(err.contains("an object"), "{err}");
    }

    #[test]
    fn hourly_paths_in_utc_and_fixed_offsets() {
        // 2024-03-05T23:30:00Z
        let ts = 1_709_681_400_000;
        let spec = |tz| TimeSpec {
            path_format: "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH".into(),
            duration_ms: 3_600_000,
            zone: Zone::Fixed(tz),
            extractor: TimestampExtractor::Record,
        };
        let p = Partitioner::Time(spec(0));
        assert_eq!(p.encode(&view(None, Some(ts)), "/").unwrap(), "year=2024/month=03/day=05/hour=23");
        let p = Partitioner::Time(spec(2 * 3600));
        assert_eq!(p.encode(&view(None, Some(ts)), "/").unwrap(), "year=2024/month=03/day=06/hour=01");
        let err = Partitioner::Time(spec(0)).encode(&view(None, None), "/").unwrap_err();
        assert!(err.contains("timestamp"), "{err}");
    }

    #[test]
    fn daily_buckets_align_to_local_midnight() {
        // 2024-03-05T23:30:00Z is 2024-03-06T01:30+02:00: the bucket starts at 2024-03-05T22:00Z.
        let ts = 1_709_681_400_000;
        assert_eq!(bucket_start(ts, 86_400_000, &Zone::Fixed(7200)), 1_709_676_000_000);
        assert_eq!(bucket_start(ts, 86_400_000, &Zone::Fixed(0)), 1_709_596_800_000);
    }

    #[test]
    fn named_zones_bucket_and_name_in_local_time_across_daylight_saving() {
        let berlin = Zone::Named(chrono_tz::Tz::Europe__Berlin);
        let daily = |ts| format_time("'dt'=YYYY-MM-dd HH:mm", bucket_start(ts, 86_400_000, &berlin), &berlin);
        // 2024-03-05T23:30Z is 00:30 on the 6th in Berlin (+1): that day, from its local midnight.
        assert_eq!(daily(1_709_681_400_000), "dt=2024-03-06 00:00");
        assert_eq!(bucket_start(1_709_681_400_000, 86_400_000, &berlin), 1_709_679_600_000);
        // 2024-07-15T22:30Z is 00:30 on the 16th in summer time (+2).
        assert_eq!(daily(1_721_082_600_000), "dt=2024-07-16 00:00");
        // The day clocks go forward has 23 hours: its last hour still belongs to it.
        // (2024-03-31T21:59Z is 23:59 at +2.)
        assert_eq!(daily(1_711_922_340_000), "dt=2024-03-31 00:00");
        let hourly = |ts| format_time("HH", bucket_start(ts, 3_600_000, &berlin), &berlin);
        // 2024-10-27: 02:xx happens twice (00:xxZ at +2, then 01:xxZ at +1); both name hour 02.
        assert_eq!(hourly(1_729_989_000_000), "02");
        assert_eq!(hourly(1_729_992_600_000), "02");
    }

    #[test]
    fn record_field_extractor_reads_ms_and_rfc3339() {
        let spec = TimestampExtractor::RecordField("ts".into());
        let v = json!({"ts": 1000});
        assert_eq!(spec.extract(&view(Some(&v), None)).unwrap(), 1000);
        let v = json!({"ts": "1970-01-01T00:00:02Z"});
        assert_eq!(spec.extract(&view(Some(&v), None)).unwrap(), 2000);
        let v = json!({"other": 1});
        assert!(spec.extract(&view(Some(&v), None)).unwrap_err().contains("\"ts\""));
    }

    #[test]
    fn joda_literals_and_two_digit_years() {
        assert_eq!(format_time("'dt'=yyyy-MM-dd''HH:mm:ss", 0, &Zone::Fixed(0)), "dt=1970-01-01'00:00:00");
        assert_eq!(format_time("YY", 0, &Zone::Fixed(0)), "70");
    }
}
