//! Delivering notifications: the driver hands each one to a [`Notifier`] and clears it from the
//! outbox only when delivery succeeded, so every notification is delivered at least once.
//! [`ChannelNotifier`] sends each through its tenant's channels (webhook, email), whose settings
//! can change while the daemon runs.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::Serialize;

use crate::engine::Notification;

mod email;
mod webhook;

pub use email::{EmailConfig, EmailSender};
pub use webhook::{WebhookConfig, signature};

/// One notification to deliver; `id` is stable across retries, for receivers to dedupe on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: u64,
    pub tenant: String,
    pub instance: String,
    pub notification: Notification,
}

/// A boxed future, so notifiers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that delivers notifications (webhooks, email, a log).
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one notification; an error leaves it in the outbox for a later retry.
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), String>>;

    /// Whether `tenant`'s notifications go anywhere. When they do not, they are not written to
    /// the outbox at all.
    fn delivers(&self, tenant: &str) -> bool {
        let _ = tenant;
        true
    }

    /// Where `tenant`'s deliveries go (a host): deliveries to one destination share a bounded
    /// lane, so a failing or slow receiver holds up its own deliveries only.
    fn lane(&self, tenant: &str) -> String {
        tenant.to_string()
    }
}

/// Writes notifications to the log.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(
                tenant = %d.tenant,
                instance = %d.instance,
                id = d.id,
                kind = ?d.notification.kind,
                task = ?d.notification.task,
                assignee = ?d.notification.assignee,
                roles = ?d.notification.roles,
                "notify: {}",
                d.notification.title
            );
            Ok(())
        })
    }
}

/// Keeps every delivery, for tests.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    delivered: Mutex<Vec<Delivery>>,
}

impl RecordingNotifier {
    /// What was delivered so far.
    pub fn delivered(&self) -> Vec<Delivery> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Notifier for RecordingNotifier {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), String>> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d.clone());
        Box::pin(async { Ok(()) })
    }
}

/// Makes the link an outside participant is sent to open their task.
pub trait LinkMaker: Send + Sync + std::fmt::Debug {
    /// The link to `task` of `tenant`, valid until `expires`; none when links cannot be made.
    fn link(&self, tenant: &str, task: &str, expires: crate::engine::Millis) -> Option<String>;
}

/// Where a tenant's notifications go.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailSender>,
}

/// Delivers through each tenant's channels. A delivery is done when every channel took it; a
/// channel that took it is not sent it again while another channel is retried (in this process:
/// after a restart a pending delivery goes to every channel again, at least once).
#[derive(Debug, Default)]
pub struct ChannelNotifier {
    tenants: RwLock<BTreeMap<String, Arc<Channels>>>,
    sent: Mutex<HashSet<(String, u64, &'static str)>>,
    links: std::sync::OnceLock<Arc<dyn LinkMaker>>,
}

impl ChannelNotifier {
    /// Sets what makes outside participants' links (once).
    pub fn set_links(&self, links: Arc<dyn LinkMaker>) {
        let _ = self.links.set(links);
    }

    /// The link a delivery carries: for an outside participant's task, theirs.
    fn link_of(&self, d: &Delivery) -> Option<String> {
        let expires = d.notification.link_expires_at?;
        let task = d.notification.task.as_deref()?;
        self.links.get()?.link(&d.tenant, task, expires)
    }

    /// Sets (or replaces) a tenant's channels.
    pub fn set(&self, tenant: &str, channels: Channels) {
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string(), Arc::new(channels));
    }

    /// A tenant's channels.
    pub fn channels(&self, tenant: &str) -> Option<Arc<Channels>> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// Runs one channel unless it already took this delivery.
    async fn once(
        &self,
        d: &Delivery,
        channel: &'static str,
        send: impl Future<Output = Result<(), String>>,
    ) -> Result<(), String> {
        let key = (d.tenant.clone(), d.id, channel);
        if self.sent().contains(&key) {
            return Ok(());
        }
        send.await.map_err(|e| format!("{channel}: {e}"))?;
        self.sent().insert(key);
        Ok(())
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u64, &'static str)>> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Notifier for ChannelNotifier {
    fn delivers(&self, tenant: &str) -> bool {
        self.channels(tenant)
            .is_some_and(|c| c.webhook.is_some() || c.email.is_some())
    }

    /// The webhook's host (a delivery waits for every channel; the webhook is the one that
    /// can be anywhere), else the tenant's own lane.
    fn lane(&self, tenant: &str) -> String {
        let hook = self.channels(tenant).and_then(|c| c.webhook.clone());
        match hook {
            Some(hook) => webhook::host_of(&hook.url),
            None => format!("tenant:{tenant}"),
        }
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let channels = self.channels(&d.tenant).unwrap_or_default();
            if channels.webhook.is_none() && channels.email.is_none() {
                return LogNotifier.deliver(d).await;
            }
            let hook = async {
                match &channels.webhook {
                    Some(hook) => self.once(d, "webhook", webhook::post(hook, d)).await,
                    None => Ok(()),
                }
            };
            let mail = async {
                match &channels.email {
                    Some(sender) => {
                        let link = self.link_of(d);
                        self.once(d, "email", sender.send(d, link.as_deref())).await
                    }
                    None => Ok(()),
                }
            };
            let (hook, mail) = tokio::join!(hook, mail);
            match (hook, mail) {
                (Ok(()), Ok(())) => {
                    let mut sent = self.sent();
                    sent.remove(&(d.tenant.clone(), d.id, "webhook"));
                    sent.remove(&(d.tenant.clone(), d.id, "email"));
                    Ok(())
                }
                (Err(a), Err(b)) => Err(format!("{a}; {b}")),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })
    }
}
