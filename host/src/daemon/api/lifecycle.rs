//! Pausing, resuming and migrating instances (administrators): one instance, or every running
//! instance of a definition version.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use super::schema::InstanceDoc;
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller};
use crate::engine::Instance;
use crate::service::{Bulk, MigrationReport, MigrationRequest, VersionWide};

/// Why, for the history.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "Waiting for the new budget year"})))]
pub struct Why {
    #[schema(min_length = 1)]
    reason: String,
}

/// Pauses an instance: timers that come due, messages, plugin answers and sub-workflow ends are held, and people's commands are refused (409 naming who paused it and why), until it is resumed.
#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/pause",
    operation_id = "pauseInstance",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id")),
    request_body = Why,
    responses(
        (status = 200, description = "The instance, with `paused`", body = InstanceDoc),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Paused already, or ended", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pause_instance(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Why>,
) -> Result<Json<Instance>, ApiError> {
    caller.admin("pause instances")?;
    ApiError::require_reason(&body.reason, "in the history")?;
    let instance = s
        .flowgate
        .pause(caller.tenant(), &id, &caller.0.token, body.reason)
        .await?;
    Ok(Json(instance))
}

/// Resumes a paused instance: what was held is applied now, in the order it arrived, and timers that came due meanwhile fire.
#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/resume",
    operation_id = "resumeInstance",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id")),
    request_body = Why,
    responses(
        (status = 200, description = "The instance, moved on by what was held", body = InstanceDoc),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Not paused, or ended", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume_instance(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Why>,
) -> Result<Json<Instance>, ApiError> {
    caller.admin("resume instances")?;
    ApiError::require_reason(&body.reason, "in the history")?;
    let instance = s
        .flowgate
        .resume(caller.tenant(), &id, &caller.0.token, Some(body.reason))
        .await?;
    Ok(Json(instance))
}

/// Why, and where to go on from in a version with more running instances than one request takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "The approval policy is being fixed"})))]
pub struct AllOfVersion {
    #[schema(min_length = 1)]
    reason: String,
    /// The `next` of the previous answer.
    after: Option<String>,
}

/// Pauses every running instance of a definition version, each in its own command (at most 10,000 a request; `next` says where to go on).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{id}/versions/{version}/pause",
    operation_id = "pauseVersion",
    tag = "definitions",
    params(("id" = String, Path, description = "The workflow id"), ("version" = u32, Path, description = "The version")),
    request_body = AllOfVersion,
    responses(
        (status = 200, description = "The instances it changed and those it skipped, and why", body = Bulk),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such workflow version in the caller's tenant", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pause_version(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, u32)>,
    Body(body): Body<AllOfVersion>,
) -> Result<Json<Bulk>, ApiError> {
    version_wide(s, caller, id, version, true, body).await
}

/// Resumes every paused instance of a definition version (at most 10,000 a request; `next` says where to go on).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{id}/versions/{version}/resume",
    operation_id = "resumeVersion",
    tag = "definitions",
    params(("id" = String, Path, description = "The workflow id"), ("version" = u32, Path, description = "The version")),
    request_body = AllOfVersion,
    responses(
        (status = 200, description = "The instances it changed and those it skipped, and why", body = Bulk),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such workflow version in the caller's tenant", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume_version(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, u32)>,
    Body(body): Body<AllOfVersion>,
) -> Result<Json<Bulk>, ApiError> {
    version_wide(s, caller, id, version, false, body).await
}

async fn version_wide(
    s: AppState,
    caller: Caller,
    id: String,
    version: u32,
    pause: bool,
    body: AllOfVersion,
) -> Result<Json<Bulk>, ApiError> {
    caller.admin("pause or resume instances")?;
    ApiError::require_reason(&body.reason, "in each instance's history")?;
    let which = VersionWide {
        definition: id,
        version,
        by: caller.0.token.clone(),
        reason: body.reason,
        after: body.after,
    };
    let bulk = s
        .flowgate
        .pause_version(caller.tenant(), &which, pause)
        .await?;
    Ok(Json(bulk))
}

/// A migration of running instances to another version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"from_version": 1, "to_version": 2, "steps": {"review": "legal-review"}, "dry_run": true, "reason": "Legal review replaces the general review"})))]
pub struct Migrate {
    from_version: u32,
    to_version: u32,
    /// Step of `from_version` → step of `to_version`, for steps that do not keep their id.
    #[serde(default)]
    steps: BTreeMap<String, String>,
    /// Plugin name → the sha256 of a loaded version to pin instead of the instance's own.
    #[serde(default)]
    plugins: BTreeMap<String, String>,
    /// Only these instances (otherwise every running instance of `from_version`).
    instances: Option<Vec<String>>,
    /// Report per instance whether it can move and why not, and change nothing.
    #[serde(default)]
    dry_run: bool,
    /// The `next` of the previous answer.
    after: Option<String>,
    #[schema(min_length = 1)]
    reason: String,
}

/// Migrates running instances to another version of their workflow: a dry run lists, per instance, whether it can move and why not (one line per step); otherwise each instance that can moves atomically, recorded in its history, its plugin pins kept unless `plugins` says otherwise (a plugin the new version adds is pinned at its current version).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{id}/migrations",
    operation_id = "migrateInstances",
    tag = "definitions",
    params(("id" = String, Path, description = "The workflow id")),
    request_body = Migrate,
    responses(
        (status = 200, description = "Per instance: whether it can move and why not, and whether it moved", body = MigrationReport),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such workflow version or instance in the caller's tenant", body = ErrorBody),
        (status = 422, description = "A step or plugin version that does not exist (`details.field`), or no reason", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn migrate(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Migrate>,
) -> Result<Json<MigrationReport>, ApiError> {
    caller.admin("migrate instances")?;
    ApiError::require_reason(&body.reason, "in each instance's history")?;
    let request = MigrationRequest {
        definition: id,
        from_version: body.from_version,
        to_version: body.to_version,
        steps: body.steps,
        plugins: body.plugins,
        instances: body.instances,
        dry_run: body.dry_run,
        after: body.after,
        by: caller.0.token.clone(),
        reason: body.reason,
    };
    let report = s.flowgate.migrate(caller.tenant(), request).await?;
    Ok(Json(report))
}
