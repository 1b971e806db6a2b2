//! Field paths of KIP-821 (`field.syntax.version`): `V1` (the default) names
//! a top-level field, dots included; `V2` walks nested objects with dotted
//! steps, a step wrapped in backticks may contain dots, and a backtick
//! before such a dot is escaped with a backslash. Reproduces Kafka's
//! `field/SingleFieldPath.java` (`buildFieldPathV2`, `valueFrom(Map)`).

use serde_json::{Map, Value};

use super::Options;

/// `field.syntax.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    V1,
    V2,
}

pub const SYNTAX_KEY: &str = "field.syntax.version";

impl Syntax {
    /// Reads `field.syntax.version` (case-insensitive, as Kafka's
    /// `FieldSyntaxVersion.fromConfig`); a bad value is a config issue.
    pub fn parse(opts: &mut Options<'_>) -> Syntax {
        match opts.get(SYNTAX_KEY).map(str::to_ascii_uppercase).as_deref() {
            None | Some("V1") => Syntax::V1,
            Some("V2") => Syntax::V2,
            Some(other) => {
                opts.invalid(SYNTAX_KEY, format!("{other}: unrecognized field syntax version (V1 or V2)"));
                Syntax::V1
            }
        }
    }
}

/// A path to a field of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    steps: Vec<String>,
}

impl FieldPath {
    pub fn parse(text: &str, syntax: Syntax) -> Result<FieldPath, String> {
        match syntax {
            Syntax::V1 => Ok(FieldPath { steps: vec![text.to_string()] }),
            Syntax::V2 => v2_steps(text).map(|steps| FieldPath { steps }),
        }
    }

    /// Parses a path option of a transform, recording a bad one as a config
    /// issue under `option`.
    pub fn option(opts: &mut Options<'_>, option: &str, text: &str, syntax: Syntax) -> Option<FieldPath> {
        match FieldPath::parse(text, syntax) {
            Ok(p) => Some(p),
            Err(e) => {
                opts.invalid(option, e);
                None
            }
        }
    }

    #[cfg(test)]
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    pub fn last(&self) -> &str {
        self.steps.last().map_or("", String::as_str)
    }

    /// The value at the path (`SingleFieldPath.valueFrom(Map)`): `None` when
    /// a step is missing or an intermediate value is null. An intermediate
    /// value that is not an object is an error, as `requireMapOrNull` makes it.
    pub fn get<'a>(&self, map: &'a Map<String, Value>) -> Result<Option<&'a Value>, String> {
        match self.parent(map)? {
            Some(parent) => Ok(parent.get(self.last())),
            None => Ok(None),
        }
    }

    fn parent<'a>(&self, map: &'a Map<String, Value>) -> Result<Option<&'a Map<String, Value>>, String> {
        let mut current = map;
        for (i, step) in self.steps[..self.steps.len().saturating_sub(1)].iter().enumerate() {
            match current.get(step) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Object(m)) => current = m,
                Some(_) => return Err(self.not_an_object(i)),
            }
        }
        Ok(Some(current))
    }

    /// The object holding the last step, for updates in place; `Ok(None)`
    /// when an intermediate step is missing or null.
    pub fn parent_mut<'a>(
        &self,
        map: &'a mut Map<String, Value>,
    ) -> Result<Option<&'a mut Map<String, Value>>, String> {
        let mut current = map;
        for (i, step) in self.steps[..self.steps.len().saturating_sub(1)].iter().enumerate() {
            match current.get_mut(step) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Object(m)) => current = m,
                Some(_) => return Err(self.not_an_object(i)),
            }
        }
        Ok(Some(current))
    }

    /// Sets the value at the path, creating intermediate objects (used to
    /// build new values, such as ValueToKey's key).
    pub fn insert_creating(&self, map: &mut Map<String, Value>, value: Value) {
        let mut current = map;
        for step in &self.steps[..self.steps.len().saturating_sub(1)] {
            let slot = current.entry(step.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else { return };
            current = next;
        }
        current.insert(self.last().to_string(), value);
    }

    fn not_an_object(&self, step: usize) -> String {
        format!("field \"{}\" is not a JSON object, so \"{}\" cannot be reached", self.steps[..=step].join("."), self)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.steps.join("."))
    }
}

/// `SingleFieldPath.buildFieldPathV2`: steps split at dots; a step starting
/// with a backtick runs to the next backtick followed by a dot (or ending
/// the path); `\`` before such a dot is a literal backtick.
fn v2_steps(path: &str) -> Result<Vec<String>, String> {
    let b = path.as_bytes();
    let incomplete = |at: usize| {
        format!(
            "Incomplete backtick pair in path: [{path}], consider adding a backslash before backtick at position {at} to escape it"
        )
    };
    let mut steps = Vec::new();
    let mut idx = 0;
    while idx < b.len() {
        if b[idx] != b'`' {
            match path[idx..].find('.') {
                Some(dot) => {
                    steps.push(path[idx..idx + dot].to_string());
                    idx += dot + 1;
                }
                None => {
                    steps.push(path[idx..].to_string());
                    idx = b.len();
                }
            }
            continue;
        }
        let backtick_at = idx;
        idx += 1;
        let mut start = idx;
        let mut field = String::new();
        loop {
            let Some(found) = path[idx..].find('`') else { return Err(incomplete(backtick_at)) };
            idx += found;
            let escaped = b[idx - 1] == b'\\';
            if idx >= b.len() - 1 {
                if escaped {
                    return Err(incomplete(backtick_at));
                }
                field.push_str(&path[start..idx]);
                steps.push(std::mem::take(&mut field));
                idx += 1;
                break;
            }
            if b[idx + 1] != b'.' {
                idx += 1;
                continue;
            }
            if escaped {
                field.push_str(&path[start..idx - 1]);
                field.push('`');
                idx += 1;
                start = idx;
                continue;
            }
            field.push_str(&path[start..idx]);
            steps.push(std::mem::take(&mut field));
            idx += 2;
            break;
        }
    }
    if path.ends_with('.') {
        steps.push(String::new());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn steps(path: &str) -> Vec<String> {
        v2_steps(path).unwrap()
    }

    /// The cases of Kafka's `SingleFieldPathTest` (`shouldBuildV2WithDotsAndBacktickPair`,
    /// `shouldIncludeEmptyFieldNames`, `shouldBuildV2WhenIncludesDotsAndBacktickPair`,
    /// `shouldFailV2WhenIncompleteBackticks`), rewritten for these functions.
    #[test]
    fn v2_paths_split_at_dots_and_keep_dots_inside_backticks() {
        assert_eq!(steps("foo.bar.baz"), ["foo", "bar", "baz"]);
        assert_eq!(steps("`foo.bar`.baz"), ["foo.bar", "baz"]);
        assert_eq!(steps("foo.`bar.baz`"), ["foo", "bar.baz"]);
        assert_eq!(steps("`foo.bar.baz`"), ["foo.bar.baz"]);
        assert_eq!(steps("foo.`bar`.baz"), ["foo", "bar", "baz"]);
        assert_eq!(steps("`foo\\`.bar`.baz"), ["foo`.bar", "baz"]);
        assert_eq!(steps("foo.`b`ar`"), ["foo", "b`ar"]);
        assert_eq!(steps(".."), ["", "", ""]);
        assert_eq!(steps("foo."), ["foo", ""]);
        assert_eq!(steps(".foo"), ["", "foo"]);
        assert!(v2_steps("`foo.bar").unwrap_err().contains("position 0"));
        assert!(v2_steps("foo.`bar\\`").unwrap_err().contains("position 4"));
        assert_eq!(FieldPath::parse("a.b", Syntax::V1).unwrap().steps(), ["a.b"]);
    }

    #[test]
    fn values_are_read_and_written_through_nested_objects() {
        let map = json!({"a": {"b": {"c": 1}}, "n": null, "s": "x", "a.b": 2});
        let map = map.as_object().unwrap();
        let v2 = |p: &str| FieldPath::parse(p, Syntax::V2).unwrap();
        assert_eq!(v2("a.b.c").get(map).unwrap(), Some(&json!(1)));
        assert_eq!(v2("`a.b`").get(map).unwrap(), Some(&json!(2)));
        assert_eq!(FieldPath::parse("a.b", Syntax::V1).unwrap().get(map).unwrap(), Some(&json!(2)));
        assert_eq!(v2("a.x.c").get(map).unwrap(), None);
        assert_eq!(v2("n.c").get(map).unwrap(), None);
        assert!(v2("s.c").get(map).unwrap_err().contains("\"s\" is not a JSON object"));
        let mut out = Map::new();
        v2("x.y").insert_creating(&mut out, json!(3));
        assert_eq!(Value::Object(out), json!({"x": {"y": 3}}));
    }
}
