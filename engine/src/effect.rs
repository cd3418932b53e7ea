//! What the core asks the outside world to do, as data. The driver carries effects out after
//! they are committed (at least once) and reports back with commands.

use serde::{Deserialize, Serialize};

use super::command::{Command, EffectFailure, PluginAnswer};
use super::state::ParentLink;
use crate::Capability;
use crate::definition::EndOutcome;

/// An effect, stored in the outbox with the command that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Effect {
    /// Call a tenant plugin for a step: run an action, ask an approval policy, ask a router.
    CallPlugin(PluginCall),
    /// Start a sub-workflow; with `wait`, report back to the token.
    StartChild {
        token: u64,
        activation: u64,
        workflow: String,
        data: serde_json::Map<String, serde_json::Value>,
        wait: bool,
    },
    /// Start one instance of `workflow` per entry of `children` (a fan-out); with `wait`, each
    /// reports back to the token with its index.
    StartChildren {
        token: u64,
        activation: u64,
        workflow: String,
        children: Vec<serde_json::Map<String, serde_json::Value>>,
        wait: bool,
    },
    /// Cancel the sub-workflows still running that token `token` (at `activation`) started: it
    /// no longer waits for them.
    CancelChildren {
        token: u64,
        activation: u64,
        reason: String,
    },
    /// Tell the parent that this sub-workflow ended.
    NotifyParent {
        parent: ParentLink,
        outcome: EndOutcome,
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Tell people something.
    Notify(Notification),
    /// Start the workflow that follows this one in its process (an end step's `then`), in the
    /// same process instance.
    StartNext {
        workflow: String,
        data: serde_json::Map<String, serde_json::Value>,
        process: String,
        /// The end step's token, told when the next workflow runs or was refused. None in
        /// entries stored before ends waited for their next workflow (the instance has ended).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        activation: Option<u64>,
    },
}

/// A notification to deliver (webhook, email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub task: Option<String>,
    pub title: String,
    pub assignee: Option<String>,
    pub roles: Vec<String>,
    /// Set when the assignee is an outside participant's email address: their link to the task
    /// stays valid until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::time::rfc3339::option")]
    pub link_expires_at: Option<crate::Millis>,
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

/// One call of a plugin for a step, at one attempt. Its answer comes back as
/// [`Command::PluginAnswered`] with the same token, activation and attempt, built by
/// [`PluginCall::answered`]; an answer to an attempt the step has moved past changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginCall {
    pub token: u64,
    pub activation: u64,
    pub attempt: u32,
    pub step: String,
    /// The plugin's name; the instance pins the version.
    pub plugin: String,
    pub request: PluginRequest,
}

impl PluginCall {
    /// The command that reports this call's result.
    pub fn answered(&self, result: Result<PluginAnswer, EffectFailure>) -> Command {
        self.answered_with(result, None)
    }

    /// The same, with what the call used and logged, which the history keeps.
    pub fn answered_with(
        &self,
        result: Result<PluginAnswer, EffectFailure>,
        usage: Option<crate::CallUsage>,
    ) -> Command {
        Command::PluginAnswered {
            token: self.token,
            activation: self.activation,
            attempt: self.attempt,
            result,
            usage,
        }
    }
}

/// What a plugin call asks, by capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "capability", rename_all = "kebab-case")]
pub enum PluginRequest {
    /// Run an automated step. `key` is stable for this attempt, so a repeat can be recognized.
    StepAction {
        action: String,
        params: serde_json::Value,
        key: String,
    },
    /// Who must approve.
    ApprovalPolicy {
        amount: Option<i64>,
        currency: String,
        category: String,
        requester: String,
    },
    /// Which of the candidates comes next.
    Router { candidates: Vec<String> },
}

impl PluginRequest {
    pub fn capability(&self) -> Capability {
        match self {
            PluginRequest::StepAction { .. } => Capability::StepAction,
            PluginRequest::ApprovalPolicy { .. } => Capability::ApprovalPolicy,
            PluginRequest::Router { .. } => Capability::Router,
        }
    }
}
