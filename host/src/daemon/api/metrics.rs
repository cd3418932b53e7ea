//! Workflow metrics over a time range: cycle time per outcome; per step, task completion time,
//! handoff delay, error rate; automation share. Percentiles, not only averages.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::daemon::AppState;
use crate::daemon::error::ApiError;
use crate::daemon::extract::Caller;

const THIRTY_DAYS_MS: u64 = 30 * 24 * 3600 * 1000;

pub async fn workflow(
    State(s): State<AppState>,
    caller: Caller,
    Path(workflow): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let time = |key: &str| -> Result<Option<u64>, ApiError> {
        q.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!("query `{key}` (milliseconds since the epoch): {e}"),
                    )
                    .with(json!({"field": key}))
                })
            })
            .transpose()
    };
    let to = time("to")?.unwrap_or_else(|| s.flowgate.clock().now().saturating_add(1));
    let from = time("from")?.unwrap_or(to.saturating_sub(THIRTY_DAYS_MS));
    if from >= to {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "`from` must be before `to`",
        )
        .with(json!({"field": "from"})));
    }
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
