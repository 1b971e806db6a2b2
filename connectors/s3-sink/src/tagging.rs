//! Object tags (`s3.object.tagging`): Confluent's `startOffset`,
//! `endOffset` and `recordCount`, the fixed pairs of
//! `s3.object.tagging.key.value.pairs`, and what a failed tagging does
//! (`s3.object.behavior.on.tagging.error`).
//!
//! An object is tagged once it exists, in a request of its own (as in
//! Confluent's connector), so tagging can fail on its own: `ignore`
//! (Confluent's default) logs it and counts the object as written, `fail`
//! keeps the object's records uncommitted and retries the tagging, or fails
//! the task when S3 refuses it.

/// The tags sluice writes itself; fixed pairs may not reuse these keys.
const OFFSET_TAGS: [&str; 3] = ["startOffset", "endOffset", "recordCount"];
/// S3 allows 10 tags per object.
const MAX_TAGS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTaggingError {
    Ignore,
    Fail,
}

/// Tagging settings of a task (present only with `s3.object.tagging=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagging {
    /// `s3.object.tagging.key.value.pairs`, in the order given.
    pub fixed: Vec<(String, String)>,
    pub on_error: OnTaggingError,
}

impl Tagging {
    /// The tags of one object: its offsets, then the fixed pairs.
    pub fn for_object(&self, start_offset: i64, end_offset: i64, records: u64) -> Vec<(String, String)> {
        let offsets = [start_offset.to_string(), end_offset.to_string(), records.to_string()];
        let mut tags: Vec<(String, String)> =
            OFFSET_TAGS.iter().zip(offsets).map(|(k, v)| (k.to_string(), v)).collect();
        tags.extend(self.fixed.iter().cloned());
        tags
    }
}

/// Parses `s3.object.tagging.key.value.pairs` (`key:value` entries); the
/// error says which entry breaks which S3 rule.
pub fn parse_pairs(entries: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
        let Some((key, value)) = entry.split_once(':') else {
            return Err(format!("entry `{entry}` is not key:value"));
        };
        let (key, value) = (key.trim(), value.trim());
        let bad = |what: String| Err(format!("entry `{entry}`: {what}"));
        if key.is_empty() || key.chars().count() > 128 {
            return bad("a tag key has 1 to 128 characters".into());
        }
        if value.chars().count() > 256 {
            return bad("a tag value has at most 256 characters".into());
        }
        if let Some(c) = key.chars().chain(value.chars()).find(|c| !allowed(*c)) {
            return bad(format!("`{c}` is not allowed in S3 tags (letters, digits, spaces and + - = . _ : / @)"));
        }
        if OFFSET_TAGS.contains(&key) || pairs.iter().any(|(k, _)| k == key) {
            return bad(format!("the key {key} is already used"));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    if pairs.len() + OFFSET_TAGS.len() > MAX_TAGS {
        return Err(format!(
            "{} pairs with startOffset, endOffset and recordCount make more than S3's {MAX_TAGS} tags per object",
            pairs.len()
        ));
    }
    Ok(pairs)
}

/// S3's tag alphabet: letters, digits and spaces in any script, and `+ - = . _ : / @`.
fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_follow_confluents_key_colon_value_list_and_s3s_rules() {
        let pairs = parse_pairs(&strings(&["team: data platform", "cost-center:4711", "url:s3://x/y"])).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("team".into(), "data platform".into()),
                ("cost-center".into(), "4711".into()),
                ("url".into(), "s3://x/y".into())
            ]
        );
        assert_eq!(parse_pairs(&strings(&[""])).unwrap(), vec![]);
        for (entry, says) in [
            ("team", "not key:value"),
            (":x", "1 to 128"),
            ("a:b&c", "`&` is not allowed"),
            ("recordCount:1", "already used"),
        ] {
            let err = parse_pairs(&strings(&[entry])).unwrap_err();
            assert!(err.contains(entry) && err.contains(says), "{entry}: {err}");
        }
        assert!(parse_pairs(&strings(&["a:1", "a:2"])).unwrap_err().contains("already used"));
        let eight: Vec<String> = (0..8).map(|i| format!("k{i}:v")).collect();
        assert!(parse_pairs(&eight).unwrap_err().contains("10 tags"));
    }

    #[test]
    fn an_objects_tags_are_its_offsets_then_the_fixed_pairs() {
        let tagging =
            Tagging { fixed: vec![("team".into(), "data platform".into())], on_error: OnTaggingError::Ignore };
        let tags = tagging.for_object(5, 7, 3);
        assert_eq!(
            tags[..3],
            [("startOffset".into(), "5".into()), ("endOffset".into(), "7".into()), ("recordCount".into(), "3".into())]
        );
        assert_eq!(tags[3], ("team".into(), "data platform".into()));
    }
}
