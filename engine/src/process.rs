//! Processes: the workflows that serve one business case together (accounts payable is invoice
//! receipt, matching, approval and payment), and their figures across the linked workflows
//! (DOMAIN.md's process metrics):
//!
//! - **cycle time**: a case's first start to its last end, wall-clock and in business time;
//! - **handoff delay**: one workflow's end step asking for the next workflow to that workflow's
//!   start, per link;
//! - **where the case waits**: the time spent in each step of each workflow (from entering it to
//!   leaving it: a queue, a person working, a message or timer awaited), and its share of all;
//! - **cost per case**: each execution of a priced step, plus people's working time on tasks
//!   (from their claim, or the task opening when nobody claimed it, to its completion, counted
//!   in business time) at the tenant's cost per person-hour.
//!
//! Pure: a case's instances and histories in, numbers out.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::metrics::Summary;
use crate::{Event, EventKind, Instance, Millis, Status};

/// A process definition: the workflows that make it up and the one that opens a case. How
/// they link is in the workflows (end steps' `then`, sub-workflow steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessDefinition {
    /// Set from its key in the tenant's file.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The workflow whose instances (started by no other workflow) open a case.
    pub starts: String,
    /// Every workflow of the process, `starts` among them.
    pub workflows: Vec<String>,
}

impl ProcessDefinition {
    /// What is wrong with it on its own (the workflows' existence is checked against what is
    /// deployed): each problem names the field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.workflows.is_empty() {
            problems.push("workflows: names no workflow".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for w in &self.workflows {
            if !seen.insert(w) {
                problems.push(format!("workflows: `{w}` is listed twice"));
            }
        }
        if !self.workflows.contains(&self.starts) {
            problems.push(format!(
                "starts: `{}` is not one of the process's workflows",
                self.starts
            ));
        }
        problems
    }
}

/// What a tenant's work costs (`[costs]`): a price per execution of a step and per hour of
/// people's work on tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// An ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// The cost of an hour of a person's work on a task.
    #[serde(default)]
    pub person_hour: f64,
    /// `workflow.step` → the cost of each execution of that step (a plugin call, a service fee).
    #[serde(default)]
    pub steps: BTreeMap<String, f64>,
}

impl Costs {
    /// What is wrong with it: each problem names the field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let code =
            self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase());
        if !code {
            problems.push(format!(
                "currency: `{}` is not an ISO 4217 code like EUR",
                self.currency
            ));
        }
        if !(self.person_hour.is_finite() && self.person_hour >= 0.0) {
            problems.push(format!(
                "person_hour: {} is not an amount of zero or more",
                self.person_hour
            ));
        }
        for (key, amount) in &self.steps {
            if key
                .split_once('.')
                .is_none_or(|(w, s)| w.is_empty() || s.is_empty())
            {
                problems.push(format!("steps: `{key}` is not `workflow.step`"));
            }
            if !(amount.is_finite() && *amount >= 0.0) {
                problems.push(format!(
                    "steps.{key}: {amount} is not an amount of zero or more"
                ));
            }
        }
        problems
    }
}

/// One workflow handing the case on to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The instance that ended and the one that followed.
    pub from: String,
    pub to: String,
    pub from_workflow: String,
    pub workflow: String,
    pub delay_ms: Millis,
}

/// Time a case spent in one step of one workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub workflow: String,
    pub step: String,
    pub ms: Millis,
}

/// What one case cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseCost {
    pub currency: String,
    /// People's working time on its tasks, in business time.
    pub person_ms: Millis,
    pub people: f64,
    pub steps: f64,
    pub total: f64,
}

/// The figures of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFigures {
    /// Whether any instance still runs.
    pub running: bool,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: Millis,
    /// Its last end; none while it runs.
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub ended_at: Option<Millis>,
    pub cycle_ms: Option<Millis>,
    pub cycle_business_ms: Option<Millis>,
    /// How it ended: the workflow that ended last and its outcome (`payment completed`).
    pub outcome: Option<String>,
    pub handoffs: Vec<Handoff>,
    /// The steps the case spent time in, longest first.
    pub waits: Vec<Wait>,
    /// None when the tenant prices nothing.
    pub cost: Option<CaseCost>,
}

/// Rounded to the currency's cents.
fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// The figures of the case made of `members` (instances with their histories).
pub fn case_figures(
    members: &[(Instance, Vec<Event>)],
    calendar: &Calendar,
    costs: Option<&Costs>,
) -> CaseFigures {
    let running = members.iter().any(|(i, _)| i.status == Status::Running);
    let started_at = members.iter().map(|(i, _)| i.started_at).min().unwrap_or(0);
    let last = members
        .iter()
        .filter(|(i, _)| i.ended_at.is_some())
        .max_by_key(|(i, _)| (i.ended_at, i.started_at));
    let ended_at = if running {
        None
    } else {
        Some(last.and_then(|(i, _)| i.ended_at).unwrap_or(started_at))
    };
    let outcome = ended_at
        .and(last)
        .map(|(i, _)| format!("{} {}", i.definition_id, i.status.as_str()));

    let mut handoffs = Vec::new();
    let mut spent: BTreeMap<(String, String), Millis> = BTreeMap::new();
    let (mut person_ms, mut step_cost) = (0, 0.0);
    for (instance, events) in members {
        let workflow = &instance.definition_id;
        // token → (step, entered at); task → (opened, claimed)
        let mut entered: HashMap<u64, (&str, Millis)> = HashMap::new();
        let mut tasks: HashMap<&str, (Millis, Option<Millis>)> = HashMap::new();
        for event in events {
            match &event.kind {
                EventKind::StepEntered { step, token, .. } => {
                    entered.insert(*token, (step, event.at));
                }
                EventKind::StepCompleted { step, token, .. } => {
                    if let Some((_, at)) = entered.remove(token) {
                        *spent.entry((workflow.clone(), step.clone())).or_default() +=
                            event.at.saturating_sub(at);
                    }
                    if let Some(price) =
                        costs.and_then(|c| c.steps.get(&format!("{workflow}.{step}")))
                    {
                        step_cost += price;
                    }
                }
                EventKind::TaskCreated { task, .. } => {
                    tasks.insert(task, (event.at, None));
                }
                EventKind::TaskClaimed { task } => {
                    if let Some(t) = tasks.get_mut(task.as_str()) {
                        t.1 = t.1.or(Some(event.at));
                    }
                }
                EventKind::TaskCompleted { task, .. } => {
                    // Someone outside the organization (a client signing from a link) is not
                    // the tenant's people's time.
                    let outside = instance
                        .tasks
                        .get(task.as_str())
                        .is_some_and(|t| t.link_expires_at.is_some());
                    if let Some((opened, claimed)) = tasks.remove(task.as_str())
                        && !outside
                    {
                        person_ms += calendar.between(claimed.unwrap_or(opened), event.at);
                    }
                }
                EventKind::NextStarted { workflow: next } => {
                    // The instance that followed, as the end step recorded it; histories from
                    // before ends waited for their next workflow name only the workflow.
                    let followed = events.iter().find_map(|e| match &e.kind {
                        EventKind::FollowedBy { instance, .. } => Some(instance.as_str()),
                        _ => None,
                    });
                    let to = members.iter().find(|(m, _)| match followed {
                        Some(id) => m.id == id,
                        None => {
                            m.definition_id == *next
                                && m.started_at >= event.at
                                && m.started_by == format!("workflow {workflow}")
                        }
                    });
                    if let Some((to, _)) = to {
                        handoffs.push(Handoff {
                            from: instance.id.clone(),
                            to: to.id.clone(),
                            from_workflow: workflow.clone(),
                            workflow: next.clone(),
                            delay_ms: to.started_at.saturating_sub(event.at),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    let mut waits: Vec<Wait> = spent
        .into_iter()
        .map(|((workflow, step), ms)| Wait { workflow, step, ms })
        .collect();
    waits.sort_by(|a, b| {
        b.ms.cmp(&a.ms)
            .then_with(|| (&a.workflow, &a.step).cmp(&(&b.workflow, &b.step)))
    });
    let cost = costs.map(|c| {
        let people = person_ms as f64 / 3_600_000.0 * c.person_hour;
        CaseCost {
            currency: c.currency.clone(),
            person_ms,
            people: cents(people),
            steps: cents(step_cost),
            total: cents(people + step_cost),
        }
    });
    CaseFigures {
        running,
        started_at,
        ended_at,
        cycle_ms: ended_at.map(|end| end.saturating_sub(started_at)),
        cycle_business_ms: ended_at.map(|end| calendar.between(started_at, end)),
        outcome,
        handoffs,
        waits,
        cost,
    }
}

/// Amounts of money over cases: nearest-rank percentiles, rounded to cents.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Amounts {
    pub count: usize,
    pub total: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Amounts {
    pub fn of(mut samples: Vec<f64>) -> Amounts {
        if samples.is_empty() {
            return Amounts::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |p: usize| samples[(n * p).div_ceil(100).saturating_sub(1).min(n - 1)];
        let total: f64 = samples.iter().sum();
        Amounts {
            count: n,
            total: cents(total),
            mean: cents(total / n as f64),
            p50: cents(rank(50)),
            p90: cents(rank(90)),
            p99: cents(rank(99)),
            max: cents(samples[n - 1]),
        }
    }
}

/// Cost per case over a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostMetrics {
    pub currency: String,
    pub per_case: Amounts,
    /// People's share and the priced steps' share of `per_case.total`.
    pub people: f64,
    pub steps: f64,
}

/// Time spent in one step across the cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepWait {
    pub workflow: String,
    pub step: String,
    pub total_ms: Millis,
    /// Its share of all the time the cases spent in steps and handoffs.
    pub share: f64,
    /// Per case that passed through it.
    pub per_case: Summary,
}

/// A process's metrics over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessMetrics {
    pub process: String,
    #[serde(with = "crate::time::rfc3339")]
    pub from: Millis,
    #[serde(with = "crate::time::rfc3339")]
    pub to: Millis,
    /// Cases opened in the range.
    pub started: u64,
    /// Cases that ended in the range: every figure below is theirs.
    pub ended: u64,
    /// Cases opened before `to` that still run.
    pub running: u64,
    /// How they ended: `workflow outcome` → cases.
    pub outcomes: BTreeMap<String, u64>,
    pub cycle_time: Summary,
    pub cycle_time_business: Summary,
    /// `from-workflow → workflow` → delays.
    pub handoffs: BTreeMap<String, Summary>,
    /// Where the cases wait most, longest first; handoffs are counted with their links.
    pub waits: Vec<StepWait>,
    /// None when the tenant prices nothing.
    pub cost: Option<CostMetrics>,
}

/// The metrics of `process` over its cases' figures: those of live cases, and those kept when a
/// case was archived.
pub fn compute(
    process: &ProcessDefinition,
    cases: impl IntoIterator<Item = CaseFigures>,
    from: Millis,
    to: Millis,
    costs: Option<&Costs>,
) -> ProcessMetrics {
    let in_range = |t: Millis| t >= from && t < to;
    let (mut started, mut ended, mut running) = (0, 0, 0);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut cycle, mut cycle_business) = (Vec::new(), Vec::new());
    let mut handoffs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut waits: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let (mut totals, mut people, mut steps) = (Vec::new(), 0.0, 0.0);
    for figures in cases {
        if in_range(figures.started_at) {
            started += 1;
        }
        let Some(end) = figures.ended_at else {
            if figures.started_at < to {
                running += 1;
            }
            continue;
        };
        if !in_range(end) {
            continue;
        }
        ended += 1;
        if let Some(outcome) = figures.outcome {
            *outcomes.entry(outcome).or_default() += 1;
        }
        cycle.extend(figures.cycle_ms);
        cycle_business.extend(figures.cycle_business_ms);
        for h in figures.handoffs {
            let link = format!("{} → {}", h.from_workflow, h.workflow);
            handoffs.entry(link.clone()).or_default().push(h.delay_ms);
            waits
                .entry((h.from_workflow, format!("(handoff to {})", h.workflow)))
                .or_default()
                .push(h.delay_ms);
        }
        for w in figures.waits {
            waits.entry((w.workflow, w.step)).or_default().push(w.ms);
        }
        if let Some(cost) = figures.cost {
            totals.push(cost.total);
            people += cost.people;
            steps += cost.steps;
        }
    }
    let all: u64 = waits.values().flatten().sum();
    let mut waits: Vec<StepWait> = waits
        .into_iter()
        .map(|((workflow, step), samples)| {
            let total_ms: u64 = samples.iter().sum();
            StepWait {
                workflow,
                step,
                total_ms,
                share: if all == 0 {
                    0.0
                } else {
                    total_ms as f64 / all as f64
                },
                per_case: Summary::of(samples),
            }
        })
        .collect();
    waits.sort_by(|a, b| {
        b.total_ms
            .cmp(&a.total_ms)
            .then_with(|| (&a.workflow, &a.step).cmp(&(&b.workflow, &b.step)))
    });
    ProcessMetrics {
        process: process.id.clone(),
        from,
        to,
        started,
        ended,
        running,
        outcomes,
        cycle_time: Summary::of(cycle),
        cycle_time_business: Summary::of(cycle_business),
        handoffs: handoffs
            .into_iter()
            .map(|(k, v)| (k, Summary::of(v)))
            .collect(),
        waits,
        cost: costs.map(|c| CostMetrics {
            currency: c.currency.clone(),
            per_case: Amounts::of(totals),
            people: cents(people),
            steps: cents(steps),
        }),
    }
}
