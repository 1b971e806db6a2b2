//! Kafka Connect's active topics (KIP-558): the topics a connector has used
//! since it was created or its set was last reset — for a sink the topics it
//! consumed records from, for a source the topics it produced to. Kept in the
//! status topic as `status-topic-<topic>:connector-<name>` records, which
//! every worker reads into its view.

use serde::{Deserialize, Serialize};

/// Kafka Connect's `topic.tracking.enable` and `topic.tracking.allow.reset`
/// (worker settings, both on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicTracking {
    /// Tasks record the topics they use; `GET …/topics` answers them.
    pub enable: bool,
    /// `PUT …/topics/reset` may forget them.
    pub allow_reset: bool,
}

impl Default for TopicTracking {
    fn default() -> Self {
        TopicTracking { enable: true, allow_reset: true }
    }
}

const PREFIX: &str = "status-topic-";
const SEPARATOR: &str = ":connector-";

pub fn key(topic: &str, connector: &str) -> String {
    format!("{PREFIX}{topic}{SEPARATOR}{connector}")
}

/// `(topic, connector)` of an active-topic key; `None` for other keys.
/// Topic names cannot hold ':', so the first separator is the one.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(PREFIX)?.split_once(SEPARATOR)
}

/// The record's value, in Kafka Connect's shape.
#[derive(Serialize, Deserialize)]
pub struct TopicStatus {
    pub topic: TopicState,
}

#[derive(Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub connector: String,
    pub task: i32,
    #[serde(rename = "discoverTimestamp")]
    pub discover_timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_dashes_and_dots() {
        let k = key("orders.v1-eu", "s3-sink-orders");
        assert_eq!(k, "status-topic-orders.v1-eu:connector-s3-sink-orders");
        assert_eq!(parse_key(&k), Some(("orders.v1-eu", "s3-sink-orders")));
        assert_eq!(parse_key("status-task-x-0"), None);
        assert_eq!(parse_key("worker-w1"), None);
    }
}
