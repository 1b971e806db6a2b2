//! The keys every connector config has, whatever its class (Kafka Connect's
//! names), secrets resolution, and masking of password values.

use std::{collections::BTreeMap, fs, sync::Arc};

use connector_api::ConfigIssue;

use crate::{
    converter::{Converter, Part},
    kafka::overrides::{self, Policy},
    plugins::{ConnectorClass, Kind},
    transform::Chain,
};

/// What REST responses and logs show instead of a password value.
pub const HIDDEN: &str = "[hidden]";

/// The runtime's own settings of one connector, parsed once.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub tasks_max: u32,
    pub topics: Vec<String>,
    pub topics_regex: Option<String>,
    pub tolerance_all: bool,
    /// Milliseconds; -1: retry forever.
    pub retry_timeout_ms: i64,
    pub retry_delay_max_ms: u64,
    pub log_errors: bool,
    pub log_messages: bool,
    pub dlq_topic: Option<String>,
    pub dlq_context_headers: bool,
    pub rejected_topic: Option<String>,
    pub offset_flush_interval_ms: u64,
    /// `exactly.once.source.support` (sources): headers, stored positions
    /// and the read-back at start (`pipeline/source/readback.rs`).
    pub exactly_once_source: bool,
    pub max_buffered_bytes: u64,
    pub batch_max_records: usize,
    /// Partitions of topics a source task creates on first use.
    pub topic_creation_partitions: i32,
    /// Replication factor of topics a source task creates (-1: the broker's default).
    pub topic_creation_replication_factor: i32,
    /// `errors.deadletterqueue.topic.replication.factor` (-1: the broker's
    /// default); also used for the rejected topic.
    pub dlq_replication_factor: i32,
    /// `consumer.override.*`, `producer.override.*`, `admin.override.*` as
    /// written (references unresolved): translated for the task's clients
    /// at task start, under the worker's policy (`kafka/overrides.rs`).
    pub client_overrides: BTreeMap<String, String>,
    pub key_converter: Converter,
    pub value_converter: Converter,
    /// `transforms` / `predicates`, parsed (see `transform/`).
    pub transforms: Arc<Chain>,
}

fn non_empty(config: &BTreeMap<String, String>, key: &str) -> Option<String> {
    config.get(key).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

struct Parser<'a> {
    config: &'a BTreeMap<String, String>,
    issues: Vec<ConfigIssue>,
}

impl Parser<'_> {
    fn number<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        key: &str,
        default: T,
        min: T,
    ) -> T {
        match self.config.get(key) {
            None => default,
            Some(v) => match v.trim().parse::<T>() {
                Ok(n) if n >= min => n,
                Ok(_) => {
                    self.issues.push(ConfigIssue::new(key, format!("Invalid value {v}: must be at least {min}")));
                    default
                }
                Err(_) => {
                    self.issues.push(ConfigIssue::new(key, format!("Invalid value {v}: not a number")));
                    default
                }
            },
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.config.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => default,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                self.issues.push(ConfigIssue::new(key, format!("Invalid value {v}: must be true or false")));
                default
            }
        }
    }

    /// A replication factor: -1 (the broker's default) or at least 1.
    fn replication_factor(&mut self, key: &str) -> i32 {
        let rf = self.number::<i32>(key, -1, -1);
        if rf == 0 {
            self.issues.push(ConfigIssue::new(key, "Invalid value 0: must be -1 (the broker's default) or at least 1"));
        }
        rf
    }

    fn one_of(&mut self, key: &str, default: &str, allowed: &[&str]) -> String {
        let v = self.config.get(key).map(|v| v.trim().to_string()).unwrap_or_else(|| default.to_string());
        if !allowed.contains(&v.as_str()) {
            self.issues
                .push(ConfigIssue::new(key, format!("Invalid value {v}: must be one of {}", allowed.join(", "))));
        }
        v
    }
}

/// Parses the runtime's keys; `Err` lists every problem, each naming its key.
pub fn parse(config: &BTreeMap<String, String>, kind: Kind) -> Result<RuntimeConfig, Vec<ConfigIssue>> {
    let mut p = Parser { config, issues: Vec::new() };
    let tasks_max = p.number::<u32>("tasks.max", 1, 1);
    let topics: Vec<String> = non_empty(config, "topics")
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let topics_regex = non_empty(config, "topics.regex");
    if kind == Kind::Sink {
        match (topics.is_empty(), &topics_regex) {
            (true, None) => p.issues.push(ConfigIssue::new("topics", "Must configure one of topics or topics.regex")),
            (false, Some(_)) => p.issues.push(ConfigIssue::new(
                "topics.regex",
                "topics and topics.regex are mutually exclusive options, but both are set",
            )),
            (true, Some(re)) => {
                if let Err(e) = regex::Regex::new(re) {
                    p.issues.push(ConfigIssue::new("topics.regex", format!("Invalid regular expression: {e}")));
                }
            }
            (false, None) => {}
        }
    }
    let tolerance = p.one_of("errors.tolerance", "none", &["none", "all"]);
    let retry_timeout_ms = p.number::<i64>("errors.retry.timeout", 0, -1);
    let retry_delay_max_ms = p.number::<u64>("errors.retry.delay.max.ms", 60_000, 1);
    let log_errors = p.boolean("errors.log.enable", false);
    let log_messages = p.boolean("errors.log.include.messages", false);
    let dlq_topic = non_empty(config, "errors.deadletterqueue.topic.name");
    let dlq_context_headers = p.boolean("errors.deadletterqueue.context.headers.enable", false);
    let rejected_topic = non_empty(config, "errors.rejected.topic.name");
    let offset_flush_interval_ms = p.number::<u64>("offset.flush.interval.ms", 10_000, 1);
    // Kafka Connect's worker key and values; here per connector, like
    // `offset.flush.interval.ms` (docs/decisions/0031).
    let exactly_once_source = p.one_of("exactly.once.source.support", "enabled", &["enabled", "disabled"]) == "enabled";
    let max_buffered_bytes = p.number::<u64>("max.buffered.bytes", 256 * 1024 * 1024, 1);
    // Kafka Connect's spelling of the batch size is a consumer override.
    let batch_key = if config.contains_key("consumer.max.poll.records") {
        "consumer.max.poll.records"
    } else {
        "consumer.override.max.poll.records"
    };
    let batch_max_records = p.number::<usize>(batch_key, 500, 1);
    let topic_creation_partitions = p.number::<i32>("topic.creation.default.partitions", 1, 1);
    let topic_creation_replication_factor = p.replication_factor("topic.creation.default.replication.factor");
    let dlq_replication_factor = p.replication_factor("errors.deadletterqueue.topic.replication.factor");
    if kind == Kind::Sink {
        for (key, topic) in
            [("errors.deadletterqueue.topic.name", &dlq_topic), ("errors.rejected.topic.name", &rejected_topic)]
        {
            if let Some(issue) =
                topic.as_deref().and_then(|t| consumed_topic_clash(key, t, &topics, topics_regex.as_deref()))
            {
                p.issues.push(issue);
            }
        }
    }
    // The worker's policy is checked where it is known (REST validation and
    // task start); here, what no policy allows and what cannot be translated.
    let client_overrides = overrides::entries(config);
    if let Err(issues) = overrides::resolve(&client_overrides, Policy::All) {
        p.issues.extend(issues);
    }
    let key_converter = Converter::parse(config, Part::Key, &mut p.issues);
    let value_converter = Converter::parse(config, Part::Value, &mut p.issues);
    let transforms = match Chain::parse(config) {
        Ok(chain) => chain,
        Err(issues) => {
            p.issues.extend(issues);
            Chain::default()
        }
    };
    if !p.issues.is_empty() {
        return Err(p.issues);
    }
    Ok(RuntimeConfig {
        tasks_max,
        topics,
        topics_regex,
        tolerance_all: tolerance == "all",
        retry_timeout_ms,
        retry_delay_max_ms,
        log_errors,
        log_messages,
        dlq_topic,
        dlq_context_headers,
        rejected_topic,
        offset_flush_interval_ms,
        exactly_once_source,
        max_buffered_bytes,
        batch_max_records,
        topic_creation_partitions,
        topic_creation_replication_factor,
        dlq_replication_factor,
        client_overrides,
        key_converter,
        value_converter,
        transforms: Arc::new(transforms),
    })
}

/// A sink whose DLQ (or rejected topic) is one of the topics it consumes
/// would read its own failures back forever (Kafka Connect's
/// `SinkConnectorConfig.validate` refuses it too). A `topics.regex` is
/// matched as the consumer subscribes with it, anchored at the start.
fn consumed_topic_clash(key: &str, topic: &str, topics: &[String], regex: Option<&str>) -> Option<ConfigIssue> {
    if topics.iter().any(|t| t == topic) {
        return Some(ConfigIssue::new(
            key,
            format!(
                "The topic '{topic}' may not be one of the topics ('topics={}') consumed by the connector",
                topics.join(",")
            ),
        ));
    }
    let re = regex?;
    let anchored = if re.starts_with('^') { re.to_string() } else { format!("^{re}") };
    regex::Regex::new(&anchored).ok().filter(|r| r.is_match(topic)).map(|_| {
        ConfigIssue::new(
            key,
            format!("The topic '{topic}' may not be matched by the regex of the topics consumed by the connector ('topics.regex={re}')"),
        )
    })
}

/// The policy issues of a config's client overrides under the worker's
/// `connector.client.config.override.policy` (the rest is checked by
/// [`parse`]).
pub fn override_policy_issues(config: &BTreeMap<String, String>, policy: Policy) -> Vec<ConfigIssue> {
    let entries = overrides::entries(config);
    let refused_anyway: Vec<String> =
        overrides::resolve(&entries, Policy::All).err().unwrap_or_default().iter().map(|i| i.key.to_string()).collect();
    let issues = overrides::resolve(&entries, policy).err().unwrap_or_default();
    issues.into_iter().filter(|i| !refused_anyway.contains(&i.key.to_string())).collect()
}

/// Replaces password values by [`HIDDEN`] for display.
pub fn masked(class: Option<&ConnectorClass>, config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| {
            let hide = class.is_some_and(|c| c.is_password(k))
                || crate::converter::registry::is_secret_key(k)
                || overrides::is_secret_override(k);
            (k.clone(), if hide { HIDDEN.to_string() } else { v.clone() })
        })
        .collect()
}

/// The config providers Sluice has, built in (Kafka Connect's
/// `config.providers`, without configuring them on the worker): `env`
/// (`EnvVarConfigProvider`, `${env:VAR}`), `file` (`FileConfigProvider`,
/// `${file:PATH:KEY}` of a properties file) and `directory`
/// (`DirectoryConfigProvider`, `${directory:DIR:FILE}`, the file's content).
pub const PROVIDERS: &[&str] = &["env", "file", "directory"];

/// A config with its provider references resolved, and the values they
/// resolved to, which must not be shown anywhere (invariant 16).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub config: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl Resolved {
    /// `text` with every resolved value replaced by [`HIDDEN`], for messages
    /// built from the resolved config (a validator may quote a value).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), HIDDEN);
        }
        out
    }
}

/// Resolves `${provider:…}` references in every value, as Kafka Connect's
/// `ConfigTransformer` does before a config is validated or run. Text
/// `${…}` without a colon is not a reference (TimestampRouter's
/// `${topic}`). An unknown provider is an issue naming the key, where
/// Kafka Connect would pass the text on as it is. A value whose reference
/// cannot be resolved is left as written; every problem is an issue
/// naming its key, never quoting a resolved value.
pub fn resolve(config: &BTreeMap<String, String>) -> (Resolved, Vec<ConfigIssue>) {
    let mut resolved = Resolved::default();
    let mut issues = Vec::new();
    for (key, value) in config {
        let value = match resolve_value(value, &mut resolved.secrets) {
            Ok(v) => v,
            Err(message) => {
                issues.push(ConfigIssue::new(key, message));
                value.clone()
            }
        };
        resolved.config.insert(key.clone(), value);
    }
    // Longest first, so a secret containing another is hidden whole.
    resolved.secrets.retain(|s| !s.is_empty());
    resolved.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    resolved.secrets.dedup();
    (resolved, issues)
}

/// Resolves references at task start; the error names the key.
pub fn resolve_secrets(config: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    match resolve(config) {
        (resolved, issues) if issues.is_empty() => Ok(resolved.config),
        (_, issues) => Err(issues.iter().map(|i| format!("{}: {}", i.key, i.message)).collect::<Vec<_>>().join("; ")),
    }
}

/// Whether a value holds a provider reference (`${provider:…}`).
pub fn has_reference(value: &str) -> bool {
    references(value).next().is_some()
}

/// The `${…}` spans of a value that are references: (start, end past `}`,
/// the text inside).
fn references(value: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut from = 0;
    std::iter::from_fn(move || loop {
        let start = from + value[from..].find("${")?;
        let inner_start = start + 2;
        let end = inner_start + value[inner_start..].find('}')?;
        from = end + 1;
        let inner = &value[inner_start..end];
        if inner.contains(':') {
            return Some((start, end + 1, inner));
        }
    })
}

fn resolve_value(value: &str, secrets: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    for (start, end, inner) in references(value) {
        out.push_str(&value[copied..start]);
        let (provider, rest) = inner.split_once(':').unwrap_or((inner, ""));
        let resolved = match provider {
            "env" => {
                std::env::var(rest).map_err(|_| format!("environment variable {rest} is not set on this worker"))?
            }
            "file" => {
                let (path, wanted) = rest
                    .rsplit_once(':')
                    .ok_or("a file reference is ${file:PATH:KEY} (a properties file and its key)")?;
                let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path} on this worker: {e}"))?;
                properties_value(&text, wanted).ok_or_else(|| format!("{path} has no key {wanted}"))?
            }
            "directory" => {
                let (dir, file) = rest.rsplit_once(':').ok_or("a directory reference is ${directory:DIR:FILE}")?;
                if file.contains('/') || file == ".." {
                    return Err(format!("{file} is not a file name in {dir}"));
                }
                let path = std::path::Path::new(dir).join(file);
                fs::read_to_string(&path).map_err(|e| format!("cannot read {} on this worker: {e}", path.display()))?
            }
            other => {
                return Err(format!(
                    "${{{inner}}} names the config provider \"{other}\", which Sluice does not have (it has {}); \
                     write the value itself, or use one of those",
                    PROVIDERS.join(", ")
                ))
            }
        };
        secrets.push(resolved.clone());
        out.push_str(&resolved);
        copied = end;
    }
    out.push_str(&value[copied..]);
    Ok(out)
}

/// A key's value in Java properties text (`key=value`, `key: value` or
/// `key value`; `#`/`!` comments), as `FileConfigProvider` reads it.
fn properties_value(text: &str, wanted: &str) -> Option<String> {
    text.lines().map(str::trim_start).filter(|l| !l.is_empty() && !l.starts_with(['#', '!'])).find_map(|line| {
        let split = line.find(['=', ':']).or_else(|| line.find(char::is_whitespace))?;
        let (k, v) = (line[..split].trim(), line[split + 1..].trim());
        (k == wanted).then(|| v.to_string())
    })
}

/// Task configs with the connector's references put back (Kafka Connect's
/// `AbstractHerder.reverseTransform`): a task config key the connector
/// config set from a reference holds that reference again, so task configs
/// never hold what it resolved to; the task resolves it when it starts.
pub fn reverse(
    connector: &BTreeMap<String, String>,
    tasks: Vec<BTreeMap<String, String>>,
) -> Vec<BTreeMap<String, String>> {
    tasks
        .into_iter()
        .map(|mut task| {
            for (k, v) in connector {
                if has_reference(v) {
                    if let Some(slot) = task.get_mut(k) {
                        *slot = v.clone();
                    }
                }
            }
            task
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_sink_needs_topics_and_every_issue_names_its_key() {
        let issues = parse(&config(&[("tasks.max", "0"), ("errors.tolerance", "some")]), Kind::Sink).unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["tasks.max", "topics", "errors.tolerance"]);
    }

    #[test]
    fn defaults_follow_kafka_connect() {
        let c = parse(&config(&[("topics", "a, b")]), Kind::Sink).unwrap();
        assert_eq!(c.topics, ["a", "b"]);
        assert!(!c.tolerance_all);
        assert_eq!(c.retry_timeout_ms, 0);
        assert_eq!(c.tasks_max, 1);
        assert!(parse(&config(&[]), Kind::Source).is_ok());
    }

    /// Issue 17: a source may write Confluent's Avro and JSON Schema (no
    /// longer a 400); their settings' problems still name their keys.
    #[test]
    fn a_source_takes_the_schema_registry_converters() {
        for class in ["io.confluent.connect.avro.AvroConverter", "io.confluent.connect.json.JsonSchemaConverter"] {
            let c = parse(
                &config(&[("value.converter", class), ("value.converter.schema.registry.url", "http://r:8081")]),
                Kind::Source,
            )
            .unwrap();
            assert!(matches!(c.value_converter, Converter::Registry(_)), "{class}");
        }
        let issues = parse(
            &config(&[
                ("key.converter", "avro"),
                ("key.converter.schema.registry.url", "http://r:8081"),
                ("key.converter.use.latest.version", "sometimes"),
            ]),
            Kind::Source,
        )
        .unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["key.converter.use.latest.version"]);
    }

    #[test]
    fn transforms_and_converters_are_parsed_and_their_problems_name_keys() {
        let c = parse(
            &config(&[
                ("topics", "a"),
                ("transforms", "f"),
                ("transforms.f.type", "Filter"),
                ("value.converter", "json"),
            ]),
            Kind::Sink,
        )
        .unwrap();
        assert!(!c.transforms.is_empty());
        assert_eq!(c.value_converter, Converter::Json { schemas: true });
        assert_eq!(c.key_converter, Converter::PassThrough);
        let issues = parse(
            &config(&[
                ("topics", "a"),
                ("transforms", "r"),
                ("transforms.r.type", "RegexRouter"),
                ("key.converter", "protobuf"),
            ]),
            Kind::Sink,
        )
        .unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["key.converter", "transforms.r.regex", "transforms.r.replacement"]);
    }

    #[test]
    fn a_dlq_among_the_consumed_topics_is_refused() {
        let keys = |pairs: &[(&str, &str)]| -> Vec<String> {
            parse(&config(pairs), Kind::Sink).err().unwrap_or_default().iter().map(|i| i.key.to_string()).collect()
        };
        let dlq = "errors.deadletterqueue.topic.name";
        assert_eq!(keys(&[("topics", "a,b"), (dlq, "b")]), [dlq]);
        assert_eq!(keys(&[("topics.regex", "orders.*"), (dlq, "orders-dlq")]), [dlq]);
        assert_eq!(keys(&[("topics.regex", "orders-\\d+"), (dlq, "orders-dlq")]), Vec::<String>::new());
        assert_eq!(keys(&[("topics", "a"), ("errors.rejected.topic.name", "a")]), ["errors.rejected.topic.name"]);
        assert!(parse(&config(&[("topic", "a"), (dlq, "a")]), Kind::Source).is_ok(), "a source consumes nothing");
    }

    #[test]
    fn replication_factors_are_minus_one_by_default_and_never_zero() {
        let c = parse(&config(&[("topics", "a")]), Kind::Sink).unwrap();
        assert_eq!((c.dlq_replication_factor, c.topic_creation_replication_factor), (-1, -1));
        let c =
            parse(&config(&[("topics", "a"), ("errors.deadletterqueue.topic.replication.factor", "3")]), Kind::Sink)
                .unwrap();
        assert_eq!(c.dlq_replication_factor, 3);
        let issues = parse(&config(&[("topic.creation.default.replication.factor", "0")]), Kind::Source).unwrap_err();
        assert_eq!(issues[0].key, "topic.creation.default.replication.factor");
    }

    #[test]
    fn client_overrides_are_kept_and_their_refusals_name_the_key() {
        let c = parse(
            &config(&[
                ("topics", "a"),
                ("consumer.override.auto.offset.reset", "latest"),
                ("consumer.override.max.poll.records", "7"),
            ]),
            Kind::Sink,
        )
        .unwrap();
        assert_eq!(c.batch_max_records, 7);
        assert_eq!(c.client_overrides.len(), 2);
        let issues = parse(&config(&[("topics", "a"), ("producer.override.acks", "1")]), Kind::Sink).unwrap_err();
        assert_eq!(issues[0].key, "producer.override.acks");
        let tuning = config(&[("topics", "a"), ("consumer.override.fetch.min.bytes", "1")]);
        assert!(override_policy_issues(&tuning, Policy::All).is_empty());
        assert_eq!(override_policy_issues(&tuning, Policy::None)[0].key, "consumer.override.fetch.min.bytes");
    }

    #[test]
    fn secret_client_overrides_are_hidden() {
        let shown = masked(
            None,
            &config(&[
                ("consumer.override.sasl.password", "p"),
                ("producer.override.sasl.jaas.config", "x required password=\"p\";"),
                ("admin.override.ssl.key.password", "p"),
                ("consumer.override.sasl.username", "alice"),
            ]),
        );
        assert_eq!(shown["consumer.override.sasl.password"], HIDDEN);
        assert_eq!(shown["producer.override.sasl.jaas.config"], HIDDEN);
        assert_eq!(shown["admin.override.ssl.key.password"], HIDDEN);
        assert_eq!(shown["consumer.override.sasl.username"], "alice");
    }

    #[test]
    fn secrets_resolve_from_env_and_files() {
        std::env::set_var("SLUICE_TEST_SECRET_A", "s3cr3t");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.properties");
        fs::write(&file, "db.password = hunter2\n").unwrap();
        let c = config(&[
            ("a", "x-${env:SLUICE_TEST_SECRET_A}-y"),
            ("b", &format!("${{file:{}:db.password}}", file.display())),
            ("c", "plain"),
        ]);
        let r = resolve_secrets(&c).unwrap();
        assert_eq!((r["a"].as_str(), r["b"].as_str(), r["c"].as_str()), ("x-s3cr3t-y", "hunter2", "plain"));
        let err = resolve_secrets(&config(&[("k", "${env:SLUICE_TEST_MISSING_VAR}")])).unwrap_err();
        assert!(err.starts_with("k: ") && err.contains("SLUICE_TEST_MISSING_VAR"), "{err}");
    }

    #[test]
    fn unknown_providers_are_issues_and_text_without_a_colon_is_not_a_reference() {
        let (resolved, issues) =
            resolve(&config(&[("topic.format", "${topic}-${timestamp}"), ("password", "${vault:secret/db:password}")]));
        assert_eq!(resolved.config["topic.format"], "${topic}-${timestamp}");
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "password");
        assert!(issues[0].message.contains("\"vault\"") && issues[0].message.contains("env, file, directory"));
    }

    #[test]
    fn resolved_values_are_scrubbed_from_messages_and_put_back_in_task_configs() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("token"), "tok-123").unwrap();
        fs::write(dir.path().join("db.properties"), "# c\nuser: app\npassword=pw-456\n").unwrap();
        let d = dir.path().display();
        let connector = config(&[
            ("token", &format!("${{directory:{d}:token}}")),
            ("password", &format!("${{file:{d}/db.properties:password}}")),
            ("user", &format!("${{file:{d}/db.properties:user}}")),
            ("plain", "x"),
        ]);
        let (resolved, issues) = resolve(&connector);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!((resolved.config["token"].as_str(), resolved.config["password"].as_str()), ("tok-123", "pw-456"));
        assert_eq!(resolved.config["user"], "app");
        assert_eq!(resolved.scrub("bad value pw-456 and tok-123 for x"), "bad value [hidden] and [hidden] for x");
        let tasks = reverse(&connector, vec![resolved.config.clone()]);
        assert_eq!(tasks[0]["password"], connector["password"]);
        assert_eq!(tasks[0]["plain"], "x");
        let (_, issues) = resolve(&config(&[("t", &format!("${{directory:{d}:../etc}}"))]));
        assert_eq!(issues[0].key, "t");
    }
}
