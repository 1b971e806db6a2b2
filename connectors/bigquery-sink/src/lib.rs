//! BigQuery sink connector: not implemented yet (its issue is open). This crate reserves the place in the layout; it exports no connector class, so the worker does not list it.
