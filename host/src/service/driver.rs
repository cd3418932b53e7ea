//! The driver: carries out committed effects (plugin calls, sub-workflows, notifications) and
//! fires due timers, reporting back with commands. Effects are carried out at least once: an
//! entry leaves the outbox in the same transaction as the command reporting its result (or, for
//! a delivery, with a later commit), so a crash in between repeats the effect with the same
//! idempotency key. Decisions of deterministic plugins rarely come here: they are taken before
//! the commit (see `prepare`); the outbox has the rest, and the calls that failed there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::prepare::StartRequest;
use super::writer::Request;
use super::{Delivery, Flowgate, ServiceError, Shared};
use crate::engine::{Command, Effect, Instance};
use crate::store::{InstanceFilter, OutboxEntry};

/// Unclaimed entries and timers read per tenant per pass.
const PAGE: usize = 256;
/// Entries and timers of one tenant being carried out at once, at most: past it, the tenant's
/// further work waits for its own to finish, never anyone else's.
const MAX_PER_TENANT: usize = 512;
/// Deliveries at once to one destination (a webhook's host, a tenant's mail server), and in
/// all: a failing or slow receiver holds its own lane only.
const DELIVERIES_PER_LANE: usize = 4;
const DELIVERIES: usize = 32;
/// Outbox entries carried out wait this long at most for another commit to clear them...
const CLEAR_WAIT: Duration = Duration::from_millis(200);
/// ... or until this many wait.
const CLEAR_BATCH: usize = 256;
/// How long a stopping driver waits for the work it started.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the driver has under way: claims on entries and timers (so none runs twice at once),
/// counted per tenant, and the tasks carrying them out.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    claims: Mutex<Claims>,
    /// Tasks running.
    running: AtomicUsize,
    settled: Notify,
    /// A pass left work behind for a tenant at its cap: a finishing task wakes the driver.
    capped: AtomicBool,
    lanes: Lanes,
}

#[derive(Debug, Default)]
struct Claims {
    keys: std::collections::HashSet<(String, String)>,
    per_tenant: HashMap<String, usize>,
}

impl Dispatch {
    pub(crate) fn claim(&self, key: &(String, String)) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = claims.keys.insert(key.clone());
        if fresh {
            *claims.per_tenant.entry(key.0.clone()).or_default() += 1;
        }
        fresh
    }

    pub(crate) fn release(&self, key: &(String, String)) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if claims.keys.remove(key)
            && let Some(count) = claims.per_tenant.get_mut(&key.0)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                claims.per_tenant.remove(&key.0);
            }
        }
    }

    fn is_claimed(&self, key: &(String, String)) -> bool {
        let claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims.keys.contains(key)
    }

    fn claimed(&self, tenant: &str) -> usize {
        let claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Counts a task until the guard drops.
    pub(crate) fn started(&self, shared: &Arc<Shared>) -> Running {
        self.running.fetch_add(1, Ordering::SeqCst);
        Running {
            shared: shared.clone(),
        }
    }

    /// Waits until no task is running.
    async fn settle(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A running task's count, given back when it ends (even by a panic).
pub(crate) struct Running {
    shared: Arc<Shared>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let dispatch = &self.shared.dispatch;
        if dispatch.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            dispatch.settled.notify_waiters();
        }
        if dispatch.capped.load(Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
    }
}

/// Bounded delivery: a permit of the destination's lane, then one of all deliveries.
#[derive(Debug)]
struct Lanes {
    all: Arc<Semaphore>,
    lanes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            all: Arc::new(Semaphore::new(DELIVERIES)),
            lanes: Mutex::new(HashMap::new()),
        }
    }
}

type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

impl Lanes {
    async fn enter(&self, lane: String) -> Result<Permits, ServiceError> {
        let semaphore = self
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(lane)
            .or_insert_with(|| Arc::new(Semaphore::new(DELIVERIES_PER_LANE)))
            .clone();
        let closed = |_| ServiceError::Unavailable("deliveries are closed".to_string());
        let own = semaphore.acquire_owned().await.map_err(closed)?;
        let all = self.all.clone().acquire_owned().await.map_err(closed)?;
        Ok((own, all))
    }
}

impl Flowgate {
    /// Starts carrying out what is due and not under way already, and returns how many it
    /// started; it does not wait for them. Each tenant has at most [`MAX_PER_TENANT`] under
    /// way, so a tenant whose work is slow (plugins at their deadline, a failing receiver)
    /// waits behind its own work only.
    pub(crate) fn dispatch(&self) -> Result<usize, ServiceError> {
        let now = self.shared.clock.now();
        let dispatch = &self.shared.dispatch;
        let mut count = 0;
        let mut capped = false;
        for tenant in self.shared.store.tenants()? {
            if self.is_paused(&tenant) {
                continue;
            }
            let claimed = dispatch.claimed(&tenant);
            if claimed >= MAX_PER_TENANT {
                capped = true;
                continue;
            }
            // Timers are read past what is claimed already, so the work behind it is reached
            // (a due timer is a key, cheap to read); claimed outbox entries are skipped unread.
            let page = PAGE.min(MAX_PER_TENANT - claimed);
            for due in self.shared.store.due_timers(&tenant, now, page + claimed)? {
                let key = (
                    tenant.clone(),
                    format!("timer:{}:{}", due.instance, due.timer),
                );
                if !dispatch.claim(&key) {
                    continue;
                }
                count += 1;
                let running = dispatch.started(&self.shared);
                let this = self.clone();
                let tenant = tenant.clone();
                tokio::spawn(async move {
                    let _running = running;
                    let command = Command::TimerFired { timer: due.timer };
                    let result = this.command(&tenant, &due.instance, command).await;
                    this.shared.dispatch.release(&key);
                    if let Err(error) = result {
                        tracing::warn!(%tenant, instance = %due.instance, %error, "driver: a timer failed to fire; it stays due");
                    }
                });
            }
            let under_way = |id| dispatch.is_claimed(&Shared::outbox_key(&tenant, id));
            for entry in self
                .shared
                .store
                .due_outbox(&tenant, now, page, &under_way)?
            {
                let key = Shared::outbox_key(&tenant, entry.id);
                if !dispatch.claim(&key) {
                    continue;
                }
                count += 1;
                let running = dispatch.started(&self.shared);
                let this = self.clone();
                let tenant = tenant.clone();
                tokio::spawn(async move {
                    let _running = running;
                    let (id, attempts) = (entry.id, entry.attempts);
                    let instance = entry.instance.clone();
                    match this.execute(entry).await {
                        Err(error) => {
                            tracing::warn!(%tenant, %instance, outbox = id, %error, "driver: an effect failed; it stays pending");
                            this.retry_later(&tenant, id, attempts + 1).await;
                            this.shared.dispatch.release(&key);
                        }
                        Ok(Carried::Committed) => this.shared.dispatch.release(&key),
                        // Released by the writer once the clear is committed.
                        Ok(Carried::Clearing) => {}
                    }
                });
            }
            capped |= dispatch.claimed(&tenant) >= MAX_PER_TENANT;
        }
        dispatch.capped.store(capped, Ordering::SeqCst);
        let looked = self.shared.schedules_at.load(Ordering::SeqCst);
        let busy = self.shared.schedules_busy.load(Ordering::SeqCst);
        if busy || now >= looked.saturating_add(super::schedules::SCHEDULE_PASS_MS) || now < looked
        {
            self.shared.schedules_at.store(now, Ordering::SeqCst);
            let handed = self.dispatch_schedules()?;
            self.shared
                .schedules_busy
                .store(handed > 0, Ordering::SeqCst);
            count += handed;
        }
        Ok(count)
    }

    /// Carries out pending effects and fires due timers, once, and waits for them; returns how
    /// many it handled.
    pub async fn drive_once(&self) -> Result<usize, ServiceError> {
        let count = self.dispatch()?;
        self.shared.dispatch.settle().await;
        self.flush_clears(false).await?;
        Ok(count)
    }

    /// Steps until nothing is pending (for the CLI and tests). Timers not yet due stay armed.
    pub async fn run_until_idle(&self) -> Result<usize, ServiceError> {
        let mut total = 0;
        for _ in 0..10_000 {
            let done = self.drive_once().await?;
            if done == 0 {
                // Settled: what waits to leave the outbox leaves now.
                self.flush_clears(true).await?;
                return Ok(total);
            }
            total += done;
        }
        Err(ServiceError::Unavailable(
            "the driver did not settle after 10,000 passes".to_string(),
        ))
    }

    /// Runs the driver until `stop` resolves: after every commit that gave it work, and at
    /// least every `tick`. It never waits for the work it starts; on `stop` it waits a little
    /// for that work to finish (what does not is carried out again after a restart).
    pub async fn run_driver(&self, tick: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(error) = self.dispatch() {
                tracing::error!(%error, "driver: pass failed");
            }
            if let Err(error) = self.flush_clears(false).await {
                tracing::error!(%error, "driver: clearing the outbox failed");
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
        let settled = tokio::time::timeout(STOP_WAIT, self.shared.dispatch.settle()).await;
        if settled.is_err() {
            tracing::warn!(
                "driver: stopped with work under way; it is carried out again after a restart"
            );
        }
    }

    /// Stores a failed attempt: the entry waits 1 s, 2 s, 4 s ... up to 5 minutes before the
    /// next, across restarts too. If that cannot be stored, the entry is simply due again.
    async fn retry_later(&self, tenant: &str, id: u64, attempts: u32) {
        let wait = (1_000u64 << attempts.saturating_sub(1).min(20)).min(300_000);
        let due_at = self.shared.clock.now().saturating_add(wait);
        let stored = self
            .send("retry", tenant, |reply| Request::Retry {
                tenant: tenant.to_string(),
                outbox: id,
                attempts,
                due_at,
                reply,
            })
            .await;
        if let Err(error) = stored {
            tracing::warn!(%error, outbox = id, "driver: cannot store a retry time");
        }
    }

    /// Carries out one outbox entry and reports back. An entry whose work is done without a
    /// command (a delivery, a child started) waits in `clears` to leave the outbox with the next
    /// commit; it stays claimed until then.
    async fn execute(&self, entry: OutboxEntry) -> Result<Carried, ServiceError> {
        let OutboxEntry {
            id,
            tenant,
            instance,
            effect,
            ..
        } = entry;
        let (tenant, instance) = (tenant.as_str(), instance.as_str());
        let Some(current) = self.shared.committed(tenant, instance)? else {
            return Ok(self.cleared(tenant, id));
        };
        match effect {
            Effect::CallPlugin(call) => {
                let (result, usage) = self.invoke(&current, &call).await?;
                let answered = call.answered_with(result, usage);
                self.command_done(tenant, instance, answered, Some(id))
                    .await?;
                Ok(Carried::Committed)
            }
            Effect::StartChild {
                token,
                activation,
                workflow,
                data,
                wait,
            } => {
                let parent = wait.then(|| crate::engine::ParentLink {
                    instance: current.id.clone(),
                    token,
                    activation,
                    index: None,
                });
                // Keyed by the outbox entry: carrying the effect out again finds the same child.
                let key = Some(format!("child-of:{}:{id}", current.id));
                let started = self
                    .start_request(StartRequest {
                        tenant: tenant.to_string(),
                        definition: workflow.clone(),
                        data,
                        started_by: current.started_by.clone(),
                        key,
                        parent,
                        process: Some(current.process_id().to_string()),
                    })
                    .await;
                match started {
                    Ok(_) => Ok(self.cleared(tenant, id)),
                    Err(refused) if is_refusal(&refused) => {
                        let command = Command::StartRefused {
                            token,
                            activation,
                            workflow,
                            error: refused.to_string(),
                        };
                        self.told(tenant, instance, command, id).await
                    }
                    Err(other) => Err(other),
                }
            }
            Effect::StartChildren {
                token,
                activation,
                workflow,
                children,
                wait,
            } => {
                let refused = self
                    .start_children(&current, id, token, activation, &workflow, children, wait)
                    .await?;
                match refused {
                    None => Ok(self.cleared(tenant, id)),
                    Some(error) => {
                        let command = Command::StartRefused {
                            token,
                            activation,
                            workflow,
                            error,
                        };
                        self.told(tenant, instance, command, id).await
                    }
                }
            }
            Effect::CancelChildren {
                token,
                activation,
                reason,
            } => {
                self.cancel_children(&current, token, activation, &reason)
                    .await?;
                Ok(self.cleared(tenant, id))
            }
            Effect::StartNext {
                workflow,
                data,
                process,
                token,
                activation,
            } => {
                // One next workflow per ended instance, however often this is carried out.
                let key = Some(format!("next-of:{}", current.id));
                let started = self
                    .start_request(StartRequest {
                        tenant: tenant.to_string(),
                        definition: workflow.clone(),
                        data,
                        started_by: format!("workflow {}", current.definition_id),
                        key,
                        parent: None,
                        process: Some(process),
                    })
                    .await;
                // Entries stored before end steps waited for their next workflow have no
                // token to tell: their instance has ended.
                let (Some(token), Some(activation)) = (token, activation) else {
                    return started.map(|_| self.cleared(tenant, id));
                };
                let command = match started {
                    Ok(started) => Command::NextStarted {
                        token,
                        activation,
                        instance: started.instance.id.clone(),
                    },
                    Err(refused) if is_refusal(&refused) => Command::StartRefused {
                        token,
                        activation,
                        workflow,
                        error: refused.to_string(),
                    },
                    Err(other) => return Err(other),
                };
                self.told(tenant, instance, command, id).await
            }
            Effect::NotifyParent {
                parent,
                outcome,
                data,
            } => {
                let command = Command::ChildFinished {
                    token: parent.token,
                    activation: parent.activation,
                    child: current.id.clone(),
                    outcome,
                    data,
                    index: parent.index,
                };
                match self.command(tenant, &parent.instance, command).await {
                    Ok(_) | Err(ServiceError::Command(_)) => Ok(self.cleared(tenant, id)),
                    Err(other) => Err(other),
                }
            }
            Effect::Notify(notification) => {
                let delivery = Delivery {
                    id,
                    tenant: tenant.to_string(),
                    instance: current.id.clone(),
                    notification,
                };
                let lane = self.shared.notifier.lane(tenant);
                let _permits = self.shared.dispatch.lanes.enter(lane).await?;
                match self.shared.notifier.deliver(&delivery).await {
                    Ok(()) => Ok(self.cleared(tenant, id)),
                    Err(error) => Err(ServiceError::Unavailable(format!(
                        "notification {id} not delivered: {error}"
                    ))),
                }
            }
        }
    }

    /// Starts one instance of `workflow` per entry of `children` for a fan-out, each keyed by
    /// the outbox entry and its index so that carrying the effect out again finds the same
    /// ones. A start refused for good (not deployed, data that does not fit) cancels those
    /// already started and answers why, for the step's incident.
    #[allow(clippy::too_many_arguments)]
    async fn start_children(
        &self,
        current: &Instance,
        outbox: u64,
        token: u64,
        activation: u64,
        workflow: &str,
        children: Vec<serde_json::Map<String, serde_json::Value>>,
        wait: bool,
    ) -> Result<Option<String>, ServiceError> {
        let mut started = Vec::new();
        for (index, data) in children.into_iter().enumerate() {
            let parent = wait.then(|| crate::engine::ParentLink {
                instance: current.id.clone(),
                token,
                activation,
                index: Some(index as u32),
            });
            let request = StartRequest {
                tenant: current.tenant.clone(),
                definition: workflow.to_string(),
                data,
                started_by: current.started_by.clone(),
                key: Some(format!("child-of:{}:{outbox}:{index}", current.id)),
                parent,
                process: Some(current.process_id().to_string()),
            };
            match self.start_request(request).await {
                Ok(child) => started.push(child.instance.id.clone()),
                Err(refused) if is_refusal(&refused) => {
                    for child in &started {
                        let reason = format!("instance {} of the fan-out did not start", index + 1);
                        self.cancel_child(current, child, reason).await?;
                    }
                    return Ok(Some(format!(
                        "instance {} of {}: {refused}",
                        index + 1,
                        workflow
                    )));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    /// Cancels the sub-workflows still running that token `token` of `current` started at
    /// `activation`.
    async fn cancel_children(
        &self,
        current: &Instance,
        token: u64,
        activation: u64,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let filter = InstanceFilter {
            process: Some(current.process_id().to_string()),
            status: Some("running".to_string()),
            limit: usize::MAX,
            ..Default::default()
        };
        let children = self.shared.store.instances(&current.tenant, &filter)?;
        for child in children {
            let waited_for = child.parent.as_ref().is_some_and(|p| {
                p.instance == current.id && p.token == token && p.activation == activation
            });
            if waited_for {
                self.cancel_child(current, &child.id, reason.to_string())
                    .await?;
            }
        }
        Ok(())
    }

    async fn cancel_child(
        &self,
        current: &Instance,
        child: &str,
        reason: String,
    ) -> Result<(), ServiceError> {
        let command = Command::Cancel {
            by: format!("workflow {}", current.definition_id),
            reason,
        };
        match self.command(&current.tenant, child, command).await {
            // Ended meanwhile: nothing left to cancel.
            Ok(_) | Err(ServiceError::Command(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Tells the instance how its start went, clearing the entry in the same commit. An
    /// instance that no longer takes it (cancelled meanwhile) lets the entry go.
    async fn told(
        &self,
        tenant: &str,
        instance: &str,
        command: Command,
        outbox: u64,
    ) -> Result<Carried, ServiceError> {
        match self
            .command_done(tenant, instance, command, Some(outbox))
            .await
        {
            Ok(_) => Ok(Carried::Committed),
            Err(ServiceError::Command(_)) => Ok(self.cleared(tenant, outbox)),
            Err(other) => Err(other),
        }
    }

    fn cleared(&self, tenant: &str, outbox: u64) -> Carried {
        self.shared.clears.push((tenant.to_string(), outbox));
        Carried::Clearing
    }

    /// Commits the outbox clears and recorded plugin calls that waited long enough or are many,
    /// when no other commit took them.
    async fn flush_clears(&self, force: bool) -> Result<(), ServiceError> {
        let (cleared, cleared_for) = self.shared.clears.pending();
        let (recorded, recorded_for) = self.shared.recorded.pending();
        let (count, oldest) = (cleared + recorded, cleared_for.max(recorded_for));
        if count == 0 || !(force || count >= CLEAR_BATCH || oldest >= CLEAR_WAIT) {
            return Ok(());
        }
        // Clears are the outbox's, of every tenant: counted under none.
        self.send("flush", "", |reply| Request::Flush { reply })
            .await
    }
}

/// How an outbox entry was carried out.
enum Carried {
    /// By a command that cleared the entry in its own transaction.
    Committed,
    /// Its removal waits for a later commit; the entry stays claimed until then.
    Clearing,
}

/// Whether a start failed for good: the workflow is not deployed, or its start data does not
/// fit. Trying again changes nothing until a person acts; the store being busy or unavailable
/// is worth retrying.
fn is_refusal(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::NotFound { .. }
            | ServiceError::Invalid { .. }
            | ServiceError::Definition(_)
            | ServiceError::Command(_)
    )
}
