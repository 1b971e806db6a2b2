//! `sluice-bigquery-sink`: writes Kafka records to BigQuery tables.
//!
//! - [`config`]: Confluent's BigQuery sink keys (legacy and V2 names).
//! - [`storage`]: a thin Storage Write API client (gRPC) for the
//!   exactly-once STREAMING path ([`streaming`], [`encode`]).
//! - [`rest`], [`auth`], [`schema`], [`legacy`]: the REST side (tables,
//!   insertAll, credentials, table schemas).
//!
//! Not a plugin yet: the connector class is exported once the task exists.

pub mod config;
pub mod encode;
pub mod storage;
pub mod streaming;
pub mod task;

pub mod auth;
pub mod legacy;
pub mod rest;
pub mod schema;
