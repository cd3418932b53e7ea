//! Guests that misbehave on purpose: each is stopped with its typed error within its cap, and the
//! host keeps serving: the next call, on the same plugin or another, succeeds.

use std::time::Duration;

use flowgate::plugin::types::RouteRequest;
use flowgate::plugin::{
    Blame, GuestError, LoadedPlugin, PluginFailure, PluginLimits, PluginSettings,
};
use flowgate_tests::artifacts::{MISBEHAVE, PURCHASE_APPROVAL};
use serde_json::json;

use crate::common::{action, context, loaded, with_config};

fn run(plugin: &LoadedPlugin, what: &str) -> Result<serde_json::Value, PluginFailure> {
    plugin
        .run_action(&action(what, json!({}), json!({})))
        .map(|c| serde_json::Value::Object(c.value.data))
        .map_err(|e| *e.failure)
}

/// After any failure, the same plugin and a well-behaved one both still work.
fn host_still_serves(plugin: &LoadedPlugin) {
    assert_eq!(run(plugin, "ok").ok(), Some(json!({"ok": true})));
    let good = loaded(
        PURCHASE_APPROVAL,
        "purchase-approval",
        PluginSettings::default(),
    );
    let request = flowgate::plugin::types::ApprovalRequest {
        context: context(json!({})),
        amount: None,
        category: "office".to_string(),
        requester: "bob".to_string(),
    };
    // An invalid-input answer is still a completed call.
    assert!(matches!(
        good.evaluate_approval(&request).map_err(|e| *e.failure),
        Err(PluginFailure::Guest(GuestError::InvalidInput(_)))
    ));
}

/// Fuel enough that a cap other than fuel is what stops the guest.
const AMPLE_FUEL: u64 = 2_000_000_000;

fn misbehave(limits: PluginLimits) -> std::sync::Arc<LoadedPlugin> {
    loaded(
        MISBEHAVE,
        "misbehave",
        PluginSettings {
            limits,
            ..PluginSettings::default()
        },
    )
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let plugin = misbehave(PluginLimits {
        fuel: 5_000_000,
        timeout: Duration::from_secs(30),
        ..PluginLimits::default()
    });
    let err = run(&plugin, "loop").err();
    assert!(
        matches!(
            err,
            Some(PluginFailure::FuelExhausted { budget: 5_000_000 })
        ),
        "{err:?}"
    );
    host_still_serves(&plugin);
}

#[test]
fn an_infinite_loop_with_unlimited_fuel_hits_the_deadline() {
    let plugin = misbehave(PluginLimits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(50),
        ..PluginLimits::default()
    });
    let err = run(&plugin, "loop").err();
    assert!(
        matches!(err, Some(PluginFailure::Deadline { .. })),
        "{err:?}"
    );
    host_still_serves(&plugin);
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let plugin = misbehave(PluginLimits {
        memory_bytes: 16 << 20,
        fuel: AMPLE_FUEL,
        timeout: Duration::from_secs(10),
        ..PluginLimits::default()
    });
    let err = run(&plugin, "alloc").err();
    assert!(
        matches!(err, Some(PluginFailure::MemoryCap { limit, desired }) if limit == 16 << 20 && desired > limit),
        "{err:?}"
    );
    host_still_serves(&plugin);
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let plugin = misbehave(PluginLimits::default());
    let err = run(&plugin, "recurse").err();
    assert!(matches!(err, Some(PluginFailure::StackOverflow)), "{err:?}");
    host_still_serves(&plugin);
}

#[test]
fn a_panic_is_a_trap_carrying_the_panic_message() {
    let plugin = misbehave(PluginLimits::default());
    let err = run(&plugin, "trap").err();
    let Some(PluginFailure::Trap { message }) = &err else {
        panic!("expected a trap, got {err:?}");
    };
    assert!(
        message.contains("deliberate panic for the trap test"),
        "{message}"
    );
    host_still_serves(&plugin);
}

#[test]
fn oversized_output_is_refused() {
    let plugin = misbehave(PluginLimits {
        fuel: AMPLE_FUEL,
        timeout: Duration::from_secs(10),
        ..PluginLimits::default()
    });
    let err = run(&plugin, "huge-output").err();
    assert!(
        matches!(err, Some(PluginFailure::OutputTooLarge { size, limit }) if size > limit && limit == 1 << 20),
        "{err:?}"
    );
    host_still_serves(&plugin);
}

#[test]
fn oversized_input_is_refused_before_the_call() {
    let plugin = misbehave(PluginLimits {
        max_input_bytes: 1000,
        ..PluginLimits::default()
    });
    let big = json!({"blob": "y".repeat(2000)});
    let err = plugin
        .run_action(&action("ok", big, json!({})))
        .err()
        .map(|e| *e.failure);
    assert!(
        matches!(err, Some(PluginFailure::InputTooLarge { limit: 1000, .. })),
        "{err:?}"
    );
}

#[test]
fn outputs_that_break_the_contract_are_bad_outputs() {
    let plugin = misbehave(PluginLimits::default());
    for (what, expected) in [("bad-json", "not valid JSON"), ("not-object", "an array")] {
        let err = run(&plugin, what).err();
        assert!(
            matches!(&err, Some(PluginFailure::BadOutput { reason }) if reason.contains(expected)),
            "{what}: {err:?}"
        );
    }
    let request = RouteRequest {
        context: context(json!({"next": ["nowhere"]})),
        candidates: vec!["approve".to_string(), "reject".to_string()],
    };
    let err = plugin.route(&request).err();
    let message = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("`nowhere`"), "{message}");
    assert!(message.contains("router"), "{message}");
    assert_eq!(err.map(|e| e.blame()), Some(Blame::Guest));
}

#[test]
fn guest_errors_keep_their_kind() {
    let plugin = misbehave(PluginLimits::default());
    let err = plugin
        .run_action(&action("retryable", json!({}), json!({})))
        .err();
    assert!(err.as_ref().is_some_and(|e| e.is_retryable()), "{err:?}");
    let err = run(&plugin, "permanent").err();
    assert!(
        matches!(err, Some(PluginFailure::Guest(GuestError::Permanent(m))) if m == "account closed")
    );
}

#[test]
fn a_missing_capability_is_named() {
    let plugin = misbehave(PluginLimits::default());
    let request = flowgate::plugin::types::ApprovalRequest {
        context: context(json!({})),
        amount: None,
        category: String::new(),
        requester: String::new(),
    };
    let err = plugin.evaluate_approval(&request).err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("does not export the approval-policy capability"),
        "{message}"
    );
    assert!(
        message.contains("`misbehave`") && message.contains("`acme`"),
        "{message}"
    );
}

#[test]
fn log_floods_are_capped_and_stdio_is_captured() {
    let plugin = misbehave(PluginLimits {
        fuel: AMPLE_FUEL,
        timeout: Duration::from_secs(10),
        ..PluginLimits::default()
    });
    let called = plugin
        .run_action(&action("log", json!({}), json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    let stream = |line: &flowgate::plugin::LogLine| {
        line.fields
            .iter()
            .find(|(k, _)| k == "stream")
            .map(|(_, v)| v.clone())
    };
    let logged = called.logs.iter().filter(|l| stream(l).is_none()).count();
    assert_eq!(logged, 100);
    assert_eq!(called.logs_dropped, 9_900);
    let printed: Vec<(Option<String>, &str)> = called
        .logs
        .iter()
        .filter(|l| stream(l).is_some())
        .map(|l| (stream(l), l.message.as_str()))
        .collect();
    assert_eq!(
        printed,
        [
            (Some("stdout".to_string()), "to stdout"),
            (Some("stderr".to_string()), "to stderr")
        ]
    );
}

#[test]
fn each_tenant_sees_its_own_configuration() {
    let a = loaded(MISBEHAVE, "misbehave", with_config(&[("region", "eu")]));
    let b = loaded(
        MISBEHAVE,
        "misbehave",
        with_config(&[("region", "us"), ("x", "1")]),
    );
    assert_eq!(run(&a, "config").ok(), Some(json!({"region": "eu"})));
    assert_eq!(
        run(&b, "config").ok(),
        Some(json!({"region": "us", "x": "1"}))
    );
}
