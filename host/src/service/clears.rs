//! Outbox entries carried out whose removal is not committed yet. A delivery needs no commit of
//! its own: its removal rides along with the next batch the writer commits. Until then the
//! driver keeps the entry claimed, so none is carried out twice, and a crash before the commit
//! only repeats it (at least once, with the same delivery id).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Clears {
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// `(tenant, outbox id)`.
    entries: Vec<(String, u64)>,
    since: Option<Instant>,
}

impl Clears {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, tenant: &str, outbox: u64) {
        let mut waiting = self.lock();
        waiting.entries.push((tenant.to_string(), outbox));
        waiting.since.get_or_insert_with(Instant::now);
    }

    /// How many wait, and for how long the oldest has.
    pub fn pending(&self) -> (usize, Duration) {
        let waiting = self.lock();
        let age = waiting.since.map(|t| t.elapsed()).unwrap_or_default();
        (waiting.entries.len(), age)
    }

    /// Everything waiting, for the writer's next commit.
    pub fn take(&self) -> Vec<(String, u64)> {
        let mut waiting = self.lock();
        waiting.since = None;
        std::mem::take(&mut waiting.entries)
    }

    /// Entries whose commit failed wait again, ahead of the newer ones.
    pub fn put_back(&self, mut entries: Vec<(String, u64)>) {
        if entries.is_empty() {
            return;
        }
        let mut waiting = self.lock();
        entries.append(&mut waiting.entries);
        waiting.entries = entries;
        waiting.since.get_or_insert_with(Instant::now);
    }
}
