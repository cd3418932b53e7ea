//! Operating the daemon: tenant files changed while it runs, plugin versions kept across restarts,
//! notifications (webhook and email) pending across a crash, and the OpenAPI document.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::*;
use flowgate_tests::artifacts;
use flowgate_tests::receivers::{SmtpSink, WebhookReceiver};

const ADMIN: &str = "initech-admin-token";
const MILTON: &str = "initech-milton-token";

/// A tenant file's `[[tokens]]` entry.
fn token(name: &str, secret: &str, access: &str, person: &str) -> String {
    let sha = hex::encode(Sha256::digest(secret.as_bytes()));
    let person = if person.is_empty() {
        String::new()
    } else {
        format!("person = \"{person}\"\nroles = [\"manager\"]\n")
    };
    format!("[[tokens]]\nname = \"{name}\"\nsha256 = \"{sha}\"\naccess = \"{access}\"\n{person}\n")
}

/// Writes the `initech` tenant into `dir` with `more` appended; returns its path.
fn write_tenant(dir: &Path, more: &str) -> PathBuf {
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/globex/workflows");
    let text = format!(
        "id = \"initech\"\nworkflows = {workflows:?}\n\n{}{more}",
        token("admin", ADMIN, "admin", "")
    );
    let path = dir.join("initech.toml");
    // Through a rename, so the watcher never reads half a file.
    let partial = dir.join("initech.toml.partial");
    std::fs::write(&partial, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&partial, &path).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn plugin_names(d: &Daemon, token: &str) -> Vec<(String, String)> {
    let (status, body) = d.call("GET", "/api/v1/plugins", Some(token), None);
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            (name, p["sha256"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_changed_tenant_file_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = write_tenant(dir.path(), "");
    let d = start_with(dir, std::slice::from_ref(&tenant), "reload_ms = 100\n");
    assert!(plugin_names(&d, ADMIN).is_empty());
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(MILTON), None).0, 401);

    // A plugin and a person's token are added to the file.
    let plugin = format!(
        "{}[plugins.bot]\npath = {:?}\n[plugins.bot.config]\ngreeting = \"hi\"\n",
        token("milton", MILTON, "person", "milton"),
        artifacts::MISBEHAVE
    );
    write_tenant(tenant.parent().unwrap_or(Path::new(".")), &plugin);
    let names = eventually("the new plugin", || {
        let names = plugin_names(&d, ADMIN);
        (!names.is_empty()).then_some(names)
    });
    assert_eq!(names[0].0, "bot");
    // Plugins are installed first; the tokens are swapped when the whole reload is done.
    eventually("the new token", || {
        (d.call("GET", "/api/v1/plugins", Some(MILTON), None).0 == 200).then_some(())
    });

    // A broken file keeps the previous configuration in force and says why on /readyz.
    write_tenant(tenant.parent().unwrap_or(Path::new(".")), "[plugins.bot\n");
    let problem = eventually("readiness to report the broken file", || {
        let (status, body) = d.call("GET", "/readyz", None, None);
        (status == 503).then_some(body)
    });
    // Everyone learns which tenant; only its administrator which file and why.
    let message = problem["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`initech`") && message.contains("serves as before"),
        "{problem}"
    );
    assert!(!problem.to_string().contains("initech.toml"), "{problem}");
    let (status, told) = d.call("GET", "/readyz", Some(ADMIN), None);
    assert_eq!(status, 503);
    let file = told["error"]["details"]["problems"][0]["file"].as_str();
    assert!(file.is_some_and(|f| f.ends_with("initech.toml")), "{told}");
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(MILTON), None).0, 200);
    assert_eq!(plugin_names(&d, ADMIN), names);

    // Fixed again without the person's token: it stops working, readiness returns.
    let without_milton = format!("[plugins.bot]\npath = {:?}\n", artifacts::MISBEHAVE);
    write_tenant(tenant.parent().unwrap_or(Path::new(".")), &without_milton);
    eventually("the token to be withdrawn", || {
        let (status, _) = d.call("GET", "/api/v1/plugins", Some(MILTON), None);
        (status == 401).then_some(())
    });
    eventually("readiness", || {
        (d.call("GET", "/readyz", None, None).0 == 200).then_some(())
    });
}

/// A pause, then a `bot` action.
const PAUSED_BOT: &str = r#"
id = "paused-bot"
start = "pause"

[[steps]]
id = "pause"
kind = "wait"
duration = "1s"
next = "act"

[[steps]]
id = "act"
kind = "action"
plugin = "bot"
action = "echo-key"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_tenant_that_does_not_load_at_start_waits_while_the_others_serve() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bot = format!("[plugins.bot]\npath = {:?}\n", artifacts::MISBEHAVE);
    let tenant = write_tenant(dir.path(), &bot);
    let folder = tenant.parent().unwrap_or(Path::new(".")).to_path_buf();
    let globex = example_tenants().remove(1);
    let tenants = [tenant.clone(), globex];
    let mut d = start_with(dir, &tenants, "reload_ms = 100\n");
    let deploy = json!({"file": "paused-bot.toml", "source": PAUSED_BOT});
    let (status, body) = d.call("POST", "/api/v1/definitions", Some(ADMIN), Some(deploy));
    assert_eq!(status, 201, "{body}");
    let start = json!({"workflow": "paused-bot"});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ADMIN), Some(start));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_string();

    // Down before the pause is over; up again with initech's file broken.
    crash(&mut d);
    write_tenant(&folder, "[plugins.bot\n");
    let dir = folder_of(d);
    let d = start_with(dir, &tenants, "reload_ms = 100\n");
    assert_eq!(
        d.call("GET", "/api/v1/plugins", Some(GLOBEX_ADMIN), None).0,
        200,
        "the other tenant serves"
    );
    let (status, problem) = d.call("GET", "/readyz", Some(GLOBEX_ADMIN), None);
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        problem["error"]["details"]["not_served"],
        json!(["initech"])
    );
    let message = problem["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`initech` not served"), "{problem}");
    assert!(
        problem["error"]["details"].get("problems").is_none(),
        "another tenant's administrator is not shown the file: {problem}"
    );
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(ADMIN), None).0, 401);
    // Past the pause, the action's plugin is missing: its work waits rather than failing.
    std::thread::sleep(Duration::from_millis(1_500));

    write_tenant(&folder, &bot);
    eventually("readiness once the file is fixed", || {
        (d.call("GET", "/readyz", None, None).0 == 200).then_some(())
    });
    let path = format!("/api/v1/instances/{id}");
    let finished = eventually("the instance to finish", || {
        let (_, body) = d.call("GET", &path, Some(ADMIN), None);
        (body["instance"]["status"] != "running").then_some(body)
    });
    assert_eq!(finished["instance"]["status"], "completed", "{finished}");
    let kinds: Vec<&str> = finished["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(kinds.contains(&"action-succeeded"), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|k| k.starts_with("incident") || *k == "plugin-call-failed"),
        "{kinds:?}"
    );
}

/// A workflow of two `bot` actions around a manager's task.
const BOT_RUN: &str = r#"
id = "bot-run"
start = "first"

[[steps]]
id = "first"
kind = "action"
plugin = "bot"
action = "echo-key"
next = "check"

[[steps]]
id = "check"
kind = "task"
role = "manager"
next = "second"

[[steps]]
id = "second"
kind = "action"
plugin = "bot"
action = "echo-key"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

fn upload(d: &Daemon, name: &str, wasm_path: &str) -> String {
    let wasm = std::fs::read(wasm_path).unwrap_or_else(|e| panic!("{wasm_path}: {e}"));
    let path = format!("/api/v1/plugins/{name}");
    let (status, body) = d.raw(&path, GLOBEX_ADMIN, "application/wasm", &wasm);
    assert_eq!(status, 201, "{body}");
    body["sha256"].as_str().unwrap_or_default().to_string()
}

#[test]
fn uploads_and_pinned_plugin_versions_survive_a_restart() {
    let mut d = start(8 << 20);
    let g = Some(GLOBEX_ADMIN);
    let first = upload(&d, "bot", artifacts::MISBEHAVE);
    let deploy = json!({"file": "bot-run.toml", "source": BOT_RUN});
    let (status, body) = d.call("POST", "/api/v1/definitions", g, Some(deploy));
    assert_eq!(status, 201, "{body}");
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        g,
        Some(json!({"workflow": "bot-run"})),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let task = d.open_task(GLOBEX_ADMIN, &id, "manager");

    // A new version becomes current; the instance stays pinned to the first.
    let second = upload(&d, "bot", artifacts::TICKET_ROUTING);
    assert_ne!(first, second);
    terminate(&mut d);
    let d = start_in(folder_of(d), 8 << 20);
    assert_eq!(
        plugin_names(&d, GLOBEX_ADMIN),
        vec![("bot".to_string(), second.clone())],
        "the upload is still current after the restart"
    );
    let (status, kept) = d.call("GET", "/api/v1/plugins/bot/versions", g, None);
    assert_eq!(status, 200, "{kept}");
    let kept: Vec<(String, bool)> = kept
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["sha256"].as_str().unwrap_or_default().to_string(),
                v["current"] == true,
            )
        })
        .collect();
    assert_eq!(kept, [(first.clone(), false), (second.clone(), true)]);

    // The pinned version is loaded again from the kept artifact to run the second action.
    let act = json!({"outcome": "done", "by": {"id": "mia", "roles": ["manager"]}});
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        g,
        Some(act),
    );
    assert_eq!(status, 200, "{body}");
    let finished = eventually("the instance to finish", || {
        let (_, body) = d.call("GET", &format!("/api/v1/instances/{id}"), g, None);
        (body["instance"]["status"] != "running").then_some(body)
    });
    assert_eq!(finished["instance"]["status"], "completed", "{finished}");
    assert_eq!(finished["instance"]["plugins"]["bot"], json!(first));
}

/// The `initech` tenant with a webhook and email to these receivers.
fn notifying_tenant(dir: &Path, hook: &WebhookReceiver, smtp: &SmtpSink) -> PathBuf {
    let more = format!(
        "{}[webhook]\nurl = {:?}\nsecret = \"whsec-initech\"\n\n[email]\nurl = {:?}\nfrom = \"Flowgate <flowgate@initech.example>\"\ntimeout_ms = 2000\n[email.people]\nmilton = \"milton@initech.example\"\n[email.roles]\nmanager = \"managers@initech.example\"\n",
        token("milton", MILTON, "person", "milton"),
        hook.url,
        smtp.url(),
    );
    write_tenant(dir, &more)
}

#[test]
fn notifications_pending_at_a_crash_are_delivered_after_the_restart() {
    let hook = WebhookReceiver::start(0).unwrap_or_else(|e| panic!("{e}"));
    let smtp = SmtpSink::start(0).unwrap_or_else(|e| panic!("{e}"));
    hook.set_failing(true);
    smtp.set_failing(true);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = notifying_tenant(dir.path(), &hook, &smtp);
    let tenants = [tenant];
    let mut d = start_with(dir, &tenants, "");
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        Some(MILTON),
        Some(json!({"workflow": "leave-request", "data": {"days": 3}})),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    eventually("both channels to be tried and refused", || {
        (hook.requests() > 0 && smtp.attempts() > 0).then_some(())
    });
    crash(&mut d);

    hook.set_failing(false);
    smtp.set_failing(false);
    let d = start_with(folder_of(d), &tenants, "");
    let received = eventually("the webhook delivery", || {
        let r = hook.received();
        (!r.is_empty()).then_some(r)
    });
    let mails = eventually("the email", || {
        let m = smtp.mails();
        (!m.is_empty()).then_some(m)
    });
    let delivery: Value = serde_json::from_slice(&received[0].body).unwrap_or_default();
    assert_eq!(delivery["instance"], json!(id));
    assert_eq!(delivery["notification"]["kind"], "task-assigned");
    let signature = received[0].headers.get("x-flowgate-signature").cloned();
    let expected = flowgate::service::signature("whsec-initech", &received[0].body);
    assert_eq!(signature, Some(expected));

    let mail = &mails[0];
    assert_eq!(mail.from, "flowgate@initech.example");
    assert_eq!(mail.to, vec!["managers@initech.example".to_string()]);
    let delivery_id = delivery["id"].as_u64().unwrap_or_default();
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<initech.{delivery_id}@flowgate>").as_str())
    );
    assert!(
        mail.data.contains(&format!("Instance: {id}")),
        "{}",
        mail.data
    );

    // Finishing the instance tells whoever started it, by both channels, once each.
    let task = d.open_task(ADMIN, &id, "manager");
    let act = json!({"outcome": "approve"});
    let path = format!("/api/v1/tasks/{task}/complete");
    let (status, body) = d.call("POST", &path, Some(MILTON), Some(act));
    assert_eq!(status, 200, "{body}");
    eventually("the finished notification by email", || {
        smtp.mails()
            .iter()
            .any(|m| m.to == ["milton@initech.example"])
            .then_some(())
    });
    // Delivery is at least once: a receiver dedupes on the delivery's id, as this one does (a
    // request the crashed daemon had sent may still be answered after the receiver recovered).
    let kinds: Vec<String> = eventually("the finished notification by webhook", || {
        let mut seen = std::collections::BTreeSet::new();
        let kinds: Vec<String> = hook
            .received()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|v| seen.insert(v["id"].as_u64()))
            .map(|v| {
                v["notification"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        (kinds.len() >= 2).then_some(kinds)
    });
    assert_eq!(kinds, ["task-assigned", "instance-finished"]);
}

#[test]
fn the_openapi_document_describes_every_route_and_only_those() {
    let d = start(1 << 20);
    let (status, doc) = d.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("GET", "/api/v1/definitions"),
        ("POST", "/api/v1/definitions"),
        ("POST", "/api/v1/definitions/validate"),
        ("GET", "/api/v1/definitions/{id}/versions/{version}"),
        (
            "GET",
            "/api/v1/definitions/{id}/versions/{version}/diagram.svg",
        ),
        ("GET", "/api/v1/plugins"),
        ("POST", "/api/v1/plugins/{name}"),
        ("GET", "/api/v1/plugins/{name}/versions"),
        ("GET", "/api/v1/instances"),
        ("POST", "/api/v1/instances"),
        ("GET", "/api/v1/instances/{id}"),
        ("POST", "/api/v1/instances/{id}/cancel"),
        ("POST", "/api/v1/instances/{id}/pause"),
        ("POST", "/api/v1/instances/{id}/resume"),
        ("POST", "/api/v1/definitions/{id}/versions/{version}/pause"),
        ("POST", "/api/v1/definitions/{id}/versions/{version}/resume"),
        ("POST", "/api/v1/definitions/{id}/migrations"),
        ("GET", "/api/v1/instances/{id}/diagram.svg"),
        ("GET", "/api/v1/incidents"),
        ("POST", "/api/v1/instances/{id}/incidents/{token}/retry"),
        ("POST", "/api/v1/instances/{id}/incidents/{token}/skip"),
        ("GET", "/api/v1/metrics/{workflow}"),
        ("GET", "/api/v1/messages"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/messages/{id}"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/processes/{id}"),
        ("GET", "/api/v1/process-definitions"),
        ("GET", "/api/v1/process-definitions/{id}"),
        ("GET", "/api/v1/process-definitions/{id}/metrics"),
        ("POST", "/hooks/{tenant}/{name}"),
        (
            "POST",
            "/api/v1/definitions/{id}/schedules/{schedule}/pause",
        ),
        (
            "POST",
            "/api/v1/definitions/{id}/schedules/{schedule}/resume",
        ),
        ("GET", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks/{id}/claim"),
        ("POST", "/api/v1/tasks/{id}/unclaim"),
        ("POST", "/api/v1/tasks/{id}/complete"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/operator/backups"),
        ("GET", "/api/v1/plugins/{name}/calls"),
        ("POST", "/api/v1/plugins/{name}/replay"),
        ("GET", "/api/v1/plugins/{name}/candidates"),
        ("POST", "/api/v1/plugins/{name}/candidates"),
        ("POST", "/api/v1/plugins/{name}/candidates/{sha256}/replay"),
        ("POST", "/api/v1/plugins/{name}/candidates/{sha256}/promote"),
        ("DELETE", "/api/v1/plugins/{name}/candidates/{sha256}"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected);
    // Every documented route is served (answered by its handler, not the fallback).
    for (method, path) in &documented {
        let concrete = path.replace("{version}", "1").replace(['{', '}'], "");
        let (status, body) = d.call(method, &concrete, Some(ACME_ADMIN), None);
        let fallback = body["error"]["message"] == "no such route";
        assert!(
            !fallback && status != 405,
            "{method} {path}: {status} {body}"
        );
    }
    // The document is valid OpenAPI 3.1, with one id per operation (generators need them).
    let checked = python_on(
        concat!(env!("CARGO_MANIFEST_DIR"), "/contract/check_openapi.py"),
        doc.to_string().as_bytes(),
    );
    assert_eq!(checked["operations"], json!(documented.len()), "{checked}");
    // Every JSON request body has an example (checked against its schema above), as the error
    // shape and the instance do.
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            let Some(reference) = body["$ref"].as_str() else {
                continue;
            };
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name]["examples"].is_array(),
                "{method} {path}: {name} has no example"
            );
        }
    }
    assert!(
        checked["examples"].as_u64().is_some_and(|n| n >= 13),
        "{checked}"
    );
    let schemas = doc["components"]["schemas"].as_object().map(|s| s.len());
    assert!(
        schemas.is_some_and(|n| n >= 5),
        "request bodies are described: {doc}"
    );
}

/// Every status a route answers to a client's usual mistakes is one its operation documents, in
/// the error shape: no token, a person's token, a body that is not JSON, a body of another
/// content type, a body over the limit, ids that do not exist; and a method a path does not serve
/// is 405 with `Allow` naming the ones it does.
#[test]
fn every_route_documents_the_statuses_it_answers() {
    /// What is tried: its name, the request headers and the body.
    type Try<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let d = start(4096);
    let (_, doc) = d.call("GET", "/openapi.json", None, None);
    let admin = format!("Bearer {ACME_ADMIN}");
    let person = "Bearer acme-dora-token".to_string();
    let oversized = format!("{{\"reason\": \"{}\"}}", "x".repeat(8192));
    let mut answered = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        // Ids that exist nowhere; a version is a number.
        let concrete = path.replace("{version}", "7").replace(['{', '}'], "");
        let methods: Vec<String> = item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(m, _)| m.to_uppercase())
            .collect();
        for (method, operation) in item.as_object().into_iter().flatten() {
            let method = method.to_uppercase();
            let documented: Vec<String> = operation["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, _)| status.clone())
                .collect();
            let takes_body = operation.get("requestBody").is_some();
            let content_type = operation["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.keys().next().cloned())
                .unwrap_or_default();
            let mut tries: Vec<Try> = vec![
                ("no token", vec![], vec![]),
                (
                    "a person's token",
                    vec![("Authorization", person.as_str())],
                    vec![],
                ),
                (
                    "unknown ids",
                    vec![("Authorization", admin.as_str())],
                    vec![],
                ),
            ];
            if takes_body {
                let json_type = if content_type == "application/json" {
                    "application/json"
                } else {
                    content_type.as_str()
                };
                tries.extend([
                    (
                        "a body of another type",
                        vec![
                            ("Authorization", admin.as_str()),
                            ("Content-Type", "text/plain"),
                        ],
                        b"hello".to_vec(),
                    ),
                    (
                        "a malformed body",
                        vec![
                            ("Authorization", admin.as_str()),
                            ("Content-Type", json_type),
                        ],
                        b"{\"reason\": ".to_vec(),
                    ),
                    (
                        "a body over the limit",
                        vec![
                            ("Authorization", admin.as_str()),
                            ("Content-Type", json_type),
                        ],
                        oversized.clone().into_bytes(),
                    ),
                ]);
            }
            for (what, headers, body) in tries {
                let (status, _, answer) = d.request(&method, &concrete, &headers, &body);
                assert!(
                    documented.contains(&status.to_string()),
                    "{method} {path} with {what}: answered {status} {answer}; documents {documented:?}"
                );
                if status >= 400 {
                    assert!(
                        answer["error"]["code"].is_string()
                            && answer["error"]["details"].is_object(),
                        "{method} {path} with {what}: {answer}"
                    );
                }
                answered.insert(status);
            }
        }
        let other = ["PUT", "PATCH"]
            .into_iter()
            .find(|m| !methods.iter().any(|have| have == m))
            .unwrap_or_else(|| panic!("{path} serves every method"));
        let (status, allow, answer) =
            d.request(other, &concrete, &[("Authorization", admin.as_str())], &[]);
        assert_eq!(status, 405, "{other} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "method_not_allowed", "{answer}");
        let allow = allow.unwrap_or_else(|| panic!("{other} {path}: no Allow header"));
        for method in &methods {
            assert!(
                allow.contains(method.as_str()),
                "{path}: Allow {allow:?} lacks {method}"
            );
        }
    }
    // The tries reached the refusals they were made for.
    for status in [400, 401, 403, 404, 413, 415] {
        assert!(answered.contains(&status), "no {status} among {answered:?}");
    }
}

/// The daemon archives a tenant's finished instances past its retention in the background: the
/// finished one leaves the API for the day's archive file, the running one stays, and the
/// workflow's metrics still count both. Retention is a minute at least, so this waits one.
#[test]
fn the_daemon_archives_finished_instances_past_the_tenants_retention() {
    const QUICK: &str = "id = \"quick\"\nstart = \"file\"\n[[steps]]\nid = \"file\"\nkind = \"task\"\nrole = \"clerk\"\nnext = \"done\"\n[[steps]]\nid = \"done\"\nkind = \"end\"\n";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = write_tenant(dir.path(), "[retention]\nfinished_instances = \"1m\"\n");
    let d = start_with(dir, std::slice::from_ref(&tenant), "archive_ms = 200\n");
    let deploy = json!({"file": "quick.toml", "source": QUICK});
    let (status, body) = d.call("POST", "/api/v1/definitions", Some(ADMIN), Some(deploy));
    assert_eq!(status, 201, "{body}");
    let finished = d.start_instance(ADMIN, "quick");
    let finished = finished["id"].as_str().unwrap_or_default().to_string();
    let running = d.start_instance(ADMIN, "quick");
    let running = running["id"].as_str().unwrap_or_default().to_string();
    let task = d.open_task(ADMIN, &finished, "clerk");
    let done = json!({"by": {"id": "cleo", "roles": ["clerk"]}});
    let path = format!("/api/v1/tasks/{task}/complete");
    let (status, body) = d.call("POST", &path, Some(ADMIN), Some(done));
    assert_eq!(status, 200, "{body}");
    let ended = Instant::now();

    // Past the retention (and a few of the archiver's rounds), the finished one is gone.
    let deadline = ended + Duration::from_secs(120);
    loop {
        let (status, body) = d.call(
            "GET",
            &format!("/api/v1/instances/{finished}"),
            Some(ADMIN),
            None,
        );
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["instance"]["status"], "completed", "{body}");
        assert!(
            Instant::now() < deadline,
            "not archived 120 s after it ended"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        ended.elapsed() >= Duration::from_secs(60),
        "archived {:?} after it ended, before its minute of retention",
        ended.elapsed()
    );
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{running}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(status, 200, "the running instance stays: {body}");

    // The day's archive file has the finished instance with its whole history.
    let archive = d.dir.path().join("data/archive/initech");
    let files: Vec<_> = std::fs::read_dir(&archive)
        .unwrap_or_else(|e| panic!("{}: {e}", archive.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let [file] = files.as_slice() else {
        panic!("one archive file: {files:?}")
    };
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("jsonl"));
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let [line] = lines.as_slice() else {
        panic!("one archived instance: {text}")
    };
    assert_eq!(line["instance"]["id"], json!(finished), "{line}");
    let events: Vec<&Value> = line["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["event"])
        .collect();
    assert_eq!(events.first(), Some(&&json!("instance-started")), "{line}");
    assert_eq!(events.last(), Some(&&json!("instance-ended")), "{line}");

    // The workflow's metrics still count what was archived.
    let (status, metrics) = d.call("GET", "/api/v1/metrics/quick", Some(ADMIN), None);
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(metrics["started"], 2, "{metrics}");
    assert_eq!(metrics["ended"], 1, "{metrics}");
    assert_eq!(metrics["cycle_time"]["completed"]["count"], 1, "{metrics}");
}

#[test]
fn a_second_file_for_one_tenant_is_refused_while_the_first_serves() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = write_tenant(dir.path(), "");
    let second = dir.path().join("again.toml");
    std::fs::copy(&first, &second).unwrap_or_else(|e| panic!("{e}"));
    let d = start_with(dir, &[first, second], "");
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(ADMIN), None).0, 200);
    let (status, body) = d.call("GET", "/readyz", Some(ADMIN), None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["details"]["not_served"], json!([]), "{body}");
    let problem = &body["error"]["details"]["problems"][0];
    let file = problem["file"].as_str().unwrap_or_default();
    let error = problem["error"].as_str().unwrap_or_default();
    assert!(
        file.ends_with("again.toml") && error.contains("`initech` is already configured"),
        "{body}"
    );
}

#[test]
fn a_long_poll_answers_when_the_instance_changes() {
    let d = start(1 << 20);
    let g = Some(GLOBEX_ADMIN);
    let body = d.start_instance(GLOBEX_ADMIN, "follow-up");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let version = body["version"].as_u64().unwrap_or_default();

    // Nothing changes within 100 ms (the wait step is 2 s): the instance as it is.
    let path = format!("/api/v1/instances/{id}?history=false&changed_since={version}&wait_ms=100");
    let (status, body) = d.call("GET", &path, g, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["version"], json!(version));
    assert!(body.get("history").is_none());

    // The timer fires within the wait: the answer is the changed instance.
    let path = format!("/api/v1/instances/{id}?changed_since={version}&wait_ms=20000");
    let (status, body) = d.call("GET", &path, g, None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["instance"]["version"].as_u64() > Some(version),
        "{body}"
    );
    assert!(body["history"].as_array().is_some_and(|h| !h.is_empty()));

    // Another tenant's instance is not found, waiting or not.
    let path = format!("/api/v1/instances/{id}?changed_since=0&wait_ms=100");
    assert_eq!(d.call("GET", &path, Some(ACME_ADMIN), None).0, 404);
}

#[test]
fn with_watching_off_sighup_reloads_the_tenants() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = write_tenant(dir.path(), "");
    let d = start_with(dir, std::slice::from_ref(&tenant), "reload_ms = 0\n");
    let folder = tenant.parent().unwrap_or(Path::new("."));
    write_tenant(folder, &token("milton", MILTON, "person", "milton"));
    // Not watched: the new token is unknown until the signal.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(MILTON), None).0, 401);
    let pid = d.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(sent.is_ok_and(|s| s.success()));
    eventually("the reload after SIGHUP", || {
        let (status, _) = d.call("GET", "/api/v1/plugins", Some(MILTON), None);
        (status == 200).then_some(())
    });
    // The daemon is still serving after the signal.
    assert_eq!(d.call("GET", "/healthz", None, None).0, 200);
}

#[test]
fn a_tenant_file_can_name_an_uploaded_version_by_its_sha256() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = write_tenant(dir.path(), "");
    let folder = tenant.parent().unwrap_or(Path::new(".")).to_path_buf();
    let d = start_with(dir, std::slice::from_ref(&tenant), "reload_ms = 100\n");
    let wasm = std::fs::read(artifacts::MISBEHAVE).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw("/api/v1/plugins/bot", ADMIN, "application/wasm", &wasm);
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().unwrap_or_default().to_string();

    // A version nobody uploaded: the file is refused, naming the plugin and the sha256.
    write_tenant(&folder, "[plugins.bot]\nsha256 = \"00ff\"\n");
    let problem = eventually("the unknown version to be reported", || {
        let (status, body) = d.call("GET", "/readyz", None, None);
        (status == 503).then_some(body)
    });
    let (_, told) = d.call("GET", "/readyz", Some(ADMIN), None);
    let message = told["error"]["details"]["problems"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("`bot`") && message.contains("00ff"),
        "{problem} {told}"
    );

    // The uploaded one, pinned in the file with settings: ready again, the same version current.
    write_tenant(
        &folder,
        &format!("[plugins.bot]\nsha256 = \"{sha}\"\nconfig = {{ greeting = \"hi\" }}\n"),
    );
    eventually("readiness", || {
        (d.call("GET", "/readyz", None, None).0 == 200).then_some(())
    });
    assert_eq!(
        plugin_names(&d, ADMIN),
        vec![("bot".to_string(), sha.clone())]
    );

    // The pin wins over uploads: another version is refused naming both, and nothing changes;
    // the pinned one again is taken, and the answer says it is pinned.
    let other = std::fs::read(artifacts::PURCHASE_APPROVAL).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw("/api/v1/plugins/bot", ADMIN, "application/wasm", &other);
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    assert_eq!(body["error"]["details"]["pinned"], sha.as_str(), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("pins plugin `bot`"), "{message}");
    assert_eq!(
        plugin_names(&d, ADMIN),
        vec![("bot".to_string(), sha.clone())]
    );
    let (status, body) = d.raw("/api/v1/plugins/bot", ADMIN, "application/wasm", &wasm);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pinned"], true, "{body}");
}

#[test]
fn a_tenant_over_its_commands_per_second_is_refused_alone_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = write_tenant(dir.path(), "[quotas]\ncommands_per_second = 1\n");
    let globex = example_tenants().remove(1);
    let d = start_with(dir, &[tenant, globex], "");
    let validate = json!({"file": "x.toml", "source": "id = \"x\"\nstart = \"e\"\n[[steps]]\nid = \"e\"\nkind = \"end\"\n"});
    let path = "/api/v1/definitions/validate";
    // A burst of twice the rate passes; the command after it is refused until the bucket fills.
    let statuses: Vec<u16> = (0..6)
        .map(|_| d.call("POST", path, Some(ADMIN), Some(validate.clone())).0)
        .collect();
    let refused = statuses.iter().position(|s| *s == 429);
    assert!(
        refused.is_some_and(|at| at >= 2) && statuses[..2] == [200, 200],
        "{statuses:?}"
    );
    let (status, body) = d.call("POST", path, Some(ADMIN), Some(validate.clone()));
    assert_eq!((status, code(&body)), (429, "too_many_requests"), "{body}");
    assert_eq!(body["error"]["details"]["limit"], 1);
    // Reads are not commands, and the other tenant has its own quota.
    assert_eq!(d.call("GET", "/api/v1/plugins", Some(ADMIN), None).0, 200);
    for _ in 0..5 {
        let (status, _) = d.call("POST", path, Some(GLOBEX_ADMIN), Some(validate.clone()));
        assert_eq!(status, 200);
    }
    let (status, metrics) = d.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default();
    let throttled = text
        .lines()
        .find(|l| l.starts_with("flowgate_tenant_commands_throttled_total{tenant=\"initech\"}"));
    assert!(
        throttled.is_some_and(|l| !l.ends_with(" 0")),
        "{throttled:?}"
    );
    assert!(!text.contains("tenant_commands_throttled_total{tenant=\"globex\"}"));
}

#[test]
fn an_incident_and_its_failed_call_are_logged_with_tenant_instance_plugin_and_version() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = start_logged(dir, &example_tenants(), "");
    // The purchase policy refuses a negative amount: the plugin's fault, an incident at once.
    let instance = start_purchase(&d, -100, "office");
    let version = {
        let wasm = std::fs::read(artifacts::PURCHASE_APPROVAL).unwrap_or_else(|e| panic!("{e}"));
        hex::encode(Sha256::digest(&wasm))[..12].to_string()
    };
    let logged = |message: &str| {
        eventually(message, || {
            d.log()
                .into_iter()
                .find(|line| line["fields"]["message"] == message)
        })
    };
    for message in ["incident raised", "plugin call failed"] {
        let line = logged(message);
        assert_eq!(line["level"], "WARN", "{line}");
        let fields = &line["fields"];
        assert_eq!(fields["tenant"], "acme", "{fields}");
        assert_eq!(fields["instance"], instance.as_str(), "{fields}");
        assert_eq!(fields["workflow"], "purchase-request", "{fields}");
        assert_eq!(fields["plugin"], "purchase-approval", "{fields}");
        assert_eq!(fields["version"], version.as_str(), "{fields}");
        assert_eq!(fields["kind"], "invalid-input", "{fields}");
        assert_eq!(fields["blame"], "guest", "{fields}");
        let error = fields["error"].as_str().unwrap_or_default();
        assert!(error.contains("must not be negative"), "{fields}");
    }
}

/// What Schemathesis checks of every answer. Not `positive_data_acceptance`: a request the schema
/// allows may still be refused for what the document cannot say (an unknown workflow is 404, an
/// administrator's completion without `by` is 422), and those refusals are tested one by one.
const CONTRACT_CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
missing_required_header,unsupported_method";

#[test]
fn the_api_keeps_its_openapi_contract_under_schemathesis() {
    // Long polls end within a second: a fuzzed `changed_since` past the instance's version
    // would otherwise wait 30 s, past Schemathesis' 10 s read timeout.
    let d = start_with(
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        &example_tenants(),
        "max_body_bytes = 1048576\nlong_poll_ms = 1000\n",
    );
    let schemathesis = tools_python().with_file_name("schemathesis");
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A fixed seed and one worker: the same requests every run. The plugin upload, replay and
    // candidate upload take a component's bytes, which Schemathesis cannot make; their refusals are tested on
    // their own.
    let out = std::process::Command::new(schemathesis)
        .current_dir(scratch.path())
        .args(["run", &format!("{}/openapi.json", d.base)])
        .args(["-H", &format!("Authorization: Bearer {ACME_ADMIN}")])
        .args(["--checks", CONTRACT_CHECKS])
        .args(["--exclude-operation-id", "uploadPlugin"])
        .args(["--exclude-operation-id", "replayPlugin"])
        .args(["--exclude-operation-id", "uploadPluginCandidate"])
        .args([
            "--max-examples",
            "30",
            "--workers",
            "1",
            "--seed",
            "7",
            "--no-color",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_incident_is_retried_on_the_plugins_current_version_over_http() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Clocks granted, so that the fixed version (one that reads the clock) may be uploaded.
    let tenant = write_tenant(dir.path(), "[plugins.bot]\ngrants = { clocks = true }\n");
    let d = start_with(dir, std::slice::from_ref(&tenant), "");
    let broken = std::fs::read(artifacts::MISBEHAVE).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw("/api/v1/plugins/bot", ADMIN, "application/wasm", &broken);
    assert_eq!(status, 201, "{body}");
    let source = "id = \"ledger\"\nstart = \"post\"\n[[steps]]\nid = \"post\"\nkind = \"action\"\nplugin = \"bot\"\naction = \"permanent\"\nnext = \"done\"\n[[steps]]\nid = \"done\"\nkind = \"end\"\n";
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        Some(ADMIN),
        Some(json!({"file": "ledger.toml", "source": source})),
    );
    assert_eq!(status, 201, "{body}");
    let start_ledger = |d: &Daemon| {
        let (status, started) = d.call(
            "POST",
            "/api/v1/instances",
            Some(ADMIN),
            Some(json!({"workflow": "ledger"})),
        );
        assert_eq!(status, 201, "{started}");
        started
    };
    let id = start_ledger(&d)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let token = eventually("the incident", || {
        let (_, listed) = d.call("GET", "/api/v1/incidents", Some(ADMIN), None);
        listed
            .as_array()?
            .iter()
            .find(|i| i["instance"] == id.as_str())?["token"]
            .as_u64()
    });
    let retry = format!("/api/v1/instances/{id}/incidents/{token}/retry");

    let fixed = std::fs::read(artifacts::CLOCK_READER).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw("/api/v1/plugins/bot", ADMIN, "application/wasm", &fixed);
    assert_eq!(status, 201, "{body}");
    let fixed_sha = body["sha256"].as_str().unwrap_or_default().to_string();
    let (status, body) = d.call(
        "POST",
        &retry,
        Some(ADMIN),
        Some(json!({"reason": "fixed in 1.0.1", "current": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugins"]["bot"], fixed_sha.as_str(), "{body}");
    let done = eventually("the step to run on the fixed version", || {
        let (_, got) = d.call("GET", &format!("/api/v1/instances/{id}"), Some(ADMIN), None);
        (got["instance"]["status"] == "completed").then_some(got)
    });
    let repinned: Vec<&Value> = done["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "plugin-repinned")
        .collect();
    assert_eq!(repinned.len(), 1, "{done}");
    assert_eq!(repinned[0]["to"], fixed_sha.as_str());
    assert_eq!(repinned[0]["reason"], "fixed in 1.0.1");
    // Resolved: the incident is gone.
    let (status, body) = d.call(
        "POST",
        &retry,
        Some(ADMIN),
        Some(json!({"reason": "again", "current": true})),
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");

    // After a restart the uploaded version is current again, with the file's grants.
    let mut d = d;
    terminate(&mut d);
    let d = start_with(folder_of(d), std::slice::from_ref(&tenant), "");
    let started = start_ledger(&d);
    let again = started["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(started["plugins"]["bot"], fixed_sha.as_str(), "{started}");
    eventually("the new instance to run on it", || {
        let (_, got) = d.call(
            "GET",
            &format!("/api/v1/instances/{again}"),
            Some(ADMIN),
            None,
        );
        (got["instance"]["status"] == "completed").then_some(())
    });
}
