//! Decisions in the same transaction: a router or approval policy that only reads its input is
//! asked while the command that reached it is applied, so the command and its decision commit
//! together and the answer already holds the tasks the decision opened. Everything else (a
//! plugin granted clocks, a failing call, a step action) goes through the outbox, and deliveries
//! leave the outbox with later commits instead of a commit each.

use std::sync::Arc;

use flowgate::engine::{Actor, Effect, EventKind, Instance, TaskStatus};
use flowgate::plugin::PluginId;
use flowgate::service::{Delivery, Flowgate, ManualClock, Notifier};
use flowgate::store::RedbStore;
use serde_json::{Map, Value, json};

use crate::scenarios::{Harness, T0, harness};

fn purchase(cents: i64) -> Map<String, Value> {
    let data = json!({"amount_cents": cents, "currency": "USD", "category": "office", "requester": "alice"});
    data.as_object().cloned().unwrap_or_default()
}

/// Starts a purchase request of 700.00 (a manager approves), which must start.
async fn start_purchase(flowgate: &Flowgate, tenant: &str) -> Instance {
    flowgate
        .start(tenant, "purchase-request", purchase(70_000), "alice", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn open_roles(instance: &Instance) -> Vec<String> {
    instance
        .tasks
        .values()
        .filter(|t| t.status == TaskStatus::Open)
        .filter_map(|t| t.role.clone())
        .collect()
}

fn plugin_calls_pending(h: &Harness) -> usize {
    let outbox = h.flowgate.store().outbox(&h.tenant, 0, 1_000);
    outbox
        .unwrap_or_default()
        .iter()
        .filter(|e| matches!(e.effect, Effect::CallPlugin(_)))
        .count()
}

#[tokio::test]
async fn a_start_answers_with_the_tasks_its_policy_opened_in_one_commit() {
    let h = harness().await;
    let before = h.flowgate.write_totals();
    let instance = start_purchase(&h.flowgate, &h.tenant).await;
    assert_eq!(open_roles(&instance), ["manager"]);
    let after = h.flowgate.write_totals();
    assert_eq!(
        after.commits - before.commits,
        1,
        "the start and its decision"
    );
    assert_eq!(plugin_calls_pending(&h), 0);
    // The history is the outbox path's: the decision names the plugin and the pinned version.
    let history = h
        .flowgate
        .history(&h.tenant, &instance.id)
        .unwrap_or_default();
    let decided = history
        .iter()
        .find(|e| matches!(e.kind, EventKind::ApprovalRequired { .. }))
        .unwrap_or_else(|| panic!("no decision in {history:?}"));
    let pinned = instance.plugins.get("purchase-approval").cloned();
    assert!(
        matches!(&decided.actor, Actor::Plugin { name, sha256 } if name == "purchase-approval" && Some(sha256) == pinned.as_ref()),
        "{:?}",
        decided.actor
    );
    assert!(decided.reason.as_deref().is_some_and(|r| !r.is_empty()));
    // What the call used and logged is kept beside the decision, for successful calls too.
    let called = history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PluginCalled { fuel, logs, .. } => Some((*fuel, logs.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no plugin call in {history:?}"));
    assert!(called.0 > 1_000 && called.0 < 11_000_000, "{called:?}");
    assert!(
        called
            .1
            .iter()
            .any(|l| l.starts_with("info purchase evaluated") && l.contains("amount=700.00 USD")),
        "{called:?}"
    );
}

#[tokio::test]
async fn a_start_commits_with_the_route_it_reaches() {
    let h = harness().await;
    let ticket = json!({"subject": "refund please", "body": "charged twice", "customer": {"tier": "standard"}});
    let instance = h
        .flowgate
        .start(
            &h.tenant,
            "support-ticket",
            ticket.as_object().cloned().unwrap_or_default(),
            "carl",
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        open_roles(&instance).len(),
        1,
        "routed at the start: {instance:?}"
    );
    assert_eq!(plugin_calls_pending(&h), 0);
}

#[tokio::test]
async fn a_plugin_granted_clocks_decides_through_the_outbox() {
    let h = harness().await;
    let id = PluginId::new(h.tenant.clone(), "purchase-approval");
    let current = h
        .flowgate
        .plugins()
        .current(&id)
        .unwrap_or_else(|| panic!("no purchase-approval"));
    let mut settings = current.settings();
    settings.grants.clocks = true;
    let wasm = crate::common::wasm(flowgate_tests::artifacts::PURCHASE_APPROVAL);
    h.flowgate
        .plugins()
        .install(id, &wasm, settings)
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start_purchase(&h.flowgate, &h.tenant).await;
    assert!(open_roles(&instance).is_empty(), "{instance:?}");
    assert_eq!(plugin_calls_pending(&h), 1);
    h.settle().await;
    let decided = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(open_roles(&decided), ["manager"]);
    assert_eq!(plugin_calls_pending(&h), 0);
}

/// A tenant whose notifications go nowhere.
struct Nowhere;

impl Notifier for Nowhere {
    fn deliver<'a>(
        &'a self,
        _: &'a Delivery,
    ) -> flowgate::service::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("nowhere to deliver".to_string()) })
    }

    fn delivers(&self, _: &str) -> bool {
        false
    }
}

#[tokio::test]
async fn notifications_with_nowhere_to_go_never_enter_the_outbox() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = RedbStore::open(dir.path().join("f.redb")).unwrap_or_else(|e| panic!("{e}"));
    let h = harness().await;
    let flowgate = Flowgate::open(
        Arc::new(store),
        h.flowgate.plugins().clone(),
        Arc::new(ManualClock::new(T0)),
        Arc::new(Nowhere),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/acme/workflows/purchase-request.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    flowgate
        .deploy(&h.tenant, "purchase-request.toml", &source)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start_purchase(&flowgate, &h.tenant).await;
    assert_eq!(open_roles(&instance), ["manager"]);
    let outbox = flowgate
        .store()
        .outbox(&h.tenant, 0, 100)
        .unwrap_or_default();
    assert!(outbox.is_empty(), "{outbox:?}");
}

#[tokio::test]
async fn deliveries_leave_the_outbox_together_not_a_commit_each() {
    let h = harness().await;
    for _ in 0..20 {
        start_purchase(&h.flowgate, &h.tenant).await;
    }
    let pending = h
        .flowgate
        .store()
        .outbox(&h.tenant, 0, 1_000)
        .unwrap_or_default();
    assert_eq!(pending.len(), 20, "one task-assigned notification each");
    let before = h.flowgate.write_totals();
    h.settle().await;
    assert_eq!(h.notifier.delivered().len(), 20);
    let left = h
        .flowgate
        .store()
        .outbox(&h.tenant, 0, 1_000)
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let commits = h.flowgate.write_totals().commits - before.commits;
    assert!(commits <= 2, "{commits} commits to clear 20 deliveries");
}
