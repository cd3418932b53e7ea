//! An instance's state: data, tokens (active steps), tasks, timers and forks. The core changes it
//! only through commands; the store keeps it and indexes its tasks and timers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Millis;
use super::command::{Blame, Command, FailureKind};
use crate::Capability;
use crate::definition::{EndOutcome, StageOrder};

/// A running or finished workflow instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub tenant: String,
    pub definition_id: String,
    pub definition_version: u32,
    /// Plugin name → the sha256 the instance is pinned to.
    pub plugins: BTreeMap<String, String>,
    pub status: Status,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub tokens: BTreeMap<u64, Token>,
    pub tasks: BTreeMap<String, Task>,
    pub timers: BTreeMap<String, Timer>,
    pub forks: BTreeMap<u64, Fork>,
    /// The messages the instance waits for, by subscription id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, Subscription>,
    pub parent: Option<ParentLink>,
    /// Set while the instance is paused: nothing moves it on until it is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// What arrived while it was paused (messages, plugin answers, sub-workflow ends), in
    /// order: applied when it is resumed, in time order with the timers that came due.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// The process instance it belongs to: the id of the instance that began the business case,
    /// inherited by the sub-workflows and following workflows it starts. (Empty in instances
    /// stored before processes: their own id.)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub process: String,
    pub started_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: Millis,
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub ended_at: Option<Millis>,
    /// Bumped by every command that changes the instance (optimistic concurrency).
    pub version: u64,
    /// Events recorded so far; the next event's sequence number.
    pub history_len: u64,
    /// The next id for a token, fork, task or timer.
    pub next_id: u64,
}

/// Whether an instance runs, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Running,
    Completed,
    Rejected,
    Cancelled,
}

impl Status {
    /// The status an end outcome gives.
    pub fn ended(outcome: EndOutcome) -> Status {
        match outcome {
            EndOutcome::Completed => Status::Completed,
            EndOutcome::Rejected => Status::Rejected,
            EndOutcome::Cancelled => Status::Cancelled,
        }
    }

    /// The word used in APIs and filters.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Who paused an instance, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub reason: String,
}

/// A command that arrived while the instance was paused, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
    pub command: Command,
}

/// Where a fan-out stands: how many instances it started, how many must complete, and those
/// that ended so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOut {
    pub started: u32,
    pub required: u32,
    /// In the order they ended. (A list, not a map by index: an internally tagged enum keeps
    /// JSON map keys as text.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<EndedChild>,
}

impl FanOut {
    /// How many ended `completed`.
    pub fn completed(&self) -> u32 {
        self.ended
            .iter()
            .filter(|c| c.outcome == EndOutcome::Completed)
            .count() as u32
    }

    /// How many have not ended.
    pub fn running(&self) -> u32 {
        self.started.saturating_sub(self.ended.len() as u32)
    }

    /// The instance started for element `index`, if it ended.
    pub fn ended_at(&self, index: u32) -> Option<&EndedChild> {
        self.ended.iter().find(|c| c.index == index)
    }
}

/// A fan-out instance that ended: which, how, and its final data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedChild {
    /// The index of its element in the list.
    pub index: u32,
    pub instance: String,
    pub outcome: EndOutcome,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// A link from a sub-workflow to the step of its parent that waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    pub instance: String,
    pub token: u64,
    pub activation: u64,
    /// In a fan-out: the index of the element this instance was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// An active step of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: u64,
    pub step: String,
    /// Unique per entry into a step: results and timers for an older entry are stale.
    pub activation: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub entered_at: Millis,
    /// The forks this token runs inside, innermost last.
    pub forks: Vec<u64>,
    pub wait: Wait,
}

/// What a token waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "kebab-case")]
pub enum Wait {
    /// A person to complete a task.
    Task { task: String },
    /// Approvers.
    Approval(ApprovalState),
    /// The approval-policy plugin.
    Policy { attempt: u32 },
    /// The action plugin (or the retry timer after a retryable failure).
    Action { attempt: u32 },
    /// The router plugin.
    Route { attempt: u32 },
    /// A wait timer.
    Timer { timer: String },
    /// A sub-workflow to finish.
    Subworkflow,
    /// The instances of a fan-out to end, as many as its join needs.
    Children(FanOut),
    /// The workflow an end step starts next, to run (then the instance ends).
    Next { workflow: String },
    /// A message from another system.
    Message { subscription: String },
    /// The other branches at a join.
    Joined,
    /// A person to resolve an incident.
    Incident(Incident),
}

impl Wait {
    /// Waiting for a call of a `capability` plugin at `attempt`. (Stored as three variants, one
    /// per capability, as they always were.)
    pub fn calling(capability: Capability, attempt: u32) -> Wait {
        match capability {
            Capability::StepAction => Wait::Action { attempt },
            Capability::ApprovalPolicy => Wait::Policy { attempt },
            Capability::Router => Wait::Route { attempt },
        }
    }

    /// The capability and attempt of the plugin call this waits for, if it waits for one.
    pub fn call(&self) -> Option<(Capability, u32)> {
        match *self {
            Wait::Action { attempt } => Some((Capability::StepAction, attempt)),
            Wait::Policy { attempt } => Some((Capability::ApprovalPolicy, attempt)),
            Wait::Route { attempt } => Some((Capability::Router, attempt)),
            _ => None,
        }
    }
}

/// A failure that stopped a step until a person acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub error: String,
    /// What failed: `action`, `policy`, `route` or `engine`.
    pub source: String,
    pub plugin: Option<String>,
    pub sha256: Option<String>,
    pub attempts: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub raised_at: Millis,
    /// The plugin call's failure kind; none for the engine's own incidents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// Who has to act: the guest (its author or tenant) or the host (the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame: Option<Blame>,
}

/// Where an approval stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub order: StageOrder,
    pub stages: Vec<StageState>,
}

/// One stage of an approval: `required` of its approvers must approve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    pub name: String,
    pub approvers: Vec<Approver>,
    pub required: u32,
    pub tasks: Vec<String>,
    pub approved_by: Vec<String>,
    pub status: StageStatus,
}

/// A stage's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Pending,
    Open,
    Approved,
    Rejected,
}

/// Someone who may approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approver {
    Role(String),
    Person(String),
}

/// A human task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub instance: String,
    pub token: u64,
    pub activation: u64,
    pub step: String,
    pub title: String,
    pub assignee: Option<String>,
    pub role: Option<String>,
    pub candidates: Vec<String>,
    pub claimed_by: Option<String>,
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub claimed_at: Option<Millis>,
    pub status: TaskStatus,
    /// Set for an approver's task: the stage index.
    pub stage: Option<usize>,
    /// The outcomes a person may choose; empty when there is one way on.
    pub outcomes: Vec<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Millis,
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub due_at: Option<Millis>,
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub completed_at: Option<Millis>,
    pub completed_by: Option<String>,
    pub outcome: Option<String>,
    /// For a task assigned to someone outside the organization (its `assignee` is their email
    /// address): until when the link they were sent opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::time::rfc3339::option")]
    pub link_expires_at: Option<Millis>,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    Open,
    Completed,
    Cancelled,
}

impl TaskStatus {
    /// The word used in APIs and filters.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A timer armed by an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub due_at: Millis,
    pub kind: TimerKind,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TimerKind {
    /// A wait step is over.
    Wait { token: u64, activation: u64 },
    /// Retry a plugin call after a retryable failure.
    Retry {
        token: u64,
        activation: u64,
        attempt: u32,
    },
    /// Remind the assignee.
    Reminder { task: String },
    /// The task is due now.
    Due { task: String },
    /// The task is overdue: escalate.
    Escalate { task: String },
    /// A wait for a message reached a point of its deadline.
    MessageDeadline {
        token: u64,
        activation: u64,
        point: DeadlinePoint,
    },
}

/// A point of a deadline: a reminder before it, the due time, the escalation after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlinePoint {
    Reminder,
    Due,
    Escalate,
}

/// A step waiting for a message: the one named `message` whose correlation is `correlation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub message: String,
    pub correlation: String,
    /// The waiting step: its token and the activation it waits in.
    pub token: u64,
    pub activation: u64,
    pub step: String,
    #[serde(with = "crate::time::rfc3339")]
    pub since: Millis,
}

/// Branches started by a parallel step, meeting at a join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    pub id: u64,
    pub parallel: String,
    pub join: String,
    pub branches: u32,
    /// Tokens parked at the join.
    pub arrived: Vec<u64>,
}

impl Instance {
    /// The process instance it belongs to.
    pub fn process_id(&self) -> &str {
        if self.process.is_empty() {
            &self.id
        } else {
            &self.process
        }
    }

    /// Whether a step waits for message `name` with `correlation`, and no such message is held
    /// for it already (while the instance is paused).
    pub fn awaits(&self, name: &str, correlation: &str) -> bool {
        let held = self.held.iter().any(|h| {
            matches!(&h.command, Command::ReceiveMessage(m)
                if m.name == name && m.correlation == correlation)
        });
        !held
            && self
                .subscriptions
                .values()
                .any(|s| s.message == name && s.correlation == correlation)
    }

    /// Whether any step waits for a person to resolve an incident.
    pub fn has_incident(&self) -> bool {
        self.tokens
            .values()
            .any(|t| matches!(t.wait, Wait::Incident(_)))
    }

    /// The open tasks.
    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter(|t| t.status == TaskStatus::Open)
    }

    /// The instance a task id belongs to: task ids are `{instance}.t{n}`.
    pub fn of_task(task: &str) -> Option<&str> {
        task.rsplit_once(".t").map(|(instance, _)| instance)
    }
}
