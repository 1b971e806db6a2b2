//! `/admin/loggers`: Kafka Connect's `LoggingResource` over this worker's
//! levels (`crate::logging`). A logger is a module path (`tracing` target);
//! `root` is the default level.

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, Shared};
use crate::logging::{tracing_level, LoggerLevel};

fn shown(l: &LoggerLevel) -> Value {
    json!({"level": l.level, "last_modified": l.last_modified})
}

/// `LoggingResource.listLoggers`: every logger with a level of its own.
pub async fn list(State(state): State<Shared>) -> Json<Value> {
    let all: Map<String, Value> = state.loggers.all().iter().map(|(name, l)| (name.clone(), shown(l))).collect();
    Json(Value::Object(all))
}

/// `LoggingResource.getLogger`: here any module path has a level, its own
/// or its nearest ancestor's (Kafka Connect answers 404 for a logger its
/// log4j does not know; a `tracing` target is known only once it logs).
pub async fn get(State(state): State<Shared>, Path(logger): Path<String>) -> Json<Value> {
    Json(shown(&state.loggers.level(&logger)))
}

/// `LoggingResource.setLevel`: body `{"level": "DEBUG"}`; `?scope=worker`
/// (the default) answers 200 with the loggers set, `?scope=cluster` 204.
/// Cluster scope is applied on this worker only, as Kafka Connect's
/// standalone herder does (`StandaloneHerder.setClusterLoggerLevel`).
pub async fn put(
    State(state): State<Shared>,
    Path(logger): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    // A module path (or a Java-style dotted name); anything else could
    // read as more than one filter directive.
    if logger.is_empty() || !logger.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')) {
        return Err(ApiError::bad_request(format!("Invalid logger name {logger:?}: a module path is expected")));
    }
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON in the request body: {e}")))?;
    let level = body
        .get("level")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Desired 'level' parameter was not specified in the request."))?;
    if tracing_level(level).is_none() {
        return Err(ApiError::bad_request(format!("Invalid level specified: {level}")));
    }
    let scope = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "scope")
        .map(|(_, v)| v.to_ascii_lowercase());
    let cluster = match scope.as_deref() {
        None | Some("worker") => false,
        Some("cluster") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("Invalid scope '{other}'; must be one of 'worker' or 'cluster'")))
        }
    };
    let affected = state.loggers.set(&logger, level).map_err(ApiError::bad_request)?;
    tracing::info!(logger, level, cluster, "logger level set through the REST API");
    Ok(if cluster { StatusCode::NO_CONTENT.into_response() } else { Json(json!(affected)).into_response() })
}
