//! Connector and task states, with Kafka Connect's names: a leaf module, so
//! the cluster, the worker, the REST API and the metrics all use one type.

use serde::{Deserialize, Serialize};

/// What a connector or task is doing (what it should be doing is its
/// connector's [`TargetState`]), with Kafka Connect's names on the wire (the
/// status topic and the REST API: `"RUNNING"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunState {
    /// No worker has published a state for it (yet).
    Unassigned,
    Running,
    Paused,
    Failed,
    /// What a restart request answers for the tasks it restarts.
    Restarting,
    Stopped,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Unassigned,
        RunState::Running,
        RunState::Paused,
        RunState::Failed,
        RunState::Restarting,
        RunState::Stopped,
    ];

    /// Kafka Connect's name, as the wire carries it.
    pub const fn name(self) -> &'static str {
        match self {
            RunState::Unassigned => "UNASSIGNED",
            RunState::Running => "RUNNING",
            RunState::Paused => "PAUSED",
            RunState::Failed => "FAILED",
            RunState::Restarting => "RESTARTING",
            RunState::Stopped => "STOPPED",
        }
    }
}
