//! Processes: a process instance (the linked workflow instances of one business case) as one
//! timeline; the tenant's process definitions with how their workflows link; process metrics.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::schema::{ProcessDefinitionDoc, ProcessMetricsDoc, ProcessViewDoc};
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Caller, Params};
use crate::engine::process::ProcessMetrics;
use crate::service::{ProcessDefinitionView, ProcessView};

/// A process instance (its id is the id of the instance that began the case): its instances,
/// every event in time order, end-to-end cycle time, handoffs between workflows, and the steps
/// it waited on longest.
#[utoipa::path(
    get,
    path = "/api/v1/processes/{id}",
    operation_id = "getProcess",
    tag = "instances",
    params(("id" = String, Path, description = "The process id (`process` of any of its instances)")),
    responses(
        (status = 200, description = "The case: its instances, timeline and figures", body = ProcessViewDoc),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProcessView>, ApiError> {
    Ok(Json(s.flowgate.process(caller.tenant(), &id)?))
}

/// The tenant's process definitions (`[processes.<id>]` in its file): the workflows of each,
/// the links their deployed versions make, and what does not fit.
#[utoipa::path(
    get,
    path = "/api/v1/process-definitions",
    operation_id = "listProcessDefinitions",
    tag = "metrics",
    responses(
        (status = 200, description = "The tenant's process definitions", body = Vec<ProcessDefinitionDoc>, links(
            ("getProcessDefinition" = (operation_id = "getProcessDefinition", parameters(("id" = "$response.body#/0/id")))),
            ("getProcessMetrics" = (operation_id = "getProcessMetrics", parameters(("id" = "$response.body#/0/id"))))
        )),
    ),
    security(("bearer" = []))
)]
pub async fn definitions(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProcessDefinitionView>>, ApiError> {
    Ok(Json(s.flowgate.process_definitions(caller.tenant())?))
}

/// One process definition, with its links and problems.
#[utoipa::path(
    get,
    path = "/api/v1/process-definitions/{id}",
    operation_id = "getProcessDefinition",
    tag = "metrics",
    params(("id" = String, Path, description = "The process definition id")),
    responses(
        (status = 200, description = "The process definition", body = ProcessDefinitionDoc),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn definition(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProcessDefinitionView>, ApiError> {
    Ok(Json(s.flowgate.process_definition(caller.tenant(), &id)?))
}

/// Process metrics over `[from, to)`, of the cases that ended in it: end-to-end cycle time
/// (wall-clock and business), handoff delay per link, where the cases wait most, how they
/// ended, and the cost per case when the tenant prices its work; percentiles throughout.
#[utoipa::path(
    get,
    path = "/api/v1/process-definitions/{id}/metrics",
    operation_id = "getProcessMetrics",
    tag = "metrics",
    params(
        ("id" = String, Path, description = "The process definition id"),
        ("from" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset (default: 30 days before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset (default: now)")
    ),
    responses(
        (status = 200, description = "The metrics", body = ProcessMetricsDoc),
        (status = 400, description = "Malformed query, with the field", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn metrics(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<ProcessMetrics>, ApiError> {
    let (from, to) = super::metrics::range(&params, s.flowgate.clock().now())?;
    let flowgate = s.flowgate.clone();
    let tenant = caller.tenant().to_string();
    let metrics =
        tokio::task::spawn_blocking(move || flowgate.process_metrics(&tenant, &id, from, to))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    Ok(Json(metrics))
}
