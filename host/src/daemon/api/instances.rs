//! Instances: start (with an idempotency key), get with history, list and filter, cancel.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::daemon::AppState;
use crate::daemon::error::ApiError;
use crate::daemon::extract::{Body, Caller};
use crate::engine::Command;
use crate::store::InstanceFilter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    workflow: String,
    #[serde(default)]
    data: Map<String, Value>,
    /// Also accepted as the `Idempotency-Key` header.
    idempotency_key: Option<String>,
}

pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body<Start>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let header = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = body.idempotency_key.or(header);
    let by = match &caller.0.access {
        crate::daemon::auth::Access::Person(p) => p.id.clone(),
        crate::daemon::auth::Access::Admin => caller.0.token.clone(),
    };
    let instance = s
        .flowgate
        .start(caller.tenant(), &body.workflow, body.data, &by, key)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(instance))))
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let instance = s.flowgate.instance(caller.tenant(), &id)?;
    let history = s.flowgate.history(caller.tenant(), &id)?;
    Ok(Json(json!({"instance": instance, "history": history})))
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = |key: &str| -> Result<Option<u64>, ApiError> {
        query
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!("query `{key}`: {e}"),
                    )
                    .with(json!({"field": key}))
                })
            })
            .transpose()
    };
    let mut filter = InstanceFilter {
        definition: query.get("workflow").cloned(),
        status: query.get("status").cloned(),
        started_after: number("started_after")?,
        started_before: number("started_before")?,
        after: query.get("after").cloned(),
        limit: number("limit")?.unwrap_or(50).min(1000) as usize,
        ..InstanceFilter::default()
    };
    for (key, value) in &query {
        if let Some(field) = key.strip_prefix("data.") {
            // `data.amount=1200` matches the number; anything not JSON matches as text.
            let parsed =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()));
            filter.data.insert(field.to_string(), parsed);
        }
    }
    let rows: Vec<Value> = s
        .flowgate
        .instances(caller.tenant(), &filter)?
        .iter()
        .map(|i| json!({"id": i.id, "workflow": i.definition_id, "version": i.definition_version, "status": i.status, "incident": i.has_incident(), "started_at": i.started_at, "ended_at": i.ended_at}))
        .collect();
    Ok(Json(json!(rows)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    reason: String,
}

pub async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Cancel>,
) -> Result<Json<Value>, ApiError> {
    caller.admin("cancel instances")?;
    let command = Command::Cancel {
        by: caller.0.token.clone(),
        reason: body.reason,
    };
    let instance = s.flowgate.command(caller.tenant(), &id, command).await?;
    Ok(Json(json!(instance)))
}
