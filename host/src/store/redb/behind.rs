//! Commits the write-ahead log holds and redb does not hold yet.
//!
//! A commit is durable, and acknowledged, once its record is synced in the log. redb applies it
//! afterwards, on the store's applier thread, with as many commits as have arrived meanwhile in
//! one redb transaction. The command's caller does not wait for redb: at one client that takes
//! a third of a command's CPU off its answer, and under load the B-tree pages a batch dirties
//! are dirtied once for all of its commits.
//!
//! A read sees every commit acknowledged before it began: it first brings redb up to the log,
//! applying what is still queued itself if the applier has not got there (see
//! `RedbStore::read`). Batches reach redb one at a time, in the log's order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::store::Change;

/// A commit's record number in the log, with its changes.
pub(super) type Logged = (u64, Arc<[Change]>);

#[derive(Debug, Default)]
pub(super) struct Behind {
    queue: Mutex<Queue>,
    /// Wakes the applier when commits arrive, or when it is to stop.
    arrived: Condvar,
    /// Held while a batch is applied, so batches reach redb one at a time and in order.
    applying: Mutex<()>,
    /// The last record the log holds...
    logged: AtomicU64,
    /// ...and the last one redb holds.
    applied: AtomicU64,
    /// The log has grown past its limit: the applier makes a checkpoint after its next batch.
    checkpoint_due: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    commits: Vec<Logged>,
    /// redb refused a batch: it stays queued, and reads and commits fail, until the store is
    /// reopened (which applies the log again).
    failed: bool,
    stop: bool,
    /// The applier waits on `arrived`: only then does a commit need to wake it (a wake-up is a
    /// system call, and under load the applier is nearly always busy with the last batch).
    waiting: bool,
}

/// What the applier is to do next.
pub(super) enum Next {
    Apply,
    Stop,
}

impl Behind {
    /// Nothing behind: redb holds the log up to `last`.
    pub fn new(last: u64) -> Self {
        let behind = Behind::default();
        behind.reset(last);
        behind
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a commit the log holds now. Called with the log locked, so in the log's order.
    pub fn push(&self, seq: u64, changes: Arc<[Change]>) -> usize {
        let mut queue = self.queue();
        queue.commits.push((seq, changes));
        self.logged.store(seq, Ordering::Release);
        if queue.waiting {
            self.arrived.notify_one();
        }
        queue.commits.len()
    }

    /// Asks for a checkpoint after the next batch.
    pub fn checkpoint_due(&self) {
        // Under the queue's lock, so the applier cannot miss it between its look and its wait.
        let _queue = self.queue();
        self.checkpoint_due.store(true, Ordering::Release);
        self.arrived.notify_one();
    }

    /// Whether a checkpoint was asked for, clearing the request.
    pub fn take_checkpoint_due(&self) -> bool {
        self.checkpoint_due.swap(false, Ordering::AcqRel)
    }

    /// Whether redb holds every commit the log held when this was called.
    pub fn caught_up(&self) -> bool {
        let logged = self.logged.load(Ordering::Acquire);
        self.applied.load(Ordering::Acquire) >= logged
    }

    /// Locks out every other applier; the queue is taken with the lock held.
    pub fn applying(&self) -> MutexGuard<'_, ()> {
        self.applying.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every commit queued, oldest first (call with [`Behind::applying`] held). `None` once a
    /// batch failed: nothing is applied past it until the store is reopened.
    pub fn take(&self) -> Option<Vec<Logged>> {
        let mut queue = self.queue();
        if queue.failed {
            return None;
        }
        Some(std::mem::take(&mut queue.commits))
    }

    /// redb holds the batch that ended with `seq`.
    pub fn applied(&self, seq: u64) {
        self.applied.store(seq, Ordering::Release);
    }

    /// redb refused `batch`: it goes back at the front of the queue, which stays stopped.
    pub fn refused(&self, mut batch: Vec<Logged>) {
        let mut queue = self.queue();
        batch.append(&mut queue.commits);
        queue.commits = batch;
        queue.failed = true;
    }

    /// After the store was opened again and the log applied: nothing is behind.
    pub fn reset(&self, last: u64) {
        let mut queue = self.queue();
        queue.commits.clear();
        queue.failed = false;
        self.logged.store(last, Ordering::Release);
        self.applied.store(last, Ordering::Release);
    }

    /// Waits until there is something to apply (or a checkpoint to make), or the store closes.
    pub fn wait(&self) -> Next {
        let mut queue = self.queue();
        loop {
            if queue.stop {
                return Next::Stop;
            }
            let work = !queue.commits.is_empty() || self.checkpoint_due.load(Ordering::Acquire);
            if work && !queue.failed {
                return Next::Apply;
            }
            queue.waiting = true;
            queue = self
                .arrived
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            queue.waiting = false;
        }
    }

    /// Tells the applier to stop.
    pub fn stop(&self) {
        self.queue().stop = true;
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Nothing reads here, so nothing but the commit's wake-up can bring the applier to it: a
    /// lost wake-up shows as a commit never applied. The commits come both while the applier
    /// waits and while it is still busy with the one before.
    #[test]
    fn every_commit_reaches_the_applier_whether_it_waits_or_is_busy() {
        let behind = Arc::new(Behind::new(0));
        let (sender, applied) = std::sync::mpsc::channel();
        let applier = {
            let behind = Arc::clone(&behind);
            std::thread::spawn(move || {
                while let Next::Apply = behind.wait() {
                    let _applying = behind.applying();
                    let batch = behind.take().unwrap_or_default();
                    if let Some(&(last, _)) = batch.last() {
                        // Busy a while, so that some commits arrive while it is not waiting.
                        std::thread::sleep(Duration::from_micros(200));
                        behind.applied(last);
                        let _ = sender.send(last);
                    }
                }
            })
        };
        let mut seen = 0;
        for seq in 1..=200 {
            behind.push(seq, Arc::from([]));
            if seq % 2 == 0 {
                // Wait for the applier to come to this commit: next time it waits again.
                while seen < seq {
                    seen = applied
                        .recv_timeout(Duration::from_secs(10))
                        .unwrap_or_else(|_| panic!("commit {seq} queued, the applier not woken"));
                }
                assert!(behind.caught_up());
            }
        }
        behind.stop();
        applier
            .join()
            .unwrap_or_else(|_| panic!("the applier panicked"));
    }
}
