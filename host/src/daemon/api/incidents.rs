//! Incidents: the steps stopped until a person acts, listed across instances, and resolved by
//! retrying the step or skipping it (administrators). Each resolution is in the history with who
//! and why; cancelling the instance is `POST /api/v1/instances/{id}/cancel`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::schema::InstanceDoc;
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller, Params};
use crate::engine::time;
use crate::engine::{Instance, Resolution, Wait};

/// The running instances' incidents, oldest instance first.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    operation_id = "listIncidents",
    tag = "incidents",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many instances (default 100)")),
    responses(
        (status = 200, description = "Every open incident, one per failed step", body = Vec<IncidentRow>),
        (status = 400, description = "A bad query", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Vec<IncidentRow>>, ApiError> {
    params.only(&["limit"])?;
    let limit = params.limit(100, 1000)?;
    let rows = s
        .flowgate
        .incidents(caller.tenant(), limit)?
        .iter()
        .flat_map(rows_of)
        .collect();
    Ok(Json(rows))
}

/// A step that failed and waits for a person to resolve it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentRow {
    instance: String,
    workflow: String,
    version: u32,
    /// The token to name in a retry or skip.
    token: u64,
    step: String,
    error: String,
    /// What failed: `plugin`, `definition`, ...
    source: String,
    plugin: Option<String>,
    sha256: Option<String>,
    attempts: u32,
    #[schema(format = DateTime)]
    raised_at: String,
    /// The failure's kind (`fuel-exhausted`, `trap`, `permanent`, ...).
    kind: Option<&'static str>,
    /// `guest` or `host`.
    blame: Option<&'static str>,
}

fn rows_of(instance: &Instance) -> Vec<IncidentRow> {
    instance
        .tokens
        .values()
        .filter_map(|t| match &t.wait {
            Wait::Incident(i) => Some(IncidentRow {
                instance: instance.id.clone(),
                workflow: instance.definition_id.clone(),
                version: instance.definition_version,
                token: t.id,
                step: t.step.clone(),
                error: i.error.clone(),
                source: i.source.clone(),
                plugin: i.plugin.clone(),
                sha256: i.sha256.clone(),
                attempts: i.attempts,
                raised_at: time::format(i.raised_at).to_string(),
                kind: i.kind.map(|k| k.as_str()),
                blame: i.blame.map(|b| b.as_str()),
            }),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "The supplier's service is back", "current": true})))]
pub struct Retry {
    /// Why, for the history.
    #[schema(min_length = 1)]
    reason: String,
    /// Retry on the plugin's current version (a fixed one) rather than the one the instance is
    /// pinned to, pinning it to the current one from then on.
    #[serde(default)]
    current: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "Ordered by phone instead", "data": {"po_number": "PO-7731"}})))]
pub struct Skip {
    /// Why, for the history.
    #[schema(min_length = 1)]
    reason: String,
    /// The outcome the step is left with: `approve` or `reject` for an approval, a candidate
    /// step for a route; none for an action.
    outcome: Option<String>,
    /// Data the step would have given (an action's output), merged into the instance's.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
}

/// Runs the failed step's plugin call again (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/incidents/{token}/retry",
    operation_id = "retryIncident",
    tag = "incidents",
    params(("id" = String, Path, description = "The instance id"), ("token" = u64, Path, description = "The incident's token, as the list gives it")),
    request_body = Retry,
    responses(
        (status = 200, description = "The instance", body = InstanceDoc),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "No incident there (resolved already)", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, token)): Path<(String, String)>,
    Body(body): Body<Retry>,
) -> Result<Json<Instance>, ApiError> {
    let resolution = Resolution::Retry {
        plugin_version: None,
    };
    match body.current {
        false => resolve(s, caller, id, token, resolution, body.reason).await,
        true => {
            caller.admin("resolve incidents")?;
            let token = incident_token(&token)?;
            ApiError::require_reason(&body.reason, "in the history")?;
            let instance = s
                .flowgate
                .retry_on_current(caller.tenant(), &id, token, &caller.0.token, body.reason)
                .await?;
            Ok(Json(instance))
        }
    }
}

/// Leaves the failed step as if it had produced `outcome` (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/incidents/{token}/skip",
    operation_id = "skipIncident",
    tag = "incidents",
    params(("id" = String, Path, description = "The instance id"), ("token" = u64, Path, description = "The incident's token, as the list gives it")),
    request_body = Skip,
    responses(
        (status = 200, description = "The instance", body = InstanceDoc),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "No incident there (resolved already)", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn skip(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, token)): Path<(String, String)>,
    Body(body): Body<Skip>,
) -> Result<Json<Instance>, ApiError> {
    let resolution = Resolution::Skip {
        outcome: body.outcome,
        data: body.data,
    };
    resolve(s, caller, id, token, resolution, body.reason).await
}

async fn resolve(
    s: AppState,
    caller: Caller,
    id: String,
    token: String,
    resolution: Resolution,
    reason: String,
) -> Result<Json<Instance>, ApiError> {
    caller.admin("resolve incidents")?;
    let token = incident_token(&token)?;
    ApiError::require_reason(&reason, "in the history")?;
    let instance = s
        .flowgate
        .resolve_incident(
            caller.tenant(),
            &id,
            token,
            &caller.0.token,
            resolution,
            reason,
        )
        .await?;
    Ok(Json(instance))
}

/// The incident's token from its path, a number.
fn incident_token(token: &str) -> Result<u64, ApiError> {
    token.parse().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid",
            format!("token `{token}` must be the incident's token number, as GET /api/v1/incidents lists it"),
        )
        .with(json!({"field": "token"}))
    })
}
