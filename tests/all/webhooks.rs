//! Webhook notifications against a real HTTP receiver on loopback: signed with HMAC-SHA256, each
//! with a delivery id; failures retried with backoff; pending deliveries survive a restart.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use flowgate::plugin::PluginRegistry;
use flowgate::service::{ChannelNotifier, Channels, Flowgate, ManualClock, WebhookConfig};
use flowgate::store::RedbStore;
use flowgate::tenant::TenantConfig;
use flowgate_tests::receivers::WebhookReceiver;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec-test";

/// A URL where nothing listens (a port that was free a moment ago).
fn dead_url() -> String {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = closed.local_addr().unwrap_or_else(|e| panic!("{e}"));
    format!("http://{addr}/hook")
}

async fn flowgate_with_hook(store: Arc<RedbStore>, url: &str, clock: Arc<ManualClock>) -> Flowgate {
    let tenant = TenantConfig::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/tenant.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let registry = PluginRegistry::new(crate::common::runtime().clone());
    tenant
        .install_plugins(&registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let hook = WebhookConfig {
        url: url.to_string(),
        secret: SECRET.to_string(),
        timeout_ms: 2_000,
    };
    let notifier = Arc::new(ChannelNotifier::default());
    notifier.set(
        "acme",
        Channels {
            webhook: Some(hook),
            email: None,
        },
    );
    let flowgate = Flowgate::open(store, Arc::new(registry), clock, notifier)
        .unwrap_or_else(|e| panic!("{e}"));
    tenant
        .deploy_workflows(&flowgate)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
}

fn expected_signature(body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn doc_data() -> Map<String, Value> {
    match json!({"author": "amos"}) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_with_backoff_and_deduplicable() {
    let rx = WebhookReceiver::start(2).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        Arc::new(RedbStore::open(dir.path().join("f.redb")).unwrap_or_else(|e| panic!("{e}")));
    let clock = Arc::new(ManualClock::new(crate::scenarios::T0));
    let flowgate = flowgate_with_hook(store, &rx.url, clock.clone()).await;
    flowgate
        .start("acme", "document-approval", doc_data(), "amos", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Attempt 1 fails; attempt 2 waits 1 s and fails; attempt 3 waits 2 s more and succeeds.
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx.requests(), 1);
    clock.advance(Duration::from_millis(999));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx.requests(), 1, "still backing off");
    clock.advance(Duration::from_millis(1));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx.requests(), 2);
    clock.advance(Duration::from_secs(2));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    clock.advance(Duration::from_secs(60));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx.requests(), 3, "delivered once it succeeded, not again");

    let received = rx.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(
        r.headers.get("x-flowgate-signature"),
        Some(&expected_signature(&r.body))
    );
    let payload: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    assert_eq!(
        r.headers.get("x-flowgate-delivery").map(String::as_str),
        payload["id"].as_u64().map(|i| i.to_string()).as_deref()
    );
    assert_eq!(payload["tenant"], "acme");
    assert_eq!(payload["notification"]["kind"], "task-assigned");
    assert_eq!(payload["notification"]["roles"], json!(["reviewer"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_restart() {
    // Nothing listens at first: deliveries stay pending in the outbox.
    let dead_url = dead_url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("f.redb");
    let clock = Arc::new(ManualClock::new(crate::scenarios::T0));
    {
        let store = Arc::new(RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
        let flowgate = flowgate_with_hook(store, &dead_url, clock.clone()).await;
        for _ in 0..3 {
            flowgate
                .start("acme", "document-approval", doc_data(), "amos", None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        flowgate
            .run_until_idle()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Restart with a receiver that works. The failed attempts were stored with their retry
    // time: nothing is sent before it (no burst after a restart)...
    let rx = WebhookReceiver::start(0).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(crate::common::reopen(&path).await);
    let flowgate = flowgate_with_hook(store, &rx.url, clock.clone()).await;
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rx.requests(), 0, "still waiting for the stored retry time");
    // ...and at it, every pending delivery arrives, once.
    clock.advance(Duration::from_secs(2));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let received = rx.received();
    let mut ids: Vec<String> = received
        .iter()
        .filter_map(|r| r.headers.get("x-flowgate-delivery").cloned())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_does_not_hold_up_the_plugin_calls_behind_it() {
    let dead_url = dead_url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        Arc::new(RedbStore::open(dir.path().join("f.redb")).unwrap_or_else(|e| panic!("{e}")));
    let clock = Arc::new(ManualClock::new(crate::scenarios::T0));
    let flowgate = flowgate_with_hook(store, &dead_url, clock.clone()).await;
    // More undeliverable notifications than the driver reads in one pass.
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let flowgate = flowgate.clone();
        starts.spawn(async move {
            flowgate
                .start("acme", "document-approval", doc_data(), "amos", None)
                .await
                .map(drop)
        });
    }
    while let Some(started) = starts.join_next().await {
        assert!(matches!(started, Ok(Ok(()))), "{started:?}");
    }
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = flowgate
        .store()
        .outbox("acme", 0, 1_000)
        .unwrap_or_default();
    assert!(waiting.len() >= 300, "{} pending", waiting.len());
    assert!(
        waiting.iter().all(|e| e.attempts == 1),
        "each tried once, waiting to retry"
    );

    // An action behind them runs now, not after the notifications get through.
    let wasm = crate::common::wasm(flowgate_tests::artifacts::MISBEHAVE);
    let installed = flowgate.plugins().install(
        flowgate::plugin::PluginId::new("acme", "bot"),
        &wasm,
        flowgate::plugin::PluginSettings::default(),
    );
    assert!(installed.is_ok(), "{installed:?}");
    let source = "id = \"bot-run\"\nstart = \"call\"\n\n[[steps]]\nid = \"call\"\nkind = \"action\"\nplugin = \"bot\"\naction = \"ok\"\nnext = \"done\"\n\n[[steps]]\nid = \"done\"\nkind = \"end\"\n";
    let deployed = flowgate.deploy("acme", "bot-run.toml", source).await;
    assert!(deployed.is_ok(), "{deployed:?}");
    let run = flowgate
        .start("acme", "bot-run", Map::new(), "amos", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = flowgate
        .instance("acme", &run.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, flowgate::engine::Status::Completed);
}
