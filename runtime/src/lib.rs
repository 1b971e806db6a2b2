//! The Sluice worker as a library; `main.rs` is a thin command line over it.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod cli;
pub mod host;
pub mod plugins;
