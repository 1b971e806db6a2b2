//! The cluster's desired state, materialised from the configs topic. Every
//! worker applies the same records in the same order and so holds the same
//! view; the log order settles races (two creates of one name: the first
//! wins, the second is refused).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// What a connector should be doing (Kafka Connect's target states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetState {
    Started,
    Paused,
    Stopped,
}

/// One record of the configs topic (its key is the connector name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ConfigRecord {
    /// Create (refused if the name exists and `create_only`) or replace.
    Put {
        request_id: String,
        create_only: bool,
        config: BTreeMap<String, String>,
        target: Option<TargetState>,
    },
    Target {
        request_id: String,
        state: TargetState,
    },
    Delete {
        request_id: String,
    },
    /// Restart the connector's tasks: one (`task`) or all (`None`, written
    /// by older workers); `Some(-1)` is the connector object itself
    /// (`worker::CONNECTOR_SLOT`). `only_failed` is kept for records
    /// already in the topic: the REST API decides which parts restart when
    /// it handles the request and writes one record per part.
    Restart {
        request_id: String,
        task: Option<i32>,
        only_failed: bool,
    },
    /// Written by a worker to learn that it has read everything before it.
    Marker {
        request_id: String,
    },
}

/// Whether a configs-topic key is one Kafka Connect's
/// `KafkaConfigBackingStore` writes (`connector-<name>`, `task-<name>-<n>`,
/// `commit-<name>`, `target-state-<name>`, `session-key`,
/// `tasks-fencing-<name>`, `logger-cluster-<ns>`). A record with such a key
/// whose value is not a [`ConfigRecord`] means the topic belongs to a Java
/// Connect cluster (a Sluice connector named like this writes readable
/// values).
pub fn is_kafka_connect_config_key(key: &str) -> bool {
    const PREFIXES: [&str; 6] =
        ["connector-", "task-", "commit-", "target-state-", "tasks-fencing-", "logger-cluster-"];
    key == "session-key" || PREFIXES.iter().any(|p| key.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

impl ConfigRecord {
    pub fn request_id(&self) -> &str {
        match self {
            ConfigRecord::Put { request_id, .. }
            | ConfigRecord::Target { request_id, .. }
            | ConfigRecord::Delete { request_id }
            | ConfigRecord::Restart { request_id, .. }
            | ConfigRecord::Marker { request_id } => request_id,
        }
    }
}

/// A connector as the cluster wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    pub config: BTreeMap<String, String>,
    pub target: TargetState,
    /// Offset of the record that last changed the config: tasks restart when it moves.
    pub version: i64,
    /// Bumped by restart requests, per task (`None`: all tasks).
    pub restarts: BTreeMap<Option<i32>, (u64, bool)>,
}

/// How a write was applied, for the worker that is waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Done,
    Conflict(String),
    NotFound(String),
}

#[derive(Debug, Default)]
pub struct ClusterView {
    connectors: BTreeMap<String, ConnectorSpec>,
    outcomes: HashMap<String, Applied>,
}

impl ClusterView {
    pub fn connectors(&self) -> &BTreeMap<String, ConnectorSpec> {
        &self.connectors
    }

    pub fn connector(&self, name: &str) -> Option<&ConnectorSpec> {
        self.connectors.get(name)
    }

    /// Takes the outcome of the write `request_id`, once it has been applied.
    pub fn take_outcome(&mut self, request_id: &str) -> Option<Applied> {
        self.outcomes.remove(request_id)
    }

    /// Applies one configs-topic record at `offset`. A record that cannot be
    /// parsed is skipped (and reported by the caller); it never stops the view.
    pub fn apply(&mut self, offset: i64, name: &str, record: ConfigRecord) {
        let request_id = record.request_id().to_string();
        let outcome = match record {
            ConfigRecord::Put { create_only, config, target, .. } => match self.connectors.get_mut(name) {
                Some(_) if create_only => Applied::Conflict(format!("Connector {name} already exists")),
                Some(spec) => {
                    spec.config = config;
                    spec.version = offset;
                    if let Some(t) = target {
                        spec.target = t;
                    }
                    Applied::Updated
                }
                None => {
                    let spec = ConnectorSpec {
                        config,
                        target: target.unwrap_or(TargetState::Started),
                        version: offset,
                        restarts: BTreeMap::new(),
                    };
                    self.connectors.insert(name.to_string(), spec);
                    Applied::Created
                }
            },
            ConfigRecord::Target { state, .. } => match self.connectors.get_mut(name) {
                Some(spec) => {
                    spec.target = state;
                    Applied::Done
                }
                None => Applied::NotFound(format!("Connector {name} not found")),
            },
            ConfigRecord::Delete { .. } => match self.connectors.remove(name) {
                Some(_) => Applied::Done,
                None => Applied::NotFound(format!("Connector {name} not found")),
            },
            ConfigRecord::Restart { task, only_failed, .. } => match self.connectors.get_mut(name) {
                Some(spec) => {
                    let entry = spec.restarts.entry(task).or_insert((0, only_failed));
                    *entry = (entry.0 + 1, only_failed);
                    Applied::Done
                }
                None => Applied::NotFound(format!("Connector {name} not found")),
            },
            ConfigRecord::Marker { .. } => Applied::Done,
        };
        // Outcomes are only kept for writes someone may be waiting on; bound
        // the map so markers and other workers' writes cannot grow it forever.
        if self.outcomes.len() > 10_000 {
            self.outcomes.clear();
        }
        self.outcomes.insert(request_id, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: &str, create_only: bool, k: &str) -> ConfigRecord {
        ConfigRecord::Put {
            request_id: id.into(),
            create_only,
            config: [("k".to_string(), k.to_string())].into(),
            target: None,
        }
    }

    #[test]
    fn the_first_create_in_the_log_wins() {
        let mut v = ClusterView::default();
        v.apply(0, "c", put("a", true, "first"));
        v.apply(1, "c", put("b", true, "second"));
        assert_eq!(v.take_outcome("a"), Some(Applied::Created));
        assert!(matches!(v.take_outcome("b"), Some(Applied::Conflict(_))));
        assert_eq!(v.connector("c").unwrap().config["k"], "first");
    }

    #[test]
    fn updates_move_the_version_and_deletes_remove() {
        let mut v = ClusterView::default();
        v.apply(0, "c", put("a", false, "1"));
        v.apply(5, "c", put("b", false, "2"));
        assert_eq!(v.take_outcome("b"), Some(Applied::Updated));
        assert_eq!(v.connector("c").unwrap().version, 5);
        v.apply(6, "c", ConfigRecord::Target { request_id: "t".into(), state: TargetState::Paused });
        assert_eq!(v.connector("c").unwrap().target, TargetState::Paused);
        v.apply(7, "c", ConfigRecord::Delete { request_id: "d".into() });
        assert!(v.connector("c").is_none());
        v.apply(8, "c", ConfigRecord::Delete { request_id: "e".into() });
        assert!(matches!(v.take_outcome("e"), Some(Applied::NotFound(_))));
    }

    #[test]
    fn kafka_connects_config_records_are_told_apart() {
        for key in ["connector-orders", "task-orders-0", "commit-orders", "target-state-orders", "session-key"] {
            assert!(is_kafka_connect_config_key(key), "{key}");
        }
        for key in ["orders", "__marker", "connector-", "sessions"] {
            assert!(!is_kafka_connect_config_key(key), "{key}");
        }
        // What Kafka Connect writes under those keys is not ours.
        for value in [r#"{"properties":{"connector.class":"x"}}"#, r#"{"state":"STARTED"}"#, r#"{"tasks":1}"#] {
            assert!(serde_json::from_str::<ConfigRecord>(value).is_err(), "{value}");
        }
    }

    #[test]
    fn records_round_trip_as_json() {
        let r = put("a", true, "v");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"op\":\"put\""));
        assert_eq!(serde_json::from_str::<ConfigRecord>(&json).unwrap(), r);
    }
}
