//! Retention: finished instances past the tenant's retention leave the hot store for JSON Lines
//! archive files, and their workflow's metrics still count them. Run on both stores, which must
//! agree.

use std::sync::Arc;
use std::time::Duration;

use flowgate::engine::Person;
use flowgate::service::{Clock, Flowgate, ManualClock, ServiceError};
use flowgate::store::{Inbox, MemStore, RedbStore, Storage};
use serde_json::{Map, Value, json};

use crate::scenarios::T0;

const DAY: Duration = Duration::from_secs(86_400);

/// A purchase for a manager's approval; its id and the manager's task.
async fn purchase(flowgate: &Flowgate) -> (String, String) {
    let data =
        json!({"amount_cents": 70_000, "currency": "USD", "category": "office", "requester": "al"});
    let data: Map<String, Value> = data.as_object().cloned().unwrap_or_default();
    let started = flowgate
        .start("acme", "purchase-request", data, "al", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let task = started
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("no task"));
    (started.id.clone(), task)
}

/// Approves as the manager and orders as procurement: the instance completes.
async fn finish(flowgate: &Flowgate, clock: &ManualClock, task: &str) {
    clock.advance(Duration::from_secs(3_600));
    let approved = flowgate
        .complete_task(
            "acme",
            task,
            Person::new("mia", &["manager"]),
            Some("approve".into()),
            Map::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let order = approved
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("no order task"));
    clock.advance(Duration::from_secs(7_200));
    let mut data = Map::new();
    data.insert("po_number".into(), json!("PO-1"));
    let done = flowgate
        .complete_task(
            "acme",
            &order,
            Person::new("pat", &["procurement"]),
            None,
            data,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status.as_str(), "completed");
}

async fn archives_and_keeps_the_metrics(store: Arc<dyn Storage>) {
    let clock = Arc::new(ManualClock::new(T0));
    let flowgate = crate::common::acme_on(store.clone(), clock.clone()).await;
    let (old_a, task_a) = purchase(&flowgate).await;
    let (old_b, task_b) = purchase(&flowgate).await;
    let (running, _) = purchase(&flowgate).await;
    finish(&flowgate, &clock, &task_a).await;
    finish(&flowgate, &clock, &task_b).await;
    // One that ends later, inside the retention.
    clock.advance(2 * DAY);
    let (recent, task_c) = purchase(&flowgate).await;
    finish(&flowgate, &clock, &task_c).await;
    let metrics = |f: &Flowgate| {
        let m = f
            .metrics("acme", "purchase-request", 0, u64::MAX)
            .unwrap_or_else(|e| panic!("{e}"));
        serde_json::to_value(m).unwrap_or_default()
    };
    let before = metrics(&flowgate);
    assert_eq!(before["ended"], 3, "{before}");

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cutoff = clock.now() - DAY.as_millis() as u64;
    let pass = flowgate
        .archive_finished("acme", cutoff, 500, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.instances, 2, "{pass:?}");

    // One file, of the day they ended, a line each with the state and the whole history.
    let day = flowgate::engine::time::format(T0).to_string()[..10].to_string();
    let file = dir.path().join("acme").join(format!("{day}.jsonl"));
    assert_eq!(pass.files, vec![file.clone()]);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["instance"]["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&old_a.as_str()) && ids.contains(&old_b.as_str()));
    for line in &lines {
        let history = line["history"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            history.first().map(|e| &e["event"]),
            Some(&json!("instance-started"))
        );
        assert_eq!(
            history.last().map(|e| &e["event"]),
            Some(&json!("instance-ended"))
        );
        assert_eq!(line["instance"]["status"], "completed");
    }

    // Gone from the store, with their tasks; the others are as they were.
    for id in [&old_a, &old_b] {
        let gone = flowgate.instance("acme", id);
        assert!(
            matches!(gone, Err(ServiceError::NotFound { .. })),
            "{gone:?}"
        );
        assert_eq!(store.instance_size("acme", id).ok().flatten(), None);
    }
    for id in [&running, &recent] {
        assert!(flowgate.instance("acme", id).is_ok(), "{id} was kept");
    }
    let inbox = flowgate
        .inbox("acme", &Inbox::Role("manager".into()), None, 100)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inbox.len(), 1, "the running instance's task stays");
    let procurement = store
        .inbox(
            "acme",
            &Inbox::Role("procurement".into()),
            "completed",
            None,
            100,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        procurement.len(),
        1,
        "only the recent instance's order is left"
    );
    let listed = flowgate
        .instances(
            "acme",
            &flowgate::store::InstanceFilter {
                status: Some("completed".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 1, "{listed:?}");

    // The workflow's metrics are what they were, the archived period included.
    assert_eq!(metrics(&flowgate), before);
    // Nothing more to archive until the recent one is old enough.
    let again = flowgate
        .archive_finished("acme", cutoff, 500, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.instances, 0);
    clock.advance(2 * DAY);
    let later = flowgate
        .archive_finished(
            "acme",
            clock.now() - DAY.as_millis() as u64,
            500,
            dir.path(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(later.instances, 1, "{later:?}");
    assert_eq!(metrics(&flowgate), before);
    assert!(flowgate.instance("acme", &running).is_ok());
}

#[tokio::test]
async fn finished_instances_past_retention_are_archived_and_still_counted_in_memory() {
    archives_and_keeps_the_metrics(Arc::new(MemStore::new())).await;
}

#[tokio::test]
async fn finished_instances_past_retention_are_archived_and_still_counted_in_redb() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = RedbStore::open(dir.path().join("f.redb")).unwrap_or_else(|e| panic!("{e}"));
    archives_and_keeps_the_metrics(Arc::new(store)).await;
}

#[tokio::test]
async fn a_case_leaves_the_hot_store_whole_once_its_last_instance_is_past_retention() {
    let clock = Arc::new(ManualClock::new(T0));
    let flowgate = crate::common::acme_on(Arc::new(MemStore::new()), clock.clone()).await;
    let data = json!({"client": "Initech", "client_email": "bill@initech.example"});
    let started = flowgate
        .start(
            "acme",
            "client-questionnaire",
            data.as_object().cloned().unwrap_or_default(),
            "sam",
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let task = started
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("no questionnaire task"));
    clock.advance(Duration::from_secs(3_600));
    let mut answers = Map::new();
    answers.insert("contract".into(), json!("MSA-7"));
    answers.insert("employees".into(), json!(40));
    let done = flowgate
        .complete_task("acme", &task, Person::new("sam", &["sales"]), None, answers)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let questionnaire = flowgate
        .instance("acme", &done.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(questionnaire.status.as_str(), "completed");

    // The questionnaire ended long ago, but its case goes on (the contract is out for signing):
    // it stays, so the case is whole for its process metrics and for anyone looking at it.
    clock.advance(30 * DAY);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pass = flowgate
        .archive_finished("acme", clock.now(), 500, dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.instances, 0, "{pass:?}");
    let case = flowgate
        .process("acme", &started.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(case.instances.len(), 2);
    assert!(case.running);
    assert!(flowgate.instance("acme", &started.id).is_ok());
}
