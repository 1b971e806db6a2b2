//! Predicates (`predicates.<name>.type`): TopicNameMatches (`pattern`, the
//! whole topic name must match), HasHeaderKey (`name`), RecordIsTombstone.

use regex::Regex;

use super::{Options, Record};

const PREDICATES_PACKAGE: &str = "org.apache.kafka.connect.transforms.predicates.";

/// The predicates' Java class names.
pub fn predicate_classes() -> Vec<String> {
    ["TopicNameMatches", "HasHeaderKey", "RecordIsTombstone"]
        .iter()
        .map(|n| format!("{PREDICATES_PACKAGE}{n}"))
        .collect()
}

#[derive(Debug, Clone)]
pub enum Predicate {
    TopicNameMatches(Regex),
    HasHeaderKey(String),
    RecordIsTombstone,
}

impl Predicate {
    pub fn parse(opts: &mut Options<'_>) -> Option<Predicate> {
        let type_name = opts.required("type")?;
        match type_name.strip_prefix(PREDICATES_PACKAGE).unwrap_or(type_name) {
            "TopicNameMatches" => {
                let pattern = opts.required("pattern")?;
                // Java's Matcher.matches(): the whole name, not a substring.
                match Regex::new(&format!("^(?:{pattern})$")) {
                    Ok(re) => Some(Predicate::TopicNameMatches(re)),
                    Err(e) => {
                        opts.invalid("pattern", format!("not a regular expression: {e}"));
                        None
                    }
                }
            }
            "HasHeaderKey" => Some(Predicate::HasHeaderKey(opts.required("name")?.to_string())),
            "RecordIsTombstone" => Some(Predicate::RecordIsTombstone),
            other => {
                opts.invalid(
                    "type",
                    format!(
                        "unknown predicate {other}; known: TopicNameMatches, HasHeaderKey, RecordIsTombstone \
                         (short names or with the {PREDICATES_PACKAGE} prefix)"
                    ),
                );
                None
            }
        }
    }

    pub fn test(&self, record: &Record) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(&record.topic),
            Predicate::HasHeaderKey(name) => record.headers.iter().any(|(k, _)| k == name),
            Predicate::RecordIsTombstone => record.value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    fn filter_when(predicate: &[(&str, &str)]) -> super::super::Chain {
        let mut pairs = vec![
            ("transforms", "f"),
            ("transforms.f.type", "org.apache.kafka.connect.transforms.Filter"),
            ("transforms.f.predicate", "p"),
            ("predicates", "p"),
        ];
        pairs.extend_from_slice(predicate);
        chain(&pairs)
    }

    #[test]
    fn topic_name_matches_the_whole_name() {
        let c = filter_when(&[("predicates.p.type", "TopicNameMatches"), ("predicates.p.pattern", "ord")]);
        assert!(c.apply(record(json!({}))).unwrap().is_some(), "\"ord\" matches only part of \"orders\"");
        let c = filter_when(&[("predicates.p.type", "TopicNameMatches"), ("predicates.p.pattern", "ord.+")]);
        assert_eq!(c.apply(record(json!({}))).unwrap(), None);
        let found =
            issues(&[("predicates", "p"), ("predicates.p.type", "TopicNameMatches"), ("predicates.p.pattern", "[a-")]);
        assert!(found[0].starts_with("predicates.p.pattern"), "{found:?}");
    }

    #[test]
    fn header_keys_and_tombstones() {
        let c = filter_when(&[
            ("predicates.p.type", "org.apache.kafka.connect.transforms.predicates.HasHeaderKey"),
            ("predicates.p.name", "trace"),
        ]);
        let mut r = record(json!({}));
        assert_eq!(c.apply(r.clone()).unwrap(), None);
        r.headers.clear();
        assert!(c.apply(r).unwrap().is_some());
        let c = filter_when(&[("predicates.p.type", "RecordIsTombstone")]);
        assert_eq!(c.apply(record(json!(null))).unwrap(), None);
        assert!(c.apply(record(json!({}))).unwrap().is_some());
        let found = issues(&[("predicates", "p"), ("predicates.p.type", "IsFriday")]);
        assert!(found[0].starts_with("predicates.p.type"), "{found:?}");
    }
}
