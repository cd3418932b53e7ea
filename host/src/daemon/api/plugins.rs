//! Plugins: upload a component (validated, compiled, cached, checked against the tenant's grants)
//! as the tenant's new current version, and list the current versions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Caller, Params};
use crate::engine::time;
use crate::plugin::{PluginId, PluginSettings, Upload, valid_name};

/// Uploads a component as the new current version of a plugin (administrators). It is validated against the WIT contract and the tenant's grants, compiled and kept.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}",
    operation_id = "uploadPlugin",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin name")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "`{name, sha256, capabilities, imports, pinned}`", body = serde_json::Value),
        (status = 409, description = "The tenant's file pins another version (`details.pinned`, `details.uploaded`)", body = ErrorBody),
        (status = 400, description = "An empty body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 413, description = "The body is over the limit (`details.limit`)", body = ErrorBody),
        (status = 422, description = "Not a valid component, or imports what the tenant was not granted", body = ErrorBody),
        (status = 429, description = "The tenant is over its commands per second (`Retry-After`)", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
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
    if !valid_name(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("plugin name `{name}` must be 1 to 64 letters, digits, `-` or `_`"),
        )
        .with(json!({"field": "name"})));
    }
    // Settings come from the tenant's configuration for this plugin name, if it has any.
    let snapshot = s.tenants.snapshot();
    let configured_plugin = snapshot
        .configs
        .get(caller.tenant())
        .and_then(|t| t.plugins.get(&name));
    let settings = configured_plugin
        .map(|p| p.settings())
        .unwrap_or_else(PluginSettings::default);
    // A version pinned in the tenant's file is what runs: an upload of another is refused, so
    // that the file keeps saying the truth.
    let pin = configured_plugin.and_then(|p| p.sha256.clone());
    if let Some(pin) = &pin {
        let uploaded = hex::encode(sha2::Sha256::digest(&wasm));
        if !pin.trim().eq_ignore_ascii_case(&uploaded) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "tenant `{}` pins plugin `{name}` to version {pin} (`sha256` under [plugins.{name}] in its file); this upload is version {uploaded}: change or remove the pin to run it",
                    caller.tenant()
                ),
            )
            .with(json!({"pinned": pin, "uploaded": uploaded})));
        }
    }
    // The configured file's version at upload time: when the file changes, it wins again.
    let configured = snapshot
        .applied
        .get(caller.tenant())
        .and_then(|a| a.get(&name))
        .map(|(sha, _)| sha.clone())
        .filter(|sha| !sha.is_empty());
    let registry = s.flowgate.plugins().clone();
    let id = PluginId::new(caller.tenant(), name);
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = registry.install(id.clone(), &wasm, settings)?;
        if let Some(artifacts) = registry.artifacts() {
            let upload = Upload {
                sha256: loaded.sha256().to_string(),
                configured,
            };
            artifacts.set_upload(&id, &upload).map_err(ApiError::from)?;
        }
        Ok::<_, ApiError>(loaded)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let body = json!({"name": loaded.id().name, "sha256": loaded.sha256(), "capabilities": loaded.capabilities(), "imports": loaded.imports(), "pinned": pin.is_some()});
    Ok((StatusCode::CREATED, Json(body)))
}

/// Every version of a plugin kept for the tenant (uploads, configured files, older versions
/// instances may be pinned to), oldest first, with the current one marked.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{name}/versions",
    operation_id = "listPluginVersions",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin name")),
    responses(
        (status = 200, description = "`[{sha256, kept_at, current}]`", body = serde_json::Value),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("plugin `{name}` not found"),
        )
    };
    if !valid_name(&name) {
        return Err(not_found());
    }
    let registry = s.flowgate.plugins();
    let id = PluginId::new(caller.tenant(), name.clone());
    let current = registry.current(&id).ok_or_else(not_found)?;
    let kept = match registry.artifacts() {
        Some(artifacts) => artifacts.versions(&id)?,
        None => Vec::new(),
    };
    let rows: Vec<Value> = kept
        .iter()
        .map(|(sha, at)| json!({"sha256": sha, "kept_at": time::format(*at).to_string(), "current": sha == current.sha256()}))
        .collect();
    Ok(Json(json!(rows)))
}

/// The tenant's plugins with their current versions.
#[utoipa::path(
    get,
    path = "/api/v1/plugins",
    operation_id = "listPlugins",
    tag = "plugins",
    responses(
        (status = 200, description = "`[{name, sha256, capabilities}]`", body = serde_json::Value),
        (status = 401, description = "No valid token", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
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

/// The plugin's recorded decisions, newest first (administrators): each router or approval-policy call with its exact input (the request and the instance data the plugin saw) and what it decided. The newest `[recording] plugin_calls` per plugin are kept (default 1,000).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{name}/calls",
    operation_id = "listPluginCalls",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 50)")
    ),
    responses(
        (status = 200, description = "`[{seq, at, sha256, instance, workflow, workflow_version, step, request, data, decision, fuel, replayable}]`", body = serde_json::Value),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 400, description = "A query parameter unknown or out of range (`details.field`)", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn calls(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    caller.admin("read recorded plugin calls")?;
    params.only(&["limit"])?;
    let limit = params.limit(50, 1000)?;
    known_plugin(&s, caller.tenant(), &name)?;
    let records = s.flowgate.call_records(caller.tenant(), &name, limit)?;
    Ok(Json(json!(records)))
}

/// Runs a candidate version on recorded decisions without making it current (administrators): the body is the candidate component; each recorded call (the newest `last`, or those of one `workflow`, or since a time) runs again through it in the sandbox, in the tenant's share of the plugin pool, and the answer lists the calls on which it decides otherwise, side by side with the recorded decision, plus its failures and fuel. Calls of a version granted clocks, random numbers, files or the network are counted as not replayable. Make it current afterwards with `POST /api/v1/plugins/{name}`.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}/replay",
    operation_id = "replayPlugin",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("last" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "The newest this many recorded calls (default 100)"),
        ("workflow" = Option<String>, Query, description = "Only calls from this workflow"),
        ("since" = Option<String>, Query, format = DateTime, description = "Only calls made at or after this RFC 3339 date-time")
    ),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The candidate component's bytes"),
    responses(
        (status = 200, description = "`{plugin, candidate, current, replayed, same, differ: [{instance, workflow, step, at, recorded_by, recorded, candidate}], errors: [{..., error}], not_replayable, fuel: {candidate_total, candidate_max, recorded_total}}`", body = serde_json::Value),
        (status = 400, description = "An empty body, or a query parameter unknown or out of range (`details.field`)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody),
        (status = 413, description = "The body is over the limit (`details.limit`)", body = ErrorBody),
        (status = 422, description = "Not a valid component, or imports what the tenant was not granted", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn replay(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
    wasm: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.admin("replay plugin versions")?;
    params.only(&["last", "workflow", "since"])?;
    let last = match params.number("last", "a count of recorded calls")? {
        None => None,
        Some(n) if (1..=crate::service::MAX_REPLAY as u64).contains(&n) => Some(n as usize),
        Some(n) => {
            return Err(Params::invalid(
                "last",
                format!(
                    "query `last` must be 1 to {}, not {n}",
                    crate::service::MAX_REPLAY
                ),
            ));
        }
    };
    let scope = crate::service::ReplayScope {
        last,
        workflow: params.text("workflow"),
        since: params.instant("since")?,
    };
    if wasm.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin",
            "the body must be the candidate component's bytes",
        ));
    }
    let current = known_plugin(&s, caller.tenant(), &name)?;
    // The candidate runs with the settings the current version runs with.
    let registry = s.flowgate.plugins().clone();
    let id = PluginId::new(caller.tenant(), name.clone());
    let settings = current.settings();
    let candidate = tokio::task::spawn_blocking(move || {
        registry
            .runtime()
            .load(id, &wasm, settings)
            .map(std::sync::Arc::new)
            .map_err(ApiError::from)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let report = s
        .flowgate
        .replay(caller.tenant(), &name, candidate, &scope)
        .await?;
    Ok(Json(json!(report)))
}

/// The plugin's current version, or 404.
fn known_plugin(
    s: &AppState,
    tenant: &str,
    name: &str,
) -> Result<std::sync::Arc<crate::plugin::LoadedPlugin>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("plugin `{name}` not found"),
        )
    };
    if !valid_name(name) {
        return Err(not_found());
    }
    s.flowgate
        .plugins()
        .current(&PluginId::new(tenant, name))
        .ok_or_else(not_found)
}
