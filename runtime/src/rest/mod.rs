//! The REST API, path- and JSON-compatible with Kafka Connect's, so existing
//! clients and UIs work unchanged. Any worker answers any request: writes go
//! through the configs topic and are answered once this worker's view has
//! applied them (no leader, no forwarding).

mod connectors;
mod dlq_replay;
mod error;
mod loggers;
mod openapi;
mod plugins;
mod restart;
pub mod tls;

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};

pub use error::{ApiError, ApiResult};

use crate::worker::Worker;

/// REST authentication: accepted bearer tokens and `user:password` pairs.
/// Empty: no authentication.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub tokens: Vec<String>,
    pub basic: Vec<String>,
}

pub struct AppState {
    pub worker: Arc<Worker>,
    /// The Kafka cluster's id, as the brokers report it.
    pub kafka_cluster_id: String,
    pub auth: Auth,
    /// The worker's log levels (`/admin/loggers`).
    pub loggers: Arc<crate::logging::Loggers>,
    /// The worker's `connector_defaults`, written into a config on create.
    pub connector_defaults: std::collections::BTreeMap<String, String>,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/connectors", get(connectors::list).post(connectors::create))
        .route("/connectors/{name}", get(connectors::info).delete(connectors::delete))
        .route(
            "/connectors/{name}/config",
            get(connectors::get_config).put(connectors::put_config).patch(connectors::patch_config),
        )
        .route("/connectors/{name}/status", get(connectors::status))
        .route("/connectors/{name}/tasks", get(connectors::tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(connectors::task_status))
        .route("/connectors/{name}/tasks/{task}/restart", post(connectors::restart_task))
        .route("/connectors/{name}/restart", post(connectors::restart))
        .route("/connectors/{name}/pause", put(connectors::pause))
        .route("/connectors/{name}/resume", put(connectors::resume))
        .route("/connectors/{name}/stop", put(connectors::stop))
        .route(
            "/connectors/{name}/offsets",
            get(connectors::get_offsets).patch(connectors::patch_offsets).delete(connectors::reset_offsets),
        )
        .route("/connectors/{name}/topics", get(connectors::topics))
        .route("/connectors/{name}/topics/reset", put(connectors::reset_topics))
        .route("/connectors/{name}/dlq/replay", post(dlq_replay::replay))
        .route("/admin/loggers", get(loggers::list))
        .route("/admin/loggers/{logger}", get(loggers::get).put(loggers::put))
        .route("/connector-plugins", get(plugins::list))
        .route("/connector-plugins/{class}/config", get(plugins::config))
        .route("/connector-plugins/{class}/config/validate", put(plugins::validate))
        .fallback(|| async { ApiError::not_found("HTTP 404 Not Found") })
        .layer(middleware::from_fn(require_json))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// A request body must be JSON: Kafka Connect's resources consume only
/// `application/json` (Jersey answers any other type with 415).
async fn require_json(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if has_body && !json {
        return ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "HTTP 415 Unsupported Media Type").into_response();
    }
    next.run(request).await
}

/// Every error answers with Kafka Connect's `{error_code, message}` body
/// (`ConnectExceptionMapper`), axum's own too (an unknown method: 405, a
/// path parameter that does not parse: 400): those come as plain text or
/// empty and are rewritten here, keeping their status and headers (`Allow`).
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

async fn count_requests(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    tracing::debug!(%method, %path, status = response.status().as_u16(), "REST request");
    state.worker.metrics.rest_requests.with_label_values(&[&method, &route, response.status().as_str()]).inc();
    response
}

/// Checks credentials when configured; `/health` and `/ready` stay open for
/// load balancers (they reveal nothing).
async fn authenticate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let auth = &state.auth;
    if (auth.tokens.is_empty() && auth.basic.is_empty()) || matches!(request.uri().path(), "/health" | "/ready") {
        return next.run(request).await;
    }
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ok = if let Some(token) = presented.strip_prefix("Bearer ") {
        auth.tokens.iter().any(|t| t == token.trim())
    } else if let Some(encoded) = presented.strip_prefix("Basic ") {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .is_some_and(|pair| auth.basic.contains(&pair))
    } else {
        false
    };
    if ok {
        next.run(request).await
    } else {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "Authentication required").into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer, Basic"));
        response
    }
}

async fn root(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("SLUICE_GIT_COMMIT"),
        "kafka_cluster_id": state.kafka_cluster_id,
    }))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "healthy",
        "message": "Worker has completed startup and is ready to handle requests.",
    }))
}

async fn ready(State(state): State<Shared>) -> Response {
    if state.worker.cluster.placement.joined() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Worker has not joined the cluster yet").into_response()
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.worker.metrics.render()).into_response()
}

/// Runs blocking cluster work off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}
