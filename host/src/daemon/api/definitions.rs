//! Definitions: deploy (a changed one is a new version), validate without deploying, list, get a
//! version with its source.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::daemon::AppState;
use crate::daemon::error::ApiError;
use crate::daemon::extract::{Body, Caller};

/// A definition's source; `file` names it in errors and picks the format (`.json` or TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    file: String,
    source: String,
}

pub async fn deploy(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<Source>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin("deploy definitions")?;
    let d = s
        .flowgate
        .deploy(caller.tenant(), &body.file, &body.source)
        .await?;
    let status = if d.new_version {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({"id": d.stored.definition.id, "version": d.stored.version, "new_version": d.new_version}),
        ),
    ))
}

pub async fn validate(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<Source>,
) -> Result<Json<Value>, ApiError> {
    caller.admin("validate definitions")?;
    let def = s
        .flowgate
        .validate(caller.tenant(), &body.file, &body.source)?;
    Ok(Json(
        json!({"valid": true, "id": def.id, "steps": def.steps.len()}),
    ))
}

pub async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let all = s.flowgate.definitions(caller.tenant())?;
    let rows: Vec<Value> = all
        .iter()
        .map(|d| json!({"id": d.definition.id, "version": d.version, "name": d.definition.name, "deployed_at": d.deployed_at}))
        .collect();
    Ok(Json(json!(rows)))
}

pub async fn version(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, u32)>,
) -> Result<Json<Value>, ApiError> {
    let found = s
        .flowgate
        .store()
        .definition(caller.tenant(), &id, Some(version))
        .map_err(crate::service::ServiceError::from)?;
    let d = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("workflow `{id}` version {version} not found"),
        )
    })?;
    Ok(Json(
        json!({"id": id, "version": d.version, "deployed_at": d.deployed_at, "source": d.source, "definition": d.definition}),
    ))
}
