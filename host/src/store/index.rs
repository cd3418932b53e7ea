//! Index entries derived from an instance's state, so that each backend indexes alike.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::engine::{Instance, Millis};

/// Every index entry an instance's state has. A change diffs the new state's entries against
/// these, so it needs what the old state was indexed under, not the old state itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexKeys {
    pub tasks: BTreeSet<(String, String, String)>,
    pub timers: BTreeSet<(Millis, String)>,
    pub listing: BTreeSet<String>,
    /// `(message, correlation, subscription id)` for every step waiting for a message.
    pub messages: BTreeSet<(String, String, String)>,
    /// When a finished instance ended: retention archives by it.
    pub ended: Option<Millis>,
}

impl IndexKeys {
    pub fn of(instance: &Instance) -> Self {
        IndexKeys {
            tasks: task_keys(instance),
            timers: timer_keys(instance),
            listing: listing_keys(instance),
            messages: message_keys(instance),
            ended: ended_key(instance),
        }
    }
}

/// When the instance ended, if it has finished.
pub fn ended_key(instance: &Instance) -> Option<Millis> {
    instance
        .ended_at
        .filter(|_| instance.status != crate::engine::Status::Running)
}

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

/// The listing keys of an instance: by workflow (`w:`), by status (`s:`), and by both (`ws:`),
/// so that a filtered instance list reads only the instances that can match.
pub fn listing_keys(instance: &Instance) -> BTreeSet<String> {
    BTreeSet::from([
        process_key(instance.process_id()),
        format!("w:{}", instance.definition_id),
        format!("s:{}", instance.status.as_str()),
        listing_key(
            Some(&instance.definition_id),
            Some(instance.status.as_str()),
        )
        .unwrap_or_default(),
    ])
}

/// The listing key of the instances of a process instance.
pub fn process_key(process: &str) -> String {
    format!("p:{process}")
}

/// The listing key a filter on `definition` and `status` reads; `None` without either.
pub fn listing_key(definition: Option<&str>, status: Option<&str>) -> Option<String> {
    match (definition, status) {
        (Some(d), Some(s)) => Some(format!("ws:{d}\u{1f}{s}")),
        (Some(d), None) => Some(format!("w:{d}")),
        (None, Some(s)) => Some(format!("s:{s}")),
        (None, None) => None,
    }
}

/// `(due, timer id)` for every armed timer; none while the instance is paused, so its timers
/// come due once it is resumed.
pub fn timer_keys(instance: &Instance) -> BTreeSet<(Millis, String)> {
    if instance.paused.is_some() {
        return BTreeSet::new();
    }
    instance
        .timers
        .values()
        .map(|t| (t.due_at, t.id.clone()))
        .collect()
}

/// `(message, correlation, subscription id)` for every subscription.
pub fn message_keys(instance: &Instance) -> BTreeSet<(String, String, String)> {
    instance
        .subscriptions
        .values()
        .map(|s| (s.message.clone(), s.correlation.clone(), s.id.clone()))
        .collect()
}
