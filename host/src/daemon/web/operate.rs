//! The operators' pages: instances with their timeline, data and diagram, and incidents to
//! retry, skip or cancel.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format::{self, DataRow};
use super::{Chrome, Fields, PageError, Viewer, html, urlencode};
use crate::daemon::AppState;
use crate::definition::Definition;
use crate::engine::{Actor, Event, EventKind, Instance, Resolution, Wait};
use crate::store::InstanceFilter;

/// One line of a timeline.
#[derive(Debug)]
pub struct Entry {
    pub at: String,
    pub who: String,
    pub what: String,
    pub why: Option<String>,
    /// `ok`, `fail`, `person` or `info`: the dot's colour.
    pub tone: &'static str,
}

/// An instance's history as people read it: who did what, when, and why, with steps called by
/// their titles.
pub fn timeline(def: &Definition, history: &[Event]) -> Vec<Entry> {
    history.iter().map(|e| entry(def, e)).collect()
}

fn entry(def: &Definition, event: &Event) -> Entry {
    let who = match &event.actor {
        Actor::Person {
            id,
            via: Some(token),
        } => format!("{id} (through {token})"),
        Actor::Person { id, via: None } => id.clone(),
        Actor::Plugin { name, sha256 } => {
            format!("plugin {name} @{}", crate::plugin::short_version(sha256))
        }
        Actor::Timer => "timer".to_string(),
        Actor::System => "Flowgate".to_string(),
    };
    let step = |s: &str| format!("“{}”", def.step(s).map_or(s, |found| found.title()));
    let (what, tone) = match &event.kind {
        EventKind::InstanceStarted {
            definition,
            version,
            ..
        } => (format!("Started {definition} (version {version})"), "info"),
        EventKind::StepEntered { step: s, .. } => (format!("Entered {}", step(s)), "info"),
        EventKind::StepCompleted {
            step: s, outcome, ..
        } => (
            match outcome {
                Some(o) => format!("Left {} with {}", step(s), format::label(o).to_lowercase()),
                None => format!("Left {}", step(s)),
            },
            "ok",
        ),
        EventKind::TaskCreated {
            step: s,
            assignee,
            role,
            candidates,
            ..
        } => {
            let to = match (assignee, role) {
                (Some(p), _) => p.clone(),
                (None, Some(r)) => format!("role {r}"),
                (None, None) => candidates.join(", "),
            };
            (format!("Task {} opened for {to}", step(s)), "info")
        }
        EventKind::TaskClaimed { .. } => ("Claimed the task".to_string(), "person"),
        EventKind::TaskUnclaimed { .. } => ("Gave the task back".to_string(), "person"),
        EventKind::TaskCompleted {
            step: s, outcome, ..
        } => (
            match outcome {
                Some(o) => format!("Completed {}: {}", step(s), format::label(o).to_lowercase()),
                None => format!("Completed {}", step(s)),
            },
            "person",
        ),
        EventKind::TaskCancelled { .. } => ("Task withdrawn".to_string(), "info"),
        EventKind::TaskReassigned { role, .. } => {
            (format!("Task reassigned to role {role}"), "info")
        }
        EventKind::ApprovalRequired { step: s, stages } => (
            format!("{} needs approval by {}", step(s), stages.join(", then ")),
            "info",
        ),
        EventKind::AutoApproved { step: s } => {
            (format!("{} approved automatically", step(s)), "ok")
        }
        EventKind::StageDecided {
            stage, approved, ..
        } => (
            format!(
                "Stage {stage} {}",
                if *approved { "approved" } else { "rejected" }
            ),
            if *approved { "ok" } else { "fail" },
        ),
        EventKind::DataUpdated { keys } => (format!("Updated {}", keys.join(", ")), "info"),
        EventKind::ActionSucceeded { step: s, note, .. } => (
            if note.is_empty() {
                format!("{} done", step(s))
            } else {
                format!("{} done: {note}", step(s))
            },
            "ok",
        ),
        EventKind::PluginCallFailed {
            step: s,
            attempt,
            error,
            retry_at,
            ..
        } => (
            format!(
                "{} failed (attempt {attempt}){}: {error}",
                step(s),
                if retry_at.is_some() {
                    ", will retry"
                } else {
                    ""
                }
            ),
            "fail",
        ),
        EventKind::Routed { step: s, next } => {
            (format!("{} chose {}", step(s), next.join(", ")), "ok")
        }
        EventKind::NextStarted { workflow } => {
            (format!("Starting the next workflow, {workflow}"), "info")
        }
        EventKind::FollowedBy { workflow, instance } => (
            format!("Handed on to {workflow}, instance {instance}"),
            "ok",
        ),
        EventKind::StartRefused { workflow, error } => {
            (format!("{workflow} did not start: {error}"), "fail")
        }
        EventKind::MessageAwaited {
            step: s,
            message,
            correlation,
            ..
        } => (
            format!("{} waits for message {message} ({correlation})", step(s)),
            "info",
        ),
        EventKind::MessageReceived {
            step: s,
            message,
            id,
            ..
        } => (
            format!("Message {message} arrived at {} (id {id})", step(s)),
            "ok",
        ),
        EventKind::MessageLate {
            step: s, action, ..
        } => (
            format!("{} still waits for its message: {action}", step(s)),
            "fail",
        ),
        EventKind::ReminderSent { .. } => ("Reminder sent".to_string(), "info"),
        EventKind::TaskOverdue { .. } => ("Task overdue".to_string(), "fail"),
        EventKind::Escalated { action, .. } => (format!("Escalated: {action}"), "fail"),
        EventKind::IncidentRaised { step: s, error, .. } => {
            (format!("Incident at {}: {error}", step(s)), "fail")
        }
        EventKind::IncidentResolved {
            step: s,
            resolution,
            ..
        } => (
            format!("Incident at {} resolved: {resolution}", step(s)),
            "ok",
        ),
        EventKind::PluginCalled {
            step: s,
            fuel,
            logs,
            ..
        } => (
            format!(
                "{} called its plugin: {} fuel{}",
                step(s),
                format::thousands(*fuel),
                match logs.len() {
                    0 => String::new(),
                    1 => format!(", logged: {}", logs[0]),
                    n => format!(", {n} log lines, first: {}", logs[0]),
                }
            ),
            "info",
        ),
        EventKind::PluginRepinned {
            plugin, from, to, ..
        } => (
            format!(
                "Now runs {plugin} @{}{}",
                crate::plugin::short_version(to),
                from.as_deref()
                    .map(|f| format!(" (was @{})", crate::plugin::short_version(f)))
                    .unwrap_or_default()
            ),
            "info",
        ),
        EventKind::SubworkflowStarted {
            workflow,
            count: None,
            ..
        } => (format!("Started sub-workflow {workflow}"), "info"),
        EventKind::SubworkflowStarted {
            workflow,
            count: Some(count),
            ..
        } => (
            format!(
                "Started {count} instance{} of {workflow}",
                if *count == 1 { "" } else { "s" }
            ),
            "info",
        ),
        EventKind::SubworkflowFinished { child, outcome, .. } => {
            (format!("Sub-workflow {child} ended {outcome}"), "ok")
        }
        EventKind::BranchJoined {
            step: s,
            arrived,
            required,
        } => {
            // A fan-out's join counts the instances it started; a parallel join its branches.
            let what = match def.step(s) {
                Some(crate::definition::Step::Subworkflow(_)) => "instances ended",
                _ => "branches in",
            };
            (
                format!("{}: {arrived} of {required} {what}", step(s)),
                "info",
            )
        }
        EventKind::BranchCancelled { step: s, .. } => {
            (format!("Branch at {} cancelled", step(s)), "info")
        }
        EventKind::InstanceEnded { outcome, .. } => (format!("Ended: {outcome}"), "ok"),
        EventKind::InstancePaused {} => ("Paused".to_string(), "warn"),
        EventKind::InstanceResumed { held: 0 } => ("Resumed".to_string(), "ok"),
        EventKind::InstanceResumed { held } => (
            format!("Resumed; {held} held while paused applied now"),
            "ok",
        ),
        EventKind::CommandHeld { command } => (
            format!(
                "Held while paused: {}",
                format::label(command).to_lowercase()
            ),
            "info",
        ),
        EventKind::HeldCommandDropped { command, .. } => (
            format!(
                "Held {} no longer applied",
                format::label(command).to_lowercase()
            ),
            "warn",
        ),
        EventKind::InstanceMigrated {
            from_version,
            to_version,
            ..
        } => (
            format!("Moved from version {from_version} to version {to_version}"),
            "info",
        ),
    };
    Entry {
        at: format::iso(event.at),
        who,
        what,
        why: event.reason.clone(),
        tone,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct InstanceQuery {
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    status: String,
    /// Started on or after this day (UTC, `2026-12-01`).
    #[serde(default)]
    from: String,
    /// Started before the end of this day (UTC).
    #[serde(default)]
    to: String,
    /// A data field, and the value it must equal (JSON, or else text).
    #[serde(default)]
    field: String,
    #[serde(default)]
    equals: String,
    after: Option<String>,
}

/// The start of a UTC day (`2026-12-01`), in milliseconds; `end` gives the next day's start.
fn day(text: &str, end: bool, what: &str) -> Result<Option<u64>, PageError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let at = humantime::parse_rfc3339(&format!("{}T00:00:00Z", text.trim())).map_err(|_| {
        PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not a date",
            format!("“{text}” ({what}) is not a date like 2026-12-01."),
        )
    })?;
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(Some(if end { millis + 86_400_000 } else { millis }))
}

#[derive(Debug)]
struct InstanceRow {
    id: String,
    workflow: String,
    status: &'static str,
    started: String,
    started_by: String,
    open_tasks: usize,
    incident: bool,
    /// While paused: since when, by whom and why.
    paused: Option<PausedView>,
}

#[derive(Debug)]
struct PausedView {
    since: String,
    by: String,
    reason: String,
    held: usize,
}

#[derive(Debug, Template)]
#[template(path = "instances.html")]
struct InstancesPage {
    chrome: Chrome,
    rows: Vec<InstanceRow>,
    workflows: Vec<String>,
    workflow: String,
    status: String,
    from: String,
    to: String,
    field: String,
    equals: String,
    /// The query of this page, to page on with the same filters.
    query: String,
    next: Option<String>,
}

const PAGE: usize = 50;

pub async fn instances(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<InstanceQuery>,
) -> Result<Response, PageError> {
    let mut filter = InstanceFilter {
        definition: Some(q.workflow.clone()).filter(|w| !w.is_empty()),
        status: Some(q.status.clone()).filter(|w| !w.is_empty()),
        started_after: day(&q.from, false, "started from")?,
        started_before: day(&q.to, true, "started until")?,
        after: q.after.clone(),
        limit: PAGE + 1,
        ..InstanceFilter::default()
    };
    let field = q.field.trim();
    if !field.is_empty() {
        // As the API does: `1200` matches the number; anything not JSON matches as text.
        let value = serde_json::from_str(&q.equals)
            .unwrap_or_else(|_| serde_json::Value::String(q.equals.clone()));
        filter.data.insert(field.to_string(), value);
    }
    let mut found = s.flowgate.instances(viewer.tenant(), &filter)?;
    let next = (found.len() > PAGE).then(|| found[PAGE - 1].id.clone());
    found.truncate(PAGE);
    let rows = found.iter().map(instance_row).collect();
    let workflows = super::workflow_ids(&s, viewer.tenant())?;
    Ok(html(&InstancesPage {
        chrome: viewer.chrome("instances"),
        rows,
        workflows,
        query: format!(
            "workflow={}&status={}&from={}&to={}&field={}&equals={}",
            urlencode(&q.workflow),
            urlencode(&q.status),
            urlencode(&q.from),
            urlencode(&q.to),
            urlencode(&q.field),
            urlencode(&q.equals)
        ),
        workflow: q.workflow,
        status: q.status,
        from: q.from,
        to: q.to,
        field: q.field,
        equals: q.equals,
        next,
    }))
}

fn instance_row(i: &Instance) -> InstanceRow {
    InstanceRow {
        id: i.id.clone(),
        workflow: i.definition_id.clone(),
        status: i.status.as_str(),
        started: format::iso(i.started_at),
        started_by: i.started_by.clone(),
        open_tasks: i.open_tasks().count(),
        incident: i.has_incident(),
        paused: i.paused.as_ref().map(|p| PausedView {
            since: format::iso(p.at),
            by: p.by.clone(),
            reason: p.reason.clone(),
            held: i.held.len(),
        }),
    }
}

/// An incident as its page shows it.
#[derive(Debug)]
struct IncidentView {
    instance: String,
    workflow: String,
    token: u64,
    step: String,
    error: String,
    plugin: String,
    attempts: u32,
    raised: String,
    blame: String,
    /// The outcomes a skip may give (approve/reject, or a route's candidates).
    skip_outcomes: Vec<String>,
    /// The plugin's current version, when it is not the one the instance is pinned to.
    newer: Option<String>,
}

#[derive(Debug)]
struct OpenTask {
    id: String,
    title: String,
    offered_to: String,
    claimed_by: Option<String>,
    /// For an administrator: the outside participant's link, while it opens the task.
    link: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "instance.html")]
struct InstancePage {
    chrome: Chrome,
    instance: InstanceRow,
    workflow_name: String,
    version: u32,
    data: Vec<DataRow>,
    history: Vec<Entry>,
    tasks: Vec<OpenTask>,
    incidents: Vec<IncidentView>,
    diagram: String,
    running: bool,
    plugins: Vec<(String, String)>,
    /// What it keeps in the store: `42 events, 18.3 KB`.
    stored: String,
    /// Just started from the start form.
    started: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct InstancePageQuery {
    started: Option<String>,
}

pub async fn instance(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<InstancePageQuery>,
) -> Result<Response, PageError> {
    let (instance, history) = s.flowgate.instance_with_history(viewer.tenant(), &id)?;
    let def = s.flowgate.definition(
        viewer.tenant(),
        &instance.definition_id,
        instance.definition_version,
    )?;
    let progress = super::Progress::of(&instance, &history);
    let diagram = super::svg(&def, Some(&progress))
        .unwrap_or_else(|e| format!(r#"<p class="muted">{e}</p>"#));
    let tasks = instance
        .open_tasks()
        .map(|t| OpenTask {
            id: t.id.clone(),
            title: t.title.clone(),
            offered_to: format::offered_to(t),
            claimed_by: t.claimed_by.clone(),
            link: t
                .link_expires_at
                .filter(|_| viewer.is_admin() && t.claimed_by.is_none())
                .and_then(|expires| s.links.url(viewer.tenant(), &t.id, expires)),
        })
        .collect();
    let incidents = incidents_of(&instance, &def, |p| {
        s.flowgate.current_plugin_version(viewer.tenant(), p)
    });
    let stored = s
        .flowgate
        .store()
        .instance_size(viewer.tenant(), &id)
        .map_err(crate::service::ServiceError::from)?
        .map(|size| {
            format!(
                "{} events, {} stored",
                format::thousands(size.history_events),
                format::bytes(size.total_bytes())
            )
        })
        .unwrap_or_default();
    Ok(html(&InstancePage {
        chrome: viewer.chrome("instances"),
        workflow_name: def.display_name().to_string(),
        version: instance.definition_version,
        data: format::data_rows(Some(&def), &instance.data),
        history: timeline(&def, &history),
        tasks,
        incidents,
        diagram,
        running: instance.status == crate::engine::Status::Running,
        plugins: instance
            .plugins
            .iter()
            .map(|(name, sha)| (name.clone(), crate::plugin::short_version(sha).to_string()))
            .collect(),
        instance: instance_row(&instance),
        stored,
        started: q.started.is_some(),
    }))
}

fn incidents_of(
    instance: &Instance,
    def: &Definition,
    current: impl Fn(&str) -> Option<String>,
) -> Vec<IncidentView> {
    use crate::definition::Step;
    instance
        .tokens
        .values()
        .filter_map(|t| match &t.wait {
            Wait::Incident(incident) => Some((t, incident)),
            _ => None,
        })
        .map(|(t, incident)| IncidentView {
            instance: instance.id.clone(),
            workflow: instance.definition_id.clone(),
            token: t.id,
            step: def
                .step(&t.step)
                .map_or(t.step.clone(), |s| s.title().to_string()),
            error: incident.error.clone(),
            plugin: match (&incident.plugin, &incident.sha256) {
                (Some(p), Some(sha)) => format!("{p} @{}", crate::plugin::short_version(sha)),
                (Some(p), None) => p.clone(),
                _ => String::new(),
            },
            attempts: incident.attempts,
            raised: format::iso(incident.raised_at),
            blame: match incident.blame {
                Some(b) if b.as_str() == "guest" => "the plugin".to_string(),
                Some(_) => "the host".to_string(),
                None if incident.source == "start" => "the workflow it starts".to_string(),
                None => "the engine".to_string(),
            },
            skip_outcomes: match def.step(&t.step) {
                Some(Step::Approval(_)) => vec!["approve".to_string(), "reject".to_string()],
                Some(Step::Route(r)) => r.candidates.clone(),
                _ => Vec::new(),
            },
            newer: incident.plugin.as_deref().and_then(|plugin| {
                let now = current(plugin)?;
                (incident.sha256.as_deref() != Some(now.as_str()))
                    .then(|| crate::plugin::short_version(&now).to_string())
            }),
        })
        .collect()
}

#[derive(Debug, Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    chrome: Chrome,
    incidents: Vec<IncidentView>,
}

pub async fn incidents(State(s): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let mut incidents = Vec::new();
    for instance in s.flowgate.incidents(viewer.tenant(), 500)? {
        let Ok(def) = s.flowgate.definition(
            viewer.tenant(),
            &instance.definition_id,
            instance.definition_version,
        ) else {
            continue;
        };
        incidents.extend(incidents_of(&instance, &def, |p| {
            s.flowgate.current_plugin_version(viewer.tenant(), p)
        }));
    }
    Ok(html(&IncidentsPage {
        chrome: viewer.chrome("incidents"),
        incidents,
    }))
}

/// Who an operator's action is recorded as.
fn operator(viewer: &Viewer, what: &str) -> Result<String, PageError> {
    if !viewer.is_admin() {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not yours to do",
            format!("Only an administrator may {what}."),
        ));
    }
    Ok(viewer.caller.token.clone())
}

pub async fn resolve(
    State(s): State<AppState>,
    viewer: Viewer,
    Path((id, token)): Path<(String, u64)>,
    form: Fields,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form)?;
    let by = operator(&viewer, "resolve incidents")?;
    let reason = form.get("reason").unwrap_or("").trim().to_string();
    if reason.is_empty() {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Say why",
            "Resolving an incident needs a reason; it is kept in the history.",
        ));
    }
    let resolution = match form.get("action") {
        Some("retry") => Resolution::Retry {
            plugin_version: None,
        },
        Some("retry-current") => {
            viewer.take_command(&s)?;
            s.flowgate
                .retry_on_current(viewer.tenant(), &id, token, &by, reason)
                .await?;
            return Ok(Redirect::to(&format!("/instances/{}", urlencode(&id))).into_response());
        }
        Some("skip") => Resolution::Skip {
            outcome: form
                .get("outcome")
                .filter(|o| !o.is_empty())
                .map(str::to_string),
            data: skip_data(form.get("data").unwrap_or(""))?,
        },
        _ => {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose retry or skip",
                "The form must say whether to retry the step or skip it.",
            ));
        }
    };
    viewer.take_command(&s)?;
    s.flowgate
        .resolve_incident(viewer.tenant(), &id, token, &by, resolution, reason)
        .await?;
    Ok(Redirect::to(&format!("/instances/{}", urlencode(&id))).into_response())
}

/// The data an operator gives a skipped step: a JSON object (operators write it), kept exactly.
fn skip_data(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(serde_json::Map::new());
    }
    let refuse = |why: String| {
        PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The data is not usable",
            format!("The data for the skipped step must be a JSON object: {why}"),
        )
    };
    if let Some(inexact) = crate::daemon::exact::first_inexact(text.as_bytes()) {
        return Err(refuse(format!(
            "`{}` is {}, which cannot be kept exactly",
            inexact.field, inexact.literal
        )));
    }
    serde_json::from_str(text).map_err(|e| refuse(e.to_string()))
}

pub async fn cancel(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    let (by, reason) = reasoned(&s, &viewer, &form, "cancel instances", "Cancelling")?;
    s.flowgate.cancel(viewer.tenant(), &id, &by, reason).await?;
    Ok(Redirect::to(&format!("/instances/{}", urlencode(&id))).into_response())
}

pub async fn pause(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    let (by, reason) = reasoned(&s, &viewer, &form, "pause instances", "Pausing")?;
    s.flowgate.pause(viewer.tenant(), &id, &by, reason).await?;
    Ok(Redirect::to(&format!("/instances/{}", urlencode(&id))).into_response())
}

pub async fn resume(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    let (by, reason) = reasoned(&s, &viewer, &form, "resume instances", "Resuming")?;
    s.flowgate
        .resume(viewer.tenant(), &id, &by, Some(reason))
        .await?;
    Ok(Redirect::to(&format!("/instances/{}", urlencode(&id))).into_response())
}

/// An operator's form that changes an instance: its CSRF token checked, the operator, and the
/// reason it must give (`doing` names the act: "Cancelling").
fn reasoned(
    s: &AppState,
    viewer: &Viewer,
    form: &Fields,
    what: &str,
    doing: &str,
) -> Result<(String, String), PageError> {
    viewer.check_csrf(form)?;
    let by = operator(viewer, what)?;
    let reason = form.get("reason").unwrap_or("").trim().to_string();
    if reason.is_empty() {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Say why",
            format!("{doing} an instance needs a reason; it is kept in the history."),
        ));
    }
    viewer.take_command(s)?;
    Ok((by, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Format, parse};

    #[test]
    fn a_join_counts_branches_for_a_parallel_step_and_instances_for_a_fan_out() {
        let def = parse(
            "w.toml",
            r#"
id = "w"
start = "ask"

[[steps]]
id = "ask"
kind = "subworkflow"
title = "Ask the suppliers"
workflow = "quote"
for_each = "suppliers"
join = "quorum"
required = 2
next = "split"

[[steps]]
id = "split"
kind = "parallel"
branches = ["a", "b"]
join = "both"

[[steps]]
id = "a"
kind = "task"
role = "r"
next = "both"

[[steps]]
id = "b"
kind = "task"
role = "r"
next = "both"

[[steps]]
id = "both"
kind = "join"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#,
            Format::Toml,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let joined = |step: &str| Event {
            seq: 0,
            at: 0,
            actor: Actor::System,
            kind: EventKind::BranchJoined {
                step: step.into(),
                arrived: 1,
                required: 2,
            },
            reason: None,
        };
        assert_eq!(
            entry(&def, &joined("ask")).what,
            "“Ask the suppliers”: 1 of 2 instances ended"
        );
        assert_eq!(
            entry(&def, &joined("both")).what,
            "“both”: 1 of 2 branches in"
        );
    }
}
