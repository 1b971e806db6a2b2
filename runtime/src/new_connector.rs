//! `sluice new connector`: writes a plugin crate for a new connector from the
//! templates in `runtime/templates/{sink,source}/` (included in the binary).
//!
//! A template holds placeholders, replaced as plain text:
//!
//! | placeholder         | becomes                                             |
//! |---------------------|-----------------------------------------------------|
//! | `{{name}}`          | the crate name, also the connector class            |
//! | `{{lib}}`           | the library name (`-` as `_`)                       |
//! | `{{Type}}`          | the type-name prefix: `my-sink` → `MySink`          |
//! | `{{connector_api}}` | the path of `connector-api`, as a TOML string       |
//! | `{{abi_stable}}`    | the `abi_stable` version this binary was built with |

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use anyhow::{bail, Context};

/// The `abi_stable` version of the workspace's Cargo.lock (a test checks it):
/// a plugin must be built with the same one as the worker.
pub const ABI_STABLE_VERSION: &str = "0.11.3";

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sink,
    Source,
}

/// One template file: its path in the new crate and its text.
struct Template {
    path: &'static str,
    text: &'static str,
}

const SINK: &[Template] = &[
    Template { path: "Cargo.toml", text: include_str!("../templates/sink/Cargo.toml.in") },
    Template { path: "src/lib.rs", text: include_str!("../templates/sink/src/lib.rs.in") },
    Template { path: "README.md", text: include_str!("../templates/sink/README.md.in") },
    Template { path: "rustfmt.toml", text: include_str!("../templates/sink/rustfmt.toml.in") },
];

const SOURCE: &[Template] = &[
    Template { path: "Cargo.toml", text: include_str!("../templates/source/Cargo.toml.in") },
    Template { path: "src/lib.rs", text: include_str!("../templates/source/src/lib.rs.in") },
    Template { path: "README.md", text: include_str!("../templates/source/README.md.in") },
    Template { path: "rustfmt.toml", text: include_str!("../templates/source/rustfmt.toml.in") },
];

fn templates(kind: Kind) -> &'static [Template] {
    match kind {
        Kind::Sink => SINK,
        Kind::Source => SOURCE,
    }
}

/// Rust's keywords (strict, reserved and edition 2018+), and crate names
/// the compiler reserves: none can name a library.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
];

/// The crates the templates depend on: a crate of the same name would
/// shadow them.
const DEPENDENCIES: &[&str] = &["connector_api", "abi_stable", "serde_json", "tempfile"];

/// `my-sink` → `MySink`.
pub fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Whether `name` can name the new crate (and so its connector class and
/// types); the error says why not.
pub fn check_name(name: &str) -> Result<(), String> {
    let lib = name.replace('-', "_");
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?} is not a valid crate name: it must have 1 to 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("{name:?} is not a valid crate name: it must start with an ASCII letter"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!(
            "{name:?} is not a valid crate name: {c:?} is not allowed (use ASCII letters, digits, '-' and '_')"
        ));
    }
    if name.ends_with(['-', '_']) || name.contains("--") || name.contains("__") {
        return Err(format!("{name:?} is not a valid crate name: '-' and '_' only between words"));
    }
    if RESERVED.contains(&lib.as_str()) {
        return Err(format!("{name:?} is not a valid crate name: it is a Rust keyword or a reserved crate name"));
    }
    if DEPENDENCIES.contains(&lib.as_str()) {
        return Err(format!("{name:?} is the name of a crate the connector depends on: choose another"));
    }
    // The connector's types are named `<Type>`, `<Type>Task` and
    // `<Type>Config`; none may be a name the templates already use.
    let prefix = type_name(name);
    let code = [SINK, SOURCE].iter().flat_map(|t| t.iter()).filter(|t| t.path.ends_with(".rs"));
    let words: Vec<&str> = code
        .flat_map(|t| t.text.lines())
        .map(|line| line.split("//").next().unwrap_or_default())
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .collect();
    for candidate in [prefix.clone(), format!("{prefix}Task"), format!("{prefix}Config")] {
        if words.contains(&candidate.as_str()) {
            return Err(format!(
                "{name:?} would name a type {candidate}, which the template already uses (from std or \
                 connector-api): choose another name"
            ));
        }
    }
    Ok(())
}

/// A template's text with every placeholder replaced.
fn render(text: &str, name: &str, connector_api: &Path) -> String {
    let connector_api = toml::Value::String(connector_api.to_string_lossy().into_owned()).to_string();
    text.replace("{{name}}", name)
        .replace("{{lib}}", &name.replace('-', "_"))
        .replace("{{Type}}", &type_name(name))
        .replace("{{connector_api}}", &connector_api)
        .replace("{{abi_stable}}", ABI_STABLE_VERSION)
}

/// The crate's files (path in the crate, text), rendered.
pub fn files(kind: Kind, name: &str, connector_api: &Path) -> Vec<(&'static str, String)> {
    templates(kind).iter().map(|t| (t.path, render(t.text, name, connector_api))).collect()
}

/// `path` absolute, without `.` and `..` (the file need not exist).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// The `connector-api` crate this binary was built from.
pub fn default_connector_api() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("connector-api")
}

/// Writes a new crate for connector `name` into `dir` (default `./<name>`),
/// depending on `connector-api` at `connector_api` (default: the one this
/// binary was built from). Refuses a bad name and a directory that is not
/// empty. Returns the crate's directory.
pub fn create(kind: Kind, name: &str, dir: Option<&Path>, connector_api: Option<&Path>) -> anyhow::Result<PathBuf> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let dir = absolute(dir.unwrap_or_else(|| Path::new(name)))?;
    let default_api = default_connector_api();
    let api = absolute(connector_api.unwrap_or(&default_api))?;
    if !api.join("Cargo.toml").is_file() {
        bail!(
            "{} holds no Cargo.toml: pass --connector-api with the path of connector-api in a Sluice checkout",
            api.display()
        );
    }
    if dir.exists() {
        let mut entries = fs::read_dir(&dir).with_context(|| format!("{} is not a directory", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} already exists and is not empty: choose another --dir or name", dir.display());
        }
    }
    for (path, text) in files(kind, name, &api) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names_that_give_free_type_names() {
        for good in ["my-sink", "orders_sink", "s3-archive", "a", "warehouse-2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "1 to 64 characters"),
            ("2fast", "start with an ASCII letter"),
            ("-sink", "start with an ASCII letter"),
            ("my sink", "' ' is not allowed"),
            ("café", "'é' is not allowed"),
            ("my-", "only between words"),
            ("a--b", "only between words"),
            ("fn", "Rust keyword"),
            ("std", "reserved crate name"),
            ("serde-json", "depends on"),
            ("connector-api", "depends on"),
            ("file", "type File"),
            ("sink", "type SinkTask"),
            ("source", "type SourceTask"),
            ("host", "type Host"),
        ] {
            let error = check_name(bad).expect_err(bad);
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn type_names_are_camel_case_words() {
        assert_eq!(type_name("my-sink"), "MySink");
        assert_eq!(type_name("orders_sink_v2"), "OrdersSinkV2");
        assert_eq!(type_name("s3"), "S3");
    }

    #[test]
    fn every_placeholder_is_replaced() {
        let api = Path::new("/src/sluice \"x\"/connector-api");
        for kind in [Kind::Sink, Kind::Source] {
            let files = files(kind, "my-sink", api);
            assert_eq!(
                files.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                ["Cargo.toml", "src/lib.rs", "README.md", "rustfmt.toml"]
            );
            for (path, text) in &files {
                assert!(!text.contains("{{") && !text.contains("}}"), "{kind:?} {path} keeps a placeholder");
            }
            let manifest: toml::Table = files[0].1.parse().expect("Cargo.toml is TOML");
            assert_eq!(manifest["package"]["name"].as_str(), Some("my-sink"));
            assert_eq!(manifest["dependencies"]["connector-api"]["path"].as_str(), api.to_str());
            assert_eq!(manifest["dependencies"]["abi_stable"].as_str(), Some("=0.11.3"));
            assert!(manifest["workspace"].is_table(), "its own workspace");
            let lib = &files[1].1;
            assert!(lib.contains("class: \"my-sink\"") && lib.contains("pub struct MySinkTask"));
        }
    }

    #[test]
    fn abi_stable_is_pinned_to_the_workspace_lock() {
        let lock = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock")).unwrap();
        let entry = lock.split("[[package]]").find(|p| p.contains("name = \"abi_stable\"\n")).unwrap();
        assert!(entry.contains(&format!("version = \"{ABI_STABLE_VERSION}\"")), "Cargo.lock: {entry}");
    }

    #[test]
    fn a_crate_is_written_only_into_a_new_or_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("orders-sink");
        let written = create(Kind::Sink, "orders-sink", Some(&dir), None).unwrap();
        assert_eq!(written, dir);
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let api = absolute(&default_connector_api()).unwrap();
        assert!(manifest.contains(&format!("path = \"{}\"", api.display())), "{manifest}");
        assert!(api.join("Cargo.toml").is_file());

        let error = create(Kind::Source, "orders-sink", Some(&dir), None).unwrap_err().to_string();
        assert!(error.contains("already exists and is not empty"), "{error}");
        let error = create(Kind::Sink, "Bad Name", Some(&tmp.path().join("x")), None).unwrap_err().to_string();
        assert!(error.contains("not a valid crate name"), "{error}");
        assert!(!tmp.path().join("x").exists());
        let error = create(Kind::Sink, "x", Some(&tmp.path().join("x")), Some(tmp.path())).unwrap_err().to_string();
        assert!(error.contains("--connector-api"), "{error}");

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        create(Kind::Source, "counter", Some(&empty), None).unwrap();
        assert!(empty.join("src/lib.rs").is_file());
    }
}
