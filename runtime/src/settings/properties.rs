//! A Kafka Connect worker file (`connect-distributed.properties`) as worker
//! settings: the Java properties format (`java.util.Properties.load`), and
//! each Kafka Connect worker key with a meaning here mapped to its setting;
//! every other key is reported, saying why it is ignored or refused.

use std::{collections::BTreeMap, path::PathBuf};

use super::FileSettings;
use crate::kafka::overrides::{self, Client};

/// Key/value pairs in file order, as `java.util.Properties.load` reads them:
/// `#`/`!` comment lines, a backslash at the end of a line continues it (the
/// next line's leading whitespace dropped), the key ends at the first
/// unescaped `=`, `:` or whitespace, escapes `\t \n \r \f \uXXXX` and `\x` →
/// `x`. A later duplicate wins, as in Java.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in logical_lines(text) {
        let (key, value) = split_key_value(&line);
        let (key, value) = (unescape(key), unescape(value));
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    out
}

/// Logical lines: comments and blank lines dropped, continuations joined
/// (still escaped).
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.split(['\n', '\r']) {
        let trimmed = raw.trim_start_matches([' ', '\t', '\x0c']);
        let mut part = match current.take() {
            Some(mut so_far) => {
                so_far.push_str(trimmed);
                so_far
            }
            None => {
                if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                    continue;
                }
                trimmed.to_string()
            }
        };
        let trailing = part.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            part.pop();
            current = Some(part);
        } else {
            lines.push(part);
        }
    }
    if let Some(last) = current {
        lines.push(last);
    }
    lines
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                let key = &line[..i];
                let mut rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
                if c != '=' && c != ':' {
                    if let Some(r) = rest.strip_prefix(['=', ':']) {
                        rest = r;
                    }
                } else {
                    rest = &rest[1..];
                }
                return (key, rest.trim_start_matches([' ', '\t', '\x0c']));
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A worker file mapped to settings, with one line per key not taken.
#[derive(Debug, Default)]
pub(super) struct Mapped {
    pub(super) settings: FileSettings,
    /// Keys without a meaning here (the worker starts without them).
    pub(super) ignored: Vec<String>,
    /// Keys the worker cannot honour and must not run without (it does not start).
    pub(super) refused: Vec<String>,
}

/// Worker keys about Kafka Connect's group membership and rebalancing,
/// which Sluice does not have.
const GROUP_KEYS: [&str; 7] = [
    "heartbeat.interval.ms",
    "rebalance.timeout.ms",
    "scheduled.rebalance.max.delay.ms",
    "connect.protocol",
    "worker.sync.timeout.ms",
    "worker.unsync.backoff.ms",
    "inter.worker.key.generation.algorithm",
];

/// Maps Kafka Connect worker keys to Sluice's settings.
pub(super) fn map_worker(pairs: &[(String, String)]) -> Mapped {
    let mut m = Mapped::default();
    let props: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (key, value) in pairs {
        let (key, value) = (key.as_str(), value.as_str());
        let ignore = |m: &mut Mapped, why: &str| m.ignored.push(format!("ignoring {key}: {why}"));
        match key {
            "bootstrap.servers" => m.settings.bootstrap_servers = Some(value.to_string()),
            "group.id" => m.settings.cluster_id = Some(value.to_string()),
            "listeners" => match listener(value) {
                Ok((address, https, skipped)) => {
                    m.settings.rest_listen = Some(address);
                    m.settings.rest_https_listener = https;
                    for s in skipped {
                        ignore(&mut m, &format!("listener {s} (the REST API listens on one address)"));
                    }
                }
                Err(why) => m.refused.push(format!("refusing {key}={value}: {why}")),
            },
            "rest.host.name" | "rest.port" => {
                if props.contains_key("listeners") {
                    ignore(&mut m, "listeners is set, and wins (as in Kafka Connect)");
                } else if key == "rest.port" {
                    let host = props.get("rest.host.name").copied().filter(|h| !h.is_empty()).unwrap_or("0.0.0.0");
                    m.settings.rest_listen = Some(format!("{host}:{value}"));
                } else if !props.contains_key("rest.port") {
                    let host = if value.is_empty() { "0.0.0.0" } else { value };
                    m.settings.rest_listen = Some(format!("{host}:8083"));
                }
            }
            "rest.advertised.host.name" | "rest.advertised.port" | "rest.advertised.listener" => {
                if value.is_empty() {
                    continue;
                }
                // Set once, from the three keys together (below).
            }
            "plugin.path" => {
                let dirs: Vec<PathBuf> =
                    value.split(',').map(str::trim).filter(|d| !d.is_empty()).map(PathBuf::from).collect();
                m.settings.plugin_path = Some(dirs);
            }
            "config.storage.topic" => m.settings.config_storage_topic = Some(value.to_string()),
            "offset.storage.topic" => m.settings.offset_storage_topic = Some(value.to_string()),
            "status.storage.topic" => m.settings.status_storage_topic = Some(value.to_string()),
            "config.storage.replication.factor"
            | "offset.storage.replication.factor"
            | "status.storage.replication.factor"
            | "offset.storage.partitions"
            | "status.storage.partitions" => match value.trim().parse::<i32>() {
                Ok(n) => {
                    let slot = match key {
                        "config.storage.replication.factor" => &mut m.settings.config_storage_replication_factor,
                        "offset.storage.replication.factor" => &mut m.settings.offset_storage_replication_factor,
                        "status.storage.replication.factor" => &mut m.settings.status_storage_replication_factor,
                        "offset.storage.partitions" => &mut m.settings.offset_storage_partitions,
                        _ => &mut m.settings.status_storage_partitions,
                    };
                    *slot = Some(n);
                }
                Err(_) => m.refused.push(format!("refusing {key}={value}: not a number")),
            },
            "connector.client.config.override.policy" => {
                m.settings.connector_client_config_override_policy = Some(value.to_string())
            }
            "topic.tracking.enable" | "topic.tracking.allow.reset" => match value.trim().parse::<bool>() {
                Ok(b) if key == "topic.tracking.enable" => m.settings.topic_tracking_enable = Some(b),
                Ok(b) => m.settings.topic_tracking_allow_reset = Some(b),
                Err(_) => m.refused.push(format!("refusing {key}={value}: not true or false")),
            },
            "session.timeout.ms" => match value.trim().parse::<u32>() {
                Ok(n) => m.settings.session_timeout_ms = Some(n),
                Err(_) => m.refused.push(format!("refusing {key}={value}: not a number")),
            },
            "task.shutdown.graceful.timeout.ms" => match value.trim().parse::<u64>() {
                Ok(n) => m.settings.shutdown_timeout_ms = Some(n),
                Err(_) => m.refused.push(format!("refusing {key}={value}: not a number")),
            },
            k if k.starts_with("key.converter") || k.starts_with("value.converter") => {
                m.settings.connector_defaults.insert(k.to_string(), value.to_string());
            }
            "header.converter" => ignore(&mut m, "headers pass through as bytes; there are no header converters"),
            "offset.flush.interval.ms" => ignore(
                &mut m,
                "a connector setting in Sluice (offset.flush.interval.ms in each connector's config, default 10000)",
            ),
            "offset.flush.timeout.ms" => {
                ignore(&mut m, "a sink commits what is settled; there is no flush deadline to configure")
            }
            k if GROUP_KEYS.contains(&k) => ignore(
                &mut m,
                "Sluice has no worker group rebalance: tasks are placed from heartbeats (session.timeout.ms is taken)",
            ),
            k if k == "config.providers" || k.starts_with("config.providers.") => ignore(
                &mut m,
                "${env:…} and ${file:PATH:KEY} are built in; Java config provider classes cannot be loaded",
            ),
            k if k == "metric.reporters" || k.starts_with("metrics.") => {
                ignore(&mut m, "metrics are served in Prometheus format at /metrics")
            }
            k if k.starts_with("listeners.https.") => https_key(&mut m, &props, k, value),
            k if k.starts_with("rest.extension") || k.starts_with("admin.listeners") || k.starts_with("listeners.") => {
                ignore(&mut m, "not supported by Sluice's REST API (auth: --rest-auth-tokens, --rest-basic-auth)")
            }
            "exactly.once.source.support" | "transaction.boundary" => ignore(
                &mut m,
                "Sluice sources are idempotent (acks=all, offsets after acknowledgement), not transactional",
            ),
            k if is_client_key(k) => {
                client_key(&mut m, None, k, value);
            }
            k => {
                let prefixed =
                    [("consumer.", Client::Consumer), ("producer.", Client::Producer), ("admin.", Client::Admin)]
                        .into_iter()
                        .find_map(|(p, c)| k.strip_prefix(p).map(|rest| (c, rest)));
                match prefixed {
                    Some((client, rest)) => client_key(&mut m, Some(client), rest, value),
                    None => ignore(&mut m, "no meaning in Sluice"),
                }
            }
        }
    }
    if let Some(url) = advertised(&props, m.settings.rest_listen.as_deref()) {
        m.settings.advertised_url = Some(url);
    }
    m
}

/// Top-level keys that configure every Kafka client of a Java worker.
fn is_client_key(key: &str) -> bool {
    key == "security.protocol" || key.starts_with("ssl.") || key.starts_with("sasl.") || key == "client.dns.lookup"
}

/// A Kafka client key, for all clients (`client` None) or one kind.
fn client_key(m: &mut Mapped, client: Option<Client>, name: &str, value: &str) {
    let full = match client {
        Some(Client::Consumer) => format!("consumer.{name}"),
        Some(Client::Producer) => format!("producer.{name}"),
        Some(Client::Admin) => format!("admin.{name}"),
        None => name.to_string(),
    };
    match overrides::translate(client.unwrap_or(Client::Admin), name, value) {
        Ok(properties) if properties.is_empty() => {
            let why = if name == "max.poll.records" {
                "the batch size is a connector setting here (consumer.max.poll.records in each connector's config)"
            } else {
                "librdkafka needs nothing for it (its default is what this value asks for)"
            };
            m.ignored.push(format!("ignoring {full}: {why}"));
        }
        Ok(properties) => {
            let table = match client {
                None => &mut m.settings.kafka,
                Some(Client::Consumer) => &mut m.settings.kafka_consumer,
                Some(Client::Producer) => &mut m.settings.kafka_producer,
                Some(Client::Admin) => &mut m.settings.kafka_admin,
            };
            table.extend(properties);
        }
        // The worker sets these itself; a pasted `producer.acks=all` is
        // harmless to drop.
        Err(why) if why.starts_with("Sluice sets") => m.ignored.push(format!("ignoring {full}: {why}")),
        // Security keys without an equivalent: running without them would
        // connect differently than configured.
        Err(why) if is_client_key(name) => m.refused.push(format!("refusing {full}: {why}")),
        Err(why) => m.ignored.push(format!("ignoring {full}: {why}")),
    }
}

/// The REST address from `listeners`: the first `http://` or `https://`
/// listener (an empty host binds every interface, as in Kafka Connect),
/// whether it is HTTPS, and the listeners left out (Sluice serves one).
fn listener(value: &str) -> Result<(String, bool, Vec<String>), String> {
    let all: Vec<&str> = value.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
    let (first, https) = all
        .iter()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("http://") {
                Some((*l, false))
            } else if lower.starts_with("https://") {
                Some((*l, true))
            } else {
                None
            }
        })
        .ok_or("give an HTTP:// or HTTPS:// listener")?;
    let address = &first[if https { "https://".len() } else { "http://".len() }..];
    let address = if address.starts_with(':') { format!("0.0.0.0{address}") } else { address.to_string() };
    let skipped = all.iter().filter(|l| **l != first).map(|l| l.to_string()).collect();
    Ok((address, https, skipped))
}

/// `listeners.https.ssl.*`, the HTTPS listener's TLS in Kafka Connect. Java
/// keystores cannot be read here; their PEM form (`ssl.keystore.type=PEM`:
/// one file with the key and chain) maps to the PEM settings.
fn https_key(m: &mut Mapped, props: &BTreeMap<&str, &str>, key: &str, value: &str) {
    let pem = |type_key: &str| props.get(type_key).is_some_and(|t| t.trim().eq_ignore_ascii_case("PEM"));
    let convert = "convert it to PEM (openssl pkcs12 -in store.p12 -nodes) and set the type to PEM, \
                   or set rest_tls_cert/rest_tls_key/rest_tls_client_ca (SLUICE_REST_TLS_*)";
    match &key["listeners.https.".len()..] {
        "ssl.keystore.location" if pem("listeners.https.ssl.keystore.type") => {
            m.settings.rest_tls_cert = Some(PathBuf::from(value));
            m.settings.rest_tls_key = Some(PathBuf::from(value));
        }
        "ssl.keystore.location" => m.refused.push(format!("refusing {key}: a Java keystore cannot be read; {convert}")),
        "ssl.truststore.location" if pem("listeners.https.ssl.truststore.type") => {
            m.settings.rest_tls_client_ca = Some(PathBuf::from(value))
        }
        "ssl.truststore.location" => {
            m.refused.push(format!("refusing {key}: a Java truststore cannot be read; {convert}"))
        }
        "ssl.client.auth" => m.settings.rest_tls_client_auth = Some(value.to_string()),
        "ssl.keystore.type" | "ssl.truststore.type" => {}
        "ssl.key.password" => m.refused.push(format!(
            "refusing {key}: encrypted private keys are not supported; decrypt it (openssl pkey -in key.pem -out plain.pem)"
        )),
        "ssl.keystore.password" | "ssl.truststore.password" if pem(&key.replace("password", "type")) => {
            m.ignored.push(format!("ignoring {key}: a PEM file needs no store password"))
        }
        _ => m.ignored.push(format!(
            "ignoring {key}: the REST API's TLS takes rustls' safe defaults (TLS 1.2 and 1.3); only the PEM files and ssl.client.auth are read"
        )),
    }
}

/// `rest.advertised.{listener,host.name,port}` as an advertised URL; each
/// part unset falls back to the listen address (as in Kafka Connect).
fn advertised(props: &BTreeMap<&str, &str>, listen: Option<&str>) -> Option<String> {
    let get = |k: &str| props.get(k).copied().map(str::trim).filter(|v| !v.is_empty());
    let (host, port, scheme) =
        (get("rest.advertised.host.name"), get("rest.advertised.port"), get("rest.advertised.listener"));
    if host.is_none() && port.is_none() && scheme.is_none() {
        return None;
    }
    let listen = listen.unwrap_or("127.0.0.1:8083");
    let (listen_host, listen_port) = listen.rsplit_once(':').unwrap_or((listen, "8083"));
    Some(format!(
        "{}://{}:{}",
        scheme.unwrap_or("http").to_ascii_lowercase(),
        host.unwrap_or(listen_host),
        port.unwrap_or(listen_port)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
    }

    #[test]
    fn the_java_properties_format_is_read_as_java_reads_it() {
        let text = "# comment\n! also a comment\n  a=1\nb : 2\nc 3\nd\\=e = f\\:g\nlong = one, \\\n    two\nu=\\u00e9\\t|\nempty\nb=last\ntrail=x\\\\\n";
        let p = pairs(text);
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("a"), Some("1"));
        assert_eq!(get("b"), Some("last"), "a later duplicate wins");
        assert_eq!(get("c"), Some("3"));
        assert_eq!(get("d=e"), Some("f:g"));
        assert_eq!(get("long"), Some("one, two"));
        assert_eq!(get("u"), Some("é\t|"));
        assert_eq!(get("empty"), Some(""));
        assert_eq!(get("trail"), Some("x\\"), "an even number of backslashes does not continue");
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn worker_keys_map_to_settings() {
        let m = map_worker(&pairs(
            "bootstrap.servers=k:9092\ngroup.id=connect-cluster\nlisteners=HTTP://:8083\nplugin.path=/a, /b\n\
             config.storage.topic=connect-configs\nconfig.storage.replication.factor=3\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n\
             connector.client.config.override.policy=Principal\nrest.advertised.host.name=w1.internal\n\
             security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";\n\
             consumer.fetch.min.bytes=1024\nproducer.acks=all\nconsumer.max.poll.records=100\n",
        ));
        let s = &m.settings;
        assert_eq!(s.bootstrap_servers.as_deref(), Some("k:9092"));
        assert_eq!(s.cluster_id.as_deref(), Some("connect-cluster"));
        assert_eq!(s.rest_listen.as_deref(), Some("0.0.0.0:8083"));
        assert_eq!(s.advertised_url.as_deref(), Some("http://w1.internal:8083"));
        assert_eq!(s.plugin_path.as_deref(), Some(&[PathBuf::from("/a"), PathBuf::from("/b")][..]));
        assert_eq!(s.config_storage_topic.as_deref(), Some("connect-configs"));
        assert_eq!(s.config_storage_replication_factor, Some(3));
        assert_eq!(s.connector_defaults["key.converter"], "org.apache.kafka.connect.json.JsonConverter");
        assert_eq!(s.connector_defaults["value.converter.schemas.enable"], "false");
        assert_eq!(s.connector_client_config_override_policy.as_deref(), Some("Principal"));
        assert_eq!(s.kafka["security.protocol"], "SASL_SSL");
        assert_eq!((s.kafka["sasl.username"].as_str(), s.kafka["sasl.password"].as_str()), ("u", "p"));
        assert_eq!(s.kafka_consumer["fetch.min.bytes"], "1024");
        assert!(s.kafka_producer.is_empty());
        assert_eq!(m.ignored.len(), 2, "{:?}", m.ignored);
        assert!(m.ignored[0].starts_with("ignoring producer.acks: Sluice sets acks itself"), "{:?}", m.ignored);
        assert!(m.ignored[1].starts_with("ignoring consumer.max.poll.records: the batch size"), "{:?}", m.ignored);
        assert!(m.refused.is_empty(), "{:?}", m.refused);
    }

    #[test]
    fn every_key_not_taken_gets_a_line_saying_why() {
        let m = map_worker(&pairs(
            "offset.flush.interval.ms=10000\nheartbeat.interval.ms=3000\nconfig.providers=file\nfoo.bar=1\n\
             listeners=HTTP://:8083,HTTPS://:8443\n",
        ));
        let lines = m.ignored.join("\n");
        for key in ["offset.flush.interval.ms", "heartbeat.interval.ms", "config.providers", "foo.bar", "HTTPS://:8443"]
        {
            assert!(lines.contains(key), "{key} missing from:\n{lines}");
        }
        assert_eq!(m.ignored.len(), 5);
    }

    #[test]
    fn keys_the_worker_cannot_honour_are_refused() {
        let m = map_worker(&pairs(
            "listeners=HTTPS://:8443\nlisteners.https.ssl.keystore.location=/etc/connect/keystore.jks\n\
             ssl.truststore.location=/etc/kafka/truststore.jks\nsession.timeout.ms=soon\n",
        ));
        let lines = m.refused.join("\n");
        assert_eq!(m.refused.len(), 3, "{lines}");
        assert!(lines.contains("listeners.https.ssl.keystore.location: a Java keystore"), "{lines}");
        assert!(lines.contains("rest_tls_cert") && lines.contains("ssl.ca.location"), "{lines}");
    }

    #[test]
    fn an_https_listener_takes_its_pem_files() {
        let m = map_worker(&pairs(
            "listeners=https://:8443,http://:8083\nlisteners.https.ssl.keystore.type=PEM\n\
             listeners.https.ssl.keystore.location=/etc/connect/rest.pem\nlisteners.https.ssl.keystore.password=x\n\
             listeners.https.ssl.truststore.type=PEM\nlisteners.https.ssl.truststore.location=/etc/connect/ca.pem\n\
             listeners.https.ssl.client.auth=requested\nlisteners.https.ssl.enabled.protocols=TLSv1.3\n",
        ));
        assert!(m.refused.is_empty(), "{:?}", m.refused);
        let s = &m.settings;
        assert_eq!((s.rest_listen.as_deref(), s.rest_https_listener), (Some("0.0.0.0:8443"), true));
        assert_eq!(s.rest_tls_cert, Some(PathBuf::from("/etc/connect/rest.pem")));
        assert_eq!(s.rest_tls_key, s.rest_tls_cert, "a PEM keystore holds the key and the chain");
        assert_eq!(s.rest_tls_client_ca, Some(PathBuf::from("/etc/connect/ca.pem")));
        assert_eq!(s.rest_tls_client_auth.as_deref(), Some("requested"));
        let lines = m.ignored.join("\n");
        assert!(lines.contains("http://:8083") && lines.contains("enabled.protocols"), "{lines}");
        assert!(lines.contains("keystore.password: a PEM file needs no store password"), "{lines}");
    }

    #[test]
    fn rest_port_is_used_without_listeners() {
        let m = map_worker(&pairs("rest.host.name=10.0.0.1\nrest.port=8084\n"));
        assert_eq!(m.settings.rest_listen.as_deref(), Some("10.0.0.1:8084"));
        let m = map_worker(&pairs("rest.port=8084\nrest.advertised.port=9999\nrest.advertised.listener=HTTP\n"));
        assert_eq!(m.settings.advertised_url.as_deref(), Some("http://0.0.0.0:9999"));
    }
}
