//! Tasks: an inbox by person or role with paging, claim and unclaim, complete with an outcome and
//! form data. A person token acts as its person; an administrator names who acts.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::schema::{CompletedDoc, TaskDoc};
use crate::daemon::AppState;
use crate::daemon::auth::Access;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller, Params};
use crate::engine::Person;
use crate::service::{Completion, TaskFilter};
use crate::store::Inbox;

/// Open tasks of a person or a role in task id order, filtered; page with `after` (the answer's `next`; a filtered page may be short before the end). Give exactly one of `person` and `role`; a person token may give neither and reads its own inbox, and reads only its own or its roles'.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    operation_id = "listTasks",
    tag = "tasks",
    params(
        ("person" = Option<String>, Query, description = "Tasks assigned to this person (not with `role`)"),
        ("role" = Option<String>, Query, description = "Tasks for this role (not with `person`)"),
        ("workflow" = Option<String>, Query, description = "Only tasks of this workflow's instances"),
        ("step" = Option<String>, Query, description = "Only tasks of this step"),
        ("due_before" = Option<String>, Query, format = DateTime, description = "Only tasks due before this time: an RFC 3339 date-time with its offset"),
        ("unclaimed" = Option<bool>, Query, description = "Only tasks nobody has claimed"),
        ("after" = Option<String>, Query, description = "The previous page's `next`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "At most this many (default 50)")
    ),
    responses(
        (status = 200, description = "A page of open tasks; `next` gives the next page as `after`", body = TaskPage, links(
            ("claimTask" = (operation_id = "claimTask", parameters(("id" = "$response.body#/tasks/0/id")))),
            ("completeTask" = (operation_id = "completeTask", parameters(("id" = "$response.body#/tasks/0/id"))))
        )),
        (status = 400, description = "A malformed query, or both `person` and `role` (or neither, with an administrator token); `details.field` names the parameter", body = ErrorBody),
        (status = 403, description = "A person token asking for another person's inbox or a role it does not have", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn inbox(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<TaskPage>, ApiError> {
    let inbox = match (params.text("person"), params.text("role"), &caller.0.access) {
        (Some(p), None, _) => Inbox::Person(p),
        (None, Some(r), _) => Inbox::Role(r),
        (None, None, Access::Person(p)) => Inbox::Person(p.id.clone()),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "give exactly one of `person` or `role`",
            )
            .with(json!({"field": "person"})));
        }
    };
    if let Access::Person(me) = &caller.0.access {
        let mine = match &inbox {
            Inbox::Person(p) => *p == me.id,
            Inbox::Role(r) => me.roles.contains(r),
        };
        if !mine {
            return Err(ApiError::forbidden("read another person's or role's inbox"));
        }
    }
    params.only(&[
        "person",
        "role",
        "workflow",
        "step",
        "due_before",
        "unclaimed",
        "after",
        "limit",
    ])?;
    let filter = TaskFilter {
        workflow: params.text("workflow"),
        step: params.text("step"),
        due_before: params.instant("due_before")?,
        unclaimed: params.flag("unclaimed", false)?,
    };
    let limit = params.limit(50, 500)?;
    let after = params.text("after");
    let page = s
        .flowgate
        .inbox_page(caller.tenant(), &inbox, &filter, after.as_deref(), limit)?;
    Ok(Json(TaskPage {
        tasks: page.tasks,
        next: page.next,
    }))
}

/// A page of an inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    #[schema(value_type = Vec<TaskDoc>)]
    tasks: Vec<crate::engine::Task>,
    /// The last task id of this page, to pass as `after`; none on the last page.
    next: Option<String>,
}

/// A task claimed or given back: its instance's new version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Moved {
    instance: String,
    version: u64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"outcome": "approve", "comment": "Within the team's budget", "expected_version": 4})))]
pub struct Act {
    /// Who acts, `{"id": ..., "roles": [...]}`: required of administrator tokens, and must be
    /// the token's own person otherwise.
    #[schema(value_type = Option<Object>)]
    by: Option<Person>,
    /// The outcome, one the step allows (e.g. `approve`, `reject`, `request-changes`).
    outcome: Option<String>,
    /// Form data, checked against the step's form.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// Refuse with 409 unless the instance is still at this version.
    expected_version: Option<u64>,
    /// Why (at most 4,000 characters), kept in the history as the completion's reason.
    comment: Option<String>,
}

/// An optional body: empty (or `null`) means `{}`.
fn optional(body: &Bytes) -> Result<Act, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(Act::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))
}

/// Claims a task for the acting person.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/claim",
    operation_id = "claimTask",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    request_body(content = Option<Act>, description = "Optional; administrators name `by`"),
    responses(
        (status = 200, description = "The instance's new version", body = Moved),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Conflict: the task or instance moved on", body = ErrorBody),
        (status = 400, description = "Malformed JSON, with the position", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field (an administrator token without `by`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn claim(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Json<Moved>, ApiError> {
    claim_or_unclaim(s, caller, task, body, true).await
}

/// Gives a claimed task back to its role.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/unclaim",
    operation_id = "unclaimTask",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    request_body(content = Option<Act>, description = "Optional; administrators name `by`"),
    responses(
        (status = 200, description = "The instance's new version", body = Moved),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Conflict: the task or instance moved on", body = ErrorBody),
        (status = 400, description = "Malformed JSON, with the position", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field (an administrator token without `by`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unclaim(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Json<Moved>, ApiError> {
    claim_or_unclaim(s, caller, task, body, false).await
}

async fn claim_or_unclaim(
    s: AppState,
    caller: Caller,
    task: String,
    body: Bytes,
    claim: bool,
) -> Result<Json<Moved>, ApiError> {
    let by = caller.person(optional(&body)?.by)?;
    let done = if claim {
        s.flowgate.claim_task(caller.tenant(), &task, by).await?
    } else {
        s.flowgate.unclaim_task(caller.tenant(), &task, by).await?
    };
    Ok(Json(Moved {
        instance: done.id,
        version: done.version,
    }))
}

/// Completes a task with an outcome and form data. With an `Idempotency-Key` header (kept 24 hours), a repeat of the same request answers as the first did (with `Idempotent-Replayed: true`); the same key with another request is 422; a task completed already is 409, whatever new key comes with it.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/complete",
    operation_id = "completeTask",
    tag = "tasks",
    params(("id" = String, Path, description = "The task id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    request_body = Act,
    responses(
        (status = 200, description = "Where the instance stands: its status, version and open tasks", body = CompletedDoc),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Conflict: the task was completed already, or the instance moved on", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(task): Path<String>,
    Body(act): Body<Act>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(idempotency_key(value)?),
    };
    let completion = Completion {
        task,
        by: caller.person(act.by)?,
        outcome: act.outcome,
        data: act.data,
        expected_version: act.expected_version,
        key,
        comment: act.comment,
    };
    let completed = s.flowgate.complete(caller.tenant(), completion).await?;
    let replayed = completed.replayed;
    let mut response = Json(completed).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// An `Idempotency-Key` header's value: printable ASCII, 1 to 255 characters.
fn idempotency_key(value: &axum::http::HeaderValue) -> Result<String, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the Idempotency-Key header {why}"),
        )
        .with(json!({"field": "Idempotency-Key"}))
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("must be printable ASCII"))?
        .trim();
    if text.is_empty() || text.len() > 255 {
        return Err(invalid("must have 1 to 255 characters"));
    }
    Ok(text.to_string())
}
