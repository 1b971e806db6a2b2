//! The command line: `sluice worker …` and `sluice plugins list …`.

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
    /// Inspect connector plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
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
