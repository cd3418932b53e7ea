//! Starting a workflow from the web app: the tenant's workflows, and a start form drawn from the
//! definition's `start_form` (or, without one, named values).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::forms::{FieldView, draw, form_data, refused_error};
use super::{Chrome, Fields, PageError, Viewer, html, urlencode};
use crate::daemon::AppState;
use crate::daemon::auth::Access;
use crate::daemon::error::ApiError;
use crate::definition::Definition;

/// How many name/value rows a workflow without a start form offers.
const FREE_ROWS: usize = 5;

#[derive(Debug)]
struct Workflow {
    id: String,
    name: String,
    description: String,
}

#[derive(Debug, Template)]
#[template(path = "start.html")]
struct StartList {
    chrome: Chrome,
    workflows: Vec<Workflow>,
}

pub async fn list(State(s): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let workflows = super::latest_definitions(&s, viewer.tenant())?
        .into_values()
        .map(|d| Workflow {
            name: d.display_name().to_string(),
            description: d.description.clone(),
            id: d.id,
        })
        .collect();
    Ok(html(&StartList {
        chrome: viewer.chrome("start"),
        workflows,
    }))
}

#[derive(Debug, Template)]
#[template(path = "start_form.html")]
struct StartForm {
    chrome: Chrome,
    workflow: Workflow,
    fields: Vec<FieldView>,
    /// Name/value rows, for a workflow without a start form.
    free: Vec<(String, String)>,
    error: Option<String>,
    /// Makes sending the form twice start one instance.
    key: String,
}

fn latest(s: &AppState, viewer: &Viewer, id: &str) -> Result<Definition, PageError> {
    s.flowgate
        .store()
        .definition(viewer.tenant(), id, None)
        .map_err(crate::service::ServiceError::from)?
        .map(|d| d.definition)
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("There is no workflow `{id}`."),
            )
        })
}

fn start_form(
    viewer: &Viewer,
    def: &Definition,
    submitted: &Fields,
    error: Option<&ApiError>,
) -> StartForm {
    let (fields, general) = draw(&def.start_form, submitted, error);
    let free = (0..FREE_ROWS)
        .map(|i| {
            (
                submitted.get(&format!("name{i}")).unwrap_or("").to_string(),
                submitted
                    .get(&format!("value{i}"))
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    StartForm {
        chrome: viewer.chrome("start"),
        workflow: Workflow {
            id: def.id.clone(),
            name: def.display_name().to_string(),
            description: def.description.clone(),
        },
        fields,
        free,
        error: general,
        key: submitted
            .get("key")
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
    }
}

pub async fn form(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let def = latest(&s, &viewer, &id)?;
    Ok(html(&start_form(&viewer, &def, &Fields::default(), None)))
}

pub async fn start(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form)?;
    let def = latest(&s, &viewer, &id)?;
    let refuse = |error: ApiError| {
        let page = start_form(&viewer, &def, &form, Some(&error));
        (StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response()
    };
    let data = if def.start_form.is_empty() {
        match named_values(&form) {
            Ok(data) => data,
            Err(error) => return Ok(refuse(error)),
        }
    } else {
        match form_data(&def.start_form, &form, &Map::new()) {
            Ok(data) => data,
            Err(refused) => return Ok(refuse(refused_error(&refused))),
        }
    };
    let by = match &viewer.caller.access {
        Access::Person(p) => p.id.clone(),
        Access::Admin => viewer.caller.token.clone(),
    };
    let key = form
        .get("key")
        .map(str::to_string)
        .filter(|k| !k.is_empty());
    viewer.take_command(&s)?;
    match s
        .flowgate
        .start_or_replay(viewer.tenant(), &id, data, &by, key, None)
        .await
    {
        Ok(started) => Ok(Redirect::to(&format!(
            "/instances/{}?started=1",
            urlencode(&started.instance.id)
        ))
        .into_response()),
        Err(error) => {
            let error = ApiError::from(error);
            if error.status == StatusCode::UNPROCESSABLE_ENTITY {
                return Ok(refuse(error));
            }
            Err(PageError::from(error))
        }
    }
}

/// The name/value rows of a workflow without a start form, each value kept as the text it is.
fn named_values(form: &Fields) -> Result<Map<String, Value>, ApiError> {
    let mut data = Map::new();
    for i in 0..FREE_ROWS {
        let name = form.get(&format!("name{i}")).unwrap_or("").trim();
        let value = form.get(&format!("value{i}")).unwrap_or("").trim();
        if name.is_empty() && value.is_empty() {
            continue;
        }
        let invalid = |message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
                .with(serde_json::json!({"field": format!("name{i}")}))
        };
        if name.is_empty() {
            return Err(invalid(format!("Row {} has a value but no name.", i + 1)));
        }
        if data
            .insert(name.to_string(), Value::String(value.to_string()))
            .is_some()
        {
            return Err(invalid(format!("`{name}` is named twice.")));
        }
    }
    Ok(data)
}
