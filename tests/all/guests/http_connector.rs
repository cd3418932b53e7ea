//! The HTTP connector action, as wasm through the host, against real HTTP servers on loopback:
//! what the tenant allowed is reached with its secret and the step's idempotency key; other
//! hosts, redirects to them, names that resolve to private addresses, slow servers and oversized
//! answers end in typed errors, and nothing reaches a server it was not allowed to reach.

use std::time::Duration;

use flowgate::plugin::{
    GuestError, HttpGrant, LoadedPlugin, PluginFailure, PluginLimits, PluginSettings, SecretSource,
};
use flowgate_tests::artifacts::HTTP_CONNECTOR;
use flowgate_tests::receivers::{ApiServer, Reply};
use serde_json::{Value, json};

use crate::common::{action, load, loaded};

fn server(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> ApiServer {
    ApiServer::start(move |request, _| answer(&request.path)).unwrap_or_else(|e| panic!("{e}"))
}

/// The connector allowed to reach `hosts`, with the call time actions get and this config.
fn settings(hosts: &[&str], config: &[(&str, &str)]) -> PluginSettings {
    PluginSettings {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits: PluginLimits {
            timeout: Duration::from_secs(10),
            ..PluginLimits::default()
        },
        grants: flowgate::plugin::Grants {
            http: Some(HttpGrant::allowing(hosts)),
            ..Default::default()
        },
    }
}

fn call(plugin: &LoadedPlugin, params: Value, data: Value) -> Result<Value, PluginFailure> {
    plugin
        .run_action(&action("sync", data, params))
        .map(|called| Value::Object(called.value.data))
        .map_err(|e| *e.failure)
}

fn permanent(result: Result<Value, PluginFailure>) -> String {
    match result {
        Err(PluginFailure::Guest(GuestError::Permanent(why))) => why,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[test]
fn an_allowed_host_gets_the_fields_the_secret_and_the_idempotency_key() {
    let crm = server(|path| match path {
        "/api/accounts" => Reply::json(201, json!({"id": "acct-7", "tier": "gold"})),
        _ => Reply::json(404, json!({})),
    });
    let secret = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(secret.path(), "s3cr3t-token\n").unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings(
        &[&crm.base],
        &[
            ("base_url", &format!("{}/api", crm.base)),
            (
                "headers",
                r#"{"authorization": "Bearer {{secret:crm_token}}"}"#,
            ),
        ],
    );
    if let Some(http) = &mut settings.grants.http {
        http.secrets.insert(
            "crm_token".into(),
            SecretSource::File(secret.path().to_path_buf()),
        );
    }
    let plugin = loaded(HTTP_CONNECTOR, "crm", settings);

    let called = plugin
        .run_action(&action(
            "sync",
            json!({"name": "Ada", "salary": 120000}),
            json!({"url": "/accounts", "send": ["name"], "into": "crm"}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Value::Object(called.value.data.clone()),
        json!({"crm": {"id": "acct-7", "tier": "gold"}})
    );
    let sent = crm.received();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("POST", "/api/accounts")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&sent[0].body).ok(),
        Some(json!({"name": "Ada"})),
        "only the fields the step sends"
    );
    let header = |name: &str| sent[0].headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("authorization"), "Bearer s3cr3t-token");
    assert_eq!(
        header("idempotency-key"),
        "inst-1/step/1",
        "the step activation's key, the same on every attempt"
    );
    // The secret went to the server only: not into the data, the note or the log.
    let seen = format!(
        "{:?} {} {:?}",
        called.value.data, called.value.note, called.logs
    );
    assert!(!seen.contains("s3cr3t"), "{seen}");
}

#[test]
fn other_hosts_and_redirects_to_them_are_refused_before_anything_is_sent() {
    let elsewhere = server(|_| Reply::json(200, json!({"stolen": true})));
    let elsewhere_url = format!("{}/collect", elsewhere.base);
    let crm = server(move |path| match path {
        "/moved" => Reply::redirect(&elsewhere_url),
        "/moved-here" => Reply::redirect("/ok"),
        _ => Reply::json(200, json!({"ok": true})),
    });
    let plugin = loaded(HTTP_CONNECTOR, "crm", settings(&[&crm.base], &[]));

    let direct = permanent(call(
        &plugin,
        json!({"url": format!("{}/collect", elsewhere.base)}),
        json!({"name": "Ada"}),
    ));
    assert!(direct.contains("denied"), "{direct}");
    assert!(
        direct.contains("not in this plugin's allowed_hosts"),
        "the host says why: {direct}"
    );
    let redirected = permanent(call(
        &plugin,
        json!({"url": format!("{}/moved", crm.base)}),
        json!({"name": "Ada"}),
    ));
    assert!(redirected.contains("denied"), "{redirected}");
    assert!(
        elsewhere.received().is_empty(),
        "nothing reached the other host"
    );

    // A redirect within the allowed host is followed.
    let followed = call(
        &plugin,
        json!({"url": format!("{}/moved-here", crm.base)}),
        json!({}),
    );
    assert_eq!(followed.ok(), Some(json!({"ok": true})));
}

#[test]
fn a_name_that_resolves_to_a_private_address_is_refused_unless_the_address_is_listed() {
    let internal = server(|_| Reply::json(200, json!({"secret": "internal"})));
    let by_name = format!("http://localhost:{}", internal.port());
    let plugin = loaded(HTTP_CONNECTOR, "crm", settings(&[&by_name], &[]));
    let refused = permanent(call(
        &plugin,
        json!({"url": format!("{by_name}/")}),
        json!({}),
    ));
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    assert!(refused.contains("not a public address"), "{refused}");
    assert!(internal.received().is_empty());

    // Listing the address itself is the operator saying so.
    let plugin = loaded(
        HTTP_CONNECTOR,
        "crm",
        settings(&[&by_name, &internal.base], &[]),
    );
    let allowed = call(&plugin, json!({"url": format!("{by_name}/")}), json!({}));
    assert_eq!(allowed.ok(), Some(json!({"secret": "internal"})));
}

#[test]
fn a_slow_server_times_out_as_a_retryable_error() {
    let slow = server(|_| Reply::json(200, json!({"late": true})).after(Duration::from_secs(5)));
    let mut settings = settings(&[&slow.base], &[]);
    if let Some(http) = &mut settings.grants.http {
        http.timeout_ms = 200;
    }
    let plugin = loaded(HTTP_CONNECTOR, "crm", settings);
    match call(
        &plugin,
        json!({"url": format!("{}/", slow.base)}),
        json!({}),
    ) {
        Err(PluginFailure::Guest(GuestError::Retryable(why))) => {
            assert!(why.contains("timed out"), "{why}")
        }
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
}

#[test]
fn an_answer_over_the_cap_is_refused() {
    let big = server(|_| Reply::json(200, json!({"blob": "x".repeat(10_000)})));
    let mut settings = settings(&[&big.base], &[]);
    if let Some(http) = &mut settings.grants.http {
        http.max_response_bytes = 1_000;
    }
    let plugin = loaded(HTTP_CONNECTOR, "crm", settings);
    let refused = permanent(call(
        &plugin,
        json!({"url": format!("{}/", big.base)}),
        json!({}),
    ));
    assert!(refused.contains("too large"), "{refused}");
}

#[test]
fn http_needs_the_grant_and_grants_are_checked_when_the_plugin_loads() {
    let refused = load(HTTP_CONNECTOR, "crm", PluginSettings::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("wasi:http/outgoing-handler"), "{refused}");
    assert!(refused.contains("`http` grant"), "{refused}");

    let bad = load(HTTP_CONNECTOR, "crm", settings(&["crm.example.com"], &[]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        bad.contains("allowed_hosts") && bad.contains("needs a scheme"),
        "{bad}"
    );
}

#[tokio::test]
async fn a_step_whose_server_was_slow_retries_with_the_same_idempotency_key_and_completes() {
    use flowgate::engine::{EventKind, Status};
    use flowgate::plugin::PluginId;

    let crm = ApiServer::start(|_, before| match before {
        0 => Reply::json(201, json!({"id": "late"})).after(Duration::from_secs(3)),
        _ => Reply::json(201, json!({"id": "acct-9"})),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let h = crate::scenarios::harness().await;
    let mut settings = settings(&[&crm.base], &[("base_url", &crm.base)]);
    if let Some(http) = &mut settings.grants.http {
        http.timeout_ms = 300;
    }
    h.flowgate
        .plugins()
        .install(
            PluginId::new(h.tenant.clone(), "crm"),
            &crate::common::wasm(HTTP_CONNECTOR),
            settings,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let workflow = r#"
id = "open-account"
start = "create"
[[steps]]
id = "create"
kind = "action"
plugin = "crm"
action = "create-account"
params = { url = "/accounts", send = ["name"], into = "account" }
retry = { max_attempts = 3, initial_backoff = "10s" }
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;
    h.flowgate
        .deploy(&h.tenant, "open-account.toml", workflow)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut data = serde_json::Map::new();
    data.insert("name".into(), json!("Ada"));
    let instance = h
        .flowgate
        .start(&h.tenant, "open-account", data, "tester", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.settle().await;

    let history = |h: &crate::scenarios::Harness| {
        h.flowgate
            .history(&h.tenant, &instance.id)
            .unwrap_or_default()
    };
    let failed: Vec<(u32, String, bool)> = history(&h)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::PluginCallFailed {
                attempt,
                error,
                retry_at,
                ..
            } => Some((attempt, error, retry_at.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.contains("timed out"), "{failed:?}");
    assert!(failed[0].2, "the timeout is retried: {failed:?}");

    h.clock.advance(Duration::from_secs(10));
    h.settle().await;
    let done = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.data.get("account"), Some(&json!({"id": "acct-9"})));
    let keys: Vec<Option<String>> = crm
        .received()
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].is_some(), "{keys:?}");
    assert_eq!(keys[0], keys[1], "both attempts carry the activation's key");
}
