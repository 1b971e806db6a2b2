//! RegexRouter: when `regex` matches the whole topic name, the topic becomes
//! `replacement` (Java's replacement syntax: `$1` for a group, `\$` for `$`).

use regex::Regex;

use super::{Options, Record};

#[derive(Debug, Clone)]
pub struct RegexRouter {
    regex: Regex,
    /// The replacement in the `regex` crate's syntax.
    replacement: String,
}

/// Java's `$n` takes as many digits as still name a group; `\x` is a
/// literal `x`. The regex crate wants `${n}` and `$$`.
fn java_replacement(java: &str, groups: usize) -> String {
    let mut out = String::with_capacity(java.len() + 8);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek() == Some(&'{') => {
                // A named group: the same syntax in both.
                out.push('$');
            }
            '$' => {
                let mut number = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    let longer = format!("{number}{d}");
                    if !number.is_empty() && longer.parse::<usize>().map_or(true, |n| n > groups) {
                        break;
                    }
                    number = longer;
                    chars.next();
                }
                if number.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{number}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl RegexRouter {
    pub fn parse(opts: &mut Options<'_>) -> Option<RegexRouter> {
        let regex = opts.required("regex");
        let replacement = opts.required("replacement");
        let regex = match Regex::new(&format!("^(?:{})$", regex?)) {
            Ok(re) => re,
            Err(e) => {
                opts.invalid("regex", format!("not a regular expression: {e}"));
                return None;
            }
        };
        let replacement = java_replacement(replacement?, regex.captures_len() - 1);
        Some(RegexRouter { regex, replacement })
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if self.regex.is_match(&record.topic) {
            record.topic = self.regex.replace(&record.topic, self.replacement.as_str()).into_owned();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{super::test_support::*, java_replacement};

    #[test]
    fn routes_on_a_whole_match_with_java_replacements() {
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "RegexRouter"),
            ("transforms.r.regex", "(ord)(ers)"),
            ("transforms.r.replacement", "$2_$1-archive"),
        ]);
        assert_eq!(c.apply(record(json!({}))).unwrap().unwrap().topic, "ers_ord-archive");
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "RegexRouter"),
            ("transforms.r.regex", "ord"),
            ("transforms.r.replacement", "x"),
        ]);
        assert_eq!(c.apply(record(json!({}))).unwrap().unwrap().topic, "orders", "a partial match routes nothing");
        assert_eq!(java_replacement("$10\\$x", 1), "${1}0$$x");
        assert_eq!(java_replacement("$10", 10), "${10}");
        let found = issues(&[("transforms", "r"), ("transforms.r.type", "RegexRouter"), ("transforms.r.regex", "(")]);
        let keys: Vec<&str> = found.iter().map(|i| i.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["transforms.r.replacement", "transforms.r.regex"]);
        let found = issues(&[
            ("transforms", "r"),
            ("transforms.r.type", "RegexRouter"),
            ("transforms.r.regex", "("),
            ("transforms.r.replacement", "x"),
        ]);
        assert!(found[0].starts_with("transforms.r.regex"), "{found:?}");
    }
}
