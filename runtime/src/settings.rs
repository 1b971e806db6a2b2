//! Worker settings: by flag, by `SLUICE_*` environment variable (what ECS
//! uses), or from a TOML file (`--config`); a flag or variable wins over the
//! file, the file over the default.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::Context;
use serde::Deserialize;

use crate::{cluster::active_topics::TopicTracking, kafka::KafkaSettings, rest::Auth};

#[derive(clap::Args, Debug, Default)]
pub struct WorkerArgs {
    /// A TOML file with any of the settings below (same names, `_` for `-`) and a `[kafka]` table.
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
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bootstrap_servers: Option<String>,
    cluster_id: Option<String>,
    rest_listen: Option<String>,
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
    #[serde(default)]
    kafka: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    connector_defaults: std::collections::BTreeMap<String, String>,
}

/// The settings a worker runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub cluster_id: String,
    pub rest_listen: String,
    pub worker_id: String,
    pub plugin_path: Vec<PathBuf>,
    pub restart_backoff: Option<Duration>,
    pub auth: Auth,
    pub json_logs: bool,
    pub shutdown_timeout: Duration,
    pub topic_tracking: TopicTracking,
    /// Connector-config keys (e.g. `value.converter`) a create writes into a
    /// new connector's config when it does not set them.
    pub connector_defaults: std::collections::BTreeMap<String, String>,
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .with_context(|| format!("kafka property {text:?} is not PROPERTY=VALUE"))
}

impl Settings {
    pub fn resolve(args: WorkerArgs) -> anyhow::Result<Settings> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileSettings::default(),
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
        let bootstrap_servers = args
            .bootstrap_servers
            .or(file.bootstrap_servers)
            .context("bootstrap servers are required: --bootstrap-servers, SLUICE_BOOTSTRAP_SERVERS or bootstrap_servers in the file")?;
        let rest_listen = args.rest_listen.or(file.rest_listen).unwrap_or_else(|| "127.0.0.1:8083".to_string());
        let worker_id = worker_id(args.advertised_url.or(file.advertised_url).as_deref().unwrap_or(&rest_listen));
        let plugin_path =
            if args.plugin_path.is_empty() { file.plugin_path.unwrap_or_default() } else { args.plugin_path };
        let backoff = args.task_restart_backoff_ms.or(file.task_restart_backoff_ms).unwrap_or(1000);
        let log_format = args.log_format.or(file.log_format).unwrap_or_else(|| "text".to_string());
        anyhow::ensure!(log_format == "text" || log_format == "json", "log format {log_format:?} is not text or json");
        Ok(Settings {
            kafka: KafkaSettings {
                bootstrap_servers,
                properties,
                session_timeout_ms: args.session_timeout_ms.or(file.session_timeout_ms).unwrap_or(10_000),
                fetch_wait_max_ms: args.fetch_wait_max_ms.or(file.fetch_wait_max_ms).unwrap_or(10),
            },
            cluster_id: args.cluster_id.or(file.cluster_id).unwrap_or_else(|| "sluice".to_string()),
            rest_listen,
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
            connector_defaults: file.connector_defaults,
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
    fn missing_bootstrap_servers_is_a_clear_error() {
        let err = Settings::resolve(WorkerArgs::default()).unwrap_err().to_string();
        assert!(err.contains("--bootstrap-servers"), "{err}");
    }
}
