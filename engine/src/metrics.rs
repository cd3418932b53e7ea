//! Workflow metrics, computed from instances' histories (the domain's definitions):
//!
//! - **cycle time**: an instance's start to its end, per outcome;
//! - **task completion time**: a task becoming available to its completion, per step;
//! - **handoff delay**: a task becoming available (the previous step's end) to the start of work
//!   on it: its claim, or its completion when nobody claimed it;
//! - **error rate**: failed plugin calls over all plugin calls, per step;
//! - **automation share**: steps completed by plugins, timers or the engine rather than people.
//!
//! Percentiles (p50, p90, p99) over a time range, not only averages. Pure: events in, numbers out.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::definition::Definition;
use crate::{Actor, Event, EventKind, Instance, Millis};

/// Summary of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(mut samples: Vec<u64>) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let rank = |p: usize| {
            samples[((samples.len() * p).div_ceil(100))
                .saturating_sub(1)
                .min(samples.len() - 1)]
        };
        Summary {
            count: samples.len(),
            mean_ms: samples.iter().sum::<u64>() as f64 / samples.len() as f64,
            p50_ms: rank(50),
            p90_ms: rank(90),
            p99_ms: rank(99),
            max_ms: samples[samples.len() - 1],
        }
    }
}

/// Metrics of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepMetrics {
    pub completed: u64,
    pub completed_by_people: u64,
    pub task_completion: Summary,
    /// The same, counted in the tenant's working hours only (business time).
    pub task_completion_business: Summary,
    pub handoff_delay: Summary,
    pub plugin_calls: u64,
    pub plugin_failures: u64,
    /// `plugin_failures / plugin_calls`, or 0 without calls.
    pub error_rate: f64,
}

/// Metrics of one workflow over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkflowMetrics {
    pub workflow: String,
    #[serde(with = "crate::time::rfc3339")]
    pub from: Millis,
    #[serde(with = "crate::time::rfc3339")]
    pub to: Millis,
    pub started: u64,
    pub ended: u64,
    /// Outcome (`completed`, `rejected`, `cancelled`) → cycle times of instances ended in range.
    pub cycle_time: BTreeMap<String, Summary>,
    /// The same, counted in the tenant's working hours only (business time).
    pub cycle_time_business: BTreeMap<String, Summary>,
    pub steps: BTreeMap<String, StepMetrics>,
    /// Share of completed steps (tasks, approvals, actions, routes, waits, sub-workflows) that no
    /// person completed.
    pub automation_share: f64,
}

/// Kinds of step that count for automation share: structural steps (parallel, join, end) do not.
fn counts_as_work(def: &Definition, step: &str) -> bool {
    def.step(step)
        .is_some_and(|s| !matches!(s.kind(), "parallel" | "join" | "end"))
}

/// What one instance contributes to its workflow's metrics, each fact at the time it happened:
/// enough to compute the metrics of any range without the history. Kept when the instance is
/// archived (a few hundred bytes against its history's kilobytes), so reports still cover the
/// archived period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub instance: String,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: Millis,
    /// When the `instance-started` event happened (absent from a history that lacks it).
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub started_event: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<EndFact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskFact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepFact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_calls: Vec<PluginFact>,
    /// On the instance that ended its case last, when the case was archived: the case's figures,
    /// so process metrics still cover it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<ArchivedCase>,
}

/// A whole case, as its process metrics need it once its instances are archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedCase {
    /// The instance that opened the case, and its workflow.
    pub root: String,
    pub root_workflow: String,
    pub figures: crate::process::CaseFigures,
}

/// The instance ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndFact {
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub outcome: String,
    pub cycle_ms: u64,
    pub cycle_business_ms: u64,
}

/// A task was completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFact {
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub step: String,
    pub completion_ms: u64,
    pub completion_business_ms: u64,
    pub handoff_ms: u64,
}

/// A step was completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFact {
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub step: String,
    pub by_person: bool,
    /// Counts for automation share (not a parallel, join or end).
    pub work: bool,
}

/// A plugin was called for a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginFact {
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub step: String,
    pub failed: bool,
}

/// The facts of one instance's history, durations also in business time by `calendar`.
pub fn facts(
    def: &Definition,
    instance: &Instance,
    events: &[Event],
    calendar: &Calendar,
) -> Facts {
    let mut facts = Facts {
        instance: instance.id.clone(),
        started_at: instance.started_at,
        ..Facts::default()
    };
    // task → (step, created at, first claim)
    let mut tasks: HashMap<&str, (&str, Millis, Option<Millis>)> = HashMap::new();
    for event in events {
        let at = event.at;
        match &event.kind {
            EventKind::InstanceStarted { .. } => facts.started_event = Some(at),
            EventKind::InstanceEnded { outcome, .. } => {
                facts.ended = Some(EndFact {
                    at,
                    outcome: outcome.clone(),
                    cycle_ms: at.saturating_sub(instance.started_at),
                    cycle_business_ms: calendar.between(instance.started_at, at),
                });
            }
            EventKind::TaskCreated { task, step, .. } => {
                tasks.insert(task, (step, at, None));
            }
            EventKind::TaskClaimed { task } => {
                if let Some(entry) = tasks.get_mut(task.as_str()) {
                    entry.2 = entry.2.or(Some(at));
                }
            }
            EventKind::TaskCompleted { task, .. } => {
                if let Some((step, created, claimed)) = tasks.get(task.as_str()) {
                    facts.tasks.push(TaskFact {
                        at,
                        step: step.to_string(),
                        completion_ms: at.saturating_sub(*created),
                        completion_business_ms: calendar.between(*created, at),
                        handoff_ms: claimed.unwrap_or(at).saturating_sub(*created),
                    });
                }
            }
            EventKind::StepCompleted { step, .. } => facts.steps.push(StepFact {
                at,
                step: step.clone(),
                by_person: event.actor.is_person(),
                work: counts_as_work(def, step),
            }),
            EventKind::ActionSucceeded { step, .. } | EventKind::Routed { step, .. } => {
                facts.plugin_calls.push(PluginFact {
                    at,
                    step: step.clone(),
                    failed: false,
                });
            }
            EventKind::ApprovalRequired { step, .. } | EventKind::AutoApproved { step }
                if matches!(event.actor, Actor::Plugin { .. }) =>
            {
                facts.plugin_calls.push(PluginFact {
                    at,
                    step: step.clone(),
                    failed: false,
                });
            }
            EventKind::PluginCallFailed { step, .. } => facts.plugin_calls.push(PluginFact {
                at,
                step: step.clone(),
                failed: true,
            }),
            _ => {}
        }
    }
    facts
}

/// Computes the metrics of `def`'s instances over `[from, to)`: events are counted when they
/// happen in the range, durations when they end in it; each duration also in business time by
/// `calendar`.
pub fn compute(
    def: &Definition,
    instances: &[(Instance, Vec<Event>)],
    from: Millis,
    to: Millis,
    calendar: &Calendar,
) -> WorkflowMetrics {
    let facts: Vec<Facts> = instances
        .iter()
        .map(|(instance, events)| facts(def, instance, events, calendar))
        .collect();
    summarize(&def.id, &facts, from, to)
}

/// The metrics of `workflow` over `[from, to)` from its instances' facts (live or archived).
pub fn summarize(workflow: &str, instances: &[Facts], from: Millis, to: Millis) -> WorkflowMetrics {
    let in_range = |t: Millis| t >= from && t < to;
    let mut cycle: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut cycle_business: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut completion: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut completion_business: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut handoff: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut steps: BTreeMap<String, StepMetrics> = BTreeMap::new();
    let (mut started, mut ended, mut work, mut automated) = (0, 0, 0u64, 0u64);

    for facts in instances {
        if facts.started_event.is_some_and(in_range) {
            started += 1;
        }
        if let Some(end) = facts.ended.as_ref().filter(|e| in_range(e.at)) {
            ended += 1;
            cycle
                .entry(end.outcome.clone())
                .or_default()
                .push(end.cycle_ms);
            cycle_business
                .entry(end.outcome.clone())
                .or_default()
                .push(end.cycle_business_ms);
        }
        for task in facts.tasks.iter().filter(|t| in_range(t.at)) {
            completion
                .entry(task.step.clone())
                .or_default()
                .push(task.completion_ms);
            completion_business
                .entry(task.step.clone())
                .or_default()
                .push(task.completion_business_ms);
            handoff
                .entry(task.step.clone())
                .or_default()
                .push(task.handoff_ms);
        }
        for step in facts.steps.iter().filter(|s| in_range(s.at)) {
            let m = steps.entry(step.step.clone()).or_default();
            m.completed += 1;
            if step.by_person {
                m.completed_by_people += 1;
            }
            if step.work {
                work += 1;
                if !step.by_person {
                    automated += 1;
                }
            }
        }
        for call in facts.plugin_calls.iter().filter(|c| in_range(c.at)) {
            let m = steps.entry(call.step.clone()).or_default();
            m.plugin_calls += 1;
            if call.failed {
                m.plugin_failures += 1;
            }
        }
    }
    for (step, samples) in completion {
        steps.entry(step).or_default().task_completion = Summary::of(samples);
    }
    for (step, samples) in completion_business {
        steps.entry(step).or_default().task_completion_business = Summary::of(samples);
    }
    for (step, samples) in handoff {
        steps.entry(step).or_default().handoff_delay = Summary::of(samples);
    }
    for m in steps.values_mut() {
        if m.plugin_calls > 0 {
            m.error_rate = m.plugin_failures as f64 / m.plugin_calls as f64;
        }
    }
    WorkflowMetrics {
        workflow: workflow.to_string(),
        from,
        to,
        started,
        ended,
        cycle_time: cycle
            .into_iter()
            .map(|(k, v)| (k, Summary::of(v)))
            .collect(),
        cycle_time_business: cycle_business
            .into_iter()
            .map(|(k, v)| (k, Summary::of(v)))
            .collect(),
        steps,
        automation_share: if work == 0 {
            0.0
        } else {
            automated as f64 / work as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;
    use crate::definition::{Format, parse};

    const DEF: &str = r#"
id = "w"
start = "review"
[[steps]]
id = "review"
kind = "task"
role = "r"
next = "pay"
[[steps]]
id = "pay"
kind = "action"
plugin = "p"
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;

    fn ev(seq: u64, at: Millis, actor: Actor, kind: EventKind) -> Event {
        Event {
            seq,
            at,
            actor,
            kind,
            reason: None,
        }
    }

    fn instance(id: &str, started_at: Millis) -> Instance {
        let mut i: Instance = serde_json::from_value(serde_json::json!({
            "id": id, "tenant": "t", "definition_id": "w", "definition_version": 1, "plugins": {},
            "status": "completed", "data": {}, "tokens": {}, "tasks": {}, "timers": {}, "forks": {},
            "parent": null, "started_by": "s", "started_at": 0, "ended_at": null, "version": 1,
            "history_len": 0, "next_id": 1
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        i.started_at = started_at;
        i.status = Status::Completed;
        i
    }

    /// An instance started at `t`: a task waits `wait` before its claim, takes `work` more, then
    /// the plugin fails `failures` times before it pays.
    fn run(id: &str, t: Millis, wait: u64, work: u64, failures: u64) -> (Instance, Vec<Event>) {
        let ann = Actor::person("ann");
        let plugin = Actor::Plugin {
            name: "p".into(),
            sha256: "s".into(),
        };
        let task = format!("{id}.t1");
        let mut events = vec![
            ev(
                0,
                t,
                ann.clone(),
                EventKind::InstanceStarted {
                    definition: "w".into(),
                    version: 1,
                    data: serde_json::json!({}),
                },
            ),
            ev(
                1,
                t,
                Actor::System,
                EventKind::TaskCreated {
                    task: task.clone(),
                    step: "review".into(),
                    assignee: None,
                    role: Some("r".into()),
                    candidates: vec![],
                    due_at: None,
                },
            ),
            ev(
                2,
                t + wait,
                ann.clone(),
                EventKind::TaskClaimed { task: task.clone() },
            ),
            ev(
                3,
                t + wait + work,
                ann.clone(),
                EventKind::TaskCompleted {
                    task,
                    step: "review".into(),
                    outcome: None,
                },
            ),
            ev(
                4,
                t + wait + work,
                ann,
                EventKind::StepCompleted {
                    step: "review".into(),
                    token: 1,
                    outcome: None,
                },
            ),
        ];
        let mut at = t + wait + work;
        for n in 0..failures {
            at += 10;
            events.push(ev(
                5 + n,
                at,
                plugin.clone(),
                EventKind::PluginCallFailed {
                    step: "pay".into(),
                    attempt: n as u32 + 1,
                    error: "busy".into(),
                    kind: None,
                    retry_at: None,
                },
            ));
        }
        at += 10;
        events.push(ev(
            20,
            at,
            plugin.clone(),
            EventKind::ActionSucceeded {
                step: "pay".into(),
                attempt: 1,
                note: String::new(),
            },
        ));
        events.push(ev(
            21,
            at,
            plugin,
            EventKind::StepCompleted {
                step: "pay".into(),
                token: 1,
                outcome: None,
            },
        ));
        events.push(ev(
            22,
            at,
            Actor::System,
            EventKind::InstanceEnded {
                outcome: "completed".into(),
                step: Some("done".into()),
            },
        ));
        (instance(id, t), events)
    }

    #[test]
    fn sla_metrics_count_business_time_beside_wall_clock_time() {
        let def = parse("w.toml", DEF, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        // Friday 2026-01-09 16:00 UTC; the task waits and is worked on over the weekend, so
        // the instance ends on Monday at 10:00: 66 hours, of which 2 are working hours
        // (Monday to Friday, 09:00-17:00 UTC).
        let friday = 1_767_974_400_000;
        let hour = 3_600_000;
        let data = vec![run("a", friday, 65 * hour, hour, 0)];
        let m = compute(&def, &data, 0, u64::MAX, &Calendar::default());
        // The end comes a few milliseconds after the task (the plugin step).
        let seconds = |ms: u64| ms / 1_000;
        assert_eq!(seconds(m.cycle_time["completed"].max_ms), 66 * 3_600);
        assert_eq!(
            seconds(m.cycle_time_business["completed"].max_ms),
            2 * 3_600
        );
        let review = &m.steps["review"];
        assert_eq!(review.task_completion.p50_ms, 66 * hour);
        assert_eq!(review.task_completion_business.p50_ms, 2 * hour);
    }

    #[test]
    fn metrics_follow_the_domain_definitions() {
        let def = parse("w.toml", DEF, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        let data = vec![
            run("a", 1_000, 100, 900, 0),
            run("b", 2_000, 300, 700, 1),
            run("c", 3_000, 500, 500, 3),
        ];
        let m = compute(&def, &data, 0, 100_000, &Calendar::default());
        assert_eq!((m.started, m.ended), (3, 3));
        let review = &m.steps["review"];
        assert_eq!(review.task_completion.count, 3);
        assert_eq!(review.task_completion.p50_ms, 1_000);
        assert_eq!(review.handoff_delay.p50_ms, 300);
        assert_eq!(review.handoff_delay.max_ms, 500);
        let pay = &m.steps["pay"];
        assert_eq!((pay.plugin_calls, pay.plugin_failures), (7, 4));
        assert!((pay.error_rate - 4.0 / 7.0).abs() < 1e-9);
        // review by a person, pay by the plugin: half the work is automated.
        assert!((m.automation_share - 0.5).abs() < 1e-9);
        let cycle = &m.cycle_time["completed"];
        assert_eq!((cycle.count, cycle.p50_ms), (3, 1_020));
        assert_eq!(cycle.max_ms, 1_040);
    }

    #[test]
    fn the_time_range_selects_what_ended_in_it() {
        let def = parse("w.toml", DEF, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        let data = vec![run("a", 1_000, 100, 900, 0), run("b", 50_000, 100, 900, 0)];
        let m = compute(&def, &data, 0, 10_000, &Calendar::default());
        assert_eq!((m.started, m.ended), (1, 1));
        assert_eq!(m.steps["review"].task_completion.count, 1);
        assert_eq!(
            compute(&def, &data, 60_000, 70_000, &Calendar::default()).ended,
            0
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Summary::of((1..=100).collect());
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (50, 90, 99, 100));
        assert_eq!(Summary::of(vec![]).count, 0);
        assert_eq!(Summary::of(vec![7]).p99_ms, 7);
    }
}
