//! The driver: carries out committed effects (plugin calls, sub-workflows, notifications) and
//! fires due timers, reporting back with commands. Effects are carried out at least once: an
//! entry leaves the outbox in the same transaction as the command reporting its result (or, for
//! a delivery, with a later commit), so a crash in between repeats the effect with the same
//! idempotency key. Decisions of deterministic plugins rarely come here: they are taken before
//! the commit (see `prepare`); the outbox has the rest, and the calls that failed there.

use std::sync::PoisonError;
use std::time::Duration;

use tokio::task::JoinSet;

use super::writer::Request;
use super::{Delivery, Flowgate, ServiceError};
use crate::engine::{Command, Effect};
use crate::store::OutboxEntry;

/// Entries and timers read per tenant per pass.
const PAGE: usize = 256;
/// Outbox entries carried out wait this long at most for another commit to clear them...
const CLEAR_WAIT: Duration = Duration::from_millis(200);
/// ... or until this many wait.
const CLEAR_BATCH: usize = 256;

impl Flowgate {
    /// Carries out pending effects and fires due timers, once; returns how many it handled.
    pub async fn drive_once(&self) -> Result<usize, ServiceError> {
        let now = self.shared.clock.now();
        let mut work = JoinSet::new();
        let mut count = 0;
        for tenant in self.shared.store.tenants()? {
            if self.is_paused(&tenant) {
                continue;
            }
            for due in self.shared.store.due_timers(&tenant, now, PAGE)? {
                let key = (
                    tenant.clone(),
                    format!("timer:{}:{}", due.instance, due.timer),
                );
                if !self.claim(&key) {
                    continue;
                }
                count += 1;
                let this = self.clone();
                let tenant = tenant.clone();
                work.spawn(async move {
                    let command = Command::TimerFired { timer: due.timer };
                    let result = this.command(&tenant, &due.instance, command).await;
                    this.release(&key);
                    result.map(|_| ())
                });
            }
            for entry in self.shared.store.due_outbox(&tenant, now, PAGE)? {
                let key = super::Shared::outbox_key(&tenant, entry.id);
                if !self.claim(&key) {
                    continue;
                }
                count += 1;
                let this = self.clone();
                let tenant = tenant.clone();
                let (id, attempts) = (entry.id, entry.attempts);
                work.spawn(async move {
                    let result = this.execute(entry).await;
                    match &result {
                        Err(_) => {
                            this.retry_later(&tenant, id, attempts + 1).await;
                            this.release(&key);
                        }
                        Ok(Carried::Committed) => this.release(&key),
                        // Released by the writer once the clear is committed.
                        Ok(Carried::Clearing) => {}
                    }
                    result.map(|_| ())
                });
            }
        }
        while let Some(done) = work.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "driver: an effect or timer failed; it stays pending")
                }
                Err(error) => tracing::error!(%error, "driver: a task panicked"),
            }
        }
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

    /// Runs the driver until `stop` resolves: after every commit, and at least every `tick`.
    pub async fn run_driver(&self, tick: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(error) = self.drive_once().await {
                tracing::error!(%error, "driver: pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Stores a failed attempt: the entry waits 1 s, 2 s, 4 s ... up to 5 minutes before the
    /// next, across restarts too. If that cannot be stored, the entry is simply due again.
    async fn retry_later(&self, tenant: &str, id: u64, attempts: u32) {
        let wait = (1_000u64 << attempts.saturating_sub(1).min(20)).min(300_000);
        let due_at = self.shared.clock.now().saturating_add(wait);
        let tenant = tenant.to_string();
        let stored = self
            .send("retry", |reply| Request::Retry {
                tenant,
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

    fn claim(&self, key: &(String, String)) -> bool {
        let mut set = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.insert(key.clone())
    }

    fn release(&self, key: &(String, String)) {
        let mut set = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.remove(key);
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
        let Some(current) = self.shared.store.instance(tenant, instance)? else {
            return Ok(self.cleared(tenant, id));
        };
        match effect {
            Effect::CallPlugin(call) => {
                let result = self.invoke(&current, &call).await?;
                self.command_done(tenant, instance, call.answered(result), Some(id))
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
                });
                // Keyed by the outbox entry: carrying the effect out again finds the same child.
                let key = Some(format!("child-of:{}:{id}", current.id));
                self.start_child(tenant, &workflow, data, &current.started_by, key, parent)
                    .await?;
                Ok(self.cleared(tenant, id))
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
                match self.shared.notifier.deliver(&delivery).await {
                    Ok(()) => Ok(self.cleared(tenant, id)),
                    Err(error) => Err(ServiceError::Unavailable(format!(
                        "notification {id} not delivered: {error}"
                    ))),
                }
            }
        }
    }

    fn cleared(&self, tenant: &str, outbox: u64) -> Carried {
        self.shared.clears.push(tenant, outbox);
        Carried::Clearing
    }

    /// Commits the clears that waited long enough or are many, when no other commit took them.
    async fn flush_clears(&self, force: bool) -> Result<(), ServiceError> {
        let (count, oldest) = self.shared.clears.pending();
        if count == 0 || !(force || count >= CLEAR_BATCH || oldest >= CLEAR_WAIT) {
            return Ok(());
        }
        self.send("flush", |reply| Request::Flush { reply }).await
    }
}

/// How an outbox entry was carried out.
enum Carried {
    /// By a command that cleared the entry in its own transaction.
    Committed,
    /// Its removal waits for a later commit; the entry stays claimed until then.
    Clearing,
}
