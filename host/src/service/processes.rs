//! Processes: the workflow instances that serve one business case, linked by the process id
//! they inherit (sub-workflows, and the workflows an end step starts next). One case reads as
//! one timeline with its figures; a process definition (`[processes.<id>]` in the tenant's file)
//! names the workflows of a kind of case, and its metrics aggregate its cases over a time range.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use super::{Flowgate, ServiceError};
use crate::definition::Step;
use crate::engine::process::{
    CaseCost, Costs, Handoff, ProcessDefinition, ProcessMetrics, Wait, case_figures, compute,
};
use crate::engine::{Event, Instance, Millis, Status};
use crate::store::InstanceFilter;

/// The instances of a process instance that one view reads at most.
const MAX_INSTANCES: usize = 1_000;
/// The cases one metrics request reads at most (as workflow metrics read instances).
const MAX_CASES: usize = 100_000;

/// A tenant's process definitions and what its work costs.
#[derive(Debug, Clone, Default)]
pub struct ProcessSettings {
    pub definitions: BTreeMap<String, ProcessDefinition>,
    pub costs: Option<Costs>,
}

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
    /// The same in the tenant's working hours.
    pub cycle_business_ms: Option<Millis>,
    /// The workflow that ended last and its outcome, once it has ended.
    pub outcome: Option<String>,
    /// Each following workflow: the delay between its predecessor's end and its start.
    pub handoffs: Vec<Handoff>,
    /// The steps the case spent longest in, longest first.
    pub waits: Vec<Wait>,
    /// What it cost, when the tenant prices its work.
    pub cost: Option<CaseCost>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessMember {
    pub id: String,
    pub workflow: String,
    pub version: u32,
    pub status: Status,
    #[serde(with = "crate::engine::time::rfc3339")]
    pub started_at: Millis,
    #[serde(with = "crate::engine::time::rfc3339::option")]
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

/// A process definition with how its workflows link, as their deployed versions say.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessDefinitionView {
    #[serde(flatten)]
    pub definition: ProcessDefinition,
    pub links: Vec<Link>,
    /// What does not fit: a workflow not deployed, a link leaving the process.
    pub problems: Vec<String>,
}

/// One workflow starting another.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Link {
    pub from: String,
    /// The step that starts it: an end step (`next`) or a sub-workflow step (`subworkflow`).
    pub step: String,
    pub kind: &'static str,
    pub to: String,
}

impl Flowgate {
    pub(super) fn process_settings(&self, tenant: &str) -> Arc<ProcessSettings> {
        self.shared
            .processes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// The process instance `id`: its instances, one timeline, and its figures.
    pub fn process(&self, tenant: &str, id: &str) -> Result<ProcessView, ServiceError> {
        let members = self.case(tenant, id)?;
        if members.is_empty() {
            return Err(ServiceError::NotFound {
                what: "process",
                id: id.to_string(),
            });
        }
        let settings = self.process_settings(tenant);
        let figures = case_figures(
            &members,
            &self.shared.calendar(tenant),
            settings.costs.as_ref(),
        );
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
        Ok(ProcessView {
            process: id.to_string(),
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
            running: figures.running,
            cycle_ms: figures.cycle_ms,
            cycle_business_ms: figures.cycle_business_ms,
            outcome: figures.outcome,
            handoffs: figures.handoffs,
            waits: figures.waits,
            cost: figures.cost,
        })
    }

    /// Whether a start of `workflow` from outside (the API, a message, an inbound hook) may join
    /// process instance `process`: the case must exist in the tenant, the process definition
    /// that opens it (if any) must list the workflow, and the case must have room.
    pub(crate) fn joinable(
        &self,
        tenant: &str,
        process: &str,
        workflow: &str,
    ) -> Result<(), ServiceError> {
        let not_found = || ServiceError::NotFound {
            what: "process",
            id: process.to_string(),
        };
        // A process instance's id is the id of the instance that opened it.
        let opener = self
            .shared
            .committed(tenant, process)?
            .filter(|i| i.process_id() == process)
            .ok_or_else(not_found)?;
        let settings = self.process_settings(tenant);
        let kind = settings
            .definitions
            .values()
            .find(|p| p.starts == opener.definition_id);
        if let Some(kind) = kind
            && !kind.workflows.iter().any(|w| w == workflow)
        {
            return Err(ServiceError::Invalid {
                field: "process".into(),
                message: format!(
                    "process instance `{process}` is a case of `{}`, whose workflows ({}) do not include `{workflow}`",
                    kind.id,
                    kind.workflows.join(", ")
                ),
            });
        }
        let filter = InstanceFilter {
            process: Some(process.to_string()),
            limit: MAX_INSTANCES,
            ..Default::default()
        };
        if self.shared.store.instances(tenant, &filter)?.len() >= MAX_INSTANCES {
            return Err(ServiceError::Command(
                crate::engine::CommandError::Conflict(format!(
                    "process instance `{process}` already has {MAX_INSTANCES} instances, the most a case holds"
                )),
            ));
        }
        Ok(())
    }

    /// The instances of process instance `id` with their histories, in the order they started.
    pub(super) fn case(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<(Instance, Vec<Event>)>, ServiceError> {
        let filter = InstanceFilter {
            process: Some(id.to_string()),
            limit: MAX_INSTANCES,
            ..Default::default()
        };
        let mut members = Vec::new();
        for instance in self.shared.store.instances(tenant, &filter)? {
            let history = self.history(tenant, &instance.id)?;
            members.push((instance, history));
        }
        members.sort_by(|a, b| (a.0.started_at, &a.0.id).cmp(&(b.0.started_at, &b.0.id)));
        Ok(members)
    }

    /// The tenant's process definitions, with their links and problems.
    pub fn process_definitions(
        &self,
        tenant: &str,
    ) -> Result<Vec<ProcessDefinitionView>, ServiceError> {
        let settings = self.process_settings(tenant);
        settings
            .definitions
            .values()
            .map(|p| self.process_definition_view(tenant, p))
            .collect()
    }

    /// Process definition `id`, with its links and problems.
    pub fn process_definition(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<ProcessDefinitionView, ServiceError> {
        let settings = self.process_settings(tenant);
        let process = settings
            .definitions
            .get(id)
            .ok_or_else(|| ServiceError::NotFound {
                what: "process definition",
                id: id.to_string(),
            })?;
        self.process_definition_view(tenant, process)
    }

    fn process_definition_view(
        &self,
        tenant: &str,
        process: &ProcessDefinition,
    ) -> Result<ProcessDefinitionView, ServiceError> {
        let (mut links, mut problems) = (Vec::new(), Vec::new());
        for workflow in &process.workflows {
            let Some(stored) = self.shared.store.definition(tenant, workflow, None)? else {
                problems.push(format!("workflow `{workflow}` is not deployed"));
                continue;
            };
            for step in &stored.definition.steps {
                let (kind, to) = match step {
                    Step::End(end) => match &end.then {
                        Some(next) => ("next", &next.workflow),
                        None => continue,
                    },
                    Step::Subworkflow(sub) => ("subworkflow", &sub.workflow),
                    _ => continue,
                };
                if !process.workflows.contains(to) {
                    problems.push(format!(
                        "workflow `{workflow}` starts `{to}` at step `{}`, which is not one of the process's workflows",
                        step.id()
                    ));
                }
                links.push(Link {
                    from: workflow.clone(),
                    step: step.id().to_string(),
                    kind,
                    to: to.clone(),
                });
            }
        }
        Ok(ProcessDefinitionView {
            definition: process.clone(),
            links,
            problems,
        })
    }

    /// Process metrics of `id` over `[from, to)`: the cases its `starts` workflow opened before
    /// `to` (the most recent [`MAX_CASES`]), each read whole.
    pub fn process_metrics(
        &self,
        tenant: &str,
        id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<ProcessMetrics, ServiceError> {
        let settings = self.process_settings(tenant);
        let process = settings
            .definitions
            .get(id)
            .ok_or_else(|| ServiceError::NotFound {
                what: "process definition",
                id: id.to_string(),
            })?;
        let filter = InstanceFilter {
            definition: Some(process.starts.clone()),
            started_before: Some(to),
            limit: MAX_CASES,
            newest_first: true,
            ..InstanceFilter::default()
        };
        let mut cases = Vec::new();
        for root in self.shared.store.instances(tenant, &filter)? {
            // Only instances that opened their own case: a `starts` workflow started by
            // another workflow belongs to that one's case.
            if root.process_id() != root.id {
                continue;
            }
            cases.push(self.case(tenant, &root.id)?);
        }
        let calendar = self.shared.calendar(tenant);
        let costs = settings.costs.as_ref();
        let live = cases
            .iter()
            .map(|members| case_figures(members, &calendar, costs));
        // Archived cases kept their figures on the instance that ended them last.
        let mut archived = Vec::new();
        for workflow in &process.workflows {
            for facts in self.shared.store.archived_facts(tenant, workflow, from)? {
                if let Some(case) = facts.case
                    && case.root_workflow == process.starts
                {
                    archived.push(case.figures);
                }
            }
        }
        Ok(compute(process, live.chain(archived), from, to, costs))
    }
}
