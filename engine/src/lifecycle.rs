//! Pausing, resuming and migrating an instance: what operators do to a running instance besides
//! cancelling it.
//!
//! A paused instance keeps its place: what arrives from other systems, plugins and sub-workflows
//! is held in the instance with its time, and people's commands are refused until it is
//! resumed. Its timers do not fire (the store does not index a paused instance's timers); on
//! resume, the timers that came due and the held commands are applied in the order they
//! happened.
//!
//! A migration moves a running instance to another version of its definition. Each step the
//! instance is in goes to the step of the same id, or to the one the migration maps it to, and
//! must be a step of the kind that waits the way the instance waits there; [`migration_problems`]
//! says why an instance cannot move, and a dry run is just that.

use std::collections::BTreeMap;

use super::command::{Command, CommandError, Migration};
use super::event::{Actor, EventKind};
use super::run::{Applied, Ctx, Run, next_step};
use super::state::{Held, Instance, Paused, Status, TaskStatus, Wait};
use crate::definition::{Definition, Step};

impl Run<'_> {
    pub(crate) fn pause(&mut self, by: &str, reason: String) -> Result<(), CommandError> {
        if let Some(paused) = &self.inst.paused {
            return Err(CommandError::Conflict(format!(
                "instance `{}` is paused already (by {}: {})",
                self.inst.id, paused.by, paused.reason
            )));
        }
        self.inst.paused = Some(Paused {
            by: by.to_string(),
            at: self.ctx.now,
            reason: reason.clone(),
        });
        self.emit(
            Actor::person(by),
            EventKind::InstancePaused {},
            Some(reason),
        );
        Ok(())
    }

    /// Keeps `command` for the resumption; a timer that is no longer armed is dropped, and a
    /// message no step here takes is refused as it would be if the instance ran.
    pub(crate) fn hold(&mut self, command: Command) -> Result<(), CommandError> {
        let reason = match &command {
            Command::TimerFired { timer } => {
                if !self.inst.timers.contains_key(timer) {
                    return Ok(());
                }
                None
            }
            Command::ReceiveMessage(message) => {
                self.takers(message)?;
                Some(format!(
                    "message `{}` sent by {}",
                    message.id, message.sent_by
                ))
            }
            _ => None,
        };
        let kind = command.kind().to_string();
        let at = self.ctx.now;
        self.inst.held.push(Held { at, command });
        self.emit(
            Actor::System,
            EventKind::CommandHeld { command: kind },
            reason,
        );
        Ok(())
    }

    pub(crate) fn migrate(&mut self, migration: Migration) -> Result<(), CommandError> {
        let problems = migration_problems(self.ctx.def, self.inst, &migration);
        if !problems.is_empty() {
            return Err(CommandError::Conflict(format!(
                "instance `{}` cannot move to version {}: {}",
                self.inst.id,
                migration.to_version,
                problems.join("; ")
            )));
        }
        let to = |step: &str| migration.steps.get(step).cloned();
        let mut moved = BTreeMap::new();
        for token in self.inst.tokens.values_mut() {
            if let Some(step) = to(&token.step) {
                moved.insert(token.step.clone(), step.clone());
                token.step = step;
            }
        }
        for task in self.inst.tasks.values_mut() {
            if task.status == TaskStatus::Open
                && let Some(step) = to(&task.step)
            {
                task.step = step;
            }
        }
        for sub in self.inst.subscriptions.values_mut() {
            if let Some(step) = to(&sub.step) {
                sub.step = step;
            }
        }
        for fork in self.inst.forks.values_mut() {
            for step in [&mut fork.parallel, &mut fork.join] {
                if let Some(to) = to(step) {
                    moved.insert(step.clone(), to.clone());
                    *step = to;
                }
            }
        }
        let plugins: BTreeMap<String, String> = migration
            .plugins
            .into_iter()
            .filter(|(name, sha)| self.inst.plugins.get(name) != Some(sha))
            .collect();
        self.inst.plugins.extend(plugins.clone());
        let from_version = self.inst.definition_version;
        self.inst.definition_version = migration.to_version;
        self.emit(
            Actor::person(&migration.by),
            EventKind::InstanceMigrated {
                from_version,
                to_version: migration.to_version,
                steps: moved,
                plugins,
            },
            Some(migration.reason),
        );
        Ok(())
    }
}

/// Resumes a paused instance: the resumption, then what happened while it was paused, in time
/// order: the held commands at the time each arrived, and the timers that came due at their due
/// times (a timer first on a tie: it was due before the command came). A held command that no
/// longer applies is dropped with a record of why.
pub(crate) fn resume(
    ctx: Ctx<'_>,
    mut inst: Instance,
    by: &str,
    reason: Option<String>,
) -> Result<(Instance, Applied), CommandError> {
    if inst.paused.is_none() {
        return Err(CommandError::Conflict(format!(
            "instance `{}` is not paused",
            inst.id
        )));
    }
    let mut due: Vec<(u64, Command)> = inst
        .timers
        .values()
        .filter(|t| t.due_at <= ctx.now)
        .map(|t| {
            let fired = Command::TimerFired {
                timer: t.id.clone(),
            };
            (t.due_at, fired)
        })
        .collect();
    due.sort_by_key(|(at, _)| *at);
    let held = std::mem::take(&mut inst.held);
    let count = u32::try_from(held.len()).unwrap_or(u32::MAX);
    let mut queue = Vec::with_capacity(due.len() + held.len());
    let mut held = held.into_iter().peekable();
    for (at, fired) in due {
        while let Some(h) = held.next_if(|h| h.at < at) {
            queue.push(h.command);
        }
        queue.push(fired);
    }
    queue.extend(held.map(|h| h.command));
    inst.paused = None;
    let mut applied = {
        let mut run = Run::new(ctx, &mut inst);
        run.emit(
            Actor::person(by),
            EventKind::InstanceResumed { held: count },
            reason,
        );
        run.out
    };
    inst.version += 1;
    for command in queue {
        if inst.status != Status::Running {
            break;
        }
        let kind = command.kind().to_string();
        let message = match &command {
            Command::ReceiveMessage(m) => Some(m.id.clone()),
            _ => None,
        };
        let kept = inst.clone();
        match super::run::apply(ctx, inst, command) {
            Ok((next, more)) => {
                inst = next;
                applied.events.extend(more.events);
                applied.effects.extend(more.effects);
            }
            Err(error) => {
                inst = kept;
                let mut run = Run::new(ctx, &mut inst);
                run.emit(
                    Actor::System,
                    EventKind::HeldCommandDropped {
                        command: kind,
                        message,
                    },
                    Some(error.to_string()),
                );
                applied.events.extend(run.out.events);
            }
        }
    }
    Ok((inst, applied))
}

/// Why `inst` cannot move to `to` (a version of its definition) as `migration` says; empty
/// when it can. Each problem names the step and what does not fit.
pub fn migration_problems(to: &Definition, inst: &Instance, migration: &Migration) -> Vec<String> {
    let version = migration.to_version;
    let mut problems = Vec::new();
    if to.id != inst.definition_id {
        problems.push(format!(
            "it is an instance of `{}`, not of `{}`",
            inst.definition_id, to.id
        ));
        return problems;
    }
    if inst.status != Status::Running {
        problems.push(format!("it is {}", inst.status.as_str()));
        return problems;
    }
    if version == inst.definition_version {
        problems.push(format!("it is at version {version} already"));
        return problems;
    }
    let target = |step: &str| {
        migration
            .steps
            .get(step)
            .map_or(step, String::as_str)
            .to_string()
    };
    for token in inst.tokens.values() {
        let to_id = target(&token.step);
        let Some(step) = to.step(&to_id) else {
            problems.push(format!(
                "step `{}` has no step `{to_id}` in version {version} to go to (map it to one)",
                token.step
            ));
            continue;
        };
        let at = if to_id == token.step {
            format!("step `{to_id}`")
        } else {
            format!("step `{}` (to `{to_id}`)", token.step)
        };
        let wanted = match &token.wait {
            Wait::Task { .. } => "task",
            Wait::Approval(_) => "approval",
            Wait::Timer { .. } => "wait",
            Wait::Subworkflow | Wait::Children(_) => {
                let fans_out = matches!(step, Step::Subworkflow(s) if s.for_each.is_some());
                if fans_out != matches!(token.wait, Wait::Children(_)) {
                    problems.push(format!(
                        "{at} {} in version {version}, where the instance waits for {}",
                        if fans_out {
                            "fans out"
                        } else {
                            "does not fan out"
                        },
                        if fans_out {
                            "one sub-workflow"
                        } else {
                            "the instances of a fan-out"
                        }
                    ));
                    continue;
                }
                "subworkflow"
            }
            Wait::Message { .. } => "receive",
            Wait::Joined => "join",
            Wait::Policy { .. } | Wait::Action { .. } | Wait::Route { .. } => {
                problems.push(format!(
                    "{at} waits for its plugin's answer; move it once the plugin has answered"
                ));
                continue;
            }
            Wait::Next { workflow } => {
                problems.push(format!(
                    "{at} waits for the next workflow `{workflow}` to start; the instance ends once it runs"
                ));
                continue;
            }
            Wait::Incident(incident) => match incident.source.as_str() {
                "action" => "action",
                "policy" => "approval",
                "route" => "route",
                _ => step.kind(),
            },
        };
        if step.kind() != wanted {
            problems.push(format!(
                "{at} is {} step in version {version}, where the instance waits in {} step",
                a(step.kind()),
                a(wanted)
            ));
            continue;
        }
        for task in inst
            .tasks
            .values()
            .filter(|t| t.token == token.id && t.status == TaskStatus::Open)
        {
            if task.outcomes.is_empty() && !matches!(step, Step::Approval(_)) {
                if next_step(step, None).is_none() {
                    problems.push(format!(
                        "{at} in version {version} needs an outcome, which the open task `{}` does not offer",
                        task.id
                    ));
                }
                continue;
            }
            for outcome in &task.outcomes {
                if next_step(step, Some(outcome)).is_none() {
                    problems.push(format!(
                        "{at} in version {version} has no way on for outcome `{outcome}` of the open task `{}`",
                        task.id
                    ));
                }
            }
        }
        let awaited = step.awaited();
        for sub in inst.subscriptions.values().filter(|s| s.token == token.id) {
            if !awaited
                .iter()
                .any(|(message, _, _)| *message == sub.message)
            {
                problems.push(format!(
                    "{at} does not wait for message `{}` in version {version}",
                    sub.message
                ));
            }
        }
    }
    for fork in inst.forks.values() {
        match to.step(&target(&fork.parallel)) {
            Some(Step::Parallel(p)) => {
                let branches = u32::try_from(p.branches.len()).unwrap_or(u32::MAX);
                if branches != fork.branches {
                    problems.push(format!(
                        "parallel step `{}` has {branches} branches in version {version}, where the instance runs {}",
                        p.id, fork.branches
                    ));
                }
                if p.join != target(&fork.join) {
                    problems.push(format!(
                        "parallel step `{}` joins at `{}` in version {version}, not at `{}`",
                        p.id,
                        p.join,
                        target(&fork.join)
                    ));
                }
            }
            _ => problems.push(format!(
                "the branches the instance runs began at parallel step `{}`, which version {version} has no parallel step for (map it to one)",
                fork.parallel
            )),
        }
    }
    problems
}

/// `kind` with its article: `a task`, `an approval`.
fn a(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}
