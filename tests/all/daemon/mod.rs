//! Black-box tests of the daemon: the real binary on a free loopback port, driven over HTTP only,
//! with two tenants (acme, the example; globex, a fixture).

mod cli;
mod harness;
mod lifecycle;
mod messages;
mod operations;
mod processes;
mod replay;
mod schedules;
mod storage;
mod web;

use std::time::{Duration, Instant};

use serde_json::json;

use harness::*;

#[test]
fn health_readiness_and_every_endpoint_needs_a_token() {
    let d = start(1 << 20);
    assert_eq!(d.call("GET", "/healthz", None, None).0, 200);
    assert_eq!(
        d.call("GET", "/readyz", None, None),
        (200, json!({"ready": true}))
    );
    let endpoints = [
        ("GET", "/api/v1/definitions"),
        ("POST", "/api/v1/definitions"),
        ("POST", "/api/v1/definitions/validate"),
        ("GET", "/api/v1/definitions/purchase-request/versions/1"),
        ("GET", "/api/v1/plugins"),
        ("POST", "/api/v1/plugins/x"),
        ("GET", "/api/v1/plugins/purchase-approval/versions"),
        ("GET", "/api/v1/instances"),
        ("POST", "/api/v1/instances"),
        ("GET", "/api/v1/instances/x"),
        ("POST", "/api/v1/instances/x/cancel"),
        ("POST", "/api/v1/instances/x/pause"),
        ("POST", "/api/v1/instances/x/resume"),
        ("POST", "/api/v1/definitions/x/versions/1/pause"),
        ("POST", "/api/v1/definitions/x/versions/1/resume"),
        ("POST", "/api/v1/definitions/x/migrations"),
        ("GET", "/api/v1/tasks?role=manager"),
        ("GET", "/api/v1/metrics/purchase-request"),
        ("POST", "/api/v1/tasks/x.t1/claim"),
        ("POST", "/api/v1/tasks/x.t1/unclaim"),
        ("POST", "/api/v1/tasks/x.t1/complete"),
        ("GET", "/api/v1/incidents"),
        ("GET", "/api/v1/messages"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/messages/x"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/processes/x"),
        ("GET", "/api/v1/process-definitions"),
        ("GET", "/api/v1/process-definitions/x"),
        ("GET", "/api/v1/process-definitions/x/metrics"),
        ("POST", "/api/v1/definitions/x/schedules/y/pause"),
        ("POST", "/api/v1/definitions/x/schedules/y/resume"),
        ("POST", "/api/v1/instances/x/incidents/1/retry"),
        ("POST", "/api/v1/instances/x/incidents/1/skip"),
        ("GET", "/api/v1/instances/x/diagram.svg"),
        (
            "GET",
            "/api/v1/definitions/purchase-request/versions/1/diagram.svg",
        ),
    ];
    for (method, path) in endpoints {
        for token in [None, Some("wrong-token")] {
            let (status, body) = d.call(method, path, token, None);
            assert_eq!(
                (status, code(&body)),
                (401, "unauthorized"),
                "{method} {path} with {token:?}"
            );
        }
    }
}

/// Reads one HTTP answer from `stream`: its status, its `Connection` header and its JSON body.
/// A reset or a close before the whole answer is read fails the call.
fn read_answer(
    stream: &mut std::net::TcpStream,
    what: &str,
) -> (u16, Option<String>, serde_json::Value) {
    use std::io::Read;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    key.eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_string())
                })
            };
            let length: usize = header("content-length")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if rest.len() >= length {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = serde_json::from_str(&rest[..length]).unwrap_or(serde_json::Value::Null);
                return (status, header("connection"), body);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("{what}: the connection closed after {} bytes", answer.len()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{what}: {e} after {} bytes", answer.len()),
        }
    }
}

/// A request refused before its body was read (no token: 401; an unknown route: 404) used to be
/// answered and then its keep-alive connection closed, because the body was left unread. A client
/// that reused the connection for its next request (every pooling client does) then failed with
/// `connection reset` or `peer disconnected`, one run in three. The body is now read first, so
/// the connection stays usable, or the answer says `Connection: close`.
#[test]
fn refused_requests_leave_their_connection_usable() {
    use std::io::Write;
    let d = start(1 << 20);
    let addr = d.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{e}"));
    let body = format!("{{\"blob\": \"{}\"}}", "x".repeat(100 << 10));
    for round in 0..20 {
        for path in [
            "/api/v1/instances",
            "/api/v1/definitions/validate",
            "/api/v1/nowhere",
        ] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let sent = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body.as_bytes()));
            assert!(sent.is_ok(), "round {round}: {path}: {sent:?}");
            let (status, connection, answer) = read_answer(&mut stream, path);
            let expected = if path.ends_with("nowhere") { 404 } else { 401 };
            assert_eq!(status, expected, "round {round}: {path}: {answer}");
            assert!(answer["error"]["code"].is_string(), "{answer}");
            assert_ne!(
                connection.as_deref(),
                Some("close"),
                "{path} gave up the connection"
            );
        }
    }
    // Over the limit: the answer is a 413 in the error shape, delivered before the close.
    let huge = vec![b'x'; 3 << 20];
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ACME_ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        huge.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&huge);
    let (status, connection, answer) = read_answer(&mut stream, "oversized");
    assert_eq!(
        (status, code(&answer)),
        (413, "payload_too_large"),
        "{answer}"
    );
    assert_eq!(answer["error"]["details"]["limit"], 1 << 20);
    assert_eq!(connection.as_deref(), Some("close"));
    assert_eq!(d.call("GET", "/healthz", None, None).0, 200);
}

#[test]
fn another_tenants_data_is_not_found_on_every_endpoint() {
    let d = start(1 << 20);
    let instance = start_purchase(&d, 70_000, "office");
    let task = d.task_for(&instance, "manager");
    let g = Some(GLOBEX_ADMIN);
    let act = json!({"by": {"id": "mia", "roles": ["manager"]}, "outcome": "approve"});
    let checks = [
        d.call("GET", &format!("/api/v1/instances/{instance}"), g, None),
        d.call(
            "POST",
            &format!("/api/v1/instances/{instance}/cancel"),
            g,
            Some(json!({"reason": "x"})),
        ),
        d.call(
            "POST",
            &format!("/api/v1/tasks/{task}/claim"),
            g,
            Some(act.clone()),
        ),
        d.call(
            "POST",
            &format!("/api/v1/tasks/{task}/unclaim"),
            g,
            Some(act.clone()),
        ),
        d.call(
            "POST",
            &format!("/api/v1/tasks/{task}/complete"),
            g,
            Some(act),
        ),
        d.call(
            "GET",
            "/api/v1/definitions/purchase-request/versions/1",
            g,
            None,
        ),
        d.call(
            "POST",
            "/api/v1/instances",
            g,
            Some(json!({"workflow": "purchase-request"})),
        ),
        d.call("GET", "/api/v1/plugins/purchase-approval/versions", g, None),
    ];
    for (status, body) in checks {
        assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    }
    // Lists show only globex's own things.
    let (_, tasks) = d.call("GET", "/api/v1/tasks?role=manager", g, None);
    assert_eq!(tasks["tasks"], json!([]));
    let (_, instances) = d.call("GET", "/api/v1/instances", g, None);
    assert_eq!(instances, json!([]));
    let (_, defs) = d.call("GET", "/api/v1/definitions", g, None);
    let ids: Vec<&str> = defs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["follow-up", "leave-request"]);
    let (_, plugins) = d.call("GET", "/api/v1/plugins", g, None);
    assert_eq!(plugins, json!([]));
    // And acme's instance is untouched.
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(
        (status, body["instance"]["status"].as_str()),
        (200, Some("running"))
    );
}

/// The policy's decision is taken in the start's own transaction: the 201 already holds the
/// tasks it opened, so a client never polls for them.
#[test]
fn a_start_answers_with_the_tasks_its_policy_opened() {
    let d = start(1 << 20);
    let data = json!({"workflow": "purchase-request", "data": {"amount_cents": 1_140_000, "currency": "USD", "category": "it", "requester": "alice"}});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(data));
    assert_eq!(status, 201, "{body}");
    let mut roles: Vec<&str> = body["tasks"]
        .as_object()
        .map(|tasks| {
            tasks
                .values()
                .filter(|t| t["status"] == "open")
                .filter_map(|t| t["role"].as_str())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    assert_eq!(roles, ["director", "it-reviewer"], "{body}");
}

#[test]
fn a_purchase_approval_driven_only_through_http() {
    let d = start(1 << 20);
    let instance = start_purchase(&d, 1_140_000, "it");
    let director_task = d.task_for(&instance, "director");
    let it_task = d.task_for(&instance, "it-reviewer");

    // Person tokens act as their person, on tasks their roles allow.
    let dora = Some("acme-dora-token");
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{it_task}/complete"),
        dora,
        Some(json!({"outcome": "approve"})),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        dora,
        Some(json!({"file": "x.toml", "source": ""})),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, inbox) = d.call("GET", "/api/v1/tasks?role=director", dora, None);
    assert_eq!(status, 200);
    assert!(
        inbox["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == director_task.as_str()))
    );
    let (status, _) = d.call("GET", "/api/v1/tasks?role=procurement", dora, None);
    assert_eq!(status, 403, "dora may not read procurement's inbox");

    // Claim, give back, and a second give-back is refused.
    let claim = format!("/api/v1/tasks/{director_task}/claim");
    let unclaim = format!("/api/v1/tasks/{director_task}/unclaim");
    assert_eq!(d.call("POST", &claim, dora, None).0, 200);
    assert_eq!(d.call("POST", &unclaim, dora, None).0, 200);
    let (status, body) = d.call("POST", &unclaim, dora, None);
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{director_task}/complete"),
        dora,
        Some(json!({"outcome": "approve"})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = d.call(
        "POST",
        &format!("/api/v1/tasks/{it_task}/complete"),
        Some("acme-ian-token"),
        Some(json!({"outcome": "approve"})),
    );
    assert_eq!(status, 200);
    let order = d.task_for(&instance, "procurement");
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{order}/complete"),
        Some("acme-pat-token"),
        Some(json!({"data": {"po_number": "PO-9"}})),
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("completed")),
        "{body}"
    );

    let (_, shown) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    let history = shown["history"].as_array().cloned().unwrap_or_default();
    let decided = history.iter().find(|e| e["event"] == "approval-required");
    assert_eq!(
        decided.map(|e| e["actor"]["name"].clone()),
        Some(json!("purchase-approval"))
    );
    assert!(
        decided
            .and_then(|e| e["reason"].as_str())
            .is_some_and(|r| r.contains("IT review"))
    );
    let people: Vec<&str> = history
        .iter()
        .filter(|e| e["event"] == "task-completed")
        .filter_map(|e| e["actor"]["id"].as_str())
        .collect();
    assert_eq!(people, ["dora", "ian", "pat"]);
    // People acted with their own tokens: nobody acted for them.
    assert!(history.iter().all(|e| e["actor"].get("via").is_none()));
    let (_, listed) = d.call(
        "GET",
        "/api/v1/instances?status=completed&data.category=it",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // Prometheus metrics count what happened.
    let (status, text) = d.call("GET", "/metrics", None, None);
    let text = text.as_str().unwrap_or_default().to_string();
    assert_eq!(status, 200);
    assert!(
        text.contains("flowgate_commands_total{tenant=\"acme\",kind=\"start\",outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "plugin=\"purchase-approval\",capability=\"approval-policy\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("flowgate_commit_seconds_bucket"), "{text}");
    let resident = text
        .lines()
        .find_map(|l| l.strip_prefix("flowgate_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(resident.is_some_and(|b| b > 1 << 20), "{resident:?}");
    assert!(text.trim_end().ends_with("# EOF"), "an OpenMetrics body");
    let served = d.agent.get(&format!("{}/metrics", d.base)).call().map(|r| {
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    assert!(
        served.as_ref().is_ok_and(|t| t
            .as_deref()
            .is_some_and(|t| t.starts_with("application/openmetrics-text"))),
        "the body's format is the one its type names: {served:?}"
    );
    assert!(
        text.contains("flowgate_outbox_pending{tenant=\"acme\"}"),
        "{text}"
    );

    // Workflow metrics from the history: one completed instance; the order step done by a person;
    // the approval decided by the plugin (one call, no failure).
    let (status, m) = d.call(
        "GET",
        "/api/v1/metrics/purchase-request",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["ended"], 1);
    assert_eq!(m["cycle_time"]["completed"]["count"], 1);
    assert_eq!(m["steps"]["order"]["completed_by_people"], 1);
    assert_eq!(m["steps"]["order"]["task_completion"]["count"], 1);
    assert_eq!(
        (
            m["steps"]["approval"]["plugin_calls"].as_u64(),
            m["steps"]["approval"]["error_rate"].as_f64()
        ),
        (Some(1), Some(0.0))
    );
    let (status, body) = d.call(
        "GET",
        "/api/v1/metrics/purchase-request?from=2026-12-05T00:00:00%2B01:00&to=2026-12-04T00:00:00Z",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!((status, code(&body)), (400, "invalid"));
}

#[test]
fn instants_are_rfc_3339_in_and_out_with_any_offset() {
    let d = start(1 << 20);
    let (status, started) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "purchase-request", "data": {"title": "Desk", "amount_cents": 90_000, "currency": "USD", "category": "office", "requester": "ann"}})),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let utc_millis = |v: &serde_json::Value| {
        let text = v.as_str().unwrap_or_default();
        let shape = text.len() == 24
            && text.ends_with('Z')
            && text.as_bytes().get(10) == Some(&b'T')
            && text.as_bytes().get(19) == Some(&b'.');
        assert!(shape, "`{v}` is not RFC 3339 in UTC with milliseconds");
        instant(v)
    };
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let at = utc_millis(&body["instance"]["started_at"]);
    for event in body["history"].as_array().cloned().unwrap_or_default() {
        assert!(utc_millis(&event["at"]) >= at, "{event}");
    }
    for task in body["instance"]["tasks"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .values()
    {
        utc_millis(&task["created_at"]);
    }

    // A filter reads the offset it is given: an hour before the start, said in India's time,
    // finds it; a minute after, said in California's, does not.
    let find = |query: &str| {
        let (status, rows) = d.call(
            "GET",
            &format!("/api/v1/instances?workflow=purchase-request&{query}"),
            Some(ACME_ADMIN),
            None,
        );
        assert_eq!(status, 200, "{query}: {rows}");
        rows.as_array()
            .is_some_and(|r| r.iter().any(|i| i["id"] == id.as_str()))
    };
    let zoned = |ms: u64, offset_minutes: i32| {
        let zone =
            chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap_or_else(|| panic!("offset"));
        let t = chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
        t.with_timezone(&zone).to_rfc3339().replace('+', "%2B")
    };
    assert!(find(&format!(
        "started_after={}",
        zoned(at - 3_600_000, 330)
    )));
    assert!(!find(&format!(
        "started_after={}",
        zoned(at + 60_000, -480)
    )));
    assert!(find(&format!(
        "started_before={}",
        zoned(at + 60_000, -480)
    )));

    // Milliseconds, or a time without an offset, are refused naming the parameter.
    for bad in [
        "started_after=1700000000000",
        "started_after=2026-12-04T10:00:00",
    ] {
        let (status, body) = d.call(
            "GET",
            &format!("/api/v1/instances?{bad}"),
            Some(ACME_ADMIN),
            None,
        );
        assert_eq!((status, code(&body)), (400, "invalid"), "{bad}: {body}");
        assert_eq!(body["error"]["details"]["field"], "started_after");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("RFC 3339"), "{message}");
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let d = start(64 << 10);
    let admin = ACME_ADMIN;
    // Malformed JSON: 400 with the position.
    let (status, body) = d.raw(
        "/api/v1/instances",
        admin,
        "application/json",
        b"{\"workflow\": ",
    );
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 1 column 13")),
        "{body}"
    );
    // A misspelt or malformed query parameter: 400 naming it.
    let (status, body) = d.call(
        "GET",
        "/api/v1/tasks?role=manager&unclaimd=true",
        Some(admin),
        None,
    );
    assert_eq!((status, code(&body)), (400, "invalid"));
    assert_eq!(body["error"]["details"]["field"], "unclaimd");
    let (status, body) = d.call(
        "GET",
        "/api/v1/tasks?role=manager&due_before=soon",
        Some(admin),
        None,
    );
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (400, Some("due_before"))
    );
    let (status, body) = d.call(
        "GET",
        "/api/v1/definitions/purchase-request/versions/one",
        Some(admin),
        None,
    );
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (400, Some("version"))
    );
    let (status, body) = d.call(
        "GET",
        "/api/v1/instances/x?history=maybe",
        Some(admin),
        None,
    );
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (400, Some("history"))
    );
    let (status, body) = d.call(
        "GET",
        "/api/v1/metrics/purchase-request?from=yesterday",
        Some(admin),
        None,
    );
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (400, Some("from"))
    );
    // Oversized: 413 with the limit.
    let big = format!(
        "{{\"workflow\": \"x\", \"data\": {{\"blob\": \"{}\"}}}}",
        "x".repeat(70 << 10)
    );
    let (status, body) = d.raw(
        "/api/v1/instances",
        admin,
        "application/json",
        big.as_bytes(),
    );
    assert_eq!((status, code(&body)), (413, "payload_too_large"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536 byte limit")),
        "{body}"
    );
    // Wrong shape, unknown ids, unknown routes.
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        Some(admin),
        Some(json!({"workflow": 5})),
    );
    assert_eq!((status, code(&body)), (422, "invalid"));
    assert_eq!(
        d.call("GET", "/api/v1/instances/nope", Some(admin), None).0,
        404
    );
    assert_eq!(
        d.call(
            "POST",
            "/api/v1/instances",
            Some(admin),
            Some(json!({"workflow": "nope"}))
        )
        .0,
        404
    );
    assert_eq!(
        code(&d.call("GET", "/api/v1/nowhere", Some(admin), None).1),
        "not_found"
    );
    // A definition with problems: 422 listing each with its path and line.
    let source = "id = \"bad\"\nstart = \"a\"\n\n[[steps]]\nid = \"a\"\nkind = \"task\"\nrole = \"r\"\nnext = \"b\"\n";
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        Some(admin),
        Some(json!({"file": "bad.toml", "source": source})),
    );
    assert_eq!((status, code(&body)), (422, "invalid_definition"), "{body}");
    let problems = body["error"]["details"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == "steps[0] (a).next" && p["line"] == 4),
        "{problems:?}"
    );
    let (_, defs) = d.call("GET", "/api/v1/definitions", Some(admin), None);
    assert!(!defs.to_string().contains("\"bad\""), "nothing deployed");
    // Completing a task twice: 409; with an idempotency key, the same completion is a safe retry.
    let instance = start_purchase(&d, 70_000, "office");
    let task = d.task_for(&instance, "manager");
    // A `via` in the request is ignored: the daemon records the token that acted.
    let act =
        json!({"by": {"id": "mia", "roles": ["manager"], "via": "forged"}, "outcome": "approve"});
    let path = format!("/api/v1/tasks/{task}/complete");
    assert_eq!(d.call("POST", &path, Some(admin), Some(act.clone())).0, 200);
    let (_, shown) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(admin),
        None,
    );
    let completed = shown["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["event"] == "task-completed"))
        .map(|e| e["actor"].clone());
    assert_eq!(
        completed,
        Some(json!({"type": "person", "id": "mia", "via": "acme-admin"}))
    );
    let (status, body) = d.call("POST", &path, Some(admin), Some(act.clone()));
    assert_eq!((status, code(&body)), (409, "conflict"));
    // A new key does not make it a retry: the task was completed already.
    let (status, body, _) = post_keyed(&d, &path, admin, "retry-1", act);
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    // Plugins that are not components, or import what the tenant was not granted: 422.
    let (status, body) = d.raw(
        "/api/v1/plugins/junk",
        admin,
        "application/wasm",
        b"not wasm at all",
    );
    assert_eq!((status, code(&body)), (422, "invalid_plugin"), "{body}");
}

/// POSTs `body` with an `Idempotency-Key`; the status, the body and the replay header.
fn post_keyed(
    d: &Daemon,
    path: &str,
    token: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, Option<String>) {
    let mut response = d
        .agent
        .post(&format!("{}{path}", d.base))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Idempotency-Key", key)
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body, replayed)
}

#[test]
fn a_completion_key_gives_the_first_answer_again_and_only_for_the_same_request() {
    let mut d = start(1 << 20);
    let admin = ACME_ADMIN;
    let instance = start_purchase(&d, 70_000, "office");
    let task = d.task_for(&instance, "manager");
    let path = format!("/api/v1/tasks/{task}/complete");
    let approve = json!({"by": {"id": "mia", "roles": ["manager"]}, "outcome": "approve"});
    let (status, first, replayed) = post_keyed(&d, &path, admin, "k-1", approve.clone());
    assert_eq!((status, replayed), (200, None), "{first}");
    assert_eq!(first["instance"], json!(instance));

    // The same request again: the first answer, said to be a replay.
    let (status, again, replayed) = post_keyed(&d, &path, admin, "k-1", approve.clone());
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, first);

    // The same key for another request: refused, naming the key; nothing changes.
    let reject = json!({"by": {"id": "mia", "roles": ["manager"]}, "outcome": "reject"});
    let (status, refused, _) = post_keyed(&d, &path, admin, "k-1", reject);
    assert_eq!((status, code(&refused)), (422, "invalid"), "{refused}");
    assert_eq!(refused["error"]["details"]["field"], "Idempotency-Key");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`k-1`"), "{refused}");
    let more = json!({"by": {"id": "mia", "roles": ["manager"]}, "outcome": "approve",
        "data": {"note": "x"}});
    assert_eq!(post_keyed(&d, &path, admin, "k-1", more).0, 422);

    // A new key, or none, on the completed task: a conflict.
    let (status, body, _) = post_keyed(&d, &path, admin, "k-2", approve.clone());
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let (status, _) = d.call("POST", &path, Some(admin), Some(approve.clone()));
    assert_eq!(status, 409);
    // A key of another tenant's namespace is not this one's.
    let (status, _, _) = post_keyed(&d, &path, GLOBEX_ADMIN, "k-1", approve.clone());
    assert_eq!(status, 404, "another tenant cannot see the task or the key");

    // Kept across a restart.
    terminate(&mut d);
    let d = start_in(folder_of(d), 1 << 20);
    let (status, after, replayed) = post_keyed(&d, &path, admin, "k-1", approve);
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(after, first);
}

#[test]
fn plugins_upload_with_grants_checked_and_hot_swap() {
    let d = start(4 << 20);
    let clock = std::fs::read(flowgate_tests::artifacts::CLOCK_READER).unwrap_or_default();
    let (status, body) = d.raw(
        "/api/v1/plugins/clock",
        ACME_ADMIN,
        "application/wasm",
        &clock,
    );
    assert_eq!((status, code(&body)), (422, "invalid_plugin"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("wasi:clocks")),
        "{body}"
    );
    assert_eq!(
        d.raw(
            "/api/v1/plugins/clock",
            "acme-dora-token",
            "application/wasm",
            &clock
        )
        .0,
        403
    );

    // A running instance keeps its version when a new one is uploaded.
    let instance = start_purchase(&d, 70_000, "office");
    d.task_for(&instance, "manager");
    let (_, before) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    let pinned = before["instance"]["plugins"]["purchase-approval"].clone();
    let misbehave = std::fs::read(flowgate_tests::artifacts::MISBEHAVE).unwrap_or_default();
    let (status, body) = d.raw(
        "/api/v1/plugins/ticket-routing",
        ACME_ADMIN,
        "application/wasm",
        &misbehave,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["capabilities"], json!(["router", "step-action"]));
    let (_, listed) = d.call("GET", "/api/v1/plugins", Some(ACME_ADMIN), None);
    let routing = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "ticket-routing")
        .cloned();
    assert_eq!(
        routing.map(|p| p["sha256"].clone()),
        Some(body["sha256"].clone())
    );
    let (_, after) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(after["instance"]["plugins"]["purchase-approval"], pinned);
}

#[test]
fn sigterm_finishes_gracefully() {
    let mut d = start(1 << 20);
    let instance = start_purchase(&d, 70_000, "office");
    d.task_for(&instance, "manager");
    terminate(&mut d);
}

#[test]
fn a_timer_due_while_the_daemon_was_down_fires_after_its_restart() {
    let mut d = start(1 << 20);
    let g = Some(GLOBEX_ADMIN);
    let body = d.start_instance(GLOBEX_ADMIN, "follow-up");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    terminate(&mut d);
    // Past the 2 s wait while nothing runs.
    std::thread::sleep(Duration::from_millis(2_500));
    let d = start_in(folder_of(d), 1 << 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = d.call("GET", &format!("/api/v1/instances/{id}"), g, None);
        let waits_ended = body["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|e| e["event"] == "step-completed" && e["step"] == "pause")
                    .count()
            })
            .unwrap_or(0);
        if waits_ended == 1 {
            let open = body["instance"]["tasks"]
                .as_object()
                .map(|t| t.values().filter(|t| t["status"] == "open").count());
            assert_eq!(open, Some(1));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timer did not fire after the restart: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A start repeated with its idempotency key answers 200 with the first start's instance, not
/// 201 as if new; a filter value the filter does not take is 422, not an empty 200; the bearer
/// scheme is case-insensitive, and a 401 names it.
#[test]
fn replays_filter_values_and_the_bearer_scheme_answer_as_the_contract_says() {
    let d = start(1 << 20);
    let body = json!({"workflow": "purchase-request", "idempotency_key": "po-7", "data": {"amount_cents": 70_000, "currency": "USD", "category": "office", "requester": "alice"}});
    let (first, started) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(body.clone()),
    );
    assert_eq!(first, 201, "{started}");
    let (again, replayed) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(body));
    assert_eq!(again, 200, "{replayed}");
    assert_eq!(replayed["id"], started["id"]);

    let (status, body) = d.call(
        "GET",
        "/api/v1/instances?status=bogus",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "status");
    let (status, _) = d.call(
        "GET",
        "/api/v1/instances?status=running",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200);

    let url = format!("{}/api/v1/definitions", d.base);
    let lower = d
        .agent
        .get(&url)
        .header("Authorization", &format!("bearer {ACME_ADMIN}"))
        .call()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lower.status().as_u16(), 200);
    let refused = d.agent.get(&url).call().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        refused
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
}

#[test]
fn what_the_router_refuses_is_answered_in_the_error_shape_too() {
    let d = start(1 << 20);
    let auth = format!("Bearer {ACME_ADMIN}");
    let read = |response: Result<ureq::http::Response<ureq::Body>, ureq::Error>| {
        let mut response = response.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        (status, body, allow)
    };
    // A method the route does not take: 405 with `Allow`, in the shape.
    let url = format!("{}/api/v1/instances", d.base);
    let (status, body, allow) = read(d.agent.delete(&url).header("Authorization", &auth).call());
    assert_eq!((status, code(&body)), (405, "method_not_allowed"), "{body}");
    assert!(allow.is_some_and(|a| a.contains("POST")));
    assert!(body["error"]["details"].is_object(), "{body}");
    // A path that is not UTF-8.
    let url = format!("{}/api/v1/instances/%ff", d.base);
    let (status, body, _) = read(d.agent.get(&url).header("Authorization", &auth).call());
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8")),
        "{body}"
    );
    // A body that is not JSON where JSON is wanted.
    let url = format!("{}/api/v1/instances", d.base);
    let (status, body, _) = read(
        d.agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "text/plain")
            .send("workflow"),
    );
    assert_eq!(status, 415, "{body}");
    assert_eq!(code(&body), "unsupported_media_type");
}

#[test]
fn a_request_id_is_taken_from_the_client_or_made_and_always_answered() {
    let d = start(1 << 20);
    let url = format!("{}/api/v1/plugins", d.base);
    let auth = format!("Bearer {ACME_ADMIN}");
    let given = d
        .agent
        .get(&url)
        .header("Authorization", &auth)
        .header("X-Request-Id", "trace-42")
        .call()
        .unwrap_or_else(|e| panic!("{e}"));
    let id = |r: &ureq::http::Response<ureq::Body>| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(id(&given).as_deref(), Some("trace-42"));
    // Errors carry one too, and a request without one gets a new one each time.
    let made: Vec<Option<String>> = (0..2)
        .map(|_| {
            let r = d.agent.get(&url).call().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.status().as_u16(), 401);
            id(&r)
        })
        .collect();
    assert!(
        made.iter()
            .all(|m| m.as_ref().is_some_and(|m| m.len() >= 32)),
        "{made:?}"
    );
    assert_ne!(made[0], made[1]);
}

#[test]
fn metrics_parse_as_the_openmetrics_they_say_they_are_with_the_tenant_on_commands() {
    use std::io::Write;
    let d = start(1 << 20);
    start_purchase(&d, 10_000, "office");
    let response = d
        .agent
        .get(format!("{}/metrics", d.base))
        .call()
        .unwrap_or_else(|e| panic!("{e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = response
        .into_body()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{e}"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/contract/parse_metrics.py");
    let mut parser = std::process::Command::new(tools_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = parser.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = parser.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        families["flowgate_commands"]["type"], "counter",
        "{families}"
    );
    let started = families["flowgate_commands"]["samples"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s[1]["kind"] == "start");
    let Some(started) = started else {
        panic!("no start command counted: {families}");
    };
    assert_eq!(started[0], "flowgate_commands_total");
    assert_eq!(
        started[1],
        json!({"tenant": "acme", "kind": "start", "outcome": "ok"})
    );
    assert_eq!(started[2], 1.0);
    assert_eq!(
        families["flowgate_command_seconds"]["type"], "histogram",
        "{families}"
    );
    let plugin_calls = &families["flowgate_plugin_calls"]["samples"];
    assert!(
        plugin_calls
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s[1]["tenant"] == "acme" && s[1]["plugin"] == "purchase-approval"),
        "{families}"
    );
}

#[test]
fn a_policy_input_of_the_wrong_type_or_an_inexact_number_is_refused_naming_the_field() {
    let d = start(1 << 20);
    let started_in = |workflow: &str, data: &str| {
        let body = format!(r#"{{"workflow": "{workflow}", "data": {data}}}"#);
        d.raw(
            "/api/v1/instances",
            ACME_ADMIN,
            "application/json",
            body.as_bytes(),
        )
    };
    let started = |data: &str| started_in("purchase-request", data);
    let base = r#""currency": "USD", "category": "office", "requester": "alice""#;
    let cases = [
        (
            r#""12.50""#,
            "data.amount_cents",
            "integer amount in minor units",
        ),
        ("12.5", "data.amount_cents", "integer amount in minor units"),
        ("9223372036854775808", "data.amount_cents", "within 64 bits"),
        (
            "123456789012345678901234567890",
            "data.amount_cents",
            "cannot be kept exactly",
        ),
    ];
    for (amount, field, said) in cases {
        let (status, body) = started(&format!(r#"{{"amount_cents": {amount}, {base}}}"#));
        assert_eq!((status, code(&body)), (422, "invalid"), "{amount}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{amount}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(said), "{amount}: {message}");
    }
    let (status, body) = started(
        r#"{"amount_cents": 1250, "currency": "usd dollars", "category": "office", "requester": "alice"}"#,
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "data.currency");
    let (status, body) = started(
        r#"{"amount_cents": 1250, "currency": "USD", "category": 7, "requester": "alice"}"#,
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "data.category");
    // Nothing was started.
    let (_, listed) = d.call("GET", "/api/v1/instances", Some(ACME_ADMIN), None);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // A big number anywhere in instance data is refused too, rather than kept as a double (in a
    // workflow without a start form, whose data is free).
    let (status, body) = started_in(
        "document-approval",
        r#"{"po": {"account": 123456789012345678901234567890}}"#,
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "data.po.account");
    // What is right starts, and a 64-bit integer is kept exactly.
    let (status, body) = started_in(
        "document-approval",
        r#"{"po": {"account": 9007199254740993}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default();
    let (_, got) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(
        got["instance"]["data"]["po"]["account"],
        json!(9007199254740993u64)
    );
}
