//! The benchmark harness behind `dev/bench`: Kafka → S3 through a real
//! `sluice worker` with the s3-sink, against the ceilings of the two ends
//! (a plain consumer, a plain multipart upload) on the same local services.

pub mod data;
pub mod kafka;
pub mod procstat;
pub mod provenance;
pub mod s3;
pub mod worker;
