//! Worker settings: by flag, by `SLUICE_*` environment variable (what ECS
//! uses), or from a file (`--config`: TOML, or Kafka Connect's Java
//! properties when it ends in `.properties`, see `properties.rs`); a flag or
//! variable wins over the file, the file over the default.

pub mod properties;

use std::{collections::BTreeMap, fs, path::PathBuf, time::Duration};

use anyhow::Context;
use serde::Deserialize;

use crate::{
    cluster::{active_topics::TopicTracking, Topics},
    kafka::{overrides::Policy, KafkaSettings},
    rest::{tls::RestTls, Auth},
};

#[derive(clap::Args, Debug, Default)]
pub struct WorkerArgs {
    /// A TOML file with any of the settings below (same names, `_` for `-`) and a `[kafka]` table, or a Kafka Connect worker file (connect-distributed.properties) when the name ends in .properties.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "SLUICE_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Names the internal topics and the coordination group; workers sharing it form one cluster. Default: sluice.
    #[arg(long, env = "SLUICE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Address of the REST API. Default: 127.0.0.1:8083.
    #[arg(long, env = "SLUICE_REST_LISTEN")]
    pub rest_listen: Option<String>,
    /// PEM certificate chain of the REST API: set with --rest-tls-key, the API speaks HTTPS only (reloaded on SIGHUP and when the file changes).
    #[arg(long, env = "SLUICE_REST_TLS_CERT")]
    pub rest_tls_cert: Option<PathBuf>,
    /// PEM private key of --rest-tls-cert.
    #[arg(long, env = "SLUICE_REST_TLS_KEY")]
    pub rest_tls_key: Option<PathBuf>,
    /// PEM CA bundle that REST clients' certificates must chain to; setting it asks clients for a certificate.
    #[arg(long, env = "SLUICE_REST_TLS_CLIENT_CA")]
    pub rest_tls_client_ca: Option<PathBuf>,
    /// Client certificates (Kafka Connect's ssl.client.auth): required, requested or none. Default: required with --rest-tls-client-ca, none without.
    #[arg(long, env = "SLUICE_REST_TLS_CLIENT_AUTH")]
    pub rest_tls_client_auth: Option<String>,
    /// Address other workers and operators see this worker at; its `host:port` is the status `worker_id` (as Kafka Connect's). Default: the listen address.
    #[arg(long, env = "SLUICE_ADVERTISED_URL")]
    pub advertised_url: Option<String>,
    /// Directories holding connector plugin libraries, comma-separated.
    #[arg(long, env = "SLUICE_PLUGIN_PATH", value_delimiter = ',')]
    pub plugin_path: Vec<PathBuf>,
    /// A librdkafka property passed through as is (TLS, SASL, …); repeatable. Also SLUICE_KAFKA_PROPERTIES=p=v,p=v.
    #[arg(long = "kafka", value_name = "PROPERTY=VALUE")]
    pub kafka: Vec<String>,
    /// Consumer-group session timeout; a dead worker's tasks move after about this long. Default: 10000.
    #[arg(long, env = "SLUICE_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: Option<u32>,
    /// fetch.wait.max.ms of the worker's consumers. Default: 10.
    #[arg(long, env = "SLUICE_FETCH_WAIT_MAX_MS")]
    pub fetch_wait_max_ms: Option<u32>,
    /// First delay before a failed task is restarted automatically (doubling); 0 turns automatic restarts off. Default: 1000.
    #[arg(long, env = "SLUICE_TASK_RESTART_BACKOFF_MS")]
    pub task_restart_backoff_ms: Option<u64>,
    /// Bearer tokens the REST API accepts, comma-separated (none: no authentication).
    #[arg(long, env = "SLUICE_REST_AUTH_TOKENS", value_delimiter = ',')]
    pub rest_auth_tokens: Vec<String>,
    /// user:password pairs the REST API accepts with HTTP basic auth, comma-separated.
    #[arg(long, env = "SLUICE_REST_BASIC_AUTH", value_delimiter = ',')]
    pub rest_basic_auth: Vec<String>,
    /// text or json (one JSON object per line, for central log stores). Default: text.
    #[arg(long, env = "SLUICE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How long SIGTERM waits for tasks to commit and stop. Default: 20000.
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Record the topics each connector uses (Kafka Connect's topic.tracking.enable); false: GET …/topics is a 403. Default: true.
    #[arg(long, env = "SLUICE_TOPIC_TRACKING_ENABLE")]
    pub topic_tracking_enable: Option<bool>,
    /// Allow PUT …/topics/reset (topic.tracking.allow.reset); false: it is a 403. Default: true.
    #[arg(long, env = "SLUICE_TOPIC_TRACKING_ALLOW_RESET")]
    pub topic_tracking_allow_reset: Option<bool>,
    /// The configs topic (Kafka Connect's config.storage.topic). Default: <cluster-id>-configs.
    #[arg(long, env = "SLUICE_CONFIG_STORAGE_TOPIC")]
    pub config_storage_topic: Option<String>,
    /// The offsets topic (offset.storage.topic). Default: <cluster-id>-offsets.
    #[arg(long, env = "SLUICE_OFFSET_STORAGE_TOPIC")]
    pub offset_storage_topic: Option<String>,
    /// The status topic (status.storage.topic). Default: <cluster-id>-status.
    #[arg(long, env = "SLUICE_STATUS_STORAGE_TOPIC")]
    pub status_storage_topic: Option<String>,
    /// Replication factor of the configs topic when the worker creates it; -1: the broker's default. Default: -1.
    #[arg(long, env = "SLUICE_CONFIG_STORAGE_REPLICATION_FACTOR", allow_negative_numbers = true)]
    pub config_storage_replication_factor: Option<i32>,
    /// Replication factor of the offsets topic; -1: the broker's default. Default: -1.
    #[arg(long, env = "SLUICE_OFFSET_STORAGE_REPLICATION_FACTOR", allow_negative_numbers = true)]
    pub offset_storage_replication_factor: Option<i32>,
    /// Replication factor of the status topic; -1: the broker's default. Default: -1.
    #[arg(long, env = "SLUICE_STATUS_STORAGE_REPLICATION_FACTOR", allow_negative_numbers = true)]
    pub status_storage_replication_factor: Option<i32>,
    /// Partitions of the offsets topic: only 1 is accepted (one order for the DLQ-replay lease and positions).
    #[arg(long, env = "SLUICE_OFFSET_STORAGE_PARTITIONS", allow_negative_numbers = true)]
    pub offset_storage_partitions: Option<i32>,
    /// Partitions of the status topic: only 1 is accepted (one order for statuses and heartbeats).
    #[arg(long, env = "SLUICE_STATUS_STORAGE_PARTITIONS", allow_negative_numbers = true)]
    pub status_storage_partitions: Option<i32>,
    /// Which consumer.override.* / producer.override.* / admin.override.* a connector may set: None, Principal or All. Default: All.
    #[arg(long, env = "SLUICE_CONNECTOR_CLIENT_CONFIG_OVERRIDE_POLICY")]
    pub connector_client_config_override_policy: Option<String>,
    /// A connector-config default written into connectors created from now on (e.g. value.converter=json); repeatable. Also SLUICE_CONNECTOR_DEFAULTS=k=v,k=v.
    #[arg(long = "connector-default", value_name = "KEY=VALUE")]
    pub connector_default: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bootstrap_servers: Option<String>,
    cluster_id: Option<String>,
    rest_listen: Option<String>,
    rest_tls_cert: Option<PathBuf>,
    rest_tls_key: Option<PathBuf>,
    rest_tls_client_ca: Option<PathBuf>,
    rest_tls_client_auth: Option<String>,
    /// A `.properties` file's `listeners` is `https://…`: TLS settings must come with it.
    #[serde(skip)]
    rest_https_listener: bool,
    advertised_url: Option<String>,
    plugin_path: Option<Vec<PathBuf>>,
    session_timeout_ms: Option<u32>,
    fetch_wait_max_ms: Option<u32>,
    task_restart_backoff_ms: Option<u64>,
    rest_auth_tokens: Option<Vec<String>>,
    rest_basic_auth: Option<Vec<String>>,
    log_format: Option<String>,
    shutdown_timeout_ms: Option<u64>,
    topic_tracking_enable: Option<bool>,
    topic_tracking_allow_reset: Option<bool>,
    config_storage_topic: Option<String>,
    offset_storage_topic: Option<String>,
    status_storage_topic: Option<String>,
    config_storage_replication_factor: Option<i32>,
    offset_storage_replication_factor: Option<i32>,
    status_storage_replication_factor: Option<i32>,
    offset_storage_partitions: Option<i32>,
    status_storage_partitions: Option<i32>,
    connector_client_config_override_policy: Option<String>,
    #[serde(default)]
    kafka: BTreeMap<String, String>,
    /// Properties of one kind of the worker's clients only.
    #[serde(default)]
    kafka_consumer: BTreeMap<String, String>,
    #[serde(default)]
    kafka_producer: BTreeMap<String, String>,
    #[serde(default)]
    kafka_admin: BTreeMap<String, String>,
    #[serde(default)]
    connector_defaults: BTreeMap<String, String>,
}

/// The settings a worker runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub cluster_id: String,
    pub rest_listen: String,
    /// HTTPS on the REST API; None: plain HTTP.
    pub rest_tls: Option<RestTls>,
    pub worker_id: String,
    pub plugin_path: Vec<PathBuf>,
    pub restart_backoff: Option<Duration>,
    pub auth: Auth,
    pub json_logs: bool,
    pub shutdown_timeout: Duration,
    pub topic_tracking: TopicTracking,
    /// The internal topics' names and replication factors.
    pub topics: Topics,
    /// `connector.client.config.override.policy`.
    pub client_policy: Policy,
    /// Connector-config keys (e.g. `value.converter`) a create writes into a
    /// new connector's config when it does not set them.
    pub connector_defaults: BTreeMap<String, String>,
    /// One line per key of a `.properties` file that was ignored, and why;
    /// the worker logs them at start.
    pub notes: Vec<String>,
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .with_context(|| format!("{text:?} is not KEY=VALUE"))
}

/// `${env:…}`, `${file:…}` and `${directory:…}` in worker-level Kafka
/// properties (a SASL password, a key password), resolved as in connector
/// configs; an error names the property, never the value.
fn resolve_references(table: &str, properties: Vec<(String, String)>) -> anyhow::Result<Vec<(String, String)>> {
    properties
        .into_iter()
        .map(|(key, value)| {
            if !crate::connector_config::has_reference(&value) {
                return Ok((key, value));
            }
            let one = BTreeMap::from([(key.clone(), value)]);
            let mut resolved =
                crate::connector_config::resolve_secrets(&one).map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
            let value = resolved.remove(&key).unwrap_or_default();
            Ok((key, value))
        })
        .collect()
}

/// Kafka Connect keeps the offsets and status topics in many partitions;
/// Sluice needs one order in each, so another count is refused at start.
fn check_partitions(setting: &str, partitions: Option<i32>, why: &str) -> anyhow::Result<()> {
    match partitions {
        None | Some(1) => Ok(()),
        Some(n) => anyhow::bail!(
            "{setting}={n} is refused: Sluice keeps this topic in one partition because {why}; remove the setting or set it to 1"
        ),
    }
}

fn replication_factor(setting: &str, value: Option<i32>) -> anyhow::Result<i32> {
    match value {
        None => Ok(crate::cluster::DEFAULT_REPLICATION),
        Some(0) | Some(i32::MIN..=-2) => {
            anyhow::bail!("{setting}={}: must be -1 (the broker's default) or at least 1", value.unwrap_or_default())
        }
        Some(n) => Ok(n),
    }
}

impl Settings {
    pub fn resolve(args: WorkerArgs) -> anyhow::Result<Settings> {
        let mut notes = Vec::new();
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                if path.extension().is_some_and(|e| e == "properties") {
                    let mapped = properties::map_worker(&properties::parse(&text));
                    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                    notes.extend(mapped.ignored.iter().map(|line| format!("{name}: {line}")));
                    if !mapped.refused.is_empty() {
                        let lines: Vec<String> = mapped.refused.iter().map(|line| format!("{name}: {line}")).collect();
                        anyhow::bail!("{}\n{}", lines.join("\n"), notes.join("\n"));
                    }
                    mapped.settings
                } else {
                    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
                }
            }
            None => FileSettings::default(),
        };
        let mut connector_defaults = file.connector_defaults;
        if let Ok(env) = std::env::var("SLUICE_CONNECTOR_DEFAULTS") {
            for p in env.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair(p).context("SLUICE_CONNECTOR_DEFAULTS")?;
                connector_defaults.insert(k, v);
            }
        }
        for p in &args.connector_default {
            let (k, v) = pair(p).context("--connector-default")?;
            connector_defaults.insert(k, v);
        }
        let offset_partitions = args.offset_storage_partitions.or(file.offset_storage_partitions);
        check_partitions(
            "offset.storage.partitions",
            offset_partitions,
            "every worker must read DLQ-replay lease claims and replay positions in one order",
        )?;
        let status_partitions = args.status_storage_partitions.or(file.status_storage_partitions);
        check_partitions(
            "status.storage.partitions",
            status_partitions,
            "every worker must read heartbeats and statuses in one order to place tasks alike",
        )?;
        let client_policy =
            match args.connector_client_config_override_policy.or(file.connector_client_config_override_policy) {
                Some(text) => Policy::parse(&text).map_err(anyhow::Error::msg)?,
                None => Policy::default(),
            };
        let mut properties: Vec<(String, String)> = file.kafka.into_iter().collect();
        if let Ok(env) = std::env::var("SLUICE_KAFKA_PROPERTIES") {
            for p in env.split(',').filter(|p| !p.trim().is_empty()) {
                properties.push(pair(p)?);
            }
        }
        for p in &args.kafka {
            properties.push(pair(p)?);
        }
        let properties = resolve_references("the worker's Kafka properties", properties)?;
        let consumer_properties = resolve_references("[kafka_consumer]", file.kafka_consumer.into_iter().collect())?;
        let producer_properties = resolve_references("[kafka_producer]", file.kafka_producer.into_iter().collect())?;
        let admin_properties = resolve_references("[kafka_admin]", file.kafka_admin.into_iter().collect())?;
        let bootstrap_servers = args
            .bootstrap_servers
            .or(file.bootstrap_servers)
            .context("bootstrap servers are required: --bootstrap-servers, SLUICE_BOOTSTRAP_SERVERS or bootstrap_servers in the file")?;
        let rest_listen = args.rest_listen.or(file.rest_listen).unwrap_or_else(|| "127.0.0.1:8083".to_string());
        let rest_tls = RestTls::from_keys(
            args.rest_tls_cert.or(file.rest_tls_cert),
            args.rest_tls_key.or(file.rest_tls_key),
            args.rest_tls_client_ca.or(file.rest_tls_client_ca),
            args.rest_tls_client_auth.or(file.rest_tls_client_auth).as_deref(),
        )?;
        if file.rest_https_listener && rest_tls.is_none() {
            anyhow::bail!(
                "listeners asks for HTTPS but no certificate is given: set listeners.https.ssl.keystore.type=PEM and \
                 listeners.https.ssl.keystore.location (one PEM file with the key and its chain), or {} and {}",
                crate::rest::tls::CERT,
                crate::rest::tls::KEY
            );
        }
        let worker_id = worker_id(args.advertised_url.or(file.advertised_url).as_deref().unwrap_or(&rest_listen));
        let plugin_path =
            if args.plugin_path.is_empty() { file.plugin_path.unwrap_or_default() } else { args.plugin_path };
        let backoff = args.task_restart_backoff_ms.or(file.task_restart_backoff_ms).unwrap_or(1000);
        let log_format = args.log_format.or(file.log_format).unwrap_or_else(|| "text".to_string());
        anyhow::ensure!(log_format == "text" || log_format == "json", "log format {log_format:?} is not text or json");
        let cluster_id = args.cluster_id.or(file.cluster_id).unwrap_or_else(|| "sluice".to_string());
        let defaults = Topics::new(&cluster_id);
        let topics = Topics {
            configs: args.config_storage_topic.or(file.config_storage_topic).unwrap_or(defaults.configs),
            status: args.status_storage_topic.or(file.status_storage_topic).unwrap_or(defaults.status),
            offsets: args.offset_storage_topic.or(file.offset_storage_topic).unwrap_or(defaults.offsets),
            configs_replication: replication_factor(
                "config.storage.replication.factor",
                args.config_storage_replication_factor.or(file.config_storage_replication_factor),
            )?,
            status_replication: replication_factor(
                "status.storage.replication.factor",
                args.status_storage_replication_factor.or(file.status_storage_replication_factor),
            )?,
            offsets_replication: replication_factor(
                "offset.storage.replication.factor",
                args.offset_storage_replication_factor.or(file.offset_storage_replication_factor),
            )?,
        };
        Ok(Settings {
            kafka: KafkaSettings {
                bootstrap_servers,
                properties,
                consumer_properties,
                producer_properties,
                admin_properties,
                session_timeout_ms: args.session_timeout_ms.or(file.session_timeout_ms).unwrap_or(10_000),
                fetch_wait_max_ms: args.fetch_wait_max_ms.or(file.fetch_wait_max_ms).unwrap_or(10),
            },
            cluster_id,
            rest_listen,
            rest_tls,
            worker_id,
            plugin_path,
            restart_backoff: (backoff > 0).then(|| Duration::from_millis(backoff)),
            auth: Auth {
                tokens: if args.rest_auth_tokens.is_empty() {
                    file.rest_auth_tokens.unwrap_or_default()
                } else {
                    args.rest_auth_tokens
                },
                basic: if args.rest_basic_auth.is_empty() {
                    file.rest_basic_auth.unwrap_or_default()
                } else {
                    args.rest_basic_auth
                },
            },
            json_logs: log_format == "json",
            shutdown_timeout: Duration::from_millis(
                args.shutdown_timeout_ms.or(file.shutdown_timeout_ms).unwrap_or(20_000),
            ),
            topic_tracking: TopicTracking {
                enable: args.topic_tracking_enable.or(file.topic_tracking_enable).unwrap_or(true),
                allow_reset: args.topic_tracking_allow_reset.or(file.topic_tracking_allow_reset).unwrap_or(true),
            },
            topics,
            client_policy,
            connector_defaults,
            notes,
        })
    }
}

/// Kafka Connect's `worker_id`, `host:port` (`RestServer.advertisedUrl`'s
/// host and port): an advertised URL loses its scheme and path.
fn worker_id(address: &str) -> String {
    let without_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    without_scheme.split('/').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_id_is_host_and_port() {
        assert_eq!(worker_id("127.0.0.1:8083"), "127.0.0.1:8083");
        assert_eq!(worker_id("http://connect-1.internal:8083/"), "connect-1.internal:8083");
        assert_eq!(worker_id("https://connect-1:443"), "connect-1:443");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.toml");
        fs::write(
            &path,
            "bootstrap_servers = \"file:9092\"\ncluster_id = \"from-file\"\n[kafka]\n\"security.protocol\" = \"SSL\"\n",
        )
        .unwrap();
        let args = WorkerArgs { config: Some(path), cluster_id: Some("from-flag".into()), ..WorkerArgs::default() };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "file:9092");
        assert_eq!(s.cluster_id, "from-flag");
        assert_eq!(s.rest_listen, "127.0.0.1:8083");
        assert!(s.kafka.properties.contains(&("security.protocol".to_string(), "SSL".to_string())));
    }

    #[test]
    fn connector_defaults_come_from_the_file_the_variable_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.toml");
        fs::write(
            &path,
            "bootstrap_servers = \"k:9092\"\n[connector_defaults]\n\"value.converter\" = \"json\"\n\"key.converter\" = \"string\"\n",
        )
        .unwrap();
        let args = WorkerArgs {
            config: Some(path),
            connector_default: vec!["value.converter.schemas.enable=false".into(), "key.converter=bytes".into()],
            ..WorkerArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        let expected: BTreeMap<String, String> =
            [("key.converter", "bytes"), ("value.converter", "json"), ("value.converter.schemas.enable", "false")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(s.connector_defaults, expected, "the flag wins over the file");
    }

    #[test]
    fn internal_topics_take_their_settings_and_only_one_partition() {
        let base = || WorkerArgs { bootstrap_servers: Some("k:9092".into()), ..WorkerArgs::default() };
        let s = Settings::resolve(WorkerArgs { cluster_id: Some("c".into()), ..base() }).unwrap();
        assert_eq!(
            (s.topics.configs.as_str(), s.topics.status.as_str(), s.topics.offsets.as_str()),
            ("c-configs", "c-status", "c-offsets")
        );
        assert_eq!(s.topics.configs_replication, -1);
        assert_eq!(s.client_policy, Policy::All);
        let s = Settings::resolve(WorkerArgs {
            config_storage_topic: Some("connect-configs".into()),
            offset_storage_replication_factor: Some(3),
            offset_storage_partitions: Some(1),
            connector_client_config_override_policy: Some("None".into()),
            ..base()
        })
        .unwrap();
        assert_eq!((s.topics.configs.as_str(), s.topics.offsets_replication), ("connect-configs", 3));
        assert_eq!(s.client_policy, Policy::None);
        let err =
            Settings::resolve(WorkerArgs { status_storage_partitions: Some(5), ..base() }).unwrap_err().to_string();
        assert!(err.contains("status.storage.partitions=5") && err.contains("one partition"), "{err}");
        let err = Settings::resolve(WorkerArgs { config_storage_replication_factor: Some(0), ..base() })
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.storage.replication.factor"), "{err}");
        let err =
            Settings::resolve(WorkerArgs { connector_client_config_override_policy: Some("Some".into()), ..base() })
                .unwrap_err()
                .to_string();
        assert!(err.contains("connector.client.config.override.policy"), "{err}");
    }

    #[test]
    fn a_properties_file_is_read_as_kafka_connects_worker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connect-distributed.properties");
        fs::write(&path, "bootstrap.servers=k:9092\ngroup.id=connect-cluster\nvalue.converter=json\nfoo=1\n").unwrap();
        let s = Settings::resolve(WorkerArgs { config: Some(path.clone()), ..WorkerArgs::default() }).unwrap();
        assert_eq!((s.kafka.bootstrap_servers.as_str(), s.cluster_id.as_str()), ("k:9092", "connect-cluster"));
        assert_eq!(s.connector_defaults["value.converter"], "json");
        assert_eq!(s.notes, ["connect-distributed.properties: ignoring foo: no meaning in Sluice"]);
        fs::write(&path, "bootstrap.servers=k:9092\noffset.storage.partitions=25\n").unwrap();
        let err = Settings::resolve(WorkerArgs { config: Some(path.clone()), ..WorkerArgs::default() }).unwrap_err();
        assert!(err.to_string().contains("offset.storage.partitions=25"), "{err}");
        fs::write(&path, "bootstrap.servers=k:9092\nlisteners=HTTPS://:8443\n").unwrap();
        let err = Settings::resolve(WorkerArgs { config: Some(path.clone()), ..WorkerArgs::default() }).unwrap_err();
        assert!(
            err.to_string().contains("listeners asks for HTTPS") && err.to_string().contains("rest_tls_cert"),
            "{err}"
        );
        let s = Settings::resolve(WorkerArgs {
            config: Some(path),
            rest_tls_cert: Some("/tls/rest.pem".into()),
            rest_tls_key: Some("/tls/rest.key".into()),
            ..WorkerArgs::default()
        })
        .unwrap();
        assert_eq!(s.rest_listen, "0.0.0.0:8443");
        assert_eq!(s.rest_tls.map(|t| t.cert), Some(PathBuf::from("/tls/rest.pem")), "the variables complete the file");
    }

    #[test]
    fn kafka_properties_resolve_provider_references() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("kafka.properties");
        fs::write(&secrets, "password=s3cr3t\n").unwrap();
        let path = dir.path().join("worker.toml");
        fs::write(
            &path,
            format!(
                "bootstrap_servers = \"k:9092\"\n[kafka]\n\"sasl.password\" = \"${{file:{}:password}}\"\n\
                 [kafka_producer]\n\"ssl.key.password\" = \"${{file:{}:missing}}\"\n",
                secrets.display(),
                secrets.display()
            ),
        )
        .unwrap();
        let err = Settings::resolve(WorkerArgs { config: Some(path.clone()), ..WorkerArgs::default() }).unwrap_err();
        assert!(err.to_string().contains("[kafka_producer]: ssl.key.password"), "{err}");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace(":missing}", ":password}")).unwrap();
        let s = Settings::resolve(WorkerArgs { config: Some(path), ..WorkerArgs::default() }).unwrap();
        assert!(s.kafka.properties.contains(&("sasl.password".to_string(), "s3cr3t".to_string())));
        assert_eq!(s.kafka.producer_properties, [("ssl.key.password".to_string(), "s3cr3t".to_string())]);
    }

    #[test]
    fn missing_bootstrap_servers_is_a_clear_error() {
        let err = Settings::resolve(WorkerArgs::default()).unwrap_err().to_string();
        assert!(err.contains("--bootstrap-servers"), "{err}");
    }
}
