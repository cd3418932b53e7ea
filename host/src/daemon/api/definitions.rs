//! Definitions: deploy (a changed one is a new version), validate without deploying, list, get a
//! version with its source.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller};
use crate::engine::time;

/// A definition's source; `file` names it in errors and picks the format (`.json` or TOML).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"file": "leave-request.toml", "source": "id = \"leave-request\"\nname = \"Leave request\"\nstart = \"approve\"\n\n[[steps]]\nid = \"approve\"\nkind = \"task\"\ntitle = \"Approve the leave\"\nrole = \"manager\"\nnext = \"done\"\n\n[[steps]]\nid = \"done\"\nkind = \"end\"\n"})))]
pub struct Source {
    /// A file name, e.g. `purchase-request.toml`.
    file: String,
    /// The definition's text.
    source: String,
}

/// Deploys a definition: a changed one becomes a new version (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/definitions",
    operation_id = "deployDefinition",
    tag = "definitions",
    request_body = Source,
    responses(
        (status = 201, description = "A new version", body = Deployed, links(
            ("getDefinitionVersion" = (operation_id = "getDefinitionVersion", parameters(("id" = "$response.body#/id"), ("version" = "$response.body#/version")))),
            ("getDefinitionDiagram" = (operation_id = "getDefinitionDiagram", parameters(("id" = "$response.body#/id"), ("version" = "$response.body#/version")))),
            ("getWorkflowMetrics" = (operation_id = "getWorkflowMetrics", parameters(("workflow" = "$response.body#/id"))))
        )),
        (status = 200, description = "Unchanged: the same version", body = Deployed),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 422, description = "Invalid: every problem with its path and line", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deploy(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<Source>,
) -> Result<(StatusCode, Json<Deployed>), ApiError> {
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
        Json(Deployed {
            id: d.stored.definition.id.clone(),
            version: d.stored.version,
            new_version: d.new_version,
        }),
    ))
}

/// A definition deployed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deployed {
    id: String,
    version: u32,
    /// False when the source was the current version's: nothing changed.
    new_version: bool,
}

/// A definition that validates.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validated {
    /// Always true: an invalid definition answers 422.
    valid: bool,
    id: String,
    /// How many steps it has.
    steps: usize,
}

/// One version of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefinitionRow {
    id: String,
    version: u32,
    name: String,
    #[schema(format = DateTime)]
    deployed_at: String,
}

/// One version of a workflow, with its source.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefinitionVersion {
    id: String,
    version: u32,
    #[schema(format = DateTime)]
    deployed_at: String,
    /// The text as deployed.
    source: String,
    /// The definition read from it (steps, forms, deadlines, ...).
    #[schema(value_type = Object)]
    definition: crate::definition::Definition,
}

/// Validates a definition without deploying it (administrators).
#[utoipa::path(
    post,
    path = "/api/v1/definitions/validate",
    operation_id = "validateDefinition",
    tag = "definitions",
    request_body = Source,
    responses(
        (status = 200, description = "Valid", body = Validated),
        (status = 400, description = "Malformed JSON or query, with the position", body = ErrorBody),
        (status = 403, description = "The token may not do this", body = ErrorBody),
        (status = 422, description = "Invalid: every problem with its path and line", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn validate(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<Source>,
) -> Result<Json<Validated>, ApiError> {
    caller.admin("validate definitions")?;
    let def = s
        .flowgate
        .validate(caller.tenant(), &body.file, &body.source)?;
    Ok(Json(Validated {
        valid: true,
        id: def.id.clone(),
        steps: def.steps.len(),
    }))
}

/// Every version of every workflow of the tenant.
#[utoipa::path(
    get,
    path = "/api/v1/definitions",
    operation_id = "listDefinitions",
    tag = "definitions",
    responses(
        (status = 200, description = "Every version of every workflow", body = Vec<DefinitionRow>),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DefinitionRow>>, ApiError> {
    let all = s.flowgate.definitions(caller.tenant())?;
    let rows = all
        .iter()
        .map(|d| DefinitionRow {
            id: d.definition.id.clone(),
            version: d.version,
            name: d.definition.name.clone(),
            deployed_at: time::format(d.deployed_at).to_string(),
        })
        .collect();
    Ok(Json(rows))
}

/// One version of a workflow, with its source.
#[utoipa::path(
    get,
    path = "/api/v1/definitions/{id}/versions/{version}",
    operation_id = "getDefinitionVersion",
    tag = "definitions",
    params(("id" = String, Path, description = "The workflow id"), ("version" = u32, Path, description = "The version")),
    responses(
        (status = 200, description = "The version, its source as deployed and the definition read from it", body = DefinitionVersion),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 400, description = "A version that is not a number", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn version(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<DefinitionVersion>, ApiError> {
    let version = version_number(&version)?;
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
    Ok(Json(DefinitionVersion {
        id,
        version: d.version,
        deployed_at: time::format(d.deployed_at).to_string(),
        source: d.source,
        definition: d.definition,
    }))
}

/// A workflow version's diagram: its steps and the ways between them, laid out automatically.
#[utoipa::path(
    get,
    path = "/api/v1/definitions/{id}/versions/{version}/diagram.svg",
    operation_id = "getDefinitionDiagram",
    tag = "definitions",
    params(("id" = String, Path, description = "The workflow id"), ("version" = u32, Path, description = "The version")),
    responses(
        (status = 200, description = "The diagram", content_type = "image/svg+xml", body = String),
        (status = 400, description = "A version that is not a number", body = ErrorBody),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody),
        (status = 500, description = "The diagram could not be laid out", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn diagram(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    let version = version_number(&version)?;
    let def = s.flowgate.definition(caller.tenant(), &id, version)?;
    crate::daemon::web::svg_response(crate::daemon::web::svg(&def, None))
}

/// A version in a path: a positive number, or 400 naming it.
fn version_number(version: &str) -> Result<u32, ApiError> {
    version.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("version `{version}` must be a positive number: {e}"),
        )
        .with(json!({"field": "version"}))
    })
}
