//! ReplaceField$Key / ReplaceField$Value: keeps (`include`, formerly
//! `whitelist`), drops (`exclude`, formerly `blacklist`) and renames
//! (`renames=old:new,…`) top-level fields.

use std::collections::BTreeMap;

use serde_json::Map;

use super::{object_mut, Options, Record, Side};

#[derive(Debug, Clone)]
pub struct ReplaceField {
    side: Side,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: BTreeMap<String, String>,
}

impl ReplaceField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> ReplaceField {
        // Kafka Connect reads the old spellings when the new ones are unset.
        let either = |opts: &Options<'_>, new: &str, old: &str| {
            let list = opts.list(new);
            if list.is_empty() {
                opts.list(old)
            } else {
                list
            }
        };
        let include = either(opts, "include", "whitelist");
        let exclude = either(opts, "exclude", "blacklist");
        let mut renames = BTreeMap::new();
        for pair in opts.list("renames") {
            match pair.split_once(':') {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                    renames.insert(from.trim().to_string(), to.trim().to_string());
                }
                _ => opts.invalid("renames", format!("{pair} is not of the form old:new")),
            }
        }
        ReplaceField { side, include, exclude, renames }
    }

    fn keeps(&self, field: &str) -> bool {
        !self.exclude.iter().any(|f| f == field) && (self.include.is_empty() || self.include.iter().any(|f| f == field))
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let map = object_mut(record.slot(self.side), self.side).map_err(|e| format!("cannot replace fields: {e}"))?;
        let old = std::mem::take(map);
        let mut out = Map::new();
        for (k, v) in old {
            if self.keeps(&k) {
                let name = self.renames.get(&k).cloned().unwrap_or(k);
                out.insert(name, v);
            }
        }
        *map = out;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::*;

    #[test]
    fn include_exclude_and_renames() {
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.include", "a,b,c"),
            ("transforms.r.exclude", "c"),
            ("transforms.r.renames", "a:alpha"),
        ]);
        let out = c.apply(record(json!({"a": 1, "b": 2, "c": 3, "d": 4}))).unwrap().unwrap();
        assert_eq!(json_value(&out), json!({"alpha": 1, "b": 2}));
    }

    #[test]
    fn accepts_the_old_spellings_and_rejects_bad_renames() {
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.whitelist", "a,b"),
            ("transforms.r.blacklist", "b"),
        ]);
        assert_eq!(json_value(&c.apply(record(json!({"a": 1, "b": 2, "z": 0}))).unwrap().unwrap()), json!({"a": 1}));
        let found = issues(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.renames", "a-b"),
        ]);
        assert!(found[0].starts_with("transforms.r.renames"), "{found:?}");
    }
}
