//! Process instances: the workflow instances that serve one business case, linked by the
//! process id they inherit (sub-workflows, and the workflows an end step starts next), shown as
//! one timeline with the figures of the whole case: end-to-end cycle time, the handoff delay
//! between one workflow's end and the next one's start, and where the case waited most.

use std::collections::BTreeMap;

use super::{Flowgate, ServiceError};
use crate::engine::{Event, EventKind, Instance, Millis, Status};
use crate::store::InstanceFilter;

/// The instances of a process instance that one view reads at most.
const MAX_INSTANCES: usize = 1_000;

/// A process instance as one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessView {
    pub process: String,
    /// Its instances, in the order they started.
    pub instances: Vec<ProcessMember>,
    /// Every event of every instance, in time order.
    pub timeline: Vec<ProcessEvent>,
    /// Whether any instance still runs.
    pub running: bool,
    /// From the first start to the last end; none while it runs.
    pub cycle_ms: Option<Millis>,
    /// Each following workflow: the delay between its predecessor's end and its start.
    pub handoffs: Vec<Handoff>,
    /// The steps whose tasks the case spent longest on, longest first.
    pub waits: Vec<Wait>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessMember {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    pub status: Status,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// The instance that started it (a sub-workflow's parent), if one did.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessEvent {
    pub instance: String,
    pub workflow: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Handoff {
    pub from: String,
    pub to: String,
    pub workflow: String,
    pub delay_ms: Millis,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Wait {
    pub workflow: String,
    pub step: String,
    /// Time from the step's tasks opening to their completion, summed.
    pub ms: Millis,
}

impl Flowgate {
    /// The process instance `id`: its instances, one timeline, and its figures.
    pub fn process(&self, tenant: &str, id: &str) -> Result<ProcessView, ServiceError> {
        let filter = InstanceFilter {
            process: Some(id.to_string()),
            limit: MAX_INSTANCES,
            ..Default::default()
        };
        let mut members: Vec<(Instance, Vec<Event>)> = Vec::new();
        for instance in self.shared.store.instances(tenant, &filter)? {
            let history = self.history(tenant, &instance.id)?;
            members.push((instance, history));
        }
        if members.is_empty() {
            return Err(ServiceError::NotFound {
                what: "process",
                id: id.to_string(),
            });
        }
        members.sort_by(|a, b| (a.0.started_at, &a.0.id).cmp(&(b.0.started_at, &b.0.id)));
        Ok(view(id, &members))
    }
}

fn view(process: &str, members: &[(Instance, Vec<Event>)]) -> ProcessView {
    let running = members.iter().any(|(i, _)| i.status == Status::Running);
    let first = members.iter().map(|(i, _)| i.started_at).min().unwrap_or(0);
    let last = members.iter().filter_map(|(i, _)| i.ended_at).max();
    let cycle_ms = (!running).then(|| last.unwrap_or(first).saturating_sub(first));
    let mut timeline: Vec<ProcessEvent> = members
        .iter()
        .flat_map(|(i, events)| {
            events.iter().map(|e| ProcessEvent {
                instance: i.id.clone(),
                workflow: i.definition_id.clone(),
                event: e.clone(),
            })
        })
        .collect();
    timeline.sort_by(|a, b| {
        (a.event.at, &a.instance, a.event.seq).cmp(&(b.event.at, &b.instance, b.event.seq))
    });
    // A following workflow starts from the end of the instance whose end step named it.
    let mut handoffs = Vec::new();
    for (i, events) in members {
        for event in events {
            let EventKind::NextStarted { workflow } = &event.kind else {
                continue;
            };
            // The instance that followed, as the end step recorded it; histories from before
            // ends waited for their next workflow name only the workflow.
            let followed = events.iter().find_map(|e| match &e.kind {
                EventKind::FollowedBy { instance, .. } => Some(instance.as_str()),
                _ => None,
            });
            let next = members.iter().find(|(m, _)| match followed {
                Some(id) => m.id == id,
                None => {
                    m.definition_id == *workflow
                        && m.started_at >= event.at
                        && m.started_by == format!("workflow {}", i.definition_id)
                }
            });
            if let Some((next, _)) = next {
                handoffs.push(Handoff {
                    from: i.id.clone(),
                    to: next.id.clone(),
                    workflow: workflow.clone(),
                    delay_ms: next.started_at.saturating_sub(event.at),
                });
            }
        }
    }
    let mut spent: BTreeMap<(String, String), Millis> = BTreeMap::new();
    for (i, events) in members {
        let mut opened: BTreeMap<&str, (&str, Millis)> = BTreeMap::new();
        for event in events {
            match &event.kind {
                EventKind::TaskCreated { task, step, .. } => {
                    opened.insert(task, (step, event.at));
                }
                EventKind::TaskCompleted { task, .. } | EventKind::TaskCancelled { task } => {
                    if let Some((step, at)) = opened.remove(task.as_str()) {
                        *spent
                            .entry((i.definition_id.clone(), step.to_string()))
                            .or_default() += event.at.saturating_sub(at);
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
    waits.sort_by_key(|w| std::cmp::Reverse(w.ms));
    ProcessView {
        process: process.to_string(),
        instances: members
            .iter()
            .map(|(i, _)| ProcessMember {
                id: i.id.clone(),
                workflow: i.definition_id.clone(),
                version: i.definition_version,
                status: i.status,
                started_at: i.started_at,
                ended_at: i.ended_at,
                parent: i.parent.as_ref().map(|p| p.instance.clone()),
            })
            .collect(),
        timeline,
        running,
        cycle_ms,
        handoffs,
        waits,
    }
}
