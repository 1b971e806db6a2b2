//! ReplaceField$Key / ReplaceField$Value: keeps (`include`, formerly
//! `whitelist`), drops (`exclude`, formerly `blacklist`) and renames
//! (`renames=old:new,…`) fields. Names are paths per `field.syntax.version`
//! (KIP-821): with V2, `include=a.b` keeps `{"a": {"b": …}}` only,
//! `exclude=a.b` removes `b` inside `a`, and `renames=a.b:c` renames `b`
//! inside `a` to `c`.

use serde_json::Map;

use super::{
    field::{FieldPath, Syntax},
    object_mut, Options, Record, Side,
};

#[derive(Debug, Clone)]
pub struct ReplaceField {
    side: Side,
    include: Vec<FieldPath>,
    exclude: Vec<FieldPath>,
    renames: Vec<(FieldPath, String)>,
}

impl ReplaceField {
    pub fn parse(opts: &mut Options<'_>, side: Side) -> ReplaceField {
        let syntax = Syntax::parse(opts);
        // Kafka Connect reads the old spellings when the new ones are unset.
        let either = |opts: &mut Options<'_>, new: &str, old: &str| {
            let (list, key) = match opts.list(new) {
                l if l.is_empty() => (opts.list(old), old.to_string()),
                l => (l, new.to_string()),
            };
            list.iter().filter_map(|f| FieldPath::option(opts, &key, f, syntax)).collect::<Vec<_>>()
        };
        let include = either(opts, "include", "whitelist");
        let exclude = either(opts, "exclude", "blacklist");
        let mut renames = Vec::new();
        for pair in opts.list("renames") {
            match pair.split_once(':') {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                    if let Some(path) = FieldPath::option(opts, "renames", from.trim(), syntax) {
                        renames.push((path, to.trim().to_string()));
                    }
                }
                _ => opts.invalid("renames", format!("{pair} is not of the form old:new")),
            }
        }
        ReplaceField { side, include, exclude, renames }
    }

    /// `ReplaceField.applySchemaless`: a field is kept when it is not
    /// excluded and, with an include list, included; kept fields are
    /// renamed.
    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        if record.slot(self.side).is_none() {
            return Ok(());
        }
        let map = object_mut(record.slot(self.side), self.side).map_err(|e| format!("cannot replace fields: {e}"))?;
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for path in &self.include {
                if let Some(v) = path.get(map)? {
                    path.insert_creating(&mut kept, v.clone());
                }
            }
            *map = kept;
        }
        for path in &self.exclude {
            if let Some(parent) = path.parent_mut(map)? {
                parent.remove(path.last());
            }
        }
        for (path, to) in &self.renames {
            if let Some(parent) = path.parent_mut(map)? {
                if let Some(v) = parent.remove(path.last()) {
                    parent.insert(to.clone(), v);
                }
            }
        }
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

    /// KIP-821's nested paths for ReplaceField.
    #[test]
    fn nested_paths_with_v2() {
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.include", "id,customer"),
            ("transforms.r.exclude", "customer.ssn"),
            ("transforms.r.renames", "customer.nm:name,`x.y`:z"),
            ("transforms.r.field.syntax.version", "V2"),
        ]);
        let v = json!({"id": 1, "customer": {"nm": "Ann", "ssn": "123"}, "drop": true});
        assert_eq!(json_value(&c.apply(record(v)).unwrap().unwrap()), json!({"id": 1, "customer": {"name": "Ann"}}));
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.include", "a.b,`x.y`"),
            ("transforms.r.field.syntax.version", "V2"),
        ]);
        let v = json!({"a": {"b": 1, "c": 2}, "x.y": 3, "x": {"y": 4}});
        assert_eq!(json_value(&c.apply(record(v)).unwrap().unwrap()), json!({"a": {"b": 1}, "x.y": 3}));
    }
}
