//! The single writer: commands are queued ([`WriterQueue`]), and everything that is waiting when
//! the writer is free goes into one durable transaction (group commit), committed by the sender
//! that found the writer idle or by the writer's own thread. A command is acknowledged only
//! after its transaction committed.
//!
//! Commands arrive prepared (see `prepare`): applied to the state as it was read, with their
//! decisions taken. The writer keeps a prepared state when the instance is still at the version
//! it was read at, and otherwise applies the command afresh; it never calls a plugin. States are
//! shared (`Arc`) between the batch, the store's change and the answer, never copied.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::messages::{self, Otherwise, Outcome};
use super::prepare::Prepared;
use super::{ServiceError, Shared};
use crate::definition::Definition;
use crate::engine::{
    self, Applied, Command, CommandError, Ctx, Effect, EventKind, Instance, Message, Wait,
};
use crate::store::{
    Change, IndexKeys, MessageRecord, MessageStatus, OutboxEntry, StoreError, StoredDefinition,
    message_keys,
};

/// Commands waiting when the writer is free are committed together, up to this many.
const MAX_BATCH: usize = 512;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

pub(crate) enum Request {
    Deploy {
        tenant: String,
        definition: Box<Definition>,
        source: String,
        reply: Reply<(StoredDefinition, bool)>,
    },
    Start {
        prepared: Box<Prepared>,
        key: Option<String>,
        /// The instance, and whether an earlier start with the same key made it.
        reply: Reply<(Arc<Instance>, bool)>,
    },
    Command {
        tenant: String,
        instance: String,
        /// Applied afresh if the prepared state is stale.
        command: Box<Command>,
        prepared: Box<Prepared>,
        /// The outbox entry this command reports on, cleared in the same transaction.
        done: Option<u64>,
        /// A completion's idempotency key, kept with its answer in the same transaction.
        completion: Option<Box<KeyedCompletion>>,
        reply: Reply<Arc<Instance>>,
    },
    /// A message from another system, with its deliveries prepared (by instance id) and what
    /// happens if no step takes it.
    Message {
        tenant: String,
        message: Box<Message>,
        fingerprint: String,
        deliveries: std::collections::BTreeMap<String, Box<Prepared>>,
        otherwise: Otherwise,
        reply: Reply<Outcome>,
    },
    /// A schedule's new state, made from the version it carries, with the start it records
    /// (its idempotency key makes the due time start once).
    Schedule {
        state: Box<crate::store::ScheduleState>,
        start: Option<(Box<Prepared>, String)>,
        reply: Reply<crate::store::ScheduleState>,
    },
    /// Commits the outbox clears that wait (see `clears`), if nothing else does soon.
    Flush { reply: Reply<()> },
    /// Finished instances leave the hot store (retention), their metrics facts kept.
    Archive {
        changes: Vec<Change>,
        reply: Reply<()>,
    },
    /// While commits fail: tries one that changes nothing a reader sees, so that the store is
    /// known to work again without waiting for a command.
    Probe { reply: Reply<()> },
    /// An outbox entry failed: its attempts and next try, stored.
    Retry {
        tenant: String,
        outbox: u64,
        attempts: u32,
        due_at: u64,
        reply: Reply<()>,
    },
}

/// A completion's idempotency key and what it asked.
#[derive(Debug, Clone)]
pub(crate) struct KeyedCompletion {
    pub key: String,
    pub fingerprint: String,
    pub task: String,
}

/// While commits fail for a resource reason (a full disk), the writer refuses batches at once
/// with the cause, and tries again (reopening the store first) at most this often.
const RETRY_FAILED_STORE: std::time::Duration = std::time::Duration::from_secs(1);

/// Requests that may wait for the writer at once; past it, senders wait for room.
const QUEUE: usize = 4096;

/// The way to the writer. A sender that finds the writer idle commits its own request's batch
/// itself, on its own thread (the leader of a group commit, as RocksDB's write thread does):
/// at one client a command then makes no hop to the writer's thread and back. A sender that
/// finds the writer busy leaves its request queued and wakes the writer's thread, which takes
/// everything queued into its next batch. Either way one batch commits at a time, in arrival
/// order.
pub(crate) struct WriterQueue {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Queued>,
    /// Wakes the writer's thread when requests are queued (or the queue closes).
    ready: Condvar,
    /// The writer's state; whoever holds it commits the next batch.
    writer: Mutex<Writer>,
    /// Room in the queue.
    room: Arc<Semaphore>,
}

#[derive(Default)]
struct Queued {
    requests: VecDeque<(Request, OwnedSemaphorePermit)>,
    closed: bool,
}

impl WriterQueue {
    /// Starts the writer's thread.
    pub fn start(writer: Writer) -> std::io::Result<WriterQueue> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queued::default()),
            ready: Condvar::new(),
            writer: Mutex::new(writer),
            room: Arc::new(Semaphore::new(QUEUE)),
        });
        let thread = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("flowgate-writer".to_string())
            .spawn(move || thread.serve())?;
        Ok(WriterQueue { inner })
    }

    /// Queues `request` (waiting for room), and commits it at once if the writer is idle.
    pub async fn send(&self, request: Request) -> Result<(), Request> {
        let Ok(permit) = Arc::clone(&self.inner.room).acquire_owned().await else {
            return Err(request);
        };
        {
            let mut queued = self.inner.lock_queue();
            if queued.closed {
                return Err(request);
            }
            queued.requests.push_back((request, permit));
        }
        match self.inner.writer.try_lock() {
            Ok(mut writer) => {
                // The writer is idle: commit one batch here, then leave what came meanwhile to
                // the writer's thread.
                let batch = self.inner.take();
                if !batch.is_empty() {
                    writer.process(batch);
                }
                drop(writer);
                if !self.inner.lock_queue().requests.is_empty() {
                    self.inner.ready.notify_one();
                }
            }
            Err(_) => self.inner.ready.notify_one(),
        }
        Ok(())
    }

    /// Requests waiting for the writer.
    pub fn depth(&self) -> usize {
        QUEUE - self.inner.room.available_permits()
    }
}

impl Drop for WriterQueue {
    /// The writer's thread ends once it has committed what is queued.
    fn drop(&mut self) {
        self.inner.lock_queue().closed = true;
        self.inner.ready.notify_one();
    }
}

impl Inner {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to a batch of the queued requests, in arrival order; their room is given back.
    fn take(&self) -> Vec<Request> {
        let mut queued = self.lock_queue();
        let n = queued.requests.len().min(MAX_BATCH);
        queued
            .requests
            .drain(..n)
            .map(|(request, _)| request)
            .collect()
    }

    /// The writer's thread: commits what senders leave queued, until the queue closes.
    fn serve(&self) {
        loop {
            {
                let mut queued = self.lock_queue();
                while queued.requests.is_empty() {
                    if queued.closed {
                        return;
                    }
                    queued = self
                        .ready
                        .wait(queued)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            // A sender may have committed them while this thread waited for the writer.
            let batch = self.take();
            if !batch.is_empty() {
                writer.process(batch);
            }
        }
    }
}

/// Expired completion keys are forgotten this often, at most [`EXPIRE_BATCH`] at a time.
const EXPIRE_EVERY_MS: u64 = 60_000;
const EXPIRE_BATCH: usize = 1_000;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    next_outbox: u64,
    /// When expired completion keys were last forgotten.
    expired_at: u64,
    /// Set while commits fail for a resource reason.
    failing: Option<Failing>,
}

/// Why commits fail, and when to try again.
struct Failing {
    error: Arc<StoreError>,
    retry_at: std::time::Instant,
}

/// An answer waiting for the commit.
enum Pending {
    Deploy(
        Reply<(StoredDefinition, bool)>,
        Result<(StoredDefinition, bool), ServiceError>,
    ),
    Instance(Reply<Arc<Instance>>, Result<Arc<Instance>, ServiceError>),
    Started(
        Reply<(Arc<Instance>, bool)>,
        Result<(Arc<Instance>, bool), ServiceError>,
    ),
    Done(Reply<()>),
    Message(Reply<Outcome>, Result<Outcome, ServiceError>),
    Schedule(
        Reply<crate::store::ScheduleState>,
        Result<crate::store::ScheduleState, ServiceError>,
    ),
}

/// What one batch has changed so far, so that later commands in it see earlier ones.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    instances: HashMap<(String, String), Arc<Instance>>,
    start_keys: HashMap<(String, String), String>,
    definitions: HashMap<(String, String), StoredDefinition>,
    /// Messages recorded by this batch, by tenant and id.
    messages: HashMap<(String, String), MessageRecord>,
    /// Schedule states changed by this batch, by tenant, workflow and schedule.
    schedules: HashMap<(String, String, String), crate::store::ScheduleState>,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, last_outbox: u64) -> Self {
        Writer {
            shared,
            next_outbox: last_outbox + 1,
            expired_at: 0,
            failing: None,
        }
    }

    fn process(&mut self, requests: Vec<Request>) {
        let now = self.shared.clock.now();
        let outbox_before = self.next_outbox;
        let mut batch = Batch::default();
        let mut pending = Vec::with_capacity(requests.len());
        let mut flush = false;
        for request in requests {
            match request {
                Request::Deploy {
                    tenant,
                    definition,
                    source,
                    reply,
                } => {
                    let result = self.deploy(&mut batch, tenant, *definition, source, now);
                    pending.push(Pending::Deploy(reply, result));
                }
                Request::Start {
                    prepared,
                    key,
                    reply,
                } => {
                    let result = self.start(&mut batch, *prepared, key, now);
                    pending.push(Pending::Started(reply, result));
                }
                Request::Command {
                    tenant,
                    instance,
                    command,
                    prepared,
                    done,
                    completion,
                    reply,
                } => {
                    let result =
                        self.command(&mut batch, &tenant, &instance, *command, *prepared, now);
                    if let (Ok(after), Some(completion)) = (&result, completion) {
                        keep_completion(&mut batch, after, *completion, now);
                    }
                    if let Some(outbox) = done {
                        batch.changes.push(Change::ClearOutbox {
                            tenant,
                            outbox: vec![outbox],
                        });
                    }
                    pending.push(Pending::Instance(reply, result));
                }
                Request::Message {
                    tenant,
                    message,
                    fingerprint,
                    deliveries,
                    otherwise,
                    reply,
                } => {
                    let result = self.message(
                        &mut batch,
                        &tenant,
                        *message,
                        fingerprint,
                        deliveries,
                        otherwise,
                        now,
                    );
                    pending.push(Pending::Message(reply, result));
                }
                Request::Schedule {
                    state,
                    start,
                    reply,
                } => {
                    let result = self.schedule(&mut batch, *state, start, now);
                    pending.push(Pending::Schedule(reply, result));
                }
                Request::Flush { reply } => {
                    flush = true;
                    pending.push(Pending::Done(reply));
                }
                Request::Archive { changes, reply } => {
                    batch.changes.extend(changes);
                    pending.push(Pending::Done(reply));
                }
                Request::Probe { reply } => {
                    if self.failing.is_some() {
                        batch.changes.push(Change::Probe { at: now });
                    }
                    pending.push(Pending::Done(reply));
                }
                Request::Retry {
                    tenant,
                    outbox,
                    attempts,
                    due_at,
                    reply,
                } => {
                    batch.changes.push(Change::Retry {
                        tenant,
                        outbox,
                        attempts,
                        due_at,
                    });
                    pending.push(Pending::Done(reply));
                }
            }
        }
        if now.saturating_sub(self.expired_at) >= EXPIRE_EVERY_MS {
            self.expired_at = now;
            batch.changes.push(Change::ExpireCompletionKeys {
                before: now.saturating_sub(super::COMPLETION_KEY_RETENTION_MS),
                limit: EXPIRE_BATCH,
            });
            batch.changes.push(Change::ExpireMessages {
                now,
                limit: EXPIRE_BATCH,
            });
        }
        let clears = self.shared.clears.take();
        let mut by_tenant: HashMap<&str, Vec<u64>> = HashMap::new();
        for (tenant, outbox) in &clears {
            by_tenant.entry(tenant).or_default().push(*outbox);
        }
        for (tenant, outbox) in by_tenant {
            batch.changes.push(Change::ClearOutbox {
                tenant: tenant.to_string(),
                outbox,
            });
        }
        // Recorded calls ride along with a batch that commits anyway (or a flush); alone they
        // never make a commit of a batch that changed nothing.
        if !batch.changes.is_empty() || flush {
            for (record, keep) in self.shared.recorded.take() {
                batch.changes.push(Change::RecordCall {
                    record: Box::new(record),
                    keep,
                });
            }
        }
        // Shared with the store, which keeps them until redb has applied them.
        let changes: Arc<[Change]> = std::mem::take(&mut batch.changes).into();
        let committed = if changes.is_empty() {
            Ok(())
        } else {
            self.commit(Arc::clone(&changes), pending.len(), now)
        };
        // The driver has new work only when the batch put something in the outbox or armed a
        // timer that is due already; later timers are its tick's.
        let driver_work = changes.iter().any(|change| match change {
            Change::Instance { outbox, after, .. } => {
                !outbox.is_empty() || after.timers.values().any(|t| t.due_at <= now)
            }
            _ => false,
        });
        let changed: Vec<(String, String)> = batch.instances.into_keys().collect();
        match committed {
            Ok(()) => {
                let states = changes.iter().filter_map(|change| match change {
                    Change::Instance { after, .. } => Some(after),
                    _ => None,
                });
                self.shared.cache.committed(states);
                self.shared.committed_definitions(&changes);
                log_incidents(&changes);
                drop(changes);
                self.shared.release_cleared(&clears);
                for p in pending {
                    match p {
                        Pending::Deploy(reply, result) => drop(reply.send(result)),
                        Pending::Instance(reply, result) => drop(reply.send(result)),
                        Pending::Started(reply, result) => drop(reply.send(result)),
                        Pending::Done(reply) => drop(reply.send(Ok(()))),
                        Pending::Message(reply, result) => drop(reply.send(result)),
                        Pending::Schedule(reply, result) => drop(reply.send(result)),
                    }
                }
                self.shared.watchers.changed(changed.iter());
                if driver_work {
                    // notify_one keeps a permit when the driver is busy: no commit goes unnoticed.
                    self.shared.wake.notify_one();
                }
            }
            Err(error) => {
                // Nothing of the batch is stored: nobody is told it succeeded.
                self.next_outbox = outbox_before;
                self.shared.clears.put_back(clears);
                // Taken back out of the batch, to ride along with the next one.
                let recorded = changes.iter().filter_map(|change| match change {
                    Change::RecordCall { record, keep } => Some(((**record).clone(), *keep)),
                    _ => None,
                });
                self.shared.recorded.put_back(recorded.collect());
                for p in pending {
                    let failed = || ServiceError::CommitFailed(error.clone());
                    match p {
                        Pending::Deploy(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Instance(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Started(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Done(reply) => drop(reply.send(Err(failed()))),
                        Pending::Message(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Schedule(reply, _) => drop(reply.send(Err(failed()))),
                    }
                }
            }
        }
    }

    /// Commits `changes`, or says why not. While commits fail for a resource reason, a batch
    /// is refused at once with the cause until the next try, which reopens the store first.
    fn commit(
        &mut self,
        changes: Arc<[Change]>,
        commands: usize,
        now: u64,
    ) -> Result<(), Arc<StoreError>> {
        if let Some(failing) = &self.failing {
            if std::time::Instant::now() < failing.retry_at {
                return Err(failing.error.clone());
            }
            if let Err(error) = self.shared.store.reopen() {
                tracing::error!(%error, "store: cannot reopen; commits are refused");
                return Err(self.failed(error, now));
            }
        }
        let started = std::time::Instant::now();
        let count = changes.len();
        match self.shared.store.commit(changes) {
            Ok(()) => {
                let seconds = started.elapsed().as_secs_f64();
                self.shared.telemetry.commit(commands, count, seconds);
                if self.failing.take().is_some() {
                    tracing::info!("store: commits succeed again");
                    self.shared.set_store_failure(None);
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "store.commit failed; the batch is refused");
                Err(self.failed(error, now))
            }
        }
    }

    /// Records a failed commit (or reopen): one for a resource reason makes the store failing
    /// until a commit succeeds.
    fn failed(&mut self, error: StoreError, now: u64) -> Arc<StoreError> {
        self.shared.telemetry.commit_failed();
        let error = Arc::new(error);
        if error.is_resource() || self.failing.is_some() {
            if self.failing.is_none() {
                self.shared.set_store_failure(Some(super::StoreFailure {
                    error: error.clone(),
                    since: now,
                }));
            }
            self.failing = Some(Failing {
                error: error.clone(),
                retry_at: std::time::Instant::now() + RETRY_FAILED_STORE,
            });
        }
        error
    }

    fn deploy(
        &mut self,
        batch: &mut Batch,
        tenant: String,
        definition: Definition,
        source: String,
        now: u64,
    ) -> Result<(StoredDefinition, bool), ServiceError> {
        let key = (tenant.clone(), definition.id.clone());
        let latest = match batch.definitions.get(&key) {
            Some(d) => Some(d.clone()),
            None => self
                .shared
                .store
                .definition(&tenant, &definition.id, None)?,
        };
        if let Some(latest) = &latest
            && latest.definition == definition
        {
            return Ok((latest.clone(), false));
        }
        let stored = StoredDefinition {
            tenant,
            version: latest.map_or(1, |d| d.version + 1),
            definition,
            source,
            deployed_at: now,
        };
        batch.definitions.insert(key, stored.clone());
        batch.changes.push(Change::Definition(stored.clone()));
        Ok((stored, true))
    }

    /// Records a prepared start, or answers with the instance an earlier start with the same
    /// idempotency key created.
    fn start(
        &mut self,
        batch: &mut Batch,
        prepared: Prepared,
        key: Option<String>,
        now: u64,
    ) -> Result<(Arc<Instance>, bool), ServiceError> {
        let tenant = prepared.instance.tenant.clone();
        if let Some(key) = &key {
            let known = match batch.start_keys.get(&(tenant.clone(), key.clone())) {
                Some(id) => Some(id.clone()),
                None => self.shared.store.started_with_key(&tenant, key)?,
            };
            if let Some(id) = known {
                return Ok((self.load(batch, &tenant, &id)?, true));
            }
            batch
                .start_keys
                .insert((tenant, key.clone()), prepared.instance.id.clone());
        }
        let recorded = self.record(batch, None, prepared.instance, prepared.applied, key, now);
        Ok((recorded, false))
    }

    fn command(
        &mut self,
        batch: &mut Batch,
        tenant: &str,
        id: &str,
        command: Command,
        prepared: Prepared,
        now: u64,
    ) -> Result<Arc<Instance>, ServiceError> {
        let current = self.load(batch, tenant, id)?;
        if prepared.base_version == Some(current.version) {
            if prepared.applied.is_empty() {
                return Ok(current);
            }
            return Ok(self.record(
                batch,
                prepared.before,
                prepared.instance,
                prepared.applied,
                None,
                now,
            ));
        }
        // Another command changed the instance since it was read: apply this one to the state
        // as it is now. Its decisions, if any, go through the outbox.
        let version = command
            .applies_under()
            .unwrap_or(current.definition_version);
        let def = self
            .shared
            .definition(tenant, &current.definition_id, version)?;
        let before = IndexKeys::of(&current);
        let (after, applied) = engine::apply(
            Ctx {
                def: &def,
                now,
                calendar: &self.shared.calendar(tenant),
            },
            Instance::clone(&current),
            command,
        )?;
        if applied.is_empty() {
            return Ok(current);
        }
        Ok(self.record(batch, Some(before), after, applied, None, now))
    }

    fn load(&self, batch: &Batch, tenant: &str, id: &str) -> Result<Arc<Instance>, ServiceError> {
        if let Some(found) = batch.instances.get(&(tenant.to_string(), id.to_string())) {
            return Ok(found.clone());
        }
        self.shared.committed(tenant, id)?.ok_or_else(|| {
            ServiceError::from(CommandError::NotFound {
                what: "instance",
                id: id.to_string(),
            })
        })
    }

    fn record(
        &mut self,
        batch: &mut Batch,
        before: Option<IndexKeys>,
        after: Instance,
        applied: Applied,
        idempotency_key: Option<String>,
        now: u64,
    ) -> Arc<Instance> {
        let (after, applied) = self.take_buffered(batch, before.as_ref(), after, applied, now);
        self.settle_held(batch, &after, &applied, now);
        // A tenant with no notification channel has nothing to deliver: its notifications are
        // not kept in the outbox, only to be cleared again.
        let notifies = self.shared.notifier.delivers(&after.tenant);
        let outbox = applied
            .effects
            .into_iter()
            .filter(|effect| notifies || !matches!(effect, Effect::Notify(_)))
            .map(|effect| {
                let id = self.next_outbox;
                self.next_outbox += 1;
                OutboxEntry {
                    id,
                    tenant: after.tenant.clone(),
                    instance: after.id.clone(),
                    created_at: now,
                    effect,
                    attempts: 0,
                    due_at: now,
                }
            })
            .collect();
        let after = Arc::new(after);
        batch
            .instances
            .insert((after.tenant.clone(), after.id.clone()), after.clone());
        batch.changes.push(Change::Instance {
            before,
            after: after.clone(),
            events: applied.events,
            outbox,
            idempotency_key,
            completion_key: None,
        });
        after
    }
}

impl Writer {
    /// Records a message: delivered to every step that waits for it now, else handled as the
    /// service prepared (a start, or kept for later).
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        batch: &mut Batch,
        tenant: &str,
        message: Message,
        fingerprint: String,
        mut deliveries: std::collections::BTreeMap<String, Box<Prepared>>,
        otherwise: Otherwise,
        now: u64,
    ) -> Result<Outcome, ServiceError> {
        let key = (tenant.to_string(), message.id.clone());
        let first = match batch.messages.get(&key) {
            Some(found) => Some(found.clone()),
            None => self.shared.store.message(tenant, &message.id)?,
        };
        if let Some(first) = first {
            return Ok(Outcome::Recorded(
                Box::new(messages::replay(first, &fingerprint)?),
                true,
            ));
        }
        // Who waits now: those the service found, those the store knows, and those that
        // began to wait earlier in this batch.
        let mut waiting: std::collections::BTreeSet<String> = deliveries.keys().cloned().collect();
        waiting.extend(self.shared.store.subscribers(
            tenant,
            &message.name,
            &message.correlation,
            messages::MAX_TAKERS,
        )?);
        waiting.extend(
            batch
                .instances
                .values()
                .filter(|i| i.tenant == tenant && messages::waits_for(i, &message))
                .map(|i| i.id.clone()),
        );
        let mut taken = Vec::new();
        for id in waiting {
            let current = self.load(batch, tenant, &id)?;
            if !messages::waits_for(&current, &message) {
                continue;
            }
            match deliveries.remove(&id) {
                Some(prepared) if prepared.base_version == Some(current.version) => {
                    taken.push((prepared.before, prepared.instance, prepared.applied));
                }
                _ => {
                    let def = self.shared.definition(
                        tenant,
                        &current.definition_id,
                        current.definition_version,
                    )?;
                    let before = IndexKeys::of(&current);
                    let (after, applied) = engine::apply(
                        Ctx {
                            def: &def,
                            now,
                            calendar: &self.shared.calendar(tenant),
                        },
                        Instance::clone(&current),
                        Command::ReceiveMessage(message.clone()),
                    )?;
                    taken.push((Some(before), after, applied));
                }
            }
        }
        let status = if taken.is_empty() {
            match otherwise {
                Otherwise::Start(prepared) => {
                    let key = Some(format!("message:{}", message.id));
                    let (started, _) = self.start(batch, *prepared, key, now)?;
                    MessageStatus::Started {
                        instance: started.id.clone(),
                    }
                }
                Otherwise::Buffer { keep_ms } => MessageStatus::Buffered {
                    expires_at: now.saturating_add(keep_ms),
                },
                Otherwise::LookAgain => return Ok(Outcome::Stale),
            }
        } else {
            let mut instances = Vec::with_capacity(taken.len());
            let mut all_held = true;
            for (before, after, applied) in taken {
                instances.push(after.id.clone());
                all_held &= applied
                    .events
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::CommandHeld { .. }));
                self.record(batch, before, after, applied, None, now);
            }
            if all_held {
                MessageStatus::Held { instances, at: now }
            } else {
                MessageStatus::Delivered { instances, at: now }
            }
        };
        let record = MessageRecord {
            tenant: tenant.to_string(),
            id: message.id,
            name: message.name,
            correlation: message.correlation,
            data: message.data,
            sent_by: message.sent_by,
            process: message.process,
            fingerprint,
            received_at: now,
            status,
        };
        batch.messages.insert(key, record.clone());
        batch
            .changes
            .push(Change::Message(Box::new(record.clone())));
        Ok(Outcome::Recorded(Box::new(record), false))
    }

    /// Records a schedule's state if it was made from the state as it is, with its start.
    fn schedule(
        &mut self,
        batch: &mut Batch,
        mut state: crate::store::ScheduleState,
        start: Option<(Box<Prepared>, String)>,
        now: u64,
    ) -> Result<crate::store::ScheduleState, ServiceError> {
        let key = (
            state.tenant.clone(),
            state.workflow.clone(),
            state.schedule.clone(),
        );
        let current = match batch.schedules.get(&key) {
            Some(found) => Some(found.version),
            None => self
                .shared
                .store
                .schedules(&state.tenant)?
                .into_iter()
                .find(|s| s.workflow == state.workflow && s.schedule == state.schedule)
                .map(|s| s.version),
        };
        if current.unwrap_or(0) != state.version {
            return Err(ServiceError::Command(CommandError::Conflict(format!(
                "schedule `{}` of `{}` changed meanwhile; read it again",
                state.schedule, state.workflow
            ))));
        }
        if let Some((prepared, key)) = start {
            let (started, _) = self.start(batch, *prepared, Some(key), now)?;
            state.last_instance = Some(started.id.clone());
            if let Some(run) = state.recent.last_mut() {
                run.instance = Some(started.id.clone());
            }
        }
        state.version += 1;
        batch.schedules.insert(key, state.clone());
        batch
            .changes
            .push(Change::Schedule(Box::new(state.clone())));
        Ok(state)
    }

    /// A step that began to wait for a message takes the oldest one kept for it, in the same
    /// transaction.
    fn take_buffered(
        &mut self,
        batch: &mut Batch,
        before: Option<&IndexKeys>,
        mut after: Instance,
        mut applied: Applied,
        now: u64,
    ) -> (Instance, Applied) {
        // A few rounds at most: a message may lead to another wait with a message kept for it.
        for _ in 0..8 {
            if after.subscriptions.is_empty() {
                break;
            }
            let new: Vec<(String, String)> = message_keys(&after)
                .into_iter()
                .filter(|key| before.is_none_or(|b| !b.messages.contains(key)))
                .map(|(name, correlation, _)| (name, correlation))
                .collect();
            let Some(kept) = new
                .iter()
                .find_map(|(name, correlation)| self.kept(batch, &after, name, correlation, now))
            else {
                break;
            };
            let def = match self.shared.definition(
                &after.tenant,
                &after.definition_id,
                after.definition_version,
            ) {
                Ok(def) => def,
                Err(_) => break,
            };
            let message = Message {
                id: kept.id.clone(),
                name: kept.name.clone(),
                correlation: kept.correlation.clone(),
                data: kept.data.clone(),
                sent_by: kept.sent_by.clone(),
                process: kept.process.clone(),
            };
            match engine::apply(
                Ctx {
                    def: &def,
                    now,
                    calendar: &self.shared.calendar(&after.tenant),
                },
                after.clone(),
                Command::ReceiveMessage(message),
            ) {
                Ok((next, more)) => {
                    after = next;
                    applied.events.extend(more.events);
                    applied.effects.extend(more.effects);
                    let mut record = kept;
                    record.status = MessageStatus::Delivered {
                        instances: vec![after.id.clone()],
                        at: now,
                    };
                    batch
                        .messages
                        .insert((record.tenant.clone(), record.id.clone()), record.clone());
                    batch.changes.push(Change::Message(Box::new(record)));
                }
                Err(error) => {
                    // Kept, not lost: it expires on its time, and the log says why it waits.
                    tracing::warn!(
                        tenant = %after.tenant,
                        instance = %after.id,
                        message = %kept.id,
                        %error,
                        "a kept message does not fit the step that waits for it"
                    );
                    break;
                }
            }
        }
        (after, applied)
    }

    /// A resumed instance took or dropped the messages it held: their records say which.
    fn settle_held(&mut self, batch: &mut Batch, instance: &Instance, applied: &Applied, now: u64) {
        // Held messages apply only when an instance resumes: any other change has none to settle
        // (and the writer reads nothing for it).
        let resumed = applied
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::InstanceResumed { .. }));
        if !resumed {
            return;
        }
        for event in &applied.events {
            let (id, status) = match &event.kind {
                EventKind::MessageReceived { id, .. } => (
                    id,
                    MessageStatus::Delivered {
                        instances: vec![instance.id.clone()],
                        at: now,
                    },
                ),
                EventKind::HeldCommandDropped {
                    message: Some(id), ..
                } => (
                    id,
                    MessageStatus::Dropped {
                        instance: instance.id.clone(),
                        at: now,
                    },
                ),
                _ => continue,
            };
            let key = (instance.tenant.clone(), id.clone());
            let record = match batch.messages.get(&key) {
                Some(found) => Some(found.clone()),
                None => match self.shared.store.message(&instance.tenant, id) {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(tenant = %instance.tenant, message = %id, %error, "reading a held message failed");
                        None
                    }
                },
            };
            let Some(mut record) = record else { continue };
            if !matches!(record.status, MessageStatus::Held { .. }) {
                continue;
            }
            record.status = status;
            batch.messages.insert(key, record.clone());
            batch.changes.push(Change::Message(Box::new(record)));
        }
    }

    /// The oldest message kept for `name` and `correlation` that has not expired, that no
    /// step of this batch took, and that is about `instance`'s case if it names one.
    fn kept(
        &self,
        batch: &Batch,
        instance: &Instance,
        name: &str,
        correlation: &str,
        now: u64,
    ) -> Option<MessageRecord> {
        let tenant = instance.tenant.as_str();
        let live = |m: &MessageRecord| {
            matches!(m.status, MessageStatus::Buffered { expires_at } if expires_at > now)
                && m.process
                    .as_deref()
                    .is_none_or(|p| p == instance.process_id())
        };
        let mut kept: Vec<MessageRecord> = batch
            .messages
            .values()
            .filter(|m| m.tenant == tenant && m.name == name && m.correlation == correlation)
            .filter(|m| live(m))
            .cloned()
            .collect();
        match self.shared.store.buffered(tenant, name, correlation, 16) {
            Ok(stored) => kept.extend(stored.into_iter().filter(|m| {
                // This batch's record of it, if any, says what it is now.
                match batch.messages.get(&(m.tenant.clone(), m.id.clone())) {
                    Some(_) => false,
                    None => live(m),
                }
            })),
            Err(error) => tracing::warn!(%tenant, %error, "reading kept messages failed"),
        }
        kept.into_iter()
            .min_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)))
    }
}

/// Logs each incident the batch raised, once it is stored, with what an operator needs to find
/// it: tenant, instance, workflow, step, plugin and version, kind and blame.
fn log_incidents(changes: &[Change]) {
    for change in changes {
        let Change::Instance { after, events, .. } = change else {
            continue;
        };
        for event in events {
            let EventKind::IncidentRaised { step, token, .. } = &event.kind else {
                continue;
            };
            let Some(Wait::Incident(incident)) = after.tokens.get(token).map(|t| &t.wait) else {
                continue;
            };
            let version = incident.sha256.as_deref().map(crate::plugin::short_version);
            tracing::warn!(
                tenant = %after.tenant,
                instance = %after.id,
                workflow = %after.definition_id,
                workflow_version = after.definition_version,
                %step,
                source = %incident.source,
                plugin = incident.plugin.as_deref().unwrap_or("-"),
                version = version.unwrap_or("-"),
                kind = incident.kind.map(|k| k.as_str()).unwrap_or("-"),
                blame = incident.blame.map(|b| b.as_str()).unwrap_or("-"),
                attempts = incident.attempts,
                error = %incident.error,
                "incident raised"
            );
        }
    }
}

/// Keeps a completion's key and first answer with the change that recorded the completion.
fn keep_completion(batch: &mut Batch, after: &Arc<Instance>, keyed: KeyedCompletion, now: u64) {
    let recorded = batch
        .changes
        .iter_mut()
        .rev()
        .find_map(|change| match change {
            Change::Instance {
                after: state,
                completion_key,
                ..
            } if Arc::ptr_eq(state, after) => Some(completion_key),
            _ => None,
        });
    let Some(slot) = recorded else {
        // The completion changed nothing (it cannot: a completed task is refused), so there is
        // no answer to keep.
        return;
    };
    let answer = serde_json::to_value(super::Completed::of(after)).unwrap_or_default();
    *slot = Some(Box::new(crate::store::CompletionKey {
        key: keyed.key,
        fingerprint: keyed.fingerprint,
        task: keyed.task,
        answer,
        at: now,
    }));
}
