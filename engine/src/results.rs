//! Answers coming back: plugin results, timers, finished sub-workflows, resolved incidents.
//! An answer for a step the token has already left (an older activation) changes nothing.

use serde_json::{Map, Value};

use super::command::{Blame, CommandError, EffectFailure, FailureKind, PluginAnswer, Resolution};
use super::effect::{Effect, Notification, NotificationKind};
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{Incident, TaskStatus, TimerKind, Wait};
use crate::Capability;
use crate::definition::{EndOutcome, Escalation, RetryPolicy, Step};

impl Run<'_> {
    /// A plugin answered (or failed) the call the token waits for. An answer to an attempt or
    /// activation the token has moved past changes nothing.
    pub(crate) fn plugin_answered(
        &mut self,
        token: u64,
        activation: u64,
        attempt: u32,
        result: Result<PluginAnswer, EffectFailure>,
        usage: Option<crate::CallUsage>,
    ) -> Result<(), CommandError> {
        let Some((capability, awaited)) = self
            .live_token(token, activation)
            .and_then(|t| t.wait.call())
        else {
            return Ok(());
        };
        if awaited != attempt {
            return Ok(());
        }
        let step = self
            .inst
            .tokens
            .get(&token)
            .map(|t| t.step.clone())
            .unwrap_or_default();
        if let (Ok(answer), Some(usage)) = (&result, usage)
            && answer.capability() == capability
        {
            self.emit(
                Actor::plugin(answer.plugin()),
                EventKind::PluginCalled {
                    step: step.clone(),
                    attempt,
                    fuel: usage.fuel,
                    logs: usage.logs,
                },
                None,
            );
        }
        // An action's output is data a later approval policy may read: the same types are
        // asked of it as of a start (an amount is an integer of minor units), or the plugin
        // broke the contract.
        let result = match result {
            Ok(PluginAnswer::StepAction(output)) => {
                match crate::tasks::check_policy_inputs(self.ctx.def, &output.data) {
                    Ok(()) => Ok(PluginAnswer::StepAction(output)),
                    Err(refused) => Err(EffectFailure {
                        message: format!("the action's output cannot be kept: {refused}"),
                        kind: FailureKind::BadOutput,
                        plugin: Some(output.plugin),
                    }),
                }
            }
            other => other,
        };
        match result {
            Ok(answer) if answer.capability() != capability => Err(CommandError::invalid(
                "answer",
                format!(
                    "step `{step}` waits for a {capability} plugin, not a {} answer",
                    answer.capability()
                ),
            )),
            Ok(PluginAnswer::StepAction(output)) => {
                let actor = Actor::plugin(&output.plugin);
                self.emit(
                    actor.clone(),
                    EventKind::ActionSucceeded {
                        step,
                        attempt,
                        note: output.note.clone(),
                    },
                    None,
                );
                self.merge(output.data, actor.clone());
                self.advance(token, None, actor, Some(output.note))
            }
            Ok(PluginAnswer::ApprovalPolicy(requirement)) => {
                self.open_approval(token, activation, requirement)
            }
            Ok(PluginAnswer::Router(routed)) => {
                let actor = Actor::plugin(&routed.plugin);
                self.take_routes(token, &step, routed.next, actor, routed.reason)
            }
            Err(failure) => {
                // Actions retry as their step says; decisions on the default policy.
                let retry = match self.token_step(token) {
                    Some(Step::Action(action)) => action.retry.clone(),
                    _ => RetryPolicy::default(),
                };
                let source = match capability {
                    Capability::StepAction => "action",
                    Capability::ApprovalPolicy => "policy",
                    Capability::Router => "route",
                };
                self.failed_call(token, activation, attempt, &step, source, &retry, failure);
                Ok(())
            }
        }
    }

    /// Leaves a route step towards each chosen step: the first on this token, others on new
    /// tokens in the same forks.
    fn take_routes(
        &mut self,
        token: u64,
        step: &str,
        next: Vec<String>,
        actor: Actor,
        reason: String,
    ) -> Result<(), CommandError> {
        self.emit(
            actor.clone(),
            EventKind::Routed {
                step: step.to_string(),
                next: next.clone(),
            },
            Some(reason),
        );
        self.emit(
            actor,
            EventKind::StepCompleted {
                step: step.to_string(),
                token,
                outcome: None,
            },
            None,
        );
        let forks = self.forks_of(token);
        let mut targets = next.into_iter();
        if let Some(first) = targets.next() {
            self.move_to(token, &first)?;
        }
        for other in targets {
            self.spawn(&other, forks.clone())?;
        }
        Ok(())
    }

    /// A plugin call failed: retry after a backoff while the policy allows, else an incident.
    #[allow(clippy::too_many_arguments)]
    fn failed_call(
        &mut self,
        token: u64,
        activation: u64,
        attempt: u32,
        step: &str,
        source: &str,
        retry: &RetryPolicy,
        failure: EffectFailure,
    ) {
        let actor = match &failure.plugin {
            Some(p) => Actor::plugin(p),
            None => Actor::System,
        };
        let retry_at = retry_after(&failure, attempt, retry)
            .map(|wait| self.ctx.now.saturating_add(super::steps::millis(wait)));
        self.emit(
            actor,
            EventKind::PluginCallFailed {
                step: step.to_string(),
                attempt,
                error: failure.message.clone(),
                kind: Some(failure.kind),
                retry_at,
            },
            None,
        );
        match retry_at {
            Some(at) => {
                self.arm(
                    at,
                    TimerKind::Retry {
                        token,
                        activation,
                        attempt: attempt + 1,
                    },
                );
            }
            None => {
                let blame = failure.blame();
                let (plugin, sha256) = match failure.plugin {
                    Some(p) => (Some(p.name), Some(p.sha256)),
                    None => (None, None),
                };
                let incident = Incident {
                    error: failure.message,
                    source: source.to_string(),
                    plugin,
                    sha256,
                    attempts: attempt,
                    raised_at: self.ctx.now,
                    kind: Some(failure.kind),
                    blame: Some(blame),
                };
                self.raise_incident(token, incident);
            }
        }
    }

    fn awaits(&self, token: u64, activation: u64, wanted: impl Fn(&Wait) -> bool) -> bool {
        self.live_token(token, activation)
            .is_some_and(|t| wanted(&t.wait))
    }

    pub(crate) fn child_finished(
        &mut self,
        token: u64,
        activation: u64,
        child: &str,
        outcome: EndOutcome,
        data: Map<String, Value>,
        index: Option<u32>,
    ) -> Result<(), CommandError> {
        if let Some(index) = index {
            if !self.awaits(token, activation, |w| matches!(w, Wait::Children(_))) {
                return Ok(());
            }
            return self.fan_out_child_finished(token, index, child, outcome, data);
        }
        if !self.awaits(token, activation, |w| matches!(w, Wait::Subworkflow)) {
            return Ok(());
        }
        let Some(Step::Subworkflow(step)) = self.token_step(token) else {
            return Ok(());
        };
        let (step_id, output) = (step.id.clone(), step.output.clone());
        self.emit(
            Actor::System,
            EventKind::SubworkflowFinished {
                step: step_id,
                child: child.to_string(),
                outcome: outcome.to_string(),
            },
            None,
        );
        let merged = match output {
            Some(key) => Map::from_iter([(key, Value::Object(data))]),
            None => data,
        };
        self.merge(merged, Actor::System);
        let outcome = outcome.to_string();
        self.advance(token, Some(&outcome), Actor::System, None)
    }

    pub(crate) fn timer_fired(&mut self, id: &str) -> Result<(), CommandError> {
        // A timer that is gone was cancelled with its step or task: nothing to do.
        let Some(timer) = self.inst.timers.remove(id) else {
            return Ok(());
        };
        match timer.kind {
            TimerKind::Wait { token, activation } => {
                if self.live_token(token, activation).is_some() {
                    self.advance(token, None, Actor::Timer, None)?;
                }
            }
            TimerKind::Retry {
                token,
                activation,
                attempt,
            } => {
                if self.live_token(token, activation).is_some() {
                    self.call_plugin(token, activation, attempt);
                }
            }
            TimerKind::Reminder { task } => self.task_notice(&task, NotificationKind::Reminder),
            TimerKind::Due { task } => self.task_notice(&task, NotificationKind::Overdue),
            TimerKind::Escalate { task } => self.escalate(&task)?,
            TimerKind::MessageDeadline {
                token,
                activation,
                point,
            } => self.message_deadline(token, activation, point)?,
        }
        Ok(())
    }

    fn task_notice(&mut self, id: &str, kind: NotificationKind) {
        let Some(task) = self
            .inst
            .tasks
            .get(id)
            .filter(|t| t.status == TaskStatus::Open)
        else {
            return;
        };
        let notification = Notification {
            kind,
            task: Some(task.id.clone()),
            title: task.title.clone(),
            assignee: task.claimed_by.clone().or_else(|| task.assignee.clone()),
            link_expires_at: task.link_expires_at,
            roles: task
                .role
                .iter()
                .cloned()
                .chain(task.candidates.iter().cloned())
                .collect(),
        };
        let event = match kind {
            NotificationKind::Reminder => EventKind::ReminderSent {
                task: id.to_string(),
            },
            _ => EventKind::TaskOverdue {
                task: id.to_string(),
            },
        };
        self.emit(Actor::Timer, event, None);
        self.effect(Effect::Notify(notification));
    }

    fn escalate(&mut self, id: &str) -> Result<(), CommandError> {
        let Some(task) = self
            .inst
            .tasks
            .get(id)
            .filter(|t| t.status == TaskStatus::Open)
            .cloned()
        else {
            return Ok(());
        };
        let escalation = self
            .ctx
            .def
            .step(&task.step)
            .and_then(|s| s.deadline())
            .and_then(|d| d.escalation.clone());
        let Some(escalation) = escalation else {
            return Ok(());
        };
        match escalation {
            Escalation::Notify { roles, .. } => {
                self.emit(
                    Actor::Timer,
                    EventKind::Escalated {
                        task: id.to_string(),
                        action: format!("notified {}", roles.join(", ")),
                    },
                    None,
                );
                self.effect(Effect::Notify(Notification {
                    kind: NotificationKind::Escalated,
                    task: Some(id.to_string()),
                    title: task.title.clone(),
                    assignee: None,
                    roles,
                    link_expires_at: None,
                }));
                Ok(())
            }
            Escalation::Reassign { role, .. } => {
                if let Some(t) = self.inst.tasks.get_mut(id) {
                    t.assignee = None;
                    t.candidates.clear();
                    t.claimed_by = None;
                    t.claimed_at = None;
                    t.role = Some(role.clone());
                }
                self.emit(
                    Actor::Timer,
                    EventKind::Escalated {
                        task: id.to_string(),
                        action: format!("reassigned to {role}"),
                    },
                    None,
                );
                self.emit(
                    Actor::Timer,
                    EventKind::TaskReassigned {
                        task: id.to_string(),
                        role: role.clone(),
                    },
                    None,
                );
                self.effect(Effect::Notify(Notification {
                    kind: NotificationKind::Escalated,
                    task: Some(id.to_string()),
                    title: task.title.clone(),
                    assignee: None,
                    roles: vec![role],
                    link_expires_at: None,
                }));
                Ok(())
            }
            Escalation::Outcome { outcome, .. } => {
                self.emit(
                    Actor::Timer,
                    EventKind::Escalated {
                        task: id.to_string(),
                        action: format!("took outcome {outcome}"),
                    },
                    None,
                );
                // Whoever had the task is told it was decided for them.
                self.effect(Effect::Notify(Notification {
                    kind: NotificationKind::Escalated,
                    task: Some(id.to_string()),
                    title: task.title.clone(),
                    assignee: task.claimed_by.clone().or_else(|| task.assignee.clone()),
                    roles: task.role.iter().cloned().collect(),
                    link_expires_at: None,
                }));
                let outcome =
                    (!task.outcomes.is_empty() || task.stage.is_some()).then_some(outcome);
                self.close_task(&task, Actor::Timer, outcome.clone(), Map::new(), None)?;
                match task.stage {
                    // An overdue approval decides the whole step.
                    Some(_) => {
                        let others: Vec<String> = self
                            .inst
                            .tasks
                            .values()
                            .filter(|t| t.token == task.token && t.status == TaskStatus::Open)
                            .map(|t| t.id.clone())
                            .collect();
                        for other in others {
                            self.cancel_task(&other);
                        }
                        self.advance(
                            task.token,
                            outcome.as_deref(),
                            Actor::Timer,
                            Some("overdue".to_string()),
                        )
                    }
                    None => self.advance(
                        task.token,
                        outcome.as_deref(),
                        Actor::Timer,
                        Some("overdue".to_string()),
                    ),
                }
            }
        }
    }

    pub(crate) fn resolve_incident(
        &mut self,
        token: u64,
        by: &str,
        resolution: Resolution,
        reason: String,
    ) -> Result<(), CommandError> {
        let Some(current) = self.inst.tokens.get(&token) else {
            return Err(CommandError::NotFound {
                what: "token",
                id: token.to_string(),
            });
        };
        let Wait::Incident(incident) = &current.wait else {
            return Err(CommandError::Conflict(format!(
                "step `{}` has no open incident",
                current.step
            )));
        };
        let (step, activation, attempts) =
            (current.step.clone(), current.activation, incident.attempts);
        let actor = Actor::person(by);
        let described = match &resolution {
            Resolution::Retry {
                plugin_version: None,
            } => "retry".to_string(),
            Resolution::Retry {
                plugin_version: Some(v),
            } => format!("retry on plugin version {}", short(v)),
            Resolution::Skip {
                outcome: Some(o), ..
            } => format!("skip with outcome {o}"),
            Resolution::Skip { outcome: None, .. } => "skip".to_string(),
        };
        self.emit(
            actor.clone(),
            EventKind::IncidentResolved {
                step: step.clone(),
                token,
                resolution: described,
            },
            Some(reason.clone()),
        );
        match resolution {
            Resolution::Retry { plugin_version } => {
                if let Some(to) = plugin_version {
                    let Some((plugin, _)) = self.step(&step)?.plugin() else {
                        return Err(CommandError::invalid(
                            "plugin_version",
                            format!("step `{step}` calls no plugin: retry it without a version"),
                        ));
                    };
                    let plugin = plugin.to_string();
                    let from = self.inst.plugins.insert(plugin.clone(), to.clone());
                    if from.as_deref() != Some(to.as_str()) {
                        self.emit(
                            actor.clone(),
                            EventKind::PluginRepinned {
                                step: step.clone(),
                                plugin,
                                from,
                                to,
                            },
                            Some(reason.clone()),
                        );
                    }
                }
                let attempt = attempts + 1;
                match self.step(&step)? {
                    Step::Action(_) | Step::Approval(_) | Step::Route(_) => {
                        self.call_plugin(token, activation, attempt)
                    }
                    // Engine incidents (missing data) re-enter the step with the data as it is now.
                    _ => self.move_to(token, &step)?,
                }
                Ok(())
            }
            Resolution::Skip { outcome, data } => {
                if !data.is_empty() {
                    crate::tasks::check_policy_inputs(self.ctx.def, &data)?;
                    self.merge(data, actor.clone());
                }
                self.skip(token, &step, outcome, actor, reason)
            }
        }
    }

    /// Leaves an incident's step as if it had given `outcome`.
    fn skip(
        &mut self,
        token: u64,
        step: &str,
        outcome: Option<String>,
        actor: Actor,
        reason: String,
    ) -> Result<(), CommandError> {
        match self.step(step)? {
            Step::Route(route) => {
                let Some(target) = outcome.filter(|o| route.candidates.contains(o)) else {
                    return Err(CommandError::invalid(
                        "outcome",
                        format!(
                            "skipping a route needs one of its candidates: {}",
                            route.candidates.join(", ")
                        ),
                    ));
                };
                self.take_routes(token, step, vec![target], actor, reason)
            }
            // An end step whose next workflow was refused ends without it.
            Step::End(end) => {
                let (outcome, step) = (end.outcome, end.id.clone());
                self.finish(outcome, Some(step), actor, Some(reason));
                Ok(())
            }
            _ => self.advance(token, outcome.as_deref(), actor, Some(reason)),
        }
    }
}

/// Retries of a call the host could not finish (busy, past its deadline, failed): the plugin is
/// not at fault, so these come on top of nothing the step says and start sooner.
pub const HOST_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    initial_backoff: std::time::Duration::from_millis(200),
    multiplier: 2.0,
    max_backoff: std::time::Duration::from_secs(10),
};

/// The wait before the next attempt after `failure` at `attempt`, or none when it becomes an
/// incident: the plugin's own retryable errors follow the step's policy; the host's conditions
/// follow [`HOST_RETRY`] (or the step's policy where it allows more attempts); fuel, memory,
/// traps and bad answers are the plugin's fault and never retried.
fn retry_after(
    failure: &EffectFailure,
    attempt: u32,
    step: &RetryPolicy,
) -> Option<std::time::Duration> {
    if !failure.kind.is_retryable() {
        return None;
    }
    let policy = match failure.blame() {
        Blame::Host if step.max_attempts < HOST_RETRY.max_attempts => &HOST_RETRY,
        _ => step,
    };
    (attempt < policy.max_attempts).then(|| policy.backoff(attempt))
}

/// A plugin version as people read it: the first 12 hex digits of its sha256.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}
