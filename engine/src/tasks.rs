//! People acting on tasks: claiming, completing (with form validation), and approval quorums.

use serde_json::{Map, Value};

use super::command::{CommandError, Person};
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{StageStatus, Task, TaskStatus, Wait};
use crate::definition::{FieldKind, FormField, StageOrder, Step};

impl Run<'_> {
    fn open_task_for(&self, id: &str) -> Result<&Task, CommandError> {
        let task = self
            .inst
            .tasks
            .get(id)
            .ok_or_else(|| CommandError::NotFound {
                what: "task",
                id: id.to_string(),
            })?;
        if task.status != TaskStatus::Open {
            let by = task.completed_by.as_deref().unwrap_or("the engine");
            return Err(CommandError::Conflict(format!(
                "task `{id}` is already {} (by {by})",
                task.status.as_str()
            )));
        }
        Ok(task)
    }

    pub(crate) fn claim(&mut self, id: &str, by: &Person) -> Result<(), CommandError> {
        let task = self.open_task_for(id)?;
        match &task.claimed_by {
            Some(claimer) if *claimer == by.id => return Ok(()),
            Some(claimer) => {
                return Err(CommandError::Conflict(format!(
                    "task `{id}` is claimed by {claimer}"
                )));
            }
            None => {}
        }
        may_act(task, by)?;
        let now = self.ctx.now;
        if let Some(task) = self.inst.tasks.get_mut(id) {
            task.claimed_by = Some(by.id.clone());
            task.claimed_at = Some(now);
        }
        self.emit(
            Actor::acting(by),
            EventKind::TaskClaimed {
                task: id.to_string(),
            },
            None,
        );
        Ok(())
    }

    pub(crate) fn unclaim(&mut self, id: &str, by: &Person) -> Result<(), CommandError> {
        let task = self.open_task_for(id)?;
        if task.claimed_by.as_deref() != Some(by.id.as_str()) {
            return Err(CommandError::Forbidden(format!(
                "task `{id}` is not claimed by {}",
                by.id
            )));
        }
        if let Some(task) = self.inst.tasks.get_mut(id) {
            task.claimed_by = None;
            task.claimed_at = None;
        }
        self.emit(
            Actor::acting(by),
            EventKind::TaskUnclaimed {
                task: id.to_string(),
            },
            None,
        );
        Ok(())
    }

    pub(crate) fn complete_task(
        &mut self,
        id: &str,
        by: &Person,
        outcome: Option<String>,
        data: Map<String, Value>,
        comment: Option<String>,
    ) -> Result<(), CommandError> {
        let task = self.open_task_for(id)?;
        if let Some(claimer) = &task.claimed_by
            && *claimer != by.id
        {
            return Err(CommandError::Conflict(format!(
                "task `{id}` is claimed by {claimer}"
            )));
        }
        may_act(task, by)?;
        let task = task.clone();
        let outcome = check_outcome(&task, outcome)?;
        match self.ctx.def.step(&task.step) {
            Some(Step::Task(step)) => check_step_data(&step.id, &step.form, step.free_data, &data)?,
            Some(Step::Approval(step)) => {
                check_step_data(&step.id, &step.form, step.free_data, &data)?;
            }
            _ => {}
        }
        check_policy_inputs(self.ctx.def, &data)?;
        let comment = check_comment(comment)?;
        self.close_task(&task, Actor::acting(by), outcome.clone(), data, comment)?;
        match task.stage {
            Some(stage) => self.approval_answer(&task, stage, &by.id, outcome.as_deref()),
            None => self.advance(task.token, outcome.as_deref(), Actor::acting(by), None),
        }
    }

    /// Marks a task completed by `actor` and merges its data.
    pub(crate) fn close_task(
        &mut self,
        task: &Task,
        actor: Actor,
        outcome: Option<String>,
        data: Map<String, Value>,
        reason: Option<String>,
    ) -> Result<(), CommandError> {
        let now = self.ctx.now;
        let by = match &actor {
            Actor::Person { id, .. } => id.clone(),
            Actor::Plugin { name, .. } => name.clone(),
            Actor::Timer => "timer".to_string(),
            Actor::System => "system".to_string(),
        };
        if let Some(t) = self.inst.tasks.get_mut(&task.id) {
            t.status = TaskStatus::Completed;
            t.completed_at = Some(now);
            t.completed_by = Some(by);
            t.outcome = outcome.clone();
        }
        self.drop_task_timers(&task.id);
        self.emit(
            actor.clone(),
            EventKind::TaskCompleted {
                task: task.id.clone(),
                step: task.step.clone(),
                outcome,
            },
            reason,
        );
        self.merge(data, actor);
        Ok(())
    }

    pub(crate) fn cancel_task(&mut self, id: &str) {
        if let Some(task) = self.inst.tasks.get_mut(id)
            && task.status == TaskStatus::Open
        {
            task.status = TaskStatus::Cancelled;
            self.drop_task_timers(id);
            self.emit(
                Actor::System,
                EventKind::TaskCancelled {
                    task: id.to_string(),
                },
                None,
            );
        }
    }

    fn drop_task_timers(&mut self, task: &str) {
        use super::state::TimerKind;
        self.inst.timers.retain(|_, timer| match &timer.kind {
            TimerKind::Reminder { task: t }
            | TimerKind::Due { task: t }
            | TimerKind::Escalate { task: t } => t != task,
            _ => true,
        });
    }

    /// An approver answered: count it toward the stage's quorum and decide the step when it can.
    pub(crate) fn approval_answer(
        &mut self,
        task: &Task,
        stage: usize,
        by: &str,
        outcome: Option<&str>,
    ) -> Result<(), CommandError> {
        let token = task.token;
        let Some(Wait::Approval(state)) = self.inst.tokens.get(&token).map(|t| &t.wait) else {
            return Ok(());
        };
        let mut state = state.clone();
        let Some(current) = state.stages.get_mut(stage) else {
            return Ok(());
        };
        let actor = Actor::person(by);
        match outcome {
            Some("request-changes") => {
                self.cancel_approval_tasks(
                    &state
                        .stages
                        .iter()
                        .flat_map(|s| s.tasks.clone())
                        .collect::<Vec<_>>(),
                );
                return self.advance(token, Some("request-changes"), actor, None);
            }
            Some("approve") => {
                if current.approved_by.iter().any(|a| a == by) {
                    return Err(CommandError::Conflict(format!(
                        "{by} already approved stage `{}`; it needs {} different approvers",
                        current.name, current.required
                    )));
                }
                current.approved_by.push(by.to_string());
            }
            _ => {}
        }
        let open = current
            .tasks
            .iter()
            .filter(|t| {
                self.inst
                    .tasks
                    .get(*t)
                    .is_some_and(|t| t.status == TaskStatus::Open)
            })
            .count() as u32;
        let approved = current.approved_by.len() as u32;
        let decided = if approved >= current.required {
            Some(true)
        } else if approved + open < current.required {
            // Too few approvers left to reach the quorum.
            Some(false)
        } else {
            None
        };
        let step = task.step.clone();
        if let Some(approved) = decided {
            current.status = if approved {
                StageStatus::Approved
            } else {
                StageStatus::Rejected
            };
            let leftover = current.tasks.clone();
            let name = current.name.clone();
            self.cancel_approval_tasks(&leftover);
            self.emit(
                actor.clone(),
                EventKind::StageDecided {
                    step,
                    stage: name,
                    approved,
                },
                None,
            );
        }
        let rejected = state
            .stages
            .iter()
            .any(|s| s.status == StageStatus::Rejected);
        let next_pending = state
            .stages
            .iter()
            .position(|s| s.status == StageStatus::Pending);
        let all_approved = state
            .stages
            .iter()
            .all(|s| s.status == StageStatus::Approved);
        let order = state.order;
        self.set_wait(token, Wait::Approval(state.clone()));
        if rejected {
            let all: Vec<String> = state.stages.iter().flat_map(|s| s.tasks.clone()).collect();
            self.cancel_approval_tasks(&all);
            return self.advance(token, Some("reject"), actor, None);
        }
        if all_approved {
            return self.advance(token, Some("approve"), actor, None);
        }
        if decided.is_some()
            && order == StageOrder::Sequential
            && let Some(next) = next_pending
        {
            let activation = task.activation;
            self.open_stage(token, activation, next);
        }
        Ok(())
    }

    fn cancel_approval_tasks(&mut self, tasks: &[String]) {
        for task in tasks {
            self.cancel_task(task);
        }
    }
}

/// Whether `by` may act on `task`: its assignee, a holder of its role, or one of its candidates.
fn may_act(task: &Task, by: &Person) -> Result<(), CommandError> {
    let allowed = task.assignee.as_deref() == Some(by.id.as_str())
        || task.role.as_ref().is_some_and(|r| by.roles.contains(r))
        || task.candidates.contains(&by.id);
    if allowed {
        return Ok(());
    }
    let who = match (&task.assignee, &task.role) {
        (Some(a), _) => format!("assigned to {a}"),
        (None, Some(r)) => format!("for role `{r}`"),
        _ => format!("for {}", task.candidates.join(", ")),
    };
    Err(CommandError::Forbidden(format!(
        "task `{}` is {who}; {} may not act on it",
        task.id, by.id
    )))
}

/// The longest comment a completion keeps, in characters.
const MAX_COMMENT: usize = 4_000;

/// A completion's comment, trimmed; none when blank.
fn check_comment(comment: Option<String>) -> Result<Option<String>, CommandError> {
    let Some(text) = comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
    else {
        return Ok(None);
    };
    let length = text.chars().count();
    if length > MAX_COMMENT {
        return Err(CommandError::invalid(
            "comment",
            format!("has {length} characters; at most {MAX_COMMENT} are kept"),
        ));
    }
    Ok(Some(text))
}

fn check_outcome(task: &Task, outcome: Option<String>) -> Result<Option<String>, CommandError> {
    if task.outcomes.is_empty() {
        return Ok(outcome);
    }
    match outcome {
        Some(o) if task.outcomes.contains(&o) => Ok(Some(o)),
        Some(o) => Err(CommandError::invalid(
            "outcome",
            format!("`{o}` is not one of {}", task.outcomes.join(", ")),
        )),
        None => Err(CommandError::invalid(
            "outcome",
            format!("this task needs one of {}", task.outcomes.join(", ")),
        )),
    }
}

/// A step takes only the fields its form declares, or any data if it says so (`free_data`): a
/// step with neither takes none, so nothing a person sends reaches the instance unasked.
fn check_step_data(
    step: &str,
    form: &[FormField],
    free_data: bool,
    data: &Map<String, Value>,
) -> Result<(), CommandError> {
    if free_data {
        return Ok(());
    }
    if form.is_empty() {
        if let Some(key) = data.keys().next() {
            return Err(CommandError::invalid(
                format!("data.{key}"),
                format!(
                    "step `{step}` declares no form, so it takes no data (its definition may declare a `form`, or `free_data = true` to take any)"
                ),
            ));
        }
        return Ok(());
    }
    check_form(form, data)
}

/// Checks submitted data against a task's form: required fields, types, no strangers.
pub(crate) fn check_form(
    form: &[FormField],
    data: &Map<String, Value>,
) -> Result<(), CommandError> {
    if form.is_empty() {
        return Ok(());
    }
    for key in data.keys() {
        if !form.iter().any(|f| f.name == *key) {
            let known: Vec<&str> = form.iter().map(|f| f.name.as_str()).collect();
            return Err(CommandError::invalid(
                format!("data.{key}"),
                format!("the form has no such field (it has {})", known.join(", ")),
            ));
        }
    }
    for field in form {
        let field_path = format!("data.{}", field.name);
        let value = data.get(&field.name).filter(|v| !v.is_null());
        let Some(value) = value else {
            if field.required {
                return Err(CommandError::invalid(field_path, "is required"));
            }
            continue;
        };
        let ok = match field.kind {
            FieldKind::Text => value.is_string(),
            FieldKind::Number => value.is_number(),
            FieldKind::Integer => value.is_i64() || value.is_u64(),
            FieldKind::Money => value.is_i64(),
            FieldKind::Boolean => value.is_boolean(),
            FieldKind::Date => value
                .as_str()
                .is_some_and(|s| super::steps::parse_time(s).is_some()),
            FieldKind::Choice => value
                .as_str()
                .is_some_and(|s| field.options.iter().any(|o| o == s)),
        };
        if !ok {
            let expected = match field.kind {
                FieldKind::Choice => format!("one of {}", field.options.join(", ")),
                FieldKind::Date => "a date like 2026-11-22 or 2026-11-22T09:00:00Z".to_string(),
                FieldKind::Money => {
                    "an integer amount in minor units (12550 for 125.50)".to_string()
                }
                other => format!("{other:?}").to_lowercase(),
            };
            return Err(CommandError::invalid(
                field_path,
                format!("expected {expected}, got {value}"),
            ));
        }
    }
    Ok(())
}

/// Whether a value has the type a policy input needs.
type ValueCheck = fn(&Value) -> bool;

/// Checks the values that approval policies are given, as the definition's `request` mappings
/// name them, wherever `data` holds them: an amount is an integer of minor units, a currency an
/// ISO 4217 code, a category and a requester text. A value of another type is refused naming
/// the field, never coerced (a policy given "no amount" for `"12.50"` might approve it).
pub(crate) fn check_policy_inputs(
    def: &crate::definition::Definition,
    data: &Map<String, Value>,
) -> Result<(), CommandError> {
    for step in &def.steps {
        let Step::Approval(approval) = step else {
            continue;
        };
        if approval.policy.is_none() {
            continue;
        }
        let request = &approval.request;
        let fields: [(&str, ValueCheck, &str); 4] = [
            (
                &request.amount,
                |v| v.is_i64(),
                "an integer amount in minor units (12550 for 125.50), within 64 bits",
            ),
            (
                &request.currency,
                |v| {
                    v.as_str()
                        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                },
                "an ISO 4217 currency code such as \"USD\"",
            ),
            (&request.category, Value::is_string, "text"),
            (&request.requester, Value::is_string, "text"),
        ];
        for (path, ok, expected) in fields {
            let Some(value) = crate::data_path(data, path).filter(|v| !v.is_null()) else {
                continue;
            };
            if !ok(value) {
                return Err(CommandError::invalid(
                    format!("data.{path}"),
                    format!(
                        "step `{}` gives it to its approval policy, which needs {expected}; got {value}",
                        approval.id
                    ),
                ));
            }
        }
    }
    Ok(())
}
