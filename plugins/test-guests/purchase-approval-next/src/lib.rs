//! The next version of purchase-approval, as an author would upload it as a candidate: the same
//! decisions, except that the director band starts at 2,000 (not at `director_threshold`).
//! Replaying it on recorded decisions must report exactly the purchases from 2,000 up to the
//! old director threshold.

use flowgate_plugin_sdk::{
    ApprovalDecision, ApprovalPolicy, ApprovalRequest, ApprovalStage, PluginError, StageOrder,
    config,
};

pub struct PurchaseApprovalNext;

flowgate_plugin_sdk::export!(PurchaseApprovalNext: approval_policy);

/// The new start of the director band, in major units.
const DIRECTOR_FROM: i64 = 2_000;

impl ApprovalPolicy for PurchaseApprovalNext {
    fn evaluate(request: ApprovalRequest) -> Result<ApprovalDecision, PluginError> {
        let Some(amount) = &request.amount else {
            return Err(PluginError::InvalidInput(
                "amount: a purchase needs an amount".to_string(),
            ));
        };
        if amount.minor_units < 0 {
            return Err(PluginError::InvalidInput(
                "amount: must not be negative".to_string(),
            ));
        }
        let scale = 10i64.pow(amount.minor_unit_exponent());
        let major = |key: &str, default: i64| -> Result<i64, PluginError> {
            Ok(config::parse_or(key, default)?.saturating_mul(scale))
        };
        let (manager, cfo) = (
            major("manager_threshold", 500)?,
            major("cfo_threshold", 50_000)?,
        );
        let director = DIRECTOR_FROM.saturating_mul(scale);
        let value = amount.minor_units;
        let mut stages = Vec::new();
        if value > cfo {
            stages.push(ApprovalStage::role("cfo", "cfo"));
        } else if value >= director {
            stages.push(ApprovalStage::role("director", "director"));
        } else if value >= manager {
            stages.push(ApprovalStage::role("manager", "manager"));
        }
        let category = request.category.trim().to_ascii_lowercase();
        if config::list_or("it_categories", &["it", "software", "hardware"]).contains(&category) {
            stages.push(ApprovalStage::role("it-review", "it-reviewer"));
        }
        Ok(if stages.is_empty() {
            ApprovalDecision::auto_approve("under the auto-approval limit")
        } else {
            ApprovalDecision::stages(
                StageOrder::Parallel,
                stages,
                "by band (director from 2,000)",
            )
        })
    }
}
