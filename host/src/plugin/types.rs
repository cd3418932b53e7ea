//! The plugin contract's records as the host owns them: what the service builds a call from and
//! what it gets back, whichever contract version the component was built against. Each version's
//! generated bindings (`bindings::v0_1`, ...) convert to and from these at the call, so a second
//! version is a sibling module and its conversions, and nothing outside the runtime names a
//! generated type. The shapes follow `flowgate:plugin@0.1.0` (`wit/`), field for field.

use serde::{Deserialize, Serialize};

/// Where a plugin call happens: which tenant, workflow, instance and step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepContext {
    pub tenant: String,
    pub definition_id: String,
    pub definition_version: u32,
    pub instance_id: String,
    pub step_id: String,
    /// The instance data as a JSON object, serialized.
    pub data: String,
}

/// An amount in the minor unit of its currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub currency: String,
    pub minor_units: i64,
}

/// Input of a routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub context: StepContext,
    /// The step ids the router may choose from.
    pub candidates: Vec<String>,
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    pub next: Vec<String>,
    pub reason: String,
}

/// Input of an approval policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub context: StepContext,
    pub amount: Option<Money>,
    pub category: String,
    pub requester: String,
}

/// Someone who may approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Approver {
    Role(String),
    Person(String),
}

/// One group of approvers of which `required` must approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalStage {
    pub name: String,
    pub approvers: Vec<Approver>,
    pub required: u32,
}

/// Whether stages run one after another or all at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageOrder {
    Sequential,
    Parallel,
}

/// What an approval needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalRequirement {
    AutoApprove,
    Stages((StageOrder, Vec<ApprovalStage>)),
}

/// An approval policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub requirement: ApprovalRequirement,
    pub reason: String,
}

/// Which execution of a step action this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    pub instance_id: String,
    pub step_id: String,
    pub attempt: u32,
}

/// Input of an automated step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub context: StepContext,
    pub action: String,
    /// The step's parameters, as a JSON object.
    pub params: String,
    pub idempotency: IdempotencyKey,
}

/// The result of an automated step, as the plugin gave it (see `ActionResult` for it checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutput {
    /// A JSON object to merge into the instance data.
    pub data: String,
    pub note: String,
}

/// The severity of a line a plugin logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
