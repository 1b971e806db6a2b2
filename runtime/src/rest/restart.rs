//! `POST /connectors/{name}/restart?includeTasks=&onlyFailed=` decided as
//! Kafka Connect decides it (KIP-745): which of the connector and its tasks
//! restart, from their states when the request is handled, and what the
//! answer is. Pure; `connectors.rs` reads the states and writes the restarts.

use crate::state::RunState;

/// What one restart request restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPlan {
    /// The connector object itself.
    pub connector: bool,
    /// The ids of the tasks that restart.
    pub tasks: Vec<i32>,
    /// `true`: answer 204 with no body (neither flag given); otherwise 202
    /// with the status, the restarting parts shown as RESTARTING.
    pub no_content: bool,
}

/// Kafka Connect's `RestartRequest.shouldRestartConnector` (the connector
/// restarts unless only failed parts should and it is not FAILED) and
/// `shouldRestartTask` (a task restarts only with `includeTasks`, and then
/// unless only failed ones should and it is not FAILED), applied to every
/// task as `AbstractHerder.buildRestartPlan` does; the 204/202 split is
/// `ConnectorsResource.restartConnector`'s.
pub fn plan(
    include_tasks: bool,
    only_failed: bool,
    connector_state: RunState,
    tasks: &[(i32, RunState)],
) -> RestartPlan {
    let restarts = |state: RunState| !only_failed || state == RunState::Failed;
    RestartPlan {
        connector: restarts(connector_state),
        tasks: tasks.iter().filter(|(_, state)| include_tasks && restarts(*state)).map(|(id, _)| *id).collect(),
        no_content: !include_tasks && !only_failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four flag combinations against a RUNNING connector with task 0
    /// FAILED and task 1 RUNNING, and against a FAILED connector.
    #[test]
    fn restarts_follow_kafka_connects_rule() {
        use RunState::*;
        let tasks = [(0, Failed), (1, Running)];
        // includeTasks, onlyFailed → connector restarts, tasks, 204?
        type Row = (bool, bool, bool, &'static [i32], bool);
        let table: [Row; 4] = [
            (false, false, true, &[], true),
            (false, true, false, &[], false),
            (true, false, true, &[0, 1], false),
            (true, true, false, &[0], false),
        ];
        for (include_tasks, only_failed, connector, restarted, no_content) in table {
            let expected = RestartPlan { connector, tasks: restarted.to_vec(), no_content };
            assert_eq!(
                plan(include_tasks, only_failed, Running, &tasks),
                expected,
                "includeTasks={include_tasks} onlyFailed={only_failed}"
            );
        }
        // A FAILED connector restarts whatever onlyFailed says.
        for (include_tasks, only_failed) in [(false, false), (false, true), (true, false), (true, true)] {
            assert!(plan(include_tasks, only_failed, Failed, &tasks).connector);
        }
        // Other states are not FAILED.
        assert_eq!(plan(true, true, Paused, &[(0, Paused), (1, Unassigned)]).tasks, Vec::<i32>::new());
    }
}
