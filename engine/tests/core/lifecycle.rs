//! Pause, resume and migrate: a paused instance holds what arrives and refuses what people
//! ask; resuming applies what was held, in order; a migration moves an instance to another
//! version when every step it is in has a counterpart that waits the same way.

use std::collections::BTreeMap;

use flowgate_engine::{
    ActionOutput, Command, CommandError, Ctx, Message, Migration, PluginAnswer, PluginRef, Status,
    TaskStatus, apply, migration_problems,
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
next = "cooling-off"

[[steps]]
id = "cooling-off"
kind = "wait"
duration = "1h"
next = "await-signature"

[[steps]]
id = "await-signature"
kind = "receive"
message = "signature-received"
correlate = "document_id"
fields = [{ name = "signed_by", type = "text", required = true }]
next = "place"

[[steps]]
id = "place"
kind = "action"
plugin = "p"
action = "file"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn pause() -> Command {
    Command::Pause {
        by: "ops".into(),
        reason: "vendor audit".into(),
    }
}

fn resume() -> Command {
    Command::Resume {
        by: "ops".into(),
        reason: Some("audit over".into()),
    }
}

fn signed(id: &str, document: &str) -> Command {
    Command::ReceiveMessage(Message {
        id: id.into(),
        name: "signature-received".into(),
        correlation: document.into(),
        data: object(json!({"signed_by": "dana"})),
        sent_by: "esign".into(),
        process: None,
    })
}

fn timer(env: &Env) -> String {
    env.inst
        .timers
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| panic!("no timer"))
}

fn at_cooling_off() -> Env {
    let (mut env, _) = Env::start(SIGNING, json!({"document_id": "doc-1"}));
    env.complete("send", "cy", "clerk", None);
    assert_eq!(env.at_steps(), ["cooling-off"]);
    env
}

#[test]
fn a_paused_instance_refuses_people_and_says_why() {
    let (mut env, _) = Env::start(SIGNING, json!({"document_id": "doc-1"}));
    let paused = env.ok(pause());
    assert_eq!(events(&paused), ["instance-paused"]);
    assert_eq!(paused.events[0].reason.as_deref(), Some("vendor audit"));
    assert_eq!(env.inst.status, Status::Running);
    let task = env.task("send");
    let refused = env.apply(complete(&task, "cy", "clerk", None, json!({})));
    match refused {
        Err(CommandError::Conflict(message)) => {
            assert!(
                message.contains("paused (by ops: vendor audit)"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.inst.tasks[&task].status, TaskStatus::Open);
    assert!(
        matches!(env.apply(pause()), Err(CommandError::Conflict(m)) if m.contains("paused already"))
    );
    let resumed = env.ok(resume());
    assert_eq!(events(&resumed), ["instance-resumed"]);
    assert!(
        matches!(env.apply(resume()), Err(CommandError::Conflict(m)) if m.contains("not paused"))
    );
    env.complete("send", "cy", "clerk", None);
    assert_eq!(env.at_steps(), ["cooling-off"]);
}

#[test]
fn a_timer_due_while_paused_fires_on_resume() {
    let mut env = at_cooling_off();
    env.ok(pause());
    env.now += 3_600_000;
    let held = env.ok(Command::TimerFired { timer: timer(&env) });
    assert_eq!(events(&held), ["command-held"]);
    assert_eq!(
        env.at_steps(),
        ["cooling-off"],
        "nothing moves while paused"
    );
    assert_eq!(env.inst.held.len(), 1);
    assert_eq!(env.inst.held[0].at, env.now);
    env.now += 60_000;
    let resumed = env.ok(resume());
    assert_eq!(
        events(&resumed)[..4],
        [
            "instance-resumed",
            "step-completed cooling-off",
            "step-entered await-signature",
            "message-awaited await-signature"
        ]
    );
    assert!(env.inst.held.is_empty());
    assert!(env.inst.timers.is_empty());
    assert_eq!(env.at_steps(), ["await-signature"]);
}

#[test]
fn a_timer_cancelled_with_its_step_is_not_held() {
    let mut env = at_cooling_off();
    env.ok(pause());
    let stale = env.ok(Command::TimerFired {
        timer: "no-such-timer".into(),
    });
    assert!(stale.is_empty());
    assert!(env.inst.held.is_empty());
}

#[test]
fn a_message_for_a_paused_instance_is_held_once_and_delivered_on_resume() {
    let mut env = at_cooling_off();
    env.now += 3_600_000;
    env.ok(Command::TimerFired { timer: timer(&env) });
    env.ok(pause());
    let held = env.ok(signed("m-1", "doc-1"));
    assert_eq!(events(&held), ["command-held"]);
    assert_eq!(
        held.events[0].reason.as_deref(),
        Some("message `m-1` sent by esign")
    );
    assert!(!env.inst.data.contains_key("signed_by"), "held, not merged");
    // The step is spoken for: a second message finds no one waiting (it is buffered or
    // refused by the service, as for a running instance that took one already).
    assert!(matches!(
        env.apply(signed("m-2", "doc-1")),
        Err(CommandError::NotFound { .. })
    ));
    // Data that the step would refuse is refused now, not on resume.
    let bad = Command::ReceiveMessage(Message {
        id: "m-3".into(),
        name: "signature-received".into(),
        correlation: "doc-1".into(),
        data: object(json!({"signed_by": 7})),
        sent_by: "esign".into(),
        process: None,
    });
    env.ok(resume());
    assert_eq!(env.inst.data["signed_by"], "dana");
    assert_eq!(env.at_steps(), ["place"]);
    let mut other = at_cooling_off();
    other.now += 3_600_000;
    other.ok(Command::TimerFired {
        timer: timer(&other),
    });
    other.ok(pause());
    assert!(matches!(
        other.apply(bad),
        Err(CommandError::Invalid { .. })
    ));
    assert!(other.inst.held.is_empty());
}

#[test]
fn a_plugin_answer_to_a_paused_instance_is_applied_on_resume() {
    let mut env = at_cooling_off();
    env.now += 3_600_000;
    env.ok(Command::TimerFired { timer: timer(&env) });
    let entered = env.ok(signed("m-1", "doc-1"));
    let call = call(&entered);
    env.ok(pause());
    let answer = call.answered(Ok(PluginAnswer::StepAction(ActionOutput {
        data: object(json!({"filed_as": "F-9"})),
        note: "filed".into(),
        plugin: PluginRef {
            name: "p".into(),
            sha256: "0123abcd".into(),
        },
    })));
    env.ok(answer);
    assert_eq!(env.at_steps(), ["place"]);
    let resumed = env.ok(resume());
    assert!(events(&resumed).contains(&"action-succeeded place".to_string()));
    assert_eq!(env.inst.status, Status::Completed);
    assert_eq!(env.inst.data["filed_as"], "F-9");
}

#[test]
fn cancelling_a_paused_instance_drops_what_it_held() {
    let mut env = at_cooling_off();
    env.ok(pause());
    env.now += 3_600_000;
    env.ok(Command::TimerFired { timer: timer(&env) });
    env.ok(Command::Cancel {
        by: "ops".into(),
        reason: "withdrawn".into(),
    });
    assert_eq!(env.inst.status, Status::Cancelled);
    assert!(env.inst.paused.is_none());
    assert!(env.inst.held.is_empty());
}

const REVIEW_V1: &str = r#"
id = "review"
start = "draft"

[[steps]]
id = "draft"
kind = "task"
role = "author"
next = "review"

[[steps]]
id = "review"
kind = "task"
role = "editor"
on = { accept = "done", reject = "draft" }

[[steps]]
id = "done"
kind = "end"
"#;

/// Version 2: the review step is renamed and gains a legal check after it.
const REVIEW_V2: &str = r#"
id = "review"
start = "draft"

[[steps]]
id = "draft"
kind = "task"
role = "author"
next = "editor-review"

[[steps]]
id = "editor-review"
kind = "task"
role = "editor"
on = { accept = "legal", reject = "draft", "send-back" = "draft" }

[[steps]]
id = "legal"
kind = "task"
role = "legal"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn migration(steps: &[(&str, &str)]) -> Migration {
    Migration {
        to_version: 2,
        steps: steps
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        plugins: BTreeMap::new(),
        by: "ops".into(),
        reason: "legal check".into(),
    }
}

fn in_review() -> Env {
    let (mut env, _) = Env::start(REVIEW_V1, json!({}));
    env.complete("draft", "al", "author", None);
    assert_eq!(env.at_steps(), ["review"]);
    env
}

/// Applies `command` under `def`, as the writer applies a migration under its target version.
fn apply_under(
    env: &mut Env,
    def: &flowgate_engine::definition::Definition,
    command: Command,
) -> Result<(), CommandError> {
    let ctx = Ctx {
        def,
        now: env.now,
        calendar: &env.calendar,
    };
    let (inst, _) = apply(ctx, env.inst.clone(), command)?;
    env.inst = inst;
    Ok(())
}

#[test]
fn a_migration_moves_the_open_task_to_the_mapped_step_and_the_new_version_runs_on() {
    let mut env = in_review();
    let v2 = definition(REVIEW_V2);
    assert_eq!(
        migration_problems(&v2, &env.inst, &migration(&[])),
        ["step `review` has no step `review` in version 2 to go to (map it to one)"]
    );
    let task = env.task("review");
    let mapped = migration(&[("review", "editor-review")]);
    assert!(migration_problems(&v2, &env.inst, &mapped).is_empty());
    let version = env.inst.version;
    apply_under(&mut env, &v2, Command::Migrate(mapped)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.inst.definition_version, 2);
    assert_eq!(env.inst.version, version + 1);
    assert_eq!(env.at_steps(), ["editor-review"]);
    assert_eq!(env.inst.tasks[&task].step, "editor-review");
    env.def = v2;
    env.ok(complete(&task, "ed", "editor", Some("accept"), json!({})));
    assert_eq!(env.at_steps(), ["legal"], "version 2's way on");
}

#[test]
fn a_migration_names_each_step_that_cannot_move_and_changes_nothing() {
    let mut env = in_review();
    let task = env.task("review");
    // The task's outcomes (accept, reject) must each lead somewhere in the new step.
    let narrow = definition(&REVIEW_V2.replace(
        r#"on = { accept = "legal", reject = "draft", "send-back" = "draft" }"#,
        r#"on = { accept = "legal", "send-back" = "draft" }"#,
    ));
    assert_eq!(
        migration_problems(
            &narrow,
            &env.inst,
            &migration(&[("review", "editor-review")])
        ),
        [format!(
            "step `review` (to `editor-review`) in version 2 has no way on for outcome `reject` of the open task `{task}`"
        )]
    );
    let v2 = definition(REVIEW_V2);
    assert_eq!(
        migration_problems(&v2, &env.inst, &migration(&[("review", "done")])),
        [
            "step `review` (to `done`) is an end step in version 2, where the instance waits in a task step"
        ]
    );
    let before = env.inst.clone();
    let refused = apply_under(
        &mut env,
        &v2,
        Command::Migrate(migration(&[("review", "done")])),
    );
    assert!(
        matches!(refused, Err(CommandError::Conflict(m)) if m.contains("cannot move to version 2"))
    );
    assert_eq!(env.inst, before);
    let mut same = migration(&[("review", "editor-review")]);
    same.to_version = 1;
    assert_eq!(
        migration_problems(&v2, &env.inst, &same),
        ["it is at version 1 already"]
    );
    let other = definition(&REVIEW_V2.replace(r#"id = "review""#, r#"id = "other""#));
    assert_eq!(
        migration_problems(&other, &env.inst, &migration(&[])),
        ["it is an instance of `review`, not of `other`"]
    );
}

#[test]
fn an_instance_waiting_for_its_plugin_does_not_move() {
    let mut env = at_cooling_off();
    env.now += 3_600_000;
    env.ok(Command::TimerFired { timer: timer(&env) });
    env.ok(signed("m-1", "doc-1"));
    let v2 = definition(SIGNING);
    let mut m = migration(&[]);
    m.to_version = 2;
    assert_eq!(
        migration_problems(&v2, &env.inst, &m),
        ["step `place` waits for its plugin's answer; move it once the plugin has answered"]
    );
}

#[test]
fn a_waiting_message_must_still_be_awaited_after_a_migration() {
    let mut env = at_cooling_off();
    env.now += 3_600_000;
    env.ok(Command::TimerFired { timer: timer(&env) });
    let renamed =
        definition(&SIGNING.replace(r#"message = "signature-received""#, r#"message = "signed""#));
    assert_eq!(
        migration_problems(&renamed, &env.inst, &migration(&[])),
        ["step `await-signature` does not wait for message `signature-received` in version 2"]
    );
}

const PARALLEL: &str = r#"
id = "onboard"
start = "split"

[[steps]]
id = "split"
kind = "parallel"
branches = ["laptop", "badge"]
join = "ready"

[[steps]]
id = "laptop"
kind = "task"
role = "it"
next = "ready"

[[steps]]
id = "badge"
kind = "task"
role = "security"
next = "ready"

[[steps]]
id = "ready"
kind = "join"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn branches_move_only_to_a_parallel_step_of_as_many_branches() {
    let (mut env, _) = Env::start(PARALLEL, json!({}));
    env.complete("laptop", "it1", "it", None);
    let three = definition(
        &(PARALLEL.replace(
            r#"branches = ["laptop", "badge"]"#,
            r#"branches = ["laptop", "badge", "desk"]"#,
        ) + "\n[[steps]]\nid = \"desk\"\nkind = \"task\"\nrole = \"facilities\"\nnext = \"ready\"\n"),
    );
    assert_eq!(
        migration_problems(&three, &env.inst, &migration(&[])),
        ["parallel step `split` has 3 branches in version 2, where the instance runs 2"]
    );
    let same = definition(PARALLEL);
    apply_under(&mut env, &same, Command::Migrate(migration(&[])))
        .unwrap_or_else(|e| panic!("{e}"));
    env.def = same;
    env.complete("badge", "sec", "security", None);
    assert_eq!(env.inst.status, Status::Completed);
}

#[test]
fn a_migration_records_where_steps_went_and_new_plugin_pins() {
    let env = in_review();
    let v2 = definition(REVIEW_V2);
    let mut m = migration(&[("review", "editor-review")]);
    m.plugins.insert("p".into(), "fedcba98".into());
    let ctx = Ctx {
        def: &v2,
        now: env.now,
        calendar: &env.calendar,
    };
    let (inst, applied) =
        apply(ctx, env.inst.clone(), Command::Migrate(m)).unwrap_or_else(|e| panic!("{e}"));
    let event: Value = serde_json::to_value(&applied.events[0]).unwrap_or_default();
    assert_eq!(event["event"], "instance-migrated");
    assert_eq!(event["from_version"], 1);
    assert_eq!(event["to_version"], 2);
    assert_eq!(event["steps"], json!({"review": "editor-review"}));
    assert_eq!(event["plugins"], json!({"p": "fedcba98"}));
    assert_eq!(event["reason"], "legal check");
    assert_eq!(inst.plugins["p"], "fedcba98");
}

const CHASED: &str = r#"
id = "chased"
start = "await-signature"

[[steps]]
id = "await-signature"
kind = "receive"
message = "signature-received"
correlate = "document_id"
fields = [{ name = "signed_by", type = "text", required = true }]
role = "clerk"
next = "archive"
on = { timeout = "chase" }

[steps.deadline]
due = "2h"
escalation = { action = "outcome", after = "1h", outcome = "timeout" }

[[steps]]
id = "chase"
kind = "task"
role = "clerk"
next = "done"

[[steps]]
id = "archive"
kind = "task"
role = "clerk"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn on_resume_what_happened_while_paused_applies_in_time_order() {
    // The escalation came due (3 h) before the signature arrived (4 h): the wait escalated, and
    // the signature, which no step then waited for, is dropped with the reason.
    let (mut env, _) = Env::start(CHASED, json!({"document_id": "doc-1"}));
    env.ok(pause());
    env.now += 4 * 3_600_000;
    env.ok(signed("m-1", "doc-1"));
    env.now += 3_600_000;
    let resumed = env.ok(resume());
    let kinds = events(&resumed);
    assert_eq!(env.at_steps(), ["chase"], "{kinds:?}");
    assert!(
        kinds.contains(&"held-command-dropped".to_string()),
        "{kinds:?}"
    );
    assert!(!env.inst.data.contains_key("signed_by"));

    // The signature arrived (1 h) before anything came due: it is taken, and the deadline's
    // timers no longer apply.
    let (mut env, _) = Env::start(CHASED, json!({"document_id": "doc-1"}));
    env.ok(pause());
    env.now += 3_600_000;
    env.ok(signed("m-1", "doc-1"));
    env.now += 5 * 3_600_000;
    let resumed = env.ok(resume());
    assert_eq!(env.at_steps(), ["archive"], "{:?}", events(&resumed));
    assert_eq!(env.inst.data["signed_by"], "dana");
    assert!(
        !events(&resumed)
            .iter()
            .any(|e| e.starts_with("message-late"))
    );
}
