//! A call's deadline counts the time the call ran or waited for I/O, not the time its thread sat
//! runnable while other work had the cores. A busy host is the host's condition: a policy that
//! answers in 1 ms must not fail because HTTP, the writer and other tenants' plugins had both
//! cores for 100 ms. Every call still ends by a hard cap in wall time, [`WALL_CAP`] times its
//! limit.
//!
//! The epoch ticker reaches a call's deadline in ticks of wall time; [`CallClock::next`] then
//! subtracts the time the thread waited on the scheduler's run queue since the call began
//! (Linux: `/proc/thread-self/schedstat`) and either gives the call the ticks it has left or
//! ends it. Where the run-queue wait cannot be read, wall time counts, as it always did.

use std::time::{Duration, Instant};

/// How many times its limit a call may take in wall time, however long it waited for a CPU.
pub const WALL_CAP: u32 = 10;

/// When a call began, against what limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallClock {
    started: Instant,
    /// The thread's run-queue wait when the call began, if it can be read.
    waited: Option<Duration>,
    limit: Duration,
    tick: Duration,
}

impl CallClock {
    pub fn start(limit: Duration, tick: Duration) -> Self {
        CallClock {
            started: Instant::now(),
            waited: run_queue_wait(),
            limit,
            tick,
        }
    }

    /// When the call ends in wall time if it never waits for a CPU: what a call waiting on I/O
    /// (an outbound request) may not outlive.
    pub fn ends(&self) -> Instant {
        self.started + self.limit
    }

    /// The deadline to arm the call with, in ticks.
    pub fn first(&self) -> u64 {
        ticks(self.limit, self.tick)
    }

    /// At the deadline: `None` to end the call, or the ticks until the next look.
    pub fn next(&self) -> Option<u64> {
        let wall = self.started.elapsed();
        if wall >= self.limit.saturating_mul(WALL_CAP) {
            return None;
        }
        let waited = match (self.waited, run_queue_wait()) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => Duration::ZERO,
        };
        let counted = wall.saturating_sub(waited);
        let left = self.limit.checked_sub(counted).filter(|d| !d.is_zero())?;
        Some(ticks(left, self.tick))
    }
}

/// `d` in ticks, rounded up, plus one: the current tick may end at any moment.
fn ticks(d: Duration, tick: Duration) -> u64 {
    let n = d.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(n).unwrap_or(u64::MAX).saturating_add(1)
}

/// How long this thread has waited, runnable, for a CPU since it began.
#[cfg(target_os = "linux")]
fn run_queue_wait() -> Option<Duration> {
    use std::cell::RefCell;
    use std::os::unix::fs::FileExt;
    thread_local! {
        // Opened once per thread: `thread-self` names the thread that opens it.
        static SCHEDSTAT: RefCell<Option<std::fs::File>> =
            RefCell::new(std::fs::File::open("/proc/thread-self/schedstat").ok());
    }
    SCHEDSTAT.with_borrow(|file| {
        let mut buf = [0u8; 96];
        let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    })
}

#[cfg(not(target_os = "linux"))]
fn run_queue_wait() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spent_waiting_for_a_cpu_does_not_count() {
        let limit = Duration::from_millis(40);
        let clock = CallClock::start(limit, Duration::from_millis(1));
        assert_eq!(clock.first(), 41);
        // Two threads per core spin while this one does too: it waits on the run queue for a
        // good part of the wall time that passes.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores * 2)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        // Past the limit in wall time, by at most a few ms.
        while clock.started.elapsed() < limit {
            std::hint::spin_loop();
        }
        let at_limit = clock.next();
        let over = clock.started.elapsed() - limit;
        let waited = run_queue_wait()
            .zip(clock.waited)
            .map(|(now, before)| now.saturating_sub(before));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for spinner in spinners {
            let _ = spinner.join();
        }
        // Where the wait can be read and the thread did wait for longer than the wall time past
        // the limit, the call was not ended: only the time it had a CPU counted.
        if waited.is_some_and(|w| w > over + Duration::from_millis(2)) {
            assert!(
                at_limit.is_some(),
                "a starved call was ended at its wall limit"
            );
        }
    }

    #[test]
    fn every_call_ends_by_the_wall_cap() {
        let mut clock = CallClock::start(Duration::from_millis(10), Duration::from_millis(1));
        clock.started -= Duration::from_millis(10 * u64::from(WALL_CAP));
        assert_eq!(clock.next(), None);
    }
}
