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
    flowgate_with_hook_waiting(store, url, clock, 2_000).await
}

async fn flowgate_with_hook_waiting(
    store: Arc<RedbStore>,
    url: &str,
    clock: Arc<ManualClock>,
    timeout_ms: u64,
) -> Flowgate {
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
        timeout_ms,
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

/// A receiver that accepts connections and never answers: deliveries to it hang until their
/// timeout. Dropping it closes them.
struct Hung {
    url: String,
    held: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Hung {
    fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (keep, stopped) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                keep.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
            }
        });
        Hung {
            url: format!("http://{addr}/hook"),
            held,
            stop,
        }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

const ASK_THEN_ACT: &str = r#"
id = "ask-then-act"
start = "ask"

[[steps]]
id = "ask"
kind = "task"
role = "clerk"
next = "act"

[[steps]]
id = "act"
kind = "action"
plugin = "bot"
action = "ok"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_up_its_own_deliveries_only() {
    let hung = Hung::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        Arc::new(RedbStore::open(dir.path().join("f.redb")).unwrap_or_else(|e| panic!("{e}")));
    let clock = Arc::new(ManualClock::new(crate::scenarios::T0));
    // Each delivery would wait a minute for its answer.
    let flowgate = flowgate_with_hook_waiting(store, &hung.url, clock, 60_000).await;
    let wasm = crate::common::wasm(flowgate_tests::artifacts::MISBEHAVE);
    flowgate
        .plugins()
        .install(
            flowgate::plugin::PluginId::new("acme", "bot"),
            &wasm,
            flowgate::plugin::PluginSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
        .deploy("acme", "ask-then-act.toml", ASK_THEN_ACT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = flowgate.clone();
    let driving = tokio::spawn(async move {
        driver
            .run_driver(Duration::from_millis(20), async {
                drop(stopped.await);
            })
            .await;
    });

    // Ten instances: each task's assignment is a delivery that hangs.
    let clerk = flowgate::engine::Person::new("cleo", &["clerk"]);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let started = flowgate
            .start("acme", "ask-then-act", Map::new(), "amos", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ids.push(started);
    }
    for instance in &ids {
        let task = instance
            .open_tasks()
            .next()
            .map(|t| t.id.clone())
            .unwrap_or_else(|| panic!("no task"));
        flowgate
            .complete_task("acme", &task, clerk.clone(), None, Map::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Every action runs and every instance finishes while the deliveries hang.
    let waited = std::time::Instant::now();
    loop {
        let finished = ids
            .iter()
            .filter(|i| {
                flowgate
                    .instance("acme", &i.id)
                    .is_ok_and(|i| i.status.as_str() == "completed")
            })
            .count();
        if finished == ids.len() {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "{finished} of {} instances finished behind deliveries that hang",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = hung.connections();
    assert!(
        (1..=4).contains(&held),
        "the receiver's lane holds 1 to 4 deliveries at once, not {held}"
    );
    drop(hung);
    let _ = stop.send(());
    driving.await.unwrap_or_else(|e| panic!("{e}"));
}
