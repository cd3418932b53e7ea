//! The expense-reimbursement action, as wasm through the host.

use flowgate::plugin::{GuestError, PluginFailure, PluginSettings};
use flowgate_tests::artifacts::EXPENSE_REIMBURSEMENT;
use serde_json::json;

use crate::common::{action, loaded, with_config};

#[test]
fn computes_the_reimbursement_and_echoes_the_idempotency_key() {
    let plugin = loaded(EXPENSE_REIMBURSEMENT, "expenses", PluginSettings::default());
    let data = json!({"currency": "USD", "lines": [
        {"category": "meals", "amount": 9000, "receipt": true},
        {"category": "travel", "amount": 12000, "receipt": true},
        {"category": "alcohol", "amount": 800, "receipt": true}
    ]});
    let called = plugin
        .run_action(&action("compute", data, json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = &called.value.data["reimbursement"];
    assert_eq!(r["claimed"], 21800);
    assert_eq!(r["reimbursable"], 7500 + 12000);
    assert_eq!(r["flagged"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["computed_by"], "inst-1/step/1/1");
    assert_eq!(
        called.value.note,
        "19500 of 21800 USD reimbursable, 2 line(s) flagged"
    );
}

#[test]
fn tenant_limits_and_bad_reports() {
    let plugin = loaded(
        EXPENSE_REIMBURSEMENT,
        "expenses",
        with_config(&[("limit.meals", "9500")]),
    );
    let data = json!({"currency": "USD", "lines": [{"category": "meals", "amount": 9000, "receipt": true}]});
    let called = plugin.run_action(&action("compute", data, json!({})));
    assert_eq!(
        called
            .map(|c| c.value.data["reimbursement"]["reimbursable"].clone())
            .ok(),
        Some(json!(9000))
    );
    let empty = plugin.run_action(&action(
        "compute",
        json!({"currency": "USD", "lines": []}),
        json!({}),
    ));
    assert!(matches!(
        empty.map_err(|e| *e.failure),
        Err(PluginFailure::Guest(GuestError::InvalidInput(m))) if m.starts_with("lines")
    ));
}
