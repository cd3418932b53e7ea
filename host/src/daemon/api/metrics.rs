//! Workflow metrics over a time range: cycle time per outcome; per step, task completion time,
//! handoff delay, error rate; automation share. Percentiles, not only averages.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::schema::WorkflowMetricsDoc;
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Caller, Params};

const THIRTY_DAYS_MS: u64 = 30 * 24 * 3600 * 1000;

/// Workflow metrics over `[from, to)`: cycle time by outcome; per step task completion time, handoff delay and error rate; automation share; with percentiles.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/{workflow}",
    operation_id = "getWorkflowMetrics",
    tag = "metrics",
    params(
        ("workflow" = String, Path, description = "The workflow id"),
        ("from" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset (default: 30 days before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset (default: now)")
    ),
    responses(
        (status = 200, description = "The metrics", body = WorkflowMetricsDoc),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn workflow(
    State(s): State<AppState>,
    caller: Caller,
    Path(workflow): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = range(&params, s.flowgate.clock().now())?;
    let flowgate = s.flowgate.clone();
    let tenant = caller.tenant().to_string();
    let metrics =
        tokio::task::spawn_blocking(move || flowgate.metrics(&tenant, &workflow, from, to))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    Ok(Json(json!(metrics)))
}

/// The `[from, to)` a metrics request asks for: `to` defaults to now, `from` to 30 days before.
pub(crate) fn range(params: &Params, now: u64) -> Result<(u64, u64), ApiError> {
    let time = |key: &str| params.instant(key);
    let to = time("to")?.unwrap_or_else(|| now.saturating_add(1));
    let from = time("from")?.unwrap_or(to.saturating_sub(THIRTY_DAYS_MS));
    if from >= to {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "`from` must be before `to`",
        )
        .with(json!({"field": "from"})));
    }
    Ok((from, to))
}
