//! What can happen to an instance: a person acts, a plugin answers, a timer fires.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::Approver;
use crate::Capability;
use crate::definition::{EndOutcome, StageOrder};

/// A person acting on tasks, with the roles they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The administrator token that acted for this person, for the audit history. Set by the
    /// daemon from the caller's credentials; never read from a request.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Person {
    /// A person with these roles.
    pub fn new(id: impl Into<String>, roles: &[&str]) -> Self {
        Person {
            id: id.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            via: None,
        }
    }
}

/// A command to an existing instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Command {
    /// Take a task so that others see it is being worked on.
    ClaimTask { task: String, by: Person },
    /// Give a claimed task back.
    UnclaimTask { task: String, by: Person },
    /// Complete a task with an outcome and form data.
    CompleteTask {
        task: String,
        by: Person,
        outcome: Option<String>,
        #[serde(default)]
        data: serde_json::Map<String, serde_json::Value>,
        /// Refuse if the instance changed since this version.
        expected_version: Option<u64>,
        /// Why the person chose this, kept in the history as the completion's reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A plugin answered a [`PluginCall`](super::PluginCall) (the same token, activation and
    /// attempt), or the call failed.
    PluginAnswered {
        token: u64,
        activation: u64,
        attempt: u32,
        result: Result<PluginAnswer, EffectFailure>,
        /// What the call used and what the plugin logged, for the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<CallUsage>,
    },
    /// A timer is due.
    TimerFired { timer: String },
    /// A message from another system for the steps that wait for it here.
    ReceiveMessage(Message),
    /// A sub-workflow this instance waits for ended.
    ChildFinished {
        token: u64,
        activation: u64,
        child: String,
        outcome: EndOutcome,
        data: serde_json::Map<String, serde_json::Value>,
        /// In a fan-out: the index of the element the child was started for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
    },
    /// The workflow an end step starts next is running as `instance`: the instance ends.
    NextStarted {
        token: u64,
        activation: u64,
        instance: String,
    },
    /// The workflow a step starts (an end step's next one, a sub-workflow) was refused: it is
    /// not deployed, or its start data does not fit. The step raises an incident.
    StartRefused {
        token: u64,
        activation: u64,
        workflow: String,
        error: String,
    },
    /// Cancel the instance.
    Cancel { by: String, reason: String },
    /// Resolve an incident: retry the step, or skip it with an outcome.
    ResolveIncident {
        token: u64,
        by: String,
        resolution: Resolution,
        reason: String,
    },
    /// Stop the instance where it is: timers that come due, messages, plugin answers and
    /// sub-workflow ends are held, and people's commands refused, until it is resumed.
    Pause { by: String, reason: String },
    /// Go on from where it was paused: what was held is applied, in the order it arrived.
    Resume {
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Move the instance to another version of its definition. Applied under that version.
    Migrate(Migration),
}

/// A move of a running instance to another version of its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub to_version: u32,
    /// Where the steps the instance is in go, by step id, when not to the step of the same id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, String>,
    /// Plugin name → the sha256 the instance is pinned to from now on; the others stay.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, String>,
    pub by: String,
    pub reason: String,
}

impl Command {
    /// The command's kind, as metrics label it: `complete-task`, `timer-fired`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ClaimTask { .. } => "claim-task",
            Command::UnclaimTask { .. } => "unclaim-task",
            Command::CompleteTask { .. } => "complete-task",
            Command::PluginAnswered { .. } => "plugin-answered",
            Command::TimerFired { .. } => "timer-fired",
            Command::ReceiveMessage(_) => "receive-message",
            Command::ChildFinished { .. } => "child-finished",
            Command::NextStarted { .. } => "next-started",
            Command::StartRefused { .. } => "start-refused",
            Command::Cancel { .. } => "cancel",
            Command::ResolveIncident { .. } => "resolve-incident",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Migrate(_) => "migrate",
        }
    }

    /// The definition version the command is applied under when it is not the instance's own
    /// (a migration's target).
    pub fn applies_under(&self) -> Option<u32> {
        match self {
            Command::Migrate(m) => Some(m.to_version),
            _ => None,
        }
    }

    /// Whether a paused instance holds the command until it is resumed: what arrives from
    /// timers, other systems, plugins and sub-workflows, as opposed to what people ask.
    pub fn is_held_while_paused(&self) -> bool {
        matches!(
            self,
            Command::TimerFired { .. }
                | Command::ReceiveMessage(_)
                | Command::PluginAnswered { .. }
                | Command::ChildFinished { .. }
                | Command::NextStarted { .. }
                | Command::StartRefused { .. }
        )
    }
}

/// A message from another system (`POST /api/v1/messages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's id for it: the same message sent again is recognized by it.
    pub id: String,
    pub name: String,
    /// Matched against the value of the waiting step's `correlate` field.
    pub correlation: String,
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Who sent it (the credentials' name), for the history.
    pub sent_by: String,
    /// The process instance (the case) it is about: it reaches only that case's instances, and
    /// an instance it starts joins the case. None reaches any instance that waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// Stands for the plugin of a requirement that names none.
static NO_PLUGIN: PluginRef = PluginRef {
    name: String::new(),
    sha256: String::new(),
};

/// What one plugin call used, and what the plugin logged meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallUsage {
    /// Fuel units (about one per wasm instruction).
    pub fuel: u64,
    /// The log lines it wrote, as `level message key=value ...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// How a person resolves an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Resolution {
    /// Run the failed step's plugin call again: on the version the instance is pinned to, or,
    /// with `plugin_version`, on that version of the step's plugin (a fixed one), to which the
    /// instance is pinned from then on.
    Retry {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin_version: Option<String>,
    },
    /// Leave the step as if it produced `outcome` (`approve`/`reject` for approvals, a candidate
    /// step for routes; ignored for actions), merging `data` into the instance's (what the step
    /// would have given, e.g. an action's output).
    Skip {
        outcome: Option<String>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        data: serde_json::Map<String, serde_json::Value>,
    },
}

/// Who the answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub sha256: String,
}

/// A plugin call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectFailure {
    pub message: String,
    pub kind: FailureKind,
    pub plugin: Option<PluginRef>,
}

impl EffectFailure {
    /// Who has to act on it.
    pub fn blame(&self) -> Blame {
        self.kind.blame()
    }
}

/// Who has to act on a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    /// The plugin misbehaved or was given bad input: its author or the tenant fixes it.
    Guest,
    /// The host failed or is overloaded: the operator looks, and a retry may succeed.
    Host,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Guest => "guest",
            Blame::Host => "host",
        }
    }
}

/// What kind of failure a plugin call met, as the incident and the history record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// No instance of the plugin could be made right now (the host is busy).
    Busy,
    /// The call ran past its wall-clock limit (on a loaded host a call that normally answers
    /// at once can), so it is the host's condition until retries say otherwise.
    Deadline,
    /// The host itself failed.
    Host,
    /// The instance is pinned to a plugin version that is not loaded, or to none.
    NotLoaded,
    /// The call used its whole fuel budget.
    FuelExhausted,
    /// The call tried to grow its memory past the cap.
    MemoryCap,
    /// The call exhausted its wasm stack.
    StackOverflow,
    /// The call trapped.
    Trap,
    /// The request was larger than the plugin may be given.
    InputTooLarge,
    /// The answer was larger than the plugin may return.
    OutputTooLarge,
    /// The answer broke the contract.
    BadOutput,
    /// The plugin exports no such capability.
    MissingExport,
    /// The plugin's own transient error.
    Retryable,
    /// The plugin's own permanent error.
    Permanent,
    /// The plugin said its input had the wrong shape.
    InvalidInput,
}

impl FailureKind {
    /// Who has to act on it.
    pub fn blame(self) -> Blame {
        match self {
            FailureKind::Busy | FailureKind::Deadline | FailureKind::Host => Blame::Host,
            _ => Blame::Guest,
        }
    }

    /// True when the same call later may succeed: the plugin said so, or the host was the
    /// cause. Fuel, memory, traps and bad answers say the plugin itself is at fault.
    pub fn is_retryable(self) -> bool {
        self == FailureKind::Retryable || self.blame() == Blame::Host
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Busy => "busy",
            FailureKind::Deadline => "deadline",
            FailureKind::Host => "host",
            FailureKind::NotLoaded => "not-loaded",
            FailureKind::FuelExhausted => "fuel-exhausted",
            FailureKind::MemoryCap => "memory-cap",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Trap => "trap",
            FailureKind::InputTooLarge => "input-too-large",
            FailureKind::OutputTooLarge => "output-too-large",
            FailureKind::BadOutput => "bad-output",
            FailureKind::MissingExport => "missing-export",
            FailureKind::Retryable => "retryable",
            FailureKind::Permanent => "permanent",
            FailureKind::InvalidInput => "invalid-input",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's answer, by capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "capability", rename_all = "kebab-case")]
pub enum PluginAnswer {
    StepAction(ActionOutput),
    ApprovalPolicy(Requirement),
    Router(Routed),
}

impl PluginAnswer {
    /// The plugin version that answered.
    pub fn plugin(&self) -> &PluginRef {
        match self {
            PluginAnswer::StepAction(o) => &o.plugin,
            PluginAnswer::ApprovalPolicy(r) => r.plugin.as_ref().unwrap_or(&NO_PLUGIN),
            PluginAnswer::Router(r) => &r.plugin,
        }
    }

    pub fn capability(&self) -> Capability {
        match self {
            PluginAnswer::StepAction(_) => Capability::StepAction,
            PluginAnswer::ApprovalPolicy(_) => Capability::ApprovalPolicy,
            PluginAnswer::Router(_) => Capability::Router,
        }
    }
}

/// An action's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutput {
    pub data: serde_json::Map<String, serde_json::Value>,
    pub note: String,
    pub plugin: PluginRef,
}

/// An approval requirement, from a policy plugin or the definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// No approval needed.
    pub auto_approve: bool,
    pub order: StageOrder,
    pub stages: Vec<RequiredStage>,
    pub reason: String,
    pub plugin: Option<PluginRef>,
}

/// One stage of a requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredStage {
    pub name: String,
    pub approvers: Vec<Approver>,
    pub required: u32,
}

/// A router's choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    pub next: Vec<String>,
    pub reason: String,
    pub plugin: PluginRef,
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The thing named does not exist.
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// The command conflicts with the current state (already done, stale version).
    #[error("{0}")]
    Conflict(String),
    /// The person may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The input is invalid; `field` names where.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
}

impl CommandError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CommandError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
