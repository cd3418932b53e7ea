//! Workflow metrics drawn: cycle time by outcome, where work waits per step (task completion and
//! handoff delay), error rates and the automation share, over a chosen time range.

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
    let (range, _, span) = RANGES
        .iter()
        .find(|(key, _, _)| *key == q.range)
        .copied()
        .unwrap_or(RANGES[2]);
    let to = s.flowgate.clock().now().saturating_add(1);
    let from = to.saturating_sub(span);
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
