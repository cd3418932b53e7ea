//! Index entries derived from an instance's state, so that each backend indexes alike.

use std::collections::BTreeSet;

use crate::engine::{Instance, Millis};

/// `(inbox key, status, task id)` for every task: one per person or role it is offered to.
pub fn task_keys(instance: &Instance) -> BTreeSet<(String, String, String)> {
    let mut keys = BTreeSet::new();
    for task in instance.tasks.values() {
        let status = task.status.as_str().to_string();
        let mut add = |who: String| {
            keys.insert((who, status.clone(), task.id.clone()));
        };
        if let Some(p) = &task.assignee {
            add(format!("p:{p}"));
        }
        if let Some(p) = &task.claimed_by {
            add(format!("p:{p}"));
        }
        if let Some(p) = &task.completed_by {
            add(format!("p:{p}"));
        }
        if let Some(r) = &task.role {
            add(format!("r:{r}"));
        }
        for c in &task.candidates {
            add(format!("p:{c}"));
        }
    }
    keys
}

/// `(due, timer id)` for every armed timer.
pub fn timer_keys(instance: &Instance) -> BTreeSet<(Millis, String)> {
    instance
        .timers
        .values()
        .map(|t| (t.due_at, t.id.clone()))
        .collect()
}
