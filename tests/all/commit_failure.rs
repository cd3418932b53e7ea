//! A commit that fails (here as a full disk would) refuses every command of its batch with the
//! cause kept as the error's source, stores nothing of it, and leaves nothing behind in memory;
//! the service says the store is failing, and reopens it before it tries again: once the disk
//! has room, the same command succeeds against the state as it was. (The daemon's test on a
//! real full tmpfs is `daemon::storage`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flowgate::engine::{Event, Instance, Millis};
use flowgate::service::{ManualClock, ServiceError};
use flowgate::store::{
    Change, CompletionKey, DueTimer, Inbox, InstanceFilter, MemStore, MessageRecord, OutboxEntry,
    ScheduleState, Storage, StoreError, StoredDefinition, StoredSize, TaskRef,
};
use serde_json::{Map, json};

use crate::scenarios::T0;

/// A store whose commits fail with ENOSPC while `full` is set.
struct FullDisk {
    inner: MemStore,
    full: AtomicBool,
    reopened: AtomicUsize,
}

impl Storage for FullDisk {
    fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        self.inner.definition(tenant, id, version)
    }
    fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError> {
        self.inner.definitions(tenant)
    }
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.inner.tenants()
    }
    fn completion_key(&self, tenant: &str, key: &str) -> Result<Option<CompletionKey>, StoreError> {
        self.inner.completion_key(tenant, key)
    }
    fn subscribers(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.subscribers(tenant, name, correlation, limit)
    }
    fn message(&self, tenant: &str, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        self.inner.message(tenant, id)
    }
    fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleState>, StoreError> {
        self.inner.schedules(tenant)
    }
    fn call_records(
        &self,
        tenant: &str,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<flowgate::store::CallRecord>, StoreError> {
        self.inner.call_records(tenant, plugin, limit)
    }
    fn buffered(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.inner.buffered(tenant, name, correlation, limit)
    }
    fn messages(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.inner.messages(tenant, after, limit)
    }
    fn instance(&self, tenant: &str, id: &str) -> Result<Option<Instance>, StoreError> {
        self.inner.instance(tenant, id)
    }
    fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, StoreError> {
        self.inner.instances(tenant, filter)
    }
    fn history(
        &self,
        tenant: &str,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.history(tenant, instance, from, limit)
    }
    fn instance_with_history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Event>)>, StoreError> {
        self.inner.instance_with_history(tenant, id)
    }
    fn ended_before(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, String)>, StoreError> {
        self.inner.ended_before(tenant, before, limit)
    }
    fn archived_facts(
        &self,
        tenant: &str,
        workflow: &str,
        from: Millis,
    ) -> Result<Vec<flowgate::metrics::Facts>, StoreError> {
        self.inner.archived_facts(tenant, workflow, from)
    }
    fn instance_size(&self, tenant: &str, id: &str) -> Result<Option<StoredSize>, StoreError> {
        self.inner.instance_size(tenant, id)
    }
    fn inbox(
        &self,
        tenant: &str,
        inbox: &Inbox,
        status: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRef>, StoreError> {
        self.inner.inbox(tenant, inbox, status, after, limit)
    }
    fn due_timers(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.inner.due_timers(tenant, now, limit)
    }
    fn due_outbox(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.due_outbox(tenant, now, limit, skip)
    }
    fn outbox(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox(tenant, after, limit)
    }
    fn started_with_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.started_with_key(tenant, key)
    }
    fn last_outbox_id(&self) -> Result<u64, StoreError> {
        self.inner.last_outbox_id()
    }
    fn commit(&self, changes: Arc<[Change]>) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::DiskFull(std::io::Error::from(
                std::io::ErrorKind::StorageFull,
            )));
        }
        self.inner.commit(changes)
    }
    fn reopen(&self) -> Result<(), StoreError> {
        self.reopened.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_commit_refuses_its_commands_with_the_cause_and_keeps_nothing() {
    let store = Arc::new(FullDisk {
        inner: MemStore::new(),
        full: AtomicBool::new(false),
        reopened: AtomicUsize::new(0),
    });
    let flowgate = crate::common::acme_on(store.clone(), Arc::new(ManualClock::new(T0))).await;
    let data =
        json!({"amount_cents": 70_000, "currency": "USD", "category": "office", "requester": "al"});
    let data: Map<_, _> = data.as_object().cloned().unwrap_or_default();
    let started = flowgate
        .start("acme", "purchase-request", data.clone(), "al", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let task = started
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("no task"));

    store.full.store(true, Ordering::SeqCst);
    let by = flowgate::engine::Person::new("mia", &["manager"]);
    let refused = flowgate
        .complete_task(
            "acme",
            &task,
            by.clone(),
            Some("approve".into()),
            Map::new(),
        )
        .await;
    let Err(ServiceError::CommitFailed(cause)) = refused else {
        panic!("{refused:?}");
    };
    assert!(matches!(&*cause, StoreError::DiskFull(_)), "{cause:?}");
    let source = std::error::Error::source(&ServiceError::CommitFailed(cause.clone()))
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("the disk is full"), "{source}");
    let failing = flowgate.store_failure().await;
    assert!(
        failing.is_some_and(|f| matches!(*f.error, StoreError::DiskFull(_))),
        "the service says why commits fail"
    );
    let unchanged = flowgate
        .instance("acme", &started.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        unchanged.version, started.version,
        "nothing of the failed batch is stored"
    );

    store.full.store(false, Ordering::SeqCst);
    // As a readiness probe does: asking whether the store fails tries a commit (at most once
    // a second), reopening the store first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while flowgate.store_failure().await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store stays failing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(store.reopened.load(Ordering::SeqCst) >= 1, "reopened");
    let done = flowgate
        .complete_task("acme", &task, by, Some("approve".into()), Map::new())
        .await
        .unwrap_or_else(|e| panic!("after the disk has room: {e}"));
    assert!(
        done.open_tasks()
            .any(|t| t.role.as_deref() == Some("procurement"))
    );
}
