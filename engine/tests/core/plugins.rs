//! Plugin calls: one effect shape for every capability, answered by one command. A decision's
//! answer opens what it decides; a stale answer changes nothing; failures retry with backoff and
//! then become incidents that a person resolves.

use flowgate_engine::definition::StageOrder;
use flowgate_engine::{
    ActionOutput, Approver, Blame, Capability, Command, CommandError, EffectFailure, EventKind,
    FailureKind, PluginAnswer, PluginRef, PluginRequest, RequiredStage, Requirement, Resolution,
    Routed, Wait,
};
use serde_json::json;

use crate::env::*;

const PURCHASE: &str = r#"
id = "purchase"
start = "approval"

[[steps]]
id = "approval"
kind = "approval"
policy = "p"
request = { amount = "amount_cents", currency = "currency", category = "category", requester = "requester" }
on = { approve = "order", reject = "rejected" }

[[steps]]
id = "order"
kind = "action"
plugin = "p"
action = "place"
params = { vendor = "acme-supplies" }
retry = { max_attempts = 2, initial_backoff = "30s" }
next = "ordered"

[[steps]]
id = "ordered"
kind = "end"

[[steps]]
id = "rejected"
kind = "end"
outcome = "rejected"
"#;

const TRIAGE: &str = r#"
id = "triage"
start = "route"

[[steps]]
id = "route"
kind = "route"
plugin = "p"
candidates = ["billing", "technical"]

[[steps]]
id = "billing"
kind = "task"
role = "billing"
next = "done"

[[steps]]
id = "technical"
kind = "task"
role = "technical"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn by() -> PluginRef {
    PluginRef {
        name: "p".into(),
        sha256: "0123abcd".into(),
    }
}

fn stages(roles: &[&str]) -> PluginAnswer {
    PluginAnswer::ApprovalPolicy(Requirement {
        auto_approve: false,
        order: StageOrder::Parallel,
        stages: roles
            .iter()
            .map(|r| RequiredStage {
                name: r.to_string(),
                approvers: vec![Approver::Role(r.to_string())],
                required: 1,
            })
            .collect(),
        reason: "over the limit".into(),
        plugin: Some(by()),
    })
}

fn failure(kind: FailureKind) -> EffectFailure {
    EffectFailure {
        message: format!("failed: {kind}"),
        kind,
        plugin: Some(by()),
    }
}

fn purchase(cents: i64) -> Env {
    Env::start(
        PURCHASE,
        json!({"amount_cents": cents, "currency": "USD", "category": "it", "requester": "al"}),
    )
    .0
}

#[test]
fn an_approval_step_asks_its_policy_with_the_mapped_request() {
    let (env, applied) = Env::start(
        PURCHASE,
        json!({"amount_cents": 120_000, "currency": "USD", "category": "it", "requester": "al"}),
    );
    let call = call(&applied);
    assert_eq!(
        (call.step.as_str(), call.plugin.as_str(), call.attempt),
        ("approval", "p", 1)
    );
    assert_eq!(
        call.request,
        PluginRequest::ApprovalPolicy {
            amount: Some(120_000),
            currency: "USD".into(),
            category: "it".into(),
            requester: "al".into(),
        }
    );
    assert_eq!(call.request.capability(), Capability::ApprovalPolicy);
    assert!(call.request.capability().is_decision());
    let token = &env.inst.tokens[&call.token];
    assert_eq!(token.wait, Wait::Policy { attempt: 1 });
}

#[test]
fn a_policy_answer_opens_one_task_per_stage_and_names_the_plugin() {
    let mut env = purchase(120_000);
    let first = call(&Env::start(PURCHASE, json!({"amount_cents": 120_000})).1);
    let applied = env.ok(first.answered(Ok(stages(&["director", "it"]))));
    assert_eq!(
        events(&applied),
        [
            "approval-required approval",
            "task-created approval",
            "task-created approval"
        ]
    );
    let decided = &applied.events[0];
    assert_eq!(
        serde_json::to_value(&decided.actor).unwrap_or_default(),
        json!({"type": "plugin", "name": "p", "sha256": "0123abcd"})
    );
    assert_eq!(decided.reason.as_deref(), Some("over the limit"));
    assert_eq!(env.open_tasks("approval").len(), 2);
    env.complete("approval", "dee", "director", Some("approve"));
    let last = env.complete("approval", "ivy", "it", Some("approve"));
    let action = call(&last);
    assert_eq!(action.request.capability(), Capability::StepAction);
}

#[test]
fn an_auto_approval_goes_straight_on() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 1_000}));
    let first = call(&applied);
    let auto = PluginAnswer::ApprovalPolicy(Requirement {
        auto_approve: true,
        order: StageOrder::Sequential,
        stages: Vec::new(),
        reason: "under the limit".into(),
        plugin: Some(by()),
    });
    let applied = env.ok(first.answered(Ok(auto)));
    assert_eq!(
        events(&applied),
        [
            "auto-approved approval",
            "step-completed approval",
            "step-entered order"
        ]
    );
    assert_eq!(effects(&applied), ["call step-action order@1"]);
}

#[test]
fn an_answer_to_another_attempt_or_of_another_capability_is_refused_or_ignored() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 120_000}));
    let first = call(&applied);
    let mut stale = first.clone();
    stale.attempt = 2;
    assert!(env.ok(stale.answered(Ok(stages(&["director"])))).is_empty());
    let mut old = first.clone();
    old.activation += 100;
    assert!(env.ok(old.answered(Ok(stages(&["director"])))).is_empty());
    let routed = PluginAnswer::Router(Routed {
        next: vec!["order".into()],
        reason: "wrong".into(),
        plugin: by(),
    });
    let wrong = env.apply(first.answered(Ok(routed)));
    assert!(
        matches!(&wrong, Err(CommandError::Invalid { field, message }) if field == "answer" && message.contains("approval-policy")),
        "{wrong:?}"
    );
    assert_eq!(
        env.inst.tokens[&first.token].wait,
        Wait::Policy { attempt: 1 }
    );
}

#[test]
fn an_action_gets_a_key_per_attempt_and_its_data_is_merged() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 10}));
    let first = call(&applied);
    let approved = env.ok(first.answered(Ok(PluginAnswer::ApprovalPolicy(Requirement {
        auto_approve: true,
        order: StageOrder::Sequential,
        stages: Vec::new(),
        reason: "small".into(),
        plugin: Some(by()),
    }))));
    let action = call(&approved);
    let order = action.activation;
    assert_eq!(
        action.request,
        PluginRequest::StepAction {
            action: "place".into(),
            params: json!({"vendor": "acme-supplies"}),
            key: format!("i1/order/{order}/1"),
        }
    );
    let last = env.inst.history_len;
    // Failing retryably arms a retry timer after the step's backoff.
    env.now += 1_000;
    let failed = env.ok(action.answered(Err(failure(FailureKind::Retryable))));
    assert_eq!(events(&failed), ["plugin-call-failed order"]);
    let retry = env
        .inst
        .timers
        .values()
        .next()
        .cloned()
        .unwrap_or_else(|| panic!("no timer"));
    assert_eq!(retry.due_at, env.now + 30_000);
    env.now = retry.due_at;
    let second = call(&env.ok(Command::TimerFired { timer: retry.id }));
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.request,
        PluginRequest::StepAction {
            action: "place".into(),
            params: json!({"vendor": "acme-supplies"}),
            key: format!("i1/order/{order}/2"),
        },
        "a new attempt, a new key; the same attempt always the same key"
    );
    let done = env.ok(second.answered(Ok(PluginAnswer::StepAction(ActionOutput {
        data: object(json!({"po": "PO-7"})),
        note: "placed".into(),
        plugin: by(),
    }))));
    assert_eq!(
        events(&done)[..3],
        [
            "action-succeeded order",
            "data-updated",
            "step-completed order"
        ]
    );
    assert_eq!(env.inst.data["po"], "PO-7");
    assert_eq!(env.inst.status.as_str(), "completed");
    assert!(env.inst.history_len > last);
}

#[test]
fn an_action_whose_output_a_later_policy_could_not_read_is_the_plugins_fault() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 10}));
    let approved = env.ok(
        call(&applied).answered(Ok(PluginAnswer::ApprovalPolicy(Requirement {
            auto_approve: true,
            order: StageOrder::Sequential,
            stages: Vec::new(),
            reason: "small".into(),
            plugin: Some(by()),
        }))),
    );
    let action = call(&approved);
    // An amount as text would reach the policy as no amount at all: never merged.
    let refused = env.ok(action.answered(Ok(PluginAnswer::StepAction(ActionOutput {
        data: object(json!({"amount_cents": "12.50"})),
        note: "placed".into(),
        plugin: by(),
    }))));
    assert_eq!(
        events(&refused),
        ["plugin-call-failed order", "incident-raised order"],
        "a bad answer is not retried"
    );
    assert!(matches!(
        &env.inst.tokens[&action.token].wait,
        Wait::Incident(i) if i.kind == Some(FailureKind::BadOutput) && i.blame == Some(Blame::Guest)
            && i.error.contains("data.amount_cents")
    ));
    assert_eq!(
        env.inst.data["amount_cents"], 10,
        "the output was not merged"
    );
}

#[test]
fn a_failure_past_its_retries_is_an_incident_a_person_resolves() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 120_000}));
    let first = call(&applied);
    let raised = env.ok(first.answered(Err(failure(FailureKind::Trap))));
    assert_eq!(
        events(&raised),
        ["plugin-call-failed approval", "incident-raised approval"]
    );
    assert!(matches!(
        &env.inst.tokens[&first.token].wait,
        Wait::Incident(i) if i.source == "policy" && i.plugin.as_deref() == Some("p") && i.attempts == 1
            && i.kind == Some(FailureKind::Trap) && i.blame == Some(Blame::Guest)
    ));
    // A late answer of the failed attempt changes nothing now.
    assert!(env.ok(first.answered(Ok(stages(&["director"])))).is_empty());
    let retried = env.ok(Command::ResolveIncident {
        token: first.token,
        by: "ops".into(),
        resolution: Resolution::Retry {
            plugin_version: None,
        },
        reason: "plugin fixed".into(),
    });
    assert_eq!(events(&retried), ["incident-resolved approval"]);
    let second = call(&retried);
    assert_eq!((second.attempt, second.activation), (2, first.activation));
    // Fails again: skip it with an outcome instead.
    env.ok(second.answered(Err(failure(FailureKind::Trap))));
    let skipped = env.ok(Command::ResolveIncident {
        token: first.token,
        by: "ops".into(),
        resolution: Resolution::Skip {
            data: Default::default(),
            outcome: Some("reject".into()),
        },
        reason: "vendor blocked".into(),
    });
    assert_eq!(env.inst.status.as_str(), "rejected");
    assert_eq!(
        skipped.events.last().map(event).as_deref(),
        Some("instance-ended rejected")
    );
    let unknown = env.apply(Command::ResolveIncident {
        token: 99,
        by: "ops".into(),
        resolution: Resolution::Retry {
            plugin_version: None,
        },
        reason: "x".into(),
    });
    assert!(unknown.is_err());
}

#[test]
fn a_retry_on_another_version_repins_the_instance_and_says_so() {
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 120_000}));
    let first = call(&applied);
    env.ok(first.answered(Err(failure(FailureKind::Trap))));
    let pinned = env.inst.plugins.get("p").cloned();
    let fixed = "f".repeat(64);
    let retried = env.ok(Command::ResolveIncident {
        token: first.token,
        by: "ops".into(),
        resolution: Resolution::Retry {
            plugin_version: Some(fixed.clone()),
        },
        reason: "fixed in 1.0.1".into(),
    });
    assert_eq!(
        events(&retried),
        ["incident-resolved approval", "plugin-repinned approval"]
    );
    assert!(matches!(
        &retried.events[0].kind,
        EventKind::IncidentResolved { resolution, .. } if resolution == "retry on plugin version ffffffffffff"
    ));
    assert!(matches!(
        &retried.events[1].kind,
        EventKind::PluginRepinned { plugin, from, to, .. } if plugin == "p" && *from == pinned && *to == fixed
    ));
    assert_eq!(env.inst.plugins.get("p"), Some(&fixed));
    let again = call(&retried);
    assert_eq!(again.attempt, 2);
}

#[test]
fn a_call_the_host_could_not_finish_retries_on_the_host_backoff_before_an_incident() {
    // A policy past its deadline on a loaded host: the host's condition, not the plugin's fault.
    let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 120_000}));
    let mut call_now = call(&applied);
    let mut waits = Vec::new();
    let mut recorded = Vec::new();
    let kind_of = |applied: &flowgate_engine::Applied| -> Vec<Option<FailureKind>> {
        applied
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PluginCallFailed { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    };
    for attempt in 1..5 {
        assert_eq!(call_now.attempt, attempt);
        let failed = env.ok(call_now.answered(Err(failure(FailureKind::Deadline))));
        assert_eq!(events(&failed), ["plugin-call-failed approval"]);
        recorded.extend(kind_of(&failed));
        let timer = env
            .inst
            .timers
            .values()
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("a retry timer"));
        waits.push(timer.due_at - env.now);
        env.now = timer.due_at;
        call_now = call(&env.ok(Command::TimerFired { timer: timer.id }));
    }
    assert_eq!(waits, [200, 400, 800, 1_600], "doubling from 200 ms");
    let raised = env.ok(call_now.answered(Err(failure(FailureKind::Busy))));
    assert_eq!(
        events(&raised),
        ["plugin-call-failed approval", "incident-raised approval"]
    );
    assert!(matches!(
        &env.inst.tokens[&call_now.token].wait,
        Wait::Incident(i) if i.attempts == 5 && i.kind == Some(FailureKind::Busy)
            && i.blame == Some(Blame::Host)
    ));
    recorded.extend(kind_of(&raised));
    let mut expected = vec![Some(FailureKind::Deadline); 4];
    expected.push(Some(FailureKind::Busy));
    assert_eq!(
        recorded, expected,
        "every failed attempt is in the history, with its kind"
    );
}

#[test]
fn fuel_memory_and_traps_are_the_plugins_fault_and_raise_an_incident_at_once() {
    for kind in [
        FailureKind::FuelExhausted,
        FailureKind::MemoryCap,
        FailureKind::Trap,
        FailureKind::BadOutput,
    ] {
        let (mut env, applied) = Env::start(PURCHASE, json!({"amount_cents": 10}));
        let first = call(&applied);
        let raised = env.ok(first.answered(Err(failure(kind))));
        assert_eq!(
            events(&raised),
            ["plugin-call-failed approval", "incident-raised approval"],
            "{kind}"
        );
        assert!(matches!(
            &env.inst.tokens[&first.token].wait,
            Wait::Incident(i) if i.kind == Some(kind) && i.blame == Some(Blame::Guest)
        ));
    }
}

#[test]
fn a_router_answer_moves_the_token_and_may_fan_out() {
    let (mut env, applied) = Env::start(TRIAGE, json!({}));
    let route = call(&applied);
    assert_eq!(
        route.request,
        PluginRequest::Router {
            candidates: vec!["billing".into(), "technical".into()]
        }
    );
    let both = PluginAnswer::Router(Routed {
        next: vec!["billing".into(), "technical".into()],
        reason: "both".into(),
        plugin: by(),
    });
    let applied = env.ok(route.answered(Ok(both)));
    assert_eq!(
        events(&applied)[..2],
        ["routed route", "step-completed route"]
    );
    assert_eq!(env.at_steps(), ["billing", "technical"]);
    env.complete("billing", "bea", "billing", None);
    assert_eq!(
        env.inst.status.as_str(),
        "completed",
        "the first branch to end ends it"
    );
}
