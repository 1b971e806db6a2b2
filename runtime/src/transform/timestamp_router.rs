//! TimestampRouter: the topic becomes `topic.format` (default
//! `${topic}-${timestamp}`) with the record's timestamp formatted by
//! `timestamp.format` (default `yyyyMMdd`), in UTC as Kafka Connect does.
//! The format is Java SimpleDateFormat's: `yyyy yy MM M MMM dd d HH H mm m
//! ss s SSS`, text in single quotes, other characters literal.

use super::{Options, Record};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    /// A pattern letter repeated `width` times.
    Field(char, usize),
}

#[derive(Debug, Clone)]
pub struct TimestampRouter {
    topic_format: String,
    tokens: Vec<Token>,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn tokens(format: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // '' is a quote; 'text' is literal text.
            let mut text = String::new();
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push(Token::Literal("'".into()));
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err("a quoted text is not closed".into()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(t) => text.push(t),
                }
            }
            out.push(Token::Literal(text));
        } else if c.is_ascii_alphabetic() {
            if !"yMdHmsS".contains(c) {
                return Err(format!("pattern letter {c} is not supported (supported: y M d H m s S)"));
            }
            let mut width = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                width += 1;
            }
            out.push(Token::Field(c, width));
        } else {
            out.push(Token::Literal(c.to_string()));
        }
    }
    Ok(out)
}

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn format_millis(tokens: &[Token], millis: i64) -> String {
    let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
    let in_day = millis.rem_euclid(86_400_000);
    let (hour, minute, second, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let mut out = String::new();
    for token in tokens {
        match token {
            Token::Literal(text) => out.push_str(text),
            Token::Field('y', 2) => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Token::Field('y', w) => out.push_str(&format!("{year:0w$}")),
            Token::Field('M', w) if *w >= 3 => out.push_str(MONTHS[(month - 1) as usize % 12]),
            Token::Field('M', w) => out.push_str(&format!("{month:0w$}")),
            Token::Field('d', w) => out.push_str(&format!("{day:0w$}")),
            Token::Field('H', w) => out.push_str(&format!("{hour:0w$}")),
            Token::Field('m', w) => out.push_str(&format!("{minute:0w$}")),
            Token::Field('s', w) => out.push_str(&format!("{second:0w$}")),
            Token::Field(_, w) => out.push_str(&format!("{milli:0w$}")),
        }
    }
    out
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

    use super::{super::test_support::*, civil_from_days, format_millis, tokens};

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

    #[test]
    fn dates_agree_with_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = tokens("yy/M/d MMM H:m:s 'o''clock' ''").unwrap();
        assert_eq!(format_millis(&t, 951_782_400_000 + 3_723_000), "00/2/29 Feb 1:2:3 o'clock '");
    }
}
