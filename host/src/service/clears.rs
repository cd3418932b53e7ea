//! Work that needs no commit of its own and rides along with the next batch the writer commits:
//! outbox entries carried out, whose removal is not committed yet, and recorded plugin calls.
//!
//! A delivery's removal waits here; until it is committed the driver keeps the entry claimed, so
//! none is carried out twice, and a crash before the commit only repeats it (at least once, with
//! the same delivery id). A recorded call lost to a crash loses the record, never the decision.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::store::CallRecord;

/// Outbox entries carried out: `(tenant, outbox id)`.
pub(crate) type Clears = RideAlong<(String, u64)>;

/// Plugin decisions with their inputs, and how many of the plugin's to keep.
pub(crate) type Recorded = RideAlong<(CallRecord, u64)>;

/// Items waiting for the next commit; past `cap`, the oldest are dropped.
#[derive(Debug)]
pub(crate) struct RideAlong<T> {
    waiting: Mutex<Waiting<T>>,
    cap: usize,
}

#[derive(Debug)]
struct Waiting<T> {
    items: Vec<T>,
    since: Option<Instant>,
}

impl<T> RideAlong<T> {
    /// A queue that never drops: what waits must be committed (outbox clears).
    pub fn unbounded() -> Self {
        Self::bounded(usize::MAX)
    }

    /// A queue that keeps at most `cap` items (recorded calls, while commits fail).
    pub fn bounded(cap: usize) -> Self {
        RideAlong {
            waiting: Mutex::new(Waiting {
                items: Vec::new(),
                since: None,
            }),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, item: T) {
        let mut waiting = self.lock();
        if waiting.items.len() >= self.cap {
            waiting.items.remove(0);
        }
        waiting.items.push(item);
        waiting.since.get_or_insert_with(Instant::now);
    }

    /// How many wait, and for how long the oldest has.
    pub fn pending(&self) -> (usize, Duration) {
        let waiting = self.lock();
        let age = waiting.since.map(|t| t.elapsed()).unwrap_or_default();
        (waiting.items.len(), age)
    }

    /// Everything waiting, for the writer's next commit.
    pub fn take(&self) -> Vec<T> {
        let mut waiting = self.lock();
        waiting.since = None;
        std::mem::take(&mut waiting.items)
    }

    /// Items whose commit failed wait again, ahead of the newer ones.
    pub fn put_back(&self, mut items: Vec<T>) {
        if items.is_empty() {
            return;
        }
        let mut waiting = self.lock();
        items.append(&mut waiting.items);
        let over = items.len().saturating_sub(self.cap);
        items.drain(..over);
        waiting.items = items;
        waiting.since.get_or_insert_with(Instant::now);
    }
}
