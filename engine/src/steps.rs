//! Entering a step: what each kind of step does when a token arrives.

use std::time::Duration;

use serde_json::{Map, Value};

use super::command::{CommandError, RequiredStage, Requirement};
use super::effect::{Effect, Notification, NotificationKind, PluginCall, PluginRequest};
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{
    ApprovalState, Approver, Fork, Incident, StageState, StageStatus, Task, TaskStatus, Timer,
    TimerKind, Wait,
};
use super::{Millis, data_path};
use crate::definition::{
    ApprovalStep, Deadline, JoinMode, JoinStep, Step, SubworkflowStep, TaskStep, WaitStep,
};

pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Run<'_> {
    /// The data a sub-workflow started by `sub` gets: the fields it names in `input`, or all.
    pub(crate) fn child_input(&self, sub: &SubworkflowStep) -> Map<String, Value> {
        if sub.input.is_empty() {
            return self.inst.data.clone();
        }
        sub.input
            .iter()
            .filter_map(|k| self.inst.data.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Does what the token's new step does on entry.
    pub(crate) fn enter(&mut self, id: u64, activation: u64) -> Result<(), CommandError> {
        let Some(step_id) = self.inst.tokens.get(&id).map(|t| t.step.clone()) else {
            return Ok(());
        };
        let step = self.step(&step_id)?;
        match step {
            Step::Task(task) => {
                self.subscribe_boundaries(id, activation, step);
                self.enter_task(id, activation, task)
            }
            Step::Approval(approval) => {
                self.subscribe_boundaries(id, activation, step);
                self.enter_approval(id, activation, approval)
            }
            Step::Receive(receive) => self.enter_receive(id, activation, receive),
            Step::Action(_) => {
                self.call_plugin(id, activation, 1);
                Ok(())
            }
            Step::Route(_) => {
                self.call_plugin(id, activation, 1);
                Ok(())
            }
            Step::Wait(wait) => self.enter_wait(id, activation, wait),
            Step::Parallel(p) => {
                let fork = self.next_id();
                let mut forks = self.forks_of(id);
                self.inst.forks.insert(
                    fork,
                    Fork {
                        id: fork,
                        parallel: p.id.clone(),
                        join: p.join.clone(),
                        branches: p.branches.len() as u32,
                        arrived: Vec::new(),
                    },
                );
                self.inst.tokens.remove(&id);
                self.emit(
                    Actor::System,
                    EventKind::StepCompleted {
                        step: p.id.clone(),
                        token: id,
                        outcome: None,
                    },
                    None,
                );
                forks.push(fork);
                for branch in &p.branches {
                    self.spawn(branch, forks.clone())?;
                }
                Ok(())
            }
            Step::Join(join) => self.enter_join(id, join),
            Step::Subworkflow(sub) if sub.for_each.is_some() => {
                let list = sub.for_each.clone().unwrap_or_default();
                let sub = sub.clone();
                self.enter_fan_out(id, activation, &sub, &list)
            }
            Step::Subworkflow(sub) => {
                let data = self.child_input(sub);
                self.effect(Effect::StartChild {
                    token: id,
                    activation,
                    workflow: sub.workflow.clone(),
                    data,
                    wait: sub.wait,
                });
                self.emit(
                    Actor::System,
                    EventKind::SubworkflowStarted {
                        step: sub.id.clone(),
                        workflow: sub.workflow.clone(),
                        count: None,
                    },
                    None,
                );
                if sub.wait {
                    self.set_wait(id, Wait::Subworkflow);
                    Ok(())
                } else {
                    self.advance(id, None, Actor::System, None)
                }
            }
            Step::End(end) => {
                match &end.then {
                    Some(next) => self.hand_on(id, activation, next),
                    None => self.finish(end.outcome, Some(end.id.clone()), Actor::System, None),
                }
                Ok(())
            }
        }
    }

    pub(crate) fn set_wait(&mut self, id: u64, wait: Wait) {
        if let Some(token) = self.inst.tokens.get_mut(&id) {
            token.wait = wait;
        }
    }

    /// Stops the token until a person resolves the incident.
    pub(crate) fn raise_incident(&mut self, id: u64, incident: Incident) {
        let step = self
            .inst
            .tokens
            .get(&id)
            .map(|t| t.step.clone())
            .unwrap_or_default();
        let actor = match (&incident.plugin, &incident.sha256) {
            (Some(name), Some(sha256)) => Actor::Plugin {
                name: name.clone(),
                sha256: sha256.clone(),
            },
            _ => Actor::System,
        };
        self.emit(
            actor,
            EventKind::IncidentRaised {
                step,
                token: id,
                error: incident.error.clone(),
            },
            None,
        );
        self.set_wait(id, Wait::Incident(incident));
    }

    /// An incident with no plugin behind it (bad data, a missing assignee).
    pub(crate) fn engine_incident(&mut self, id: u64, error: String) {
        let incident = Incident {
            error,
            source: "engine".to_string(),
            plugin: None,
            sha256: None,
            attempts: 0,
            raised_at: self.ctx.now,
            kind: None,
            blame: None,
        };
        self.raise_incident(id, incident);
    }

    fn enter_task(
        &mut self,
        id: u64,
        activation: u64,
        step: &TaskStep,
    ) -> Result<(), CommandError> {
        let assignee = match (&step.assignee, &step.assignee_from) {
            (Some(person), _) => Some(person.clone()),
            (None, Some(field)) => {
                match data_path(&self.inst.data, field).and_then(Value::as_str) {
                    Some(person) => Some(person.to_string()),
                    None => {
                        self.engine_incident(
                        id,
                        format!("assignee_from: the data has no text field `{field}` naming the assignee"),
                    );
                        return Ok(());
                    }
                }
            }
            (None, None) => None,
        };
        let (assignee, link_expires_at) = match &step.external_from {
            None => (assignee, None),
            Some(field) => {
                let address = data_path(&self.inst.data, field).and_then(Value::as_str);
                match address.filter(|a| looks_like_email(a)) {
                    Some(address) => {
                        let valid = step.link_valid.unwrap_or(DEFAULT_LINK_VALID);
                        let until = self.ctx.now.saturating_add(millis(valid));
                        (Some(address.to_string()), Some(until))
                    }
                    None => {
                        self.engine_incident(
                            id,
                            format!("external_from: the data has no email address in `{field}` for the outside participant"),
                        );
                        return Ok(());
                    }
                }
            }
        };
        let outcomes = step.on.keys().cloned().collect();
        let task = self.open_task(NewTask {
            token: id,
            activation,
            step: &step.id,
            title: step_title(&step.title, &step.id),
            assignee,
            role: step.role.clone(),
            candidates: step.candidates.clone(),
            stage: None,
            outcomes,
            deadline: step.deadline.as_ref(),
            link_expires_at,
        });
        self.set_wait(id, Wait::Task { task });
        Ok(())
    }

    fn enter_approval(
        &mut self,
        id: u64,
        activation: u64,
        step: &ApprovalStep,
    ) -> Result<(), CommandError> {
        if step.policy.is_some() {
            self.call_plugin(id, activation, 1);
            return Ok(());
        }
        let requirement = Requirement {
            auto_approve: false,
            order: step.order,
            stages: step
                .approvers
                .iter()
                .map(|s| RequiredStage {
                    name: s.name.clone(),
                    approvers: s
                        .roles
                        .iter()
                        .map(|r| Approver::Role(r.clone()))
                        .chain(s.people.iter().map(|p| Approver::Person(p.clone())))
                        .collect(),
                    required: s.required,
                })
                .collect(),
            reason: "approvers from the definition".to_string(),
            plugin: None,
        };
        self.open_approval(id, activation, requirement)
    }

    /// Opens the approval a requirement asks for, or approves at once.
    pub(crate) fn open_approval(
        &mut self,
        id: u64,
        activation: u64,
        requirement: Requirement,
    ) -> Result<(), CommandError> {
        let step_id = self
            .inst
            .tokens
            .get(&id)
            .map(|t| t.step.clone())
            .unwrap_or_default();
        let actor = match &requirement.plugin {
            Some(p) => Actor::plugin(p),
            None => Actor::System,
        };
        if requirement.auto_approve {
            self.emit(
                actor.clone(),
                EventKind::AutoApproved { step: step_id },
                Some(requirement.reason.clone()),
            );
            return self.advance(id, Some("approve"), actor, Some(requirement.reason));
        }
        let names = requirement
            .stages
            .iter()
            .map(|s| format!("{} ({} of {})", s.name, s.required, s.approvers.len()))
            .collect();
        self.emit(
            actor,
            EventKind::ApprovalRequired {
                step: step_id,
                stages: names,
            },
            Some(requirement.reason),
        );
        let stages = requirement
            .stages
            .into_iter()
            .map(|s| StageState {
                name: s.name,
                approvers: s.approvers,
                required: s.required,
                tasks: Vec::new(),
                approved_by: Vec::new(),
                status: StageStatus::Pending,
            })
            .collect();
        let order = requirement.order;
        self.set_wait(id, Wait::Approval(ApprovalState { order, stages }));
        match order {
            crate::definition::StageOrder::Sequential => self.open_stage(id, activation, 0),
            crate::definition::StageOrder::Parallel => {
                let count = match self.inst.tokens.get(&id).map(|t| &t.wait) {
                    Some(Wait::Approval(state)) => state.stages.len(),
                    _ => 0,
                };
                for stage in 0..count {
                    self.open_stage(id, activation, stage);
                }
            }
        }
        Ok(())
    }

    /// Opens one approver task per approver of stage `index`.
    pub(crate) fn open_stage(&mut self, id: u64, activation: u64, index: usize) {
        let Some(token) = self.inst.tokens.get(&id) else {
            return;
        };
        let step = self.ctx.def.step(&token.step);
        let (step_id, title, deadline, request_changes) = match step {
            Some(Step::Approval(a)) => (
                a.id.clone(),
                step_title(&a.title, &a.id),
                a.deadline.as_ref(),
                a.on.request_changes.is_some(),
            ),
            _ => return,
        };
        let Wait::Approval(state) = &token.wait else {
            return;
        };
        let Some(stage) = state.stages.get(index) else {
            return;
        };
        let approvers = stage.approvers.clone();
        let stage_name = stage.name.clone();
        let mut outcomes = vec!["approve".to_string(), "reject".to_string()];
        if request_changes {
            outcomes.push("request-changes".to_string());
        }
        let mut tasks = Vec::new();
        for approver in approvers {
            let (assignee, role) = match approver {
                Approver::Person(p) => (Some(p), None),
                Approver::Role(r) => (None, Some(r)),
            };
            tasks.push(self.open_task(NewTask {
                token: id,
                activation,
                step: &step_id,
                title: format!("{title}: {stage_name}"),
                assignee,
                role,
                candidates: Vec::new(),
                stage: Some(index),
                outcomes: outcomes.clone(),
                deadline,
                link_expires_at: None,
            }));
        }
        if let Some(Wait::Approval(state)) = self.inst.tokens.get_mut(&id).map(|t| &mut t.wait)
            && let Some(stage) = state.stages.get_mut(index)
        {
            stage.tasks = tasks;
            stage.status = StageStatus::Open;
        }
    }

    /// Creates a task, arms its deadline timers and notifies its assignee.
    fn open_task(&mut self, new: NewTask<'_>) -> String {
        let n = self.next_id();
        let id = format!("{}.t{n}", self.inst.id);
        let now = self.ctx.now;
        let due_at = new.deadline.map(|d| self.ctx.calendar.after(now, &d.due));
        if let (Some(deadline), Some(due)) = (new.deadline, due_at) {
            self.arm_deadline(&id, deadline, due);
        }
        let task = Task {
            id: id.clone(),
            instance: self.inst.id.clone(),
            token: new.token,
            activation: new.activation,
            step: new.step.to_string(),
            title: new.title.clone(),
            assignee: new.assignee.clone(),
            role: new.role.clone(),
            candidates: new.candidates.clone(),
            claimed_by: None,
            claimed_at: None,
            status: TaskStatus::Open,
            stage: new.stage,
            outcomes: new.outcomes,
            created_at: now,
            due_at,
            completed_at: None,
            completed_by: None,
            outcome: None,
            link_expires_at: new.link_expires_at,
        };
        self.inst.tasks.insert(id.clone(), task);
        self.emit(
            Actor::System,
            EventKind::TaskCreated {
                task: id.clone(),
                step: new.step.to_string(),
                assignee: new.assignee.clone(),
                role: new.role.clone(),
                candidates: new.candidates.clone(),
                due_at,
            },
            None,
        );
        let mut roles: Vec<String> = new.role.into_iter().collect();
        roles.extend(new.candidates);
        self.effect(Effect::Notify(Notification {
            kind: NotificationKind::TaskAssigned,
            task: Some(id.clone()),
            title: new.title,
            assignee: new.assignee,
            roles,
            link_expires_at: new.link_expires_at,
        }));
        id
    }

    /// Timers for a task's reminders, due time and escalation.
    fn arm_deadline(&mut self, task: &str, deadline: &Deadline, due: Millis) {
        let now = self.ctx.now;
        for before in &deadline.reminders {
            let at = self.ctx.calendar.before(due, before);
            if at > now && !before.is_zero() {
                self.arm(
                    at,
                    TimerKind::Reminder {
                        task: task.to_string(),
                    },
                );
            }
        }
        self.arm(
            due,
            TimerKind::Due {
                task: task.to_string(),
            },
        );
        if let Some(escalation) = &deadline.escalation {
            let at = self.ctx.calendar.after(due, &escalation.after());
            self.arm(
                at,
                TimerKind::Escalate {
                    task: task.to_string(),
                },
            );
        }
    }

    pub(crate) fn arm(&mut self, due_at: Millis, kind: TimerKind) -> String {
        let id = format!("x{}", self.next_id());
        self.inst.timers.insert(
            id.clone(),
            Timer {
                id: id.clone(),
                due_at,
                kind,
            },
        );
        id
    }

    fn enter_wait(
        &mut self,
        id: u64,
        activation: u64,
        step: &WaitStep,
    ) -> Result<(), CommandError> {
        let now = self.ctx.now;
        let due = if let Some(d) = step.duration {
            Ok(now.saturating_add(millis(d)))
        } else {
            let text = match (&step.until, &step.until_from) {
                (Some(until), _) => Some(until.clone()),
                (None, Some(field)) => data_path(&self.inst.data, field)
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
            match text {
                Some(text) => parse_time(&text)
                    .ok_or_else(|| format!("`{text}` is not an RFC 3339 date-time")),
                None => Err(format!(
                    "until_from: the data has no field `{}`",
                    step.until_from.clone().unwrap_or_default()
                )),
            }
        };
        match due {
            Ok(due) => {
                let timer = self.arm(
                    due.max(now),
                    TimerKind::Wait {
                        token: id,
                        activation,
                    },
                );
                self.set_wait(id, Wait::Timer { timer });
            }
            Err(error) => self.engine_incident(id, error),
        }
        Ok(())
    }

    /// A branch reached its join: park it, and continue when enough have arrived.
    fn enter_join(&mut self, id: u64, join: &JoinStep) -> Result<(), CommandError> {
        let fork_id = self
            .inst
            .tokens
            .get(&id)
            .and_then(|t| t.forks.last().copied());
        let fork = fork_id
            .and_then(|f| self.inst.forks.get(&f))
            .filter(|f| f.join == join.id);
        let Some(fork) = fork.cloned() else {
            self.engine_incident(
                id,
                format!(
                    "reached join `{}` outside the parallel step that names it",
                    join.id
                ),
            );
            return Ok(());
        };
        self.set_wait(id, Wait::Joined);
        let arrived = {
            let Some(f) = self.inst.forks.get_mut(&fork.id) else {
                return Ok(());
            };
            f.arrived.push(id);
            f.arrived.len() as u32
        };
        let required = match join.mode {
            JoinMode::All => fork.branches,
            JoinMode::Any => 1,
            JoinMode::Quorum => join.required.unwrap_or(fork.branches),
        };
        self.emit(
            Actor::System,
            EventKind::BranchJoined {
                step: join.id.clone(),
                arrived,
                required,
            },
            None,
        );
        if arrived < required {
            return Ok(());
        }
        // Enough branches: the others are no longer needed.
        let Some(fork) = self.inst.forks.remove(&fork.id) else {
            return Ok(());
        };
        let others: Vec<u64> = self
            .inst
            .tokens
            .values()
            .filter(|t| t.forks.contains(&fork.id) && !fork.arrived.contains(&t.id))
            .map(|t| t.id)
            .collect();
        for other in others {
            let step = self
                .inst
                .tokens
                .get(&other)
                .map(|t| t.step.clone())
                .unwrap_or_default();
            self.drop_token(other);
            self.emit(
                Actor::System,
                EventKind::BranchCancelled { step, token: other },
                None,
            );
        }
        let mut forks = self.forks_of(id);
        forks.pop();
        for arrived in &fork.arrived {
            if *arrived != id {
                self.inst.tokens.remove(arrived);
            }
        }
        if let Some(token) = self.inst.tokens.get_mut(&id) {
            token.forks = forks;
        }
        self.advance(id, None, Actor::System, None)
    }

    /// Calls the plugin of the token's step (an action, an approval policy or a router) at
    /// `attempt`; the token waits for the answer.
    pub(crate) fn call_plugin(&mut self, id: u64, activation: u64, attempt: u32) {
        let Some(step) = self.token_step(id) else {
            return;
        };
        let (plugin, request) = match step {
            Step::Action(step) => (
                step.plugin.clone(),
                PluginRequest::StepAction {
                    action: step.action.clone(),
                    params: step.params.clone(),
                    key: format!("{}/{}/{}/{}", self.inst.id, step.id, activation, attempt),
                },
            ),
            Step::Approval(ApprovalStep {
                policy: Some(plugin),
                request,
                ..
            }) => {
                let text = |field: &str| {
                    data_path(&self.inst.data, field)
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .unwrap_or_default()
                };
                let amount = data_path(&self.inst.data, &request.amount).and_then(Value::as_i64);
                (
                    plugin.clone(),
                    PluginRequest::ApprovalPolicy {
                        amount,
                        currency: text(&request.currency),
                        category: text(&request.category),
                        requester: text(&request.requester),
                    },
                )
            }
            Step::Route(step) => (
                step.plugin.clone(),
                PluginRequest::Router {
                    candidates: step.candidates.clone(),
                },
            ),
            _ => return,
        };
        let wait = Wait::calling(request.capability(), attempt);
        self.effect(Effect::CallPlugin(PluginCall {
            token: id,
            activation,
            attempt,
            step: step.id().to_string(),
            plugin,
            request,
        }));
        self.set_wait(id, wait);
    }

    /// The forks token `id` runs inside, innermost last.
    pub(crate) fn forks_of(&self, id: u64) -> Vec<u64> {
        self.inst
            .tokens
            .get(&id)
            .map(|t| t.forks.clone())
            .unwrap_or_default()
    }

    pub(crate) fn token_step(&self, id: u64) -> Option<&Step> {
        let token = self.inst.tokens.get(&id)?;
        self.ctx.def.step(&token.step)
    }
}

struct NewTask<'a> {
    token: u64,
    activation: u64,
    step: &'a str,
    title: String,
    assignee: Option<String>,
    role: Option<String>,
    candidates: Vec<String>,
    stage: Option<usize>,
    outcomes: Vec<String>,
    deadline: Option<&'a Deadline>,
    link_expires_at: Option<Millis>,
}

/// How long an outside participant's link is valid when the step does not say.
const DEFAULT_LINK_VALID: Duration = Duration::from_secs(7 * 86_400);

/// An address with one `@`, something on each side, and no spaces: what can be mailed.
fn looks_like_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !address.chars().any(char::is_whitespace)
                && address.len() <= 254
        }
        None => false,
    }
}

fn step_title(title: &str, id: &str) -> String {
    if title.is_empty() {
        id.to_string()
    } else {
        title.to_string()
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 date-time (or a plain date, at midnight UTC).
pub(crate) fn parse_time(text: &str) -> Option<Millis> {
    let text = text.trim();
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    let at = humantime::parse_rfc3339_weak(&full).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(millis(since))
}
