//! Instances: start (with an idempotency key), get with history, list and filter, cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::schema::{InstanceDoc, InstanceStatusDoc, InstanceViewDoc};
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller, Params};
use crate::engine::time;
use crate::engine::{Event, Instance};
use crate::store::InstanceFilter;

/// The longest a long poll waits, in milliseconds.
const MAX_WAIT_MS: u64 = 30_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"workflow": "purchase-request", "data": {"title": "Laptops for the new hires", "amount_cents": 240000, "currency": "EUR", "category": "hardware", "requester": "dora"}, "idempotency_key": "po-2026-0142"})))]
pub struct Start {
    /// The workflow id; its latest version starts.
    workflow: String,
    /// The instance's data.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// Also accepted as the `Idempotency-Key` header.
    idempotency_key: Option<String>,
    /// The process instance (case) it joins; by default it opens a case of its own.
    process: Option<String>,
}

/// Starts an instance of a workflow's latest version. With an idempotency key (body or `Idempotency-Key` header), a repeat returns the first start's instance.
#[utoipa::path(
    post,
    path = "/api/v1/instances",
    operation_id = "startInstance",
    tag = "instances",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried start safe")),
    request_body = Start,
    responses(
        (status = 201, description = "The instance started", body = InstanceDoc, links(
            ("getInstance" = (operation_id = "getInstance", parameters(("id" = "$response.body#/id")))),
            ("getInstanceDiagram" = (operation_id = "getInstanceDiagram", parameters(("id" = "$response.body#/id")))),
            ("pauseInstance" = (operation_id = "pauseInstance", parameters(("id" = "$response.body#/id")))),
            ("cancelInstance" = (operation_id = "cancelInstance", parameters(("id" = "$response.body#/id")))),
            ("getProcess" = (operation_id = "getProcess", parameters(("id" = "$response.body#/process"))))
        )),
        (status = 200, description = "A replay: the instance an earlier start with the same idempotency key made", body = InstanceDoc),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<Start>,
) -> Result<(StatusCode, Json<Arc<Instance>>), ApiError> {
    let header = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = body.idempotency_key.or(header);
    let by = match &caller.0.access {
        crate::daemon::auth::Access::Person(p) => p.id.clone(),
        crate::daemon::auth::Access::Admin => caller.0.token.clone(),
    };
    let started = s
        .flowgate
        .start_or_replay(
            caller.tenant(),
            &body.workflow,
            body.data,
            &by,
            key,
            body.process,
        )
        .await?;
    // A replay answers 200 with the instance the first start made: nothing new was created.
    let status = if started.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(started.instance)))
}

/// An instance with its whole history; with `changed_since`, a long poll that answers once the
/// instance changed (or the wait is over).
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}",
    operation_id = "getInstance",
    tag = "instances",
    params(
        ("id" = String, Path, description = "The instance id"),
        ("history" = Option<bool>, Query, description = "false leaves the history out (default true)"),
        ("changed_since" = Option<u64>, Query, description = "Long poll: answer once the instance's version is past this one"),
        ("wait_ms" = Option<u64>, Query, description = "How long a long poll may wait (default and most 30000, or the daemon's `long_poll_ms`); after it, the instance as it is")
    ),
    responses(
        (status = 200, description = "`{instance, history, stored}`: `stored` is what the instance keeps in the store, `{state_bytes, history_events, history_bytes}` (with the history only)", body = InstanceViewDoc),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<InstanceView>, ApiError> {
    let history = params.flag("history", true)?;
    let changed_since = params.number("changed_since", "an instance version")?;
    let wait = params
        .number("wait_ms", "milliseconds")?
        .unwrap_or(MAX_WAIT_MS);
    let wait = Duration::from_millis(wait.min(MAX_WAIT_MS)).min(s.long_poll);
    let instance = match changed_since {
        Some(version) => Some(
            s.flowgate
                .instance_changed(caller.tenant(), &id, version, wait)
                .await?,
        ),
        None => None,
    };
    if !history {
        let instance = match instance {
            Some(found) => found,
            None => s.flowgate.instance(caller.tenant(), &id)?,
        };
        return Ok(Json(InstanceView {
            instance,
            history: None,
            stored: None,
        }));
    }
    let (instance, history) = s.flowgate.instance_with_history(caller.tenant(), &id)?;
    let stored = s
        .flowgate
        .store()
        .instance_size(caller.tenant(), &id)
        .map_err(crate::service::ServiceError::from)?;
    Ok(Json(InstanceView {
        instance,
        history: Some(history),
        stored,
    }))
}

/// Instances in id order (ids are time-ordered: oldest first), filtered; page with `after`. A filter on workflow or status reads an index.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    operation_id = "listInstances",
    tag = "instances",
    params(
        ("workflow" = Option<String>, Query, description = "Only this workflow"),
        ("status" = Option<String>, Query, description = "running, completed, rejected or cancelled"),
        ("started_after" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset"),
        ("started_before" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time with its offset"),
        ("after" = Option<String>, Query, description = "The last id of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 50)"),
        ("data.{field}" = Option<String>, Query, description = "Data field equals (JSON, or else text)")
    ),
    responses(
        (status = 200, description = "The instances, oldest start first", body = Vec<InstanceRow>),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 422, description = "A filter value that is not one the filter takes (`details.field`, `details.allowed`)", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Vec<InstanceRow>>, ApiError> {
    let mut filter = InstanceFilter {
        definition: params.text("workflow"),
        status: params.one_of("status", &["running", "completed", "rejected", "cancelled"])?,
        started_after: params.instant("started_after")?,
        started_before: params.instant("started_before")?,
        after: params.text("after"),
        limit: params.limit(50, 1000)?,
        ..InstanceFilter::default()
    };
    for (field, value) in params.prefixed("data.") {
        // `data.amount=1200` matches the number; anything not JSON matches as text.
        let parsed = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        filter.data.insert(field.to_string(), parsed);
    }
    let rows = s
        .flowgate
        .instances(caller.tenant(), &filter)?
        .iter()
        .map(InstanceRow::of)
        .collect();
    Ok(Json(rows))
}

/// One instance in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceRow {
    id: String,
    workflow: String,
    version: u32,
    #[schema(value_type = InstanceStatusDoc)]
    status: crate::engine::Status,
    /// Whether a step failed and waits for a person to resolve it.
    incident: bool,
    paused: bool,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
}

impl InstanceRow {
    fn of(i: &Instance) -> Self {
        InstanceRow {
            id: i.id.clone(),
            workflow: i.definition_id.clone(),
            version: i.definition_version,
            status: i.status,
            incident: i.has_incident(),
            paused: i.paused.is_some(),
            started_at: time::format(i.started_at).to_string(),
            ended_at: i.ended_at.map(|at| time::format(at).to_string()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"reason": "The requester withdrew the purchase"})))]
pub struct Cancel {
    /// Why, for the history.
    reason: String,
}

/// Cancels a running instance (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/instances/{id}/cancel",
    operation_id = "cancelInstance",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id")),
    request_body = Cancel,
    responses(
        (status = 200, description = "The instance", body = InstanceDoc),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 409, description = "Conflict: the task or instance moved on", body = ErrorBody),
        (status = 422, description = "Invalid: `details.field` names the field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Cancel>,
) -> Result<Json<Instance>, ApiError> {
    caller.admin("cancel instances")?;
    let instance = s
        .flowgate
        .cancel(caller.tenant(), &id, &caller.0.token, body.reason)
        .await?;
    Ok(Json(instance))
}

/// An instance, and its history unless it was left out. Serialized straight from the engine's
/// types: no intermediate JSON tree.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    instance: Instance,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<Event>>,
    /// What the instance keeps in the store (with its history): `{state_bytes,
    /// history_events, history_bytes}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<crate::store::StoredSize>,
}

/// The instance's workflow diagram, with the steps it took, the ones it waits in and the ones
/// that failed marked.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/diagram.svg",
    operation_id = "getInstanceDiagram",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The diagram", content_type = "image/svg+xml", body = String),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 500, description = "The diagram could not be laid out", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn diagram(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    crate::daemon::web::instance_svg(&s, caller.tenant(), &id)
}
