//! Conveniences on the contract's records: typed access to JSON data and short constructors.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    ActionOutput, ActionRequest, ApprovalDecision, ApprovalRequirement, ApprovalStage, Approver,
    Money, PluginError, RouteDecision, StageOrder, StepContext,
};

impl StepContext {
    /// The instance data parsed into `T`; a mismatch is an `invalid-input` error naming the field.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        parse_json("instance data", &self.data)
    }
}

impl ActionRequest {
    /// The step's parameters parsed into `T`.
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        parse_json("step params", &self.params)
    }
}

fn parse_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, PluginError> {
    serde_json::from_str(text).map_err(|e| PluginError::InvalidInput(format!("{what}: {e}")))
}

impl ActionOutput {
    /// Output that merges `data` (which must serialize to a JSON object) into the instance.
    pub fn merge(data: &impl Serialize, note: impl Into<String>) -> Result<Self, PluginError> {
        let value = serde_json::to_value(data)
            .map_err(|e| PluginError::Permanent(format!("output does not serialize: {e}")))?;
        if !value.is_object() {
            return Err(PluginError::Permanent(
                "output data must be a JSON object".to_string(),
            ));
        }
        Ok(ActionOutput {
            data: value.to_string(),
            note: note.into(),
        })
    }
}

impl Money {
    /// The ISO 4217 minor-unit exponent of the currency: 2 for USD and EUR (cents), 0 for JPY,
    /// 3 for KWD. The amount in major units is `minor_units / 10^exponent`.
    pub fn minor_unit_exponent(&self) -> u32 {
        match self.currency.as_str() {
            "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "UGX" => 0,
            "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
            _ => 2,
        }
    }
}

impl RouteDecision {
    /// Route to one step.
    pub fn to(step: impl Into<String>, reason: impl Into<String>) -> Self {
        RouteDecision {
            next: vec![step.into()],
            reason: reason.into(),
        }
    }
}

impl ApprovalDecision {
    /// Nobody needs to approve.
    pub fn auto_approve(reason: impl Into<String>) -> Self {
        ApprovalDecision {
            requirement: ApprovalRequirement::AutoApprove,
            reason: reason.into(),
        }
    }

    /// These stages must approve, in `order`.
    pub fn stages(
        order: StageOrder,
        stages: Vec<ApprovalStage>,
        reason: impl Into<String>,
    ) -> Self {
        ApprovalDecision {
            requirement: ApprovalRequirement::Stages((order, stages)),
            reason: reason.into(),
        }
    }

    /// Whether nobody needs to approve.
    pub fn is_auto_approved(&self) -> bool {
        matches!(self.requirement, ApprovalRequirement::AutoApprove)
    }

    /// Who is asked, stage after stage: `role:manager`, `person:dora`; empty when nobody is.
    pub fn approvers(&self) -> Vec<String> {
        match &self.requirement {
            ApprovalRequirement::AutoApprove => Vec::new(),
            ApprovalRequirement::Stages((_, stages)) => stages
                .iter()
                .flat_map(|s| s.approvers.iter())
                .map(|a| match a {
                    Approver::Role(r) => format!("role:{r}"),
                    Approver::Person(p) => format!("person:{p}"),
                })
                .collect(),
        }
    }
}

impl ApprovalStage {
    /// A stage where any one member of `role` approves.
    pub fn role(name: impl Into<String>, role: impl Into<String>) -> Self {
        ApprovalStage {
            name: name.into(),
            approvers: vec![Approver::Role(role.into())],
            required: 1,
        }
    }

    /// A stage where `required` of `approvers` must approve (N of M).
    pub fn quorum(name: impl Into<String>, approvers: Vec<Approver>, required: u32) -> Self {
        ApprovalStage {
            name: name.into(),
            approvers,
            required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::context;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        amount: i64,
    }

    #[test]
    fn data_as_names_the_bad_field() {
        let ctx = context(serde_json::json!({"amount": "lots"}));
        let err = ctx.data_as::<Doc>().err();
        let Some(PluginError::InvalidInput(message)) = err else {
            panic!("expected invalid-input, got {err:?}");
        };
        assert!(message.contains("instance data"), "{message}");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn merge_refuses_non_objects() {
        assert!(ActionOutput::merge(&[1, 2], "n").is_err());
        let out = ActionOutput::merge(&serde_json::json!({"a": 1}), "n");
        assert_eq!(out.map(|o| o.data).ok().as_deref(), Some(r#"{"a":1}"#));
    }
}
