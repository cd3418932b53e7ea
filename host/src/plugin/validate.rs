//! Checks a plugin's answer against the contract before the engine acts on it.

use std::collections::BTreeSet;

use super::called::ActionResult;
use super::types::{ActionOutput, ApprovalDecision, ApprovalRequirement, RouteDecision};

/// A route must name at least one step, each one of the candidates, none twice.
pub(crate) fn route(
    candidates: &[String],
    decision: RouteDecision,
) -> Result<RouteDecision, String> {
    if decision.next.is_empty() {
        return Err("route names no next step".to_string());
    }
    let mut seen = BTreeSet::new();
    for step in &decision.next {
        if !candidates.contains(step) {
            return Err(format!(
                "routes to `{step}`, which is not one of the candidates [{}]",
                candidates.join(", ")
            ));
        }
        if !seen.insert(step) {
            return Err(format!("routes to `{step}` twice"));
        }
    }
    Ok(decision)
}

/// The bytes of an approval decision's strings.
pub(crate) fn approval_size(decision: &ApprovalDecision) -> usize {
    let stages = match &decision.requirement {
        ApprovalRequirement::AutoApprove => 0,
        ApprovalRequirement::Stages((_, stages)) => stages
            .iter()
            .map(|s| s.name.len() + s.approvers.len() * 16)
            .sum(),
    };
    decision.reason.len() + stages
}

/// Every stage needs a name, approvers, and a quorum between 1 and the number of approvers.
pub(crate) fn approval(decision: ApprovalDecision) -> Result<ApprovalDecision, String> {
    if let ApprovalRequirement::Stages((_, stages)) = &decision.requirement {
        if stages.is_empty() {
            return Err("approval requires stages but lists none".to_string());
        }
        for (i, stage) in stages.iter().enumerate() {
            let at = format!("stages[{i}] `{}`", stage.name);
            if stage.name.trim().is_empty() {
                return Err(format!("stages[{i}] has no name"));
            }
            if stage.approvers.is_empty() {
                return Err(format!("{at} has no approvers"));
            }
            let m = stage.approvers.len();
            if stage.required == 0 || stage.required as usize > m {
                return Err(format!(
                    "{at} requires {} of {m} approvers; it must be between 1 and {m}",
                    stage.required
                ));
            }
        }
    }
    Ok(decision)
}

/// An action's data must be a JSON object.
pub(crate) fn action(output: ActionOutput) -> Result<ActionResult, String> {
    let value: serde_json::Value =
        serde_json::from_str(&output.data).map_err(|e| format!("data is not valid JSON: {e}"))?;
    match value {
        serde_json::Value::Object(data) => Ok(ActionResult {
            data,
            note: output.note,
        }),
        other => Err(format!(
            "data must be a JSON object, got {}",
            json_kind(&other)
        )),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::types::{ApprovalStage, Approver, StageOrder};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn routes_must_stay_within_candidates() {
        let candidates = strings(&["a", "b"]);
        let decide = |next: &[&str]| {
            route(
                &candidates,
                RouteDecision {
                    next: strings(next),
                    reason: String::new(),
                },
            )
            .map(|d| d.next)
        };
        assert_eq!(decide(&["a", "b"]), Ok(strings(&["a", "b"])));
        assert!(decide(&[]).is_err_and(|e| e.contains("no next step")));
        assert!(decide(&["c"]).is_err_and(|e| e.contains("`c`") && e.contains("[a, b]")));
        assert!(decide(&["a", "a"]).is_err_and(|e| e.contains("twice")));
    }

    #[test]
    fn quorums_must_fit_their_stage() {
        let stage = |required, approvers: usize| ApprovalStage {
            name: "board".to_string(),
            approvers: (0..approvers)
                .map(|i| Approver::Person(format!("p{i}")))
                .collect(),
            required,
        };
        let decide = |stages| {
            approval(ApprovalDecision {
                requirement: ApprovalRequirement::Stages((StageOrder::Parallel, stages)),
                reason: String::new(),
            })
            .map(|_| ())
        };
        assert_eq!(decide(vec![stage(2, 3)]), Ok(()));
        assert!(decide(vec![stage(4, 3)]).is_err_and(|e| e.contains("4 of 3")));
        assert!(decide(vec![stage(0, 3)]).is_err());
        assert!(decide(vec![stage(1, 0)]).is_err_and(|e| e.contains("no approvers")));
        assert!(decide(vec![]).is_err());
    }

    #[test]
    fn action_data_must_be_an_object() {
        let out = |data: &str| ActionOutput {
            data: data.to_string(),
            note: String::new(),
        };
        assert!(action(out(r#"{"a": 1}"#)).is_ok());
        assert!(action(out("[1]")).is_err_and(|e| e.contains("an array")));
        assert!(action(out("nope")).is_err_and(|e| e.contains("not valid JSON")));
    }
}
