//! The plugin runtime: one wasmtime `Engine`, one linker, compiled components cached in memory and
//! on disk, and the epoch ticker behind every call's wall-clock deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Plugin, approval_policy, router, step_action};
use super::cache::{CacheOutcome, DiskCache};
use super::error::{PluginError, PluginFailure, boxed};
use super::grants::Refusal;
use super::loaded::{Compiled, LoadedPlugin, PluginSettings};
use super::state::CallState;
use super::{Capability, PluginId};

/// How the runtime is set up; per-call limits are per plugin, in [`PluginSettings`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch ticks; call deadlines are rounded up to it.
    pub epoch_tick: Duration,
    /// The wasm stack of every call, in bytes.
    pub max_wasm_stack: usize,
    /// Instance slots of the pooling allocator (calls that can run at once); `None` allocates on
    /// demand instead.
    pub pool_slots: Option<u32>,
    /// The largest memory any tenant may allow its plugins; with pooling, every slot reserves it.
    pub max_memory_bytes: usize,
    /// With pooling: bytes of each memory reset by memset (kept mapped) rather than released, so
    /// the next instance finds its pages already there.
    pub keep_resident_bytes: usize,
    /// Map data segments copy-on-write instead of copying them at instantiation.
    pub memory_init_cow: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
            max_wasm_stack: 512 << 10,
            pool_slots: Some(256),
            max_memory_bytes: 256 << 20,
            keep_resident_bytes: 1 << 20,
            memory_init_cow: true,
        }
    }
}

/// Errors setting the runtime up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Engine(#[source] super::BoxError),
    /// The cache directory cannot be used.
    #[error("cannot use the plugin cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The runtime. Cheap to clone; clones share the engine and caches.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    ticker: Arc<EpochTicker>,
    engine: Engine,
    linker: Linker<CallState>,
    disk: Option<DiskCache>,
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    config: RuntimeConfig,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Frames kept in a trap's backtrace: enough to recognize unbounded recursion.
pub(crate) const BACKTRACE_FRAMES: usize = 32;

/// A plugin version as logs and messages show it: the first 12 hex digits of its sha256.
pub fn short_version(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// The sha256 of an artifact, in hex: a plugin version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginRuntime {
    /// Sets up the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            .memory_init_cow(config.memory_init_cow)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES));
        if let Some(slots) = config.pool_slots {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                .total_core_instances(slots * 4)
                .total_memories(slots * 2)
                .total_tables(slots * 4)
                .max_memory_size(config.max_memory_bytes)
                // Reset small memories with memset instead of madvise: the next call finds its
                // pages already mapped, which is most of a fresh instance's cost otherwise.
                .linear_memory_keep_resident(config.keep_resident_bytes)
                .table_keep_resident(64 << 10);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(boxed(e)))?;

        let mut linker = Linker::new(&engine);
        let link = |linker: &mut Linker<CallState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_sync(linker)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
            Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
        };
        link(&mut linker).map_err(|e| RuntimeError::Engine(boxed(e)))?;

        let disk = match &config.cache_dir {
            Some(dir) => {
                Some(
                    DiskCache::new(dir, &engine).map_err(|source| RuntimeError::Cache {
                        path: dir.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };

        let ticker = EpochTicker::spawn(&engine, config.epoch_tick);
        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                ticker,
                engine,
                linker,
                disk,
                compiled: Mutex::new(HashMap::new()),
                config,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Loads a plugin version for a tenant: compiles it (or finds it compiled), checks its imports
    /// against the tenant's grants and its exports against the contract.
    pub fn load(
        &self,
        id: PluginId,
        wasm: &[u8],
        settings: PluginSettings,
    ) -> Result<LoadedPlugin, PluginError> {
        let sha256 = sha256_hex(wasm);
        let fail = |failure: PluginFailure| PluginError {
            tenant: id.tenant.clone(),
            plugin: id.name.clone(),
            version: sha256[..12].to_string(),
            capability: None,
            failure: Box::new(failure),
        };
        if let Err(reason) = settings.grants.validate() {
            return Err(fail(PluginFailure::invalid_grants(reason)));
        }
        check_header(wasm).map_err(fail)?;
        check_memories(wasm, settings.limits.memory_bytes).map_err(fail)?;
        let (compiled, outcome) = self.compile(&sha256, wasm).map_err(fail)?;
        settings
            .grants
            .check_imports(compiled.imports.iter().map(String::as_str))
            .map_err(|refused| fail(PluginFailure::refused(refused)))?;
        tracing::debug!(tenant = %id.tenant, plugin = %id.name, version = %&sha256[..12], ?outcome, "plugin.load");
        Ok(LoadedPlugin::new(id, sha256, compiled, settings, outcome))
    }

    /// The compiled form of an artifact, from memory, disk, or compiled now.
    fn compile(
        &self,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<(Arc<Compiled>, CacheOutcome), PluginFailure> {
        if let Some(found) = self.compiled_map().get(sha256) {
            return Ok((found.clone(), CacheOutcome::Memory));
        }
        let disk = self.inner.disk.as_ref();
        let (component, outcome) = match disk.and_then(|d| d.load(&self.inner.engine, sha256)) {
            Some(component) => (component, CacheOutcome::Disk),
            None => {
                let component = Component::new(&self.inner.engine, wasm).map_err(|e| {
                    PluginFailure::InvalidComponent {
                        context: "wasmtime cannot compile it",
                        source: boxed(e),
                    }
                })?;
                if let Some(disk) = disk {
                    disk.store(sha256, &component);
                }
                (component, CacheOutcome::Compiled)
            }
        };
        let compiled = Arc::new(self.prepare(component)?);
        self.compiled_map()
            .insert(sha256.to_string(), compiled.clone());
        Ok((compiled, outcome))
    }

    /// Pre-links a component and finds which capabilities it exports.
    fn prepare(&self, component: Component) -> Result<Compiled, PluginFailure> {
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        check_contract(imports.iter().chain(&exports))?;
        // Refuse unknown imports by name before linking, so the message names the import rather
        // than wasmtime's "no such import" for the first one it meets.
        let none = super::Grants::default();
        let never: Vec<(String, Refusal)> = imports
            .iter()
            .filter(|i| none.check_import(i) == Err(Refusal::NotOffered))
            .map(|i| (i.clone(), Refusal::NotOffered))
            .collect();
        if !never.is_empty() {
            return Err(PluginFailure::refused(never));
        }
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            PluginFailure::InvalidComponent {
                context: "it does not link against the Flowgate host",
                source: boxed(e),
            }
        })?;
        let compiled = Compiled {
            engine: engine.clone(),
            router: router::GuestIndices::new(&pre).ok(),
            approval: approval_policy::GuestIndices::new(&pre).ok(),
            action: step_action::GuestIndices::new(&pre).ok(),
            pre,
            imports,
            ticker: Arc::clone(&self.inner.ticker),
        };
        if compiled.capabilities().is_empty() {
            return Err(PluginFailure::NoCapabilities);
        }
        Ok(compiled)
    }

    fn compiled_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Compiled>>> {
        // The map stays consistent even if a holder panicked: entries are inserted whole.
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the in-memory compiled forms (the disk cache stays); for measuring cold loads.
    pub fn clear_memory_cache(&self) {
        self.compiled_map().clear();
    }
}

impl Compiled {
    /// The capabilities this component exports.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut found = Vec::new();
        if self.router.is_some() {
            found.push(Capability::Router);
        }
        if self.approval.is_some() {
            found.push(Capability::ApprovalPolicy);
        }
        if self.action.is_some() {
            found.push(Capability::StepAction);
        }
        found
    }
}

/// The engine's epoch, which every call's deadline is counted in: ticked every `tick` while
/// calls run, and not at all once none has for [`LINGER_TICKS`] ticks, so an idle daemon does not
/// wake a thousand times a second for nothing.
///
/// While calls keep coming the ticker keeps ticking between them: a call that starts then finds
/// it awake, and marks itself running with an atomic add and no system call. (Parking the
/// ticker as soon as no call ran made every call of a steady stream wake it anew: a futex call
/// on the caller's path and a thread woken, for calls that take tens of microseconds.)
#[derive(Debug)]
pub(crate) struct EpochTicker {
    pub tick: Duration,
    /// Calls running (guest code, instantiation included).
    running: AtomicUsize,
    /// Calls started since the ticker last looked.
    started: AtomicBool,
    /// Ticks so far.
    ticks: AtomicU64,
    /// The ticker's thread, to wake when a call starts.
    thread: OnceLock<std::thread::Thread>,
}

/// Ticks the ticker goes on for after the last call, before it parks.
const LINGER_TICKS: u32 = 100;

/// A call running: the ticker ticks until every one of these is dropped.
pub(crate) struct Running<'a>(&'a EpochTicker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker; it stops (within a second) once the engine is dropped.
    fn spawn(engine: &Engine, tick: Duration) -> Arc<EpochTicker> {
        let ticker = Arc::new(EpochTicker {
            tick,
            running: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            thread: OnceLock::new(),
        });
        let weak = engine.weak();
        let shared = Arc::clone(&ticker);
        let spawned = std::thread::Builder::new()
            .name("flowgate-epoch".to_string())
            .spawn(move || {
                let mut idle = 0;
                while weak.upgrade().is_some() {
                    let busy = shared.started.swap(false, Ordering::SeqCst)
                        || shared.running.load(Ordering::SeqCst) > 0;
                    idle = if busy { 0 } else { idle + 1 };
                    if idle > LINGER_TICKS {
                        // A call that starts now unparks this thread (or already has: the token
                        // is kept), so no call waits for a tick that never comes.
                        std::thread::park_timeout(Duration::from_secs(1));
                        continue;
                    }
                    std::thread::sleep(shared.tick);
                    if let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        shared.ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                let _ = ticker.thread.set(handle.thread().clone());
            }
            // Without a ticker only fuel bounds a call; say so loudly rather than fail start-up.
            Err(error) => {
                tracing::error!(%error, "plugin.runtime: cannot start the epoch ticker; deadlines are off");
            }
        }
        ticker
    }

    /// Marks a call running until the guard is dropped; the first one wakes the ticker.
    pub fn running(&self) -> Running<'_> {
        self.started.store(true, Ordering::SeqCst);
        if self.running.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(thread) = self.thread.get()
        {
            // Without a system call when the ticker is ticking (see `std::thread::Thread::unpark`).
            thread.unpark();
        }
        Running(self)
    }
}

/// Says plainly what the bytes are when they are not a component: not WebAssembly, or a core
/// module (wasmtime's own words for these are a dump of the header's bytes).
fn check_header(wasm: &[u8]) -> Result<(), PluginFailure> {
    if !wasm.starts_with(b"\0asm") {
        let head = &wasm[..wasm.len().min(4)];
        let found = if head.is_empty() {
            "nothing (the file is empty)".to_string()
        } else {
            format!("`{}`", head.escape_ascii())
        };
        return Err(PluginFailure::NotWasm { found });
    }
    // The layer byte (the 7th): 0 for core modules, 1 for components.
    if wasm.len() >= 8 && wasm[6] == 0 {
        return Err(PluginFailure::CoreModule);
    }
    Ok(())
}

/// The contract versions this host accepts: those semver-compatible with the one it binds.
pub const CONTRACT_ACCEPTED: &str = "0.1.x";

/// Refuses a component that imports or exports the contract at a version this host does not
/// bind, naming both (wasmtime would say only that an import is missing, or that no capability
/// is exported).
fn check_contract<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), PluginFailure> {
    let accepted = CONTRACT_ACCEPTED.trim_end_matches('x');
    for name in names {
        let Some(rest) = name.strip_prefix("flowgate:plugin/") else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            continue;
        };
        if !version.starts_with(accepted) {
            return Err(PluginFailure::ContractVersion {
                found: version.to_string(),
                accepted: CONTRACT_ACCEPTED,
            });
        }
    }
    Ok(())
}

/// Refuses a component one of whose memories starts larger than `limit`: it could never be
/// instantiated within its tenant's cap, and wasmtime would say so only at the first call (or, past
/// the pool's own maximum, as "not a valid component").
fn check_memories(wasm: &[u8], limit: u64) -> Result<(), PluginFailure> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        // Malformed bytes are wasmtime's to describe when it compiles them.
        let Ok(wasmparser::Payload::MemorySection(memories)) = payload else {
            continue;
        };
        for memory in memories.into_iter().flatten() {
            let declared = memory
                .initial
                .saturating_mul(1u64 << memory.page_size_log2());
            if declared > limit {
                return Err(PluginFailure::MemoryOverCap { declared, limit });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod ticker_tests {
    use super::*;

    fn ticks(ticker: &EpochTicker) -> u64 {
        ticker.ticks.load(Ordering::Relaxed)
    }

    /// Waits up to ten seconds for `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_ticker_ticks_while_calls_come_and_parks_once_they_stop() {
        let engine = Engine::default();
        let ticker = EpochTicker::spawn(&engine, Duration::from_millis(1));
        // A long call: ticks come while it runs.
        let running = ticker.running();
        let before = ticks(&ticker);
        eventually("no tick while a call ran", || ticks(&ticker) > before + 5);
        drop(running);
        // Idle past the linger: the ticker parks, and the epoch stands still.
        eventually("the ticker did not park", || {
            let seen = ticks(&ticker);
            std::thread::sleep(Duration::from_millis(300));
            ticks(&ticker) == seen
        });
        // A short call after that wakes it: its deadline can still come.
        let parked = ticks(&ticker);
        drop(ticker.running());
        eventually("a call did not wake the parked ticker", || {
            ticks(&ticker) > parked
        });
    }
}
