//! Durable storage behind a narrow boundary: reads, and one `commit` that applies a batch of
//! changes atomically. Every key starts with the tenant. [`RedbStore`] is the default (one file);
//! [`MemStore`] is the model the redb store is tested against.

mod index;
mod memory;
mod redb;
mod wal;

pub(crate) use wal::path_for as wal_path;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::definition::Definition;
use crate::engine::{Effect, Event, Instance, Millis};

pub use self::memory::MemStore;
pub use self::redb::{BackupSummary, DEFAULT_CACHE_BYTES, RedbStore};
pub use index::{IndexKeys, ended_key, message_keys, task_keys, timer_keys};

/// The schema version this build writes; a file of another version is refused.
pub const SCHEMA_VERSION: u64 = 5;

/// A deployed definition version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDefinition {
    pub tenant: String,
    pub version: u32,
    pub definition: Definition,
    /// The source as deployed, for `get a version`.
    pub source: String,
    #[serde(with = "crate::engine::time::rfc3339")]
    pub deployed_at: Millis,
}

/// An effect waiting to be carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Unique and increasing across the store: receivers dedupe on it.
    pub id: u64,
    pub tenant: String,
    pub instance: String,
    pub created_at: Millis,
    pub effect: Effect,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be tried before this time (0: at once).
    #[serde(default)]
    pub due_at: Millis,
}

/// A task completion made with an idempotency key: the same key with the same request answers
/// as the first time did, for as long as the key is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionKey {
    pub key: String,
    /// What was asked (task, person, outcome, data), hashed: a different request with the same
    /// key is refused.
    pub fingerprint: String,
    pub task: String,
    /// The first answer, as it was given.
    pub answer: serde_json::Value,
    pub at: Millis,
}

/// A message from another system as it was received, and what became of it. Kept by id: the
/// same id sent again is answered from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub correlation: String,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub sent_by: String,
    /// The process instance it is about, if the sender named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// What was sent (name, correlation, data), hashed: the same id with other content is
    /// refused.
    pub fingerprint: String,
    #[serde(with = "crate::engine::time::rfc3339")]
    pub received_at: Millis,
    #[serde(flatten)]
    pub status: MessageStatus,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum MessageStatus {
    /// Steps of these instances took it.
    Delivered {
        instances: Vec<String>,
        #[serde(with = "crate::engine::time::rfc3339")]
        at: Millis,
    },
    /// It started this instance.
    Started { instance: String },
    /// No step waited for it yet: kept until `expires_at` for one that will.
    Buffered {
        #[serde(with = "crate::engine::time::rfc3339")]
        expires_at: Millis,
    },
    /// Kept until `at`, and no step took it.
    Expired {
        #[serde(with = "crate::engine::time::rfc3339")]
        at: Millis,
    },
    /// The instances whose steps wait for it are paused: it applies when they resume.
    Held {
        instances: Vec<String>,
        #[serde(with = "crate::engine::time::rfc3339")]
        at: Millis,
    },
    /// Held for a paused instance that, resumed, no longer took it (its history says why).
    Dropped {
        instance: String,
        #[serde(with = "crate::engine::time::rfc3339")]
        at: Millis,
    },
}

impl MessageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Delivered { .. } => "delivered",
            MessageStatus::Started { .. } => "started",
            MessageStatus::Buffered { .. } => "buffered",
            MessageStatus::Expired { .. } => "expired",
            MessageStatus::Held { .. } => "held",
            MessageStatus::Dropped { .. } => "dropped",
        }
    }
}

/// Where a schedule of a workflow stands: which due times it has handled and what they did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub tenant: String,
    pub workflow: String,
    pub schedule: String,
    /// Every due time up to this one has been handled (started, skipped or missed).
    #[serde(with = "crate::engine::time::rfc3339")]
    pub handled_until: Millis,
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// The instance it started last.
    pub last_instance: Option<String>,
    /// A due time kept (overlap `buffer-one`) until the running instance ends.
    #[serde(default, with = "crate::engine::time::rfc3339::option")]
    pub pending: Option<Millis>,
    pub started: u64,
    pub skipped: u64,
    pub missed: u64,
    pub failed: u64,
    /// The latest due times and what each did, newest last.
    pub recent: Vec<ScheduleRun>,
    /// Bumped by every change: a change made from an older state is refused.
    pub version: u64,
}

/// What one due time of a schedule did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    #[serde(with = "crate::engine::time::rfc3339")]
    pub due: Millis,
    #[serde(with = "crate::engine::time::rfc3339")]
    pub at: Millis,
    /// `started`, `skipped` (the last instance still ran), `missed` (past the catch-up window),
    /// `kept` (to start when the running instance ends) or `failed`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ScheduleState {
    /// How many runs a state keeps.
    pub const RECENT: usize = 20;

    /// A schedule seen for the first time: due times after `from` are its to handle.
    pub fn new(tenant: &str, workflow: &str, schedule: &str, from: Millis) -> Self {
        ScheduleState {
            tenant: tenant.to_string(),
            workflow: workflow.to_string(),
            schedule: schedule.to_string(),
            handled_until: from,
            paused: false,
            pause_reason: None,
            last_instance: None,
            pending: None,
            started: 0,
            skipped: 0,
            missed: 0,
            failed: 0,
            recent: Vec::new(),
            version: 0,
        }
    }

    /// Records what due time `due` did.
    pub fn note(&mut self, due: Millis, at: Millis, outcome: &str) -> &mut ScheduleRun {
        match outcome {
            "started" => self.started += 1,
            "skipped" => self.skipped += 1,
            "missed" => self.missed += 1,
            "failed" => self.failed += 1,
            _ => {}
        }
        if self.recent.len() >= Self::RECENT {
            self.recent.remove(0);
        }
        self.recent.push(ScheduleRun {
            due,
            at,
            outcome: outcome.to_string(),
            instance: None,
            error: None,
        });
        let last = self.recent.len() - 1;
        &mut self.recent[last]
    }
}

/// A decision a plugin took, with its exact input, kept so that another version can be replayed
/// on it (`POST /api/v1/plugins/{name}/replay`). The newest ones are kept, so many per plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    pub tenant: String,
    pub plugin: String,
    /// Increasing per plugin; given by the store when the record is kept.
    #[serde(default)]
    pub seq: u64,
    #[serde(with = "crate::engine::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// The version that decided.
    pub sha256: String,
    pub instance: String,
    pub workflow: String,
    pub workflow_version: u32,
    pub step: String,
    /// The request as the engine made it (its capability and fields).
    #[schema(value_type = Object)]
    pub request: crate::engine::PluginRequest,
    /// The instance data the plugin was given, as JSON text.
    pub data: String,
    /// What it decided, as the history shows it (without the version, which `sha256` names).
    #[schema(value_type = Object)]
    pub decision: serde_json::Value,
    /// The fuel the call used.
    pub fuel: u64,
    /// Whether running it again sees the same input: the version was granted nothing that varies
    /// between calls (clocks, random numbers, files, the network).
    pub replayable: bool,
}

/// One change in a commit. Serialized as it is into the redb store's write-ahead log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A new definition version.
    Definition(StoredDefinition),
    /// An instance's new state, with what the command recorded and asked for.
    Instance {
        /// The index entries of the state before, to drop those the new state no longer has;
        /// `None` for a new instance.
        before: Option<IndexKeys>,
        after: Arc<Instance>,
        events: Vec<Event>,
        outbox: Vec<OutboxEntry>,
        /// A start's idempotency key.
        idempotency_key: Option<String>,
        /// A completion's idempotency key, with its answer.
        completion_key: Option<Box<CompletionKey>>,
    },
    /// A schedule's state, new or changed.
    Schedule(Box<ScheduleState>),
    /// A message's record, new or with a new status (a buffered one taken or expired).
    Message(Box<MessageRecord>),
    /// Buffered messages that expired before `now` are marked expired, at most `limit`.
    ExpireMessages { now: Millis, limit: usize },
    /// Completion keys made before `before` are forgotten, at most `limit` of them.
    ExpireCompletionKeys { before: Millis, limit: usize },
    /// Outbox entries were carried out: they leave the outbox (and its due index).
    ClearOutbox { tenant: String, outbox: Vec<u64> },
    /// A plugin's decision with its input, kept with the plugin's newest `keep` (older ones go).
    RecordCall { record: Box<CallRecord>, keep: u64 },
    /// A finished instance leaves the hot store (retention): its state, history and index
    /// entries go; what it contributes to its workflow's metrics stays.
    Archive {
        tenant: String,
        instance: String,
        workflow: String,
        ended_at: Millis,
        facts: Box<crate::metrics::Facts>,
    },
    /// A write that changes nothing a reader sees (the time of the last check): whether the
    /// store can commit again after a failure.
    Probe { at: Millis },
    /// An outbox entry failed: record the attempt and when to try again. Nothing if it is gone.
    Retry {
        tenant: String,
        outbox: u64,
        attempts: u32,
        due_at: Millis,
    },
}

/// What an instance keeps in the store, encoded: the state (with every task it has had) and
/// the history, which grows with every event and is never cut while the instance is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoredSize {
    pub state_bytes: u64,
    pub history_events: u64,
    pub history_bytes: u64,
}

impl StoredSize {
    /// State and history together.
    pub fn total_bytes(&self) -> u64 {
        self.state_bytes + self.history_bytes
    }
}

/// Whose tasks an inbox lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "by", content = "id", rename_all = "kebab-case")]
pub enum Inbox {
    /// Tasks assigned to (or claimed by, or offered as a candidate to) this person.
    Person(String),
    /// Tasks offered to this role.
    Role(String),
}

impl Inbox {
    pub(crate) fn key(&self) -> String {
        match self {
            Inbox::Person(p) => format!("p:{p}"),
            Inbox::Role(r) => format!("r:{r}"),
        }
    }
}

/// A page of an inbox: task ids and their instances, by task id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRef {
    pub task: String,
    pub instance: String,
}

/// A timer that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub due_at: Millis,
    pub instance: String,
    pub timer: String,
}

/// Filters for listing instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFilter {
    pub definition: Option<String>,
    /// Only the instances of this process instance.
    pub process: Option<String>,
    pub status: Option<String>,
    pub started_after: Option<Millis>,
    pub started_before: Option<Millis>,
    /// Top-level data fields that must equal these values.
    pub data: BTreeMap<String, serde_json::Value>,
    /// Instance ids greater than this (paging); newest first, smaller.
    pub after: Option<String>,
    pub limit: usize,
    /// Newest (greatest id) first, so that a limit keeps the most recent.
    pub newest_first: bool,
}

impl InstanceFilter {
    pub(crate) fn matches(&self, instance: &Instance) -> bool {
        self.definition
            .as_ref()
            .is_none_or(|d| *d == instance.definition_id)
            && self
                .process
                .as_ref()
                .is_none_or(|p| p == instance.process_id())
            && self
                .status
                .as_ref()
                .is_none_or(|s| s == instance.status.as_str())
            && self.started_after.is_none_or(|t| instance.started_at >= t)
            && self.started_before.is_none_or(|t| instance.started_at < t)
            && self
                .data
                .iter()
                .all(|(k, v)| instance.data.get(k) == Some(v))
    }
}

/// A storage failure, whatever the backend. Decide by kind: a caller may retry after `DiskFull`
/// once the disk has room again, must reopen after `Poisoned`, and must not retry `Corrupt`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk (or the quota) has no room for the write. Retry once there is room again.
    #[error("the disk is full: no room to write the store ({0})")]
    DiskFull(#[source] std::io::Error),
    /// Reading or writing the file failed: a failing device, a permission.
    #[error("storage I/O failed: {0}")]
    Io(#[source] std::io::Error),
    /// An earlier write failed, and the backend refuses every later one until it is reopened.
    #[error("the store refuses writes after an earlier I/O failure until it is reopened")]
    Poisoned,
    /// The backend failed for another reason.
    #[error("storage error ({backend}): {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored record does not decode.
    #[error("corrupt record in {table}: {source}")]
    Corrupt {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by another schema version.
    #[error(
        "{path}: schema version {found}, but this Flowgate reads version {SCHEMA_VERSION}; use a matching release or migrate the file"
    )]
    Schema { path: String, found: u64 },
}

/// A redb error as the store's, keeping its source.
pub(crate) fn db<E: Into<::redb::Error>>(error: E) -> StoreError {
    match error.into() {
        ::redb::Error::Io(source) => io(source),
        ::redb::Error::PreviousIo => StoreError::Poisoned,
        other => StoreError::Backend {
            backend: "redb",
            source: Box::new(other),
        },
    }
}

/// An I/O error as the store's: a full disk or quota is told apart from other failures.
pub(crate) fn io(source: std::io::Error) -> StoreError {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::DiskFull(source),
        _ => StoreError::Io(source),
    }
}

impl StoreError {
    /// Whether the failure is the machine's (disk, device) rather than the data's: the backend
    /// is worth reopening and the write worth trying again.
    pub fn is_resource(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull(_) | StoreError::Io(_) | StoreError::Poisoned
        )
    }
}

/// What the engine reads and writes.
pub trait Storage: Send + Sync + 'static {
    /// A definition version, or the latest when `version` is `None`.
    fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError>;
    /// Every version of every definition of the tenant, by id then version.
    fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError>;
    /// Tenants that have deployed definitions (every instance belongs to one).
    fn tenants(&self) -> Result<Vec<String>, StoreError>;
    /// An instance.
    fn instance(&self, tenant: &str, id: &str) -> Result<Option<Instance>, StoreError>;
    /// Instances matching `filter`, by id.
    fn instances(&self, tenant: &str, filter: &InstanceFilter)
    -> Result<Vec<Instance>, StoreError>;
    /// An instance's history from `from`, at most `limit` events.
    fn history(
        &self,
        tenant: &str,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
    /// An instance with its whole history, read at one moment (the two agree).
    fn instance_with_history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Event>)>, StoreError>;
    /// Finished instances that ended before `before`, oldest end first: `(ended at, id)`.
    fn ended_before(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, String)>, StoreError>;
    /// The metrics facts of `workflow`'s archived instances that ended at or after `from`.
    fn archived_facts(
        &self,
        tenant: &str,
        workflow: &str,
        from: Millis,
    ) -> Result<Vec<crate::metrics::Facts>, StoreError>;
    /// What an instance keeps in the store: its state's and its history's size.
    fn instance_size(&self, tenant: &str, id: &str) -> Result<Option<StoredSize>, StoreError>;
    /// Tasks of an inbox with this status, after task id `after`, at most `limit`.
    fn inbox(
        &self,
        tenant: &str,
        inbox: &Inbox,
        status: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRef>, StoreError>;
    /// Timers due at or before `now`, earliest first.
    fn due_timers(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError>;
    /// Outbox entries due by `now` (not waiting after a failure), by due time then id, at most
    /// `limit` of those for which `skip(id)` is false. A skipped entry is passed over before it
    /// is read: the driver skips what it is carrying out already, which under a tenant's flood
    /// is hundreds of entries on every pass.
    fn due_outbox(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Outbox entries with id greater than `after`, oldest first.
    fn outbox(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// The instance a start idempotency key created.
    fn started_with_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// A completion made with this idempotency key, if it is still kept.
    fn completion_key(&self, tenant: &str, key: &str) -> Result<Option<CompletionKey>, StoreError>;
    /// The instances with a step waiting for message `name` with this correlation, by id.
    fn subscribers(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// A message received with this id.
    fn message(&self, tenant: &str, id: &str) -> Result<Option<MessageRecord>, StoreError>;
    /// Buffered messages of this name and correlation, oldest first (expired ones included
    /// until they are marked).
    fn buffered(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// Messages received, by id after `after`, at most `limit`.
    fn messages(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// The plugin's recorded calls, newest first, at most `limit`.
    fn call_records(
        &self,
        tenant: &str,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError>;
    /// The states of the tenant's schedules, by workflow and schedule id.
    fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleState>, StoreError>;
    /// The highest outbox id ever issued.
    fn last_outbox_id(&self) -> Result<u64, StoreError>;
    /// Applies `changes` atomically and durably: all of them or none. Shared, not borrowed: a
    /// backend that applies them later (redb, behind its write-ahead log) keeps them without a
    /// copy.
    fn commit(&self, changes: Arc<[Change]>) -> Result<(), StoreError>;
    /// Closes and opens the backend again after a write failed for a resource reason (a
    /// backend may refuse every later write until then). What was committed stays.
    fn reopen(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Writes a consistent copy of the whole store to the file `to`, while it keeps serving.
    fn backup(&self, to: &std::path::Path) -> Result<BackupSummary, StoreError> {
        let _ = to;
        Err(StoreError::Backend {
            backend: "memory",
            source: "this store keeps no file to back up".into(),
        })
    }
}
