//! Schedules: the workflows' scheduled starts, where each stands, and pausing and resuming them
//! (administrators).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller};
use crate::service::ScheduleView;
use crate::store::ScheduleRun;

/// A schedule and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleBody {
    workflow: String,
    schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    /// An interval such as `15m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    timezone: String,
    /// `skip`, `buffer-one` or `allow`.
    overlap: String,
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_reason: Option<String>,
    /// The next due time; none while paused.
    #[serde(with = "crate::engine::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_due: Option<u64>,
    /// Every due time up to this one has been handled.
    #[serde(with = "crate::engine::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    handled_until: u64,
    last_instance: Option<String>,
    /// A due time kept until the running instance ends (`buffer-one`).
    #[serde(with = "crate::engine::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pending: Option<u64>,
    started: u64,
    skipped: u64,
    missed: u64,
    failed: u64,
    /// The latest due times and what each did, newest last.
    #[schema(value_type = Vec<Object>)]
    recent: Vec<ScheduleRun>,
}

impl From<ScheduleView> for ScheduleBody {
    fn from(view: ScheduleView) -> Self {
        let overlap = serde_json::to_value(view.schedule.overlap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        ScheduleBody {
            workflow: view.state.workflow,
            schedule: view.state.schedule,
            cron: view.schedule.cron,
            every: view
                .schedule
                .every
                .map(|d| humantime::format_duration(d).to_string()),
            timezone: view.schedule.timezone,
            overlap,
            paused: view.state.paused,
            pause_reason: view.state.pause_reason,
            next_due: view.next_due,
            handled_until: view.state.handled_until,
            last_instance: view.state.last_instance,
            pending: view.state.pending,
            started: view.state.started,
            skipped: view.state.skipped,
            missed: view.state.missed,
            failed: view.state.failed,
            recent: view.state.recent,
        }
    }
}

/// Every schedule of the tenant's workflows (their latest versions), with where it stands.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    operation_id = "listSchedules",
    tag = "schedules",
    responses(
        (status = 200, description = "The schedules", body = [ScheduleBody]),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ScheduleBody>>, ApiError> {
    let views = s.flowgate.schedules(caller.tenant())?;
    Ok(Json(views.into_iter().map(ScheduleBody::from).collect()))
}

/// Why a schedule is paused or resumed, for its state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "Office closed over the holidays"})))]
pub struct Toggle {
    #[schema(min_length = 1)]
    reason: String,
}

/// Pauses a schedule: no due time starts until it is resumed (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{id}/schedules/{schedule}/pause",
    operation_id = "pauseSchedule",
    tag = "schedules",
    params(("id" = String, Path, description = "The workflow id"), ("schedule" = String, Path, description = "The schedule's id")),
    request_body = Toggle,
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such schedule in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Paused already", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pause(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, schedule)): Path<(String, String)>,
    Body(body): Body<Toggle>,
) -> Result<Json<ScheduleBody>, ApiError> {
    toggle(s, caller, id, schedule, true, body.reason).await
}

/// Resumes a paused schedule from now: what fell due while it was paused does not start
/// (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{id}/schedules/{schedule}/resume",
    operation_id = "resumeSchedule",
    tag = "schedules",
    params(("id" = String, Path, description = "The workflow id"), ("schedule" = String, Path, description = "The schedule's id")),
    request_body = Toggle,
    responses(
        (status = 200, description = "The schedule, running", body = ScheduleBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "No such schedule in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, schedule)): Path<(String, String)>,
    Body(body): Body<Toggle>,
) -> Result<Json<ScheduleBody>, ApiError> {
    toggle(s, caller, id, schedule, false, body.reason).await
}

async fn toggle(
    s: AppState,
    caller: Caller,
    id: String,
    schedule: String,
    paused: bool,
    reason: String,
) -> Result<Json<ScheduleBody>, ApiError> {
    caller.admin("pause or resume schedules")?;
    ApiError::require_reason(&reason, "with the schedule")?;
    let view = s
        .flowgate
        .pause_schedule(caller.tenant(), &id, &schedule, paused, reason)
        .await?;
    Ok(Json(view.into()))
}
