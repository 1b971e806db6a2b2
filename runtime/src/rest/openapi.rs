//! `/openapi.json`: the routes of [`super::router`], described for clients.
//! Keep the table in step with the router (a test compares them).

use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary, success status)
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/", "Worker version and Kafka cluster id", "200"),
    ("get", "/health", "Liveness (open even when authentication is on)", "200"),
    ("get", "/ready", "Readiness: joined the cluster", "200"),
    ("get", "/metrics", "Prometheus metrics", "200"),
    ("get", "/openapi.json", "This document", "200"),
    ("get", "/connectors", "Connector names; ?expand=status|info", "200"),
    ("post", "/connectors", "Create a connector {name, config, initial_state}", "201"),
    ("get", "/connectors/{name}", "Connector info", "200"),
    ("delete", "/connectors/{name}", "Delete a connector", "204"),
    ("get", "/connectors/{name}/config", "Connector config (passwords hidden)", "200"),
    ("put", "/connectors/{name}/config", "Create (201 + Location) or replace (200) a connector's config", "200"),
    ("patch", "/connectors/{name}/config", "Merge into a connector's config (null removes)", "200"),
    ("get", "/connectors/{name}/status", "Connector and task states", "200"),
    ("get", "/connectors/{name}/tasks", "Task configs", "200"),
    ("get", "/connectors/{name}/tasks/{task}/status", "One task's state", "200"),
    ("post", "/connectors/{name}/tasks/{task}/restart", "Restart one task", "204"),
    (
        "post",
        "/connectors/{name}/restart",
        "Restart; ?includeTasks=&onlyFailed= (202 with the status unless neither is given)",
        "204",
    ),
    ("put", "/connectors/{name}/pause", "Pause", "202"),
    ("put", "/connectors/{name}/resume", "Resume", "202"),
    ("put", "/connectors/{name}/stop", "Stop (frees task resources)", "204"),
    ("get", "/connectors/{name}/offsets", "Committed offsets (KIP-875 shapes)", "200"),
    ("patch", "/connectors/{name}/offsets", "Alter offsets (connector STOPPED, its tasks gone; offset null resets one partition)", "200"),
    ("delete", "/connectors/{name}/offsets", "Reset offsets (connector must be STOPPED)", "200"),
    (
        "get",
        "/connectors/{name}/topics",
        "Active topics: consumed (sinks) or produced to (sources) since creation or reset",
        "200",
    ),
    ("put", "/connectors/{name}/topics/reset", "Forget the active topics", "202"),
    (
        "post",
        "/connectors/{name}/dlq/replay",
        "Re-produce DLQ records to their original topic {stage, exception_class, max_records}; each once",
        "200",
    ),
    ("get", "/admin/loggers", "Every logger with a level of its own (root: the default) and when it was set", "200"),
    ("get", "/admin/loggers/{logger}", "A logger's level (a module path; its own or inherited)", "200"),
    (
        "put",
        "/admin/loggers/{logger}",
        "Set a logger's level {level} and those below it; ?scope=worker (200, the loggers set) or cluster (204; applied on this worker)",
        "200",
    ),
    ("get", "/connector-plugins", "Installed connector classes", "200"),
    ("get", "/connector-plugins/{class}/config", "A class's config definition", "200"),
    ("put", "/connector-plugins/{class}/config/validate", "Validate a config", "200"),
];

pub async fn document() -> Json<Value> {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, code) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = json!({
            "summary": summary,
            "parameters": parameters,
            "responses": {
                *code: {"description": "success"},
                "400": {"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }
        });
    }
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "Sluice worker REST API (Kafka Connect compatible)", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}},
        }}},
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ROUTES;

    /// Every path `router` routes is documented, and nothing else (read from
    /// the router's source: axum does not list its routes).
    #[test]
    fn the_document_lists_the_routers_paths() {
        let source = include_str!("mod.rs");
        let routed: BTreeSet<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        let documented: BTreeSet<&str> = ROUTES.iter().map(|(_, path, _, _)| *path).collect();
        assert_eq!(routed, documented);
    }
}
