//! The reconciler: compares what the cluster wants (the configs view and this
//! worker's share of the coordination partitions) with the tasks running
//! here, and starts, stops, pauses and restarts tasks until they match. It
//! also publishes the states of the tasks it runs and of the connectors it
//! owns.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

mod plan;

use plan::{Start, Sweep, Want};

use crate::{
    cluster::fence::{Moment, Verdict},
    cluster::{connector_status_key, task_status_key, Cluster, ConnectorSpec, RunState, Status},
    connector_config::{self, RuntimeConfig},
    host::PluginMetrics,
    metrics::Metrics,
    pipeline::{self, status::StatusMessage, TaskContext},
    plugins::{ConnectorClass, Kind, PluginRegistry},
};

/// The connector object itself is placed like a task with this id.
pub const CONNECTOR_SLOT: i32 = -1;

type TaskKey = (String, i32);

/// A connector's task configs, or why they could not be computed.
type TaskConfigs = Result<Vec<BTreeMap<String, String>>, String>;

/// A task whose thread ended: key, config version, restart epoch,
/// incarnation, and its result.
type Finished = (TaskKey, i64, u64, u64, Result<(), String>);

/// What a task should run with.
struct DesiredTask {
    class: Arc<ConnectorClass>,
    runtime: RuntimeConfig,
    task_config: BTreeMap<String, String>,
    want: Want,
}

struct RunningTask {
    version: i64,
    /// Its incarnation, carried by its statuses (`Status::generation`).
    generation: u64,
    restart_epoch: u64,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    status_message: StatusMessage,
    handle: JoinHandle<Result<(), String>>,
}

struct FailedTask {
    version: i64,
    restart_epoch: u64,
    attempts: u32,
    retry_at: Option<Instant>,
}

#[derive(Default)]
struct Local {
    running: HashMap<TaskKey, RunningTask>,
    stopping: HashMap<TaskKey, JoinHandle<Result<(), String>>>,
    failed: HashMap<TaskKey, FailedTask>,
    /// Task configs per connector, computed once per config version and
    /// connector restart.
    task_configs: HashMap<String, ((i64, u64), TaskConfigs)>,
    /// Last status this worker published per key, to publish only changes.
    published: HashMap<String, Status>,
    /// The last fencing (`cluster/fence.rs`) whose tasks this worker stopped.
    fencing_handled: u64,
    /// The last task incarnation this worker issued.
    last_generation: u64,
}

pub struct Worker {
    pub cluster: Arc<Cluster>,
    pub registry: Arc<PluginRegistry>,
    pub metrics: Arc<Metrics>,
    plugin_metrics: Arc<PluginMetrics>,
    /// First automatic restart delay of a failed task; `None`: no automatic restarts.
    restart_backoff: Option<Duration>,
    local: Mutex<Local>,
    shutting_down: AtomicBool,
}

/// The runtime config of a connector and its class, or why it cannot run.
pub fn class_and_runtime(
    registry: &PluginRegistry,
    config: &BTreeMap<String, String>,
) -> Result<(Arc<ConnectorClass>, RuntimeConfig), String> {
    let class_name = config.get("connector.class").map(String::as_str).unwrap_or_default();
    let class = registry.class(class_name).ok_or_else(|| format!("no plugin provides connector class {class_name}"))?;
    // The runtime's keys are read with their references resolved (a typed
    // key may come from `${env:…}`); messages never quote what they resolved
    // to. A reference this worker cannot resolve fails only when the
    // runtime's keys need it: otherwise the task fails at start, with the
    // reason in its status, on the worker that lacks the variable or file.
    let (resolved, mut issues) = connector_config::resolve(config);
    match connector_config::parse(&resolved.config, class.kind()) {
        Ok(runtime) => Ok((class, runtime)),
        Err(parsed) => {
            issues.extend(parsed);
            let listed: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.key, i.message)).collect();
            Err(resolved.scrub(&listed.join("; ")))
        }
    }
}

impl Worker {
    pub fn new(
        cluster: Arc<Cluster>,
        registry: Arc<PluginRegistry>,
        metrics: Arc<Metrics>,
        restart_backoff: Option<Duration>,
    ) -> Arc<Worker> {
        let plugin_metrics = Arc::new(PluginMetrics::new(metrics.registry.clone()));
        Arc::new(Worker {
            cluster,
            registry,
            metrics,
            plugin_metrics,
            restart_backoff,
            local: Mutex::new(Local::default()),
            shutting_down: AtomicBool::new(false),
        })
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the reconcile loop on its own thread.
    pub fn spawn(self: &Arc<Self>) -> anyhow::Result<JoinHandle<()>> {
        let worker = self.clone();
        Ok(thread::Builder::new().name("reconciler".into()).spawn(move || {
            while !worker.shutting_down.load(Ordering::SeqCst) {
                let seen = worker.cluster.changes();
                worker.reconcile();
                worker.cluster.wait_change(seen, Duration::from_millis(250));
            }
        })?)
    }

    /// Task configs of a connector (cached per config version; a restart of
    /// the connector computes them again).
    pub fn task_configs(&self, name: &str, spec: &ConnectorSpec) -> Result<Vec<BTreeMap<String, String>>, String> {
        let version = (spec.version, plan::restart_epoch(spec, CONNECTOR_SLOT));
        if let Some((cached, configs)) = self.local().task_configs.get(name) {
            if *cached == version {
                return configs.clone();
            }
        }
        let computed = class_and_runtime(&self.registry, &spec.config).and_then(|(class, runtime)| {
            // The connector splits its resolved config, as in Kafka Connect;
            // the task configs get the references back (kept and shown), and
            // each task resolves them again when it starts.
            let (resolved, _) = connector_config::resolve(&spec.config);
            let config: Vec<(&str, &str)> = resolved.config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            class
                .task_configs(config, runtime.tasks_max)
                .map(|tasks| {
                    connector_config::reverse(
                        &spec.config,
                        tasks.into_iter().map(|t| t.into_iter().collect()).collect(),
                    )
                })
                .map_err(|e| resolved.scrub(&e.to_string()))
        });
        self.local().task_configs.insert(name.to_string(), (version, computed.clone()));
        computed
    }

    fn publish(&self, key: String, status: Option<Status>) {
        // A fenced worker's tasks may run elsewhere: its statuses would
        // overwrite the new owner's.
        if self.cluster.fence.fenced() {
            return;
        }
        {
            let local = self.local();
            if local.published.get(&key) == status.as_ref() {
                return;
            }
        }
        match self.cluster.put_status(&key, status.as_ref()) {
            Ok(()) => {
                let mut local = self.local();
                match status {
                    Some(s) => local.published.insert(key, s),
                    None => local.published.remove(&key),
                };
            }
            Err(e) => tracing::warn!(key, error = %e, "publishing a status failed; will retry"),
        }
    }

    fn status(&self, state: RunState, trace: Option<String>) -> Status {
        Status { state, worker_id: self.cluster.worker_id.clone(), trace, generation: None, message: None }
    }

    /// A task's status, with the incarnation it belongs to.
    fn task_status(&self, state: RunState, trace: Option<String>, generation: u64) -> Status {
        Status { generation: Some(generation), ..self.status(state, trace) }
    }

    /// A new incarnation for a task of `key` starting now.
    fn next_generation(&self, key: &TaskKey) -> u64 {
        let known = self.cluster.status(&task_status_key(&key.0, key.1)).and_then(|s| s.generation);
        let mut local = self.local();
        let generation = plan::incarnation(crate::cluster::placement::now_ms(), known, local.last_generation);
        local.last_generation = generation;
        generation
    }

    /// One pass: make the local tasks match what the cluster wants.
    pub fn reconcile(&self) {
        if let Verdict::Fenced { silent, fencing } = self.cluster.fence.check() {
            self.fenced(silent, fencing);
            return;
        }
        let connectors: BTreeMap<String, ConnectorSpec> = self.cluster.with_view(|v| v.connectors().clone());
        let desired = self.desired(&connectors);
        for (key, version, epoch, generation, result) in self.sweep(&desired) {
            if let Err(trace) = result {
                self.task_failed(key, version, epoch, generation, &trace);
            }
        }
        for (key, d) in &desired {
            self.start_if_due(key, d);
        }
        // Publish the states of the tasks running here.
        let states: Vec<(TaskKey, bool, u64, Option<String>)> = self
            .local()
            .running
            .iter()
            .map(|(k, t)| (k.clone(), t.paused.load(Ordering::SeqCst), t.generation, t.status_message.get()))
            .collect();
        for ((name, id), paused, generation, message) in states {
            let state = if paused { RunState::Paused } else { RunState::Running };
            self.metrics.set_task_state(&name, id, state);
            let status = Status { message, ..self.task_status(state, None, generation) };
            self.publish(task_status_key(&name, id), Some(status));
        }
        // Forget the statuses of deleted connectors (the owner cleans up).
        let names: Vec<&str> = connectors.keys().map(String::as_str).collect();
        let gone = plan::forgotten(self.local().published.keys(), &names);
        for key in gone {
            self.publish(key, None);
        }
    }

    /// This worker went unheard of for a session timeout (a pause, a frozen
    /// VM, a partition): its tasks may already run elsewhere. Stops every
    /// one (their own threads saw the fence and commit nothing), publishes
    /// nothing, and lets the worker rejoin once all of them ended; placement
    /// then decides afresh what runs here.
    fn fenced(&self, silent: Duration, fencing: u64) {
        let mut local = self.local();
        if local.fencing_handled != fencing {
            local.fencing_handled = fencing;
            let running: Vec<(TaskKey, RunningTask)> = local.running.drain().collect();
            let stopped = running.len();
            for (key, task) in running {
                task.stop.store(true, Ordering::SeqCst);
                local.stopping.insert(key, task.handle);
            }
            // The new owners wrote statuses meanwhile: after rejoining, this
            // worker publishes its own again even where they look unchanged.
            local.published.clear();
            tracing::warn!(
                silent_s = silent.as_secs_f64(),
                stopped,
                "worker fenced after a pause of {:.1} s without a heartbeat (longer than the session timeout): stopped its {stopped} tasks without committing anything for them; it rejoins once they ended",
                silent.as_secs_f64()
            );
        }
        local.stopping.retain(|_, h| !h.is_finished());
        if local.stopping.is_empty() {
            self.cluster.fence.tasks_ended(Moment::now());
        }
    }

    /// The tasks that should run here, publishing the state of each
    /// connector this worker owns on the way.
    fn desired(&self, connectors: &BTreeMap<String, ConnectorSpec>) -> BTreeMap<TaskKey, DesiredTask> {
        let mut desired = BTreeMap::new();
        for (name, spec) in connectors {
            let owns_connector = self.cluster.placement.owns(name, CONNECTOR_SLOT);
            let prepared = class_and_runtime(&self.registry, &spec.config)
                .and_then(|(class, runtime)| self.task_configs(name, spec).map(|tasks| (class, runtime, tasks)));
            let (class, runtime, tasks) = match prepared {
                Ok(p) => p,
                Err(trace) => {
                    if owns_connector {
                        self.publish(connector_status_key(name), Some(self.status(RunState::Failed, Some(trace))));
                    }
                    continue;
                }
            };
            if owns_connector {
                let state = plan::connector_state(spec.target);
                self.publish(connector_status_key(name), Some(self.status(state, None)));
            }
            let wanted = plan::wanted(spec, tasks.len(), |id| self.cluster.placement.owns(name, id));
            let mut tasks: Vec<Option<BTreeMap<String, String>>> = tasks.into_iter().map(Some).collect();
            for (id, want) in wanted {
                let Some(task_config) = tasks.get_mut(id as usize).and_then(Option::take) else { continue };
                let task = DesiredTask { class: class.clone(), runtime: runtime.clone(), task_config, want };
                desired.insert((name.clone(), id), task);
            }
        }
        desired
    }

    /// Reaps finished tasks, stops unwanted or outdated ones, applies pause;
    /// the finished ones with their version, epoch, incarnation and result.
    fn sweep(&self, desired: &BTreeMap<TaskKey, DesiredTask>) -> Vec<Finished> {
        let mut finished = Vec::new();
        let mut local = self.local();
        let keys: Vec<TaskKey> = local.running.keys().cloned().collect();
        for key in keys {
            let Some(task) = local.running.get(&key) else { continue };
            let want = desired.get(&key).map(|d| d.want);
            match plan::sweep(task.handle.is_finished(), task.version, task.restart_epoch, want) {
                Sweep::Reap => {
                    if let Some(task) = local.running.remove(&key) {
                        let result = task.handle.join().unwrap_or_else(|_| Err("the task thread panicked".to_string()));
                        finished.push((key, task.version, task.restart_epoch, task.generation, result));
                    }
                }
                Sweep::Stop => {
                    if let Some(task) = local.running.remove(&key) {
                        task.stop.store(true, Ordering::SeqCst);
                        local.stopping.insert(key, task.handle);
                    }
                }
                Sweep::Keep { paused } => task.paused.store(paused, Ordering::SeqCst),
            }
        }
        local.stopping.retain(|_, h| !h.is_finished());
        finished
    }

    /// A task's thread ended with an error: FAILED, with its next automatic restart.
    fn task_failed(&self, key: TaskKey, version: i64, epoch: u64, generation: u64, trace: &str) {
        // A plugin's error may quote a config value: what the connector's
        // references resolved to is hidden from the status and the log
        // (invariant 16).
        let trace = match self.cluster.with_view(|v| v.connector(&key.0).map(|s| s.config.clone())) {
            Some(config) => connector_config::resolve(&config).0.scrub(trace),
            None => trace.to_string(),
        };
        let trace = trace.as_str();
        tracing::error!(connector = %key.0, task = key.1, %trace, "task failed");
        self.metrics.set_task_state(&key.0, key.1, RunState::Failed);
        let previous = self.local().failed.get(&key).map(|f| f.attempts);
        let failure = plan::failure(previous, self.restart_backoff, Instant::now());
        let shown = plan::failure_trace(trace, &failure, Instant::now());
        self.publish(task_status_key(&key.0, key.1), Some(self.task_status(RunState::Failed, Some(shown), generation)));
        let failed =
            FailedTask { version, restart_epoch: epoch, attempts: failure.attempts, retry_at: failure.retry_at };
        self.local().failed.insert(key, failed);
    }

    /// Starts a task that should run here and does not (unless it failed
    /// and is not due for a restart).
    fn start_if_due(&self, key: &TaskKey, d: &DesiredTask) {
        let (busy, failed) = {
            let local = self.local();
            let busy = local.running.contains_key(key) || local.stopping.contains_key(key);
            let failed = local.failed.get(key).map(|f| plan::Failed {
                version: f.version,
                restart_epoch: f.restart_epoch,
                retry_at: f.retry_at,
            });
            (busy, failed)
        };
        let busy = busy || self.shutting_down.load(Ordering::SeqCst);
        match plan::start(busy, failed, d.want, Instant::now()) {
            Start::Skip => return,
            Start::Go { restart, forget_failure } => {
                if restart {
                    self.metrics.task_restarts.with_label_values(&[&key.0, &key.1.to_string()]).inc();
                }
                if forget_failure {
                    self.local().failed.remove(key);
                }
            }
        }
        let generation = self.next_generation(key);
        let task_config = match connector_config::resolve_secrets(&d.task_config) {
            Ok(c) => c,
            Err(trace) => {
                let status = self.task_status(RunState::Failed, Some(trace), generation);
                self.publish(task_status_key(&key.0, key.1), Some(status));
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(d.want.paused));
        let status_message = StatusMessage::default();
        let ctx = TaskContext {
            connector: key.0.clone(),
            task: key.1,
            class: d.class.clone(),
            task_config,
            runtime: d.runtime.clone(),
            cluster: self.cluster.clone(),
            metrics: self.metrics.clone(),
            plugin_metrics: self.plugin_metrics.clone(),
            stop: stop.clone(),
            paused: paused.clone(),
            status_message: status_message.clone(),
        };
        match spawn_task(ctx, d.class.kind()) {
            Ok(handle) => {
                let (version, restart_epoch) = (d.want.version, d.want.restart_epoch);
                let task = RunningTask { version, generation, restart_epoch, stop, paused, status_message, handle };
                self.local().running.insert(key.clone(), task);
            }
            Err(e) => tracing::error!(connector = %key.0, task = key.1, error = %e, "cannot start a task thread"),
        }
    }

    /// Stops every task (committing settled offsets) within `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<(TaskKey, JoinHandle<Result<(), String>>)> = {
            let mut local = self.local();
            let running: Vec<_> = local.running.drain().collect();
            let mut handles = Vec::new();
            for (key, task) in running {
                task.stop.store(true, Ordering::SeqCst);
                handles.push((key, task.handle));
            }
            handles.extend(local.stopping.drain());
            handles
        };
        let deadline = Instant::now() + timeout;
        for (key, handle) in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::warn!(connector = %key.0, task = key.1, "task did not stop in time");
            }
        }
    }

    /// Whether a task is placed on this worker right now.
    pub fn runs(&self, connector: &str, task: i32) -> bool {
        self.local().running.contains_key(&(connector.to_string(), task))
    }
}

/// The task's own thread, running its pipeline.
fn spawn_task(ctx: TaskContext, kind: Kind) -> std::io::Result<JoinHandle<Result<(), String>>> {
    thread::Builder::new().name(format!("task-{}-{}", ctx.connector, ctx.task)).spawn(move || {
        let span = tracing::info_span!("task", connector = %ctx.connector, task = ctx.task);
        let _entered = span.enter();
        tracing::info!("task starting");
        let result = match kind {
            Kind::Sink => pipeline::sink::run(&ctx),
            Kind::Source => pipeline::source::run(&ctx),
        };
        tracing::info!(ok = result.is_ok(), "task ended");
        result
    })
}
