use clap::Parser;
use sluice_runtime::cli::{self, Cli, Command, PluginsCommand};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match cli.command {
        Command::Plugins { command: PluginsCommand::List { plugin_path } } => {
            cli::plugins_list(&plugin_path, &mut std::io::stdout(), &mut std::io::stderr())
        }
    }
}
