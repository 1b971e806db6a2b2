//! The Sluice worker as a library; `main.rs` is a thin command line over it.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod cli;
pub mod cluster;
pub mod connector_config;
pub mod converter;
pub mod host;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod new_connector;
pub mod pipeline;
pub mod plugins;
pub mod probe;
pub mod rest;
pub mod settings;
pub mod state;
pub mod tls;
pub mod transform;
pub mod worker;
