//! Per-connector client overrides (`consumer.override.*`,
//! `producer.override.*`, `admin.override.*`, Kafka Connect's KIP-458) and
//! the worker's `connector.client.config.override.policy`: which Java client
//! keys are taken, how they become librdkafka properties, and which are
//! refused and why. Pure decisions; `connector_config.rs` reports them as
//! config issues, the task pipelines apply them to their clients.

use std::collections::BTreeMap;

use connector_api::ConfigIssue;

/// Which of a task's clients an override is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Client {
    Consumer,
    Producer,
    Admin,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Consumer, Client::Producer, Client::Admin];

    pub fn prefix(self) -> &'static str {
        match self {
            Client::Consumer => "consumer.override.",
            Client::Producer => "producer.override.",
            Client::Admin => "admin.override.",
        }
    }
}

/// `connector.client.config.override.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// No override is allowed.
    None,
    /// Only the client's identity: security protocol, SASL mechanism and
    /// credentials.
    Principal,
    /// Every override Sluice can map (Kafka Connect's default since 3.0).
    #[default]
    All,
}

impl Policy {
    /// Kafka Connect's names (`None`, `Principal`, `All`, any case) and its
    /// policy classes' names.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let name = text.trim();
        let short = name
            .strip_prefix("org.apache.kafka.connect.connector.policy.")
            .and_then(|c| c.strip_suffix("ConnectorClientConfigOverridePolicy"))
            .unwrap_or(name);
        match short.to_ascii_lowercase().as_str() {
            "none" => Ok(Policy::None),
            "principal" => Ok(Policy::Principal),
            "all" => Ok(Policy::All),
            _ => Err(format!(
                "connector.client.config.override.policy: {name:?} is not None, Principal or All (custom policy classes cannot be loaded)"
            )),
        }
    }

    fn allows(self, librdkafka_name: &str) -> bool {
        match self {
            Policy::None => false,
            Policy::Principal => PRINCIPAL_KEYS.contains(&librdkafka_name),
            Policy::All => true,
        }
    }
}

/// What `Principal` lets a connector set (after translation: a JAAS config
/// with a username and password becomes `sasl.username`/`sasl.password`).
const PRINCIPAL_KEYS: [&str; 5] =
    ["security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password"];

/// Keys Sluice's guarantees rest on: refused whatever the policy.
fn owned_by_sluice(name: &str) -> Option<&'static str> {
    Some(match name {
        "acks" | "request.required.acks" | "enable.idempotence" => {
            "source offsets and DLQ acknowledgements rely on the idempotent producer with acks=all"
        }
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "the worker commits only offsets the sink settled (a client commit would skip unsettled records)"
        }
        "isolation.level" => "the worker reads committed records only (read_committed), as Kafka Connect does",
        "group.id" => "the offsets API, DLQ replay and lag tooling assume the group connect-<connector name>",
        "group.instance.id" => "every task of the connector would share one static member id",
        "transactional.id" => "Sluice's producers are idempotent, not transactional",
        "bootstrap.servers" | "metadata.broker.list" => {
            "the worker keeps a connector's offsets and DLQ in its own cluster; run a worker cluster against the other Kafka cluster instead"
        }
        _ => return None,
    })
}

/// Java-only keys with no exact librdkafka counterpart, and what to use.
fn java_only(name: &str) -> Option<&'static str> {
    Some(match name {
        "key.serializer" | "value.serializer" | "key.deserializer" | "value.deserializer" => {
            "the connector's key.converter / value.converter decide the bytes"
        }
        "ssl.truststore.location"
        | "ssl.truststore.password"
        | "ssl.truststore.type"
        | "ssl.truststore.certificates" => {
            "librdkafka reads PEM: export the truststore's certificates and set ssl.ca.location (or ssl.ca.pem)"
        }
        "ssl.keystore.key" | "ssl.keystore.certificate.chain" => {
            "use ssl.key.pem and ssl.certificate.pem (or ssl.key.location and ssl.certificate.location)"
        }
        "ssl.protocol"
        | "ssl.enabled.protocols"
        | "ssl.provider"
        | "ssl.keymanager.algorithm"
        | "ssl.trustmanager.algorithm"
        | "ssl.secure.random.implementation"
        | "ssl.engine.factory.class" => {
            "a Java TLS setting; librdkafka uses OpenSSL's defaults, tuned with ssl.cipher.suites and ssl.curves.list"
        }
        "interceptor.classes"
        | "metric.reporters"
        | "partitioner.class"
        | "sasl.login.class"
        | "sasl.login.callback.handler.class"
        | "sasl.client.callback.handler.class"
        | "security.providers"
        | "config.providers" => "a Java class; librdkafka cannot load it",
        "buffer.memory" => "use queue.buffering.max.kbytes (KiB)",
        "max.request.size" => "use message.max.bytes",
        _ => return None,
    })
}

/// One Java client key and value → the librdkafka properties it means
/// (empty: nothing to set), or why it is refused (with what to use instead).
/// `value` must be resolved (no `${…}` references).
pub fn translate(client: Client, name: &str, value: &str) -> Result<Vec<(String, String)>, String> {
    if let Some(why) = owned_by_sluice(name) {
        return Err(format!("Sluice sets {name} itself and refuses an override: {why}"));
    }
    if let Some(instead) = java_only(name) {
        return Err(format!("{name} has no librdkafka equivalent: {instead}"));
    }
    Ok(match (client, name) {
        (_, "sasl.jaas.config") => {
            let (username, password) = jaas_credentials(value)?;
            vec![("sasl.username".into(), username), ("sasl.password".into(), password)]
        }
        (_, "ssl.keystore.type") if value.trim().eq_ignore_ascii_case("PKCS12") => Vec::new(),
        (_, "ssl.keystore.type") => {
            return Err(format!(
                "librdkafka's ssl.keystore.location reads PKCS12 only, not {}: convert the keystore, or use ssl.certificate.location and ssl.key.location (PEM)",
                value.trim()
            ))
        }
        // Java's "" turns host name verification off; librdkafka spells it none.
        (_, "ssl.endpoint.identification.algorithm") if value.trim().is_empty() => {
            vec![(name.into(), "none".into())]
        }
        // The batch size the worker hands a sink (connector_config.rs), not a
        // librdkafka property.
        (Client::Consumer, "max.poll.records") => Vec::new(),
        _ => vec![(name.to_string(), value.to_string())],
    })
}

/// Username and password of a `PlainLoginModule` or `ScramLoginModule` JAAS
/// line; anything else (other modules, other options) has no exact
/// librdkafka translation.
fn jaas_credentials(value: &str) -> Result<(String, String), String> {
    let refuse = |why: &str| {
        Err(format!(
            "{why}; only PlainLoginModule and ScramLoginModule with username and password translate: set sasl.username and sasl.password (and sasl.mechanism), or sasl.oauthbearer.* / sasl.kerberos.* for other mechanisms"
        ))
    };
    let tokens = match jaas_tokens(value) {
        Ok(t) => t,
        Err(e) => return refuse(&e),
    };
    let mut it = tokens.into_iter();
    let module = it.next().unwrap_or_default();
    let known = [
        "org.apache.kafka.common.security.plain.PlainLoginModule",
        "org.apache.kafka.common.security.scram.ScramLoginModule",
    ];
    if !known.contains(&module.as_str()) {
        return refuse(&format!("sasl.jaas.config uses the login module {module:?}"));
    }
    if it.next().as_deref() != Some("required") {
        return refuse("sasl.jaas.config must say `required` after the login module");
    }
    let (mut username, mut password) = (None, None);
    let rest: Vec<String> = it.collect();
    let mut i = 0;
    while i < rest.len() {
        match rest[i].as_str() {
            ";" if i + 1 == rest.len() => break,
            key => {
                if rest.get(i + 1).map(String::as_str) != Some("=") || i + 2 >= rest.len() {
                    return refuse(&format!("sasl.jaas.config: option {key:?} is not name=value"));
                }
                let v = rest[i + 2].clone();
                match key {
                    "username" => username = Some(v),
                    "password" => password = Some(v),
                    other => return refuse(&format!("sasl.jaas.config has the option {other:?}")),
                }
                i += 3;
            }
        }
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => refuse("sasl.jaas.config lacks username or password"),
    }
}

/// JAAS configuration tokens: words, `=`, `;` and double-quoted strings
/// (backslash escapes the next character), as Java's `ConfigFile` parser reads
/// a single entry.
fn jaas_tokens(value: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '=' || c == ';' {
            tokens.push(c.to_string());
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => s.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => return Err("sasl.jaas.config has an unterminated quoted value".into()),
                }
            }
            tokens.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '=' || c == ';' || c == '"' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(s);
        }
    }
    Ok(tokens)
}

/// A connector's overrides as librdkafka properties, per client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOverrides {
    pub consumer: Vec<(String, String)>,
    pub producer: Vec<(String, String)>,
    pub admin: Vec<(String, String)>,
}

impl ClientOverrides {
    pub fn for_client(&self, client: Client) -> &[(String, String)] {
        match client {
            Client::Consumer => &self.consumer,
            Client::Producer => &self.producer,
            Client::Admin => &self.admin,
        }
    }
}

/// The override entries of a connector config (full key → value).
pub fn entries(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| Client::ALL.iter().any(|c| k.starts_with(c.prefix())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every override of `config` under `policy`, translated; `Err` lists every
/// refused key by its connector-config name. Values still holding `${…}`
/// references are checked by name only (they are resolved at task start, where
/// this runs again on the resolved values).
pub fn resolve(config: &BTreeMap<String, String>, policy: Policy) -> Result<ClientOverrides, Vec<ConfigIssue>> {
    let mut out = ClientOverrides::default();
    let mut issues = Vec::new();
    for (key, value) in config {
        let Some((client, name)) = Client::ALL.iter().find_map(|c| key.strip_prefix(c.prefix()).map(|n| (*c, n)))
        else {
            continue;
        };
        let unresolved = value.contains("${");
        // A reference stands for a value; the name decides what it becomes.
        let probe = if unresolved && name == "sasl.jaas.config" {
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";"
        } else {
            value
        };
        let properties = match translate(client, name, probe) {
            Ok(p) => p,
            Err(why) => {
                issues.push(ConfigIssue::new(key, why));
                continue;
            }
        };
        if let Some((denied, _)) = properties.iter().find(|(p, _)| !policy.allows(p)) {
            let allowed = match policy {
                Policy::None => "none".to_string(),
                _ => format!("{} (and sasl.jaas.config)", PRINCIPAL_KEYS.join(", ")),
            };
            let what = if denied == name { String::new() } else { format!(" ({name} sets {denied})") };
            issues.push(ConfigIssue::new(
                key,
                format!(
                    "the worker's connector.client.config.override.policy is {policy:?}, which does not allow overriding {denied}{what}; allowed: {allowed}"
                ),
            ));
            continue;
        }
        if unresolved {
            continue;
        }
        for (p, v) in &properties {
            if let Err(e) = rdkafka::ClientConfig::new().set(p, v).create_native_config() {
                issues.push(ConfigIssue::new(
                    key,
                    format!("librdkafka refuses {p}={}: {e}", if is_secret(p) { "[hidden]" } else { v.as_str() }),
                ));
            }
        }
        match client {
            Client::Consumer => out.consumer.extend(properties),
            Client::Producer => out.producer.extend(properties),
            Client::Admin => out.admin.extend(properties),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// Whether a client property holds a secret (never shown in a message or a
/// REST answer).
pub fn is_secret(property: &str) -> bool {
    property.contains("password")
        || property.contains("secret")
        || property == "ssl.key.pem"
        || property == "ssl.keystore.key"
        || property == "sasl.jaas.config"
}

/// Whether a connector-config key is a client override holding a secret.
pub fn is_secret_override(key: &str) -> bool {
    Client::ALL.iter().any(|c| key.strip_prefix(c.prefix()).is_some_and(is_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn issue_keys(r: Result<ClientOverrides, Vec<ConfigIssue>>) -> Vec<String> {
        r.unwrap_err().iter().map(|i| i.key.to_string()).collect()
    }

    #[test]
    fn policies_read_kafka_connects_names_and_classes() {
        assert_eq!(Policy::parse("All"), Ok(Policy::All));
        assert_eq!(Policy::parse("principal"), Ok(Policy::Principal));
        assert_eq!(
            Policy::parse("org.apache.kafka.connect.connector.policy.NoneConnectorClientConfigOverridePolicy"),
            Ok(Policy::None)
        );
        assert!(Policy::parse("com.example.Custom").unwrap_err().contains("connector.client.config.override.policy"));
        assert_eq!(Policy::default(), Policy::All);
    }

    #[test]
    fn plain_keys_pass_through_to_their_client() {
        let o = resolve(
            &config(&[
                ("consumer.override.auto.offset.reset", "latest"),
                ("producer.override.compression.type", "lz4"),
                ("admin.override.request.timeout.ms", "5000"),
                ("consumer.max.poll.records", "10"),
            ]),
            Policy::All,
        )
        .unwrap();
        assert_eq!(o.consumer, [("auto.offset.reset".to_string(), "latest".to_string())]);
        assert_eq!(o.producer, [("compression.type".to_string(), "lz4".to_string())]);
        assert_eq!(o.admin, [("request.timeout.ms".to_string(), "5000".to_string())]);
    }

    #[test]
    fn keys_the_guarantees_rest_on_are_refused_under_every_policy() {
        for policy in [Policy::All, Policy::Principal, Policy::None] {
            let keys = issue_keys(resolve(
                &config(&[
                    ("producer.override.acks", "1"),
                    ("producer.override.enable.idempotence", "false"),
                    ("consumer.override.enable.auto.commit", "true"),
                    ("consumer.override.enable.auto.offset.store", "true"),
                    ("consumer.override.isolation.level", "read_uncommitted"),
                    ("consumer.override.group.id", "mine"),
                ]),
                policy,
            ));
            assert_eq!(keys.len(), 6, "{policy:?}: {keys:?}");
        }
        let why = &resolve(&config(&[("consumer.override.group.id", "x")]), Policy::All).unwrap_err()[0].message;
        assert!(why.contains("connect-<connector name>"), "{why}");
    }

    #[test]
    fn plain_and_scram_jaas_lines_become_username_and_password() {
        for module in [
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            "org.apache.kafka.common.security.scram.ScramLoginModule",
        ] {
            let line = format!("{module} required username=\"alice\" password=\"p\\\"w;d\";");
            let o = resolve(&config(&[("producer.override.sasl.jaas.config", &line)]), Policy::Principal).unwrap();
            assert_eq!(
                o.producer,
                [
                    ("sasl.username".to_string(), "alice".to_string()),
                    ("sasl.password".to_string(), "p\"w;d".to_string())
                ]
            );
        }
    }

    #[test]
    fn other_jaas_lines_are_refused_naming_the_librdkafka_keys() {
        for line in [
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\" password=\"b\" extra=\"c\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a",
        ] {
            let issues = resolve(&config(&[("consumer.override.sasl.jaas.config", line)]), Policy::All).unwrap_err();
            assert_eq!(issues[0].key, "consumer.override.sasl.jaas.config");
            assert!(issues[0].message.contains("sasl.username and sasl.password"), "{}", issues[0].message);
            assert!(!issues[0].message.contains("\"b\""), "the password never shows");
        }
    }

    #[test]
    fn java_only_keys_are_refused_saying_what_to_use() {
        let issues = resolve(
            &config(&[
                ("consumer.override.ssl.truststore.location", "/x.jks"),
                ("producer.override.value.serializer", "org.apache.kafka.common.serialization.StringSerializer"),
                ("producer.override.ssl.keystore.type", "JKS"),
            ]),
            Policy::All,
        )
        .unwrap_err();
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert!(messages[0].contains("ssl.ca.location"), "{messages:?}");
        assert!(messages[1].contains("ssl.certificate.location"), "{messages:?}");
        assert!(messages[2].contains("value.converter"), "{messages:?}");
        let o = resolve(
            &config(&[
                ("producer.override.ssl.keystore.type", "PKCS12"),
                ("producer.override.ssl.endpoint.identification.algorithm", ""),
            ]),
            Policy::All,
        )
        .unwrap();
        assert_eq!(o.producer, [("ssl.endpoint.identification.algorithm".to_string(), "none".to_string())]);
    }

    #[test]
    fn unknown_names_and_bad_values_are_librdkafkas_refusals() {
        let issues = resolve(
            &config(&[("consumer.override.fetch.bogus.ms", "1"), ("consumer.override.auto.offset.reset", "sometimes")]),
            Policy::All,
        )
        .unwrap_err();
        assert_eq!(issues.len(), 2);
        assert!(issues.iter().all(|i| i.message.contains("librdkafka refuses")), "{issues:?}");
    }

    #[test]
    fn principal_allows_identity_only_and_none_allows_nothing() {
        let identity = config(&[
            ("consumer.override.security.protocol", "SASL_SSL"),
            ("consumer.override.sasl.mechanism", "PLAIN"),
            ("consumer.override.sasl.username", "u"),
            ("consumer.override.sasl.password", "${env:SOME_SECRET}"),
        ]);
        assert_eq!(
            resolve(&identity, Policy::Principal).unwrap().consumer.len(),
            3,
            "the reference waits for task start"
        );
        assert_eq!(issue_keys(resolve(&identity, Policy::None)).len(), 4);
        let tuning = config(&[("consumer.override.auto.offset.reset", "latest")]);
        let issues = resolve(&tuning, Policy::Principal).unwrap_err();
        assert_eq!(issues[0].key, "consumer.override.auto.offset.reset");
        assert!(issues[0].message.contains("Principal") && issues[0].message.contains("sasl.username"));
        assert!(resolve(&tuning, Policy::All).is_ok());
    }
}
