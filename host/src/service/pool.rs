//! The plugin pool: where every plugin call runs. Wasm is CPU work, so calls run on the pool's own
//! threads, except a deterministic plugin's short decisions, which run on the caller's thread when
//! they can start at once (see [`Placement`]). At most `workers` calls run at once in all, and for
//! one tenant at most its quota's `concurrency` at once and its `time_per_second` of plugin time in
//! each second: a tenant whose plugins run long, or many, holds only its share, and another
//! tenant's call waits for at most a call of its own tenant, never behind a flood of another's.
//! Within a tenant, calls wait in arrival order.
//!
//! Quotas share out the pool; the cores are shared by the scheduler. A plugin whose calls run long
//! on the CPU (more than [`LONG_CALL`] a call, recently) has its calls run in the *long lane*:
//! threads at the lowest priority there is (Linux `SCHED_IDLE`), which take a core only when
//! nothing else wants it. HTTP, the writer and the short calls every decision and most actions make
//! then never wait for a core behind a tenant's plugin that loops to its deadline: on two cores,
//! one tenant's flood at its full quota (one core) otherwise took another's start p99 to 1.6x to
//! 2.7x of its p99 alone (see BENCHMARKS.md). A long call is not cut short for it: its deadline
//! counts the time it ran, not the time it waited for a core (see `plugin::deadline`). A decision
//! whose plugin is in the long lane runs there too, so on a busy machine the start or completion
//! that waits for it waits for a free core, up to ten times the plugin's limit. The short lane's
//! threads run at the daemon's priority, or `FLOWGATE_PLUGIN_NICE` below it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ServiceError;

/// What one tenant's plugins may use of the pool, set in its `tenant.toml` (`[quotas]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginQuota {
    /// Calls at once.
    pub plugin_concurrency: usize,
    /// Plugin time in each second, in milliseconds of calls' wall time (a call that waits for
    /// its deadline counts): past it, the tenant's next calls wait for the next second.
    pub plugin_ms_per_second: u64,
}

/// The cores this process may use, read once: `available_parallelism` reads the cgroup files on
/// every call (7% of the daemon's CPU when a default quota was asked for per request).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from))
}

impl Default for PluginQuota {
    /// Half the machine: half the cores' worth of calls at once, and of plugin time.
    fn default() -> Self {
        let half = cores().div_ceil(2).max(1);
        PluginQuota {
            plugin_concurrency: half,
            plugin_ms_per_second: 1_000 * half as u64,
        }
    }
}

/// A plugin whose calls take more CPU time than this, on a moving average, runs in the long lane.
/// A decision takes 20 to 70 µs; a call that loops to a 100 ms deadline, 100 ms.
pub const LONG_CALL: Duration = Duration::from_millis(5);

/// Where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Threads at the daemon's priority (or `FLOWGATE_PLUGIN_NICE` below it).
    Short,
    /// Threads at the lowest priority, for plugins whose calls run long.
    Long,
}

/// Where a call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the pool's threads.
    Pool,
    /// On the calling thread, if the call can start at once (the tenant's share, its time for
    /// the second and a worker all free) and its plugin's calls are short (under
    /// [`SHORT_CALL`] of CPU, on average, once it has been called): a decision of a few tens
    /// of µs then costs no hand-off to a plugin thread and back, two thread wake-ups that took
    /// longer than the decision itself. The call holds the same permits as on the pool, so a
    /// tenant's share and time are counted alike. Only for deterministic plugins: nothing
    /// granted lets their calls wait on I/O, so fuel and the time limit bound how long the
    /// caller's thread is held, as a leader's commit holds it for the log's durable write.
    CallerIfShort,
}

/// A plugin whose calls take less CPU time than this, on average, may have them run on the
/// calling thread (see [`Placement::CallerIfShort`]).
pub const SHORT_CALL: Duration = Duration::from_millis(1);

/// One tenant's use of the pool so far, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareStats {
    pub tenant: String,
    /// Calls waiting for the tenant's share.
    pub waiting: usize,
    /// Calls running.
    pub running: usize,
    /// Plugin time used, in all.
    pub plugin_time: Duration,
    /// Times a call waited because the tenant had used its time for the second.
    pub throttled: u64,
    /// Calls run in the long lane, below the daemon's priority.
    pub long_calls: u64,
}

/// A plugin's CPU time per call, a moving average (a quarter the newest call's), in nanoseconds;
/// `u64::MAX` until its first call. Calls of one plugin at once may each update it; one of the
/// updates wins, which an average does not mind.
#[derive(Debug)]
struct Cost(AtomicU64);

impl Default for Cost {
    fn default() -> Self {
        Cost(AtomicU64::new(u64::MAX))
    }
}

impl Cost {
    /// The lane for the plugin's next call: the long one once its calls run long. Its first
    /// call runs in the short lane.
    fn lane(&self) -> Lane {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => Lane::Short,
            nanos if Duration::from_nanos(nanos) > LONG_CALL => Lane::Long,
            _ => Lane::Short,
        }
    }

    /// Whether the plugin's calls are known to be short (see [`SHORT_CALL`]).
    fn is_short(&self) -> bool {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => false,
            nanos => Duration::from_nanos(nanos) < SHORT_CALL,
        }
    }

    /// Notes what a call cost on the CPU.
    fn add(&self, cpu: Duration) {
        let cpu = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX - 1);
        let next = match self.0.load(Ordering::Relaxed) {
            u64::MAX => cpu,
            cost => cost / 4 * 3 + cpu / 4,
        };
        self.0.store(next, Ordering::Relaxed);
    }
}

/// Bounded plugin execution with a fair share per tenant.
#[derive(Debug)]
pub struct PluginPool {
    all: Arc<Semaphore>,
    workers: usize,
    /// Added to the daemon's nice value for the plugin threads.
    nice: i32,
    default_quota: PluginQuota,
    tenants: Mutex<HashMap<String, Arc<Share>>>,
    /// Started with the first call.
    threads: std::sync::OnceLock<Threads>,
}

/// How much less the plugin threads are scheduled than the daemon's others, as a nice value
/// added to the daemon's (`FLOWGATE_PLUGIN_NICE`, 0 to 19; at +10 a busy thread gets about a
/// tenth of the CPU of a thread at +0 competing with it). 0 by default: the fairness benchmark
/// showed no steady gain from it. A starved call does not reach its deadline for it (the
/// deadline does not count time spent waiting for a CPU; see `plugin::deadline`).
fn plugin_nice() -> i32 {
    std::env::var("FLOWGATE_PLUGIN_NICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(0, |n: i32| n.clamp(0, 19))
}

/// A job for a plugin thread.
type Job = Box<dyn FnOnce() + Send>;

/// The plugin pool's threads, a set per lane, taking jobs in turn; they end when the pool is
/// dropped.
#[derive(Debug)]
struct Threads {
    short: std::sync::mpsc::Sender<Job>,
    long: std::sync::mpsc::Sender<Job>,
}

impl Threads {
    /// `count` threads in each lane: either may hold every call the pool lets run at once.
    fn start(count: usize, nice: i32) -> Threads {
        Threads {
            short: Self::lane(count, "flowgate-plugin", move || {
                if nice > 0 {
                    lower_priority(nice);
                }
            }),
            long: Self::lane(count, "flowgate-plugin-long", lowest_priority),
        }
    }

    fn lane(
        count: usize,
        name: &str,
        prepare: impl Fn() + Clone + Send + 'static,
    ) -> std::sync::mpsc::Sender<Job> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count {
            let (queue, prepare) = (queue.clone(), prepare.clone());
            let started = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    prepare();
                    loop {
                        // One thread waits for the next job; the others wait for the lock.
                        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = started {
                tracing::error!(%error, "cannot start a plugin thread");
            }
        }
        jobs
    }

    fn jobs(&self, lane: Lane) -> &std::sync::mpsc::Sender<Job> {
        match lane {
            Lane::Short => &self.short,
            Lane::Long => &self.long,
        }
    }
}

/// Runs the calling thread at the lowest priority there is: Linux's `SCHED_IDLE` (a thread that
/// runs only when no other wants the core, and that a waking thread always preempts), or nice
/// 19 where that is refused.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param`, a valid `sched_param` that outlives the
        // call; pid 0 is the calling thread. Moving to SCHED_IDLE needs no privilege.
        #[allow(unsafe_code)]
        let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if set != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "cannot run the long lane's plugin thread at idle priority; it runs at nice 19");
            lower_priority(19);
        }
    }
}

/// CPU time the calling thread has used, where it can be read.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Lowers the calling thread's scheduling priority by `nice` (on Linux the nice value is the
/// thread's).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::getpriority_process(None)
        .and_then(|daemon| rustix::process::setpriority_process(None, (daemon + nice).min(19)))
    {
        tracing::warn!(%error, "cannot lower a plugin thread's priority; it runs at the daemon's");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[derive(Debug)]
struct Share {
    quota: PluginQuota,
    calls: Arc<Semaphore>,
    /// The current one-second window and the time used in it.
    window: Mutex<(Instant, Duration)>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    used_nanos: AtomicU64,
    throttled: AtomicU64,
    long_calls: AtomicU64,
    /// Each plugin's CPU time per call.
    costs: Mutex<HashMap<String, Arc<Cost>>>,
}

impl Share {
    fn new(quota: PluginQuota) -> Self {
        Share {
            quota,
            calls: Arc::new(Semaphore::new(quota.plugin_concurrency.max(1))),
            window: Mutex::new((Instant::now(), Duration::ZERO)),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            used_nanos: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            long_calls: AtomicU64::new(0),
            costs: Mutex::new(HashMap::new()),
        }
    }

    /// What `plugin`'s calls cost so far.
    fn cost_of(&self, plugin: &str) -> Arc<Cost> {
        let mut costs = self.costs.lock().unwrap_or_else(PoisonError::into_inner);
        match costs.get(plugin) {
            Some(cost) => cost.clone(),
            None => costs.entry(plugin.to_string()).or_default().clone(),
        }
    }

    /// How long to wait before the next call: zero while the window has time left.
    fn wait(&self) -> Duration {
        let limit = Duration::from_millis(self.quota.plugin_ms_per_second);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = window.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            // A call longer than the window carries its excess into the next one.
            let carried = window.1.saturating_sub(limit);
            *window = (Instant::now(), carried);
            return Duration::ZERO;
        }
        if window.1 < limit {
            Duration::ZERO
        } else {
            Duration::from_secs(1) - elapsed
        }
    }

    fn spend(&self, time: Duration) {
        self.window.lock().unwrap_or_else(PoisonError::into_inner).1 += time;
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.used_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Default for PluginPool {
    /// Two calls per core in all (a call often waits on its deadline tick), and the default
    /// quota for each tenant.
    fn default() -> Self {
        PluginPool::new((2 * cores()).max(2), PluginQuota::default())
    }
}

impl PluginPool {
    /// At most `workers` calls at once; each tenant without a quota of its own gets `quota`.
    pub fn new(workers: usize, quota: PluginQuota) -> Self {
        PluginPool {
            all: Arc::new(Semaphore::new(workers.max(1))),
            workers: workers.max(1),
            nice: plugin_nice(),
            default_quota: PluginQuota {
                plugin_concurrency: quota.plugin_concurrency.clamp(1, workers.max(1)),
                ..quota
            },
            tenants: Mutex::new(HashMap::new()),
            threads: std::sync::OnceLock::new(),
        }
    }

    /// Runs the plugin threads `nice` below the daemon's priority (0 to 19), for calls started
    /// after the first.
    pub fn with_nice(mut self, nice: i32) -> Self {
        self.nice = nice.clamp(0, 19);
        self
    }

    /// Sets `tenant`'s quota (from its configuration); calls under way finish on the old one.
    pub fn set_quota(&self, tenant: &str, quota: PluginQuota) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if tenants.get(tenant).is_some_and(|s| s.quota == quota) {
            return;
        }
        let share = Share::new(quota);
        if let Some(old) = tenants.get(tenant) {
            share
                .used_nanos
                .store(old.used_nanos.load(Ordering::Relaxed), Ordering::Relaxed);
            share
                .throttled
                .store(old.throttled.load(Ordering::Relaxed), Ordering::Relaxed);
            share
                .long_calls
                .store(old.long_calls.load(Ordering::Relaxed), Ordering::Relaxed);
            let costs = old.costs.lock().unwrap_or_else(PoisonError::into_inner);
            *share.costs.lock().unwrap_or_else(PoisonError::into_inner) = costs.clone();
        }
        tenants.insert(tenant.to_string(), Arc::new(share));
    }

    fn share(&self, tenant: &str) -> Arc<Share> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Share::new(self.default_quota)))
            .clone()
    }

    /// Each tenant's use so far.
    pub fn stats(&self) -> Vec<ShareStats> {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stats: Vec<ShareStats> = tenants
            .iter()
            .map(|(tenant, share)| ShareStats {
                tenant: tenant.clone(),
                waiting: share.waiting.load(Ordering::Relaxed),
                running: share.running.load(Ordering::Relaxed),
                plugin_time: Duration::from_nanos(share.used_nanos.load(Ordering::Relaxed)),
                throttled: share.throttled.load(Ordering::Relaxed),
                long_calls: share.long_calls.load(Ordering::Relaxed),
            })
            .collect();
        stats.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        stats
    }

    /// Runs `call` of `tenant`'s `plugin` once the tenant's share, its time and a worker are
    /// free, in the lane the plugin's recent calls put it in.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        plugin: &str,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        self.run_placed(tenant, plugin, Placement::Pool, call).await
    }

    /// Runs `call` as [`PluginPool::run`] does, or on the calling thread where `placement`
    /// allows it and the call can start at once (see [`Placement::CallerIfShort`]).
    pub async fn run_placed<T: Send + 'static>(
        &self,
        tenant: &str,
        plugin: &str,
        placement: Placement,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let closed = |_| ServiceError::Unavailable("the plugin pool is closed".to_string());
        let share = self.share(tenant);
        let cost = share.cost_of(plugin);
        if placement == Placement::CallerIfShort
            && cost.is_short()
            && let Some(held) = self.hold_at_once(&share)
        {
            share.running.fetch_add(1, Ordering::Relaxed);
            let ran = measured(&share, &cost, call);
            drop(held);
            share.running.fetch_sub(1, Ordering::Relaxed);
            return ran.map_err(|_| panicked());
        }
        share.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&share.waiting);
        // The tenant's permit first: a tenant queues on its own share, never on the shared one.
        let permit = share.calls.clone().acquire_owned().await.map_err(closed)?;
        loop {
            let wait = share.wait();
            if wait.is_zero() {
                break;
            }
            share.throttled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
        let worker = self.all.clone().acquire_owned().await.map_err(closed)?;
        drop(waiting);
        share.running.fetch_add(1, Ordering::Relaxed);
        let lane = cost.lane();
        if lane == Lane::Long {
            share.long_calls.fetch_add(1, Ordering::Relaxed);
        }
        let counted = share.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = measured(&counted, &cost, call);
            // Given back before the answer: the caller's next call finds them free.
            drop((permit, worker));
            let _ = answer.send(result);
        });
        let threads = self
            .threads
            .get_or_init(|| Threads::start(self.workers, self.nice));
        let sent = threads.jobs(lane).send(job);
        let ran = match sent {
            Ok(()) => answered.await.map_err(|_| "its thread stopped".to_string()),
            Err(_) => Err("the pool's threads have stopped".to_string()),
        };
        share.running.fetch_sub(1, Ordering::Relaxed);
        match ran {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(panicked()),
            Err(why) => Err(ServiceError::Unavailable(format!(
                "a plugin call could not run: {why}"
            ))),
        }
    }

    /// The tenant's permit and a worker's, if both are free now and the tenant has time left
    /// in this second; `None` if the call would have to wait for any of them.
    fn hold_at_once(&self, share: &Share) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let permit = share.calls.clone().try_acquire_owned().ok()?;
        if !share.wait().is_zero() {
            return None;
        }
        let worker = self.all.clone().try_acquire_owned().ok()?;
        Some((permit, worker))
    }
}

/// Runs `call`, counting its wall time against the tenant's share and its CPU time in its
/// plugin's cost; a panic in it is caught.
fn measured<T>(share: &Share, cost: &Cost, call: impl FnOnce() -> T) -> std::thread::Result<T> {
    let (began, cpu) = (Instant::now(), thread_cpu_time());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    let wall = began.elapsed();
    share.spend(wall);
    let cpu = cpu.zip(thread_cpu_time()).map(|(a, b)| b.saturating_sub(a));
    cost.add(cpu.unwrap_or(wall));
    result
}

fn panicked() -> ServiceError {
    ServiceError::Unavailable("a plugin call panicked in the host".to_string())
}

/// Counts a call as waiting until dropped (also when the caller gives up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_tenant_holds_only_its_share() {
        let quota = PluginQuota {
            plugin_concurrency: 1,
            plugin_ms_per_second: 1_000,
        };
        let pool = Arc::new(PluginPool::new(2, quota));
        let b_ran = Arc::new(AtomicBool::new(false));
        let (busy, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut flood = Vec::new();
        for _ in 0..8 {
            let (pool, b_ran) = (pool.clone(), b_ran.clone());
            let (busy, peak) = (busy.clone(), peak.clone());
            flood.push(tokio::spawn(async move {
                pool.run("a", "bot", move || {
                    peak.fetch_max(busy.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    // Each of a's calls lasts until b's call has run: if b had to wait behind
                    // a's flood, this would give up after 10 s and say so.
                    let waited = Instant::now();
                    while !b_ran.load(Ordering::SeqCst)
                        && waited.elapsed() < Duration::from_secs(10)
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    busy.fetch_sub(1, Ordering::SeqCst);
                    b_ran.load(Ordering::SeqCst)
                })
                .await
            }));
        }
        let b = pool.run("b", "bot", {
            let b_ran = b_ran.clone();
            move || b_ran.store(true, Ordering::SeqCst)
        });
        assert!(b.await.is_ok());
        for f in flood {
            assert!(
                matches!(f.await, Ok(Ok(true))),
                "a call of a waited 10 s for b"
            );
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            1,
            "a ran more than its share at once"
        );
    }
}

#[cfg(test)]
mod placement_tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::ThreadId;
    use std::time::Duration;

    use super::*;

    /// Where a call ran: the thread, and whether it was one of the pool's.
    fn where_it_ran() -> (ThreadId, bool) {
        let on_pool = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("flowgate-plugin-"));
        (std::thread::current().id(), on_pool)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_call_runs_on_the_callers_thread_only_when_it_can_start_at_once() {
        let quota = PluginQuota {
            plugin_concurrency: 1,
            plugin_ms_per_second: 1_000,
        };
        let pool = Arc::new(PluginPool::new(2, quota));
        let here = Placement::CallerIfShort;
        // A plugin's first call runs on the pool: what its calls cost is not known yet.
        let (_, on_pool) = pool
            .run_placed("a", "policy", here, where_it_ran)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(on_pool, "a first call ran on the caller's thread");
        // Known to be short now: on the caller's thread, with nothing in between.
        let caller = std::thread::current().id();
        let ran = pool.run_placed("a", "policy", here, where_it_ran).await;
        assert_eq!(ran.ok(), Some((caller, false)));
        // Placement::Pool keeps it on the pool.
        let ran = pool
            .run_placed("a", "policy", Placement::Pool, where_it_ran)
            .await;
        assert!(ran.is_ok_and(|(_, on_pool)| on_pool));

        // While another call of the tenant holds its one share, the next waits its turn and
        // runs on the pool; another tenant's runs at once on its caller's thread.
        let release = Arc::new(AtomicBool::new(false));
        let holding = {
            let (pool, release) = (pool.clone(), release.clone());
            tokio::spawn(async move {
                pool.run("a", "slow", move || {
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .await
            })
        };
        while pool.stats().iter().all(|s| s.running == 0) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run_placed("a", "policy", here, where_it_ran).await })
        };
        while pool.stats().iter().all(|s| s.waiting == 0) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = pool.run_placed("b", "policy", Placement::Pool, || ()).await;
        let caller = std::thread::current().id();
        let ran = pool.run_placed("b", "policy", here, where_it_ran).await;
        assert_eq!(ran.ok(), Some((caller, false)), "b waited for a");
        release.store(true, Ordering::SeqCst);
        assert!(matches!(holding.await, Ok(Ok(()))));
        let waited = waiting.await.ok().and_then(Result::ok);
        assert!(waited.is_some_and(|(_, on_pool)| on_pool), "{waited:?}");

        // A panic on the caller's thread is the call's error, as on the pool.
        let panicked: Result<(), _> = pool
            .run_placed("a", "policy", here, || panic!("host bug"))
            .await;
        assert!(matches!(panicked, Err(ServiceError::Unavailable(_))));
        assert_eq!(
            pool.run_placed("a", "policy", here, || 7).await.ok(),
            Some(7)
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugin_whose_calls_are_not_short_stays_on_the_pool() {
        let pool = PluginPool::new(2, PluginQuota::default());
        let here = Placement::CallerIfShort;
        let busy = || {
            let began = thread_cpu_time().unwrap_or_default();
            while thread_cpu_time().unwrap_or_default() - began < 2 * SHORT_CALL {
                std::hint::black_box(0);
            }
            where_it_ran()
        };
        for _ in 0..3 {
            let ran = pool.run_placed("a", "heavy", here, busy).await;
            assert!(ran.is_ok_and(|(_, on_pool)| on_pool));
        }
    }
}

#[cfg(test)]
mod quota_tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenant_past_its_time_for_the_second_waits_for_the_next() {
        let pool = Arc::new(PluginPool::new(4, PluginQuota::default()));
        pool.set_quota(
            "a",
            PluginQuota {
                plugin_concurrency: 1,
                plugin_ms_per_second: 100,
            },
        );
        let began = Instant::now();
        // Three calls of 60 ms: the second passes the 100 ms of its second, so the third
        // waits for the next second.
        for _ in 0..3 {
            let ran = pool
                .run("a", "bot", || std::thread::sleep(Duration::from_millis(60)))
                .await;
            assert!(ran.is_ok());
        }
        assert!(
            began.elapsed() >= Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        let stats = pool.stats();
        let a = stats.iter().find(|s| s.tenant == "a");
        assert!(a.is_some_and(|a| a.throttled >= 1 && a.plugin_time >= Duration::from_millis(180)));
        // Another tenant is not held by a's quota.
        assert!(pool.run("b", "bot", || ()).await.is_ok());
        let stats = pool.stats();
        assert!(stats.iter().any(|s| s.tenant == "b" && s.throttled == 0));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plugin_calls_may_run_below_the_daemons_priority_and_a_panic_is_an_error() {
        let pool = PluginPool::new(2, PluginQuota::default());
        let nice = || rustix::process::getpriority_process(None).unwrap_or(i32::MIN);
        let daemon = nice();
        let plugin = pool.run("a", "bot", nice).await.unwrap_or(i32::MIN);
        assert_eq!(
            plugin,
            (daemon + plugin_nice()).min(19),
            "the daemon's is {daemon}"
        );
        let name = pool
            .run("a", "bot", || {
                std::thread::current().name().map(str::to_string)
            })
            .await;
        assert!(
            name.ok()
                .flatten()
                .is_some_and(|n| n.starts_with("flowgate-plugin-"))
        );
        // A panic in the host's part of a call is an error for that call; the pool goes on.
        let panicked: Result<(), _> = pool.run("a", "bot", || panic!("host bug")).await;
        assert!(matches!(panicked, Err(ServiceError::Unavailable(_))));
        assert_eq!(pool.run("a", "bot", || 7).await.ok(), Some(7));
    }

    /// The calling thread's scheduling policy and its name (Linux: `/proc/thread-self/stat`,
    /// field 41).
    #[cfg(target_os = "linux")]
    fn policy_and_name() -> (Option<u32>, String) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // Fields from the third (state) on; the policy is the 41st field.
        let policy = after_name.split_whitespace().nth(41 - 3);
        let name = std::thread::current().name().unwrap_or("").to_string();
        (policy.and_then(|p| p.parse().ok()), name)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plugin_whose_calls_run_long_runs_below_everything_else_until_they_are_short_again() {
        const SCHED_IDLE: u32 = 5;
        let pool = PluginPool::new(2, PluginQuota::default());
        // Runs for `ms` of its thread's CPU time, then says where it ran. Kept short: in the
        // long lane, on a machine busy with other work, a millisecond of CPU may take seconds.
        let spin = |ms: u64| {
            move || {
                let began = thread_cpu_time().unwrap_or_default();
                while thread_cpu_time().unwrap_or_default() - began < Duration::from_millis(ms) {
                    std::hint::black_box(0);
                }
                policy_and_name()
            }
        };
        // A plugin's first call runs in the short lane, whatever it costs.
        let (policy, name) = pool.run("a", "looper", spin(6)).await.unwrap_or_default();
        assert_ne!(policy, Some(SCHED_IDLE), "{name}");
        assert!(!name.starts_with("flowgate-plugin-long"), "{name}");
        // Its next calls run at idle priority; the tenant's other plugin and another tenant's
        // calls do not.
        for _ in 0..2 {
            let (policy, name) = pool.run("a", "looper", spin(6)).await.unwrap_or_default();
            assert_eq!(policy, Some(SCHED_IDLE), "{name}");
            assert!(name.starts_with("flowgate-plugin-long-"), "{name}");
        }
        for (tenant, plugin) in [("a", "policy"), ("b", "looper")] {
            let (policy, name) = pool.run(tenant, plugin, spin(0)).await.unwrap_or_default();
            assert_ne!(
                policy,
                Some(SCHED_IDLE),
                "{tenant}'s {plugin} ran on {name}"
            );
        }
        // Calls that are short again bring it back to the short lane.
        let mut back = None;
        for n in 1..=20 {
            let (policy, _) = pool.run("a", "looper", spin(0)).await.unwrap_or_default();
            if policy != Some(SCHED_IDLE) {
                back = Some(n);
                break;
            }
        }
        assert!(
            back.is_some_and(|n| n <= 12),
            "back after {back:?} short calls"
        );
        let stats = pool.stats();
        let a = stats.iter().find(|s| s.tenant == "a");
        assert!(a.is_some_and(|a| a.long_calls >= 2), "{stats:?}");
    }
}
