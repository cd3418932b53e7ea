//! Messages from other systems over HTTP: delivered once to the waiting instance, kept when they
//! come early (across a restart), starting a workflow, refused with a reason when nothing can
//! take them.

use serde_json::{Value, json};

use super::harness::*;

const CLERK: &str = r#"{"id": "cy", "roles": ["clerk"]}"#;

fn send(d: &Daemon, token: &str, message: Value) -> (u16, Value) {
    d.call("POST", "/api/v1/messages", Some(token), Some(message))
}

fn start_esign(d: &Daemon, document: &str) -> String {
    let start =
        json!({"workflow": "document-esign", "data": {"document_id": document, "title": "NDA"}});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(start));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap_or_default().to_string()
}

/// Completes the open task of `step` as the clerk; returns the instance as the answer has it.
fn complete(d: &Daemon, instance: &str, step: &str) -> Value {
    let task = open_at(d, instance, step).unwrap_or_else(|| panic!("no open task at {step}"));
    let by: Value = serde_json::from_str(CLERK).unwrap_or_default();
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"by": by})),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn instance(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn open_at(d: &Daemon, id: &str, step: &str) -> Option<String> {
    let body = instance(d, id);
    let tasks = body["instance"]["tasks"].as_object().cloned()?;
    tasks
        .iter()
        .find(|(_, t)| t["status"] == "open" && t["step"] == step)
        .map(|(id, _)| id.clone())
}

fn received(d: &Daemon, id: &str) -> usize {
    instance(d, id)["history"].as_array().map_or(0, |h| {
        h.iter()
            .filter(|e| e["event"] == "message-received")
            .count()
    })
}

#[test]
fn a_message_moves_the_waiting_instance_on_once_and_a_repeat_answers_the_same() {
    let d = start(1 << 20);
    let id = start_esign(&d, "doc-1");
    complete(&d, &id, "prepare");
    let signed = json!({"id": "esign-1", "name": "signature-received", "correlation": "doc-1", "data": {"signed_by": "Dana Client"}});
    let (status, first) = send(&d, ACME_ADMIN, signed.clone());
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["instances"], json!([id]));
    assert_eq!(first["replayed"], false);
    assert!(
        open_at(&d, &id, "archive").is_some(),
        "the instance moved on"
    );
    assert_eq!(
        instance(&d, &id)["instance"]["data"]["signed_by"],
        "Dana Client"
    );

    let (status, again) = send(&d, ACME_ADMIN, signed.clone());
    assert_eq!((status, &again["replayed"]), (200, &json!(true)), "{again}");
    assert_eq!(again["instances"], first["instances"]);
    assert_eq!(received(&d, &id), 1, "delivered exactly once");

    let mut other = signed.clone();
    other["data"]["signed_by"] = json!("Someone Else");
    let (status, body) = send(&d, ACME_ADMIN, other);
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "id");

    let (status, listed) = d.call("GET", "/api/v1/messages/esign-1", Some(ACME_ADMIN), None);
    assert_eq!((status, &listed["status"]), (200, &json!("delivered")));
}

#[test]
fn a_message_the_step_cannot_take_is_refused_and_nothing_is_kept() {
    let d = start(1 << 20);
    let id = start_esign(&d, "doc-2");
    complete(&d, &id, "prepare");
    let cases = [
        (
            json!({"id": "m1", "name": "signature-received", "correlation": "doc-2", "data": {"signed_by": "D", "amount": 5}}),
            422,
            "data.amount",
        ),
        (
            json!({"id": "m2", "name": "signature-received", "correlation": "doc-2", "data": {"signed_by": 5}}),
            422,
            "data.signed_by",
        ),
        (
            json!({"id": "m3", "name": "no-such-message", "correlation": "doc-2"}),
            422,
            "name",
        ),
        (
            json!({"id": "m4", "name": "signature-received", "correlation": 1.5}),
            422,
            "correlation",
        ),
        (
            json!({"id": "", "name": "signature-received", "correlation": "doc-2"}),
            422,
            "id",
        ),
    ];
    for (message, status, field) in cases {
        let (got, body) = send(&d, ACME_ADMIN, message.clone());
        assert_eq!((got, code(&body)), (status, "invalid"), "{message}: {body}");
        assert_eq!(
            body["error"]["details"]["field"], field,
            "{message}: {body}"
        );
        if let Some(mid) = message["id"].as_str().filter(|m| !m.is_empty()) {
            let (status, _) = d.call(
                "GET",
                &format!("/api/v1/messages/{mid}"),
                Some(ACME_ADMIN),
                None,
            );
            assert_eq!(status, 404, "a refused message is not recorded");
        }
    }
    assert_eq!(received(&d, &id), 0);
    assert!(open_at(&d, &id, "archive").is_none());
    // Another tenant has no such workflow; acme's instance does not hear of it.
    let (status, body) = send(
        &d,
        GLOBEX_ADMIN,
        json!({"id": "g1", "name": "signature-received", "correlation": "doc-2", "data": {"signed_by": "D"}}),
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(received(&d, &id), 0);
}

#[test]
fn a_message_that_comes_early_is_kept_across_a_restart_and_taken_when_the_wait_begins() {
    let d = start(1 << 20);
    let id = start_esign(&d, "doc-3");
    let early = json!({"id": "esign-3", "name": "signature-received", "correlation": "doc-3", "data": {"signed_by": "Early Bird"}});
    let (status, kept) = send(&d, ACME_ADMIN, early.clone());
    assert_eq!(status, 202, "{kept}");
    assert_eq!(kept["status"], "buffered");
    let expires = instant(&kept["expires_at"]);
    let received_at = instant(&kept["received_at"]);
    assert_eq!(expires - received_at, 3_600_000, "the step's buffer is 1h");
    let (status, listed) = d.call(
        "GET",
        "/api/v1/messages?status=buffered",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let d = start_in(folder_of(d), 1 << 20);
    let answer = complete(&d, &id, "prepare");
    // The wait began and took the kept message in the same commit: the answer shows it.
    let opened = answer["open_tasks"].as_array().cloned().unwrap_or_default();
    assert!(opened.iter().any(|t| t["step"] == "archive"), "{answer}");
    assert_eq!(
        instance(&d, &id)["instance"]["data"]["signed_by"],
        "Early Bird"
    );
    let (_, after) = d.call("GET", "/api/v1/messages/esign-3", Some(ACME_ADMIN), None);
    assert_eq!(after["status"], "delivered", "{after}");
    assert_eq!(after["instances"], json!([id]));
    let (_, again) = send(&d, ACME_ADMIN, early);
    assert_eq!(again["replayed"], true);
    assert_eq!(received(&d, &id), 1);
}

#[test]
fn a_start_message_starts_the_workflow_with_its_correlation_in_the_data() {
    let d = start(1 << 20);
    let request = json!({"id": "req-9", "name": "esign-requested", "correlation": "doc-9", "data": {"title": "Lease"}});
    let (status, started) = send(&d, ACME_ADMIN, request.clone());
    assert_eq!(
        (status, &started["status"]),
        (200, &json!("started")),
        "{started}"
    );
    let id = started["instances"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let body = instance(&d, &id);
    assert_eq!(body["instance"]["definition_id"], "document-esign");
    assert_eq!(body["instance"]["data"]["document_id"], "doc-9");
    assert_eq!(body["instance"]["started_by"], "acme-admin");
    let (_, again) = send(&d, ACME_ADMIN, request);
    assert_eq!(
        again["instances"], started["instances"],
        "no second instance"
    );
    // Its start form still applies: a start message without the title is refused.
    let (status, body) = send(
        &d,
        ACME_ADMIN,
        json!({"id": "req-10", "name": "esign-requested", "correlation": "doc-10"}),
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "data.title");
}

/// POSTs `body` to an inbound hook, signed with `secret` (none: unsigned).
fn hook(d: &Daemon, path: &str, secret: Option<&str>, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut request = d
        .agent
        .post(&format!("{}{path}", d.base))
        .header("Content-Type", "application/json");
    if let Some(secret) = secret {
        request = request.header(
            "X-Flowgate-Signature",
            &flowgate::service::signature(secret, &bytes),
        );
    }
    let mut response = request
        .send(&bytes[..])
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const ESIGN_SECRET: &str = "acme-esign-example-secret";

#[test]
fn a_signed_inbound_hook_becomes_the_message_and_an_unsigned_one_is_refused() {
    let d = start(1 << 20);
    let id = start_esign(&d, "doc-h1");
    complete(&d, &id, "prepare");
    let event =
        json!({"event_id": "evt-1", "document": {"id": "doc-h1"}, "signer": {"name": "Dana Hook"}});
    for (secret, why) in [
        (None, "unsigned"),
        (Some("not-the-secret-at-all"), "wrong key"),
    ] {
        let (status, body) = hook(&d, "/hooks/acme/esign", secret, &event);
        assert_eq!(
            (status, code(&body)),
            (401, "unauthorized"),
            "{why}: {body}"
        );
    }
    assert_eq!(received(&d, &id), 0, "nothing reached the instance");
    let (status, body) = hook(&d, "/hooks/acme/nope", Some(ESIGN_SECRET), &event);
    assert_eq!(status, 404, "{body}");
    let (status, body) = hook(&d, "/hooks/globex/esign", Some(ESIGN_SECRET), &event);
    assert_eq!(status, 404, "another tenant has no such hook: {body}");

    let (status, first) = hook(&d, "/hooks/acme/esign", Some(ESIGN_SECRET), &event);
    assert_eq!(
        (status, &first["status"]),
        (200, &json!("delivered")),
        "{first}"
    );
    assert_eq!(first["instances"], json!([id]));
    assert_eq!(first["sent_by"], "hook esign");
    assert_eq!(
        instance(&d, &id)["instance"]["data"]["signed_by"],
        "Dana Hook"
    );
    let (status, again) = hook(&d, "/hooks/acme/esign", Some(ESIGN_SECRET), &event);
    assert_eq!(
        (status, &again["replayed"]),
        (200, &json!(true)),
        "a redelivery: {again}"
    );
    assert_eq!(received(&d, &id), 1);

    let lacking = json!({"event_id": "evt-2", "signer": {"name": "X"}});
    let (status, body) = hook(&d, "/hooks/acme/esign", Some(ESIGN_SECRET), &lacking);
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["pointer"], "/document/id");
}
