//! `/connector-plugins/...` handlers.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    Json,
};
use connector_api::ConfigKeyInfo;
use serde_json::{json, Value};

use super::{blocking, ApiError, ApiResult, Shared};
use crate::{connector_config, plugins::ConnectorClass};

/// `GET /connector-plugins[?connectorsOnly=false]`: every name a connector
/// class answers to (its own and its aliases, such as Confluent's Java class
/// names, which tools look for), and with `connectorsOnly=false` the
/// transforms, predicates and converters, typed as Kafka Connect's
/// `PluginInfo` does.
pub async fn list(State(state): State<Shared>, Query(query): Query<Vec<(String, String)>>) -> Json<Value> {
    let connectors_only = !query.iter().any(|(k, v)| k == "connectorsOnly" && v.eq_ignore_ascii_case("false"));
    let mut plugins: Vec<Value> = state
        .worker
        .registry
        .classes()
        .iter()
        .flat_map(|c| c.names().map(|name| json!({"class": name, "type": c.kind().name(), "version": c.version()})))
        .collect();
    if !connectors_only {
        let version = env!("CARGO_PKG_VERSION");
        let builtin = |names: Vec<String>, kind: &str| -> Vec<Value> {
            names.into_iter().map(|class| json!({"class": class, "type": kind, "version": version})).collect()
        };
        plugins.extend(builtin(crate::transform::transform_classes(), "transformation"));
        plugins.extend(builtin(crate::transform::predicate_classes(), "predicate"));
        let converters = crate::converter::converter_classes().into_iter().map(str::to_string).collect();
        plugins.extend(builtin(converters, "converter"));
    }
    Json(json!(plugins))
}

fn class(state: &Shared, name: &str) -> ApiResult<std::sync::Arc<ConnectorClass>> {
    state.worker.registry.class(name).ok_or_else(|| ApiError::not_found(format!("Unknown plugin {name}")))
}

/// A key as Kafka Connect's `ConfigKeyInfo` shows it; `group` is null for
/// a key in no group.
fn definition(key: &ConfigKeyInfo, order: usize) -> Value {
    json!({
        "name": key.name.as_str(),
        "type": key.type_name.as_str(),
        "required": key.required,
        "default_value": key.default_value.as_ref().map(|d| d.as_str()).into_option(),
        "importance": key.importance.as_str(),
        "documentation": key.documentation.as_str(),
        "group": Some(key.group.as_str()).filter(|g| !g.is_empty()),
        "width": "NONE",
        "display_name": key.name.as_str(),
        "dependents": [],
        "order": order,
        "validator": key.validator.as_str(),
    })
}

/// The validate response's groups: the runtime's, then the connector's in
/// the order their first key comes (as Kafka Connect lists them).
fn groups(keys: &[ConfigKeyInfo]) -> Vec<&str> {
    let mut groups = vec!["Common"];
    for key in keys {
        let group = key.group.as_str();
        if !group.is_empty() && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

pub async fn config(State(state): State<Shared>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let class = class(&state, &name)?;
    Ok(Json(json!(class.config_keys().iter().enumerate().map(|(i, k)| definition(k, i)).collect::<Vec<_>>())))
}

pub async fn validate(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> ApiResult<Json<Value>> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON in the request body: {e}")))?;
    let object = body.as_object().ok_or_else(|| ApiError::bad_request("the config must be a JSON object"))?;
    let config: BTreeMap<String, String> = object
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect();
    let class = class(&state, &name)?;
    blocking(move || {
        // References are resolved first, so typed keys are checked with the
        // values they will have; messages are scrubbed of what they
        // resolved to, and the values shown are the references as written.
        let (resolved, mut issues) = connector_config::resolve(&config);
        let unresolved: Vec<String> = issues.iter().map(|i| i.key.to_string()).collect();
        let entries: Vec<(&str, &str)> = resolved
            .config
            .iter()
            .filter(|(k, _)| !unresolved.contains(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        issues.extend(class.validate(entries).map_err(ApiError::internal)?);
        if let Err(runtime) = connector_config::parse(&resolved.config, class.kind()) {
            issues.extend(runtime.into_iter().filter(|i| !unresolved.contains(&i.key.to_string())));
        }
        issues.extend(connector_config::override_policy_issues(&resolved.config, state.worker.cluster.client_policy));
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for issue in &issues {
            errors.entry(issue.key.to_string()).or_default().push(resolved.scrub(&issue.message.to_string()));
        }
        let shown = connector_config::masked(Some(&class), &config);
        let mut configs: Vec<Value> = class
            .config_keys()
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let name = key.name.as_str();
                json!({
                    "definition": definition(key, i),
                    "value": {
                        "name": name,
                        "value": shown.get(name).cloned().or_else(|| key.default_value.as_ref().map(|d| d.to_string()).into_option()),
                        "recommended_values": key.recommended_values.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                        "errors": errors.remove(name).unwrap_or_default(),
                        "visible": true,
                    }
                })
            })
            .collect();
        // Errors on the runtime's own keys (topics, errors.*, tasks.max, …).
        for (key, messages) in errors {
            configs.push(json!({
                "definition": {"name": key},
                "value": {"name": key, "value": shown.get(&key), "recommended_values": [], "errors": messages, "visible": true},
            }));
        }
        Ok(Json(json!({
            "name": class.name(),
            "error_count": issues.len(),
            "groups": groups(class.config_keys()),
            "configs": configs,
        })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_api::{ConfigDef, ConfigKey, ConfigType};

    #[test]
    fn keys_show_their_group_and_the_validate_response_lists_the_groups() {
        let infos = ConfigDef::new()
            .define(ConfigKey::new("a", ConfigType::String).group("Database"))
            .define(ConfigKey::new("b", ConfigType::String))
            .define(ConfigKey::new("c", ConfigType::Int).group("Connector"))
            .define(ConfigKey::new("d", ConfigType::Int).group("Database"))
            .infos();
        assert_eq!(definition(&infos[0], 0)["group"], "Database");
        assert_eq!(definition(&infos[1], 1)["group"], Value::Null);
        assert_eq!(definition(&infos[2], 2)["group"], "Connector");
        assert_eq!(groups(&infos), ["Common", "Database", "Connector"]);
    }
}
