//! Delivering notifications: the driver hands each one to a [`Notifier`] and clears it from the
//! outbox only when delivery succeeded, so every notification is delivered at least once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::engine::Notification;

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
