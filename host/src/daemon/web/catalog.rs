//! What a tenant has deployed: its workflows with every version, their source and diagram, a
//! draft checked in place (and deployed, by administrators); its plugins with their versions,
//! capabilities and the running instances pinned to each.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, Fields, PageError, Viewer, format, html, urlencode};
use crate::daemon::AppState;
use crate::definition::DefinitionError;
use crate::plugin::PluginId;
use crate::service::ServiceError;
use crate::store::{InstanceFilter, StoredDefinition};

#[derive(Debug)]
struct WorkflowRow {
    id: String,
    name: String,
    latest: u32,
    versions: usize,
    deployed: String,
}

#[derive(Debug, Template)]
#[template(path = "definitions.html")]
struct DefinitionsPage {
    chrome: Chrome,
    rows: Vec<WorkflowRow>,
}

/// Every version of every workflow, by id.
fn by_workflow(
    s: &AppState,
    viewer: &Viewer,
) -> Result<BTreeMap<String, Vec<StoredDefinition>>, PageError> {
    let mut all: BTreeMap<String, Vec<StoredDefinition>> = BTreeMap::new();
    for d in s.flowgate.definitions(viewer.tenant())? {
        all.entry(d.definition.id.clone()).or_default().push(d);
    }
    for versions in all.values_mut() {
        versions.sort_by_key(|d| d.version);
    }
    Ok(all)
}

pub async fn definitions(State(s): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let rows = by_workflow(&s, &viewer)?
        .into_iter()
        .filter_map(|(id, versions)| {
            let last = versions.last()?;
            Some(WorkflowRow {
                name: last.definition.display_name().to_string(),
                latest: last.version,
                versions: versions.len(),
                deployed: format::iso(last.deployed_at),
                id,
            })
        })
        .collect();
    Ok(html(&DefinitionsPage {
        chrome: viewer.chrome("definitions"),
        rows,
    }))
}

#[derive(Debug)]
struct VersionRow {
    version: u32,
    deployed: String,
    selected: bool,
}

/// A draft's problem, with where it is.
#[derive(Debug)]
struct DraftProblem {
    line: Option<usize>,
    path: String,
    message: String,
}

#[derive(Debug, Template)]
#[template(path = "definition.html")]
struct DefinitionPage {
    chrome: Chrome,
    id: String,
    name: String,
    description: String,
    versions: Vec<VersionRow>,
    version: u32,
    source: String,
    diagram: String,
    /// The draft being checked, and what was found.
    draft: String,
    problems: Vec<DraftProblem>,
    /// The draft was checked and is valid.
    draft_ok: bool,
    deployed: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionQuery {
    version: Option<u32>,
    deployed: Option<u32>,
}

fn definition_page(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
    version: Option<u32>,
) -> Result<DefinitionPage, PageError> {
    let mut all = by_workflow(s, viewer)?;
    let versions = all.remove(id).ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no workflow `{id}`."),
        )
    })?;
    let shown = match version {
        Some(v) => versions.iter().find(|d| d.version == v),
        None => versions.last(),
    }
    .ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!(
                "Workflow `{id}` has no version {}.",
                version.unwrap_or_default()
            ),
        )
    })?;
    let diagram = super::svg(&shown.definition, None)
        .unwrap_or_else(|e| format!(r#"<p class="muted">{e}</p>"#));
    Ok(DefinitionPage {
        chrome: viewer.chrome("definitions"),
        id: id.to_string(),
        name: shown.definition.display_name().to_string(),
        description: shown.definition.description.clone(),
        version: shown.version,
        source: shown.source.clone(),
        diagram,
        draft: shown.source.clone(),
        problems: Vec::new(),
        draft_ok: false,
        deployed: None,
        versions: versions
            .iter()
            .rev()
            .map(|d| VersionRow {
                version: d.version,
                deployed: format::iso(d.deployed_at),
                selected: d.version == shown.version,
            })
            .collect(),
    })
}

pub async fn definition(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, PageError> {
    let mut page = definition_page(&s, &viewer, &id, q.version)?;
    page.deployed = q.deployed;
    Ok(html(&page))
}

/// Checks a draft of the workflow (administrators may deploy it): its problems are shown by the
/// draft, with their lines.
pub async fn draft(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form)?;
    let mut page = definition_page(&s, &viewer, &id, None)?;
    let draft = form.get("source").unwrap_or("").to_string();
    let file = format!("{id}.toml");
    let deploy = form.get("action") == Some("deploy");
    let checked = s.flowgate.validate(viewer.tenant(), &file, &draft);
    let problems = match checked {
        Ok(def) if def.id != id => vec![DraftProblem {
            line: None,
            path: "id".to_string(),
            message: format!("the draft is of workflow `{}`, not `{id}`", def.id),
        }],
        Ok(_) => Vec::new(),
        Err(ServiceError::Definition(DefinitionError::Invalid { problems, .. })) => problems
            .into_iter()
            .map(|p| DraftProblem {
                line: p.line,
                path: p.path,
                message: p.message,
            })
            .collect(),
        Err(ServiceError::Definition(DefinitionError::Parse { message, .. })) => {
            vec![DraftProblem {
                line: None,
                path: String::new(),
                message,
            }]
        }
        Err(other) => return Err(PageError::from(other)),
    };
    if problems.is_empty() && deploy {
        if !viewer.is_admin() {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Not yours to do",
                "Only an administrator may deploy workflows.",
            ));
        }
        viewer.take_command(&s)?;
        let deployed = s.flowgate.deploy(viewer.tenant(), &file, &draft).await?;
        return Ok(Redirect::to(&format!(
            "/definitions/{}?deployed={}",
            urlencode(&id),
            deployed.stored.version
        ))
        .into_response());
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    page.draft_ok = problems.is_empty();
    page.problems = problems;
    page.draft = draft;
    Ok((status, html(&page)).into_response())
}

#[derive(Debug)]
struct PluginVersion {
    sha256: String,
    short: String,
    kept: String,
    current: bool,
    /// Running instances pinned to it.
    pinned: usize,
}

#[derive(Debug)]
struct PluginRow {
    name: String,
    capabilities: String,
    imports: String,
    versions: Vec<PluginVersion>,
}

#[derive(Debug, Template)]
#[template(path = "plugins.html")]
struct PluginsPage {
    chrome: Chrome,
    plugins: Vec<PluginRow>,
    /// Pins counted over at most this many running instances.
    scanned: usize,
}

/// Imports by package (`wasi:cli/stdin@0.2.6` → `wasi:cli`), each once.
fn packages(imports: &[String]) -> String {
    let names: std::collections::BTreeSet<&str> = imports
        .iter()
        .map(|i| i.split(['/', '@']).next().unwrap_or(i))
        .collect();
    if names.is_empty() {
        return "nothing".to_string();
    }
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// Running instances read to count pins.
const PIN_SCAN: usize = 10_000;

pub async fn plugins(State(s): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let running = s.flowgate.instances(
        viewer.tenant(),
        &InstanceFilter {
            status: Some("running".to_string()),
            limit: PIN_SCAN,
            ..InstanceFilter::default()
        },
    )?;
    let mut pins: BTreeMap<(String, String), usize> = BTreeMap::new();
    for instance in &running {
        for (name, sha) in &instance.plugins {
            *pins.entry((name.clone(), sha.clone())).or_default() += 1;
        }
    }
    let registry = s.flowgate.plugins();
    let mut plugins = Vec::new();
    for loaded in registry.list(viewer.tenant()) {
        let id: &PluginId = loaded.id();
        let mut kept = match registry.artifacts() {
            Some(artifacts) => artifacts
                .versions(id)
                .map_err(crate::daemon::error::ApiError::from)?,
            None => Vec::new(),
        };
        if !kept.iter().any(|(sha, _)| sha == loaded.sha256()) {
            kept.push((loaded.sha256().to_string(), 0));
        }
        let versions = kept
            .iter()
            .rev()
            .map(|(sha, at)| PluginVersion {
                short: crate::plugin::short_version(sha).to_string(),
                kept: if *at == 0 {
                    String::new()
                } else {
                    format::iso(*at)
                },
                current: sha == loaded.sha256(),
                pinned: pins
                    .get(&(id.name.clone(), sha.clone()))
                    .copied()
                    .unwrap_or(0),
                sha256: sha.clone(),
            })
            .collect();
        plugins.push(PluginRow {
            name: id.name.clone(),
            capabilities: loaded
                .capabilities()
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            imports: packages(loaded.imports()),
            versions,
        });
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(html(&PluginsPage {
        chrome: viewer.chrome("plugins"),
        plugins,
        scanned: running.len(),
    }))
}
