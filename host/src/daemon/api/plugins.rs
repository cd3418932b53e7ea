//! Plugins: upload a component (validated, compiled, cached, checked against the tenant's grants)
//! as the tenant's new current version, and list the current versions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use sha2::Digest;
use utoipa::ToSchema;

use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Caller, Params};
use crate::engine::time;
use std::sync::Arc;

use crate::plugin::{Candidate, PluginId, Upload, valid_name};
use crate::service::{ReplayReport, ShadowReport};
use crate::store::CallRecord;

/// Uploads a component as the new current version of a plugin (administrators). It is validated against the WIT contract and the tenant's grants, compiled and kept.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}",
    operation_id = "uploadPlugin",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin name")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "The version now current", body = Current),
        (status = 409, description = "The tenant's file pins another version (`details.pinned`, `details.uploaded`)", body = ErrorBody),
        (status = 400, description = "An empty body", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 422, description = "Not a valid component, or imports what the tenant was not granted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    wasm: Bytes,
) -> Result<(StatusCode, Json<Current>), ApiError> {
    caller.admin("upload plugins")?;
    component_body(&wasm)?;
    if !valid_name(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("plugin name `{name}` must be 1 to 64 letters, digits, `-` or `_`"),
        )
        .with(json!({"field": "name"})));
    }
    let body = make_current(&s, &caller, name, wasm).await?;
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
        (status = 200, description = "The versions kept, oldest first", body = Vec<VersionRow>),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<VersionRow>>, ApiError> {
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let kept = match s.flowgate.plugins().artifacts() {
        Some(artifacts) => artifacts.versions(current.id())?,
        None => Vec::new(),
    };
    let rows = kept
        .iter()
        .map(|(sha, at)| VersionRow {
            sha256: sha.clone(),
            kept_at: time::format(*at).to_string(),
            current: sha == current.sha256(),
        })
        .collect();
    Ok(Json(rows))
}

/// A plugin version kept for the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionRow {
    sha256: String,
    #[schema(format = DateTime)]
    kept_at: String,
    /// Whether new instances use it.
    current: bool,
}

/// A plugin and its current version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginRow {
    name: String,
    sha256: String,
    /// `router`, `approval-policy`, `step-action`.
    #[schema(value_type = Vec<String>)]
    capabilities: Vec<crate::plugin::Capability>,
}

/// The version a plugin runs now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Current {
    name: String,
    sha256: String,
    /// `router`, `approval-policy`, `step-action`.
    #[schema(value_type = Vec<String>)]
    capabilities: Vec<crate::plugin::Capability>,
    /// The interfaces it imports.
    imports: Vec<String>,
    /// Whether the tenant's file pins a version.
    pinned: bool,
}

/// The tenant's plugins with their current versions.
#[utoipa::path(
    get,
    path = "/api/v1/plugins",
    operation_id = "listPlugins",
    tag = "plugins",
    responses(
        (status = 200, description = "The plugins", body = Vec<PluginRow>, links(
            ("listPluginVersions" = (operation_id = "listPluginVersions", parameters(("name" = "$response.body#/0/name")))),
            ("listPluginCalls" = (operation_id = "listPluginCalls", parameters(("name" = "$response.body#/0/name")))),
            ("listPluginCandidates" = (operation_id = "listPluginCandidates", parameters(("name" = "$response.body#/0/name"))))
        )),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PluginRow>>, ApiError> {
    let rows = s
        .flowgate
        .plugins()
        .list(caller.tenant())
        .iter()
        .map(|p| PluginRow {
            name: p.id().name.clone(),
            sha256: p.sha256().to_string(),
            capabilities: p.capabilities(),
        })
        .collect();
    Ok(Json(rows))
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
        (status = 200, description = "The recorded calls, newest first", body = Vec<CallRecord>),
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
) -> Result<Json<Vec<CallRecord>>, ApiError> {
    caller.admin("read recorded plugin calls")?;
    params.only(&["limit"])?;
    let limit = params.limit(50, 1000)?;
    known_plugin(&s, caller.tenant(), &name)?;
    let records = s.flowgate.call_records(caller.tenant(), &name, limit)?;
    Ok(Json(records))
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
        (status = 200, description = "The calls replayed, those decided otherwise side by side, the failures and the fuel", body = ReplayReport),
        (status = 400, description = "An empty body, or a query parameter unknown or out of range (`details.field`)", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody),
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
) -> Result<Json<ReplayReport>, ApiError> {
    caller.admin("replay plugin versions")?;
    let scope = replay_scope(&params)?;
    component_body(&wasm)?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let candidate = load_beside(&s, &current, wasm.to_vec()).await?;
    let report = s
        .flowgate
        .replay(caller.tenant(), &name, candidate, &scope)
        .await?;
    Ok(Json(report))
}

/// Which recorded calls a replay runs, from `last`, `workflow` and `since`.
fn replay_scope(params: &Params) -> Result<crate::service::ReplayScope, ApiError> {
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
    Ok(crate::service::ReplayScope {
        last,
        workflow: params.text("workflow"),
        since: params.instant("since")?,
    })
}

/// Loads `wasm` as a version of `current`'s plugin with its settings, without making it current.
async fn load_beside(
    s: &AppState,
    current: &crate::plugin::LoadedPlugin,
    wasm: Vec<u8>,
) -> Result<Arc<crate::plugin::LoadedPlugin>, ApiError> {
    let registry = s.flowgate.plugins().clone();
    let id = current.id().clone();
    let settings = current.settings();
    tokio::task::spawn_blocking(move || {
        registry
            .runtime()
            .load(id, &wasm, settings)
            .map(Arc::new)
            .map_err(ApiError::from)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// Uploads a candidate version of a plugin (administrators): validated and kept, not made current. Replay it on recorded decisions (`.../candidates/{sha256}/replay`), run it beside the current version on live decisions (`?shadow=true`: its decisions compared, never applied; the tally in `GET .../candidates`), then promote or discard it.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}/candidates",
    operation_id = "uploadPluginCandidate",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("shadow" = Option<bool>, Query, description = "Run it beside the current version on live decisions (default false)")
    ),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The candidate component's bytes"),
    responses(
        (status = 201, description = "The candidate kept", body = CandidateKept),
        (status = 400, description = "An empty body, or a query parameter unknown or malformed (`details.field`)", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody),
        (status = 422, description = "Not a valid component, or imports what the tenant was not granted", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn upload_candidate(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
    wasm: Bytes,
) -> Result<(StatusCode, Json<CandidateKept>), ApiError> {
    caller.admin("upload plugin candidates")?;
    params.only(&["shadow"])?;
    let shadow = params.flag("shadow", false)?;
    component_body(&wasm)?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let bytes = wasm.to_vec();
    let candidate = load_beside(&s, &current, bytes.clone()).await?;
    let sha = candidate.sha256().to_string();
    let Some(artifacts) = s.flowgate.plugins().artifacts() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this daemon keeps no plugin artifacts, so it cannot keep candidates",
        ));
    };
    let id = current.id().clone();
    artifacts.keep(&id, &sha, &bytes)?;
    let mut kept = artifacts.candidates(&id)?;
    kept.retain(|c| c.sha256 != sha);
    kept.push(Candidate {
        sha256: sha.clone(),
        uploaded_at: s.flowgate.clock().now(),
        shadow,
    });
    artifacts.set_candidates(&id, &kept)?;
    if shadow {
        s.flowgate
            .set_shadow(caller.tenant(), &name, Some(candidate.clone()));
    }
    tracing::info!(tenant = %caller.tenant(), plugin = %name, candidate = %sha, shadow, "plugin.candidate uploaded");
    let body = CandidateKept {
        capabilities: candidate.capabilities(),
        imports: candidate.imports().to_vec(),
        name,
        sha256: sha,
        shadow,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// A candidate version kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateKept {
    name: String,
    sha256: String,
    /// `router`, `approval-policy`, `step-action`.
    #[schema(value_type = Vec<String>)]
    capabilities: Vec<crate::plugin::Capability>,
    imports: Vec<String>,
    /// Whether it runs beside the current version on live decisions.
    shadow: bool,
}

/// A candidate version and, in shadow mode, what it decided beside the current one.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateRow {
    sha256: String,
    #[schema(format = DateTime)]
    uploaded_at: String,
    shadow: bool,
    /// Since the daemon started; none unless in shadow mode.
    shadow_report: Option<ShadowReport>,
}

/// The plugin's candidates, oldest first, each with what it decided beside the current version if it runs in shadow mode (since the daemon started).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{name}/candidates",
    operation_id = "listPluginCandidates",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin name")),
    responses(
        (status = 200, description = "The candidates, oldest first", body = Vec<CandidateRow>),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "The tenant has no such plugin", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn candidates(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<CandidateRow>>, ApiError> {
    caller.admin("read plugin candidates")?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let kept = match s.flowgate.plugins().artifacts() {
        Some(artifacts) => artifacts.candidates(current.id())?,
        None => Vec::new(),
    };
    let report = s.flowgate.shadow_report(caller.tenant(), &name);
    let rows = kept
        .iter()
        .map(|c| CandidateRow {
            sha256: c.sha256.clone(),
            uploaded_at: time::format(c.uploaded_at).to_string(),
            shadow: c.shadow,
            shadow_report: report
                .as_ref()
                .filter(|r| c.shadow && r.candidate == c.sha256)
                .cloned(),
        })
        .collect();
    Ok(Json(rows))
}

/// Replays a kept candidate on recorded decisions, as `POST /api/v1/plugins/{name}/replay` does with a component in the body.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}/candidates/{sha256}/replay",
    operation_id = "replayPluginCandidate",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("sha256" = String, Path, description = "The candidate's sha256"),
        ("last" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "The newest this many recorded calls (default 100)"),
        ("workflow" = Option<String>, Query, description = "Only calls from this workflow"),
        ("since" = Option<String>, Query, format = DateTime, description = "Only calls made at or after this RFC 3339 date-time")
    ),
    responses(
        (status = 200, description = "As `replayPlugin`", body = ReplayReport),
        (status = 400, description = "A query parameter unknown or out of range (`details.field`)", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such plugin, or no such candidate of it", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn replay_candidate(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sha)): Path<(String, String)>,
    params: Params,
) -> Result<Json<ReplayReport>, ApiError> {
    caller.admin("replay plugin versions")?;
    let scope = replay_scope(&params)?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let bytes = candidate_bytes(&s, &current, &sha)?;
    let candidate = load_beside(&s, &current, bytes).await?;
    let report = s
        .flowgate
        .replay(caller.tenant(), &name, candidate, &scope)
        .await?;
    Ok(Json(report))
}

/// Makes a kept candidate the current version, as an upload would (administrators); it stops being a candidate (and leaves shadow mode).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{name}/candidates/{sha256}/promote",
    operation_id = "promotePluginCandidate",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("sha256" = String, Path, description = "The candidate's sha256")
    ),
    responses(
        (status = 200, description = "The version now current", body = Current),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such plugin, or no such candidate of it", body = ErrorBody),
        (status = 409, description = "The tenant's file pins another version (`details.pinned`)", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn promote_candidate(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sha)): Path<(String, String)>,
) -> Result<Json<Current>, ApiError> {
    caller.admin("promote plugin candidates")?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    let bytes = candidate_bytes(&s, &current, &sha)?;
    let body = make_current(&s, &caller, name.clone(), Bytes::from(bytes)).await?;
    forget_candidate(&s, &current, &sha)?;
    tracing::info!(tenant = %caller.tenant(), plugin = %name, version = %sha, "plugin.candidate promoted");
    Ok(Json(body))
}

/// Discards a candidate (administrators): it is no longer offered, and leaves shadow mode. Its bytes stay kept, as every version's do.
#[utoipa::path(
    delete,
    path = "/api/v1/plugins/{name}/candidates/{sha256}",
    operation_id = "discardPluginCandidate",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin name"),
        ("sha256" = String, Path, description = "The candidate's sha256")
    ),
    responses(
        (status = 204, description = "Discarded"),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such plugin, or no such candidate of it", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn discard_candidate(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sha)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.admin("discard plugin candidates")?;
    let current = known_plugin(&s, caller.tenant(), &name)?;
    candidate_bytes(&s, &current, &sha)?;
    forget_candidate(&s, &current, &sha)?;
    tracing::info!(tenant = %caller.tenant(), plugin = %name, candidate = %sha, "plugin.candidate discarded");
    Ok(StatusCode::NO_CONTENT)
}

/// A kept candidate's bytes, or 404.
fn candidate_bytes(
    s: &AppState,
    current: &crate::plugin::LoadedPlugin,
    sha: &str,
) -> Result<Vec<u8>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("plugin `{}` has no candidate {sha}", current.id().name),
        )
    };
    let artifacts = s.flowgate.plugins().artifacts().ok_or_else(not_found)?;
    if !artifacts
        .candidates(current.id())?
        .iter()
        .any(|c| c.sha256 == sha)
    {
        return Err(not_found());
    }
    artifacts.read(current.id(), sha)?.ok_or_else(not_found)
}

/// Takes a candidate off the list, and out of shadow mode.
fn forget_candidate(
    s: &AppState,
    current: &crate::plugin::LoadedPlugin,
    sha: &str,
) -> Result<(), ApiError> {
    let id = current.id();
    if let Some(artifacts) = s.flowgate.plugins().artifacts() {
        let mut kept = artifacts.candidates(id)?;
        let shadowed = kept.iter().any(|c| c.sha256 == sha && c.shadow);
        kept.retain(|c| c.sha256 != sha);
        artifacts.set_candidates(id, &kept)?;
        if shadowed {
            s.flowgate.set_shadow(&id.tenant, &id.name, None);
        }
    }
    Ok(())
}

/// Puts the tenant's candidates marked for shadow mode beside their plugins' current versions
/// (at start and after a reload, with the current settings). Blocking: it may compile.
pub fn run_shadows(flowgate: &crate::service::Flowgate, tenant: &str) {
    let registry = flowgate.plugins();
    let Some(artifacts) = registry.artifacts() else {
        return;
    };
    for current in registry.list(tenant) {
        let id = current.id();
        let shadow = artifacts
            .candidates(id)
            .unwrap_or_default()
            .into_iter()
            .rfind(|c| c.shadow);
        let Some(shadow) = shadow else {
            flowgate.set_shadow(tenant, &id.name, None);
            continue;
        };
        let loaded = artifacts
            .read(id, &shadow.sha256)
            .ok()
            .flatten()
            .map(|wasm| {
                registry
                    .runtime()
                    .load(id.clone(), &wasm, current.settings())
            });
        match loaded {
            Some(Ok(plugin)) => flowgate.set_shadow(tenant, &id.name, Some(Arc::new(plugin))),
            Some(Err(error)) => {
                tracing::warn!(%tenant, plugin = %id.name, candidate = %shadow.sha256, %error, "plugin.candidate cannot run in shadow mode");
            }
            None => {
                tracing::warn!(%tenant, plugin = %id.name, candidate = %shadow.sha256, "plugin.candidate's bytes are not kept; not in shadow mode");
            }
        }
    }
}

/// Refuses an empty body where a component's bytes are expected.
fn component_body(wasm: &Bytes) -> Result<(), ApiError> {
    if wasm.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_plugin",
            "the body must be the component's bytes",
        ));
    }
    Ok(())
}

/// The plugin's current version, or 404.
fn known_plugin(
    s: &AppState,
    tenant: &str,
    name: &str,
) -> Result<Arc<crate::plugin::LoadedPlugin>, ApiError> {
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

/// Makes `wasm` the current version of plugin `name`, as an upload: refused when the tenant's
/// file pins another version; kept so that it stays current after a restart.
async fn make_current(
    s: &AppState,
    caller: &Caller,
    name: String,
    wasm: Bytes,
) -> Result<Current, ApiError> {
    // Settings come from the tenant's configuration for this plugin name, if it has any.
    let snapshot = s.tenants.snapshot();
    let configured_plugin = snapshot
        .configs
        .get(caller.tenant())
        .and_then(|t| t.plugins.get(&name));
    let settings = configured_plugin.map(|p| p.settings()).unwrap_or_default();
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
    Ok(Current {
        name: loaded.id().name.clone(),
        sha256: loaded.sha256().to_string(),
        capabilities: loaded.capabilities(),
        imports: loaded.imports().to_vec(),
        pinned: pin.is_some(),
    })
}
