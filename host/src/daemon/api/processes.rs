//! Process instances: the linked workflow instances of one business case as one timeline.

use axum::Json;
use axum::extract::{Path, State};

use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::Caller;
use crate::service::ProcessView;

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
        (status = 200, description = "`{process, instances, timeline, running, cycle_ms, handoffs, waits}`", body = serde_json::Value),
        (status = 401, description = "No valid token", body = ErrorBody),
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
