//! Pause, resume and migrate over HTTP: a paused instance holds its timer and a message through
//! a kill -9 and a restart and takes them on resume; a version-wide pause; a migration's dry run
//! names the instances that cannot move and why, and the move is recorded per instance.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

const HOLD: &str = r#"
id = "hold"
start = "prepare"

[[steps]]
id = "prepare"
kind = "task"
role = "clerk"
next = "cooling-off"

[[steps]]
id = "cooling-off"
kind = "wait"
duration = "1s"
next = "await-signature"

[[steps]]
id = "await-signature"
kind = "receive"
message = "countersigned"
correlate = "document_id"
fields = [{ name = "signed_by", type = "text", required = true }]
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
on = { accept = "legal", reject = "draft" }

[[steps]]
id = "legal"
kind = "task"
role = "legal"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn deploy(d: &Daemon, file: &str, source: &str) {
    let body = json!({"file": file, "source": source});
    let (status, answer) = d.call("POST", "/api/v1/definitions", Some(ACME_ADMIN), Some(body));
    assert_eq!(status, 201, "{answer}");
}

fn start_with(d: &Daemon, workflow: &str, data: Value) -> String {
    let start = json!({"workflow": workflow, "data": data});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(start));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap_or_default().to_string()
}

fn get(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn steps_of(d: &Daemon, id: &str) -> Vec<String> {
    let body = get(d, id);
    let mut steps: Vec<String> = body["instance"]["tokens"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, t)| t["step"].as_str().map(str::to_string))
        .collect();
    steps.sort();
    steps
}

fn complete(d: &Daemon, task: &str, who: &str, role: &str, outcome: Option<&str>) -> (u16, Value) {
    let mut body = json!({"by": {"id": who, "roles": [role]}});
    if let Some(outcome) = outcome {
        body["outcome"] = json!(outcome);
    }
    d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(body),
    )
}

fn act(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    d.call("POST", path, Some(ACME_ADMIN), Some(body))
}

fn events(d: &Daemon, id: &str, kind: &str) -> Vec<Value> {
    get(d, id)["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_paused_instance_holds_its_timer_and_a_message_through_a_crash_and_takes_them_on_resume() {
    let mut d = start(1 << 20);
    deploy(&d, "hold.toml", HOLD);
    let id = start_with(&d, "hold", json!({"document_id": "doc-9"}));
    let prepare = d.task_for(&id, "clerk");
    let pause = format!("/api/v1/instances/{id}/pause");
    let resume = format!("/api/v1/instances/{id}/resume");

    let (status, body) = act(&d, &pause, json!({"reason": "vendor audit"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"]["reason"], "vendor audit");
    assert_eq!(
        body["paused"]["by"], "acme-admin",
        "the token's name, never its secret"
    );
    let (status, body) = complete(&d, &prepare, "cy", "clerk", None);
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("paused") && message.contains("vendor audit"),
        "{message}"
    );
    let (status, body) = act(&d, &pause, json!({"reason": "again"}));
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let (status, body) = act(&d, &pause, json!({"reason": " "}));
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (422, &json!("reason")),
        "{body}"
    );
    let (status, body) = d.call(
        "POST",
        &pause,
        Some("acme-dora-token"),
        Some(json!({"reason": "x"})),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    let (status, body) = act(&d, &resume, json!({"reason": "audit over"}));
    assert_eq!(status, 200, "{body}");
    assert!(body.get("paused").is_none(), "{body}");
    let (status, body) = complete(&d, &prepare, "cy", "clerk", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(steps_of(&d, &id), ["cooling-off"]);

    // Paused in the one-second wait: its timer comes due while the daemon is down.
    let (status, body) = act(&d, &pause, json!({"reason": "hold the signature"}));
    assert_eq!(status, 200, "{body}");
    crash(&mut d);
    std::thread::sleep(Duration::from_millis(1_500));
    let d = start_in(folder_of(d), 1 << 20);
    // The driver's passes run every 100 ms; a due timer of a running instance fires in one.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        steps_of(&d, &id),
        ["cooling-off"],
        "the timer waits for the resumption"
    );
    assert_eq!(
        get(&d, &id)["instance"]["paused"]["reason"],
        "hold the signature"
    );

    let (status, body) = act(&d, &resume, json!({"reason": "go on"}));
    assert_eq!(status, 200, "{body}");
    eventually("the wait to end", || {
        (steps_of(&d, &id) == ["await-signature"]).then_some(())
    });

    // A message for a paused instance is held by it (202, `held`); a second finds the step
    // spoken for and is refused as it would be once the step has taken one.
    let (status, body) = act(&d, &pause, json!({"reason": "check the signer"}));
    assert_eq!(status, 200, "{body}");
    let signed = json!({"id": "sig-1", "name": "countersigned", "correlation": "doc-9", "data": {"signed_by": "Dana"}});
    let (status, body) = act(&d, "/api/v1/messages", signed);
    assert_eq!((status, &body["status"]), (202, &json!("held")), "{body}");
    assert_eq!(body["instances"], json!([id]));
    assert_eq!(events(&d, &id, "command-held").len(), 1);
    assert!(get(&d, &id)["instance"]["data"].get("signed_by").is_none());
    let second = json!({"id": "sig-2", "name": "countersigned", "correlation": "doc-9", "data": {"signed_by": "Eve"}});
    let (status, body) = act(&d, "/api/v1/messages", second);
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let why = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("no instance waits for `countersigned`"),
        "{why}"
    );

    let (status, body) = act(&d, &resume, json!({"reason": "signer checked"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["signed_by"], "Dana");
    assert_eq!(steps_of(&d, &id), ["archive"]);
    let resumed = events(&d, &id, "instance-resumed");
    assert_eq!(resumed.last().map(|e| e["held"].clone()), Some(json!(1)));
    assert_eq!(events(&d, &id, "message-received").len(), 1);
    let (status, record) = d.call("GET", "/api/v1/messages/sig-1", Some(ACME_ADMIN), None);
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "delivered", "taken on resume: {record}");
}

#[test]
fn a_migration_dry_run_says_which_instances_can_move_and_the_move_is_recorded() {
    let d = start(1 << 20);
    deploy(&d, "review.toml", REVIEW_V1);
    let drafting = start_with(&d, "review", json!({}));
    let mut reviewing = Vec::new();
    for _ in 0..2 {
        let id = start_with(&d, "review", json!({}));
        let draft = d.task_for(&id, "author");
        assert_eq!(complete(&d, &draft, "al", "author", None).0, 200);
        reviewing.push(id);
    }
    d.task_for(&drafting, "author");
    deploy(&d, "review.toml", REVIEW_V2);
    let path = "/api/v1/definitions/review/migrations";

    let (status, plan) = act(
        &d,
        path,
        json!({"from_version": 1, "to_version": 2, "dry_run": true, "reason": "legal check"}),
    );
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["movable"], 1, "{plan}");
    for row in plan["instances"].as_array().into_iter().flatten() {
        let id = row["id"].as_str().unwrap_or_default();
        assert_eq!(row["moved"], false);
        if id == drafting {
            assert_eq!(row["can_move"], true, "{row}");
        } else {
            assert_eq!(row["can_move"], false, "{row}");
            assert_eq!(
                row["problems"],
                json!(["step `review` has no step `review` in version 2 to go to (map it to one)"])
            );
        }
    }

    let mapped = json!({"from_version": 1, "to_version": 2, "steps": {"review": "editor-review"}, "reason": "legal check"});
    let mut dry = mapped.clone();
    dry["dry_run"] = json!(true);
    let (status, plan) = act(&d, path, dry);
    assert_eq!((status, &plan["movable"]), (200, &json!(3)), "{plan}");
    assert_eq!(
        get(&d, &reviewing[0])["instance"]["definition_version"],
        1,
        "a dry run changes nothing"
    );

    let (status, moved) = act(&d, path, mapped);
    assert_eq!(status, 200, "{moved}");
    assert!(
        moved["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["moved"] == true),
        "{moved}"
    );
    for id in &reviewing {
        let body = get(&d, id);
        assert_eq!(body["instance"]["definition_version"], 2);
        let migrated = events(&d, id, "instance-migrated");
        assert_eq!(migrated.len(), 1);
        assert_eq!(migrated[0]["steps"], json!({"review": "editor-review"}));
        assert_eq!(migrated[0]["reason"], "legal check");
    }
    let task = d.task_for(&reviewing[0], "editor");
    let (status, body) = complete(&d, &task, "ed", "editor", Some("accept"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(steps_of(&d, &reviewing[0]), ["legal"], "version 2's way on");

    // Nothing is left at version 1; asking again moves none.
    let (status, again) = act(
        &d,
        path,
        json!({"from_version": 1, "to_version": 2, "reason": "again"}),
    );
    assert_eq!((status, &again["instances"]), (200, &json!([])), "{again}");

    let cases = [
        (
            json!({"from_version": 2, "to_version": 1, "steps": {"nope": "draft"}, "reason": "r"}),
            422,
            "steps.nope",
        ),
        (
            json!({"from_version": 2, "to_version": 1, "steps": {"draft": "nope"}, "reason": "r"}),
            422,
            "steps.draft",
        ),
        (
            json!({"from_version": 2, "to_version": 1, "plugins": {"purchase-approval": "00"}, "reason": "r"}),
            422,
            "plugins.purchase-approval",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = act(&d, path, body.clone());
        assert_eq!(
            (got, &answer["error"]["details"]["field"]),
            (status, &json!(field)),
            "{body}: {answer}"
        );
    }
    let (status, body) = act(
        &d,
        path,
        json!({"from_version": 1, "to_version": 9, "reason": "r"}),
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, body) = act(
        &d,
        path,
        json!({"from_version": 1, "to_version": 2, "reason": "r", "extra": 1}),
    );
    assert_eq!(status, 422, "{body}");
}

#[test]
fn every_instance_of_a_version_pauses_and_resumes_at_once() {
    let d = start(1 << 20);
    deploy(&d, "review.toml", REVIEW_V1);
    let ids: Vec<String> = (0..3)
        .map(|_| start_with(&d, "review", json!({})))
        .collect();
    let path = "/api/v1/definitions/review/versions/1";
    let (status, single) = act(
        &d,
        &format!("/api/v1/instances/{}/pause", ids[0]),
        json!({"reason": "first"}),
    );
    assert_eq!(status, 200, "{single}");

    let (status, bulk) = act(
        &d,
        &format!("{path}/pause"),
        json!({"reason": "quarter close"}),
    );
    assert_eq!(status, 200, "{bulk}");
    let mut changed: Vec<String> =
        serde_json::from_value(bulk["changed"].clone()).unwrap_or_default();
    changed.sort();
    let mut rest = ids[1..].to_vec();
    rest.sort();
    assert_eq!(changed, rest);
    assert_eq!(
        bulk["skipped"],
        json!([{"id": ids[0], "why": "paused already"}])
    );
    for id in &ids {
        let task = d.task_for(id, "author");
        assert_eq!(complete(&d, &task, "al", "author", None).0, 409);
    }
    let (status, listed) = d.call(
        "GET",
        "/api/v1/instances?workflow=review",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200);
    assert!(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["paused"] == true),
        "{listed}"
    );

    let (status, bulk) = act(&d, &format!("{path}/resume"), json!({"reason": "closed"}));
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["changed"].as_array().map(Vec::len), Some(3), "{bulk}");
    for id in &ids {
        let task = d.task_for(id, "author");
        assert_eq!(complete(&d, &task, "al", "author", None).0, 200);
    }
    let (status, body) = act(
        &d,
        "/api/v1/definitions/review/versions/7/pause",
        json!({"reason": "r"}),
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
}
