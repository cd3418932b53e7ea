//! The decision-table plugin, as wasm through the host, with the example tenant's tables: its
//! decisions equal the hand-written purchase-approval and ticket-routing plugins' on the same
//! inputs, boundaries and odd inputs included.

use std::path::Path;
use std::sync::Arc;

use flowgate::plugin::types::{
    ApprovalDecision, ApprovalRequest, Money, RouteDecision, RouteRequest,
};
use flowgate::plugin::{GuestError, LoadedPlugin, PluginError, PluginFailure, PluginSettings};
use flowgate::tenant::TenantConfig;
use flowgate_tests::artifacts::{DECISION_TABLE, PURCHASE_APPROVAL, TICKET_ROUTING};
use serde_json::json;

use crate::common::{context, loaded};

/// The settings the example tenant gives `name`, as the daemon would load them.
fn example_settings(name: &str) -> PluginSettings {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/tenant.toml");
    let tenant = TenantConfig::load(&file).unwrap_or_else(|e| panic!("example tenant: {e}"));
    let plugin = tenant.plugins.get(name);
    plugin
        .unwrap_or_else(|| panic!("the example tenant has no plugin `{name}`"))
        .settings()
}

/// A call's outcome, comparable across plugins: the decision, or the kind of refusal.
fn outcome<T: std::fmt::Debug>(
    called: Result<flowgate::plugin::Called<T>, PluginError>,
    shape: impl Fn(&T) -> String,
) -> String {
    match called {
        Ok(c) => shape(&c.value),
        Err(e) => match *e.failure {
            PluginFailure::Guest(GuestError::InvalidInput(_)) => "invalid input".to_string(),
            other => format!("failed: {other}"),
        },
    }
}

/// A small deterministic generator, so a failure names an input that can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next(from.len() as u64) as usize]
    }
}

fn purchase(currency: &str, minor_units: Option<i64>, category: &str) -> ApprovalRequest {
    ApprovalRequest {
        context: context(json!({"item": "chairs"})),
        amount: minor_units.map(|minor_units| Money {
            currency: currency.to_string(),
            minor_units,
        }),
        category: category.to_string(),
        requester: "alice".to_string(),
    }
}

#[test]
fn the_purchase_table_decides_as_the_purchase_approval_plugin() {
    let written = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        example_settings("purchase-approval"),
    );
    let table = loaded(
        DECISION_TABLE,
        "purchase-rules",
        example_settings("purchase-rules"),
    );
    let decide = |plugin: &Arc<LoadedPlugin>, request: &ApprovalRequest| {
        outcome(plugin.evaluate_approval(request), |d: &ApprovalDecision| {
            format!("{:?}", d.requirement)
        })
    };
    let categories = [
        "office",
        "it",
        "IT",
        " Software ",
        "hardware",
        "travel",
        "",
        "its",
    ];
    let mut requests = Vec::new();
    // Every band's edges, in currencies of 0, 2 and 3 decimals.
    for currency in ["USD", "JPY", "KWD"] {
        for major in [0i64, 500, 5_000, 50_000] {
            for delta in [-1i64, 0, 1] {
                let scale = match currency {
                    "JPY" => 1,
                    "KWD" => 1_000,
                    _ => 100,
                };
                for category in categories {
                    requests.push(purchase(currency, Some(major * scale + delta), category));
                }
            }
        }
    }
    let mut random = Lcg(7);
    for _ in 0..1_500 {
        let cents = random.next(10_000_000) as i64 - 100_000;
        requests.push(purchase("USD", Some(cents), random.pick(&categories)));
    }
    requests.push(purchase("USD", None, "office"));
    requests.push(purchase("USD", Some(i64::MAX), "it"));

    let mut decided = std::collections::BTreeSet::new();
    for request in &requests {
        let expected = decide(&written, request);
        let found = decide(&table, request);
        assert_eq!(
            found, expected,
            "amount {:?}, category {:?}",
            request.amount, request.category
        );
        decided.insert(expected);
    }
    // The inputs reached every kind of decision, refusals too.
    assert!(decided.len() >= 8, "{decided:#?}");
    assert!(decided.contains("invalid input"));
    assert!(decided.contains("AutoApprove"), "{decided:#?}");
}

#[test]
fn the_ticket_table_routes_as_the_ticket_routing_plugin() {
    let written = loaded(TICKET_ROUTING, "ticket-routing", PluginSettings::default());
    let table = loaded(
        DECISION_TABLE,
        "ticket-rules",
        example_settings("ticket-rules"),
    );
    let route = |plugin: &Arc<LoadedPlugin>, request: &RouteRequest| {
        outcome(plugin.route(request), |d: &RouteDecision| d.next.join(","))
    };
    let words = [
        "refund", "Invoice", "charged", "payment", "error", "crash", "LOGIN", "slow", "smoke",
        "fire", "hello", "please", "my", "account", "order", "charger", "errors", "", "  ",
    ];
    // Not `null`: the hand-written plugin refuses a null tier, where a table takes JSON null
    // for a missing value (the last test below).
    let tiers = [
        json!("gold"),
        json!("platinum"),
        json!(" Enterprise "),
        json!(5),
    ];
    let all = ["billing", "technical", "general", "priority", "escalation"];
    let without_priority = ["billing", "technical", "general", "escalation"];
    let mut random = Lcg(11);
    let mut routed = std::collections::BTreeSet::new();
    for _ in 0..1_500 {
        let mut text = |n: u64| {
            let count = random.next(n);
            (0..count)
                .map(|_| random.pick(&words))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let subject = text(3);
        let body = text(5);
        let mut data = json!({"subject": subject, "body": body});
        match random.next(4) {
            0 => {}
            1 => data["customer"] = json!({}),
            _ => data["customer"] = json!({"tier": tiers[random.next(4) as usize]}),
        }
        if random.next(50) == 0 {
            data["subject"] = json!(42);
        }
        let candidates: &[&str] = if random.next(3) == 0 {
            &without_priority
        } else {
            &all
        };
        let request = RouteRequest {
            context: context(data.clone()),
            candidates: candidates.iter().map(|c| c.to_string()).collect(),
        };
        let expected = route(&written, &request);
        assert_eq!(route(&table, &request), expected, "{data} {candidates:?}");
        routed.insert(expected);
    }
    for outcome in all.iter().copied().chain(["invalid input"]) {
        assert!(
            routed.contains(outcome),
            "no input reached {outcome}: {routed:?}"
        );
    }
}

#[test]
fn reasons_name_the_inputs_and_the_rules() {
    let table = loaded(
        DECISION_TABLE,
        "purchase-rules",
        example_settings("purchase-rules"),
    );
    let called = table.evaluate_approval(&purchase("USD", Some(70_000), "it"));
    let reason = called
        .map(|c| c.value.reason)
        .map_err(|e| e.failure.to_string());
    assert_eq!(
        reason,
        Ok("amount = 700, category = it: rule 3 (in the manager band); rule 6 (IT purchases always need IT review)".to_string())
    );
    let rejected = table.evaluate_approval(&purchase("USD", Some(-1), "it"));
    assert_eq!(
        rejected
            .map(|c| c.value.reason)
            .map_err(|e| e.failure.to_string()),
        Err("invalid input: amount: must not be negative (rule 1 of the decision table, for amount = -0.01, category = it)".to_string())
    );
}

#[test]
fn without_a_table_every_call_is_a_permanent_error_saying_so() {
    let bare = loaded(DECISION_TABLE, "rules", PluginSettings::default());
    let called = bare.evaluate_approval(&purchase("USD", Some(1), "it"));
    let error = called.map(drop).map_err(|e| e.failure.to_string());
    assert!(
        error
            .as_ref()
            .is_err_and(|e| e.starts_with("permanent error: no decision table configured")),
        "{error:?}"
    );
}

#[test]
fn a_table_takes_json_null_for_a_missing_value() {
    let table = loaded(
        DECISION_TABLE,
        "ticket-rules",
        example_settings("ticket-rules"),
    );
    let request = RouteRequest {
        context: context(json!({"subject": "login", "customer": {"tier": null}})),
        candidates: vec!["technical".to_string(), "priority".to_string()],
    };
    let routed = table.route(&request).map(|c| c.value.next);
    assert_eq!(
        routed.map_err(|e| e.failure.to_string()),
        Ok(vec!["technical".to_string()])
    );
}
