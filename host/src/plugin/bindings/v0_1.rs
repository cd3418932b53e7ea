//! Host-side bindings of `flowgate:plugin@0.1.0`, generated from `wit/`, and their conversions
//! to and from the host's types.
//!
//! The host binds the `plugin` world, which exports every capability, but never instantiates it
//! whole: each capability's export indices are looked up on their own, so a plugin exports only
//! what it implements.

#![allow(missing_docs, missing_debug_implementations, unused_qualifications)]

use crate::plugin::types as host;

wasmtime::component::bindgen!({
    path: "../wit/flowgate-plugin@0.1.0",
    world: "flowgate:plugin/plugin@0.1.0",
});

pub(crate) use self::flowgate::plugin::host::LogLevel;
/// The records as this version's components see them.
pub(crate) use self::flowgate::plugin::types as wire;
pub(crate) use exports::flowgate::plugin::{approval_policy, router, step_action};

impl From<&host::StepContext> for wire::StepContext {
    fn from(c: &host::StepContext) -> Self {
        wire::StepContext {
            tenant: c.tenant.clone(),
            definition_id: c.definition_id.clone(),
            definition_version: c.definition_version,
            instance_id: c.instance_id.clone(),
            step_id: c.step_id.clone(),
            data: c.data.clone(),
        }
    }
}

impl From<&host::RouteRequest> for wire::RouteRequest {
    fn from(r: &host::RouteRequest) -> Self {
        wire::RouteRequest {
            context: (&r.context).into(),
            candidates: r.candidates.clone(),
        }
    }
}

impl From<&host::ApprovalRequest> for wire::ApprovalRequest {
    fn from(r: &host::ApprovalRequest) -> Self {
        wire::ApprovalRequest {
            context: (&r.context).into(),
            amount: r.amount.as_ref().map(|m| wire::Money {
                currency: m.currency.clone(),
                minor_units: m.minor_units,
            }),
            category: r.category.clone(),
            requester: r.requester.clone(),
        }
    }
}

impl From<&host::ActionRequest> for wire::ActionRequest {
    fn from(r: &host::ActionRequest) -> Self {
        let key = &r.idempotency;
        wire::ActionRequest {
            context: (&r.context).into(),
            action: r.action.clone(),
            params: r.params.clone(),
            idempotency: wire::IdempotencyKey {
                key: key.key.clone(),
                instance_id: key.instance_id.clone(),
                step_id: key.step_id.clone(),
                attempt: key.attempt,
            },
        }
    }
}

impl From<wire::RouteDecision> for host::RouteDecision {
    fn from(d: wire::RouteDecision) -> Self {
        host::RouteDecision {
            next: d.next,
            reason: d.reason,
        }
    }
}

impl From<wire::ApprovalDecision> for host::ApprovalDecision {
    fn from(d: wire::ApprovalDecision) -> Self {
        let requirement = match d.requirement {
            wire::ApprovalRequirement::AutoApprove => host::ApprovalRequirement::AutoApprove,
            wire::ApprovalRequirement::Stages((order, stages)) => {
                let order = match order {
                    wire::StageOrder::Sequential => host::StageOrder::Sequential,
                    wire::StageOrder::Parallel => host::StageOrder::Parallel,
                };
                let stages = stages
                    .into_iter()
                    .map(|s| host::ApprovalStage {
                        name: s.name,
                        approvers: s
                            .approvers
                            .into_iter()
                            .map(|a| match a {
                                wire::Approver::Role(r) => host::Approver::Role(r),
                                wire::Approver::Person(p) => host::Approver::Person(p),
                            })
                            .collect(),
                        required: s.required,
                    })
                    .collect();
                host::ApprovalRequirement::Stages((order, stages))
            }
        };
        host::ApprovalDecision {
            requirement,
            reason: d.reason,
        }
    }
}

impl From<wire::ActionOutput> for host::ActionOutput {
    fn from(o: wire::ActionOutput) -> Self {
        host::ActionOutput {
            data: o.data,
            note: o.note,
        }
    }
}

impl From<wire::PluginError> for crate::plugin::GuestError {
    fn from(e: wire::PluginError) -> Self {
        match e {
            wire::PluginError::Retryable(m) => crate::plugin::GuestError::Retryable(m),
            wire::PluginError::Permanent(m) => crate::plugin::GuestError::Permanent(m),
            wire::PluginError::InvalidInput(m) => crate::plugin::GuestError::InvalidInput(m),
        }
    }
}

impl From<LogLevel> for host::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => host::LogLevel::Trace,
            LogLevel::Debug => host::LogLevel::Debug,
            LogLevel::Info => host::LogLevel::Info,
            LogLevel::Warn => host::LogLevel::Warn,
            LogLevel::Error => host::LogLevel::Error,
        }
    }
}
