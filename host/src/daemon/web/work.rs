//! The pages of the people who do the work: the inbox, and a task with its form and outcomes.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::format::{self, DataRow};
use super::forms::{FieldView, draw, form_data, refused_error};
use super::operate::{Entry, timeline};
use super::{Chrome, Fields, PageError, Viewer, html, urlencode};
use crate::daemon::AppState;
use crate::daemon::auth::Access;
use crate::daemon::error::ApiError;
use crate::definition::{Definition, Step};
use crate::engine::{Instance, Person, Task, TaskStatus};
use crate::service::{Completion, TaskFilter};
use crate::store::Inbox;

/// Tasks on one inbox page.
const PAGE: usize = 25;

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    workflow: String,
    /// `overdue` or `day` (due within 24 hours).
    #[serde(default)]
    due: String,
    #[serde(default)]
    unclaimed: Option<String>,
    after: Option<String>,
    /// Only the rows, for the page's refresh.
    #[serde(default)]
    rows: Option<String>,
    /// The title of a task just completed, to say so.
    done: Option<String>,
}

/// One task in the inbox.
#[derive(Debug)]
struct Row {
    id: String,
    title: String,
    subject: String,
    workflow: String,
    waited: String,
    created: String,
    due: Option<String>,
    due_in: String,
    overdue: bool,
    claimed_by: Option<String>,
    offered_to: String,
}

#[derive(Debug, Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    chrome: Chrome,
    rows: Vec<Row>,
    workflows: Vec<String>,
    workflow: String,
    due: String,
    unclaimed: bool,
    next: Option<String>,
    first_page: bool,
    done: Option<String>,
    admin_note: bool,
}

#[derive(Debug, Template)]
#[template(path = "inbox_rows.html")]
struct InboxRows {
    rows: Vec<Row>,
}

pub async fn inbox(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<InboxQuery>,
) -> Result<Response, PageError> {
    let now = s.flowgate.clock().now();
    let (sources, admin_note) = match &viewer.caller.access {
        Access::Person(me) => {
            let mut sources = vec![Inbox::Person(me.id.clone())];
            sources.extend(me.roles.iter().cloned().map(Inbox::Role));
            (sources, false)
        }
        Access::Admin => (Vec::new(), true),
    };
    let filter = TaskFilter {
        workflow: Some(q.workflow.clone()).filter(|w| !w.is_empty()),
        step: None,
        due_before: match q.due.as_str() {
            "overdue" => Some(now),
            "day" => Some(now + 86_400_000),
            _ => None,
        },
        unclaimed: q.unclaimed.is_some(),
    };
    // My tasks and my roles' tasks, merged in task id order (the order each inbox pages in).
    let mut merged: BTreeMap<String, Task> = BTreeMap::new();
    let mut more = false;
    for source in &sources {
        let page =
            s.flowgate
                .inbox_page(viewer.tenant(), source, &filter, q.after.as_deref(), PAGE)?;
        more |= page.next.is_some();
        merged.extend(page.tasks.into_iter().map(|t| (t.id.clone(), t)));
    }
    more |= merged.len() > PAGE;
    let tasks: Vec<Task> = merged.into_values().take(PAGE).collect();
    let next = more.then(|| tasks.last().map(|t| t.id.clone())).flatten();
    let mut instances: BTreeMap<String, Option<Instance>> = BTreeMap::new();
    let mut rows = Vec::with_capacity(tasks.len());
    for task in tasks {
        let instance = instances
            .entry(task.instance.clone())
            .or_insert_with(|| s.flowgate.instance(viewer.tenant(), &task.instance).ok());
        let (workflow, subject) = match instance {
            Some(i) => {
                let def = s
                    .flowgate
                    .definition(viewer.tenant(), &i.definition_id, i.definition_version)
                    .ok();
                (
                    workflow_name(def.as_deref(), &i.definition_id),
                    subject(def.as_deref(), &i.data),
                )
            }
            None => (String::new(), String::new()),
        };
        rows.push(row(task, workflow, subject, now));
    }
    if q.rows.is_some() {
        return Ok(html(&InboxRows { rows }));
    }
    let workflows = super::workflow_ids(&s, viewer.tenant())?;
    Ok(html(&InboxPage {
        chrome: viewer.chrome("inbox"),
        rows,
        workflows,
        workflow: q.workflow,
        due: q.due,
        unclaimed: q.unclaimed.is_some(),
        next,
        first_page: q.after.is_none(),
        done: q.done,
        admin_note,
    }))
}

fn row(task: Task, workflow: String, subject: String, now: u64) -> Row {
    let offered_to = format::offered_to(&task);
    Row {
        waited: format::span(now.saturating_sub(task.created_at)),
        created: format::iso(task.created_at),
        due: task.due_at.map(format::iso),
        due_in: match task.due_at {
            Some(due) if due <= now => format!("{} overdue", format::span(now - due)),
            Some(due) => format!("in {}", format::span(due - now)),
            None => String::new(),
        },
        overdue: task.due_at.is_some_and(|d| d <= now),
        claimed_by: task.claimed_by.clone(),
        offered_to,
        workflow,
        subject,
        title: task.title,
        id: task.id,
    }
}

/// The workflow's display name, or its id.
fn workflow_name(def: Option<&Definition>, id: &str) -> String {
    def.map_or(id, Definition::display_name).to_string()
}

/// What an instance is about, in a few words from its data.
fn subject(def: Option<&Definition>, data: &Map<String, Value>) -> String {
    for key in ["title", "subject", "summary", "name", "description", "item"] {
        if let Some(Value::String(s)) = data.get(key) {
            return s.clone();
        }
    }
    format::data_rows(def, data)
        .into_iter()
        .take(2)
        .map(|r| format!("{}: {}", r.label, r.value))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// An outcome button.
#[derive(Debug)]
struct Outcome {
    value: String,
    label: String,
    /// `primary`, `danger` or `secondary`.
    tone: &'static str,
}

#[derive(Debug, Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    task: Task,
    workflow: String,
    subject: String,
    data: Vec<DataRow>,
    history: Vec<Entry>,
    fields: Vec<FieldView>,
    outcomes: Vec<Outcome>,
    /// Whether this viewer may complete it now.
    can_act: bool,
    claimed_by_me: bool,
    claimable: bool,
    /// Why the form is not there (completed, withdrawn, claimed by another).
    note: Option<String>,
    error: Option<String>,
    comment: String,
    created: String,
    due: Option<String>,
    overdue: bool,
}

pub async fn task(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let page = task_page(&s, &viewer, &id, &Fields::default(), None)?;
    Ok(html(&page))
}

/// The task page; with `submitted` values and the error the server gave them, after a refusal.
fn task_page(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
    submitted: &Fields,
    error: Option<&ApiError>,
) -> Result<TaskPage, PageError> {
    let (instance, task, def) = find_task(s, viewer, id)?;
    let history = s.flowgate.history(viewer.tenant(), &instance.id)?;
    let now = s.flowgate.clock().now();
    let me = match &viewer.caller.access {
        Access::Person(p) => Some(p),
        Access::Admin => None,
    };
    let form = match def.step(&task.step) {
        Some(Step::Task(step)) => step.form.clone(),
        Some(Step::Approval(step)) => step.form.clone(),
        _ => Vec::new(),
    };
    let (fields, general) = draw(&form, submitted, error);
    let open = task.status == TaskStatus::Open;
    let paused = instance.paused.is_some();
    let claimed_by_me = me.is_some_and(|p| task.claimed_by.as_deref() == Some(p.id.as_str()));
    let claimed_by_other = task.claimed_by.is_some() && !claimed_by_me;
    let note = match task.status {
        TaskStatus::Completed => Some(format!(
            "{} completed this task {}{}.",
            task.completed_by.clone().unwrap_or_else(|| "Someone".to_string()),
            task.completed_at
                .map(|t| format!("{} ago", format::span(now.saturating_sub(t))))
                .unwrap_or_default(),
            task.outcome
                .as_ref()
                .map(|o| format!(" with the outcome {}", format::label(o).to_lowercase()))
                .unwrap_or_default()
        )),
        TaskStatus::Cancelled => Some(
            "This task was withdrawn: the workflow moved on without it (cancelled, escalated or decided elsewhere)."
                .to_string(),
        ),
        TaskStatus::Open if me.is_none() => Some(
            "You are signed in as an administrator: people complete tasks with their own sign-in.".to_string(),
        ),
        TaskStatus::Open if instance.paused.is_some() => instance.paused.as_ref().map(|p| {
            format!(
                "This {} is paused ({}): you can act on the task once it is resumed.",
                workflow_name(Some(&def), &def.id).to_lowercase(),
                p.reason
            )
        }),
        TaskStatus::Open if claimed_by_other => Some(format!(
            "{} is working on this task.",
            task.claimed_by.clone().unwrap_or_default()
        )),
        TaskStatus::Open => None,
    };
    Ok(TaskPage {
        chrome: viewer.chrome("inbox"),
        workflow: workflow_name(Some(&def), &def.id),
        subject: subject(Some(&def), &instance.data),
        data: format::data_rows(Some(&def), &instance.data),
        history: timeline(&def, &history),
        fields,
        outcomes: task.outcomes.iter().map(|o| outcome(o)).collect(),
        can_act: open && me.is_some() && !claimed_by_other && !paused,
        claimed_by_me,
        claimable: open && me.is_some() && task.claimed_by.is_none() && !paused,
        note,
        error: general,
        comment: submitted.get("comment").unwrap_or("").to_string(),
        created: format::iso(task.created_at),
        due: task.due_at.map(format::iso),
        overdue: open && task.due_at.is_some_and(|d| d <= now),
        task,
    })
}

fn outcome(value: &str) -> Outcome {
    let tone = match value {
        "approve" | "accept" | "complete" | "done" | "resolve" | "sign" => "primary",
        "reject" | "decline" | "cancel" => "danger",
        _ => "secondary",
    };
    Outcome {
        value: value.to_string(),
        label: format::label(value),
        tone,
    }
}

/// The task with its instance and definition, if this viewer may see it: an administrator any
/// of the tenant's, a person one offered to them, their roles, or one they worked on.
fn find_task(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<(Instance, Task, Arc<Definition>), PageError> {
    let not_found = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no task `{id}`."),
        )
    };
    let instance_id = Instance::of_task(id).ok_or_else(not_found)?;
    let instance = s
        .flowgate
        .instance(viewer.tenant(), instance_id)
        .map_err(|_| not_found())?;
    let task = instance.tasks.get(id).cloned().ok_or_else(not_found)?;
    if let Access::Person(me) = &viewer.caller.access
        && !may_see(&task, me)
    {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not yours to open",
            format!(
                "Task `{id}` is for {}; you ({}) are not among them.",
                format::offered_to(&task),
                me.id
            ),
        ));
    }
    let def = s.flowgate.definition(
        viewer.tenant(),
        &instance.definition_id,
        instance.definition_version,
    )?;
    Ok((instance, task, def))
}

fn may_see(task: &Task, me: &Person) -> bool {
    let mine = |p: &Option<String>| p.as_deref() == Some(me.id.as_str());
    mine(&task.assignee)
        || mine(&task.claimed_by)
        || mine(&task.completed_by)
        || task.candidates.contains(&me.id)
        || task.role.as_ref().is_some_and(|r| me.roles.contains(r))
}

pub async fn complete(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form)?;
    let (instance, task, def) = find_task(&s, &viewer, &id)?;
    let fields = match def.step(&task.step) {
        Some(Step::Task(step)) => step.form.clone(),
        Some(Step::Approval(step)) => step.form.clone(),
        _ => Vec::new(),
    };
    let data = match form_data(&fields, &form, &instance.data) {
        Ok(data) => data,
        Err(refused) => {
            let error = refused_error(&refused);
            let page = task_page(&s, &viewer, &id, &form, Some(&error))?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response());
        }
    };
    let person = viewer.caller().person(None).map_err(PageError::from)?;
    viewer.take_command(&s)?;
    let completion = Completion {
        task: id.clone(),
        by: person,
        outcome: form
            .get("outcome")
            .map(str::to_string)
            .filter(|o| !o.is_empty()),
        data,
        expected_version: None,
        key: None,
        comment: form.get("comment").map(str::to_string),
    };
    match s.flowgate.complete(viewer.tenant(), completion).await {
        // Someone outside the organization has no inbox: their task page says it is done.
        Ok(_) if viewer.only_task.is_some() => {
            Ok(Redirect::to(&format!("/tasks/{}", urlencode(&id))).into_response())
        }
        Ok(_) => {
            Ok(Redirect::to(&format!("/inbox?done={}", urlencode(&task.title))).into_response())
        }
        Err(error) => {
            let error = ApiError::from(error);
            if error.status == StatusCode::UNPROCESSABLE_ENTITY {
                let page = task_page(&s, &viewer, &id, &form, Some(&error))?;
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response());
            }
            Err(PageError::from(error))
        }
    }
}

pub async fn claim(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    claim_or_unclaim(s, viewer, id, form, true).await
}

pub async fn unclaim(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, PageError> {
    claim_or_unclaim(s, viewer, id, form, false).await
}

async fn claim_or_unclaim(
    s: AppState,
    viewer: Viewer,
    id: String,
    form: Fields,
    claim: bool,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form)?;
    find_task(&s, &viewer, &id)?;
    let person = viewer.caller().person(None).map_err(PageError::from)?;
    viewer.take_command(&s)?;
    if claim {
        s.flowgate.claim_task(viewer.tenant(), &id, person).await?;
    } else {
        s.flowgate
            .unclaim_task(viewer.tenant(), &id, person)
            .await?;
    }
    Ok(Redirect::to(&format!("/tasks/{}", urlencode(&id))).into_response())
}
