//! Workflow metrics drawn: cycle time by outcome, where work waits per step (task completion and
//! handoff delay), error rates and the automation share, over a chosen time range. Process
//! metrics drawn: end-to-end cycle time, where cases wait across the workflows, the handoffs
//! between them, how cases ended and what a case costs.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, PageError, Viewer, format, html};
use crate::daemon::AppState;
use crate::metrics::Summary;

/// The ranges offered, as (query value, label, milliseconds).
const RANGES: [(&str, &str, u64); 4] = [
    ("1d", "Last 24 hours", 86_400_000),
    ("7d", "Last 7 days", 7 * 86_400_000),
    ("30d", "Last 30 days", 30 * 86_400_000),
    ("90d", "Last 90 days", 90 * 86_400_000),
];

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    range: String,
    /// Another workflow chosen in the page's form.
    workflow: Option<String>,
    /// Another process chosen in the page's form.
    process: Option<String>,
}

/// The range a query names (the last 30 days unless it names another), as (key, from, to).
fn range_of(q: &ReportQuery, now: u64) -> (&'static str, u64, u64) {
    let (range, _, span) = RANGES
        .iter()
        .find(|(key, _, _)| *key == q.range)
        .copied()
        .unwrap_or(RANGES[2]);
    let to = now.saturating_add(1);
    (range, to.saturating_sub(span), to)
}

/// A bar of a chart: its label, its value in words, and its length as a share of the longest.
#[derive(Debug)]
struct Bar {
    label: String,
    value: String,
    percent: u32,
}

#[derive(Debug)]
struct Outcome {
    outcome: String,
    count: usize,
    bars: Vec<Bar>,
}

#[derive(Debug)]
struct StepRow {
    title: String,
    completed: u64,
    by_people: u64,
    /// Median task completion time (available to done) and handoff delay (the previous step's
    /// end to the start of work), as bars on one scale.
    work: Bar,
    wait: Bar,
    error_rate: String,
    failing: bool,
}

#[derive(Debug, Template)]
#[template(path = "report.html")]
struct ReportPage {
    chrome: Chrome,
    workflows: Vec<(String, String)>,
    workflow: String,
    name: String,
    ranges: Vec<(&'static str, &'static str)>,
    range: String,
    from: String,
    to: String,
    started: u64,
    ended: u64,
    automation: u32,
    outcomes: Vec<Outcome>,
    steps: Vec<StepRow>,
    /// The tenant's processes, (id, name), for links to their reports.
    processes: Vec<(String, String)>,
}

/// A place a process's cases spend time: a step of one of its workflows, or a handoff.
#[derive(Debug)]
struct WaitRow {
    workflow: String,
    step: String,
    share: u32,
    total: String,
    median: String,
    cases: usize,
}

#[derive(Debug, Template)]
#[template(path = "process_report.html")]
struct ProcessReportPage {
    chrome: Chrome,
    processes: Vec<(String, String)>,
    process: String,
    name: String,
    description: String,
    /// The workflows, (id, name), in the process's order.
    workflows: Vec<(String, String)>,
    ranges: Vec<(&'static str, &'static str)>,
    range: String,
    from: String,
    to: String,
    started: u64,
    ended: u64,
    running: u64,
    cycle: Vec<Bar>,
    cycle_business: Vec<Bar>,
    waits: Vec<WaitRow>,
    handoffs: Vec<(String, String, String)>,
    outcomes: Vec<(String, u64)>,
    /// Per case: median, 90th percentile, mean, total; and people's and steps' shares.
    cost: Option<CostView>,
}

#[derive(Debug)]
struct CostView {
    currency: String,
    median: String,
    p90: String,
    mean: String,
    total: String,
    people: String,
    steps: String,
}

/// An amount of money as people read it: `1,234.50 EUR`.
fn money(amount: f64, currency: &str) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{grouped}.{frac:02} {currency}")
}

pub async fn process_report(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(process): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, PageError> {
    if let Some(other) = q.process.as_ref().filter(|p| **p != process) {
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&format!(
                "/reports/processes/{}?range={}",
                super::urlencode(other),
                super::urlencode(&q.range)
            )),
        ));
    }
    let (range, from, to) = range_of(&q, s.flowgate.clock().now());
    let definition = s.flowgate.process_definition(viewer.tenant(), &process)?;
    let flowgate = s.flowgate.clone();
    let (tenant, id) = (viewer.tenant().to_string(), process.clone());
    let m = tokio::task::spawn_blocking(move || flowgate.process_metrics(&tenant, &id, from, to))
        .await
        .map_err(|e| crate::service::ServiceError::Unavailable(e.to_string()))??;
    let latest = super::latest_definitions(&s, viewer.tenant())?;
    let workflow_name = |id: &str| {
        latest
            .get(id)
            .map_or(id.to_string(), |d| d.display_name().to_string())
    };
    let step_title = |workflow: &str, step: &str| {
        latest
            .get(workflow)
            .and_then(|d| d.step(step))
            .map_or(step.to_string(), |s| s.title().to_string())
    };
    let waits = m
        .waits
        .iter()
        .map(|w| WaitRow {
            workflow: workflow_name(&w.workflow),
            step: match w
                .step
                .strip_prefix("(handoff to ")
                .and_then(|r| r.strip_suffix(')'))
            {
                Some(next) => format!("Handing on to {}", workflow_name(next)),
                None => step_title(&w.workflow, &w.step),
            },
            share: (w.share * 100.0).round() as u32,
            total: duration(w.total_ms),
            median: duration(w.per_case.p50_ms),
            cases: w.per_case.count,
        })
        .collect();
    // In the order the process lists its workflows, which is the order a case goes through them.
    let position = |workflow: &str| {
        definition
            .definition
            .workflows
            .iter()
            .position(|w| w == workflow)
            .unwrap_or(usize::MAX)
    };
    let mut links: Vec<_> = m.handoffs.iter().collect();
    links.sort_by_key(|(link, _)| {
        let (a, b) = link.split_once(" → ").unwrap_or((link.as_str(), ""));
        (position(a), position(b))
    });
    let handoffs = links
        .into_iter()
        .map(|(link, summary)| {
            let (a, b) = link.split_once(" → ").unwrap_or((link, ""));
            (
                workflow_name(a),
                workflow_name(b),
                format!(
                    "{} median, {} at the 90th percentile",
                    duration(summary.p50_ms),
                    duration(summary.p90_ms)
                ),
            )
        })
        .collect();
    let outcomes = m
        .outcomes
        .iter()
        .map(|(outcome, n)| {
            let (workflow, how) = outcome.rsplit_once(' ').unwrap_or((outcome, ""));
            (format!("{how} in {}", workflow_name(workflow)), *n)
        })
        .collect();
    let cost = m.cost.as_ref().map(|c| CostView {
        currency: c.currency.clone(),
        median: money(c.per_case.p50, &c.currency),
        p90: money(c.per_case.p90, &c.currency),
        mean: money(c.per_case.mean, &c.currency),
        total: money(c.per_case.total, &c.currency),
        people: money(c.people, &c.currency),
        steps: money(c.steps, &c.currency),
    });
    let processes = process_names(&s, viewer.tenant())?;
    Ok(html(&ProcessReportPage {
        chrome: viewer.chrome("reports"),
        processes,
        name: if definition.definition.name.is_empty() {
            process.clone()
        } else {
            definition.definition.name.clone()
        },
        description: definition.definition.description.clone(),
        workflows: definition
            .definition
            .workflows
            .iter()
            .map(|w| (w.clone(), workflow_name(w)))
            .collect(),
        process,
        ranges: RANGES.iter().map(|(k, l, _)| (*k, *l)).collect(),
        range: range.to_string(),
        from: format::iso(from),
        to: format::iso(to),
        started: m.started,
        ended: m.ended,
        running: m.running,
        cycle: percentiles(&m.cycle_time),
        cycle_business: percentiles(&m.cycle_time_business),
        waits,
        handoffs,
        outcomes,
        cost,
    }))
}

/// The tenant's processes as (id, name).
fn process_names(s: &AppState, tenant: &str) -> Result<Vec<(String, String)>, PageError> {
    Ok(s.flowgate
        .process_definitions(tenant)?
        .into_iter()
        .map(|p| {
            let name = if p.definition.name.is_empty() {
                p.definition.id.clone()
            } else {
                p.definition.name.clone()
            };
            (p.definition.id, name)
        })
        .collect())
}

pub async fn index(State(s): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let first = s
        .flowgate
        .definitions(viewer.tenant())?
        .into_iter()
        .map(|d| d.definition.id)
        .min();
    match first {
        Some(id) => Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&format!("/reports/{}", super::urlencode(&id))),
        )),
        None => Err(PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            "No workflows yet",
            "Reports appear once a workflow is deployed and run.",
        )),
    }
}

pub async fn report(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(workflow): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, PageError> {
    if let Some(other) = q.workflow.as_ref().filter(|w| **w != workflow) {
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&format!(
                "/reports/{}?range={}",
                super::urlencode(other),
                super::urlencode(&q.range)
            )),
        ));
    }
    let (range, from, to) = range_of(&q, s.flowgate.clock().now());
    let m = s.flowgate.metrics(viewer.tenant(), &workflow, from, to)?;
    let latest = super::latest_definitions(&s, viewer.tenant())?;
    let def = latest.get(&workflow);
    let title = |step: &str| {
        def.and_then(|d| d.step(step))
            .map_or(step.to_string(), |s| s.title().to_string())
    };
    let outcomes = m
        .cycle_time
        .iter()
        .map(|(outcome, summary)| Outcome {
            outcome: outcome.clone(),
            count: summary.count,
            bars: percentiles(summary),
        })
        .collect();
    let longest = m
        .steps
        .values()
        .flat_map(|s| [s.task_completion.p50_ms, s.handoff_delay.p50_ms])
        .max()
        .unwrap_or(0);
    let steps = m
        .steps
        .iter()
        .map(|(step, sm)| StepRow {
            title: title(step),
            completed: sm.completed,
            by_people: sm.completed_by_people,
            work: bar("Until done", sm.task_completion.p50_ms, longest),
            wait: bar("Waiting", sm.handoff_delay.p50_ms, longest),
            error_rate: format!("{:.1} %", sm.error_rate * 100.0),
            failing: sm.error_rate > 0.0,
        })
        .collect();
    Ok(html(&ReportPage {
        chrome: viewer.chrome("reports"),
        workflows: latest
            .values()
            .map(|d| (d.id.clone(), d.display_name().to_string()))
            .collect(),
        name: def
            .map_or(workflow.as_str(), |d| d.display_name())
            .to_string(),
        workflow,
        ranges: RANGES.iter().map(|(k, l, _)| (*k, *l)).collect(),
        range: range.to_string(),
        from: format::iso(from),
        to: format::iso(to),
        started: m.started,
        ended: m.ended,
        automation: (m.automation_share * 100.0).round() as u32,
        outcomes,
        steps,
        processes: process_names(&s, viewer.tenant())?,
    }))
}

fn bar(label: &str, ms: u64, longest: u64) -> Bar {
    Bar {
        label: label.to_string(),
        value: duration(ms),
        percent: ms
            .saturating_mul(100)
            .checked_div(longest)
            .map_or(0, |p| p.min(100) as u32),
    }
}

/// p50, p90, p99 and the longest, as bars on the longest's scale.
fn percentiles(s: &Summary) -> Vec<Bar> {
    [
        ("Median", s.p50_ms),
        ("90th percentile", s.p90_ms),
        ("99th percentile", s.p99_ms),
        ("Longest", s.max_ms),
    ]
    .iter()
    .map(|(label, ms)| bar(label, *ms, s.max_ms))
    .collect()
}

/// A duration in the largest units that say it: `340 ms`, `12 s`, `3 h 5 min`.
fn duration(ms: u64) -> String {
    match ms {
        0 => "—".to_string(),
        1..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{} s", ms / 1_000),
        _ => format::span(ms),
    }
}
