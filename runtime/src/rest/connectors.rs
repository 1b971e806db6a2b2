//! `/connectors/...` handlers.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use serde_json::{json, Map, Value};

use super::{blocking, ApiError, ApiResult, Shared};
use crate::{
    cluster::{
        connector_status_key, new_request_id, task_status_key, Applied, ConfigRecord, ConnectorSpec, RunState,
        TargetState,
    },
    connector_config::{self, masked},
    plugins::Kind,
    worker::{class_and_runtime, Worker, CONNECTOR_SLOT},
};

pub(super) fn spec(worker: &Worker, name: &str) -> ApiResult<ConnectorSpec> {
    let lookup = || worker.cluster.with_view(|v| v.connector(name).cloned());
    if let Some(spec) = lookup() {
        return Ok(spec);
    }
    // Before a 404, catch up with the configs topic: a connector created
    // through another worker a moment ago is then visible here too.
    worker.cluster.sync().map_err(ApiError::internal)?;
    lookup().ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}

fn kind_name(worker: &Worker, config: &BTreeMap<String, String>) -> &'static str {
    match config.get("connector.class").and_then(|c| worker.registry.class(c)).map(|c| c.kind()) {
        Some(Kind::Source) => "source",
        Some(Kind::Sink) => "sink",
        None => "unknown",
    }
}

fn shown(worker: &Worker, config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let class = config.get("connector.class").and_then(|c| worker.registry.class(c));
    masked(class.as_deref(), config)
}

fn task_count(worker: &Worker, name: &str, spec: &ConnectorSpec) -> usize {
    if spec.target == TargetState::Stopped {
        return 0;
    }
    worker.task_configs(name, spec).map(|t| t.len()).unwrap_or(0)
}

fn info_json(worker: &Worker, name: &str, spec: &ConnectorSpec) -> Value {
    let tasks: Vec<Value> =
        (0..task_count(worker, name, spec)).map(|t| json!({"connector": name, "task": t})).collect();
    json!({
        "name": name,
        "config": shown(worker, &spec.config),
        "tasks": tasks,
        "type": kind_name(worker, &spec.config),
    })
}

fn status_json(worker: &Worker, name: &str, spec: &ConnectorSpec) -> Value {
    let entry = |key: String| {
        worker.cluster.status(&key).map_or_else(
            || json!({"state": RunState::Unassigned, "worker_id": ""}),
            |s| {
                let mut v = json!({"state": s.state, "worker_id": s.worker_id});
                if let Some(t) = s.trace {
                    v["trace"] = Value::String(t);
                }
                if let Some(m) = s.message {
                    v["message"] = Value::String(m);
                }
                v
            },
        )
    };
    let tasks: Vec<Value> = (0..task_count(worker, name, spec) as i32)
        .map(|t| {
            let mut v = entry(task_status_key(name, t));
            v["id"] = json!(t);
            v
        })
        .collect();
    json!({
        "name": name,
        "connector": entry(connector_status_key(name)),
        "tasks": tasks,
        "type": kind_name(worker, &spec.config),
    })
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Malformed JSON in the request body: {e}")))
}

/// A config object: string values (numbers and booleans are accepted and
/// turned into text, as Kafka Connect's clients often send them).
fn config_map(value: &Value, what: &str) -> ApiResult<BTreeMap<String, String>> {
    let object = value.as_object().ok_or_else(|| ApiError::bad_request(format!("{what} must be a JSON object")))?;
    object
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(ApiError::bad_request(format!("config \"{k}\": values must be strings"))),
        })
        .collect()
}

/// Validates a full config: class, its references (`${env:…}`,
/// `${file:…}`, resolved first so typed keys are checked with the values
/// they will have), the runtime's keys, then the plugin's. No message
/// quotes a resolved value.
fn validate(worker: &Worker, config: &BTreeMap<String, String>) -> ApiResult<()> {
    let class_name = config
        .get("connector.class")
        .ok_or_else(|| ApiError::bad_request("Connector config is missing \"connector.class\""))?;
    let Some(class) = worker.registry.class(class_name) else {
        let available: Vec<&str> = worker.registry.classes().iter().map(|c| c.name()).collect();
        return Err(ApiError::bad_request(format!(
            "connector.class: no plugin provides connector class {class_name}; available connectors are: {}",
            available.join(", ")
        )));
    };
    let (resolved, unresolved) = connector_config::resolve(config);
    let mut problems: Vec<String> = unresolved.iter().map(|i| format!("{}: {}", i.key, i.message)).collect();
    // A value whose reference failed is still the placeholder: checking it
    // would only add a second, misleading message for the same key.
    let checked: BTreeMap<String, String> = resolved
        .config
        .iter()
        .filter(|(k, _)| !unresolved.iter().any(|i| i.key.as_str() == k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let skip = |key: &str| unresolved.iter().any(|i| i.key.as_str() == key);
    if let Err(issues) = connector_config::parse(&checked, class.kind()) {
        problems.extend(issues.iter().filter(|i| !skip(&i.key)).map(|i| format!("{}: {}", i.key, i.message)));
    }
    let policy = connector_config::override_policy_issues(&checked, worker.cluster.client_policy);
    problems.extend(policy.iter().map(|i| format!("{}: {}", i.key, i.message)));
    let entries: Vec<(&str, &str)> = checked.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match class.validate(entries) {
        Ok(issues) => {
            problems.extend(issues.iter().filter(|i| !skip(&i.key)).map(|i| format!("{}: {}", i.key, i.message)))
        }
        Err(e) => problems.push(format!("the connector could not validate its config: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(resolved.scrub(&format!(
            "Connector configuration is invalid and contains the following {} error(s):\n{}",
            problems.len(),
            problems.join("\n")
        ))))
    }
}

fn write(worker: &Worker, name: &str, record: ConfigRecord) -> ApiResult<Applied> {
    worker.cluster.write(name, record).map_err(ApiError::internal)
}

/// A connector name as Kafka Connect takes it: trimmed
/// (`ConnectorsResource.createConnector`) and without control characters
/// (`ConfigDef.NonEmptyStringWithoutControlChars`, the validator of
/// `ConnectorConfig`'s `name`); `/` and a leading `__` are Sluice's own
/// refusals (paths; the offsets topic's internal keys).
fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("name: the connector name {name:?} contains control characters")));
    }
    if name.is_empty() || name.contains('/') || name.starts_with("__") {
        return Err(ApiError::bad_request(format!("name: invalid connector name {name:?}")));
    }
    Ok(name.to_string())
}

fn query_values(query: &Option<String>, key: &str) -> Vec<String> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .collect()
}

pub async fn list(State(state): State<Shared>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let expand = query_values(&query, "expand");
    blocking(move || {
        let worker = &state.worker;
        let connectors = worker.cluster.with_view(|v| v.connectors().clone());
        if expand.is_empty() {
            return Ok(Json(json!(connectors.keys().collect::<Vec<_>>())));
        }
        let mut out = Map::new();
        for (name, spec) in &connectors {
            let mut entry = Map::new();
            if expand.iter().any(|e| e == "status") {
                entry.insert("status".into(), status_json(worker, name, spec));
            }
            if expand.iter().any(|e| e == "info") {
                entry.insert("info".into(), info_json(worker, name, spec));
            }
            out.insert(name.clone(), Value::Object(entry));
        }
        Ok(Json(Value::Object(out)))
    })
    .await
}

pub async fn create(State(state): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let body = parse_json(&body)?;
    let name = check_name(body.get("name").and_then(Value::as_str).unwrap_or_default())?;
    let mut config = config_map(body.get("config").unwrap_or(&Value::Null), "config")?;
    if config.get("name").is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request("name: the connector name in the config differs from the request's name"));
    }
    config.insert("name".into(), name.clone());
    let config = crate::converter::with_worker_defaults(config, &state.connector_defaults);
    // Any case, as `CreateConnectorRequest.InitialState.forValue` reads it.
    let target = match body.get("initial_state").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
        None | Some("RUNNING") => TargetState::Started,
        Some("PAUSED") => TargetState::Paused,
        Some("STOPPED") => TargetState::Stopped,
        Some(other) => {
            return Err(ApiError::bad_request(format!("initial_state: {other} is not one of RUNNING, PAUSED, STOPPED")))
        }
    };
    blocking(move || {
        let worker = &state.worker;
        validate(worker, &config)?;
        let record =
            ConfigRecord::Put { request_id: new_request_id(), create_only: true, config, target: Some(target) };
        match write(worker, &name, record)? {
            Applied::Created => {
                let spec = spec(worker, &name)?;
                let location = format!("/connectors/{name}");
                Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info_json(worker, &name, &spec)))
                    .into_response())
            }
            Applied::Conflict(m) => Err(ApiError::conflict(m)),
            other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    })
    .await
}

pub async fn info(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || Ok(Json(info_json(&state.worker, &name, &spec(&state.worker, &name)?)))).await
}

pub async fn get_config(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || Ok(Json(json!(shown(&state.worker, &spec(&state.worker, &name)?.config))))).await
}

async fn replace_config(state: Shared, name: String, config: BTreeMap<String, String>) -> ApiResult<Response> {
    blocking(move || {
        let worker = &state.worker;
        validate(worker, &config)?;
        let record = ConfigRecord::Put { request_id: new_request_id(), create_only: false, config, target: None };
        let applied = write(worker, &name, record)?;
        let spec = spec(worker, &name)?;
        let info = Json(info_json(worker, &name, &spec));
        // `ConnectorsResource.putConnectorConfig`: 201 with a Location when
        // the PUT created the connector, 200 when it replaced one.
        Ok(if applied == Applied::Created {
            (StatusCode::CREATED, [(header::LOCATION, format!("/connectors/{name}"))], info).into_response()
        } else {
            (StatusCode::OK, info).into_response()
        })
    })
    .await
}

/// A PUT/PATCH'd password value that reads `[hidden]` keeps the stored one,
/// so a GET-modify-PUT round trip does not overwrite secrets with the mask.
fn keep_hidden(stored: Option<&ConnectorSpec>, config: &mut BTreeMap<String, String>) {
    let Some(stored) = stored else { return };
    for (k, v) in config.iter_mut() {
        if v == connector_config::HIDDEN {
            if let Some(old) = stored.config.get(k) {
                v.clone_from(old);
            }
        }
    }
}

pub async fn put_config(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> ApiResult<Response> {
    let name = check_name(&name)?;
    let mut config = config_map(&parse_json(&body)?, "the config")?;
    if config.get("name").is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request("name: the connector name in the config differs from the URL's name"));
    }
    config.insert("name".into(), name.clone());
    let stored = state.worker.cluster.with_view(|v| v.connector(&name).cloned());
    keep_hidden(stored.as_ref(), &mut config);
    // A PUT that creates is a create; one that replaces keeps the converters
    // the stored config has for parts the new config does not name, so a
    // pasted config without converters reads records as before.
    let config = match &stored {
        None => crate::converter::with_worker_defaults(config, &state.connector_defaults),
        Some(spec) => crate::converter::with_worker_defaults(config, &spec.config),
    };
    replace_config(state, name, config).await
}

pub async fn patch_config(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> ApiResult<Response> {
    let patch = parse_json(&body)?;
    let patch = patch.as_object().ok_or_else(|| ApiError::bad_request("the patch must be a JSON object"))?.clone();
    let existing = spec(&state.worker, &name)?;
    let mut config = existing.config.clone();
    for (k, v) in patch {
        match v {
            Value::Null => {
                config.remove(&k);
            }
            Value::String(s) => {
                config.insert(k, s);
            }
            Value::Number(n) => {
                config.insert(k, n.to_string());
            }
            Value::Bool(b) => {
                config.insert(k, b.to_string());
            }
            _ => return Err(ApiError::bad_request(format!("config \"{k}\": values must be strings or null"))),
        }
    }
    keep_hidden(Some(&existing), &mut config);
    replace_config(state, name, config).await
}

pub async fn delete(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    blocking(move || match write(&state.worker, &name, ConfigRecord::Delete { request_id: new_request_id() })? {
        Applied::Done => {
            // A connector created again under this name starts with no active topics.
            if let Err(e) = state.worker.cluster.reset_active_topics(&name) {
                tracing::warn!(connector = %name, error = %e, "could not reset the active topics of a deleted connector");
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Applied::NotFound(m) => Err(ApiError::not_found(m)),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    })
    .await
}

pub async fn status(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || Ok(Json(status_json(&state.worker, &name, &spec(&state.worker, &name)?)))).await
}

pub async fn tasks(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let worker = &state.worker;
        let spec = spec(worker, &name)?;
        if spec.target == TargetState::Stopped {
            return Ok(Json(json!([])));
        }
        let configs = worker.task_configs(&name, &spec).map_err(ApiError::internal)?;
        let tasks: Vec<Value> = configs
            .iter()
            .enumerate()
            .map(|(t, c)| json!({"id": {"connector": name, "task": t}, "config": shown(worker, c)}))
            .collect();
        Ok(Json(json!(tasks)))
    })
    .await
}

fn task_in_range(worker: &Worker, name: &str, task: i32) -> ApiResult<ConnectorSpec> {
    let spec = spec(worker, name)?;
    if task < 0 || task as usize >= task_count(worker, name, &spec) {
        return Err(ApiError::not_found(format!("Task {name}-{task} not found")));
    }
    Ok(spec)
}

pub async fn task_status(
    State(state): State<Shared>,
    Path((name, task)): Path<(String, i32)>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let worker = &state.worker;
        let spec = task_in_range(worker, &name, task)?;
        let status = status_json(worker, &name, &spec);
        Ok(Json(status["tasks"][task as usize].clone()))
    })
    .await
}

pub async fn restart_task(
    State(state): State<Shared>,
    Path((name, task)): Path<(String, i32)>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        task_in_range(&state.worker, &name, task)?;
        let record = ConfigRecord::Restart { request_id: new_request_id(), task: Some(task), only_failed: false };
        write(&state.worker, &name, record)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn restart(
    State(state): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let include_tasks = query_values(&query, "includeTasks").iter().any(|v| v == "true");
    let only_failed = query_values(&query, "onlyFailed").iter().any(|v| v == "true");
    blocking(move || {
        let worker = &state.worker;
        let spec = spec(worker, &name)?;
        let mut status = status_json(worker, &name, &spec);
        // The states as this worker's status view has them (a missing or
        // unknown one reads as UNASSIGNED, which restarts only without onlyFailed).
        let state_of = |v: &Value| serde_json::from_value::<RunState>(v.clone()).unwrap_or(RunState::Unassigned);
        let connector_state = state_of(&status["connector"]["state"]);
        let task_states: Vec<(i32, RunState)> = status["tasks"]
            .as_array()
            .map(|tasks| tasks.iter().filter_map(|t| Some((t["id"].as_i64()? as i32, state_of(&t["state"])))).collect())
            .unwrap_or_default();
        let plan = super::restart::plan(include_tasks, only_failed, connector_state, &task_states);
        // One restart record per part: the connector object (which computes
        // its task configs again) and each restarting task.
        let parts = plan.connector.then_some(CONNECTOR_SLOT).into_iter().chain(plan.tasks.iter().copied());
        for part in parts {
            let record = ConfigRecord::Restart { request_id: new_request_id(), task: Some(part), only_failed: false };
            match write(worker, &name, record)? {
                Applied::Done => {}
                Applied::NotFound(m) => return Err(ApiError::not_found(m)),
                other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
            }
        }
        if plan.no_content {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if plan.connector {
            status["connector"]["state"] = json!(RunState::Restarting);
        }
        if let Some(tasks) = status["tasks"].as_array_mut() {
            for t in tasks.iter_mut().filter(|t| t["id"].as_i64().is_some_and(|id| plan.tasks.contains(&(id as i32)))) {
                t["state"] = json!(RunState::Restarting);
            }
        }
        Ok((StatusCode::ACCEPTED, Json(status)).into_response())
    })
    .await
}

/// Pause and resume answer 202 (`ConnectorsResource.pauseConnector`,
/// `resumeConnector`); stop 204 (`stopConnector` returns nothing).
async fn set_target(state: Shared, name: String, target: TargetState) -> ApiResult<StatusCode> {
    let answer = if target == TargetState::Stopped { StatusCode::NO_CONTENT } else { StatusCode::ACCEPTED };
    blocking(move || {
        match write(&state.worker, &name, ConfigRecord::Target { request_id: new_request_id(), state: target })? {
            Applied::Done => Ok(answer),
            Applied::NotFound(m) => Err(ApiError::not_found(m)),
            other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    })
    .await
}

pub async fn pause(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    set_target(state, name, TargetState::Paused).await
}

pub async fn resume(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    set_target(state, name, TargetState::Started).await
}

pub async fn stop(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    set_target(state, name, TargetState::Stopped).await
}

/// The committed offsets of a sink connector's consumer group, over its
/// `topics` or the topics its `topics.regex` matches now (Kafka Connect
/// lists the group's committed offsets, whatever the subscription:
/// `Worker.sinkConnectorOffsets`).
fn sink_offsets(worker: &Worker, name: &str, topics: &[String], regex: Option<&str>) -> ApiResult<Vec<Value>> {
    let consumer: BaseConsumer =
        worker.cluster.kafka().consumer(&format!("connect-{name}")).create().map_err(ApiError::internal)?;
    let mut tpl = TopicPartitionList::new();
    let mut add = |metadata: rdkafka::metadata::Metadata, matches: &dyn Fn(&str) -> bool| {
        for t in metadata.topics().iter().filter(|t| matches(t.name())) {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    };
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(ApiError::internal)?;
        add(metadata, &|_| true);
    }
    if let Some(pattern) = regex {
        // The whole name must match, as a Java Pattern's matches() does.
        let pattern =
            regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(ApiError::internal)?;
        add(metadata, &|t| pattern.is_match(t) && !topics.iter().any(|x| x == t));
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).map_err(ApiError::internal)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(json!({
                "partition": {"kafka_topic": e.topic(), "kafka_partition": e.partition()},
                "offset": {"kafka_offset": o},
            })),
            _ => None,
        })
        .collect())
}

pub async fn get_offsets(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let worker = &state.worker;
        let spec = spec(worker, &name)?;
        let (class, runtime) = class_and_runtime(&worker.registry, &spec.config).map_err(ApiError::bad_request)?;
        let offsets = match class.kind() {
            Kind::Sink => sink_offsets(worker, &name, &runtime.topics, runtime.topics_regex.as_deref())?,
            Kind::Source => worker
                .cluster
                .read_source_offsets(&name)
                .map_err(ApiError::internal)?
                .into_iter()
                .map(|(p, o)| {
                    let partition: Value = serde_json::from_str(&p).unwrap_or(Value::String(p));
                    let offset: Value = serde_json::from_str(&o).unwrap_or(Value::String(o));
                    json!({"partition": partition, "offset": offset})
                })
                .collect(),
        };
        Ok(Json(json!({ "offsets": offsets })))
    })
    .await
}

/// Kafka Connect's `modifyConnectorOffsetsChecks` (Standalone- and
/// DistributedHerder): offsets change only while the connector is STOPPED
/// and has no tasks, else 400. Here a stopped sink's tasks may still be
/// stopping on some worker: its consumer group must have no members left.
fn require_stopped(worker: &Worker, name: &str) -> ApiResult<ConnectorSpec> {
    let spec = spec(worker, name)?;
    let refusal = |why: &str| {
        ApiError::bad_request(format!(
            "Connectors must be in the STOPPED state before their offsets can be modified{why}. \
             This can be done for the specified connector by issuing a 'PUT' request to the \
             '/connectors/{name}/stop' endpoint"
        ))
    };
    if spec.target != TargetState::Stopped {
        return Err(refusal(""));
    }
    if !is_source(worker, &spec)? {
        let members = group_members(worker, name)?;
        if members > 0 {
            return Err(refusal(&format!(" (its tasks are still stopping: {members} consumer(s) in its group)")));
        }
    }
    Ok(spec)
}

/// Members of a sink connector's consumer group (`connect-<name>`).
fn group_members(worker: &Worker, name: &str) -> ApiResult<usize> {
    let group = format!("connect-{name}");
    let consumer: BaseConsumer = worker.cluster.kafka().consumer(&group).create().map_err(ApiError::internal)?;
    let groups = consumer.fetch_group_list(Some(&group), Duration::from_secs(10)).map_err(ApiError::internal)?;
    Ok(groups.groups().iter().filter(|g| g.name() == group).map(|g| g.members().len()).sum())
}

/// A `kafka_partition` or `kafka_offset`: a number or a string holding one
/// (`SinkUtils.parseSinkConnectorOffsets` takes both).
fn sink_number(value: &Value, what: &str) -> ApiResult<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request(format!("{what} must be an integer, or a string holding one; got {value}")))
}

fn is_source(worker: &Worker, spec: &ConnectorSpec) -> ApiResult<bool> {
    let (class, _) = class_and_runtime(&worker.registry, &spec.config).map_err(ApiError::bad_request)?;
    Ok(class.kind() == Kind::Source)
}

pub async fn patch_offsets(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body = parse_json(&body)?;
    blocking(move || {
        let worker = &state.worker;
        let spec = require_stopped(worker, &name)?;
        // `ConnectorsResource.alterConnectorOffsets`: no list, or an empty one, is a 400.
        let entries = body["offsets"].as_array().filter(|list| !list.is_empty()).ok_or_else(|| {
            ApiError::bad_request("Partitions / offsets need to be provided for an alter offsets request")
        })?;
        if is_source(worker, &spec)? {
            let offsets: Vec<(String, Option<String>)> = entries
                .iter()
                .map(|e| (e["partition"].to_string(), (!e["offset"].is_null()).then(|| e["offset"].to_string())))
                .collect();
            // Positions first: a failure between the two leaves the old
            // offsets without read-back (at least once), never new offsets
            // whose records a read-back would skip.
            worker.cluster.clear_source_positions(&name).map_err(ApiError::internal)?;
            worker.cluster.write_source_offsets(&name, &offsets).map_err(ApiError::internal)?;
        } else {
            let consumer: BaseConsumer =
                worker.cluster.kafka().consumer(&format!("connect-{name}")).create().map_err(ApiError::internal)?;
            let mut tpl = TopicPartitionList::new();
            for e in entries {
                let topic = e["partition"]["kafka_topic"]
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("partition.kafka_topic is required"))?;
                let partition = sink_number(&e["partition"]["kafka_partition"], "partition.kafka_partition")? as i32;
                let offset = if e["offset"].is_null() {
                    // `"offset": null` resets this one partition: Kafka
                    // Connect deletes its committed offset, so the task
                    // starts per auto.offset.reset (earliest, forced by
                    // the worker); committing the partition's log start
                    // is the same start.
                    let (low, _) = consumer
                        .fetch_watermarks(topic, partition, Duration::from_secs(10))
                        .map_err(ApiError::internal)?;
                    low
                } else {
                    sink_number(&e["offset"]["kafka_offset"], "offset.kafka_offset")?
                };
                tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).map_err(ApiError::internal)?;
            }
            // Commit as a simple (assigned, not subscribed) member of the
            // connector's group, which has no live members while STOPPED.
            for e in tpl.elements() {
                consumer.fetch_metadata(Some(e.topic()), Duration::from_secs(10)).map_err(ApiError::internal)?;
            }
            consumer.assign(&tpl).map_err(ApiError::internal)?;
            consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).map_err(ApiError::internal)?;
        }
        Ok(Json(json!({"message": "The offsets for this connector have been altered successfully"})))
    })
    .await
}

pub async fn reset_offsets(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let worker = &state.worker;
        let spec = require_stopped(worker, &name)?;
        if !is_source(worker, &spec)? {
            // As Kafka Connect does: the group goes, and with it every
            // committed offset; the tasks start per `auto.offset.reset`.
            crate::kafka::delete_group(worker.cluster.kafka(), &format!("connect-{name}"))
                .map_err(ApiError::internal)?;
            return Ok(Json(json!({"message": "The offsets for this connector have been reset successfully"})));
        }
        let current = worker.cluster.read_source_offsets(&name).map_err(ApiError::internal)?;
        let tombstones: Vec<(String, Option<String>)> = current.into_keys().map(|p| (p, None)).collect();
        worker.cluster.clear_source_positions(&name).map_err(ApiError::internal)?;
        worker.cluster.write_source_offsets(&name, &tombstones).map_err(ApiError::internal)?;
        Ok(Json(json!({"message": "The offsets for this connector have been reset successfully"})))
    })
    .await
}

/// Kafka Connect's active topics: those the connector's tasks consumed from
/// (sinks) or produced to (sources) since creation or the last reset.
/// Kafka Connect answers 403 when the worker's settings turn these off.
fn topic_tracking_allows(state: &Shared, reset: bool) -> ApiResult<()> {
    let tracking = state.worker.cluster.topic_tracking;
    if !tracking.enable {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Topic tracking is disabled."));
    }
    if reset && !tracking.allow_reset {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Topic tracking reset is disabled."));
    }
    Ok(())
}

pub async fn topics(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        spec(&state.worker, &name)?;
        topic_tracking_allows(&state, false)?;
        let topics = state.worker.cluster.active_topics(&name);
        Ok(Json(json!({ name: { "topics": topics } })))
    })
    .await
}

pub async fn reset_topics(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    blocking(move || {
        spec(&state.worker, &name)?;
        topic_tracking_allows(&state, true)?;
        state.worker.cluster.reset_active_topics(&name).map_err(ApiError::internal)?;
        Ok(StatusCode::ACCEPTED)
    })
    .await
}
