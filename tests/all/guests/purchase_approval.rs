//! The purchase-approval policy, as wasm through the host.

use flowgate::plugin::types::{
    ApprovalDecision, ApprovalRequest, ApprovalRequirement, Approver, Money, StageOrder,
};
use flowgate::plugin::{GuestError, PluginFailure, PluginSettings};
use flowgate_tests::artifacts::PURCHASE_APPROVAL;

use crate::common::{context, loaded, with_config};

fn request(cents: i64, category: &str) -> ApprovalRequest {
    ApprovalRequest {
        context: context(serde_json::json!({"item": "chairs"})),
        amount: Some(Money {
            currency: "USD".to_string(),
            minor_units: cents,
        }),
        category: category.to_string(),
        requester: "alice".to_string(),
    }
}

fn roles(decision: &ApprovalDecision) -> Vec<String> {
    match &decision.requirement {
        ApprovalRequirement::AutoApprove => vec!["auto".to_string()],
        ApprovalRequirement::Stages((order, stages)) => {
            assert_eq!(*order, StageOrder::Parallel);
            stages
                .iter()
                .flat_map(|s| &s.approvers)
                .map(|a| match a {
                    Approver::Role(r) | Approver::Person(r) => r.clone(),
                })
                .collect()
        }
    }
}

#[test]
fn bands_and_it_review_through_wasm() {
    let plugin = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        PluginSettings::default(),
    );
    let cases: &[(i64, &str, &[&str])] = &[
        (10_000, "office", &["auto"]),
        (60_000, "office", &["manager"]),
        (700_000, "software", &["director", "it-reviewer"]),
        (6_000_000, "travel", &["cfo"]),
    ];
    for (cents, category, expected) in cases {
        let called = plugin
            .evaluate_approval(&request(*cents, category))
            .unwrap_or_else(|e| panic!("{cents} {category}: {e}"));
        assert_eq!(roles(&called.value), *expected, "{cents} {category}");
        assert!(called.fuel_consumed > 0);
    }
}

#[test]
fn tenant_configuration_reaches_the_plugin() {
    let plugin = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        with_config(&[("manager_threshold", "50")]),
    );
    let called = plugin.evaluate_approval(&request(6_000, "office"));
    let decision = called.map(|c| c.value).map_err(|e| e.to_string());
    assert_eq!(
        decision.as_ref().map(roles),
        Ok(vec!["manager".to_string()])
    );
    let reason = decision.map(|d| d.reason).unwrap_or_default();
    assert_eq!(reason, "60.00 USD is in the manager band");
}

#[test]
fn plugin_logs_are_captured() {
    let plugin = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        PluginSettings::default(),
    );
    let called = plugin
        .evaluate_approval(&request(60_000, "office"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(called.logs.len(), 1);
    assert_eq!(called.logs[0].message, "purchase evaluated");
    assert!(
        called.logs[0]
            .fields
            .contains(&("amount".to_string(), "600.00 USD".to_string()))
    );
}

#[test]
fn a_missing_amount_is_the_plugins_invalid_input() {
    let plugin = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        PluginSettings::default(),
    );
    let mut req = request(0, "office");
    req.amount = None;
    let err = plugin.evaluate_approval(&req).err().map(|e| *e.failure);
    assert!(
        matches!(&err, Some(PluginFailure::Guest(GuestError::InvalidInput(m))) if m.contains("amount")),
        "{err:?}"
    );
}
