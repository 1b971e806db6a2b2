use clap::Parser;
use sluice_runtime::{
    cli::{self, Cli, Command, PluginsCommand},
    settings::Settings,
};
use tracing_subscriber::EnvFilter;

fn init_logging(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Plugins { command: PluginsCommand::List { plugin_path } } => {
            init_logging(false, "error");
            cli::plugins_list(&plugin_path, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Worker(args) => {
            let settings = Settings::resolve(*args)?;
            init_logging(settings.json_logs, "info");
            cli::run_worker(settings)
        }
    }
}
