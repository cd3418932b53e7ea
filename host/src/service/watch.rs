//! Waiting for an instance to change: a caller subscribes, and the writer wakes every subscriber
//! of an instance after a commit that changed it. This lets clients long-poll an instance instead
//! of polling it in a loop.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

/// A tenant and an instance id.
type Key = (String, String);

/// Who waits for which instance.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    waiting: Mutex<HashMap<Key, Vec<oneshot::Sender<()>>>>,
}

impl Watchers {
    /// Resolves after the next commit that changes the instance (or never, if none does).
    pub fn subscribe(&self, tenant: &str, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let list = waiting
            .entry((tenant.to_string(), id.to_string()))
            .or_default();
        // Callers that gave up (timed out) leave closed senders behind: drop them here.
        list.retain(|s| !s.is_closed());
        list.push(tx);
        rx
    }

    /// Wakes whoever waits for these instances.
    pub fn changed<'a>(&self, instances: impl Iterator<Item = &'a Key>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.is_empty() {
            return;
        }
        for key in instances {
            for tx in waiting.remove(key).unwrap_or_default() {
                let _ = tx.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_its_subscribers_only() {
        let w = Watchers::default();
        let a = w.subscribe("acme", "i1");
        let mut b = w.subscribe("acme", "i2");
        let key = ("acme".to_string(), "i1".to_string());
        w.changed([key].iter());
        assert!(a.await.is_ok());
        assert!(b.try_recv().is_err(), "i2 did not change");
    }
}
