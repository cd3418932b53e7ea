//! Plugins: upload a component (validated, compiled, cached, checked against the tenant's grants)
//! as the tenant's new current version, and list the current versions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::daemon::AppState;
use crate::daemon::error::ApiError;
use crate::daemon::extract::Caller;
use crate::plugin::{PluginId, PluginSettings};

pub async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    wasm: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin("upload plugins")?;
    if wasm.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin",
            "the body must be the component's bytes",
        ));
    }
    // Settings come from the tenant's configuration for this plugin name, if it has any.
    let settings = s
        .tenants
        .get(caller.tenant())
        .and_then(|t| t.plugins.get(&name))
        .map(|p| p.settings())
        .unwrap_or_else(PluginSettings::default);
    let registry = s.flowgate.plugins().clone();
    let id = PluginId::new(caller.tenant(), name);
    let loaded = tokio::task::spawn_blocking(move || registry.install(id, &wasm, settings))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let body = json!({"name": loaded.id().name, "sha256": loaded.sha256(), "capabilities": loaded.capabilities(), "imports": loaded.imports()});
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows: Vec<Value> = s
        .flowgate
        .plugins()
        .list(caller.tenant())
        .iter()
        .map(|p| json!({"name": p.id().name, "sha256": p.sha256(), "capabilities": p.capabilities()}))
        .collect();
    Ok(Json(json!(rows)))
}
