//! The command line: `sluice worker …`, `sluice plugins list …`,
//! `sluice health` and `sluice new connector …`.

use std::{io::Write, path::PathBuf};

use clap::{Parser, Subcommand};

use crate::plugins::PluginRegistry;

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "A Kafka Connect–style connector runtime")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a worker: join the cluster, run tasks, serve the REST API.
    Worker(Box<crate::settings::WorkerArgs>),
    /// Inspect connector plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Probe a running worker's REST API (a container HEALTHCHECK): exit 0
    /// when it answers 2xx, 1 with the reason otherwise.
    Health {
        /// The worker's REST listener; a wildcard address is probed on loopback.
        #[arg(long, env = "SLUICE_REST_LISTEN", default_value = "127.0.0.1:8083")]
        rest_listen: String,
        /// The path to ask: /health (the process serves) or /ready (it has joined the cluster).
        #[arg(long, default_value = "/health")]
        path: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        /// Probe over HTTPS, trusting this PEM CA bundle (a worker with --rest-tls-cert).
        #[arg(long, env = "SLUICE_HEALTH_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// PEM client certificate, when the worker requires one (--rest-tls-client-auth=required).
        #[arg(long, env = "SLUICE_HEALTH_TLS_CERT", requires = "tls_ca")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, env = "SLUICE_HEALTH_TLS_KEY", requires = "tls_ca")]
        tls_key: Option<PathBuf>,
        /// The name the worker's certificate must carry. Default: the probed host (127.0.0.1 for a wildcard listener).
        #[arg(long, env = "SLUICE_HEALTH_TLS_SERVER_NAME", requires = "tls_ca")]
        tls_server_name: Option<String>,
    },
    /// Create things: a connector plugin crate.
    New {
        #[command(subcommand)]
        command: NewCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// Write a plugin crate for a new connector (a working sink or source,
    /// with unit tests and a README) into a new directory.
    Connector {
        /// What the connector does: read Kafka into a target, or a source into Kafka.
        #[arg(long, value_enum)]
        kind: crate::new_connector::Kind,
        /// The crate name, also the connector class (e.g. orders-sink).
        name: String,
        /// The crate's directory; it must not exist or be empty [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The connector-api crate to depend on [default: the one this sluice was built from].
        #[arg(long, value_name = "PATH")]
        connector_api: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// Load every plugin library on the path and list its connector classes.
    List {
        /// Directories holding plugin libraries, comma-separated.
        #[arg(long, env = "SLUICE_PLUGIN_PATH", value_delimiter = ',', required = true)]
        plugin_path: Vec<PathBuf>,
    },
}

/// Prints one line per class (class, kind, version, library) and one per
/// refused library on stderr. Fails only if nothing could be listed at all
/// and something was refused.
pub fn plugins_list(plugin_path: &[PathBuf], out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let registry = PluginRegistry::load(plugin_path);
    writeln!(out, "{:<32} {:<7} {:<10} LIBRARY", "CLASS", "KIND", "VERSION")?;
    for class in registry.classes() {
        writeln!(
            out,
            "{:<32} {:<7} {:<10} {}",
            class.name(),
            class.kind().name(),
            class.version(),
            class.library().display()
        )?;
    }
    for rejection in registry.rejections() {
        writeln!(err, "warning: {rejection}")?;
    }
    Ok(())
}

/// Probes the worker's REST API and says what it found.
pub fn health(
    rest_listen: &str,
    path: &str,
    timeout: std::time::Duration,
    tls: Option<&crate::probe::ProbeTls>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let target = crate::probe::probe_target(rest_listen)?;
    let status = crate::probe::probe(&target, path, timeout, tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    writeln!(out, "{scheme}://{target}{path}: {status}")?;
    Ok(())
}

/// Writes a new connector crate and says what to do next.
pub fn new_connector(
    kind: crate::new_connector::Kind,
    name: &str,
    dir: Option<&std::path::Path>,
    connector_api: Option<&std::path::Path>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let dir = crate::new_connector::create(kind, name, dir, connector_api)?;
    let lib = format!("{}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX);
    writeln!(out, "created the {kind:?} connector {name} in {}", dir.display())?;
    writeln!(out, "next: cd {} && cargo test && cargo build --release", dir.display())?;
    writeln!(out, "then: sluice plugins list --plugin-path <a directory holding target/release/{lib}>")?;
    Ok(())
}

/// Runs a worker until SIGTERM or Ctrl-C, then stops its tasks (committing
/// what is settled) and returns.
pub fn run_worker(
    settings: crate::settings::Settings,
    loggers: std::sync::Arc<crate::logging::Loggers>,
) -> anyhow::Result<()> {
    use std::sync::Arc;

    use anyhow::Context;

    for note in &settings.notes {
        tracing::warn!("{note}");
    }
    // Before joining the cluster: a bad certificate path fails the start at once.
    let certified = settings.rest_tls.clone().map(crate::rest::tls::Certified::load).transpose()?;
    let registry = Arc::new(PluginRegistry::load(&settings.plugin_path));
    tracing::info!(classes = registry.classes().len(), "plugins loaded");
    let cluster = crate::cluster::Cluster::start(
        settings.kafka.clone(),
        settings.topics.clone(),
        settings.worker_id.clone(),
        settings.topic_tracking,
        settings.client_policy,
    )
    .context("joining the cluster")?;
    let metrics = Arc::new(crate::metrics::Metrics::new()?);
    let worker = crate::worker::Worker::new(cluster, registry, metrics, settings.restart_backoff);
    worker.spawn()?;
    let kafka_cluster_id = crate::kafka::cluster_id(&settings.kafka).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the Kafka cluster id; GET / reports it as unknown");
        "unknown".to_string()
    });
    let state = Arc::new(crate::rest::AppState {
        worker: worker.clone(),
        kafka_cluster_id,
        auth: settings.auth.clone(),
        loggers,
        connector_defaults: settings.connector_defaults.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&settings.rest_listen)
            .await
            .with_context(|| format!("binding the REST API to {}", settings.rest_listen))?;
        let router = crate::rest::router(state);
        match certified {
            Some((certified, last_seen)) => {
                tracing::info!(listen = %settings.rest_listen, worker_id = %settings.worker_id, "REST API listening (HTTPS)");
                certified.clone().watch(last_seen);
                let listener = crate::rest::tls::TlsListener::new(listener, certified)?;
                axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
            }
            None => {
                tracing::info!(listen = %settings.rest_listen, worker_id = %settings.worker_id, "REST API listening");
                axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("stopping tasks");
    worker.shutdown(settings.shutdown_timeout);
    worker.cluster.leave();
    tracing::info!("worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
