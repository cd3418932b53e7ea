//! The ticket-routing router, as wasm through the host.

use flowgate::plugin::PluginSettings;
use flowgate::plugin::types::RouteRequest;
use flowgate_tests::artifacts::TICKET_ROUTING;
use serde_json::json;

use crate::common::{context, loaded};

fn route(candidates: &[&str], data: serde_json::Value) -> Result<(Vec<String>, String), String> {
    let plugin = loaded(TICKET_ROUTING, "ticket-routing", PluginSettings::default());
    let request = RouteRequest {
        context: context(data),
        candidates: candidates.iter().map(|s| s.to_string()).collect(),
    };
    plugin
        .route(&request)
        .map(|c| (c.value.next, c.value.reason))
        .map_err(|e| e.to_string())
}

const ALL: &[&str] = &["billing", "technical", "general", "priority", "escalation"];

#[test]
fn tickets_reach_their_queue() {
    let cases = [
        (json!({"subject": "Refund for double charge"}), "billing"),
        (
            json!({"subject": "App crash", "body": "error 500"}),
            "technical",
        ),
        (json!({"subject": "Opening hours?"}), "general"),
        (
            json!({"subject": "Crash", "customer": {"tier": "platinum"}}),
            "priority",
        ),
        (
            json!({"subject": "Refund", "body": "the heater caught fire"}),
            "escalation",
        ),
    ];
    for (data, expected) in cases {
        let routed = route(ALL, data.clone());
        assert_eq!(
            routed.map(|r| r.0),
            Ok(vec![expected.to_string()]),
            "{data}"
        );
    }
}

#[test]
fn priority_falls_back_when_the_definition_has_no_priority_queue() {
    let data = json!({"subject": "Login broken", "customer": {"tier": "enterprise"}});
    let routed = route(&["billing", "technical", "general", "escalation"], data);
    assert_eq!(routed.map(|r| r.0), Ok(vec!["technical".to_string()]));
}

#[test]
fn a_route_outside_the_definition_is_a_bad_output() {
    // Safety tickets go to `escalation`; a definition without it makes the answer invalid.
    let routed = route(
        &["billing", "general"],
        json!({"subject": "smoke from the unit"}),
    );
    let message = routed.err().unwrap_or_default();
    assert!(message.contains("bad output"), "{message}");
    assert!(message.contains("`escalation`"), "{message}");
}
