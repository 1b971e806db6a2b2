//! A Confluent Schema Registry client for the Avro and JSON Schema
//! converters: the settings (`<part>.converter.schema.registry.url`, basic
//! auth, subject name strategy), Confluent's wire format, and the two calls
//! a sink-side converter makes: the schema of an id (`GET /schemas/ids/{id}`,
//! cached for the task's life: an id never changes its schema) and the
//! version of that schema under the record's subject (`POST
//! /subjects/{subject}`, Confluent's AvroConverter puts it in the Connect
//! schema's `version`; cached too).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use connector_api::ConfigIssue;
use serde_json::{json, Value};

use super::{ConvertError, Part};

/// How the subject of a record's schema is named (Confluent's
/// `key.subject.name.strategy` / `value.subject.name.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectStrategy {
    /// `<topic>-key` / `<topic>-value` (the default).
    Topic,
    /// The record's fully qualified name.
    Record,
    /// `<topic>-<fully qualified record name>`.
    TopicRecord,
}

const STRATEGIES: &[(&str, SubjectStrategy)] = &[
    ("TopicNameStrategy", SubjectStrategy::Topic),
    ("RecordNameStrategy", SubjectStrategy::Record),
    ("TopicRecordNameStrategy", SubjectStrategy::TopicRecord),
];

/// The subject a schema is registered under; `None` when the strategy
/// needs a record name and the schema has none (a primitive schema).
pub fn subject(strategy: SubjectStrategy, topic: &str, part: Part, record: Option<&str>) -> Option<String> {
    match strategy {
        SubjectStrategy::Topic => Some(format!("{topic}-{}", part.name())),
        SubjectStrategy::Record => record.map(str::to_string),
        SubjectStrategy::TopicRecord => record.map(|r| format!("{topic}-{r}")),
    }
}

/// Confluent's wire format: magic byte 0, the schema id as 4 bytes
/// big-endian, then the payload.
pub fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, payload @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), payload)),
        [magic, ..] if *magic != 0 => Err(format!(
            "unknown magic byte {magic} (Confluent's wire format starts with 0, then a 4-byte schema id); the \
             record was not written by a Schema Registry serializer"
        )),
        _ => Err(format!(
            "{} bytes are too short for Confluent's wire format (magic byte 0, 4-byte schema id, payload)",
            bytes.len()
        )),
    }
}

/// The registry settings of one converter.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URLs, tried in order.
    pub urls: Vec<String>,
    /// `user:password` for HTTP basic auth.
    pub user_info: Option<String>,
    pub strategy: SubjectStrategy,
    /// Sources: `auto.register.schemas` (default true).
    pub auto_register: bool,
    /// Sources: `use.latest.version` (default false).
    pub use_latest: bool,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("urls", &self.urls)
            .field("user_info", &self.user_info.as_ref().map(|_| "[hidden]"))
            .field("strategy", &self.strategy)
            .field("auto_register", &self.auto_register)
            .field("use_latest", &self.use_latest)
            .finish()
    }
}

/// The keys of a converter's settings that hold a password (masked like a
/// connector's password keys).
pub fn is_secret_key(key: &str) -> bool {
    ["key.converter.", "value.converter."].iter().any(|p| {
        key.strip_prefix(p)
            .is_some_and(|rest| rest == "basic.auth.user.info" || rest == "schema.registry.basic.auth.user.info")
    })
}

/// Parses `<part>.converter.*` registry settings; every problem is an
/// issue naming its key.
pub fn parse_config(config: &BTreeMap<String, String>, part: Part, issues: &mut Vec<ConfigIssue>) -> RegistryConfig {
    let prefix = format!("{}.converter.", part.name());
    let get = |k: &str| config.get(&format!("{prefix}{k}")).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let url_key = format!("{prefix}schema.registry.url");
    let mut urls = Vec::new();
    match get("schema.registry.url") {
        None => issues.push(ConfigIssue::new(
            &url_key,
            "Missing required configuration: the Schema Registry URL (for example http://registry:8081) this \
             converter reads schemas from",
        )),
        Some(v) => {
            for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                if url.starts_with("http://") || url.starts_with("https://") {
                    urls.push(url.trim_end_matches('/').to_string());
                } else {
                    issues.push(ConfigIssue::new(&url_key, format!("Invalid value {url}: must be an http(s) URL")));
                }
            }
        }
    }
    let source_key = format!("{prefix}basic.auth.credentials.source");
    let info = get("basic.auth.user.info").or_else(|| get("schema.registry.basic.auth.user.info"));
    let user_info = match get("basic.auth.credentials.source").map(|s| s.to_ascii_uppercase()).as_deref() {
        // Confluent's default is URL: credentials, if any, in the URL.
        None | Some("URL") => {
            let mut from_url = None;
            for u in urls.iter_mut() {
                if let Some((creds, rest)) = url_userinfo(u) {
                    from_url = Some(creds);
                    *u = rest;
                }
            }
            from_url.or(info.filter(|_| !config.contains_key(&source_key)))
        }
        Some("USER_INFO") => {
            if info.is_none() {
                issues.push(ConfigIssue::new(
                    format!("{prefix}basic.auth.user.info"),
                    format!("Missing required configuration with {source_key}=USER_INFO: user:password"),
                ));
            }
            info
        }
        Some(other) => {
            issues.push(ConfigIssue::new(
                &source_key,
                format!("Invalid value {other}: supported are URL and USER_INFO (SASL_INHERIT is not)"),
            ));
            None
        }
    };
    if let Some(info) = &user_info {
        if !info.contains(':') {
            issues.push(ConfigIssue::new(
                format!("{prefix}basic.auth.user.info"),
                "Invalid value [hidden]: must be user:password",
            ));
        }
    }
    let strategy_key = format!("{prefix}{}.subject.name.strategy", part.name());
    let strategy = match config.get(&strategy_key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => SubjectStrategy::Topic,
        Some(v) => {
            let short = v.rsplit('.').next().unwrap_or(v);
            match STRATEGIES.iter().find(|(n, _)| *n == short) {
                Some((_, s)) => *s,
                None => {
                    let known: Vec<&str> = STRATEGIES.iter().map(|(n, _)| *n).collect();
                    issues.push(ConfigIssue::new(
                        &strategy_key,
                        format!("Invalid value {v}: supported are {}", known.join(", ")),
                    ));
                    SubjectStrategy::Topic
                }
            }
        }
    };
    let mut flag = |name: &str, default: bool| {
        let key = format!("{prefix}{name}");
        match config.get(&key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                issues.push(ConfigIssue::new(&key, format!("Invalid value {other}: must be true or false")));
                default
            }
        }
    };
    let auto_register = flag("auto.register.schemas", true);
    let use_latest = flag("use.latest.version", false);
    RegistryConfig { urls, user_info, strategy, auto_register, use_latest }
}

/// `http://user:pw@host/…` → (`user:pw`, `http://host/…`).
fn url_userinfo(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (creds, host) = rest[..authority_end].rsplit_once('@')?;
    Some((creds.to_string(), format!("{scheme}://{host}{}", &rest[authority_end..])))
}

/// A schema as the registry returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// `AVRO` (the registry's default when it omits `schemaType`), `JSON`, `PROTOBUF`.
    pub kind: String,
    pub text: String,
}

/// What a registry call failed with: `Unavailable` is worth retrying (no
/// answer, 5xx, 429), `Refused` is about this record (unknown id, bad auth).
fn unavailable(url: &str, e: impl std::fmt::Display) -> ConvertError {
    ConvertError::retriable(format!("the Schema Registry at {url} is unavailable: {e}"))
}

/// Reads a Confluent error body `{"error_code":…,"message":…}`.
fn error_text(status: u16, body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v.get("message").is_some() => {
            format!("HTTP {status}, error_code {}: {}", v["error_code"], v["message"].as_str().unwrap_or_default())
        }
        _ => format!("HTTP {status}: {}", body.chars().take(200).collect::<String>()),
    }
}

/// The client with its caches; shared by the task's records.
pub struct Registry {
    pub config: RegistryConfig,
    agent: ureq::Agent,
    by_id: Mutex<HashMap<u32, Arc<Registered>>>,
    versions: Mutex<HashMap<(String, u32), Option<i32>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("config", &self.config).finish()
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Registry {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .timeout_connect(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Registry { config, agent, by_id: Mutex::default(), versions: Mutex::default() }
    }

    /// One call, each URL in turn until one answers; `Ok((status, body))`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), ConvertError> {
        let mut last = ConvertError::retriable("no Schema Registry URL configured");
        for base in &self.config.urls {
            let url = format!("{base}{path}");
            let mut req = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
            if let Some(info) = &self.config.user_info {
                let token = base64::engine::general_purpose::STANDARD.encode(info);
                req = req.header("Authorization", format!("Basic {token}"));
            }
            let result = match body {
                Some(b) => req
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .body(b.to_string())
                    .map(|r| self.agent.run(r)),
                None => req.body(()).map(|r| self.agent.run(r)),
            };
            let response = match result {
                Err(e) => return Err(ConvertError::bad(format!("bad Schema Registry URL {url}: {e}"))),
                Ok(Err(e)) => {
                    last = unavailable(base, e);
                    continue;
                }
                Ok(Ok(r)) => r,
            };
            let status = response.status().as_u16();
            let mut response = response;
            let text = response.body_mut().read_to_string().map_err(|e| unavailable(base, e))?;
            if status >= 500 || status == 429 {
                last = unavailable(base, error_text(status, &text));
                continue;
            }
            return Ok((status, text));
        }
        Err(last)
    }

    /// The schema registered under `id` (cached).
    pub fn schema(&self, id: u32) -> Result<Arc<Registered>, ConvertError> {
        if let Some(s) = self.by_id.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(s.clone());
        }
        let (status, body) = self.call("GET", &format!("/schemas/ids/{id}"), None)?;
        if status != 200 {
            let what = error_text(status, &body);
            return Err(match status {
                401 | 403 => ConvertError::retriable(format!(
                    "the Schema Registry refused the credentials ({what}); check basic.auth.user.info"
                )),
                _ => ConvertError::bad(format!("schema id {id} is not in the Schema Registry ({what})")),
            });
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| ConvertError::retriable(format!("the Schema Registry's answer is not JSON: {e}")))?;
        let text = v["schema"].as_str().ok_or_else(|| {
            ConvertError::retriable(format!("the Schema Registry's answer for id {id} has no \"schema\""))
        })?;
        let kind = v["schemaType"].as_str().unwrap_or("AVRO").to_string();
        let registered = Arc::new(Registered { kind, text: text.to_string() });
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).insert(id, registered.clone());
        Ok(registered)
    }

    /// The version of schema `id` under `subject` (cached), `None` when the
    /// subject does not hold it (a record written under another strategy):
    /// the Connect schema then has no version, nothing else changes.
    pub fn version(&self, subject: &str, id: u32, registered: &Registered) -> Result<Option<i32>, ConvertError> {
        let key = (subject.to_string(), id);
        if let Some(v) = self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*v);
        }
        let mut body = json!({"schema": registered.text});
        if registered.kind != "AVRO" {
            body["schemaType"] = Value::String(registered.kind.clone());
        }
        let path = format!("/subjects/{}", percent(subject));
        let (status, text) = self.call("POST", &path, Some(&body))?;
        let version = match status {
            200 => serde_json::from_str::<Value>(&text).ok().and_then(|v| v["version"].as_i64()).map(|v| v as i32),
            401 | 403 => {
                return Err(ConvertError::retriable(format!(
                    "the Schema Registry refused the credentials ({}); check basic.auth.user.info",
                    error_text(status, &text)
                )))
            }
            _ => None,
        };
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, version);
        Ok(version)
    }
}

/// A schema registered under a subject (`GET …/versions/latest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub id: u32,
    pub version: i64,
    pub kind: String,
    pub text: String,
}

impl Registry {
    /// The error for an answer that is neither success nor "not found".
    fn refused(&self, what: &str, status: u16, body: &str) -> ConvertError {
        let text = error_text(status, body);
        match status {
            401 | 403 => ConvertError::retriable(format!(
                "the Schema Registry refused the credentials ({text}); check basic.auth.user.info"
            )),
            _ => ConvertError::bad(format!("{what}: {text}")),
        }
    }

    /// `POST /subjects/{subject}/versions` (what `auto.register.schemas`
    /// does): the schema's id, the same for the same schema. A schema the
    /// subject's compatibility rule refuses (409) is the record's fault.
    pub fn register(&self, subject: &str, kind: &str, text: &str) -> Result<u32, ConvertError> {
        let mut body = json!({ "schema": text });
        if kind != "AVRO" {
            body["schemaType"] = Value::String(kind.to_string());
        }
        let (status, answer) = self.call("POST", &format!("/subjects/{}/versions", percent(subject)), Some(&body))?;
        if status != 200 {
            return Err(self.refused(
                &format!("registering the record's schema under subject {subject}"),
                status,
                &answer,
            ));
        }
        serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| ConvertError::retriable(format!("the Schema Registry's answer has no id: {answer}")))
    }

    /// `POST /subjects/{subject}` (what `auto.register.schemas=false` does):
    /// the id the subject holds the schema under, `None` when it does not.
    pub fn lookup(&self, subject: &str, kind: &str, text: &str) -> Result<Option<u32>, ConvertError> {
        let mut body = json!({ "schema": text });
        if kind != "AVRO" {
            body["schemaType"] = Value::String(kind.to_string());
        }
        let (status, answer) = self.call("POST", &format!("/subjects/{}", percent(subject)), Some(&body))?;
        match status {
            200 => Ok(serde_json::from_str::<Value>(&answer)
                .ok()
                .and_then(|v| v["id"].as_u64())
                .and_then(|id| u32::try_from(id).ok())),
            404 => Ok(None),
            _ => Err(self.refused(&format!("looking the record's schema up under subject {subject}"), status, &answer)),
        }
    }

    /// `GET /subjects/{subject}/versions/latest` (what `use.latest.version`
    /// does); `None` when the subject does not exist.
    pub fn latest(&self, subject: &str) -> Result<Option<Latest>, ConvertError> {
        let (status, answer) = self.call("GET", &format!("/subjects/{}/versions/latest", percent(subject)), None)?;
        match status {
            200 => {
                let v: Value = serde_json::from_str(&answer)
                    .map_err(|e| ConvertError::retriable(format!("the Schema Registry's answer is not JSON: {e}")))?;
                match (v["id"].as_u64().and_then(|i| u32::try_from(i).ok()), v["schema"].as_str()) {
                    (Some(id), Some(text)) => Ok(Some(Latest {
                        id,
                        version: v["version"].as_i64().unwrap_or(0),
                        kind: v["schemaType"].as_str().unwrap_or("AVRO").to_string(),
                        text: text.to_string(),
                    })),
                    _ => Err(ConvertError::retriable(format!(
                        "the Schema Registry's answer has no id or schema: {answer}"
                    ))),
                }
            }
            404 => Ok(None),
            _ => Err(self.refused(&format!("reading the latest schema of subject {subject}"), status, &answer)),
        }
    }
}

/// Confluent's wire format for a payload written with schema `id`.
pub fn wire(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A subject in a URL path (record names hold only `[A-Za-z0-9_.-]`, topics
/// too, but a subject is free text).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> (RegistryConfig, Vec<String>) {
        let config: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut issues = Vec::new();
        let c = parse_config(&config, Part::Value, &mut issues);
        (c, issues.iter().map(|i| i.key.to_string()).collect())
    }

    #[test]
    fn wire_format_is_magic_zero_and_a_big_endian_id() {
        assert_eq!(split_wire(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, [9u8, 9].as_slice()));
        assert_eq!(split_wire(&[0, 0, 0, 0, 7]).unwrap(), (7, [].as_slice()));
        assert!(split_wire(b"{\"a\":1}").unwrap_err().contains("unknown magic byte 123"));
        assert!(split_wire(&[0, 0, 1]).unwrap_err().contains("3 bytes are too short"));
    }

    #[test]
    fn subjects_follow_the_strategy() {
        assert_eq!(subject(SubjectStrategy::Topic, "orders", Part::Value, Some("a.B")).unwrap(), "orders-value");
        assert_eq!(subject(SubjectStrategy::Topic, "orders", Part::Key, None).unwrap(), "orders-key");
        assert_eq!(subject(SubjectStrategy::Record, "orders", Part::Value, Some("a.B")).unwrap(), "a.B");
        assert_eq!(subject(SubjectStrategy::TopicRecord, "o", Part::Value, Some("a.B")).unwrap(), "o-a.B");
        assert_eq!(subject(SubjectStrategy::Record, "o", Part::Value, None), None);
        assert_eq!(percent("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn settings_name_every_bad_key() {
        let (c, issues) = cfg(&[
            ("value.converter.schema.registry.url", "http://r:8081/, https://s"),
            ("value.converter.basic.auth.credentials.source", "USER_INFO"),
            ("value.converter.basic.auth.user.info", "u:p"),
            (
                "value.converter.value.subject.name.strategy",
                "io.confluent.kafka.serializers.subject.RecordNameStrategy",
            ),
        ]);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(c.urls, ["http://r:8081", "https://s"]);
        assert_eq!((c.user_info.as_deref(), c.strategy), (Some("u:p"), SubjectStrategy::Record));
        assert!(!format!("{c:?}").contains("u:p"), "credentials never in Debug");
        let (c, _) = cfg(&[("value.converter.schema.registry.url", "http://me:pw@r:8081/x")]);
        assert_eq!((c.urls[0].as_str(), c.user_info.as_deref()), ("http://r:8081/x", Some("me:pw")));
        let (_, issues) = cfg(&[]);
        assert_eq!(issues, ["value.converter.schema.registry.url"]);
        let (_, issues) = cfg(&[
            ("value.converter.schema.registry.url", "r:8081"),
            ("value.converter.basic.auth.credentials.source", "SASL_INHERIT"),
            ("value.converter.value.subject.name.strategy", "Mine"),
        ]);
        assert_eq!(
            issues,
            [
                "value.converter.schema.registry.url",
                "value.converter.basic.auth.credentials.source",
                "value.converter.value.subject.name.strategy"
            ]
        );
        let (_, issues) = cfg(&[
            ("value.converter.schema.registry.url", "http://r"),
            ("value.converter.basic.auth.credentials.source", "USER_INFO"),
        ]);
        assert_eq!(issues, ["value.converter.basic.auth.user.info"]);
        assert!(is_secret_key("value.converter.basic.auth.user.info"));
        assert!(is_secret_key("key.converter.schema.registry.basic.auth.user.info"));
        assert!(!is_secret_key("value.converter.schema.registry.url"));
    }

    #[test]
    fn source_settings_default_to_registering_and_refuse_what_is_not_a_boolean() {
        let (c, issues) = cfg(&[("value.converter.schema.registry.url", "http://r")]);
        assert!(issues.is_empty());
        assert_eq!((c.auto_register, c.use_latest), (true, false), "Confluent's serializer defaults");
        let (c, issues) = cfg(&[
            ("value.converter.schema.registry.url", "http://r"),
            ("value.converter.auto.register.schemas", "FALSE"),
            ("value.converter.use.latest.version", " true "),
        ]);
        assert!(issues.is_empty());
        assert_eq!((c.auto_register, c.use_latest), (false, true));
        let (_, issues) = cfg(&[
            ("value.converter.schema.registry.url", "http://r"),
            ("value.converter.auto.register.schemas", "yes"),
            ("value.converter.use.latest.version", "1"),
        ]);
        assert_eq!(issues, ["value.converter.auto.register.schemas", "value.converter.use.latest.version"]);
    }

    #[test]
    fn the_wire_format_written_is_the_one_read() {
        let bytes = wire(258, b"xy");
        assert_eq!(bytes, [0, 0, 0, 1, 2, b'x', b'y']);
        assert_eq!(split_wire(&bytes).unwrap(), (258, b"xy".as_slice()));
    }

    #[test]
    fn error_bodies_are_read_as_confluent_writes_them() {
        let e = error_text(404, r#"{"error_code":40403,"message":"Schema 9 not found"}"#);
        assert_eq!(e, "HTTP 404, error_code 40403: Schema 9 not found");
        assert_eq!(error_text(502, "bad gateway"), "HTTP 502: bad gateway");
    }
}
