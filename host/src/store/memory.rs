//! An in-memory store: the model the redb store is checked against, and a store for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::index::{message_keys, task_keys, timer_keys};
use super::{
    CallRecord, Change, CompletionKey, DueTimer, Inbox, InstanceFilter, MessageRecord,
    MessageStatus, OutboxEntry, ScheduleState, Storage, StoreError, StoredDefinition, StoredSize,
    TaskRef,
};
use crate::engine::{Event, Instance, Millis};
use crate::metrics::Facts;

/// Plain ordered maps, one per table, behind one lock.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Tables {
    definitions: BTreeMap<(String, String, u32), StoredDefinition>,
    instances: BTreeMap<(String, String), Instance>,
    history: BTreeMap<(String, String, u64), Event>,
    tasks: BTreeSet<(String, String, String, String, String)>,
    timers: BTreeSet<(String, Millis, String, String)>,
    outbox: BTreeMap<(String, u64), OutboxEntry>,
    keys: BTreeMap<(String, String), String>,
    completion_keys: BTreeMap<(String, String), CompletionKey>,
    subscriptions: BTreeSet<(String, String, String, String, String)>,
    messages: BTreeMap<(String, String), MessageRecord>,
    schedules: BTreeMap<(String, String, String), ScheduleState>,
    /// Archived instances' metrics facts, by tenant, workflow, end and instance.
    facts: BTreeMap<(String, String, Millis, String), Facts>,
    /// Recorded plugin calls by tenant, plugin and seq; the last seq given per plugin.
    calls: BTreeMap<(String, String, u64), CallRecord>,
    call_seq: BTreeMap<(String, String), u64>,
    last_outbox: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemStore {
    fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let t = self.lock();
        let found = t
            .definitions
            .range(
                (tenant.to_string(), id.to_string(), 0)
                    ..=(tenant.to_string(), id.to_string(), u32::MAX),
            )
            .map(|(_, d)| d)
            .rfind(|d| version.is_none_or(|v| v == d.version))
            .cloned();
        Ok(found)
    }

    fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError> {
        let t = self.lock();
        Ok(t.definitions
            .iter()
            .filter(|((tn, _, _), _)| tn == tenant)
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        let all: BTreeSet<String> = t.definitions.keys().map(|k| k.0.clone()).collect();
        Ok(all.into_iter().collect())
    }

    fn instance(&self, tenant: &str, id: &str) -> Result<Option<Instance>, StoreError> {
        Ok(self
            .lock()
            .instances
            .get(&(tenant.to_string(), id.to_string()))
            .cloned())
    }

    fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, StoreError> {
        let t = self.lock();
        let beyond = |id: &String| {
            filter
                .after
                .as_ref()
                .is_none_or(|a| match filter.newest_first {
                    true => id < a,
                    false => id > a,
                })
        };
        let mine = t
            .instances
            .iter()
            .filter(|((tn, id), _)| tn == tenant && beyond(id))
            .map(|(_, i)| i);
        let ordered: Box<dyn Iterator<Item = &Instance>> = match filter.newest_first {
            true => Box::new(mine.rev()),
            false => Box::new(mine),
        };
        Ok(ordered
            .filter(|i| filter.matches(i))
            .take(filter.limit)
            .cloned()
            .collect())
    }

    fn history(
        &self,
        tenant: &str,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let t = self.lock();
        let start = (tenant.to_string(), instance.to_string(), from);
        let end = (tenant.to_string(), instance.to_string(), u64::MAX);
        Ok(t.history
            .range(start..=end)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn instance_with_history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Event>)>, StoreError> {
        let t = self.lock();
        let Some(instance) = t.instances.get(&(tenant.to_string(), id.to_string())) else {
            return Ok(None);
        };
        let start = (tenant.to_string(), id.to_string(), 0);
        let end = (tenant.to_string(), id.to_string(), u64::MAX);
        let history = t
            .history
            .range(start..=end)
            .map(|(_, e)| e.clone())
            .collect();
        Ok(Some((instance.clone(), history)))
    }

    fn ended_before(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, String)>, StoreError> {
        let t = self.lock();
        let mut ended: Vec<(Millis, String)> = t
            .instances
            .iter()
            .filter(|((tn, _), _)| tn == tenant)
            .filter_map(|((_, id), i)| super::ended_key(i).map(|at| (at, id.clone())))
            .filter(|(at, _)| *at < before)
            .collect();
        ended.sort();
        ended.truncate(limit);
        Ok(ended)
    }

    fn archived_facts(
        &self,
        tenant: &str,
        workflow: &str,
        from: Millis,
    ) -> Result<Vec<Facts>, StoreError> {
        let t = self.lock();
        let start = (
            tenant.to_string(),
            workflow.to_string(),
            from,
            String::new(),
        );
        Ok(t.facts
            .range(start..)
            .take_while(|((tn, w, _, _), _)| tn == tenant && w == workflow)
            .map(|(_, f)| f.clone())
            .collect())
    }

    fn instance_size(&self, tenant: &str, id: &str) -> Result<Option<StoredSize>, StoreError> {
        let t = self.lock();
        let Some(instance) = t.instances.get(&(tenant.to_string(), id.to_string())) else {
            return Ok(None);
        };
        // Sized as the redb store encodes them.
        fn len<T: serde::Serialize>(value: &T) -> u64 {
            serde_json::to_vec(value).map_or(0, |bytes| bytes.len() as u64)
        }
        let mut size = StoredSize {
            state_bytes: len(instance),
            ..StoredSize::default()
        };
        let start = (tenant.to_string(), id.to_string(), 0);
        let end = (tenant.to_string(), id.to_string(), u64::MAX);
        for (_, event) in t.history.range(start..=end) {
            size.history_events += 1;
            size.history_bytes += len(event);
        }
        Ok(Some(size))
    }

    fn inbox(
        &self,
        tenant: &str,
        inbox: &Inbox,
        status: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRef>, StoreError> {
        let t = self.lock();
        let who = inbox.key();
        Ok(t.tasks
            .iter()
            .filter(|(tn, w, s, task, _)| {
                tn == tenant && *w == who && s == status && after.is_none_or(|a| task.as_str() > a)
            })
            .take(limit)
            .map(|(_, _, _, task, instance)| TaskRef {
                task: task.clone(),
                instance: instance.clone(),
            })
            .collect())
    }

    fn due_timers(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let t = self.lock();
        Ok(t.timers
            .iter()
            .filter(|(tn, due, _, _)| tn == tenant && *due <= now)
            .take(limit)
            .map(|(_, due, instance, timer)| DueTimer {
                due_at: *due,
                instance: instance.clone(),
                timer: timer.clone(),
            })
            .collect())
    }

    fn outbox(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let t = self.lock();
        Ok(t.outbox
            .range((tenant.to_string(), after.saturating_add(1))..=(tenant.to_string(), u64::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn due_outbox(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let t = self.lock();
        let mut due: Vec<OutboxEntry> = t
            .outbox
            .range((tenant.to_string(), 0)..=(tenant.to_string(), u64::MAX))
            .map(|(_, e)| e)
            .filter(|e| e.due_at <= now && !skip(e.id))
            .cloned()
            .collect();
        due.sort_by_key(|e| (e.due_at, e.id));
        due.truncate(limit);
        Ok(due)
    }

    fn started_with_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .keys
            .get(&(tenant.to_string(), key.to_string()))
            .cloned())
    }

    fn completion_key(&self, tenant: &str, key: &str) -> Result<Option<CompletionKey>, StoreError> {
        Ok(self
            .lock()
            .completion_keys
            .get(&(tenant.to_string(), key.to_string()))
            .cloned())
    }

    fn subscribers(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        let mut out: Vec<String> = Vec::new();
        for (tn, n, c, instance, _) in &t.subscriptions {
            if tn == tenant && n == name && c == correlation && out.last() != Some(instance) {
                out.push(instance.clone());
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn message(&self, tenant: &str, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let t = self.lock();
        Ok(t.messages
            .get(&(tenant.to_string(), id.to_string()))
            .cloned())
    }

    fn buffered(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let t = self.lock();
        let mut out: Vec<MessageRecord> = t
            .messages
            .values()
            .filter(|m| m.tenant == tenant && m.name == name && m.correlation == correlation)
            .filter(|m| matches!(m.status, MessageStatus::Buffered { .. }))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        out.truncate(limit);
        Ok(out)
    }

    fn messages(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let t = self.lock();
        Ok(t.messages
            .values()
            .filter(|m| m.tenant == tenant && after.is_none_or(|a| m.id.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }

    fn call_records(
        &self,
        tenant: &str,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let t = self.lock();
        let (tenant, plugin) = (tenant.to_string(), plugin.to_string());
        Ok(t.calls
            .range((tenant.clone(), plugin.clone(), 0)..=(tenant, plugin, u64::MAX))
            .rev()
            .take(limit)
            .map(|(_, record)| record.clone())
            .collect())
    }

    fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleState>, StoreError> {
        let t = self.lock();
        Ok(t.schedules
            .values()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect())
    }

    fn last_outbox_id(&self) -> Result<u64, StoreError> {
        Ok(self.lock().last_outbox)
    }

    fn commit(&self, changes: Arc<[Change]>) -> Result<(), StoreError> {
        let mut t = self.lock();
        for change in changes.iter() {
            match change {
                Change::Definition(d) => {
                    t.definitions.insert(
                        (d.tenant.clone(), d.definition.id.clone(), d.version),
                        d.clone(),
                    );
                }
                Change::Instance {
                    before,
                    after,
                    events,
                    outbox,
                    idempotency_key,
                    completion_key,
                } => {
                    let tenant = after.tenant.clone();
                    let id = after.id.clone();
                    if let Some(before) = before {
                        for (who, status, task) in before.tasks.iter().cloned() {
                            t.tasks
                                .remove(&(tenant.clone(), who, status, task, id.clone()));
                        }
                        for (due, timer) in before.timers.iter().cloned() {
                            t.timers.remove(&(tenant.clone(), due, id.clone(), timer));
                        }
                        for (name, correlation, sub) in before.messages.iter().cloned() {
                            t.subscriptions.remove(&(
                                tenant.clone(),
                                name,
                                correlation,
                                id.clone(),
                                sub,
                            ));
                        }
                    }
                    for (name, correlation, sub) in message_keys(after) {
                        t.subscriptions.insert((
                            tenant.clone(),
                            name,
                            correlation,
                            id.clone(),
                            sub,
                        ));
                    }
                    for (who, status, task) in task_keys(after) {
                        t.tasks
                            .insert((tenant.clone(), who, status, task, id.clone()));
                    }
                    for (due, timer) in timer_keys(after) {
                        t.timers.insert((tenant.clone(), due, id.clone(), timer));
                    }
                    for event in events {
                        t.history
                            .insert((tenant.clone(), id.clone(), event.seq), event.clone());
                    }
                    for entry in outbox {
                        t.last_outbox = t.last_outbox.max(entry.id);
                        t.outbox.insert((tenant.clone(), entry.id), entry.clone());
                    }
                    if let Some(key) = idempotency_key {
                        t.keys.insert((tenant.clone(), key.clone()), id.clone());
                    }
                    if let Some(done) = completion_key {
                        t.completion_keys
                            .insert((tenant.clone(), done.key.clone()), (**done).clone());
                    }
                    t.instances.insert((tenant, id), (**after).clone());
                }
                Change::Message(record) => {
                    t.messages.insert(
                        (record.tenant.clone(), record.id.clone()),
                        (**record).clone(),
                    );
                }
                Change::Schedule(state) => {
                    let key = (
                        state.tenant.clone(),
                        state.workflow.clone(),
                        state.schedule.clone(),
                    );
                    t.schedules.insert(key, (**state).clone());
                }
                Change::ExpireMessages { now, limit } => {
                    let mut due: Vec<(Millis, (String, String))> = t
                        .messages
                        .iter()
                        .filter_map(|(key, m)| match m.status {
                            MessageStatus::Buffered { expires_at } if expires_at < *now => {
                                Some((expires_at, key.clone()))
                            }
                            _ => None,
                        })
                        .collect();
                    due.sort();
                    for (at, key) in due.into_iter().take(*limit) {
                        if let Some(m) = t.messages.get_mut(&key) {
                            m.status = MessageStatus::Expired { at };
                        }
                    }
                }
                Change::ExpireCompletionKeys { before, limit } => {
                    // Oldest first, as the redb store's age index orders them.
                    let mut expired: Vec<(Millis, String, String)> = t
                        .completion_keys
                        .iter()
                        .filter(|(_, done)| done.at < *before)
                        .map(|((tenant, key), done)| (done.at, tenant.clone(), key.clone()))
                        .collect();
                    expired.sort();
                    for (_, tenant, key) in expired.into_iter().take(*limit) {
                        t.completion_keys.remove(&(tenant, key));
                    }
                }
                Change::ClearOutbox { tenant, outbox } => {
                    for id in outbox {
                        t.outbox.remove(&(tenant.clone(), *id));
                    }
                }
                Change::Probe { .. } => {}
                Change::RecordCall { record, keep } => {
                    let (tenant, plugin) = (record.tenant.clone(), record.plugin.clone());
                    let seq = t
                        .call_seq
                        .entry((tenant.clone(), plugin.clone()))
                        .or_default();
                    *seq += 1;
                    let seq = *seq;
                    let mut kept = (**record).clone();
                    kept.seq = seq;
                    t.calls.insert((tenant.clone(), plugin.clone(), seq), kept);
                    if let Some(cut) = seq.checked_sub(*keep) {
                        t.calls
                            .retain(|(tn, p, s), _| !(*tn == tenant && *p == plugin && *s <= cut));
                    }
                }
                Change::Archive {
                    tenant,
                    instance,
                    workflow,
                    ended_at,
                    facts,
                } => {
                    let key = (tenant.clone(), instance.clone());
                    if t.instances.remove(&key).is_none() {
                        continue;
                    }
                    t.tasks
                        .retain(|(tn, _, _, _, i)| !(tn == tenant && i == instance));
                    t.subscriptions
                        .retain(|(tn, _, _, i, _)| !(tn == tenant && i == instance));
                    t.timers
                        .retain(|(tn, _, i, _)| !(tn == tenant && i == instance));
                    t.history
                        .retain(|(tn, i, _), _| !(tn == tenant && i == instance));
                    t.facts.insert(
                        (
                            tenant.clone(),
                            workflow.clone(),
                            *ended_at,
                            instance.clone(),
                        ),
                        (**facts).clone(),
                    );
                }
                Change::Retry {
                    tenant,
                    outbox,
                    attempts,
                    due_at,
                } => {
                    if let Some(entry) = t.outbox.get_mut(&(tenant.clone(), *outbox)) {
                        entry.attempts = *attempts;
                        entry.due_at = *due_at;
                    }
                }
            }
        }
        Ok(())
    }
}
