//! People acting on tasks: completion, forms, outcomes, claims, and what is refused.

use flowgate_engine::{Command, CommandError, Person};
use serde_json::json;

use crate::env::*;

const REVIEW: &str = r#"
id = "review"
start = "draft"

[[steps]]
id = "draft"
kind = "task"
role = "author"
form = [{ name = "summary", type = "text", required = true }]
next = "review"

[[steps]]
id = "review"
kind = "task"
role = "reviewer"
on = { accept = "done", revise = "draft" }

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_start_opens_the_first_task_and_tells_its_role() {
    let (env, applied) = Env::start(REVIEW, json!({}));
    assert_eq!(
        events(&applied),
        [
            "instance-started",
            "step-entered draft",
            "task-created draft"
        ]
    );
    assert_eq!(effects(&applied), ["notify task-assigned"]);
    assert_eq!(env.inst.version, 1);
    assert_eq!(env.at_steps(), ["draft"]);
}

#[test]
fn a_completion_merges_the_form_and_moves_on() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    env.now += 60_000;
    let task = env.task("draft");
    let applied = env.ok(complete(
        &task,
        "bo",
        "author",
        None,
        json!({"summary": "v1"}),
    ));
    assert_eq!(
        events(&applied),
        [
            "task-completed draft",
            "data-updated",
            "step-completed draft",
            "step-entered review",
            "task-created review",
        ]
    );
    assert_eq!(env.inst.data["summary"], "v1");
    assert_eq!(env.inst.version, 2);
    assert!(applied.events.iter().all(|e| e.at == T0 + 60_000));
    let seqs: Vec<u64> = applied.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        [3, 4, 5, 6, 7],
        "history positions continue the start's"
    );
}

#[test]
fn a_named_outcome_takes_its_way_back() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    env.ok(complete(
        &task,
        "bo",
        "author",
        None,
        json!({"summary": "v1"}),
    ));
    env.complete("review", "cy", "reviewer", Some("revise"));
    assert_eq!(env.at_steps(), ["draft"]);
    let again = env.task("draft");
    assert_ne!(again, task, "a new task for the second round");
}

#[test]
fn refused_commands_change_nothing() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    let before = env.inst.clone();
    let cases = [
        (
            complete(&task, "bo", "reviewer", None, json!({"summary": "x"})),
            "forbidden",
        ),
        (
            complete(&task, "bo", "author", None, json!({})),
            "invalid data.summary: is required",
        ),
        (
            complete(&task, "bo", "author", None, json!({"summary": 7})),
            "invalid data.summary",
        ),
        (
            complete("i1.t99", "bo", "author", None, json!({"summary": "x"})),
            "not found",
        ),
        (
            Command::CompleteTask {
                task: task.clone(),
                by: Person::new("bo", &["author"]),
                outcome: None,
                data: object(json!({"summary": "x"})),
                expected_version: Some(7),
                comment: None,
            },
            "conflict",
        ),
    ];
    for (command, expected) in cases {
        let error = match env.apply(command) {
            Ok(_) => String::new(),
            // Which kind of refusal it is, as the API's error code says it, then why.
            Err(CommandError::Forbidden(why)) => format!("forbidden: {why}"),
            Err(CommandError::Conflict(why)) => format!("conflict: {why}"),
            Err(other) => other.to_string(),
        };
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
        assert_eq!(env.inst, before);
    }
}

#[test]
fn an_outcome_the_step_does_not_have_is_invalid() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    env.ok(complete(
        &task,
        "bo",
        "author",
        None,
        json!({"summary": "v1"}),
    ));
    let review = env.task("review");
    let error = env.apply(complete(
        &review,
        "cy",
        "reviewer",
        Some("shred"),
        json!({}),
    ));
    assert!(
        matches!(&error, Err(CommandError::Invalid { field, .. }) if field == "outcome"),
        "{error:?}"
    );
}

#[test]
fn a_task_completed_twice_is_a_conflict_naming_who_did_it() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    env.ok(complete(
        &task,
        "bo",
        "author",
        None,
        json!({"summary": "v1"}),
    ));
    let again = env.apply(complete(
        &task,
        "bo",
        "author",
        None,
        json!({"summary": "v1"}),
    ));
    assert!(
        matches!(&again, Err(CommandError::Conflict(m)) if m.contains("already completed (by bo)")),
        "{again:?}"
    );
}

#[test]
fn a_claimed_task_is_only_its_claimers() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    let claim = |who: &str| Command::ClaimTask {
        task: task.clone(),
        by: Person::new(who, &["author"]),
    };
    assert_eq!(
        events(&env.ok(claim("bo"))),
        [format!("task-claimed {task}")]
    );
    assert!(
        env.ok(claim("bo")).is_empty(),
        "claiming again changes nothing"
    );
    assert!(matches!(
        env.apply(claim("di")),
        Err(CommandError::Conflict(_))
    ));
    let by_other = env.apply(complete(
        &task,
        "di",
        "author",
        None,
        json!({"summary": "x"}),
    ));
    assert!(matches!(by_other, Err(CommandError::Conflict(_))));
    let unclaim = |who: &str| Command::UnclaimTask {
        task: task.clone(),
        by: Person::new(who, &["author"]),
    };
    assert!(matches!(
        env.apply(unclaim("di")),
        Err(CommandError::Forbidden(_))
    ));
    env.ok(unclaim("bo"));
    env.ok(complete(
        &task,
        "di",
        "author",
        None,
        json!({"summary": "x"}),
    ));
}

#[test]
fn a_finished_instance_takes_no_commands_but_late_answers_are_ignored() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let open = env.task("draft");
    let cancelled = env.ok(Command::Cancel {
        by: "ops".into(),
        reason: "duplicate".into(),
    });
    assert_eq!(
        events(&cancelled),
        [
            format!("task-cancelled {open}"),
            "instance-ended cancelled".to_string()
        ]
    );
    assert_eq!(effects(&cancelled), ["notify instance-finished"]);
    let refused = env.apply(Command::Cancel {
        by: "ops".into(),
        reason: "again".into(),
    });
    assert!(matches!(refused, Err(CommandError::Conflict(m)) if m.contains("is cancelled")));
    let late = env.ok(Command::TimerFired { timer: "x".into() });
    assert!(late.is_empty());
}

#[test]
fn an_overdue_task_decided_by_its_escalation_tells_whoever_had_it() {
    let escalating = r#"
id = "triage"
start = "check"

[[steps]]
id = "check"
kind = "task"
role = "clerk"
on = { accept = "done", reject = "done" }
[steps.deadline]
due = "1h"
escalation = { after = "30m", action = "outcome", outcome = "reject" }

[[steps]]
id = "done"
kind = "end"
"#;
    let (mut env, _) = Env::start(escalating, json!({}));
    let task = env.task("check");
    env.ok(Command::ClaimTask {
        task: task.clone(),
        by: Person::new("cleo", &["clerk"]),
    });
    // Fire the timers in due order until the escalation has decided.
    let mut fired = Vec::new();
    while let Some(timer) = env.inst.timers.values().min_by_key(|t| t.due_at).cloned() {
        env.now = timer.due_at;
        fired.push(env.ok(Command::TimerFired { timer: timer.id }));
    }
    let escalated = fired
        .iter()
        .find(|a| events(a).iter().any(|e| e.starts_with("escalated")))
        .unwrap_or_else(|| {
            panic!(
                "no escalation: {:?}",
                fired.iter().map(events).collect::<Vec<_>>()
            )
        });
    let told = escalated.effects.iter().find_map(|e| match e {
        flowgate_engine::Effect::Notify(n)
            if n.kind == flowgate_engine::NotificationKind::Escalated =>
        {
            Some(n.clone())
        }
        _ => None,
    });
    let told =
        told.unwrap_or_else(|| panic!("no escalated notification: {:?}", effects(escalated)));
    assert_eq!(told.task.as_deref(), Some(task.as_str()));
    assert_eq!(told.assignee.as_deref(), Some("cleo"));
    assert_eq!(told.roles, ["clerk"]);
    assert_eq!(env.inst.status.as_str(), "completed");
}

#[test]
fn a_completion_keeps_its_comment_as_the_reason_and_refuses_one_too_long() {
    let (mut env, _) = Env::start(REVIEW, json!({}));
    let task = env.task("draft");
    let with = |comment: String| Command::CompleteTask {
        task: task.clone(),
        by: Person::new("bo", &["author"]),
        outcome: None,
        data: object(json!({"summary": "v1"})),
        expected_version: None,
        comment: Some(comment),
    };
    let error = env.apply(with("x".repeat(4_001)));
    assert!(
        matches!(&error, Err(CommandError::Invalid { field, .. }) if field == "comment"),
        "{error:?}"
    );
    let applied = env.ok(with("  first draft, see the attachment  ".to_string()));
    let completed = applied
        .events
        .iter()
        .find(|e| event(e) == "task-completed draft");
    assert_eq!(
        completed.and_then(|e| e.reason.as_deref()),
        Some("first draft, see the attachment")
    );
}

const SIGNING: &str = r#"
id = "signing"
start = "sign"

[[steps]]
id = "sign"
kind = "task"
title = "Sign"
external_from = "client_email"
link_valid = "2d"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_task_for_an_outside_participant_is_theirs_with_a_link_until_it_expires() {
    let (env, applied) = Env::start(SIGNING, json!({"client_email": "joan@client.example"}));
    let task = env.inst.open_tasks().next().cloned();
    let two_days = 2 * 86_400_000;
    assert_eq!(
        task.as_ref()
            .map(|t| (t.assignee.as_deref(), t.link_expires_at)),
        Some((Some("joan@client.example"), Some(env.now + two_days)))
    );
    let told = applied.effects.iter().find_map(|e| match e {
        flowgate_engine::Effect::Notify(n) => Some(n.clone()),
        _ => None,
    });
    assert_eq!(
        told.map(|n| (n.assignee, n.link_expires_at)),
        Some((
            Some("joan@client.example".to_string()),
            Some(env.now + two_days)
        ))
    );
    // Without an address to send the link to, the step waits for a person to fix the data.
    let (env, _) = Env::start(SIGNING, json!({"client_email": "not an address"}));
    assert!(env.inst.has_incident(), "{:?}", env.inst.tokens);
    assert_eq!(env.inst.open_tasks().count(), 0);
}

const FORMLESS: &str = r#"
id = "formless"
start = "look"

[[steps]]
id = "look"
kind = "task"
role = "clerk"
next = "sign"

[[steps]]
id = "sign"
kind = "approval"
approvers = [{ name = "boss", roles = ["boss"] }]
on = { approve = "note", reject = "done" }

[[steps]]
id = "note"
kind = "task"
role = "clerk"
free_data = true
next = "stamp"

[[steps]]
id = "stamp"
kind = "approval"
approvers = [{ name = "boss", roles = ["boss"] }]
form = [{ name = "cost_centre", type = "text", required = true }]
on = { approve = "done", reject = "done" }

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_step_takes_only_the_data_its_form_declares_or_any_when_it_says_so() {
    let (mut env, _) = Env::start(FORMLESS, json!({"amount": 5}));
    // A task without a form takes no data: nothing unasked reaches the instance.
    let look = env.task("look");
    let refused = env.apply(complete(&look, "al", "clerk", None, json!({"amount": 0})));
    assert!(
        matches!(&refused, Err(CommandError::Invalid { field, message })
            if field == "data.amount" && message.contains("declares no form")),
        "{refused:?}"
    );
    env.ok(complete(&look, "al", "clerk", None, json!({})));
    // Nor does an approval without one: an answer is an outcome and a comment.
    let sign = env.task("sign");
    let refused = env.apply(complete(
        &sign,
        "bo",
        "boss",
        Some("approve"),
        json!({"amount": 0}),
    ));
    assert!(
        matches!(&refused, Err(CommandError::Invalid { field, .. }) if field == "data.amount"),
        "{refused:?}"
    );
    env.ok(complete(&sign, "bo", "boss", Some("approve"), json!({})));
    // A step that says it takes free data takes any.
    let note = env.task("note");
    env.ok(complete(
        &note,
        "al",
        "clerk",
        None,
        json!({"remark": "rush", "n": [1, 2]}),
    ));
    assert_eq!(env.inst.data["remark"], "rush");
    // An approval with a form takes its fields, checked.
    let stamp = env.task("stamp");
    let refused = env.apply(complete(&stamp, "bo", "boss", Some("approve"), json!({})));
    assert!(
        matches!(&refused, Err(CommandError::Invalid { field, .. }) if field == "data.cost_centre"),
        "{refused:?}"
    );
    env.ok(complete(
        &stamp,
        "bo",
        "boss",
        Some("approve"),
        json!({"cost_centre": "CC-7"}),
    ));
    assert_eq!(env.inst.data["cost_centre"], "CC-7");
    assert_eq!(
        env.inst.data["amount"], 5,
        "the refused data changed nothing"
    );
}
