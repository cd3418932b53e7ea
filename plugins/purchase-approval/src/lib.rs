//! Purchase approval policy: who must approve a purchase, by amount and category.
//!
//! | amount (major units)      | approval                           |
//! |---------------------------|------------------------------------|
//! | under 500                 | auto-approved                      |
//! | 500 up to (not incl.) 5,000 | one manager                      |
//! | 5,000 up to 50,000 incl.  | one director                       |
//! | over 50,000               | the CFO                            |
//!
//! IT purchases (categories in `it_categories`) always also need IT review, in parallel with the
//! amount's stage. Every threshold is a tenant configuration value, in major units:
//! `manager_threshold` (500), `director_threshold` (5000), `cfo_threshold` (50000), and
//! `it_categories` (`it,software,hardware`).

use flowgate_plugin_sdk::{
    ApprovalDecision, ApprovalPolicy, ApprovalRequest, ApprovalStage, Money, PluginError,
    StageOrder, config, log,
};

/// The exported plugin.
pub struct PurchaseApproval;

flowgate_plugin_sdk::export!(PurchaseApproval: approval_policy);

/// The thresholds in force, in minor units of the request's currency.
struct Thresholds {
    manager: i64,
    director: i64,
    cfo: i64,
    it_categories: Vec<String>,
}

impl Thresholds {
    fn from_config(amount: &Money) -> Result<Self, PluginError> {
        let scale = 10i64.pow(amount.minor_unit_exponent());
        let major = |key: &str, default: i64| -> Result<i64, PluginError> {
            let value: i64 = config::parse_or(key, default)?;
            value.checked_mul(scale).ok_or_else(|| {
                PluginError::Permanent(format!("configuration `{key}` = {value} is too large"))
            })
        };
        let thresholds = Thresholds {
            manager: major("manager_threshold", 500)?,
            director: major("director_threshold", 5_000)?,
            cfo: major("cfo_threshold", 50_000)?,
            it_categories: config::list_or("it_categories", &["it", "software", "hardware"]),
        };
        if !(thresholds.manager <= thresholds.director && thresholds.director <= thresholds.cfo) {
            return Err(PluginError::Permanent(
                "configuration thresholds must satisfy manager <= director <= cfo".to_string(),
            ));
        }
        Ok(thresholds)
    }
}

fn format_money(money: &Money) -> String {
    let exp = money.minor_unit_exponent();
    let scale = 10i64.pow(exp);
    if exp == 0 {
        return format!("{} {}", money.minor_units, money.currency);
    }
    let sign = if money.minor_units < 0 { "-" } else { "" };
    let abs = money.minor_units.unsigned_abs();
    format!(
        "{sign}{}.{:0width$} {}",
        abs / scale as u64,
        abs % scale as u64,
        money.currency,
        width = exp as usize
    )
}

impl ApprovalPolicy for PurchaseApproval {
    fn evaluate(request: ApprovalRequest) -> Result<ApprovalDecision, PluginError> {
        let Some(amount) = &request.amount else {
            return Err(PluginError::InvalidInput(
                "amount: a purchase needs an amount".to_string(),
            ));
        };
        if amount.minor_units < 0 {
            return Err(PluginError::InvalidInput(format!(
                "amount: must not be negative, got {}",
                format_money(amount)
            )));
        }
        let limits = Thresholds::from_config(amount)?;
        let shown = format_money(amount);
        let value = amount.minor_units;

        let level = if value > limits.cfo {
            Some((ApprovalStage::role("cfo", "cfo"), "over the CFO threshold"))
        } else if value >= limits.director {
            Some((
                ApprovalStage::role("director", "director"),
                "in the director band",
            ))
        } else if value >= limits.manager {
            Some((
                ApprovalStage::role("manager", "manager"),
                "in the manager band",
            ))
        } else {
            None
        };
        let category = request.category.trim().to_ascii_lowercase();
        let needs_it = limits.it_categories.contains(&category);

        let mut stages = Vec::new();
        let mut why = Vec::new();
        match level {
            Some((stage, band)) => {
                why.push(format!("{shown} is {band}"));
                stages.push(stage);
            }
            None => why.push(format!("{shown} is under the auto-approval limit")),
        }
        if needs_it {
            why.push(format!("category `{category}` always needs IT review"));
            stages.push(ApprovalStage::role("it-review", "it-reviewer"));
        }
        let reason = why.join("; ");
        log::info(
            "purchase evaluated",
            &[("amount", &shown), ("stages", &stages.len().to_string())],
        );
        if stages.is_empty() {
            Ok(ApprovalDecision::auto_approve(reason))
        } else {
            Ok(ApprovalDecision::stages(
                StageOrder::Parallel,
                stages,
                reason,
            ))
        }
    }
}

// Amounts in tests are written dollars_cents (`499_99` is 499.99 USD).
#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use flowgate_plugin_sdk::testing::{approval_request, usd, with_config};

    fn request(cents: i64, category: &str) -> ApprovalRequest {
        ApprovalRequest {
            requester: "alice".to_string(),
            ..approval_request(usd(cents), category)
        }
    }

    /// The roles asked to approve, or `["auto"]`.
    fn roles(decision: &ApprovalDecision) -> Vec<String> {
        if decision.is_auto_approved() {
            return vec!["auto".to_string()];
        }
        let approvers = decision.approvers();
        approvers
            .iter()
            .map(|a| a.trim_start_matches("role:").to_string())
            .collect()
    }

    fn decide(cents: i64, category: &str) -> Vec<String> {
        match PurchaseApproval::evaluate(request(cents, category)) {
            Ok(d) => roles(&d),
            Err(e) => vec![format!("error: {e:?}")],
        }
    }

    #[test]
    fn bands_follow_the_default_thresholds() {
        let cases: &[(i64, &str, &[&str])] = &[
            (0, "office", &["auto"]),
            (499_99, "office", &["auto"]),
            (500_00, "office", &["manager"]),
            (4_999_99, "office", &["manager"]),
            (5_000_00, "office", &["director"]),
            (50_000_00, "office", &["director"]),
            (50_000_01, "office", &["cfo"]),
            (120_00, "IT", &["it-reviewer"]),
            (700_00, "software", &["manager", "it-reviewer"]),
            (90_000_00, "hardware", &["cfo", "it-reviewer"]),
        ];
        for (cents, category, expected) in cases {
            assert_eq!(decide(*cents, category), *expected, "{cents} {category}");
        }
    }

    #[test]
    fn tenant_configuration_moves_the_thresholds() {
        with_config(
            &[("manager_threshold", "100"), ("it_categories", "laptops")],
            || {
                assert_eq!(decide(150_00, "office"), ["manager"]);
                assert_eq!(decide(50_00, "laptops"), ["it-reviewer"]);
                assert_eq!(decide(50_00, "it"), ["auto"]);
            },
        );
    }

    #[test]
    fn bad_input_and_bad_configuration_are_typed_errors() {
        let mut req = request(1, "office");
        req.amount = None;
        assert!(matches!(
            PurchaseApproval::evaluate(req),
            Err(PluginError::InvalidInput(m)) if m.contains("amount")
        ));
        assert!(matches!(
            PurchaseApproval::evaluate(request(-5, "office")),
            Err(PluginError::InvalidInput(_))
        ));
        with_config(&[("director_threshold", "10")], || {
            assert!(matches!(
                PurchaseApproval::evaluate(request(1, "office")),
                Err(PluginError::Permanent(m)) if m.contains("manager <= director")
            ));
        });
    }

    #[test]
    fn the_decision_is_logged() {
        flowgate_plugin_sdk::testing::take_logs();
        let _ = PurchaseApproval::evaluate(request(700_00, "office"));
        let logs = flowgate_plugin_sdk::testing::take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].message, "purchase evaluated");
        assert!(
            logs[0]
                .fields
                .contains(&("amount".to_string(), "700.00 USD".to_string()))
        );
    }

    #[test]
    fn reasons_explain_the_decision() {
        let decision = PurchaseApproval::evaluate(request(700_00, "it"));
        let reason = decision.map(|d| d.reason).unwrap_or_default();
        assert_eq!(
            reason,
            "700.00 USD is in the manager band; category `it` always needs IT review"
        );
        let yen = ApprovalRequest {
            amount: Some(Money {
                currency: "JPY".to_string(),
                minor_units: 600,
            }),
            ..request(0, "office")
        };
        assert_eq!(
            PurchaseApproval::evaluate(yen).map(|d| roles(&d)).ok(),
            Some(vec!["manager".to_string()])
        );
    }
}
