use clap::Parser;
use sluice_runtime::{
    cli::{self, Cli, Command, NewCommand, PluginsCommand},
    logging,
    settings::Settings,
};

/// glibc raises its mmap threshold to the size of each large block freed (up
/// to 32 MiB), so after the first S3 part is uploaded later parts come from
/// the heap arenas, which fragment and keep their pages. A fixed 1 MiB
/// threshold gives every part (and other large buffer) its own mapping,
/// returned on free: worker peak RSS in dev/bench 126 MiB instead of 170
/// (JSON), 123 instead of 155 (Parquet), for about 1 CPU-second more per
/// million 1 KiB records (page faults on fresh mappings; at 4 MiB those were
/// fewer, but Parquet's column and output buffers stayed on the heap and its
/// peak RSS went to 181 MiB, bench/results/2026-11-22-40ba1ce.md). Plugins share the
/// process's allocator, so this covers their buffers too.
/// `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        }
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    match Cli::parse().command {
        Command::Plugins { command: PluginsCommand::List { plugin_path } } => {
            logging::init(false, "error");
            cli::plugins_list(&plugin_path, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Health { rest_listen, path, timeout_ms, tls_ca, tls_cert, tls_key, tls_server_name } => {
            logging::init(false, "error");
            let tls = tls_ca.map(|ca| sluice_runtime::probe::ProbeTls {
                ca,
                cert: tls_cert,
                key: tls_key,
                server_name: tls_server_name,
            });
            let timeout = std::time::Duration::from_millis(timeout_ms);
            cli::health(&rest_listen, &path, timeout, tls.as_ref(), &mut std::io::stdout())
        }
        Command::New { command: NewCommand::Connector { kind, name, dir, connector_api } } => {
            logging::init(false, "error");
            cli::new_connector(kind, &name, dir.as_deref(), connector_api.as_deref(), &mut std::io::stdout())
        }
        Command::Worker(args) => {
            let settings = Settings::resolve(*args)?;
            let loggers = logging::init(settings.json_logs, "info");
            cli::run_worker(settings, loggers)
        }
    }
}
