//! What the core asks the outside world to do, as data. The driver carries effects out after
//! they are committed (at least once) and reports back with commands.

use serde::{Deserialize, Serialize};

use super::state::ParentLink;
use crate::definition::EndOutcome;

/// An effect, stored in the outbox with the command that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Effect {
    /// Run an action plugin. `key` is stable for this attempt, so a repeat can be recognized.
    RunAction {
        token: u64,
        activation: u64,
        attempt: u32,
        step: String,
        plugin: String,
        action: String,
        params: serde_json::Value,
        key: String,
    },
    /// Ask an approval-policy plugin.
    EvaluatePolicy {
        token: u64,
        activation: u64,
        attempt: u32,
        step: String,
        plugin: String,
        amount: Option<i64>,
        currency: String,
        category: String,
        requester: String,
    },
    /// Ask a router plugin.
    EvaluateRoute {
        token: u64,
        activation: u64,
        attempt: u32,
        step: String,
        plugin: String,
        candidates: Vec<String>,
    },
    /// Start a sub-workflow; with `wait`, report back to the token.
    StartChild {
        token: u64,
        activation: u64,
        workflow: String,
        data: serde_json::Map<String, serde_json::Value>,
        wait: bool,
    },
    /// Tell the parent that this sub-workflow ended.
    NotifyParent {
        parent: ParentLink,
        outcome: EndOutcome,
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Tell people something.
    Notify(Notification),
}

/// A notification to deliver (webhook, email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub task: Option<String>,
    pub title: String,
    pub assignee: Option<String>,
    pub roles: Vec<String>,
}

/// Why people are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    TaskAssigned,
    Reminder,
    Overdue,
    Escalated,
    InstanceFinished,
}
