//! The pure core: a command and an instance's state go in; the new state, events and effects come
//! out. Time is an input; nothing here reads a clock, a disk or a plugin.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Millis;
use super::command::{Command, CommandError};
use super::effect::{Effect, Notification, NotificationKind};
use super::event::{Actor, Event, EventKind};
use super::state::{Instance, ParentLink, Status, TaskStatus, TimerKind, Token, Wait};
use crate::calendar::Calendar;
use crate::definition::{Definition, EndOutcome, Step};

/// What the core needs besides the instance: its definition and the time.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub def: &'a Definition,
    pub now: Millis,
    /// The tenant's business calendar, for deadlines stated in business time.
    pub calendar: &'a Calendar,
}

/// What a command produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

impl Applied {
    /// True when the command changed nothing (a stale result, a repeated claim).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }
}

/// Steps one command may enter: a guard against definitions that loop without waiting.
const MAX_STEPS_PER_COMMAND: usize = 1_000;

/// A command being applied.
pub(crate) struct Run<'a> {
    pub ctx: Ctx<'a>,
    pub inst: &'a mut Instance,
    pub out: Applied,
    steps_entered: usize,
}

/// How a new instance starts.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub id: String,
    /// The definition version being started.
    pub version: u32,
    pub tenant: String,
    pub data: Map<String, Value>,
    pub plugins: BTreeMap<String, String>,
    pub parent: Option<ParentLink>,
    /// The process instance it joins; none begins a new one (its own id).
    pub process: Option<String>,
    pub started_by: String,
}

/// Starts an instance of `ctx.def`.
pub fn start(ctx: Ctx<'_>, spec: StartSpec) -> Result<(Instance, Applied), CommandError> {
    crate::tasks::check_policy_inputs(ctx.def, &spec.data)?;
    crate::tasks::check_form(&ctx.def.start_form, &spec.data)?;
    let mut inst = Instance {
        id: spec.id.clone(),
        tenant: spec.tenant,
        definition_id: ctx.def.id.clone(),
        definition_version: spec.version,
        plugins: spec.plugins,
        status: Status::Running,
        data: spec.data,
        tokens: BTreeMap::new(),
        tasks: BTreeMap::new(),
        timers: BTreeMap::new(),
        forks: BTreeMap::new(),
        subscriptions: BTreeMap::new(),
        parent: spec.parent,
        paused: None,
        held: Vec::new(),
        process: spec.process.unwrap_or_else(|| spec.id.clone()),
        started_by: spec.started_by.clone(),
        started_at: ctx.now,
        ended_at: None,
        version: 0,
        history_len: 0,
        next_id: 1,
    };
    let applied = {
        let mut run = Run::new(ctx, &mut inst);
        let data = Value::Object(run.inst.data.clone());
        run.emit(
            Actor::person(&spec.started_by),
            EventKind::InstanceStarted {
                definition: ctx.def.id.clone(),
                version: spec.version,
                data,
            },
            None,
        );
        let start = ctx.def.start.clone();
        run.spawn(&start, Vec::new())?;
        run.out
    };
    inst.version = 1;
    Ok((inst, applied))
}

/// Applies `command` to `inst`: the new state, and the events and effects it produced.
///
/// Transactional by ownership: the state goes in by value and comes back only on success, so a
/// half-changed instance can never be kept by mistake. A caller that must keep the old state on
/// an error (the writer, for a state only its batch holds) keeps its own copy.
pub fn apply(
    ctx: Ctx<'_>,
    mut inst: Instance,
    command: Command,
) -> Result<(Instance, Applied), CommandError> {
    if inst.status != Status::Running {
        return match command {
            // Late answers to a finished instance are expected and change nothing.
            Command::PluginAnswered { .. }
            | Command::TimerFired { .. }
            | Command::ChildFinished { .. }
            | Command::NextStarted { .. }
            | Command::StartRefused { .. } => Ok((inst, Applied::default())),
            _ => Err(CommandError::Conflict(format!(
                "instance `{}` is {} and takes no more commands",
                inst.id,
                inst.status.as_str()
            ))),
        };
    }
    if inst.paused.is_some() {
        match &command {
            Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Cancel { .. }
            | Command::Migrate(_) => {}
            held if held.is_held_while_paused() => {}
            _ => {
                let paused = inst
                    .paused
                    .as_ref()
                    .map(|p| format!("by {}: {}", p.by, p.reason));
                return Err(CommandError::Conflict(format!(
                    "instance `{}` is paused ({}); it takes this once it is resumed",
                    inst.id,
                    paused.unwrap_or_default()
                )));
            }
        }
    }
    if let Command::Resume { by, reason } = command {
        return crate::lifecycle::resume(ctx, inst, &by, reason);
    }
    let mut run = Run::new(ctx, &mut inst);
    if run.inst.paused.is_some() && command.is_held_while_paused() {
        run.hold(command)?;
        let applied = run.out;
        if !applied.is_empty() {
            inst.version += 1;
        }
        return Ok((inst, applied));
    }
    match command {
        Command::ClaimTask { task, by } => run.claim(&task, &by)?,
        Command::UnclaimTask { task, by } => run.unclaim(&task, &by)?,
        Command::CompleteTask {
            task,
            by,
            outcome,
            data,
            expected_version,
            comment,
        } => {
            if let Some(expected) = expected_version
                && expected != run.inst.version
            {
                return Err(CommandError::Conflict(format!(
                    "instance `{}` is at version {}, not {expected}",
                    run.inst.id, run.inst.version
                )));
            }
            run.complete_task(&task, &by, outcome, data, comment)?
        }
        Command::PluginAnswered {
            token,
            activation,
            attempt,
            result,
            usage,
        } => run.plugin_answered(token, activation, attempt, result, usage)?,
        Command::TimerFired { timer } => run.timer_fired(&timer)?,
        Command::ReceiveMessage(message) => run.receive_message(message)?,
        Command::ChildFinished {
            token,
            activation,
            child,
            outcome,
            data,
            index,
        } => run.child_finished(token, activation, &child, outcome, data, index)?,
        Command::NextStarted {
            token,
            activation,
            instance,
        } => run.next_started(token, activation, instance)?,
        Command::StartRefused {
            token,
            activation,
            workflow,
            error,
        } => run.start_refused(token, activation, &workflow, error),
        Command::Cancel { by, reason } => run.finish(
            EndOutcome::Cancelled,
            None,
            Actor::person(&by),
            Some(reason),
        ),
        Command::ResolveIncident {
            token,
            by,
            resolution,
            reason,
        } => run.resolve_incident(token, &by, resolution, reason)?,
        Command::Pause { by, reason } => run.pause(&by, reason)?,
        Command::Migrate(migration) => run.migrate(migration)?,
        // Handled above, before a run is made.
        Command::Resume { .. } => {}
    }
    let applied = run.out;
    if !applied.is_empty() {
        inst.version += 1;
    }
    Ok((inst, applied))
}

impl<'a> Run<'a> {
    pub(crate) fn new(ctx: Ctx<'a>, inst: &'a mut Instance) -> Self {
        Run {
            ctx,
            inst,
            out: Applied::default(),
            steps_entered: 0,
        }
    }

    pub(crate) fn emit(&mut self, actor: Actor, kind: EventKind, reason: Option<String>) {
        let seq = self.inst.history_len;
        self.inst.history_len += 1;
        self.out.events.push(Event {
            seq,
            at: self.ctx.now,
            actor,
            kind,
            reason,
        });
    }

    pub(crate) fn effect(&mut self, effect: Effect) {
        self.out.effects.push(effect);
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.inst.next_id;
        self.inst.next_id += 1;
        id
    }

    pub(crate) fn step(&self, id: &str) -> Result<&'a Step, CommandError> {
        self.ctx.def.step(id).ok_or_else(|| CommandError::NotFound {
            what: "step",
            id: id.to_string(),
        })
    }

    /// The token `id` if it is still at `activation`; `None` for a stale answer.
    pub(crate) fn live_token(&self, id: u64, activation: u64) -> Option<&Token> {
        self.inst
            .tokens
            .get(&id)
            .filter(|t| t.activation == activation)
    }

    /// Creates a token at `step` (inside `forks`) and enters it.
    pub(crate) fn spawn(&mut self, step: &str, forks: Vec<u64>) -> Result<(), CommandError> {
        let id = self.next_id();
        let token = Token {
            id,
            step: String::new(),
            activation: 0,
            entered_at: self.ctx.now,
            forks,
            wait: Wait::Joined,
        };
        self.inst.tokens.insert(id, token);
        self.move_to(id, step)
    }

    /// Moves token `id` to `step` (a new activation) and enters it.
    pub(crate) fn move_to(&mut self, id: u64, step: &str) -> Result<(), CommandError> {
        self.steps_entered += 1;
        if self.steps_entered > MAX_STEPS_PER_COMMAND {
            return Err(CommandError::Conflict(format!(
                "more than {MAX_STEPS_PER_COMMAND} steps entered by one command: the definition loops without waiting"
            )));
        }
        let activation = self.next_id();
        let now = self.ctx.now;
        let kind = self.step(step)?.kind().to_string();
        // What the token waited for in the step it leaves is no longer awaited.
        self.unsubscribe(id);
        if let Some(token) = self.inst.tokens.get_mut(&id) {
            token.step = step.to_string();
            token.activation = activation;
            token.entered_at = now;
        }
        self.emit(
            Actor::System,
            EventKind::StepEntered {
                step: step.to_string(),
                kind,
                token: id,
            },
            None,
        );
        self.enter(id, activation)
    }

    /// Leaves the token's step with `outcome` and moves on to where it leads.
    pub(crate) fn advance(
        &mut self,
        id: u64,
        outcome: Option<&str>,
        actor: Actor,
        reason: Option<String>,
    ) -> Result<(), CommandError> {
        let Some(token) = self.inst.tokens.get(&id) else {
            return Ok(());
        };
        let step_id = token.step.clone();
        let step = self.step(&step_id)?;
        self.emit(
            actor,
            EventKind::StepCompleted {
                step: step_id.clone(),
                token: id,
                outcome: outcome.map(str::to_string),
            },
            reason,
        );
        let target = next_step(step, outcome).ok_or_else(|| {
            CommandError::invalid(
                "outcome",
                format!(
                    "step `{step_id}` has no way on for outcome {:?}",
                    outcome.unwrap_or("(none)")
                ),
            )
        })?;
        self.move_to(id, &target)
    }

    /// Cancels a token: its open tasks and its timers go with it.
    pub(crate) fn drop_token(&mut self, id: u64) {
        let waits_for_children = match self.inst.tokens.get(&id).map(|t| &t.wait) {
            None => return,
            Some(Wait::Subworkflow) => true,
            Some(Wait::Children(fan)) => fan.running() > 0,
            Some(_) => false,
        };
        if waits_for_children {
            self.cancel_children(id, "the step that waits for it was cancelled");
        }
        self.inst.tokens.remove(&id);
        self.unsubscribe(id);
        let tasks: Vec<String> = self
            .inst
            .tasks
            .values()
            .filter(|t| t.token == id && t.status == TaskStatus::Open)
            .map(|t| t.id.clone())
            .collect();
        for task in tasks {
            self.cancel_task(&task);
        }
        self.inst.timers.retain(|_, timer| {
            !matches!(
                &timer.kind,
                TimerKind::Wait { token, .. } | TimerKind::Retry { token, .. } if *token == id
            )
        });
    }

    /// Ends the instance with `outcome`: every other token, task and timer is dropped.
    pub(crate) fn finish(
        &mut self,
        outcome: EndOutcome,
        step: Option<String>,
        actor: Actor,
        reason: Option<String>,
    ) {
        let tokens: Vec<u64> = self.inst.tokens.keys().copied().collect();
        for id in tokens {
            self.drop_token(id);
        }
        self.inst.timers.clear();
        self.inst.forks.clear();
        self.inst.subscriptions.clear();
        self.inst.paused = None;
        self.inst.held.clear();
        self.inst.status = Status::ended(outcome);
        self.inst.ended_at = Some(self.ctx.now);
        self.emit(
            actor,
            EventKind::InstanceEnded {
                outcome: outcome.to_string(),
                step,
            },
            reason,
        );
        if let Some(parent) = self.inst.parent.clone() {
            let data = self.inst.data.clone();
            self.effect(Effect::NotifyParent {
                parent,
                outcome,
                data,
            });
        }
        let title = format!("{} {}", self.ctx.def.id, outcome);
        let started_by = self.inst.started_by.clone();
        self.effect(Effect::Notify(Notification {
            kind: NotificationKind::InstanceFinished,
            task: None,
            title,
            assignee: Some(started_by),
            roles: Vec::new(),
            link_expires_at: None,
        }));
    }

    /// Merges `data` into the instance data (top-level keys replace) and records which keys.
    pub(crate) fn merge(&mut self, data: Map<String, Value>, actor: Actor) {
        if data.is_empty() {
            return;
        }
        let keys: Vec<String> = data.keys().cloned().collect();
        self.inst.data.extend(data);
        self.emit(actor, EventKind::DataUpdated { keys }, None);
    }
}

/// Where `step` leads for `outcome`.
pub(crate) fn next_step(step: &Step, outcome: Option<&str>) -> Option<String> {
    let from_map = |on: &BTreeMap<String, String>| outcome.and_then(|o| on.get(o).cloned());
    match step {
        Step::Task(t) => t.next.clone().or_else(|| from_map(&t.on)),
        Step::Approval(a) => match outcome {
            Some("approve") => Some(a.on.approve.clone()),
            Some("reject") => Some(a.on.reject.clone()),
            Some("request-changes") => a.on.request_changes.clone(),
            _ => None,
        },
        Step::Action(a) => Some(a.next.clone()),
        Step::Wait(w) => Some(w.next.clone()),
        Step::Join(j) => Some(j.next.clone()),
        Step::Receive(r) => Some(r.next.clone()),
        Step::Subworkflow(s) => from_map(&s.on).or_else(|| s.next.clone()),
        Step::Route(_) | Step::Parallel(_) | Step::End(_) => None,
    }
}
