//! TimestampRouter: the topic becomes `topic.format` (default
//! `${topic}-${timestamp}`) with the record's timestamp formatted by
//! `timestamp.format` (default `yyyyMMdd`), in UTC as Kafka Connect does.
//! The format is Java SimpleDateFormat's (see `date_format.rs`).

use super::{
    date_format::{format_millis, tokens, Token},
    Options, Record,
};

#[derive(Debug, Clone)]
pub struct TimestampRouter {
    topic_format: String,
    tokens: Vec<Token>,
}

impl TimestampRouter {
    pub fn parse(opts: &mut Options<'_>) -> Option<TimestampRouter> {
        let topic_format = opts.get("topic.format").unwrap_or("${topic}-${timestamp}").to_string();
        match tokens(opts.get("timestamp.format").unwrap_or("yyyyMMdd")) {
            Ok(tokens) => Some(TimestampRouter { topic_format, tokens }),
            Err(e) => {
                opts.invalid("timestamp.format", e);
                None
            }
        }
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        let millis = record
            .timestamp
            .ok_or("the record has no timestamp to route by; set one when producing or remove the transform")?;
        let stamp = format_millis(&self.tokens, millis);
        record.topic = self.topic_format.replace("${topic}", &record.topic).replace("${timestamp}", &stamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    #[test]
    fn routes_by_the_record_timestamp_in_utc() {
        let c = chain(&[("transforms", "t"), ("transforms.t.type", "TimestampRouter")]);
        // 1_700_000_000_000 ms is 2023-11-14T22:13:20Z.
        assert_eq!(c.apply(record(json!({}))).unwrap().unwrap().topic, "orders-20231114");
        let c = chain(&[
            ("transforms", "t"),
            ("transforms.t.type", "TimestampRouter"),
            ("transforms.t.topic.format", "${timestamp}.${topic}"),
            ("transforms.t.timestamp.format", "yyyy-MM-dd'T'HH:mm:ss.SSS"),
        ]);
        assert_eq!(c.apply(record(json!({}))).unwrap().unwrap().topic, "2023-11-14T22:13:20.000.orders");
        let mut r = record(json!({}));
        r.timestamp = None;
        assert!(c.apply(r).unwrap_err().contains("no timestamp"));
        let found = issues(&[
            ("transforms", "t"),
            ("transforms.t.type", "TimestampRouter"),
            ("transforms.t.timestamp.format", "yyyyQ"),
        ]);
        assert!(found[0].starts_with("transforms.t.timestamp.format"), "{found:?}");
    }
}
