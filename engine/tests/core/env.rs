//! The test environment: one definition, one instance, a time that only moves when told.

use flowgate_engine::calendar::Calendar;
use flowgate_engine::definition::{Definition, Format, parse};
use flowgate_engine::{
    Applied, Command, CommandError, Ctx, Effect, Event, Instance, Millis, Person, PluginCall,
    StartSpec, TaskStatus, apply, start,
};
use serde_json::{Map, Value, json};

pub const T0: Millis = 1_700_000_000_000;

pub struct Env {
    pub def: Definition,
    /// The tenant's business calendar (Monday to Friday, 09:00-17:00 UTC unless a test sets one).
    pub calendar: Calendar,
    pub now: Millis,
    pub inst: Instance,
}

/// A definition from TOML; a test's definition is always valid.
pub fn definition(toml: &str) -> Definition {
    parse("test.toml", toml, Format::Toml).unwrap_or_else(|e| panic!("{e}"))
}

pub fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

impl Env {
    /// Starts an instance of `toml` with `data` at `T0`.
    pub fn start(toml: &str, data: Value) -> (Env, Applied) {
        let def = definition(toml);
        let spec = StartSpec {
            id: "i1".into(),
            version: 1,
            tenant: "acme".into(),
            data: object(data),
            plugins: [("p".to_string(), "0123abcd".to_string())].into(),
            parent: None,
            process: None,
            started_by: "ann".into(),
        };
        let (inst, applied) = start(
            Ctx {
                def: &def,
                now: T0,
                calendar: &Calendar::default(),
            },
            spec,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (
            Env {
                def,
                calendar: Calendar::default(),
                now: T0,
                inst,
            },
            applied,
        )
    }

    /// Applies `command` now. On an error the state stays as it was, as the writer keeps it.
    pub fn apply(&mut self, command: Command) -> Result<Applied, CommandError> {
        let ctx = Ctx {
            def: &self.def,
            now: self.now,
            calendar: &self.calendar,
        };
        let (inst, applied) = apply(ctx, self.inst.clone(), command)?;
        self.inst = inst;
        Ok(applied)
    }

    /// Applies `command`, which must succeed.
    pub fn ok(&mut self, command: Command) -> Applied {
        self.apply(command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The open task of `step`.
    pub fn task(&self, step: &str) -> String {
        self.open_tasks(step)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no open task at `{step}`"))
    }

    pub fn open_tasks(&self, step: &str) -> Vec<String> {
        self.inst
            .tasks
            .values()
            .filter(|t| t.step == step && t.status == TaskStatus::Open)
            .map(|t| t.id.clone())
            .collect()
    }

    /// Completes the open task of `step` as `who` with `role`.
    pub fn complete(
        &mut self,
        step: &str,
        who: &str,
        role: &str,
        outcome: Option<&str>,
    ) -> Applied {
        let task = self.task(step);
        self.ok(complete(&task, who, role, outcome, json!({})))
    }

    /// The steps tokens are at, sorted.
    pub fn at_steps(&self) -> Vec<String> {
        let mut steps: Vec<String> = self.inst.tokens.values().map(|t| t.step.clone()).collect();
        steps.sort();
        steps
    }
}

pub fn complete(task: &str, who: &str, role: &str, outcome: Option<&str>, data: Value) -> Command {
    Command::CompleteTask {
        task: task.to_string(),
        by: Person::new(who, &[role]),
        outcome: outcome.map(str::to_string),
        data: object(data),
        expected_version: None,
        comment: None,
    }
}

/// `"kind subject"` for each event: its tag and its step, task or outcome.
pub fn events(applied: &Applied) -> Vec<String> {
    applied.events.iter().map(event).collect()
}

pub fn event(event: &Event) -> String {
    let value = serde_json::to_value(&event.kind).unwrap_or_default();
    let tag = value["event"].as_str().unwrap_or("?").to_string();
    let subject = ["step", "task", "outcome"]
        .iter()
        .find_map(|k| value[*k].as_str().map(str::to_string));
    match subject {
        Some(s) => format!("{tag} {s}"),
        None => tag,
    }
}

/// `"kind subject"` for each effect.
pub fn effects(applied: &Applied) -> Vec<String> {
    applied
        .effects
        .iter()
        .map(|effect| match effect {
            Effect::CallPlugin(call) => format!(
                "call {} {}@{}",
                call.request.capability(),
                call.step,
                call.attempt
            ),
            Effect::StartChild { workflow, wait, .. } => {
                format!("start-child {workflow} wait={wait}")
            }
            Effect::StartChildren {
                workflow,
                children,
                wait,
                ..
            } => format!("start-children {}x{workflow} wait={wait}", children.len()),
            Effect::CancelChildren { token, .. } => format!("cancel-children {token}"),
            Effect::NotifyParent { outcome, .. } => format!("notify-parent {outcome}"),
            Effect::StartNext { workflow, .. } => format!("start-next {workflow}"),
            Effect::Notify(n) => {
                let kind = serde_json::to_value(n.kind).unwrap_or_default();
                format!("notify {}", kind.as_str().unwrap_or("?"))
            }
        })
        .collect()
}

/// The one plugin call among `applied`'s effects.
pub fn call(applied: &Applied) -> PluginCall {
    let calls: Vec<&PluginCall> = applied
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::CallPlugin(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "{:?}", effects(applied));
    calls[0].clone()
}
