//! Connector configuration: the values a user submitted, and the definition
//! a connector publishes of the keys it understands.
//!
//! The definition (with its validators, which may be closures) lives in the
//! plugin; validation therefore runs in the plugin. What crosses the boundary
//! is a plain description ([`ConfigKeyInfo`]) for `/connector-plugins`, for the
//! validate endpoint and for masking `password` values.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};
use std::{collections::BTreeMap, fmt, sync::Arc};

pub mod typed;

/// The type of a config value, with Kafka Connect's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String,
    Int,
    Long,
    Double,
    Boolean,
    /// Comma-separated.
    List,
    /// A secret: never shown by the REST API nor logged.
    Password,
    /// A class name (Sluice: a plugin class or one of its aliases).
    Class,
}

impl ConfigType {
    /// Kafka Connect's spelling, as `/connector-plugins/{class}/config` shows it.
    pub const fn name(self) -> &'static str {
        match self {
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::List => "LIST",
            ConfigType::Password => "PASSWORD",
            ConfigType::Class => "CLASS",
        }
    }

    fn check(self, value: &str) -> Result<(), String> {
        let ok = match self {
            ConfigType::Int => value.trim().parse::<i32>().is_ok(),
            ConfigType::Long => value.trim().parse::<i64>().is_ok(),
            ConfigType::Double => value.trim().parse::<f64>().is_ok(),
            ConfigType::Boolean => matches!(value.trim(), "true" | "false" | "TRUE" | "FALSE" | "True" | "False"),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("Invalid value {value} for configuration: expected type {}", self.name()))
        }
    }
}

/// How much a key matters, as Kafka Connect ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    High,
    Medium,
    Low,
}

impl Importance {
    pub const fn name(self) -> &'static str {
        match self {
            Importance::High => "HIGH",
            Importance::Medium => "MEDIUM",
            Importance::Low => "LOW",
        }
    }
}

type CustomCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// A check on one value.
#[derive(Clone)]
pub enum Validator {
    /// Inclusive numeric bounds; either may be open.
    Range { min: Option<f64>, max: Option<f64> },
    /// One of the listed values (case-sensitive).
    OneOf(Vec<String>),
    /// Not empty after trimming.
    NonEmpty,
    /// The whole value matches the regular expression.
    Regex(regex::Regex),
    /// Anything else; the `String` describes it in `/connector-plugins`.
    Custom(String, CustomCheck),
}

impl Validator {
    pub fn range(min: Option<f64>, max: Option<f64>) -> Self {
        Validator::Range { min, max }
    }
    pub fn one_of<I: IntoIterator<Item = S>, S: Into<String>>(choices: I) -> Self {
        Validator::OneOf(choices.into_iter().map(Into::into).collect())
    }
    /// Panics on a bad pattern: patterns are constants written by the author.
    pub fn regex(pattern: &str) -> Self {
        #[allow(clippy::expect_used)]
        Validator::Regex(regex::Regex::new(&format!("^(?:{pattern})$")).expect("validator pattern must compile"))
    }
    pub fn custom(
        description: impl Into<String>,
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Validator::Custom(description.into(), Arc::new(check))
    }

    fn check(&self, value: &str) -> Result<(), String> {
        match self {
            Validator::Range { min, max } => {
                let v: f64 = value.trim().parse().map_err(|_| format!("Invalid value {value}: not a number"))?;
                if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
                    Err(format!("Invalid value {value}: must be {}", self.describe()))
                } else {
                    Ok(())
                }
            }
            Validator::OneOf(choices) => {
                if choices.iter().any(|c| c == value) {
                    Ok(())
                } else {
                    Err(format!("Invalid value {value}: must be one of {}", choices.join(", ")))
                }
            }
            Validator::NonEmpty => {
                if value.trim().is_empty() {
                    Err("must not be empty".to_string())
                } else {
                    Ok(())
                }
            }
            Validator::Regex(re) => {
                if re.is_match(value) {
                    Ok(())
                } else {
                    Err(format!("Invalid value {value}: must match {}", self.describe()))
                }
            }
            Validator::Custom(_, check) => check(value),
        }
    }

    fn describe(&self) -> String {
        match self {
            Validator::Range { min: Some(a), max: Some(b) } => format!("[{a},...,{b}]"),
            Validator::Range { min: Some(a), max: None } => format!("[{a},...]"),
            Validator::Range { min: None, max: Some(b) } => format!("[...,{b}]"),
            Validator::Range { min: None, max: None } => "any number".to_string(),
            Validator::OneOf(c) => format!("[{}]", c.join(", ")),
            Validator::NonEmpty => "non-empty string".to_string(),
            Validator::Regex(re) => {
                let p = re.as_str();
                p.strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")).unwrap_or(p).to_string()
            }
            Validator::Custom(d, _) => d.clone(),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One key a connector understands.
#[derive(Debug, Clone)]
pub struct ConfigKey {
    name: String,
    ty: ConfigType,
    default: Option<String>,
    importance: Importance,
    documentation: String,
    validators: Vec<Validator>,
    group: String,
    recommended: Vec<String>,
    /// A check of the whole value that replaces the type check and the
    /// validators (a typed key's own parser: see [`typed`]).
    checked_by: Option<Validator>,
}

impl ConfigKey {
    /// A required key (no default) of medium importance.
    pub fn new(name: impl Into<String>, ty: ConfigType) -> Self {
        ConfigKey {
            name: name.into(),
            ty,
            default: None,
            importance: Importance::Medium,
            documentation: String::new(),
            validators: Vec::new(),
            group: String::new(),
            recommended: Vec::new(),
            checked_by: None,
        }
    }
    pub fn default_value(mut self, value: impl Into<String>) -> Self {
        self.default = Some(value.into());
        self
    }
    pub fn importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }
    pub fn doc(mut self, documentation: impl Into<String>) -> Self {
        self.documentation = documentation.into();
        self
    }
    pub fn validator(mut self, validator: Validator) -> Self {
        self.validators.push(validator);
        self
    }
    /// The group the key is shown in (Kafka Connect's `group`); keys keep
    /// their definition order within it.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }
    /// Values to suggest (Kafka Connect's `recommended_values`); without
    /// them, a `OneOf` validator's choices are suggested.
    pub fn recommended_values<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.recommended = values.into_iter().map(Into::into).collect();
        self
    }
    /// One check of the whole value (after the default is applied) that
    /// replaces the type check and the validators: a typed key parses its
    /// value once, range and all. The description is shown as the validator.
    pub fn checked_by(
        mut self,
        description: impl Into<String>,
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checked_by = Some(Validator::custom(description, check));
        self
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn documentation(&self) -> &str {
        &self.documentation
    }
    pub fn importance_level(&self) -> Importance {
        self.importance
    }
    pub fn group_name(&self) -> &str {
        &self.group
    }
    pub fn config_type(&self) -> ConfigType {
        self.ty
    }
    pub fn default(&self) -> Option<&str> {
        self.default.as_deref()
    }

    fn info(&self) -> ConfigKeyInfo {
        let recommended = if self.recommended.is_empty() {
            self.validators
                .iter()
                .find_map(|v| match v {
                    Validator::OneOf(c) => Some(c.iter().map(|s| RString::from(s.as_str())).collect()),
                    _ => None,
                })
                .unwrap_or_default()
        } else {
            self.recommended.iter().map(|s| RString::from(s.as_str())).collect()
        };
        let validator = match &self.checked_by {
            Some(check) => check.describe(),
            None => self.validators.iter().map(Validator::describe).collect::<Vec<_>>().join("; "),
        };
        ConfigKeyInfo {
            name: self.name.as_str().into(),
            type_name: self.ty.name().into(),
            default_value: self.default.as_deref().map(RString::from).into(),
            required: self.default.is_none(),
            importance: self.importance.name().into(),
            documentation: self.documentation.as_str().into(),
            validator: validator.into(),
            recommended_values: recommended,
            group: self.group.as_str().into(),
        }
    }
}

/// The keys a connector understands, in display order.
#[derive(Debug, Clone, Default)]
pub struct ConfigDef {
    keys: Vec<ConfigKey>,
}

impl ConfigDef {
    pub fn new() -> Self {
        ConfigDef::default()
    }
    pub fn define(mut self, key: ConfigKey) -> Self {
        self.keys.push(key);
        self
    }
    pub fn keys(&self) -> &[ConfigKey] {
        &self.keys
    }
    pub fn key(&self, name: &str) -> Option<&ConfigKey> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Checks presence, type and validators of every defined key. Keys the
    /// definition does not know are left alone (the runtime owns many).
    pub fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for key in &self.keys {
            let Some(value) = config.get(&key.name).or(key.default.as_deref()) else {
                issues.push(ConfigIssue::new(
                    &key.name,
                    format!("Missing required configuration \"{}\" which has no default value.", key.name),
                ));
                continue;
            };
            if let Some(check) = &key.checked_by {
                if let Err(mut message) = check.check(value) {
                    if key.ty == ConfigType::Password {
                        message = format!("Invalid value [hidden]: must be {}", check.describe());
                    }
                    issues.push(ConfigIssue::new(&key.name, message));
                }
                continue;
            }
            if let Err(e) = key.ty.check(value) {
                issues.push(ConfigIssue::new(&key.name, e));
                continue;
            }
            // Validators apply to list items one by one, as Kafka Connect's do.
            let items: Vec<&str> = match key.ty {
                ConfigType::List => value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
                _ => vec![value],
            };
            for validator in &key.validators {
                let failed = if matches!(validator, Validator::NonEmpty) {
                    validator.check(value).err()
                } else {
                    items.iter().find_map(|item| validator.check(item).err())
                };
                if let Some(mut message) = failed {
                    if key.ty == ConfigType::Password {
                        message = "Invalid value [hidden]".to_string();
                    }
                    issues.push(ConfigIssue::new(&key.name, message));
                    break;
                }
            }
        }
        issues
    }

    /// The description that crosses the plugin boundary.
    pub fn infos(&self) -> RVec<ConfigKeyInfo> {
        self.keys.iter().map(ConfigKey::info).collect()
    }
}

/// A key's description, as `/connector-plugins/{class}/config` shows it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConfigKeyInfo {
    pub name: RString,
    /// Kafka Connect's type name: STRING, INT, LONG, DOUBLE, BOOLEAN, LIST, PASSWORD, CLASS.
    pub type_name: RString,
    pub default_value: ROption<RString>,
    pub required: bool,
    pub importance: RString,
    pub documentation: RString,
    /// Human-readable summary of the validators.
    pub validator: RString,
    pub recommended_values: RVec<RString>,
    /// The group the key is shown in (empty: none); keys come in display
    /// order. Appended last: the layout before it is unchanged.
    pub group: RString,
}

impl ConfigKeyInfo {
    pub fn is_password(&self) -> bool {
        self.type_name.as_str() == ConfigType::Password.name()
    }
}

/// A problem with one key.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: RString,
    pub message: RString,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue { key: RString::from(key.into()), message: RString::from(message.into()) }
    }
}

/// One submitted key and value, as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub key: RString,
    pub value: RString,
}

/// The values a user submitted (secrets already resolved when a task is
/// created); typed values come from [`typed::Key::get`] or a
/// [`config_struct!`](crate::config_struct)'s `parse`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectorConfig {
    values: BTreeMap<String, String>,
}

impl fmt::Debug for ConnectorConfig {
    // Values may be secrets: Debug shows keys only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ConnectorConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        ConnectorConfig { values: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

impl ConnectorConfig {
    pub fn new() -> Self {
        ConnectorConfig::default()
    }
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.values
    }

    pub(crate) fn to_entries(&self) -> RVec<ConfigEntry> {
        self.values.iter().map(|(k, v)| ConfigEntry { key: k.as_str().into(), value: v.as_str().into() }).collect()
    }
    pub(crate) fn from_entries(entries: &[ConfigEntry]) -> Self {
        entries.iter().map(|e| (e.key.to_string(), e.value.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(ConfigKey::new("file", ConfigType::String).validator(Validator::NonEmpty))
            .define(
                ConfigKey::new("batch", ConfigType::Int)
                    .default_value("10")
                    .validator(Validator::range(Some(1.0), Some(100.0))),
            )
            .define(
                ConfigKey::new("mode", ConfigType::String).default_value("a").validator(Validator::one_of(["a", "b"])),
            )
            .define(ConfigKey::new("id", ConfigType::String).default_value("x1").validator(Validator::regex("x[0-9]+")))
            .define(ConfigKey::new("even", ConfigType::Long).default_value("2").validator(Validator::custom(
                "even",
                |v| {
                    if v.parse::<i64>().map(|n| n % 2 == 0).unwrap_or(false) {
                        Ok(())
                    } else {
                        Err("must be even".into())
                    }
                },
            )))
            .define(
                ConfigKey::new("secret", ConfigType::Password).default_value("").validator(Validator::regex("(s.*)?")),
            )
    }

    fn keys(issues: &[ConfigIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn a_good_config_has_no_issues() {
        let c = ConnectorConfig::new().with("file", "/tmp/x").with("secret", "s3cret");
        assert_eq!(def().validate(&c), vec![]);
    }

    #[test]
    fn every_issue_names_its_key() {
        let c = ConnectorConfig::new()
            .with("batch", "1000")
            .with("mode", "c")
            .with("id", "y")
            .with("even", "3")
            .with("secret", "nope-secret-value");
        let issues = def().validate(&c);
        assert_eq!(keys(&issues), vec!["file", "batch", "mode", "id", "even", "secret"]);
        assert!(issues[0].message.contains("Missing required configuration \"file\""));
        assert!(issues[1].message.contains("[1,...,100]"), "{:?}", issues[1]);
        assert!(!issues[5].message.contains("nope-secret-value"), "a password leaked into {:?}", issues[5]);
    }

    #[test]
    fn types_are_checked() {
        let c = ConnectorConfig::new().with("file", "f").with("batch", "ten");
        let issues = def().validate(&c);
        assert_eq!(keys(&issues), vec!["batch"]);
        assert!(issues[0].message.contains("INT"));
    }

    #[test]
    fn infos_describe_keys_and_passwords() {
        let infos = def().infos();
        let secret = infos.iter().find(|i| i.name == "secret").unwrap();
        assert!(secret.is_password());
        let mode = infos.iter().find(|i| i.name == "mode").unwrap();
        assert_eq!(mode.recommended_values.len(), 2);
        assert!(infos.iter().find(|i| i.name == "file").unwrap().required);
    }
}
