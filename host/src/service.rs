//! The engine as a service: definitions deployed per tenant, instances started and commanded
//! through the single writer (group commit), and a driver that carries out effects and fires
//! timers. The CLI and the daemon both use this, never the store directly.

mod cache;
mod calls;
mod clears;
mod clock;
mod complete;
mod driver;
mod inbox;
mod lifecycle;
mod messages;
mod notify;
mod pool;
mod prepare;
mod processes;
mod record;
mod retention;
mod schedules;
mod telemetry;
mod watch;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde_json::{Map, Value};
use tokio::sync::{Notify, oneshot};

pub(crate) use calls::requirement;
pub use clock::{Clock, ManualClock, SystemClock};
pub use complete::{COMPLETION_KEY_RETENTION_MS, Completed, Completion};
pub use inbox::{InboxPage, TaskFilter};
pub use lifecycle::{Bulk, InstanceMove, MigrationReport, MigrationRequest, Skipped, VersionWide};
pub use messages::{MAX_TAKERS, Sent};
pub use notify::{
    BoxFuture, ChannelNotifier, Channels, Delivery, EmailConfig, EmailSender, LinkMaker,
    LogNotifier, Notifier, RecordingNotifier, WebhookConfig, signature,
};
pub use pool::{PluginPool, PluginQuota, ShareStats};
pub use processes::{Link, ProcessDefinitionView, ProcessSettings, ProcessView};
pub use record::{
    DEFAULT_KEEP, MAX_REPLAY, ReplayFuel, ReplayReport, ReplayScope, ReplayedCall, ShadowReport,
};
pub use retention::Archived;
pub use schedules::ScheduleView;
pub use telemetry::{Telemetry, WriteTotals};

use crate::definition::{self, Catalog, Definition, DefinitionError, Format};
use crate::engine::{Command, CommandError, Event, Instance, Millis, Person};
use crate::plugin::{Capability, PluginId, PluginRegistry};
use crate::store::{Change, Inbox, InstanceFilter, Storage, StoreError, StoredDefinition};
use clears::{Clears, Recorded};
use prepare::StartRequest;
use writer::{Request, Writer, WriterQueue};

/// Why a service call failed. Nothing was stored unless the call says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The transaction holding this command failed; nothing of it is stored. Shared by every
    /// command of the batch.
    #[error("the store could not commit: {0}")]
    CommitFailed(#[source] Arc<StoreError>),
}

/// The instance a task belongs to (task ids are `{instance}.t{n}`).
pub fn task_instance(task: &str) -> Result<String, ServiceError> {
    Instance::of_task(task)
        .map(str::to_string)
        .ok_or_else(|| ServiceError::NotFound {
            what: "task",
            id: task.to_string(),
        })
}

/// Running instances whose committed state is kept in memory (at least; twice at most). At a
/// few KiB each, the default costs some tens of MiB.
const INSTANCES_CACHED: usize = 10_000;

/// What the writer and the driver share.
pub(crate) struct Shared {
    pub store: Arc<dyn Storage>,
    pub plugins: Arc<PluginRegistry>,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    /// Woken after a commit that gave the driver work (outbox entries, a timer due), so it
    /// looks at once.
    pub wake: Notify,
    definitions: Mutex<HashMap<(String, String, u32), Arc<Definition>>>,
    /// Each workflow's latest version, as deploys commit it: a start needs no store read.
    latest: Mutex<HashMap<(String, String), u32>>,
    /// Outbox entries and timers being carried out, so none is dispatched twice at once. An
    /// entry stays claimed until its removal from the outbox is committed.
    dispatch: Arc<driver::Dispatch>,
    /// Outbox entries carried out, waiting to be cleared with the next commit.
    clears: Clears,
    /// Plugin decisions with their inputs, waiting to be kept with the next commit.
    recorded: Recorded,
    /// Calls kept per plugin, by tenant (`[recording] plugin_calls`).
    recording: RwLock<HashMap<String, u64>>,
    /// Candidates in shadow mode, by tenant and plugin.
    shadows: RwLock<HashMap<(String, String), Arc<record::Shadow>>>,
    /// Where plugin calls run.
    pool: PluginPool,
    pub telemetry: Telemetry,
    /// Callers waiting for an instance to change.
    watchers: watch::Watchers,
    /// Committed states of instances in use.
    cache: cache::InstanceCache,
    /// Tenants whose configuration has not loaded: their work waits, so a missing plugin is not
    /// taken for a failing one.
    paused: RwLock<HashSet<String>>,
    /// When the driver last looked at the schedules, and whether that pass found work (then
    /// the next pass looks again at once).
    schedules_at: std::sync::atomic::AtomicU64,
    schedules_busy: std::sync::atomic::AtomicBool,
    /// Each tenant's business calendar; the default one for a tenant that sets none.
    calendars: RwLock<HashMap<String, Arc<crate::engine::calendar::Calendar>>>,
    /// Each tenant's process definitions and costs.
    processes: RwLock<HashMap<String, Arc<ProcessSettings>>>,
    /// Why commits fail, while they do.
    store_failure: Mutex<Option<StoreFailure>>,
}

/// Commits fail for a resource reason (a full disk) since `since`; the writer tries again.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    pub error: Arc<StoreError>,
    pub since: Millis,
}

impl Shared {
    fn set_store_failure(&self, failure: Option<StoreFailure>) {
        self.telemetry.store_failing(failure.is_some());
        *self
            .store_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failure;
    }

    /// The tenant's business calendar.
    pub(crate) fn calendar(&self, tenant: &str) -> Arc<crate::engine::calendar::Calendar> {
        self.calendars
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// An instance's committed state: from the cache, else from the store.
    fn committed(&self, tenant: &str, id: &str) -> Result<Option<Arc<Instance>>, ServiceError> {
        if let Some(found) = self.cache.get(tenant, id) {
            return Ok(Some(found));
        }
        Ok(self.store.instance(tenant, id)?.map(Arc::new))
    }

    /// The driver's claim on an outbox entry.
    fn outbox_key(tenant: &str, outbox: u64) -> (String, String) {
        (tenant.to_string(), format!("outbox:{outbox}"))
    }

    /// Outbox entries whose removal committed: the driver may forget them.
    fn release_cleared(&self, cleared: &[(String, u64)]) {
        if cleared.is_empty() {
            return;
        }
        for (tenant, outbox) in cleared {
            self.dispatch.release(&Self::outbox_key(tenant, *outbox));
        }
    }

    /// The latest version of workflow `id`, or `None` if the tenant never deployed it.
    pub fn latest_version(&self, tenant: &str, id: &str) -> Result<Option<u32>, ServiceError> {
        let key = (tenant.to_string(), id.to_string());
        let known = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if known.is_some() {
            return Ok(known);
        }
        let Some(stored) = self.store.definition(tenant, id, None)? else {
            return Ok(None);
        };
        Ok(Some(self.deployed(key, stored.version)))
    }

    /// Notes a committed deploy of `version` (called before the deploy is answered, so a start
    /// after the answer sees it). Returns the latest version known.
    fn deployed(&self, key: (String, String), version: u32) -> u32 {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let known = latest.entry(key).or_insert(version);
        *known = (*known).max(version);
        *known
    }

    /// Notes the deploys among committed changes.
    pub(crate) fn committed_definitions(&self, changes: &[Change]) {
        for change in changes {
            if let Change::Definition(d) = change {
                self.deployed((d.tenant.clone(), d.definition.id.clone()), d.version);
            }
        }
    }

    /// A definition version; versions never change, so they are cached for good.
    pub fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: u32,
    ) -> Result<Arc<Definition>, ServiceError> {
        let key = (tenant.to_string(), id.to_string(), version);
        if let Some(found) = self
            .definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(found.clone());
        }
        let stored = self
            .store
            .definition(tenant, id, Some(version))?
            .ok_or_else(|| ServiceError::NotFound {
                what: "workflow version",
                id: format!("{id}@{version}"),
            })?;
        let def = Arc::new(stored.definition);
        self.definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, def.clone());
        Ok(def)
    }
}

/// The Flowgate engine service. Cheap to clone.
#[derive(Clone)]
pub struct Flowgate {
    shared: Arc<Shared>,
    writer: Arc<WriterQueue>,
}

impl std::fmt::Debug for Flowgate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flowgate").finish_non_exhaustive()
    }
}

/// A started instance, and whether the start was a replay of an earlier one with the same
/// idempotency key.
#[derive(Debug, Clone)]
pub struct Started {
    /// The instance as committed (shared with the engine's cache: answers are not copies).
    pub instance: Arc<Instance>,
    pub replayed: bool,
}

/// A deployed definition, and whether deploying made a new version.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub stored: StoredDefinition,
    pub new_version: bool,
}

/// Checks definitions against a tenant's plugins and stored definitions.
struct TenantCatalog<'a> {
    tenant: &'a str,
    plugins: &'a PluginRegistry,
    store: &'a dyn Storage,
    deploying: &'a str,
}

impl Catalog for TenantCatalog<'_> {
    fn plugin_capabilities(&self, name: &str) -> Option<Vec<Capability>> {
        self.plugins
            .current(&PluginId::new(self.tenant, name))
            .map(|p| p.capabilities())
    }

    fn has_definition(&self, id: &str) -> bool {
        id == self.deploying
            || self
                .store
                .definition(self.tenant, id, None)
                .is_ok_and(|d| d.is_some())
    }
}

impl Flowgate {
    /// Starts the writer thread over `store`. Call from within a tokio runtime.
    pub fn open(
        store: Arc<dyn Storage>,
        plugins: Arc<PluginRegistry>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Self, ServiceError> {
        let last_outbox = store.last_outbox_id()?;
        let shared = Arc::new(Shared {
            store,
            plugins,
            clock,
            notifier,
            wake: Notify::new(),
            definitions: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            dispatch: Arc::default(),
            clears: Clears::unbounded(),
            recorded: Recorded::bounded(record::MAX_WAITING),
            recording: RwLock::new(HashMap::new()),
            shadows: RwLock::new(HashMap::new()),
            pool: PluginPool::default(),
            telemetry: Telemetry::default(),
            watchers: watch::Watchers::default(),
            cache: cache::InstanceCache::new(INSTANCES_CACHED),
            paused: RwLock::new(HashSet::new()),
            schedules_at: std::sync::atomic::AtomicU64::new(0),
            schedules_busy: std::sync::atomic::AtomicBool::new(false),
            calendars: RwLock::new(HashMap::new()),
            processes: RwLock::new(HashMap::new()),
            store_failure: Mutex::new(None),
        });
        let writer = WriterQueue::start(Writer::new(shared.clone(), last_outbox)).map_err(|e| {
            ServiceError::Unavailable(format!("cannot start the writer thread: {e}"))
        })?;
        Ok(Flowgate {
            shared,
            writer: Arc::new(writer),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.shared.store
    }

    /// Why commits fail, if they do. While they do, this asks the writer to try one (at most
    /// once a second), so that a store that works again is seen without waiting for a command.
    pub async fn store_failure(&self) -> Option<StoreFailure> {
        let failing = || {
            self.shared
                .store_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        failing()?;
        let (reply, answer) = oneshot::channel();
        if self.writer.send(Request::Probe { reply }).await.is_ok() {
            let _ = answer.await;
        }
        failing()
    }

    /// Holds the timers and outbox of these tenants (and no others) until they are resumed:
    /// for tenants whose configuration did not load, whose plugins are therefore missing.
    pub fn pause_tenants(&self, tenants: impl IntoIterator<Item = String>) {
        let paused: HashSet<String> = tenants.into_iter().collect();
        if !paused.is_empty() {
            tracing::warn!(tenants = ?paused, "driver: work of these tenants waits for their configuration");
        }
        *self
            .shared
            .paused
            .write()
            .unwrap_or_else(PoisonError::into_inner) = paused;
        self.shared.wake.notify_one();
    }

    fn is_paused(&self, tenant: &str) -> bool {
        self.shared
            .paused
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tenant)
    }

    /// Sets the tenant's business calendar (from its `[calendar]`).
    pub fn set_calendar(&self, tenant: &str, calendar: crate::engine::calendar::Calendar) {
        self.shared
            .calendars
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string(), Arc::new(calendar));
    }

    /// Sets the tenant's process definitions and costs (from its `[processes]` and `[costs]`).
    pub fn set_processes(&self, tenant: &str, settings: ProcessSettings) {
        self.shared
            .processes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string(), Arc::new(settings));
    }

    /// Sets a tenant's plugin quota: calls at once and plugin time per second.
    pub fn set_plugin_quota(&self, tenant: &str, quota: PluginQuota) {
        self.shared.pool.set_quota(tenant, quota);
    }

    /// Counts an API command refused for the tenant's commands per second.
    pub fn command_throttled(&self, tenant: &str) {
        self.shared.telemetry.command_throttled(tenant);
    }

    /// Each tenant's use of the plugin pool so far.
    pub fn plugin_shares(&self) -> Vec<ShareStats> {
        self.shared.pool.stats()
    }

    /// The plugin registry.
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.shared.plugins
    }

    /// Durable writes since the service started.
    pub fn write_totals(&self) -> WriteTotals {
        self.shared.telemetry.write_totals()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    async fn send<T>(
        &self,
        kind: &'static str,
        tenant: &str,
        make: impl FnOnce(writer::Reply<T>) -> Request,
    ) -> Result<T, ServiceError> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| ServiceError::Unavailable("the writer has stopped".to_string()))?;
        let result = rx
            .await
            .map_err(|_| ServiceError::Unavailable("the writer dropped the request".to_string()))?;
        let seconds = started.elapsed().as_secs_f64();
        self.shared
            .telemetry
            .command(tenant, kind, result.is_ok(), seconds);
        result
    }

    /// Counts a command refused before it reached the writer, as `send` counts the others.
    fn refused_early<T>(
        &self,
        kind: &'static str,
        tenant: &str,
        started: std::time::Instant,
        result: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        if result.is_err() {
            let seconds = started.elapsed().as_secs_f64();
            self.shared.telemetry.command(tenant, kind, false, seconds);
        }
        result
    }

    /// Prometheus metrics: counters and histograms, plus timers due, pending outbox entries and
    /// the writer's queue, read now.
    pub fn render_metrics(&self) -> Result<String, ServiceError> {
        let now = self.shared.clock.now();
        let queue = self.writer.depth();
        for tenant in self.shared.store.tenants()? {
            let due = self.shared.store.due_timers(&tenant, now, 100_000)?;
            let oldest = due.iter().map(|t| t.due_at).min().unwrap_or(now);
            let depths = telemetry::Depths {
                timers_due: due.len(),
                overdue_seconds: now.saturating_sub(oldest) as f64 / 1000.0,
                outbox: self.shared.store.outbox(&tenant, 0, 100_000)?.len(),
                queue,
            };
            self.shared.telemetry.set_depths(&tenant, depths);
        }
        for share in self.shared.pool.stats() {
            self.shared.telemetry.set_share(&share);
        }
        Ok(self.shared.telemetry.render())
    }

    /// Parses and validates a definition for `tenant` without deploying it.
    pub fn validate(
        &self,
        tenant: &str,
        file: &str,
        source: &str,
    ) -> Result<Definition, ServiceError> {
        let format = Format::from_name(file);
        let def = definition::parse(file, source, format)?;
        let catalog = TenantCatalog {
            tenant,
            plugins: &self.shared.plugins,
            store: self.shared.store.as_ref(),
            deploying: &def.id,
        };
        Ok(definition::load(file, source, format, &catalog)?)
    }

    /// Validates and deploys a definition: a changed one becomes a new version.
    pub async fn deploy(
        &self,
        tenant: &str,
        file: &str,
        source: &str,
    ) -> Result<Deployed, ServiceError> {
        let definition = Box::new(self.validate(tenant, file, source)?);
        let (stored, new_version) = self
            .send("deploy", tenant, |reply| Request::Deploy {
                tenant: tenant.to_string(),
                definition,
                source: source.to_string(),
                reply,
            })
            .await?;
        Ok(Deployed {
            stored,
            new_version,
        })
    }

    /// Starts an instance of the latest version of `definition`. With an idempotency key, a
    /// repeated start returns the instance the first one created.
    pub async fn start(
        &self,
        tenant: &str,
        definition: &str,
        data: Map<String, Value>,
        started_by: &str,
        key: Option<String>,
    ) -> Result<Instance, ServiceError> {
        let started = self
            .start_or_replay(tenant, definition, data, started_by, key, None)
            .await?;
        Ok(Arc::unwrap_or_clone(started.instance))
    }

    /// As [`Flowgate::start`], saying whether the start was a replay: an earlier start with the
    /// same idempotency key made the instance, and nothing new was started. With `process`, the
    /// instance joins that process instance (its case) rather than opening one of its own.
    pub async fn start_or_replay(
        &self,
        tenant: &str,
        definition: &str,
        data: Map<String, Value>,
        started_by: &str,
        key: Option<String>,
        process: Option<String>,
    ) -> Result<Started, ServiceError> {
        if let Some(process) = &process {
            self.joinable(tenant, process, definition)?;
        }
        let start = StartRequest {
            tenant: tenant.to_string(),
            definition: definition.to_string(),
            data,
            started_by: started_by.to_string(),
            key,
            parent: None,
            process,
        };
        self.start_request(start).await
    }

    /// Starts an instance as `start` asks: a sub-workflow (with its parent), or a workflow
    /// joining a process instance.
    pub(crate) async fn start_request(&self, start: StartRequest) -> Result<Started, ServiceError> {
        let tenant = start.tenant.clone();
        let tenant = tenant.as_str();
        let started = std::time::Instant::now();
        let prepared = self.prepare_start(&start, self.shared.clock.now()).await;
        let prepared = Box::new(self.refused_early("start", tenant, started, prepared)?);
        let key = start.key;
        let (instance, replayed) = self
            .send("start", tenant, |reply| Request::Start {
                prepared,
                key,
                reply,
            })
            .await?;
        Ok(Started { instance, replayed })
    }

    /// Applies a command to an instance.
    pub async fn command(
        &self,
        tenant: &str,
        instance: &str,
        command: Command,
    ) -> Result<Instance, ServiceError> {
        self.command_done(tenant, instance, command, None).await
    }

    /// Applies a command, reporting on outbox entry `done` (cleared in the same transaction).
    pub(crate) async fn command_done(
        &self,
        tenant: &str,
        instance: &str,
        command: Command,
        done: Option<u64>,
    ) -> Result<Instance, ServiceError> {
        self.apply_command(tenant, instance, command, done, None)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// Applies a completion command, keeping its idempotency key with the answer in the same
    /// transaction.
    pub(crate) async fn command_keyed(
        &self,
        tenant: &str,
        instance: &str,
        command: Command,
        completion: Option<writer::KeyedCompletion>,
    ) -> Result<Arc<Instance>, ServiceError> {
        self.apply_command(tenant, instance, command, None, completion)
            .await
    }

    async fn apply_command(
        &self,
        tenant: &str,
        instance: &str,
        command: Command,
        done: Option<u64>,
        completion: Option<writer::KeyedCompletion>,
    ) -> Result<Arc<Instance>, ServiceError> {
        let started = std::time::Instant::now();
        let now = self.shared.clock.now();
        let prepared = self
            .prepare_command(tenant, instance, command.clone(), now)
            .await;
        let kind = command.kind();
        let prepared = Box::new(self.refused_early(kind, tenant, started, prepared)?);
        self.send(kind, tenant, |reply| Request::Command {
            tenant: tenant.to_string(),
            instance: instance.to_string(),
            command: Box::new(command),
            prepared,
            done,
            completion: completion.map(Box::new),
            reply,
        })
        .await
    }

    /// Completes a task (its instance is found from the task id), without an idempotency key;
    /// see [`Flowgate::complete`] for the whole request.
    pub async fn complete_task(
        &self,
        tenant: &str,
        task: &str,
        by: Person,
        outcome: Option<String>,
        data: Map<String, Value>,
    ) -> Result<Instance, ServiceError> {
        let command = Command::CompleteTask {
            task: task.to_string(),
            by,
            outcome,
            data,
            expected_version: None,
            comment: None,
        };
        self.task_command(tenant, task, command).await
    }

    /// Claims a task for `by`.
    pub async fn claim_task(
        &self,
        tenant: &str,
        task: &str,
        by: Person,
    ) -> Result<Instance, ServiceError> {
        let command = Command::ClaimTask {
            task: task.to_string(),
            by,
        };
        self.task_command(tenant, task, command).await
    }

    /// Gives a task `by` claimed back.
    pub async fn unclaim_task(
        &self,
        tenant: &str,
        task: &str,
        by: Person,
    ) -> Result<Instance, ServiceError> {
        let command = Command::UnclaimTask {
            task: task.to_string(),
            by,
        };
        self.task_command(tenant, task, command).await
    }

    /// Applies a command about `task` to the instance it belongs to.
    async fn task_command(
        &self,
        tenant: &str,
        task: &str,
        command: Command,
    ) -> Result<Instance, ServiceError> {
        self.command(tenant, &task_instance(task)?, command).await
    }

    /// Cancels an instance, with the reason in its history.
    pub async fn cancel(
        &self,
        tenant: &str,
        instance: &str,
        by: &str,
        reason: String,
    ) -> Result<Instance, ServiceError> {
        let command = Command::Cancel {
            by: by.to_string(),
            reason,
        };
        self.command(tenant, instance, command).await
    }

    /// Resolves the incident that stopped token `token`: retry the step or skip it.
    pub async fn resolve_incident(
        &self,
        tenant: &str,
        instance: &str,
        token: u64,
        by: &str,
        resolution: crate::engine::Resolution,
        reason: String,
    ) -> Result<Instance, ServiceError> {
        let command = Command::ResolveIncident {
            token,
            by: by.to_string(),
            resolution,
            reason,
        };
        self.command(tenant, instance, command).await
    }

    /// The version of `plugin` the tenant's new instances run, if it is loaded.
    pub fn current_plugin_version(&self, tenant: &str, plugin: &str) -> Option<String> {
        self.shared
            .plugins
            .current(&PluginId::new(tenant, plugin))
            .map(|p| p.sha256().to_string())
    }

    /// Retries an incident on the current version of its step's plugin (a fixed one, say),
    /// pinning the instance to it; the history records the change.
    pub async fn retry_on_current(
        &self,
        tenant: &str,
        instance: &str,
        token: u64,
        by: &str,
        reason: String,
    ) -> Result<Instance, ServiceError> {
        let current = self.instance(tenant, instance)?;
        let step = current
            .tokens
            .get(&token)
            .map(|t| t.step.clone())
            .ok_or_else(|| ServiceError::NotFound {
                what: "incident",
                id: format!("{instance}/{token}"),
            })?;
        let def = self.definition(tenant, &current.definition_id, current.definition_version)?;
        let plugin = def
            .step(&step)
            .and_then(|s| s.plugin())
            .map(|(name, _)| name.to_string())
            .ok_or_else(|| ServiceError::Invalid {
                field: "current".into(),
                message: format!("step `{step}` calls no plugin: retry it as it is"),
            })?;
        let version = self
            .current_plugin_version(tenant, &plugin)
            .ok_or_else(|| ServiceError::Invalid {
                field: "current".into(),
                message: format!("tenant `{tenant}` has no current version of plugin `{plugin}`"),
            })?;
        let retry = crate::engine::Resolution::Retry {
            plugin_version: Some(version),
        };
        self.resolve_incident(tenant, instance, token, by, retry, reason)
            .await
    }

    /// A definition version (cached: versions never change).
    pub fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: u32,
    ) -> Result<Arc<Definition>, ServiceError> {
        self.shared.definition(tenant, id, version)
    }

    /// An instance.
    pub fn instance(&self, tenant: &str, id: &str) -> Result<Instance, ServiceError> {
        self.shared
            .store
            .instance(tenant, id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "instance",
                id: id.to_string(),
            })
    }

    /// The instance once its version is past `version`, waiting up to `wait` for a commit to
    /// change it; after the wait, the instance as it is.
    pub async fn instance_changed(
        &self,
        tenant: &str,
        id: &str,
        version: u64,
        wait: std::time::Duration,
    ) -> Result<Instance, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribe before reading, so a commit between the two is not missed.
            let changed = self.shared.watchers.subscribe(tenant, id);
            let instance = self.instance(tenant, id)?;
            if instance.version > version {
                return Ok(instance);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.instance(tenant, id);
            }
        }
    }

    /// An instance with its whole history, as of one moment.
    pub fn instance_with_history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Instance, Vec<Event>), ServiceError> {
        self.shared
            .store
            .instance_with_history(tenant, id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "instance",
                id: id.to_string(),
            })
    }

    /// An instance's whole history.
    pub fn history(&self, tenant: &str, id: &str) -> Result<Vec<Event>, ServiceError> {
        Ok(self.shared.store.history(tenant, id, 0, usize::MAX)?)
    }

    /// Instances matching a filter.
    pub fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, ServiceError> {
        Ok(self.shared.store.instances(tenant, filter)?)
    }

    /// Running instances that an incident stopped, in id order, at most `limit` of them. Reads
    /// the running instances a thousand at a time, at most 100,000.
    pub fn incidents(&self, tenant: &str, limit: usize) -> Result<Vec<Instance>, ServiceError> {
        const CHUNK: usize = 1_000;
        let mut found = Vec::new();
        let mut after = None;
        for _ in 0..100 {
            let filter = InstanceFilter {
                status: Some("running".to_string()),
                after: after.take(),
                limit: CHUNK,
                ..InstanceFilter::default()
            };
            let chunk = self.shared.store.instances(tenant, &filter)?;
            let read = chunk.len();
            after = chunk.last().map(|i| i.id.clone());
            found.extend(chunk.into_iter().filter(Instance::has_incident));
            // A short chunk is the last one.
            if found.len() >= limit || read < CHUNK {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Open tasks of a person or role, with their details.
    pub fn inbox(
        &self,
        tenant: &str,
        inbox: &Inbox,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::engine::Task>, ServiceError> {
        let page = self.inbox_page(tenant, inbox, &TaskFilter::default(), after, limit)?;
        Ok(page.tasks)
    }

    /// Workflow metrics of `workflow` over `[from, to)`, from the histories of its instances
    /// started before `to` and not ended before `from` (among the 100,000 most recent started
    /// before `to`), and the facts kept of its archived instances.
    pub fn metrics(
        &self,
        tenant: &str,
        workflow: &str,
        from: u64,
        to: u64,
    ) -> Result<crate::metrics::WorkflowMetrics, ServiceError> {
        let def = self
            .shared
            .store
            .definition(tenant, workflow, None)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "workflow",
                id: workflow.to_string(),
            })?;
        let filter = InstanceFilter {
            definition: Some(workflow.to_string()),
            started_before: Some(to),
            limit: 100_000,
            newest_first: true,
            ..InstanceFilter::default()
        };
        let calendar = self.shared.calendar(tenant);
        let mut facts = Vec::new();
        for instance in self.shared.store.instances(tenant, &filter)? {
            if instance.ended_at.is_some_and(|end| end < from) {
                continue;
            }
            let history = self
                .shared
                .store
                .history(tenant, &instance.id, 0, usize::MAX)?;
            facts.push(crate::metrics::facts(
                &def.definition,
                &instance,
                &history,
                &calendar,
            ));
        }
        // Archived instances count by the facts kept when they left (retention).
        facts.extend(
            self.shared
                .store
                .archived_facts(tenant, workflow, from)?
                .into_iter()
                .filter(|f| f.started_at < to),
        );
        Ok(crate::metrics::summarize(workflow, &facts, from, to))
    }

    /// Definitions of a tenant: every version.
    pub fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, ServiceError> {
        Ok(self.shared.store.definitions(tenant)?)
    }
}
