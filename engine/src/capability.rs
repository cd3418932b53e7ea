//! What a plugin can do for a step. The core names capabilities so that definitions can be
//! checked against a tenant's plugins and plugin calls can say what they ask; the plugin runtime
//! implements them.

use serde::{Deserialize, Serialize};

/// A capability a plugin can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Chooses the next step(s).
    Router,
    /// Decides approval requirements.
    ApprovalPolicy,
    /// Runs automated steps.
    StepAction,
}

impl Capability {
    /// The capability's name in the WIT contract and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Capability::Router => "router",
            Capability::ApprovalPolicy => "approval-policy",
            Capability::StepAction => "step-action",
        }
    }

    /// A decision (router, approval policy) only reads its input and answers: with a
    /// deterministic plugin it is taken in the same transaction as the command that reached it.
    /// A step action has effects on other systems and always goes through the outbox.
    pub fn is_decision(&self) -> bool {
        !matches!(self, Capability::StepAction)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
