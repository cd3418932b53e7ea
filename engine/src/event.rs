//! The history: every event with its time, actor and reason. It is the audit trail and the source
//! of the metrics.

use serde::{Deserialize, Serialize};

use super::Millis;
use super::command::{FailureKind, PluginRef};

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 0-based position in the instance's history.
    pub seq: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub actor: Actor,
    #[serde(flatten)]
    pub kind: EventKind,
    /// Why, where a decision was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Actor {
    Person {
        id: String,
        /// The administrator token that acted for the person, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
    },
    Plugin {
        name: String,
        sha256: String,
    },
    Timer,
    System,
}

impl Actor {
    /// A person.
    pub fn person(id: &str) -> Actor {
        Actor::Person {
            id: id.to_string(),
            via: None,
        }
    }

    /// A person acting on a task, and the token that acted for them if any.
    pub fn acting(by: &super::Person) -> Actor {
        Actor::Person {
            id: by.id.clone(),
            via: by.via.clone(),
        }
    }

    /// A plugin at a version.
    pub fn plugin(p: &PluginRef) -> Actor {
        Actor::Plugin {
            name: p.name.clone(),
            sha256: p.sha256.clone(),
        }
    }

    /// Whether a person (rather than a plugin, timer or the engine) acted.
    pub fn is_person(&self) -> bool {
        matches!(self, Actor::Person { .. })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    InstanceStarted {
        definition: String,
        version: u32,
        data: serde_json::Value,
    },
    StepEntered {
        step: String,
        kind: String,
        token: u64,
    },
    StepCompleted {
        step: String,
        token: u64,
        outcome: Option<String>,
    },
    TaskCreated {
        task: String,
        step: String,
        assignee: Option<String>,
        role: Option<String>,
        candidates: Vec<String>,
        #[serde(default, with = "crate::time::rfc3339::option")]
        due_at: Option<Millis>,
    },
    TaskClaimed {
        task: String,
    },
    TaskUnclaimed {
        task: String,
    },
    TaskCompleted {
        task: String,
        step: String,
        outcome: Option<String>,
    },
    TaskCancelled {
        task: String,
    },
    TaskReassigned {
        task: String,
        role: String,
    },
    ApprovalRequired {
        step: String,
        stages: Vec<String>,
    },
    AutoApproved {
        step: String,
    },
    StageDecided {
        step: String,
        stage: String,
        approved: bool,
    },
    DataUpdated {
        keys: Vec<String>,
    },
    ActionSucceeded {
        step: String,
        attempt: u32,
        note: String,
    },
    /// A plugin call answered: the fuel it used and what the plugin logged.
    PluginCalled {
        step: String,
        attempt: u32,
        fuel: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
    },
    PluginCallFailed {
        step: String,
        attempt: u32,
        error: String,
        /// The failure's kind (absent in histories written before kinds were recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<FailureKind>,
        #[serde(default, with = "crate::time::rfc3339::option")]
        retry_at: Option<Millis>,
    },
    Routed {
        step: String,
        next: Vec<String>,
    },
    ReminderSent {
        task: String,
    },
    TaskOverdue {
        task: String,
    },
    Escalated {
        task: String,
        action: String,
    },
    IncidentRaised {
        step: String,
        token: u64,
        error: String,
    },
    IncidentResolved {
        step: String,
        token: u64,
        resolution: String,
    },
    /// The instance runs another version of a plugin from now on (an incident retried on it).
    PluginRepinned {
        step: String,
        plugin: String,
        /// The version it was pinned to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
    },
    SubworkflowStarted {
        step: String,
        workflow: String,
        /// A fan-out: how many instances it started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    SubworkflowFinished {
        step: String,
        child: String,
        outcome: String,
    },
    BranchJoined {
        step: String,
        arrived: u32,
        required: u32,
    },
    BranchCancelled {
        step: String,
        token: u64,
    },
    InstanceEnded {
        outcome: String,
        step: Option<String>,
    },
    /// The instance reached an end step that starts the next workflow of its process; it ends
    /// once that workflow runs.
    NextStarted {
        workflow: String,
    },
    /// The workflow that follows this one runs, as `instance`.
    FollowedBy {
        workflow: String,
        instance: String,
    },
    /// A workflow this instance started (a sub-workflow it does not wait for) was refused.
    StartRefused {
        workflow: String,
        error: String,
    },
    /// A step began to wait for a message.
    MessageAwaited {
        step: String,
        token: u64,
        message: String,
        correlation: String,
    },
    /// The message a step waited for arrived (`id` is the sender's).
    MessageReceived {
        step: String,
        token: u64,
        message: String,
        id: String,
    },
    /// A wait for a message passed a point of its deadline: `reminded`, `overdue`, or the
    /// escalation taken.
    MessageLate {
        step: String,
        token: u64,
        action: String,
    },
    /// The instance was paused (the reason is the event's).
    InstancePaused {},
    /// The instance was resumed; `held` commands that arrived while it was paused follow.
    InstanceResumed {
        held: u32,
    },
    /// A command arrived while the instance was paused and waits for its resumption.
    CommandHeld {
        command: String,
    },
    /// A held command no longer applied when the instance was resumed (the step it was for
    /// had moved on, say): why is the event's reason.
    HeldCommandDropped {
        command: String,
        /// The message's id, when the command was a message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The instance moved to another version of its definition; `steps` says where the steps
    /// it was in went, when not to the step of the same id, and `plugins` the new pins.
    InstanceMigrated {
        from_version: u32,
        to_version: u32,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        steps: std::collections::BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        plugins: std::collections::BTreeMap<String, String>,
    },
}
