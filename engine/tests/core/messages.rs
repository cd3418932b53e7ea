//! Messages from other systems: a receive step waits for one, a boundary on a human step takes
//! another way when one arrives, a deadline reminds and escalates while the wait lasts.

use flowgate_engine::definition::{Format, parse};
use flowgate_engine::{
    Command, CommandError, DeadlinePoint, Message, Status, TaskStatus, TimerKind, Wait,
};
use serde_json::{Value, json};

use crate::env::*;

const SIGNING: &str = r#"
id = "signing"
start = "send"

[[steps]]
id = "send"
kind = "task"
role = "clerk"
next = "await-signature"

[[steps]]
id = "await-signature"
kind = "receive"
message = "signature-received"
correlate = "document_id"
fields = [
  { name = "signed_by", type = "text", required = true },
  { name = "signed_at", type = "date" },
]
next = "archive"

[[steps]]
id = "archive"
kind = "task"
role = "clerk"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn message(name: &str, correlation: &str, data: Value) -> Command {
    Command::ReceiveMessage(Message {
        id: "msg-1".into(),
        name: name.into(),
        correlation: correlation.into(),
        data: object(data),
        sent_by: "esign".into(),
        process: None,
    })
}

fn waiting_at_receive(document: Value) -> Env {
    let (mut env, _) = Env::start(SIGNING, json!({ "document_id": document }));
    env.complete("send", "cy", "clerk", None);
    env
}

#[test]
fn a_receive_step_subscribes_by_the_correlation_in_the_data() {
    let env = waiting_at_receive(json!("doc-7"));
    let subs: Vec<_> = env.inst.subscriptions.values().collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (
            subs[0].message.as_str(),
            subs[0].correlation.as_str(),
            subs[0].step.as_str()
        ),
        ("signature-received", "doc-7", "await-signature")
    );
    let token = &env.inst.tokens[&subs[0].token];
    assert!(matches!(&token.wait, Wait::Message { subscription } if *subscription == subs[0].id));
}

#[test]
fn an_integer_correlation_is_matched_as_its_decimal_text() {
    let mut env = waiting_at_receive(json!(4711));
    let applied = env.ok(message(
        "signature-received",
        "4711",
        json!({"signed_by": "Dana"}),
    ));
    assert!(events(&applied).contains(&"message-received await-signature".to_string()));
    assert_eq!(env.at_steps(), ["archive"]);
}

#[test]
fn the_message_moves_the_instance_on_and_merges_its_declared_data() {
    let mut env = waiting_at_receive(json!("doc-7"));
    let applied = env.ok(message(
        "signature-received",
        "doc-7",
        json!({"signed_by": "Dana", "signed_at": "2026-12-02"}),
    ));
    assert_eq!(
        events(&applied)[..3],
        [
            "message-received await-signature",
            "data-updated",
            "step-completed await-signature"
        ]
    );
    assert_eq!(env.inst.data["signed_by"], "Dana");
    assert_eq!(env.at_steps(), ["archive"]);
    assert!(
        env.inst.subscriptions.is_empty(),
        "the subscription is consumed"
    );
    let received = &applied.events[0];
    assert_eq!(received.reason.as_deref(), Some("sent by esign"));
}

#[test]
fn a_message_with_undeclared_or_mistyped_data_is_refused_and_changes_nothing() {
    let mut env = waiting_at_receive(json!("doc-7"));
    let before = env.inst.clone();
    let stranger = env.apply(message(
        "signature-received",
        "doc-7",
        json!({"signed_by": "Dana", "approved": true}),
    ));
    match stranger {
        Err(CommandError::Invalid { field, message }) => {
            assert_eq!(field, "data.approved");
            assert!(message.contains("takes signed_by, signed_at"), "{message}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    let mistyped = env.apply(message(
        "signature-received",
        "doc-7",
        json!({"signed_by": 7}),
    ));
    assert!(
        matches!(&mistyped, Err(CommandError::Invalid { field, .. }) if field == "data.signed_by"),
        "{mistyped:?}"
    );
    let missing = env.apply(message("signature-received", "doc-7", json!({})));
    assert!(
        matches!(&missing, Err(CommandError::Invalid { field, .. }) if field == "data.signed_by"),
        "{missing:?}"
    );
    assert_eq!(env.inst, before);
}

#[test]
fn a_message_for_another_correlation_or_name_finds_no_step() {
    let mut env = waiting_at_receive(json!("doc-7"));
    for (name, correlation) in [
        ("signature-received", "doc-8"),
        ("signature-declined", "doc-7"),
    ] {
        let refused = env.apply(message(name, correlation, json!({"signed_by": "x"})));
        assert!(
            matches!(refused, Err(CommandError::NotFound { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(env.at_steps(), ["await-signature"]);
}

#[test]
fn a_missing_or_unmatchable_correlation_field_is_an_incident_not_a_silent_wait() {
    for data in [
        json!({}),
        json!({"document_id": 1.5}),
        json!({"document_id": ["a"]}),
    ] {
        let (mut env, _) = Env::start(SIGNING, data.clone());
        env.complete("send", "cy", "clerk", None);
        assert!(env.inst.has_incident(), "{data}");
        assert!(env.inst.subscriptions.is_empty());
    }
}

const TICKET: &str = r#"
id = "ticket"
start = "answer"

[[steps]]
id = "answer"
kind = "task"
role = "agent"
next = "done"
messages = [
  { message = "customer-replied", correlate = "ticket", next = "read-reply", fields = [{ name = "reply", type = "text" }] },
]

[[steps]]
id = "read-reply"
kind = "task"
role = "agent"
next = "answer"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_boundary_message_withdraws_the_open_task_and_takes_its_way() {
    let (mut env, _) = Env::start(TICKET, json!({"ticket": "T-1"}));
    let first = env.task("answer");
    let applied = env.ok(message(
        "customer-replied",
        "T-1",
        json!({"reply": "any news?"}),
    ));
    assert_eq!(env.inst.tasks[&first].status, TaskStatus::Cancelled);
    assert!(events(&applied).contains(&format!("task-cancelled {first}")));
    assert!(events(&applied).contains(&"step-completed answer".to_string()));
    assert_eq!(env.at_steps(), ["read-reply"]);
    assert_eq!(env.inst.data["reply"], "any news?");
    assert!(
        env.inst.subscriptions.is_empty(),
        "read-reply has no boundary"
    );
    // Back at the task, the boundary is armed again for the next reply.
    env.complete("read-reply", "al", "agent", None);
    assert_eq!(env.inst.subscriptions.len(), 1);
    env.ok(message("customer-replied", "T-1", json!({})));
    assert_eq!(env.at_steps(), ["read-reply"]);
}

#[test]
fn completing_the_task_drops_its_boundary_subscription() {
    let (mut env, _) = Env::start(TICKET, json!({"ticket": "T-1"}));
    env.complete("answer", "al", "agent", None);
    assert_eq!(env.inst.status, Status::Completed);
    assert!(env.inst.subscriptions.is_empty());
}

const WATCHED: &str = r#"
id = "watched"
start = "await"

[[steps]]
id = "await"
kind = "receive"
message = "payment-received"
correlate = "invoice"
role = "ap-clerk"
next = "done"
on = { timeout = "chase" }

[steps.deadline]
due = "2d"
reminders = ["1d"]
escalation = { action = "outcome", after = "1d", outcome = "timeout" }

[[steps]]
id = "chase"
kind = "task"
role = "ap-clerk"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn fire_next(env: &mut Env) -> flowgate_engine::Applied {
    let (id, due) = env
        .inst
        .timers
        .values()
        .map(|t| (t.id.clone(), t.due_at))
        .min_by_key(|(_, due)| *due)
        .unwrap_or_else(|| panic!("no timer armed"));
    env.now = due;
    env.ok(Command::TimerFired { timer: id })
}

#[test]
fn a_receive_deadline_reminds_then_escalates_to_its_outcome() {
    let (mut env, _) = Env::start(WATCHED, json!({"invoice": "INV-9"}));
    let points: Vec<DeadlinePoint> = env
        .inst
        .timers
        .values()
        .filter_map(|t| match t.kind {
            TimerKind::MessageDeadline { point, .. } => Some(point),
            _ => None,
        })
        .collect();
    assert_eq!(points.len(), 3, "reminder, due, escalation");
    let reminded = fire_next(&mut env);
    assert_eq!(env.now, T0 + 86_400_000);
    assert_eq!(events(&reminded), ["message-late await"]);
    assert_eq!(effects(&reminded), ["notify reminder"]);
    let due = fire_next(&mut env);
    assert_eq!(effects(&due), ["notify overdue"]);
    let escalated = fire_next(&mut env);
    assert_eq!(env.now, T0 + 3 * 86_400_000);
    assert!(events(&escalated).contains(&"step-completed await".to_string()));
    assert_eq!(env.at_steps(), ["chase"]);
    assert!(env.inst.subscriptions.is_empty());
}

#[test]
fn a_message_before_the_deadline_disarms_it() {
    let (mut env, _) = Env::start(WATCHED, json!({"invoice": "INV-9"}));
    env.ok(message("payment-received", "INV-9", json!({})));
    assert_eq!(env.inst.status, Status::Completed);
    assert!(env.inst.timers.is_empty());
}

#[test]
fn messages_to_parallel_branches_reach_every_waiting_step() {
    let toml = r#"
id = "both"
start = "split"
[[steps]]
id = "split"
kind = "parallel"
branches = ["a", "b"]
join = "joined"
[[steps]]
id = "a"
kind = "receive"
message = "go"
correlate = "case"
next = "joined"
[[steps]]
id = "b"
kind = "receive"
message = "go"
correlate = "case"
next = "joined"
[[steps]]
id = "joined"
kind = "join"
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;
    let (mut env, _) = Env::start(toml, json!({"case": "c1"}));
    assert_eq!(env.inst.subscriptions.len(), 2);
    env.ok(message("go", "c1", json!({})));
    assert_eq!(env.inst.status, Status::Completed);
}

#[test]
fn validation_names_what_is_wrong_with_a_receive_step() {
    let bad = r#"
id = "bad"
start = "await"
start_messages = [{ message = "go!" }]
[[steps]]
id = "await"
kind = "receive"
message = ""
correlate = ""
next = "done"
on = { later = "done" }
[steps.deadline]
due = "1d"
reminders = ["1h"]
escalation = { action = "reassign", role = "x" }
[[steps]]
id = "done"
kind = "end"
"#;
    let def = parse("bad.toml", bad, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    struct Nothing;
    impl flowgate_engine::definition::Catalog for Nothing {
        fn plugin_capabilities(&self, _: &str) -> Option<Vec<flowgate_engine::Capability>> {
            None
        }
        fn has_definition(&self, _: &str) -> bool {
            false
        }
    }
    let problems: Vec<String> = flowgate_engine::definition::validate(&def, &Nothing)
        .into_iter()
        .map(|p| p.path)
        .collect();
    for path in [
        "start_messages[0].message",
        "steps[0] (await).message",
        "steps[0] (await).correlate",
        "steps[0] (await).on.later",
        "steps[0] (await).deadline.escalation",
        "steps[0] (await).role",
    ] {
        assert!(
            problems.iter().any(|p| p == path),
            "{path} not in {problems:?}"
        );
    }
}

#[test]
fn a_message_about_another_case_is_not_taken_and_one_about_this_case_is() {
    let mut env = waiting_at_receive(json!("doc-7"));
    let before = env.inst.clone();
    let about = |process: &str| {
        let Command::ReceiveMessage(mut m) =
            message("signature-received", "doc-7", json!({"signed_by": "Dana"}))
        else {
            unreachable!("message() builds a ReceiveMessage");
        };
        m.process = Some(process.to_string());
        Command::ReceiveMessage(m)
    };
    let refused = env.apply(about("another-case"));
    assert!(
        matches!(refused, Err(CommandError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(env.inst, before, "nothing changed");
    let own = env.inst.process_id().to_string();
    env.ok(about(&own));
    assert_eq!(env.at_steps(), ["archive"]);
}
