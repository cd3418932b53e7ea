//! The plugin pool: where every plugin call runs. Wasm is CPU work, so calls run on tokio's
//! blocking threads, but at most `workers` at once in all, and at most `per_tenant` at once for
//! one tenant: a tenant whose plugins run long, or many, holds only its share, and another
//! tenant's call waits for at most a call of its own tenant, never behind a flood of another's.
//! Within a tenant, calls wait in arrival order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

use super::ServiceError;

/// Bounded plugin execution with a fair share per tenant.
#[derive(Debug)]
pub struct PluginPool {
    all: Arc<Semaphore>,
    per_tenant: usize,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for PluginPool {
    /// Two calls per core in all (a call often waits on its deadline tick), and half of them
    /// for any one tenant.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let workers = (2 * cores).max(2);
        PluginPool::new(workers, workers.div_ceil(2))
    }
}

impl PluginPool {
    /// At most `workers` calls at once, at most `per_tenant` of them for one tenant.
    pub fn new(workers: usize, per_tenant: usize) -> Self {
        PluginPool {
            all: Arc::new(Semaphore::new(workers.max(1))),
            per_tenant: per_tenant.clamp(1, workers.max(1)),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn tenant(&self, tenant: &str) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }

    /// Runs `call` for `tenant` once the tenant's share and a worker are free.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let closed = |_| ServiceError::Unavailable("the plugin pool is closed".to_string());
        // The tenant's permit first: a tenant queues on its own share, never on the shared one.
        let share = self.tenant(tenant).acquire_owned().await.map_err(closed)?;
        let worker = self.all.clone().acquire_owned().await.map_err(closed)?;
        tokio::task::spawn_blocking(move || {
            let _held = (share, worker);
            call()
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("a plugin call's thread failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_tenant_holds_only_its_share() {
        let pool = Arc::new(PluginPool::new(2, 1));
        let b_ran = Arc::new(AtomicBool::new(false));
        let (busy, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut flood = Vec::new();
        for _ in 0..8 {
            let (pool, b_ran) = (pool.clone(), b_ran.clone());
            let (busy, peak) = (busy.clone(), peak.clone());
            flood.push(tokio::spawn(async move {
                pool.run("a", move || {
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
        let b = pool.run("b", {
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
