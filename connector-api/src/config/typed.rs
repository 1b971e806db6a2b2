//! Typed configuration, written once.
//!
//! [`config_struct!`](crate::config_struct) declares a connector's settings
//! as one struct: each field says its key's name, type (the field's Rust
//! type), default, validators, importance and group, and its doc comment is
//! the key's documentation. From that one declaration come the
//! [`ConfigDef`](super::ConfigDef) the connector publishes, a parser that
//! checks every key once and reports every bad key (each [`ConfigIssue`]
//! carries its key as data), and the key names as constants for cross-key
//! checks.
//!
//! | field type              | Kafka Connect type | value                                       |
//! |-------------------------|--------------------|---------------------------------------------|
//! | `String`                | STRING             | as written                                  |
//! | `i32`, `u16`, `u32`     | INT                | within the type's and INT's bounds          |
//! | `i64`, `u64`, `usize`   | LONG               | within the type's and LONG's bounds         |
//! | `f64`                   | DOUBLE             |                                             |
//! | `bool`                  | BOOLEAN            | `true`/`false`, any case                    |
//! | `Vec<String>`           | LIST               | comma-separated, trimmed, empty items gone  |
//! | [`Secret`]              | PASSWORD           | never printed                               |
//! | `std::time::Duration`   | LONG               | milliseconds, Kafka style                   |
//! | a [`ConfigEnum`]        | STRING (or CLASS)  | a name or alias ([`config_enum!`](crate::config_enum)) |
//! | your own [`ConfigValue`]| its own            | its own parser                              |
//!
//! A plain field is *required* unless it has a `.default(..)`; an
//! `Option<T>` field is *optional*: absent or blank is `None` (and with
//! `.off(-1)`, so is `-1`).
//!
//! ```
//! use connector_api::{config_enum, config_struct, config::typed::Secret};
//! use std::time::Duration;
//!
//! config_enum! {
//!     /// How lines are written.
//!     pub enum Mode { Append = "append", Truncate = "truncate" | "overwrite" }
//! }
//!
//! config_struct! {
//!     /// The lines sink's settings.
//!     #[derive(Debug)]
//!     pub struct LinesConfig {
//!         /// The file lines go to.
//!         pub path: String = key("lines.path").high().group("Output").non_empty(),
//!         /// How many lines to keep.
//!         pub max_lines: u32 = key("lines.max").group("Output").default(1000).range(1..=100_000),
//!         /// What happens to an existing file.
//!         pub mode: Mode = key("lines.mode").group("Output").default(Mode::Append),
//!         /// Pause between flushes.
//!         pub flush_every: Duration = key("lines.flush.ms").default(Duration::from_secs(1)),
//!         /// Password of the store, if it has one.
//!         pub password: Option<Secret> = key("lines.password").low(),
//!     }
//! }
//!
//! let config = connector_api::ConnectorConfig::new()
//!     .with("lines.path", "/tmp/lines")
//!     .with("lines.mode", "overwrite")
//!     .with("lines.password", "hunter2");
//! let lines = LinesConfig::parse(&config).unwrap();
//! assert_eq!((lines.max_lines, lines.mode), (1000, Mode::Truncate));
//! assert_eq!(lines.password.as_ref().map(Secret::expose), Some("hunter2"));
//! assert!(!format!("{lines:?}").contains("hunter2"));
//!
//! // Every bad key, each named as data; the names are constants.
//! let bad = connector_api::ConnectorConfig::new().with("lines.max", "0").with("lines.mode", "x");
//! let issues = LinesConfig::parse(&bad).unwrap_err();
//! let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
//! assert_eq!(keys, [LinesConfig::path, LinesConfig::max_lines, LinesConfig::mode]);
//! assert_eq!(issues[1].message.as_str(), "Invalid value 0: must be [1,...,100000]");
//!
//! // The same declaration is the published definition.
//! let def = LinesConfig::definition();
//! assert_eq!(def.key("lines.max").and_then(|k| k.default()), Some("1000"));
//! assert_eq!(def.key("lines.flush.ms").and_then(|k| k.default()), Some("1000"));
//! assert_eq!(def.validate(&bad).len(), 3);
//! ```
//!
//! Combinations of keys are checked after the keys themselves, in small
//! functions from the parsed struct to the connector's own types (an enum
//! for each set of keys that only make sense together), each returning a
//! [`ConfigIssue`] that names the key it blames; [`Issues`] collects them so
//! a user sees every problem at once.

use std::{
    fmt,
    marker::PhantomData,
    ops::{Bound, RangeBounds},
    sync::Arc,
    time::Duration,
};

use super::{ConfigIssue, ConfigKey, ConfigType, ConnectorConfig, Importance};

/// A secret (a PASSWORD key's value). `Debug` and `Display` print
/// `[hidden]`; the value is read only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself: for the one call that needs it, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

/// A type a config value parses into.
pub trait ConfigValue: Sized + 'static {
    /// The Kafka Connect type the definition shows.
    const TYPE: ConfigType;
    /// The value from its text; the error is the whole message, e.g.
    /// `Invalid value x for configuration: expected type INT`.
    fn parse(text: &str) -> Result<Self, String>;
    /// What a value must look like, when the type alone does not say
    /// (an enum's names); shown as the key's validator.
    fn describe() -> Option<String> {
        None
    }
    /// Values to suggest in the definition (an enum's names).
    fn recommended() -> Vec<String> {
        Vec::new()
    }
}

/// A value written back as config text: defaults given as values, and
/// bounds in messages.
pub trait Render {
    fn render(&self) -> String;
}

fn expected(text: &str, ty: ConfigType) -> String {
    format!("Invalid value {text} for configuration: expected type {}", ty.name())
}

macro_rules! integers {
    ($($t:ty => $ty:ident),*) => {$(
        impl ConfigValue for $t {
            const TYPE: ConfigType = ConfigType::$ty;
            fn parse(text: &str) -> Result<Self, String> {
                let wide: i64 = text.trim().parse().map_err(|_| expected(text, Self::TYPE))?;
                let (lo, hi) = match Self::TYPE {
                    ConfigType::Int => (i128::from(i32::MIN), i128::from(i32::MAX)),
                    _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
                };
                let (lo, hi) = (lo.max(<$t>::MIN as i128), hi.min(<$t>::MAX as i128));
                <$t>::try_from(wide)
                    .ok()
                    .filter(|_| (lo..=hi).contains(&i128::from(wide)))
                    .ok_or_else(|| format!("Invalid value {text}: must be [{lo},...,{hi}]"))
            }
        }
        impl Render for $t {
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integers!(i32 => Int, u16 => Int, u32 => Int, i64 => Long, u64 => Long, usize => Long);

impl ConfigValue for f64 {
    const TYPE: ConfigType = ConfigType::Double;
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| expected(text, Self::TYPE))
    }
}

impl Render for f64 {
    fn render(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for bool {
    const TYPE: ConfigType = ConfigType::Boolean;
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("true") => Ok(true),
            t if t.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(expected(text, Self::TYPE)),
        }
    }
}

impl Render for bool {
    fn render(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for String {
    const TYPE: ConfigType = ConfigType::String;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
}

impl Render for String {
    fn render(&self) -> String {
        self.clone()
    }
}

impl ConfigValue for Vec<String> {
    const TYPE: ConfigType = ConfigType::List;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
    }
}

impl Render for Vec<String> {
    fn render(&self) -> String {
        self.join(",")
    }
}

impl ConfigValue for Secret {
    const TYPE: ConfigType = ConfigType::Password;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
}

/// Milliseconds, as Kafka's `*.ms` keys (LONG) are written.
impl ConfigValue for Duration {
    const TYPE: ConfigType = ConfigType::Long;
    fn parse(text: &str) -> Result<Self, String> {
        let ms: i64 = text.trim().parse().map_err(|_| expected(text, Self::TYPE))?;
        u64::try_from(ms)
            .map(Duration::from_millis)
            .map_err(|_| format!("Invalid value {text}: must be a non-negative number of milliseconds"))
    }
}

impl Render for Duration {
    fn render(&self) -> String {
        self.as_millis().to_string()
    }
}

/// A Rust enum chosen by name: each value with its canonical name (matched
/// in any case) and aliases (matched exactly, e.g. Confluent's Java class
/// names). [`config_enum!`](crate::config_enum) declares one; a manual
/// impl is a table.
pub trait ConfigEnum: Copy + PartialEq + 'static {
    const VALUES: &'static [(Self, &'static str, &'static [&'static str])];

    /// The canonical name.
    fn config_name(self) -> &'static str {
        Self::VALUES.iter().find(|(v, _, _)| *v == self).map_or("", |(_, name, _)| name)
    }
    /// The names and aliases, as messages list them: `a (alias), b`.
    fn supported() -> String {
        let one = |(_, name, aliases): &(Self, &str, &[&str])| {
            if aliases.is_empty() {
                name.to_string()
            } else {
                format!("{name} ({})", aliases.join(", "))
            }
        };
        Self::VALUES.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

impl<E: ConfigEnum> ConfigValue for E {
    const TYPE: ConfigType = ConfigType::String;
    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        E::VALUES
            .iter()
            .find(|(_, name, aliases)| name.eq_ignore_ascii_case(t) || aliases.contains(&t))
            .map(|(v, _, _)| *v)
            .ok_or_else(|| format!("Invalid value {text}: supported values are {}", E::supported()))
    }
    fn describe() -> Option<String> {
        Some(format!("one of {}", E::supported()))
    }
    fn recommended() -> Vec<String> {
        E::VALUES.iter().map(|(_, name, _)| name.to_string()).collect()
    }
}

impl<E: ConfigEnum> Render for E {
    fn render(&self) -> String {
        self.config_name().to_string()
    }
}

/// Values made of text, for the text validators (`non_empty`, `one_of`,
/// `regex`); a list's items are checked one by one, as Kafka Connect does.
pub trait Texts {
    fn texts(&self) -> Vec<&str>;
    fn is_blank(&self) -> bool;
}

impl Texts for String {
    fn texts(&self) -> Vec<&str> {
        vec![self.as_str()]
    }
    fn is_blank(&self) -> bool {
        self.trim().is_empty()
    }
}

impl Texts for Vec<String> {
    fn texts(&self) -> Vec<&str> {
        self.iter().map(String::as_str).collect()
    }
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

/// A struct field's type: a value (required or defaulted) or an `Option`
/// of one (optional: absent or blank is `None`).
pub trait Field: Sized + 'static {
    type Value: ConfigValue;
    const OPTIONAL: bool;
    /// The field from its value, `None` for a required key without one.
    fn from_value(value: Option<Self::Value>) -> Option<Self>;
}

impl<T: ConfigValue> Field for T {
    type Value = T;
    const OPTIONAL: bool = false;
    fn from_value(value: Option<T>) -> Option<T> {
        value
    }
}

impl<T: ConfigValue> Field for Option<T> {
    type Value = T;
    const OPTIONAL: bool = true;
    fn from_value(value: Option<T>) -> Option<Option<T>> {
        Some(value)
    }
}

/// A failed check: `None` for the standard message built from the check's
/// description, or the check's own message.
type CheckFn<V> = Arc<dyn Fn(&V) -> Result<(), Option<String>> + Send + Sync>;

struct Check<V> {
    description: String,
    run: CheckFn<V>,
}

impl<V> Clone for Check<V> {
    fn clone(&self) -> Self {
        Check { description: self.description.clone(), run: Arc::clone(&self.run) }
    }
}

/// One key: its name, the definition's attributes, and a typed parser that
/// checks the value once. `F` is the field type: `u32`, `Option<Secret>`, ...
pub struct Key<F: Field> {
    name: &'static str,
    ty: ConfigType,
    default: Option<String>,
    off: Option<String>,
    importance: Importance,
    group: &'static str,
    doc: String,
    checks: Vec<Check<F::Value>>,
    recommended: Vec<String>,
    field: PhantomData<fn() -> F>,
}

impl<F: Field> Clone for Key<F> {
    fn clone(&self) -> Self {
        Key {
            name: self.name,
            ty: self.ty,
            default: self.default.clone(),
            off: self.off.clone(),
            importance: self.importance,
            group: self.group,
            doc: self.doc.clone(),
            checks: self.checks.clone(),
            recommended: self.recommended.clone(),
            field: PhantomData,
        }
    }
}

impl<F: Field> fmt::Debug for Key<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("name", &self.name).field("type", &self.ty).field("default", &self.default).finish()
    }
}

impl<F: Field> Key<F> {
    /// A key of medium importance, of the field type's Kafka Connect type,
    /// required unless given a default (or optional by its field type).
    pub fn new(name: &'static str) -> Self {
        Key {
            name,
            ty: F::Value::TYPE,
            default: None,
            off: None,
            importance: Importance::Medium,
            group: "",
            doc: String::new(),
            checks: Vec::new(),
            recommended: F::Value::recommended(),
            field: PhantomData,
        }
    }
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }
    /// The documentation from doc-comment lines (what `config_struct!`
    /// passes); no lines leave the documentation as it was.
    #[doc(hidden)]
    pub fn doc_lines(self, lines: &[&str]) -> Self {
        if lines.is_empty() {
            return self;
        }
        let doc = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
        self.doc(doc.trim())
    }
    pub fn importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }
    pub fn high(self) -> Self {
        self.importance(Importance::High)
    }
    pub fn low(self) -> Self {
        self.importance(Importance::Low)
    }
    /// The group the key is shown in; keys keep declaration order in it.
    pub fn group(mut self, group: &'static str) -> Self {
        self.group = group;
        self
    }
    /// Shown as CLASS (a class name chosen among an enum's names).
    pub fn class(mut self) -> Self {
        self.ty = ConfigType::Class;
        self
    }
    /// The default, as a value.
    pub fn default(mut self, value: F::Value) -> Self
    where
        F::Value: Render,
    {
        self.default = Some(value.render());
        self
    }
    /// The default as config text, parsed like a value the user gave (for a
    /// default spelled as an alias, e.g. a Java class name).
    pub fn default_text(mut self, text: &str) -> Self {
        self.default = Some(text.to_string());
        self
    }
    /// Any other check: `description` is shown as the validator; the error
    /// is the message (a check on a PASSWORD key is reported by its
    /// description only, so it cannot leak the secret).
    pub fn check(
        mut self,
        description: impl Into<String>,
        check: impl Fn(&F::Value) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let run: CheckFn<F::Value> = Arc::new(move |v| check(v).map_err(Some));
        self.checks.push(Check { description: description.into(), run });
        self
    }
    fn standard(mut self, description: String, ok: impl Fn(&F::Value) -> bool + Send + Sync + 'static) -> Self {
        let run: CheckFn<F::Value> = Arc::new(move |v| if ok(v) { Ok(()) } else { Err(None) });
        self.checks.push(Check { description, run });
        self
    }
    /// Inclusive or open bounds, checked once, on the parsed value.
    pub fn range(self, range: impl RangeBounds<F::Value>) -> Self
    where
        F::Value: PartialOrd + Render + Clone + Send + Sync,
    {
        let bound = |b: Bound<&F::Value>| match b {
            Bound::Included(v) => Some((v.clone(), true)),
            Bound::Excluded(v) => Some((v.clone(), false)),
            Bound::Unbounded => None,
        };
        let (lo, hi) = (bound(range.start_bound()), bound(range.end_bound()));
        // Kafka Connect's spelling for inclusive bounds, `[1,...,10]`.
        let description = match (&lo, &hi) {
            (Some((a, true)), Some((b, true))) => format!("[{},...,{}]", a.render(), b.render()),
            (Some((a, true)), None) => format!("[{},...]", a.render()),
            (None, Some((b, true))) => format!("[...,{}]", b.render()),
            _ => [fmt_bound(&lo, ">"), fmt_bound(&hi, "<")].into_iter().flatten().collect::<Vec<_>>().join(" and "),
        };
        self.standard(description, move |v| {
            let above = match &lo {
                Some((a, true)) => v >= a,
                Some((a, false)) => v > a,
                None => true,
            };
            let below = match &hi {
                Some((b, true)) => v <= b,
                Some((b, false)) => v < b,
                None => true,
            };
            above && below
        })
    }
}

fn fmt_bound<V: Render>(bound: &Option<(V, bool)>, op: &str) -> Option<String> {
    match bound {
        Some((v, true)) => Some(format!("{op}= {}", v.render())),
        Some((v, false)) => Some(format!("{op} {}", v.render())),
        None => None,
    }
}

impl<F: Field> Key<F>
where
    F::Value: Texts,
{
    /// Not blank (a list: at least one item).
    pub fn non_empty(self) -> Self {
        let description = if F::Value::TYPE == ConfigType::List { "at least one item" } else { "non-empty string" };
        self.standard(description.to_string(), |v| !v.is_blank())
    }
    /// One of the listed values, exactly (each item of a list).
    pub fn one_of(mut self, choices: &[&str]) -> Self {
        let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
        self.recommended = choices.clone();
        let description = format!("[{}]", choices.join(", "));
        self.standard(description, move |v| v.texts().iter().all(|t| choices.iter().any(|c| c == t)))
    }
    /// The whole value (each item of a list) matches the pattern. A pattern
    /// that does not compile fails every value, naming the key.
    pub fn regex(self, pattern: &str) -> Self {
        let compiled = regex::Regex::new(&format!("^(?:{pattern})$"));
        let description = pattern.to_string();
        match compiled {
            Ok(re) => self.standard(description, move |v| v.texts().iter().all(|t| re.is_match(t))),
            Err(e) => {
                let message = format!("the key's pattern {pattern} does not compile: {e}");
                self.check(description, move |_| Err(message.clone()))
            }
        }
    }
}

impl<T: ConfigValue> Key<Option<T>> {
    /// `sentinel` (Kafka's `-1`) means off, like blank, and is the default.
    pub fn off(mut self, sentinel: i64) -> Self {
        self.off = Some(sentinel.to_string());
        self
    }
}

impl<F: Field> Key<F> {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The typed value of this key in `config` (or its default); the error
    /// names this key.
    pub fn get(&self, config: &ConnectorConfig) -> Result<F, ConfigIssue> {
        self.read(config.get(self.name)).map_err(|message| self.issue(message))
    }

    /// An issue blaming this key.
    pub fn issue(&self, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue::new(self.name, message)
    }

    fn read(&self, given: Option<&str>) -> Result<F, String> {
        let value = match given.or(self.default.as_deref()) {
            Some(text) if !(F::OPTIONAL && self.means_none(text)) => Some(self.value(text)?),
            _ => None,
        };
        F::from_value(value)
            .ok_or_else(|| format!("Missing required configuration \"{}\" which has no default value.", self.name))
    }

    fn means_none(&self, text: &str) -> bool {
        text.trim().is_empty() || self.off.as_deref() == Some(text.trim())
    }

    fn value(&self, text: &str) -> Result<F::Value, String> {
        let hidden = self.ty == ConfigType::Password;
        let shown = if hidden { "[hidden]" } else { text };
        let value = F::Value::parse(text).map_err(|message| {
            if hidden {
                format!("Invalid value [hidden]: must be {}", self.describe())
            } else if F::OPTIONAL && self.off.is_none() && F::Value::describe().is_some() {
                format!("{message} (or empty)")
            } else {
                message
            }
        })?;
        for check in &self.checks {
            match (check.run)(&value) {
                Ok(()) => {}
                Err(Some(message)) if !hidden => return Err(message),
                Err(_) => {
                    return Err(format!("Invalid value {shown}: must be {}{}", self.off_prefix(), check.description))
                }
            }
        }
        Ok(value)
    }

    fn off_prefix(&self) -> String {
        self.off.as_deref().map(|s| format!("{s} (off) or ")).unwrap_or_default()
    }

    /// The validator text of the definition: what a value must be beyond
    /// its type (empty: any value of the type).
    fn describe(&self) -> String {
        let mut parts: Vec<String> = F::Value::describe().into_iter().collect();
        parts.extend(self.checks.iter().map(|c| c.description.clone()));
        let what = parts.join("; ");
        match (&self.off, F::OPTIONAL) {
            (Some(_), _) => format!("{}{what}", self.off_prefix()),
            (None, true) if !what.is_empty() => format!("empty or {what}"),
            _ => what,
        }
    }

    /// This key's entry in the definition; it checks a value with this
    /// key's parser (type, bounds, validators: once).
    pub fn config_key(self) -> ConfigKey {
        let default = self.default.clone().or_else(|| F::OPTIONAL.then(|| self.off.clone().unwrap_or_default()));
        let mut key = ConfigKey::new(self.name, self.ty)
            .importance(self.importance)
            .doc(self.doc.as_str())
            .group(self.group)
            .recommended_values(self.recommended.clone());
        if let Some(default) = default {
            key = key.default_value(default);
        }
        let description = self.describe();
        key.checked_by(description, move |text| self.read(Some(text)).map(|_| ()))
    }
}

/// Every issue of a config, each naming its key: per-key issues from a
/// parse, then cross-key ones, so a user sees every problem at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<ConfigIssue>);

impl Issues {
    pub fn new() -> Self {
        Issues::default()
    }
    /// The value, or `None` with its issue recorded.
    pub fn take<T>(&mut self, result: Result<T, ConfigIssue>) -> Option<T> {
        result.map_err(|issue| self.0.push(issue)).ok()
    }
    /// Records an issue blaming `key`.
    pub fn blame(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigIssue::new(key, message));
    }
    pub fn extend(&mut self, issues: impl IntoIterator<Item = ConfigIssue>) {
        self.0.extend(issues);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_vec(self) -> Vec<ConfigIssue> {
        self.0
    }
    /// `value()` if no issue was recorded, else every issue.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<ConfigIssue>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }
}

/// A `Config` error listing every issue as `key: message`, for a task
/// whose config does not parse (`Settings::parse(config).map_err(config_error)?`).
pub fn config_error(issues: Vec<ConfigIssue>) -> crate::ConnectorError {
    let all: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.key, i.message)).collect();
    crate::ConnectorError::config(all.join("; "))
}

/// Declares a connector's settings once: the struct, its
/// `definition() -> ConfigDef`, `parse(&ConnectorConfig) -> Result<Self,
/// Vec<ConfigIssue>>` (every bad key), `validate(&ConnectorConfig) ->
/// Vec<ConfigIssue>`, and each key's name as an associated constant named
/// like its field (`Settings::flush_size == "flush.size"`).
///
/// Each field is `/// doc` `vis name: Type = key("the.key")` followed by
/// [`Key`] builder calls (`.default(..)`, `.range(..)`, `.high()`,
/// `.group(..)`, ...). Only doc comments are allowed on fields; the doc
/// comment is the key's documentation. See [the module](crate::config::typed).
#[macro_export]
macro_rules! config_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $ty:ty = key($key:literal) $(. $m:ident ( $($a:tt)* ))*
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[doc = $doc])* $fvis $field: $ty, )*
        }

        #[allow(non_upper_case_globals, dead_code)]
        impl $name {
            $( #[doc = concat!("`", $key, "`")] pub const $field: &'static str = $key; )*

            /// The keys, as published (documentation, defaults, validators, groups).
            pub fn definition() -> $crate::ConfigDef {
                $crate::ConfigDef::new()
                $(
                    .define(
                        $crate::config::typed::Key::<$ty>::new($key) $(. $m ( $($a)* ))*
                            .doc_lines(&[$($doc),*])
                            .config_key(),
                    )
                )*
            }

            /// Every key parsed and checked once; every issue, each naming its key.
            #[allow(irrefutable_let_patterns)]
            pub fn parse(
                config: &$crate::ConnectorConfig,
            ) -> ::std::result::Result<Self, ::std::vec::Vec<$crate::ConfigIssue>> {
                let mut issues = $crate::config::typed::Issues::new();
                $(
                    let $field = issues.take(
                        $crate::config::typed::Key::<$ty>::new($key) $(. $m ( $($a)* ))* .get(config),
                    );
                )*
                if let ($(::std::option::Option::Some($field),)*) = ($($field,)*) {
                    if issues.is_empty() {
                        return ::std::result::Result::Ok($name { $($field),* });
                    }
                }
                ::std::result::Result::Err(issues.into_vec())
            }

            /// The issues of `config`; empty when it parses.
            pub fn validate(config: &$crate::ConnectorConfig) -> ::std::vec::Vec<$crate::ConfigIssue> {
                Self::parse(config).err().unwrap_or_default()
            }
        }
    };
}

/// Declares a unit enum chosen by name in a config: `Variant = "name"`,
/// optionally `| "alias"`s. Derives `Debug, Clone, Copy, PartialEq, Eq` and
/// implements [`ConfigEnum`].
#[macro_export]
macro_rules! config_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident = $text:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl $crate::config::typed::ConfigEnum for $name {
            const VALUES: &'static [(Self, &'static str, &'static [&'static str])] =
                &[$( ($name::$variant, $text, &[$($alias),*]) ),*];
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigDef;
    use std::sync::atomic::{AtomicUsize, Ordering};

    config_enum! {
        /// A test enum.
        enum Codec { Snappy = "snappy", Zstd = "zstd", None = "none" | "uncompressed" | "io.example.NoCodec" }
    }

    config_struct! {
        /// Every kind of key.
        #[derive(Debug)]
        struct All {
            /// A required string.
            /// On two lines.
            name: String = key("name").high().group("Main").non_empty(),
            /// An int with bounds.
            size: u32 = key("size").group("Main").default(10).range(1..=100),
            long: i64 = key("long").default(-5),
            ratio: f64 = key("ratio").default(0.5).range(0.0..=1.0),
            flag: bool = key("flag").default(false),
            items: Vec<String> = key("items").default_text("a,b").regex("[a-z]+"),
            password: Option<Secret> = key("password").low(),
            timeout: Duration = key("timeout.ms").default(Duration::from_secs(30)),
            codec: Codec = key("codec").class().default_text("io.example.NoCodec"),
            mode: String = key("mode").default_text("a").one_of(&["a", "b"]),
            interval: Option<u64> = key("interval.ms").off(-1).range(1..),
            comment: Option<String> = key("comment"),
        }
    }

    fn base() -> ConnectorConfig {
        ConnectorConfig::new().with("name", "n")
    }

    fn keys(issues: &[ConfigIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn defaults_and_optional_keys() {
        let all = All::parse(&base()).unwrap();
        assert_eq!((all.name.as_str(), all.size, all.long, all.ratio, all.flag), ("n", 10, -5, 0.5, false));
        assert_eq!(all.items, ["a", "b"]);
        assert_eq!(all.password, None);
        assert_eq!(all.timeout, Duration::from_secs(30));
        assert_eq!(all.codec, Codec::None);
        assert_eq!((all.mode.as_str(), all.interval, all.comment), ("a", None, None));
    }

    #[test]
    fn values_parse_into_their_types() {
        let c = base()
            .with("size", " 100 ")
            .with("long", "-9000000000")
            .with("ratio", "1")
            .with("flag", "TRUE")
            .with("items", "x, y,,z")
            .with("password", "s3cret")
            .with("timeout.ms", "1500")
            .with("codec", "ZSTD")
            .with("mode", "b")
            .with("interval.ms", "60000")
            .with("comment", "hi");
        let all = All::parse(&c).unwrap();
        assert_eq!((all.size, all.long, all.ratio, all.flag), (100, -9_000_000_000, 1.0, true));
        assert_eq!(all.items, ["x", "y", "z"]);
        assert_eq!(all.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(all.timeout, Duration::from_millis(1500));
        assert_eq!((all.codec, all.mode.as_str(), all.interval), (Codec::Zstd, "b", Some(60000)));
        assert_eq!(all.comment.as_deref(), Some("hi"));
        // Blank and the off value are None for optional keys.
        let all = All::parse(&base().with("interval.ms", "-1").with("comment", " ").with("password", "")).unwrap();
        assert_eq!((all.interval, all.comment, all.password), (None, None, None));
    }

    macro_rules! codecs {
        () => {
            "snappy, zstd, none (uncompressed, io.example.NoCodec)"
        };
    }

    #[test]
    fn each_bad_value_is_one_issue_naming_its_key() {
        // (key, value, the whole message)
        let table: &[(&str, &str, &str)] = &[
            ("name", " ", "Invalid value  : must be non-empty string"),
            ("size", "0", "Invalid value 0: must be [1,...,100]"),
            ("size", "101", "Invalid value 101: must be [1,...,100]"),
            ("size", "-3", "Invalid value -3: must be [0,...,2147483647]"),
            ("size", "ten", "Invalid value ten for configuration: expected type INT"),
            ("long", "1.5", "Invalid value 1.5 for configuration: expected type LONG"),
            ("ratio", "2", "Invalid value 2: must be [0,...,1]"),
            ("ratio", "NaN", "Invalid value NaN for configuration: expected type DOUBLE"),
            ("flag", "yes", "Invalid value yes for configuration: expected type BOOLEAN"),
            ("items", "a,B", "Invalid value a,B: must be [a-z]+"),
            ("timeout.ms", "-1", "Invalid value -1: must be a non-negative number of milliseconds"),
            ("codec", "lz4", concat!("Invalid value lz4: supported values are ", codecs!())),
            // Aliases are exact, names any case.
            ("codec", "Uncompressed", concat!("Invalid value Uncompressed: supported values are ", codecs!())),
            ("mode", "A", "Invalid value A: must be [a, b]"),
            ("interval.ms", "0", "Invalid value 0: must be -1 (off) or [1,...]"),
            ("interval.ms", "-2", "Invalid value -2: must be [0,...,9223372036854775807]"),
            ("comment", "x", ""),
        ];
        for (key, value, message) in table {
            let issues = All::validate(&base().with(*key, *value));
            if message.is_empty() {
                assert_eq!(issues, vec![], "{key}={value}");
                continue;
            }
            assert_eq!(issues, vec![ConfigIssue::new(*key, *message)], "{key}={value}");
            // The published definition checks with the same parser.
            assert_eq!(All::definition().validate(&base().with(*key, *value)), issues, "{key}={value}");
        }
    }

    #[test]
    fn every_bad_key_is_reported_and_a_required_key_is_missing() {
        let c = ConnectorConfig::new().with("size", "0").with("flag", "maybe").with("codec", "x");
        let issues = All::parse(&c).unwrap_err();
        assert_eq!(keys(&issues), [All::name, All::size, All::flag, All::codec]);
        assert_eq!(issues[0].message.as_str(), "Missing required configuration \"name\" which has no default value.");
        assert_eq!((All::name, All::interval), ("name", "interval.ms"));
    }

    #[test]
    fn a_range_and_a_custom_check_run_once_per_value() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let key = Key::<u32>::new("n").range(2..).check("even", |v| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            if v % 2 == 0 {
                Ok(())
            } else {
                Err(format!("{v} is odd"))
            }
        });
        assert_eq!(key.get(&ConnectorConfig::new().with("n", "4")), Ok(4));
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(key.get(&ConnectorConfig::new().with("n", "5")), Err(ConfigIssue::new("n", "5 is odd")));
        // The range failed first: the custom check did not run.
        assert_eq!(
            key.get(&ConnectorConfig::new().with("n", "1")),
            Err(ConfigIssue::new("n", "Invalid value 1: must be [2,...]"))
        );
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        let def = ConfigDef::new().define(key.config_key());
        assert_eq!(def.validate(&ConnectorConfig::new().with("n", "7")), vec![ConfigIssue::new("n", "7 is odd")]);
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
        // Exclusive bounds.
        let key = Key::<f64>::new("x").range(0.0..1.0);
        assert_eq!(
            key.get(&ConnectorConfig::new().with("x", "1")).unwrap_err().message.as_str(),
            "Invalid value 1: must be >= 0 and < 1"
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!((format!("{secret:?}"), format!("{secret}")), ("[hidden]".to_string(), "[hidden]".to_string()));
        let all = All::parse(&base().with("password", "hunter2")).unwrap();
        assert!(!format!("{all:?}").contains("hunter2"));
        // A check on a PASSWORD key reports its description, not its message.
        let key = Key::<Secret>::new("pw").check("at least 8 characters", |s| {
            if s.expose().len() >= 8 {
                Ok(())
            } else {
                Err(format!("{} is too short", s.expose()))
            }
        });
        let issue = key.get(&ConnectorConfig::new().with("pw", "hunter2")).unwrap_err();
        assert_eq!(issue.message.as_str(), "Invalid value [hidden]: must be at least 8 characters");
        let def = ConfigDef::new().define(key.config_key());
        assert_eq!(def.validate(&ConnectorConfig::new().with("pw", "hunter2")), vec![issue]);
        assert!(def.infos()[0].is_password());
    }

    #[test]
    fn the_definition_is_the_declaration() {
        let def = All::definition();
        let names: Vec<&str> = def.keys().iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "name",
                "size",
                "long",
                "ratio",
                "flag",
                "items",
                "password",
                "timeout.ms",
                "codec",
                "mode",
                "interval.ms",
                "comment"
            ]
        );
        let infos = def.infos();
        let info = |name: &str| infos.iter().find(|i| i.name.as_str() == name).unwrap();
        // (key, type, default, required, importance, group, validator)
        type Row<'a> = (&'a str, &'a str, Option<&'a str>, bool, &'a str, &'a str, &'a str);
        let table: &[Row] = &[
            ("name", "STRING", None, true, "HIGH", "Main", "non-empty string"),
            ("size", "INT", Some("10"), false, "MEDIUM", "Main", "[1,...,100]"),
            ("long", "LONG", Some("-5"), false, "MEDIUM", "", ""),
            ("ratio", "DOUBLE", Some("0.5"), false, "MEDIUM", "", "[0,...,1]"),
            ("flag", "BOOLEAN", Some("false"), false, "MEDIUM", "", ""),
            ("items", "LIST", Some("a,b"), false, "MEDIUM", "", "[a-z]+"),
            ("password", "PASSWORD", Some(""), false, "LOW", "", ""),
            ("timeout.ms", "LONG", Some("30000"), false, "MEDIUM", "", ""),
            (
                "codec",
                "CLASS",
                Some("io.example.NoCodec"),
                false,
                "MEDIUM",
                "",
                "one of snappy, zstd, none (uncompressed, io.example.NoCodec)",
            ),
            ("mode", "STRING", Some("a"), false, "MEDIUM", "", "[a, b]"),
            ("interval.ms", "LONG", Some("-1"), false, "MEDIUM", "", "-1 (off) or [1,...]"),
            ("comment", "STRING", Some(""), false, "MEDIUM", "", ""),
        ];
        for (name, ty, default, required, importance, group, validator) in table {
            let i = info(name);
            assert_eq!(i.type_name.as_str(), *ty, "{name}");
            assert_eq!(i.default_value.as_ref().map(|d| d.as_str()).into_option(), *default, "{name}");
            assert_eq!(i.required, *required, "{name}");
            assert_eq!((i.importance.as_str(), i.group.as_str()), (*importance, *group), "{name}");
            assert_eq!(i.validator.as_str(), *validator, "{name}");
        }
        assert_eq!(info("name").documentation.as_str(), "A required string. On two lines.");
        assert_eq!(info("size").documentation.as_str(), "An int with bounds.");
        let codecs: Vec<&str> = info("codec").recommended_values.iter().map(|v| v.as_str()).collect();
        assert_eq!(codecs, ["snappy", "zstd", "none"]);
        assert_eq!(info("mode").recommended_values.len(), 2);
        // Every default parses: a config with the required keys only is valid.
        assert_eq!(def.validate(&base()), vec![]);
    }

    #[test]
    fn cross_key_checks_blame_their_key_and_all_issues_are_kept() {
        /// Either a field partitioner with its fields, or none: the invalid
        /// combination (field without fields) cannot be represented.
        #[derive(Debug, PartialEq)]
        enum Partitioning {
            Default,
            Field(Vec<String>),
        }
        config_struct! {
            struct Raw {
                kind: String = key("kind").default_text("default").one_of(&["default", "field"]),
                fields: Vec<String> = key("fields").default_text(""),
                user: Option<String> = key("user"),
                password: Option<Secret> = key("password"),
            }
        }
        fn partitioning(raw: &Raw) -> Result<Partitioning, ConfigIssue> {
            match raw.kind.as_str() {
                "field" if raw.fields.is_empty() => Err(ConfigIssue::new(Raw::fields, "must list a field")),
                "field" => Ok(Partitioning::Field(raw.fields.clone())),
                _ => Ok(Partitioning::Default),
            }
        }
        fn check(config: &ConnectorConfig) -> Result<Partitioning, Vec<ConfigIssue>> {
            let raw = Raw::parse(config)?;
            let mut issues = Issues::new();
            let partitioning = issues.take(partitioning(&raw));
            if raw.user.is_some() != raw.password.is_some() {
                issues.blame(Raw::password, "user and password go together");
            }
            match partitioning {
                Some(p) => issues.finish(|| p),
                None => Err(issues.into_vec()),
            }
        }
        let c = ConnectorConfig::new().with("kind", "field").with("user", "u");
        assert_eq!(keys(&check(&c).unwrap_err()), ["fields", "password"]);
        assert_eq!(check(&c.with("fields", "a").with("password", "p")), Ok(Partitioning::Field(vec!["a".into()])));
        assert_eq!(keys(&check(&ConnectorConfig::new().with("kind", "x")).unwrap_err()), ["kind"]);
    }

    #[test]
    fn a_task_error_lists_every_issue_by_key() {
        let issues = All::parse(&ConnectorConfig::new().with("size", "0")).unwrap_err();
        let err = config_error(issues);
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert_eq!(
            err.message(),
            "name: Missing required configuration \"name\" which has no default value.; \
             size: Invalid value 0: must be [1,...,100]"
        );
    }

    #[test]
    fn a_bad_pattern_is_an_issue_not_a_panic() {
        let key = Key::<String>::new("p").regex("(");
        let issue = key.get(&ConnectorConfig::new().with("p", "x")).unwrap_err();
        assert_eq!(issue.key.as_str(), "p");
        assert!(issue.message.contains("does not compile"), "{issue:?}");
    }

    #[test]
    fn keys_work_alone() {
        let batch = Key::<u32>::new("batch.max.rows").default(1000).range(1..=100_000);
        assert_eq!(batch.get(&ConnectorConfig::new()), Ok(1000));
        assert_eq!(batch.get(&ConnectorConfig::new().with("batch.max.rows", "5")), Ok(5));
        assert_eq!(batch.name(), "batch.max.rows");
        let codec = Key::<Option<Codec>>::new("codec");
        assert_eq!(codec.get(&ConnectorConfig::new().with("codec", "")), Ok(None));
        assert_eq!(
            codec.get(&ConnectorConfig::new().with("codec", "lz4")).unwrap_err().message.as_str(),
            "Invalid value lz4: supported values are snappy, zstd, none (uncompressed, io.example.NoCodec) (or empty)"
        );
        let required = Key::<Vec<String>>::new("tables").non_empty();
        assert_eq!(
            required.get(&ConnectorConfig::new().with("tables", " , ")).unwrap_err().message.as_str(),
            "Invalid value  , : must be at least one item"
        );
    }
}
