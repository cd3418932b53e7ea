//! The default store: one redb file. One table per kind of record, keys as tuples that start
//! with the tenant, values as JSON.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::behind::{Behind, Next};
use super::index::{IndexKeys, listing_key, listing_keys};
use super::wal::{self, Wal};
use super::{
    CallRecord, Change, CompletionKey, DueTimer, Inbox, InstanceFilter, MessageRecord,
    MessageStatus, OutboxEntry, SCHEMA_VERSION, ScheduleState, Storage, StoreError,
    StoredDefinition, StoredSize, TaskRef, db,
};
use crate::engine::{Event, Instance, Millis};
use crate::metrics::Facts;

mod behind;

/// The page cache a store opens with unless told otherwise: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// `(tenant, definition id, version)` → definition.
const DEFINITIONS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("definitions");
/// `(tenant, instance id)` → instance state.
const INSTANCES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("instances");
/// `(tenant, instance id, seq)` → event.
const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("history");
/// `(tenant, "p:person" | "r:role", status, task id)` → instance id: inboxes without scans.
const TASKS: TableDefinition<(&str, &str, &str, &str), &str> = TableDefinition::new("tasks");
/// `(tenant, due, instance id, timer id)`: firing is a range read.
const TIMERS: TableDefinition<(&str, u64, &str, &str), ()> = TableDefinition::new("timers");
/// `(tenant, outbox id)` → effect.
const OUTBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outbox");
/// `(tenant, idempotency key)` → instance id.
const START_KEYS: TableDefinition<(&str, &str), &str> = TableDefinition::new("start_keys");
/// `(tenant, idempotency key)` → the completion it made ([`CompletionKey`]).
const COMPLETION_KEYS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("completion_keys");
/// `(made at, tenant, idempotency key)`: completion keys by age, to forget them when expired.
const COMPLETION_KEYS_AGE: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("completion_keys_age");
/// `(tenant, listing key, instance id)`: instance lists filtered by workflow or status read
/// only what can match (see `index::listing_keys`). Added in schema version 2.
const LISTING: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("listing");
/// `(tenant, due time, outbox id)`: the outbox entries to carry out next, in order; an entry
/// waiting after a failure sits at its retry time. Added in schema version 2.
const OUTBOX_DUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("outbox_due");
/// `(tenant, message name, correlation, instance id, subscription id)`: the steps waiting for a
/// message, found by an index read rather than a scan. Added in schema version 4.
const SUBSCRIPTIONS: TableDefinition<(&str, &str, &str, &str, &str), ()> =
    TableDefinition::new("subscriptions");
/// `(tenant, message id)` → the message as received and what became of it ([`MessageRecord`]).
const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
/// `(tenant, message name, correlation, received at, message id)`: buffered messages, oldest
/// first, for the step that subscribes next.
const BUFFERED: TableDefinition<(&str, &str, &str, u64, &str), ()> =
    TableDefinition::new("buffered");
/// `(expires at, tenant, message id)`: buffered messages by expiry, to mark them expired.
const BUFFER_EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("buffer_expiry");
/// `(tenant, workflow, schedule id)` → where the schedule stands ([`ScheduleState`]). Added in
/// schema version 4.
const SCHEDULES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("schedules");
/// `(tenant, ended at, instance id)`: finished instances by end, for retention. Added in schema
/// version 5.
const ENDED: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("ended");
/// `(tenant, workflow, ended at, instance id)` → an archived instance's metrics facts
/// ([`Facts`]). Added in schema version 5.
const FACTS: TableDefinition<(&str, &str, u64, &str), &[u8]> = TableDefinition::new("facts");
/// Schema version and counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Recorded plugin calls (`CallRecord`), by tenant, plugin and seq; and the last seq given per
/// plugin, so that the record falling out of the kept window is found without counting.
const CALLS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("calls");
const CALL_SEQ: TableDefinition<(&str, &str), u64> = TableDefinition::new("call_seq");
/// In [`META`]: the last write-ahead log record the store holds.
const WAL_SEQ: &str = "wal_seq";
/// In [`META`]: the store's id, which its write-ahead log carries (a backup gets its own).
const STORE_ID: &str = "store_id";

/// A checkpoint (one durable redb commit) comes after this many bytes of log records...
const CHECKPOINT_BYTES: u64 = 8 << 20;
/// ...or this many commits, whichever is first. It bounds the log to replay after a crash and
/// the pages redb keeps unpersisted in memory. Commits wait only for the checkpoint's short
/// second step (see `Inner::checkpoint`), so the interval is not bound by their latency: when
/// they waited for all of it, 8 MiB held them 30 to 70 ms at 64 clients, and the interval of
/// 1 MiB that it took instead made checkpoints nearly a quarter of the applier's time.
const CHECKPOINT_RECORDS: u64 = 8192;

/// Commits queued for redb past this many, the commit that queues one more applies them itself:
/// an applier that cannot keep up slows the writer instead of filling memory.
const MAX_BEHIND: usize = 1024;

/// The redb store.
///
/// redb refuses every write after one failed (`PreviousIo`) until the file is opened again, so
/// the database sits behind a lock: [`Storage::reopen`] closes and opens it in place once the
/// cause (a full disk) may have passed. Reads hold the lock for their transaction's life, so no
/// transaction outlives the handle it came from.
///
/// A commit is durable once the write-ahead log holds it; redb applies it behind the writer, on
/// the store's applier thread (see `behind`).
#[derive(Debug)]
pub struct RedbStore {
    inner: Arc<Inner>,
    /// Stopped and joined when the store is dropped.
    applier: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` after a reopen that failed, until one succeeds.
    db: RwLock<Option<Database>>,
    /// The write-ahead log; locked by the commit that writes it (commits are one at a time).
    log: Mutex<Log>,
    /// Commits the log holds and redb does not yet.
    behind: Behind,
    /// Set when redb itself failed a write (not only the log): it refuses writes until it is
    /// reopened. A failure to append to the log alone leaves redb as it was, so the store keeps
    /// serving reads on a full disk instead of closing a database it might not open again.
    needs_reopen: AtomicBool,
}

/// The write-ahead log and the next record's number.
#[derive(Debug)]
struct Log {
    wal: Wal,
    next_seq: u64,
    /// A record whose write failed could not be taken back: no record may follow it, so the
    /// store refuses commits until it is reopened. (Only an I/O failure of the disk itself gets
    /// here; the record may then be applied at the next open, as a database's commit whose
    /// sync failed may be.)
    broken: bool,
    /// The next record's payload, kept between commits (see `Wal`'s own buffer).
    payload: Vec<u8>,
}

impl Log {
    fn over_limit(&self) -> bool {
        self.wal.bytes() >= CHECKPOINT_BYTES || self.wal.records() >= CHECKPOINT_RECORDS
    }
}

/// A read transaction, with the database it reads held open.
struct Snapshot<'a> {
    txn: ReadTransaction,
    _open: RwLockReadGuard<'a, Option<Database>>,
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain data (no maps with non-string keys): serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { table, source })
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, refusing a file of another schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        RedbStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store with a page cache of `cache_bytes` (redb's own default,
    /// 1 GiB, is more than a small server has to spare).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(super::io)?;
        }
        let (db, log) = open_logged(path, cache_bytes)?;
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            cache_bytes,
            behind: Behind::new(log.next_seq - 1),
            db: RwLock::new(Some(db)),
            log: Mutex::new(log),
            needs_reopen: AtomicBool::new(false),
        });
        let applier = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("flowgate-store".to_string())
                .spawn(move || inner.run_applier())
                .map_err(super::io)?
        };
        Ok(RedbStore {
            inner,
            applier: Some(applier),
        })
    }

    /// Makes every commit so far durable in redb itself, so the log can start over.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }

    /// The file the store keeps.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A read transaction on the open database, which holds every commit acknowledged so far.
    fn read(&self) -> Result<Snapshot<'_>, StoreError> {
        let open = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let database = open.as_ref().ok_or(StoreError::Poisoned)?;
        self.inner.catch_up(database)?;
        let txn = database.begin_read().map_err(db)?;
        Ok(Snapshot { txn, _open: open })
    }

    /// Writes a consistent copy of the whole store to `to` (a new file) while it keeps serving:
    /// the copy reads one snapshot, so commits go on beside it and none is half in it. The copy
    /// is written next to `to` and renamed into place once durable, so `to` is whole or absent.
    pub fn backup_to(&self, to: &Path) -> Result<BackupSummary, StoreError> {
        let snapshot = self.read()?;
        let partial = to.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        let copy = Database::builder()
            .set_cache_size(DEFAULT_CACHE_BYTES)
            .create(&partial)
            .map_err(db)?;
        let mut summary = BackupSummary::default();
        let mut txn = copy.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        let mut n = |table: &'static str, count: u64| {
            summary.records += count;
            match table {
                "instances" => summary.instances = count,
                "definitions" => summary.definitions = count,
                "history" => summary.events = count,
                _ => {}
            }
        };
        n("definitions", copy_table(&snapshot, &txn, DEFINITIONS)?);
        n("instances", copy_table(&snapshot, &txn, INSTANCES)?);
        n("history", copy_table(&snapshot, &txn, HISTORY)?);
        n("tasks", copy_table(&snapshot, &txn, TASKS)?);
        n("timers", copy_table(&snapshot, &txn, TIMERS)?);
        n("outbox", copy_table(&snapshot, &txn, OUTBOX)?);
        n("start_keys", copy_table(&snapshot, &txn, START_KEYS)?);
        n(
            "completion_keys",
            copy_table(&snapshot, &txn, COMPLETION_KEYS)?,
        );
        n(
            "completion_keys_age",
            copy_table(&snapshot, &txn, COMPLETION_KEYS_AGE)?,
        );
        n("listing", copy_table(&snapshot, &txn, LISTING)?);
        n("outbox_due", copy_table(&snapshot, &txn, OUTBOX_DUE)?);
        n("subscriptions", copy_table(&snapshot, &txn, SUBSCRIPTIONS)?);
        n("messages", copy_table(&snapshot, &txn, MESSAGES)?);
        n("buffered", copy_table(&snapshot, &txn, BUFFERED)?);
        n("buffer_expiry", copy_table(&snapshot, &txn, BUFFER_EXPIRY)?);
        n("schedules", copy_table(&snapshot, &txn, SCHEDULES)?);
        n("ended", copy_table(&snapshot, &txn, ENDED)?);
        n("facts", copy_table(&snapshot, &txn, FACTS)?);
        n("calls", copy_table(&snapshot, &txn, CALLS)?);
        n("call_seq", copy_table(&snapshot, &txn, CALL_SEQ)?);
        n("meta", copy_table(&snapshot, &txn, META)?);
        drop(snapshot);
        // The copy is a store of its own: this store's log is never applied to it.
        txn.open_table(META)
            .map_err(db)?
            .insert(STORE_ID, new_store_id())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        drop(copy);
        std::fs::rename(&partial, to).map_err(super::io)?;
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(super::io)?;
        }
        summary.bytes = std::fs::metadata(to).map_err(super::io)?.len();
        Ok(summary)
    }
}

/// What a backup copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    pub definitions: u64,
    pub instances: u64,
    /// History events.
    pub events: u64,
    /// Every record of every table, indexes included.
    pub records: u64,
    /// The size of the copy.
    pub bytes: u64,
}

/// Copies every entry of `table` from a snapshot into `to`, returning how many.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let source = from.open_table(table).map_err(db)?;
    let mut target = to.open_table(table).map_err(db)?;
    let mut copied = 0;
    for entry in source.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        target.insert(key.value(), value.value()).map_err(db)?;
        copied += 1;
    }
    Ok(copied)
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.inner.behind.stop();
        if let Some(applier) = self.applier.take() {
            let _ = applier.join();
        }
        // Not needed for safety (the log is applied again at the next open), but a store closed
        // cleanly opens without replaying it.
        if let Err(error) = self.checkpoint() {
            tracing::debug!(%error, "store: no checkpoint at close");
        }
    }
}

impl Inner {
    /// The applier's thread: applies what the log holds and redb does not, batch after batch,
    /// and makes a checkpoint when the log has grown past its limit.
    fn run_applier(&self) {
        while let Next::Apply = self.behind.wait() {
            {
                let open = self.db.read().unwrap_or_else(PoisonError::into_inner);
                let Some(database) = open.as_ref() else {
                    // Closed by a reopen that failed: the next one applies the log.
                    self.behind.refused(Vec::new());
                    continue;
                };
                if let Err(error) = self.catch_up(database) {
                    tracing::error!(%error, "store: redb refused commits the write-ahead log holds; the store refuses writes until it is reopened");
                }
            }
            if self.behind.take_checkpoint_due()
                && let Err(error) = self.checkpoint()
            {
                tracing::warn!(%error, "store: checkpoint failed; the write-ahead log keeps every commit");
            }
        }
    }

    /// Brings redb up to every commit the log held when this was called: applies what is still
    /// queued, unless another thread is applying it, whom this waits for.
    fn catch_up(&self, database: &Database) -> Result<(), StoreError> {
        if self.behind.caught_up() {
            return Ok(());
        }
        let _applying = self.behind.applying();
        let Some(batch) = self.behind.take() else {
            return Err(StoreError::Poisoned);
        };
        let Some(&(last, _)) = batch.last() else {
            return Ok(());
        };
        let applied = (|| {
            let mut txn = database.begin_write().map_err(db)?;
            txn.set_durability(Durability::None).map_err(db)?;
            apply(
                &txn,
                batch.iter().flat_map(|(_, changes)| changes.iter()),
                last,
            )?;
            txn.commit().map_err(db)
        })();
        match applied {
            Ok(()) => {
                self.behind.applied(last);
                Ok(())
            }
            Err(error) => {
                self.needs_reopen.store(true, Ordering::Release);
                self.behind.refused(batch);
                Err(error)
            }
        }
    }

    /// Applies every commit queued, then makes them durable in redb, so the log can start over.
    ///
    /// In two steps, so that commits wait for the short one only. First, while commits go on,
    /// everything queued so far becomes durable: this writes nearly all the pages changed
    /// since the last checkpoint. Then, with the log locked (no commit may join it that the
    /// checkpoint misses), what came meanwhile, and the log starts over.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let open = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let database = open.as_ref().ok_or(StoreError::Poisoned)?;
        let broken = |_: &StoreError| self.needs_reopen.store(true, Ordering::Release);
        self.catch_up(database)?;
        durable_commit(database).inspect_err(broken)?;
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        self.catch_up(database)?;
        durable_commit(database).inspect_err(broken)?;
        log.wal.restart();
        // Commits past the limit asked for this checkpoint while its first step ran.
        self.behind.take_checkpoint_due();
        Ok(())
    }
}

/// Opens the database and its write-ahead log, applying the log's commits that the database
/// does not hold yet (those after its last checkpoint, when the process stopped without one).
fn open_logged(path: &Path, cache_bytes: usize) -> Result<(Database, Log), StoreError> {
    let database = open_database(path, cache_bytes)?;
    let (durable, store_id) = {
        let txn = database.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let get = |key| -> Result<u64, StoreError> {
            Ok(meta.get(key).map_err(db)?.map(|v| v.value()).unwrap_or(0))
        };
        (get(WAL_SEQ)?, get(STORE_ID)?)
    };
    let mut wal = Wal::open(&wal::path_for(path), store_id).map_err(super::io)?;
    tracing::debug!(log = %wal.path().display(), direct = wal.is_direct(), "store: write-ahead log opened");
    let records = wal.read().map_err(super::io)?;
    let replay: Vec<_> = records.iter().filter(|r| r.seq > durable).collect();
    let Some(first) = replay.first() else {
        wal.restart();
        let log = Log {
            wal,
            next_seq: durable + 1,
            broken: false,
            payload: Vec::new(),
        };
        return Ok((database, log));
    };
    if first.seq != durable + 1 {
        return Err(StoreError::Backend {
            backend: "redb",
            source: format!(
                "{}: the write-ahead log resumes at commit {} but the store holds commits up to {durable}",
                wal.path().display(),
                first.seq
            )
            .into(),
        });
    }
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::None).map_err(db)?;
    let mut last = durable;
    for record in &replay {
        let changes: Vec<Change> =
            serde_json::from_slice(&record.payload).map_err(|source| StoreError::Corrupt {
                table: "write-ahead log",
                source,
            })?;
        apply(&txn, &changes, record.seq)?;
        last = record.seq;
    }
    txn.commit().map_err(db)?;
    wal.resume_after(&records).map_err(super::io)?;
    let mut log = Log {
        wal,
        next_seq: last + 1,
        broken: false,
        payload: Vec::new(),
    };
    checkpoint(&database, &mut log)?;
    tracing::info!(
        path = %path.display(),
        commits = replay.len(),
        "store: applied the commits the write-ahead log held after the last checkpoint"
    );
    Ok((database, log))
}

/// One durable redb commit holding every commit so far; the log then starts over.
fn checkpoint(database: &Database, log: &mut Log) -> Result<(), StoreError> {
    durable_commit(database)?;
    log.wal.restart();
    Ok(())
}

/// Makes every commit redb has applied durable in its file.
fn durable_commit(database: &Database) -> Result<(), StoreError> {
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::Immediate).map_err(db)?;
    txn.commit().map_err(db)
}

/// Opens (or creates) the database at `path`, migrating an older schema and refusing a newer
/// one.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db_handle = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(db)?;
    let txn = db_handle.begin_write().map_err(db)?;
    {
        let mut meta = txn.open_table(META).map_err(db)?;
        let found = meta.get("schema_version").map_err(db)?.map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Schema {
                    path: path.display().to_string(),
                    found: v,
                });
            }
            Some(v) if v < SCHEMA_VERSION => {
                if v < 2 {
                    migrate_to_2(&txn)?;
                }
                if v < 3 {
                    migrate_to_3(&txn)?;
                }
                if v < 4 {
                    // Version 4 added the message and schedule tables, created empty below
                    // (no instance of an older version waits for a message), and the listing
                    // of each process instance's instances.
                    migrate_to_4(&txn)?;
                }
                migrate_to_5(&txn)?;
                meta.insert("schema_version", SCHEMA_VERSION).map_err(db)?;
                tracing::info!(path = %path.display(), from = v, "store: migrated to schema version {SCHEMA_VERSION}");
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", SCHEMA_VERSION).map_err(db)?;
            }
        }
        if meta.get(STORE_ID).map_err(db)?.is_none() {
            meta.insert(STORE_ID, new_store_id()).map_err(db)?;
        }
        txn.open_table(DEFINITIONS).map_err(db)?;
        txn.open_table(INSTANCES).map_err(db)?;
        txn.open_table(HISTORY).map_err(db)?;
        txn.open_table(TASKS).map_err(db)?;
        txn.open_table(TIMERS).map_err(db)?;
        txn.open_table(OUTBOX).map_err(db)?;
        txn.open_table(START_KEYS).map_err(db)?;
        txn.open_table(LISTING).map_err(db)?;
        txn.open_table(OUTBOX_DUE).map_err(db)?;
        txn.open_table(COMPLETION_KEYS).map_err(db)?;
        txn.open_table(COMPLETION_KEYS_AGE).map_err(db)?;
        txn.open_table(SUBSCRIPTIONS).map_err(db)?;
        txn.open_table(MESSAGES).map_err(db)?;
        txn.open_table(BUFFERED).map_err(db)?;
        txn.open_table(BUFFER_EXPIRY).map_err(db)?;
        txn.open_table(SCHEDULES).map_err(db)?;
        txn.open_table(ENDED).map_err(db)?;
        txn.open_table(FACTS).map_err(db)?;
        txn.open_table(CALLS).map_err(db)?;
        txn.open_table(CALL_SEQ).map_err(db)?;
    }
    txn.commit().map_err(db)?;
    Ok(db_handle)
}

fn new_store_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Version 1 had no listing index: build it from the instances. Nor the outbox's due index:
/// every pending entry is due at once.
fn migrate_to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let instances = txn.open_table(INSTANCES).map_err(db)?;
    let mut listing = txn.open_table(LISTING).map_err(db)?;
    for entry in instances.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        let (tenant, id) = key.value();
        let instance: Instance = decode("instances", value.value())?;
        for k in listing_keys(&instance) {
            listing.insert((tenant, k.as_str(), id), ()).map_err(db)?;
        }
    }
    let outbox = txn.open_table(OUTBOX).map_err(db)?;
    let mut due = txn.open_table(OUTBOX_DUE).map_err(db)?;
    for entry in outbox.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        let (tenant, id) = key.value();
        let entry: serde_json::Value = decode("outbox", value.value())?;
        let due_at = entry["due_at"].as_u64().unwrap_or(0);
        due.insert((tenant, due_at, id), ()).map_err(db)?;
    }
    Ok(())
}

/// Version 4 lists instances by process instance (each older instance is its own).
fn migrate_to_4(txn: &WriteTransaction) -> Result<(), StoreError> {
    let instances = txn.open_table(INSTANCES).map_err(db)?;
    let mut listing = txn.open_table(LISTING).map_err(db)?;
    for entry in instances.iter().map_err(db)? {
        let (key, _) = entry.map_err(db)?;
        let (tenant, id) = key.value();
        let k = super::index::process_key(id);
        listing.insert((tenant, k.as_str(), id), ()).map_err(db)?;
    }
    Ok(())
}

/// Version 5 indexes finished instances by their end, for retention.
fn migrate_to_5(txn: &WriteTransaction) -> Result<(), StoreError> {
    let instances = txn.open_table(INSTANCES).map_err(db)?;
    let mut ended = txn.open_table(ENDED).map_err(db)?;
    for entry in instances.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        let (tenant, id) = key.value();
        let instance: Instance = decode("instances", value.value())?;
        if let Some(at) = super::ended_key(&instance) {
            ended.insert((tenant, at, id), ()).map_err(db)?;
        }
    }
    Ok(())
}

/// Version 2 stored the three plugin calls as three effects (`run-action`, `evaluate-policy`,
/// `evaluate-route`); version 3 has one, `call-plugin`, with the capability's request inside.
fn migrate_to_3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut outbox = txn.open_table(OUTBOX).map_err(db)?;
    let mut upgraded = Vec::new();
    for entry in outbox.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        let mut entry: serde_json::Value = decode("outbox", value.value())?;
        if let Some(effect) = entry.get_mut("effect")
            && upgrade_plugin_call(effect)
        {
            let (tenant, id) = key.value();
            upgraded.push((tenant.to_string(), id, encode(&entry)));
        }
    }
    for (tenant, id, bytes) in upgraded {
        outbox
            .insert((tenant.as_str(), id), bytes.as_slice())
            .map_err(db)?;
    }
    Ok(())
}

/// Rewrites a schema 2 plugin-call effect in place; false for any other effect.
fn upgrade_plugin_call(effect: &mut serde_json::Value) -> bool {
    let Some(fields) = effect.as_object_mut() else {
        return false;
    };
    let (capability, moved): (&str, &[&str]) = match fields.get("effect").and_then(|e| e.as_str()) {
        Some("run-action") => ("step-action", &["action", "params", "key"]),
        Some("evaluate-policy") => (
            "approval-policy",
            &["amount", "currency", "category", "requester"],
        ),
        Some("evaluate-route") => ("router", &["candidates"]),
        _ => return false,
    };
    let mut request = serde_json::Map::new();
    request.insert("capability".into(), capability.into());
    for name in moved {
        if let Some(value) = fields.remove(*name) {
            request.insert((*name).to_string(), value);
        }
    }
    fields.insert("effect".into(), "call-plugin".into());
    fields.insert("request".into(), request.into());
    true
}

impl Storage for RedbStore {
    fn definition(
        &self,
        tenant: &str,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEFINITIONS).map_err(db)?;
        let found = match version {
            Some(v) => table
                .get((tenant, id, v))
                .map_err(db)?
                .map(|g| g.value().to_vec()),
            None => table
                .range((tenant, id, 0)..=(tenant, id, u32::MAX))
                .map_err(db)?
                .next_back()
                .transpose()
                .map_err(db)?
                .map(|(_, v)| v.value().to_vec()),
        };
        found.map(|bytes| decode("definitions", &bytes)).transpose()
    }

    fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(DEFINITIONS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, "", 0)..).map_err(db)? {
            let (key, value) = entry.map_err(db)?;
            if key.value().0 != tenant {
                break;
            }
            out.push(decode("definitions", value.value())?);
        }
        Ok(out)
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.read()?;
        let mut tenants = std::collections::BTreeSet::new();
        let definitions = txn.open_table(DEFINITIONS).map_err(db)?;
        let mut next: Option<String> = Some(String::new());
        // Skip from tenant to tenant rather than reading every definition.
        while let Some(from) = next.take() {
            let mut range = definitions.range((from.as_str(), "", 0)..).map_err(db)?;
            if let Some(entry) = range.next() {
                let (key, _) = entry.map_err(db)?;
                let tenant = key.value().0.to_string();
                next = Some(format!("{tenant}\u{0}"));
                tenants.insert(tenant);
            }
        }
        Ok(tenants.into_iter().collect())
    }

    fn instance(&self, tenant: &str, id: &str) -> Result<Option<Instance>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(INSTANCES).map_err(db)?;
        let found = table.get((tenant, id)).map_err(db)?;
        found.map(|g| decode("instances", g.value())).transpose()
    }

    fn instances(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(INSTANCES).map_err(db)?;
        let after = filter
            .after
            .clone()
            .map(|a| format!("{a}\u{0}"))
            .unwrap_or_default();
        let mut out = Vec::new();
        let key = match &filter.process {
            Some(process) => Some(super::index::process_key(process)),
            None => listing_key(filter.definition.as_deref(), filter.status.as_deref()),
        };
        if let Some(key) = key {
            let listing = txn.open_table(LISTING).map_err(db)?;
            let entries = if filter.newest_first {
                // Below `after` (exclusive), or every id under the key.
                let past = format!("{key}\u{0}");
                let upper = match &filter.after {
                    Some(a) => (tenant, key.as_str(), a.as_str()),
                    None => (tenant, past.as_str(), ""),
                };
                let range = listing.range((tenant, key.as_str(), "")..upper);
                Box::new(range.map_err(db)?.rev()) as Box<dyn Iterator<Item = _>>
            } else {
                let range = listing.range((tenant, key.as_str(), after.as_str())..);
                Box::new(range.map_err(db)?)
            };
            for entry in entries {
                let (found, _) = entry.map_err(db)?;
                let (t, k, id) = found.value();
                if t != tenant || k != key || out.len() >= filter.limit {
                    break;
                }
                let Some(value) = table.get((tenant, id)).map_err(db)? else {
                    continue;
                };
                let instance: Instance = decode("instances", value.value())?;
                if filter.matches(&instance) {
                    out.push(instance);
                }
            }
            return Ok(out);
        }
        let entries = if filter.newest_first {
            let past = format!("{tenant}\u{0}");
            let upper = match &filter.after {
                Some(a) => (tenant, a.as_str()),
                None => (past.as_str(), ""),
            };
            let range = table.range((tenant, "")..upper);
            Box::new(range.map_err(db)?.rev()) as Box<dyn Iterator<Item = _>>
        } else {
            Box::new(table.range((tenant, after.as_str())..).map_err(db)?)
        };
        for entry in entries {
            let (key, value) = entry.map_err(db)?;
            if key.value().0 != tenant || out.len() >= filter.limit {
                break;
            }
            let instance: Instance = decode("instances", value.value())?;
            if filter.matches(&instance) {
                out.push(instance);
            }
        }
        Ok(out)
    }

    fn history(
        &self,
        tenant: &str,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let txn = self.read()?;
        read_history(&txn, tenant, instance, from, limit)
    }

    fn instance_with_history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Event>)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(INSTANCES).map_err(db)?;
        let Some(found) = table.get((tenant, id)).map_err(db)? else {
            return Ok(None);
        };
        let instance = decode("instances", found.value())?;
        let history = read_history(&txn, tenant, id, 0, usize::MAX)?;
        Ok(Some((instance, history)))
    }

    fn ended_before(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, String)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(ENDED).map_err(db)?;
        let mut out = Vec::new();
        for entry in table
            .range((tenant, 0, "")..(tenant, before, ""))
            .map_err(db)?
        {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(db)?;
            let (_, at, id) = key.value();
            out.push((at, id.to_string()));
        }
        Ok(out)
    }

    fn archived_facts(
        &self,
        tenant: &str,
        workflow: &str,
        from: Millis,
    ) -> Result<Vec<Facts>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(FACTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table
            .range((tenant, workflow, from, "")..=(tenant, workflow, u64::MAX, "\u{10ffff}"))
            .map_err(db)?
        {
            let (_, value) = entry.map_err(db)?;
            out.push(decode("facts", value.value())?);
        }
        Ok(out)
    }

    fn instance_size(&self, tenant: &str, id: &str) -> Result<Option<StoredSize>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(INSTANCES).map_err(db)?;
        let Some(state) = table.get((tenant, id)).map_err(db)? else {
            return Ok(None);
        };
        let mut size = StoredSize {
            state_bytes: state.value().len() as u64,
            ..StoredSize::default()
        };
        let history = txn.open_table(HISTORY).map_err(db)?;
        // Lengths only: nothing is decoded.
        for entry in history
            .range((tenant, id, 0)..=(tenant, id, u64::MAX))
            .map_err(db)?
        {
            let (_, event) = entry.map_err(db)?;
            size.history_events += 1;
            size.history_bytes += event.value().len() as u64;
        }
        Ok(Some(size))
    }

    fn inbox(
        &self,
        tenant: &str,
        inbox: &Inbox,
        status: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRef>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(TASKS).map_err(db)?;
        let who = inbox.key();
        let start = after.map(|a| format!("{a}\u{0}")).unwrap_or_default();
        let mut out = Vec::new();
        for entry in table
            .range((tenant, who.as_str(), status, start.as_str())..)
            .map_err(db)?
        {
            let (key, value) = entry.map_err(db)?;
            let (t, w, s, task) = key.value();
            if t != tenant || w != who || s != status || out.len() >= limit {
                break;
            }
            out.push(TaskRef {
                task: task.to_string(),
                instance: value.value().to_string(),
            });
        }
        Ok(out)
    }

    fn due_timers(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(TIMERS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, 0, "", "")..).map_err(db)? {
            let (key, _) = entry.map_err(db)?;
            let (t, due, instance, timer) = key.value();
            if t != tenant || due > now || out.len() >= limit {
                break;
            }
            out.push(DueTimer {
                due_at: due,
                instance: instance.to_string(),
                timer: timer.to_string(),
            });
        }
        Ok(out)
    }

    fn outbox(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(OUTBOX).map_err(db)?;
        let range = table
            .range((tenant, after.saturating_add(1))..=(tenant, u64::MAX))
            .map_err(db)?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (_, value) = entry.map_err(db)?;
            out.push(decode("outbox", value.value())?);
        }
        Ok(out)
    }

    fn due_outbox(
        &self,
        tenant: &str,
        now: Millis,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let due = txn.open_table(OUTBOX_DUE).map_err(db)?;
        let outbox = txn.open_table(OUTBOX).map_err(db)?;
        let mut out = Vec::new();
        for entry in due
            .range((tenant, 0, 0)..=(tenant, now, u64::MAX))
            .map_err(db)?
        {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(db)?;
            let (_, _, id) = key.value();
            if skip(id) {
                continue;
            }
            if let Some(value) = outbox.get((tenant, id)).map_err(db)? {
                out.push(decode("outbox", value.value())?);
            }
        }
        Ok(out)
    }

    fn started_with_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(START_KEYS).map_err(db)?;
        Ok(table
            .get((tenant, key))
            .map_err(db)?
            .map(|g| g.value().to_string()))
    }

    fn completion_key(&self, tenant: &str, key: &str) -> Result<Option<CompletionKey>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(COMPLETION_KEYS).map_err(db)?;
        let found = table.get((tenant, key)).map_err(db)?;
        found
            .map(|g| decode("completion key", g.value()))
            .transpose()
    }

    fn subscribers(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SUBSCRIPTIONS).map_err(db)?;
        let mut out: Vec<String> = Vec::new();
        for entry in table
            .range((tenant, name, correlation, "", "")..)
            .map_err(db)?
        {
            let (key, _) = entry.map_err(db)?;
            let (t, n, c, instance, _) = key.value();
            if t != tenant || n != name || c != correlation || out.len() >= limit {
                break;
            }
            if out.last().map(String::as_str) != Some(instance) {
                out.push(instance.to_string());
            }
        }
        Ok(out)
    }

    fn message(&self, tenant: &str, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(MESSAGES).map_err(db)?;
        let found = table.get((tenant, id)).map_err(db)?;
        found.map(|g| decode("messages", g.value())).transpose()
    }

    fn buffered(
        &self,
        tenant: &str,
        name: &str,
        correlation: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BUFFERED).map_err(db)?;
        let messages = txn.open_table(MESSAGES).map_err(db)?;
        let mut out = Vec::new();
        for entry in table
            .range((tenant, name, correlation, 0, "")..)
            .map_err(db)?
        {
            let (key, _) = entry.map_err(db)?;
            let (t, n, c, _, id) = key.value();
            if t != tenant || n != name || c != correlation || out.len() >= limit {
                break;
            }
            if let Some(record) = messages.get((tenant, id)).map_err(db)? {
                out.push(decode("messages", record.value())?);
            }
        }
        Ok(out)
    }

    fn messages(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(MESSAGES).map_err(db)?;
        let start = after.map(|a| format!("{a}\u{0}")).unwrap_or_default();
        let mut out = Vec::new();
        for entry in table.range((tenant, start.as_str())..).map_err(db)? {
            let (key, value) = entry.map_err(db)?;
            if key.value().0 != tenant || out.len() >= limit {
                break;
            }
            out.push(decode("messages", value.value())?);
        }
        Ok(out)
    }

    fn call_records(
        &self,
        tenant: &str,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(CALLS).map_err(db)?;
        let mut out = Vec::new();
        let range = table
            .range((tenant, plugin, 0)..=(tenant, plugin, u64::MAX))
            .map_err(db)?;
        for entry in range.rev().take(limit) {
            let (_, value) = entry.map_err(db)?;
            out.push(decode("calls", value.value())?);
        }
        Ok(out)
    }

    fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleState>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SCHEDULES).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.range((tenant, "", "")..).map_err(db)? {
            let (key, value) = entry.map_err(db)?;
            if key.value().0 != tenant {
                break;
            }
            out.push(decode("schedules", value.value())?);
        }
        Ok(out)
    }

    fn last_outbox_id(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(META).map_err(db)?;
        Ok(table
            .get("last_outbox_id")
            .map_err(db)?
            .map(|g| g.value())
            .unwrap_or(0))
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut open = inner.db.write().unwrap_or_else(PoisonError::into_inner);
        let broken = inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .broken;
        if open.is_some() && !broken && !inner.needs_reopen.load(Ordering::Acquire) {
            // Only the log failed to grow: redb is as it was, and the next commit tries again.
            return Ok(());
        }
        // Closed first: the file is locked while a handle is open.
        drop(open.take());
        let (database, log) = open_logged(&inner.path, inner.cache_bytes)?;
        // Opening applied the whole log: nothing is behind.
        inner.behind.reset(log.next_seq - 1);
        *inner.log.lock().unwrap_or_else(PoisonError::into_inner) = log;
        *open = Some(database);
        inner.needs_reopen.store(false, Ordering::Release);
        tracing::info!(path = %inner.path.display(), "store: reopened");
        Ok(())
    }

    fn backup(&self, to: &Path) -> Result<BackupSummary, StoreError> {
        self.backup_to(to)
    }

    fn commit(&self, changes: Arc<[Change]>) -> Result<(), StoreError> {
        let span = tracing::trace_span!("store.commit", changes = changes.len());
        let _entered = span.enter();
        let inner = &*self.inner;
        let open = inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let database = open.as_ref().ok_or(StoreError::Poisoned)?;
        let mut log = inner.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.broken || inner.needs_reopen.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        let seq = log.next_seq;
        // Durable once the log has it; redb applies it behind the writer.
        let Log { wal, payload, .. } = &mut *log;
        payload.clear();
        serde_json::to_writer(&mut *payload, &*changes).map_err(|source| StoreError::Corrupt {
            table: "write-ahead log",
            source,
        })?;
        let appended = wal.append(seq, payload);
        wal::keep_reusable(payload);
        if let Err(error) = appended {
            if log.wal.torn() {
                tracing::error!(%error, "store: a failed log write could not be taken back");
                log.broken = true;
            }
            return Err(super::io(error));
        }
        log.next_seq = seq + 1;
        let queued = inner.behind.push(seq, changes);
        if log.over_limit() {
            inner.behind.checkpoint_due();
        }
        drop(log);
        if queued > MAX_BEHIND
            && let Err(error) = inner.catch_up(database)
        {
            // The command is durable in the log, which the store applies when it is reopened.
            tracing::error!(%error, "store: redb refused commits the write-ahead log holds; the store refuses writes until it is reopened");
        }
        Ok(())
    }
}

/// Applies commits' changes in `txn`, recording `seq` as the last log record it holds.
fn apply<'c>(
    txn: &WriteTransaction,
    changes: impl IntoIterator<Item = &'c Change>,
    seq: u64,
) -> Result<(), StoreError> {
    let mut t = Tables::new(txn);
    let mut last_outbox = None;
    for change in changes {
        match change {
            Change::Definition(d) => {
                t.definitions()?
                    .insert(
                        (d.tenant.as_str(), d.definition.id.as_str(), d.version),
                        encode(d).as_slice(),
                    )
                    .map_err(db)?;
            }
            Change::Instance {
                before,
                after,
                events,
                outbox: effects,
                idempotency_key,
                completion_key,
            } => {
                let tenant = after.tenant.as_str();
                let id = after.id.as_str();
                // Only what changed is written: the index entries the new state drops are
                // removed, the ones it adds inserted.
                let old = before.clone().unwrap_or_default();
                reindex(&mut t, tenant, id, &old, &IndexKeys::of(after))?;
                for event in events {
                    t.history()?
                        .insert((tenant, id, event.seq), encode(event).as_slice())
                        .map_err(db)?;
                }
                for entry in effects {
                    t.outbox()?
                        .insert((tenant, entry.id), encode(entry).as_slice())
                        .map_err(db)?;
                    t.outbox_due()?
                        .insert((tenant, entry.due_at, entry.id), ())
                        .map_err(db)?;
                    last_outbox = last_outbox.max(Some(entry.id));
                }
                if let Some(key) = idempotency_key {
                    t.start_keys()?
                        .insert((tenant, key.as_str()), id)
                        .map_err(db)?;
                }
                if let Some(done) = completion_key {
                    let key = done.key.as_str();
                    let replaced = t
                        .completion_keys()?
                        .insert((tenant, key), encode(done.as_ref()).as_slice())
                        .map_err(db)?
                        .map(|old| decode::<CompletionKey>("completion key", old.value()));
                    let age = t.completion_keys_age()?;
                    if let Some(old) = replaced {
                        age.remove((old?.at, tenant, key)).map_err(db)?;
                    }
                    age.insert((done.at, tenant, key), ()).map_err(db)?;
                }
                t.instances()?
                    .insert((tenant, id), encode(after.as_ref()).as_slice())
                    .map_err(db)?;
            }
            Change::Message(record) => {
                put_message(&mut t, record)?;
            }
            Change::Schedule(state) => {
                let key = (
                    state.tenant.as_str(),
                    state.workflow.as_str(),
                    state.schedule.as_str(),
                );
                t.schedules()?
                    .insert(key, encode(state.as_ref()).as_slice())
                    .map_err(db)?;
            }
            Change::ExpireMessages { now, limit } => {
                for (at, tenant, id) in oldest(t.buffer_expiry()?, *now, *limit)? {
                    let found = t
                        .messages()?
                        .get((tenant.as_str(), id.as_str()))
                        .map_err(db)?
                        .map(|g| decode::<MessageRecord>("messages", g.value()));
                    if let Some(record) = found {
                        let mut record = record?;
                        record.status = MessageStatus::Expired { at };
                        put_message(&mut t, &record)?;
                    }
                }
            }
            Change::ExpireCompletionKeys { before, limit } => {
                for (at, tenant, key) in &oldest(t.completion_keys_age()?, *before, *limit)? {
                    t.completion_keys_age()?
                        .remove((*at, tenant.as_str(), key.as_str()))
                        .map_err(db)?;
                    t.completion_keys()?
                        .remove((tenant.as_str(), key.as_str()))
                        .map_err(db)?;
                }
            }
            Change::ClearOutbox {
                tenant,
                outbox: ids,
            } => {
                for id in ids {
                    let removed = t
                        .outbox()?
                        .remove((tenant.as_str(), *id))
                        .map_err(db)?
                        .map(|old| decode::<OutboxEntry>("outbox", old.value()));
                    if let Some(old) = removed {
                        t.outbox_due()?
                            .remove((tenant.as_str(), old?.due_at, *id))
                            .map_err(db)?;
                    }
                }
            }
            Change::Retry {
                tenant,
                outbox: id,
                attempts,
                due_at,
            } => {
                let found = t
                    .outbox()?
                    .get((tenant.as_str(), *id))
                    .map_err(db)?
                    .map(|g| decode::<OutboxEntry>("outbox", g.value()));
                let Some(entry) = found else { continue };
                let mut entry = entry?;
                let due = t.outbox_due()?;
                due.remove((tenant.as_str(), entry.due_at, *id))
                    .map_err(db)?;
                (entry.attempts, entry.due_at) = (*attempts, *due_at);
                due.insert((tenant.as_str(), entry.due_at, *id), ())
                    .map_err(db)?;
                t.outbox()?
                    .insert((tenant.as_str(), *id), encode(&entry).as_slice())
                    .map_err(db)?;
            }
            Change::Probe { at } => {
                t.meta()?.insert("probed_at", *at).map_err(db)?;
            }
            Change::RecordCall { record, keep } => {
                let (tenant, plugin) = (record.tenant.as_str(), record.plugin.as_str());
                let seqs = t.call_seq()?;
                let seq = seqs
                    .get((tenant, plugin))
                    .map_err(db)?
                    .map_or(0, |g| g.value())
                    + 1;
                seqs.insert((tenant, plugin), seq).map_err(db)?;
                let mut kept = (**record).clone();
                kept.seq = seq;
                let calls = t.calls()?;
                calls
                    .insert((tenant, plugin, seq), encode(&kept).as_slice())
                    .map_err(db)?;
                // Normally the one record that left the window; more when `keep` shrank.
                if let Some(cut) = seq.checked_sub(*keep) {
                    calls
                        .retain_in((tenant, plugin, 0)..=(tenant, plugin, cut), |_, _| false)
                        .map_err(db)?;
                }
            }
            Change::Archive {
                tenant,
                instance: id,
                workflow,
                ended_at,
                facts,
            } => {
                let (tenant, id) = (tenant.as_str(), id.as_str());
                let removed = t
                    .instances()?
                    .remove((tenant, id))
                    .map_err(db)?
                    .map(|state| decode::<Instance>("instances", state.value()));
                let Some(state) = removed else {
                    continue;
                };
                let keys = IndexKeys::of(&state?);
                reindex(&mut t, tenant, id, &keys, &IndexKeys::default())?;
                t.history()?
                    .retain_in((tenant, id, 0)..=(tenant, id, u64::MAX), |_, _| false)
                    .map_err(db)?;
                t.facts()?
                    .insert(
                        (tenant, workflow.as_str(), *ended_at, id),
                        encode(facts.as_ref()).as_slice(),
                    )
                    .map_err(db)?;
            }
        }
    }
    let meta = t.meta()?;
    if let Some(last) = last_outbox {
        let current = meta
            .get("last_outbox_id")
            .map_err(db)?
            .map(|g| g.value())
            .unwrap_or(0);
        meta.insert("last_outbox_id", current.max(last))
            .map_err(db)?;
    }
    meta.insert(WAL_SEQ, seq).map_err(db)?;
    Ok(())
}

/// The oldest `limit` entries of an index by age, `(at, tenant, id)`, with `at` before `before`.
fn oldest(
    index: &Table<'_, (u64, &'static str, &'static str), ()>,
    before: u64,
    limit: usize,
) -> Result<Vec<(u64, String, String)>, StoreError> {
    let mut found = Vec::new();
    for entry in index
        .range((0, "", "")..(before, "", ""))
        .map_err(db)?
        .take(limit)
    {
        let (key, _) = entry.map_err(db)?;
        let (at, tenant, id) = key.value();
        found.push((at, tenant.to_string(), id.to_string()));
    }
    Ok(found)
}

/// Writes a message's record, keeping the buffer's two indexes in step with its status.
fn put_message(t: &mut Tables<'_>, record: &MessageRecord) -> Result<(), StoreError> {
    let (tenant, id) = (record.tenant.as_str(), record.id.as_str());
    let old = t
        .messages()?
        .insert((tenant, id), encode(record).as_slice())
        .map_err(db)?
        .map(|old| decode::<MessageRecord>("messages", old.value()));
    let buffer_keys = |r: &MessageRecord| match r.status {
        MessageStatus::Buffered { expires_at } => Some(expires_at),
        _ => None,
    };
    if let Some(old) = old {
        let old = old?;
        if let Some(expires_at) = buffer_keys(&old) {
            t.buffered()?
                .remove((
                    tenant,
                    old.name.as_str(),
                    old.correlation.as_str(),
                    old.received_at,
                    id,
                ))
                .map_err(db)?;
            t.buffer_expiry()?
                .remove((expires_at, tenant, id))
                .map_err(db)?;
        }
    }
    if let Some(expires_at) = buffer_keys(record) {
        t.buffered()?
            .insert(
                (
                    tenant,
                    record.name.as_str(),
                    record.correlation.as_str(),
                    record.received_at,
                    id,
                ),
                (),
            )
            .map_err(db)?;
        t.buffer_expiry()?
            .insert((expires_at, tenant, id), ())
            .map_err(db)?;
    }
    Ok(())
}

/// Declares [`Tables`]: one field and one accessor per table a batch may write.
macro_rules! tables {
    ($($field:ident: $table:ident <$key:ty, $value:ty>,)*) => {
        /// The tables a batch writes, each opened the first time one of its changes needs it
        /// and kept open to the end of the batch. A command touches a few of them, and opening
        /// one looks its root up in redb's table of tables.
        struct Tables<'txn> {
            txn: &'txn WriteTransaction,
            $($field: Option<Table<'txn, $key, $value>>,)*
        }

        impl<'txn> Tables<'txn> {
            fn new(txn: &'txn WriteTransaction) -> Self {
                Tables { txn, $($field: None,)* }
            }

            $(fn $field(&mut self) -> Result<&mut Table<'txn, $key, $value>, StoreError> {
                let table = match self.$field.take() {
                    Some(open) => open,
                    None => self.txn.open_table($table).map_err(db)?,
                };
                Ok(self.$field.insert(table))
            })*
        }
    };
}

tables! {
    definitions: DEFINITIONS<(&'static str, &'static str, u32), &'static [u8]>,
    instances: INSTANCES<(&'static str, &'static str), &'static [u8]>,
    history: HISTORY<(&'static str, &'static str, u64), &'static [u8]>,
    tasks: TASKS<(&'static str, &'static str, &'static str, &'static str), &'static str>,
    timers: TIMERS<(&'static str, u64, &'static str, &'static str), ()>,
    outbox: OUTBOX<(&'static str, u64), &'static [u8]>,
    start_keys: START_KEYS<(&'static str, &'static str), &'static str>,
    completion_keys: COMPLETION_KEYS<(&'static str, &'static str), &'static [u8]>,
    completion_keys_age: COMPLETION_KEYS_AGE<(u64, &'static str, &'static str), ()>,
    listing: LISTING<(&'static str, &'static str, &'static str), ()>,
    outbox_due: OUTBOX_DUE<(&'static str, u64, u64), ()>,
    subscriptions: SUBSCRIPTIONS<(&'static str, &'static str, &'static str, &'static str, &'static str), ()>,
    messages: MESSAGES<(&'static str, &'static str), &'static [u8]>,
    buffered: BUFFERED<(&'static str, &'static str, &'static str, u64, &'static str), ()>,
    buffer_expiry: BUFFER_EXPIRY<(u64, &'static str, &'static str), ()>,
    schedules: SCHEDULES<(&'static str, &'static str, &'static str), &'static [u8]>,
    ended: ENDED<(&'static str, u64, &'static str), ()>,
    facts: FACTS<(&'static str, &'static str, u64, &'static str), &'static [u8]>,
    meta: META<&'static str, u64>,
    calls: CALLS<(&'static str, &'static str, u64), &'static [u8]>,
    call_seq: CALL_SEQ<(&'static str, &'static str), u64>,
}

/// Moves instance `id`'s index entries from `old` to `new`: removes those `new` lacks, inserts
/// those it adds (an archived instance's `new` is empty).
fn reindex(
    t: &mut Tables<'_>,
    tenant: &str,
    id: &str,
    old: &IndexKeys,
    new: &IndexKeys,
) -> Result<(), StoreError> {
    for (name, correlation, sub) in old.messages.difference(&new.messages) {
        let key = (
            tenant,
            name.as_str(),
            correlation.as_str(),
            id,
            sub.as_str(),
        );
        t.subscriptions()?.remove(key).map_err(db)?;
    }
    for (name, correlation, sub) in new.messages.difference(&old.messages) {
        let key = (
            tenant,
            name.as_str(),
            correlation.as_str(),
            id,
            sub.as_str(),
        );
        t.subscriptions()?.insert(key, ()).map_err(db)?;
    }
    for (who, status, task) in old.tasks.difference(&new.tasks) {
        let key = (tenant, who.as_str(), status.as_str(), task.as_str());
        t.tasks()?.remove(key).map_err(db)?;
    }
    for (who, status, task) in new.tasks.difference(&old.tasks) {
        let key = (tenant, who.as_str(), status.as_str(), task.as_str());
        t.tasks()?.insert(key, id).map_err(db)?;
    }
    for (due, timer) in old.timers.difference(&new.timers) {
        t.timers()?
            .remove((tenant, *due, id, timer.as_str()))
            .map_err(db)?;
    }
    for (due, timer) in new.timers.difference(&old.timers) {
        t.timers()?
            .insert((tenant, *due, id, timer.as_str()), ())
            .map_err(db)?;
    }
    for key in old.listing.difference(&new.listing) {
        t.listing()?
            .remove((tenant, key.as_str(), id))
            .map_err(db)?;
    }
    for key in new.listing.difference(&old.listing) {
        t.listing()?
            .insert((tenant, key.as_str(), id), ())
            .map_err(db)?;
    }
    if old.ended != new.ended {
        let ended = t.ended()?;
        if let Some(at) = old.ended {
            ended.remove((tenant, at, id)).map_err(db)?;
        }
        if let Some(at) = new.ended {
            ended.insert((tenant, at, id), ()).map_err(db)?;
        }
    }
    Ok(())
}

/// An instance's history from `from`, at most `limit` events, within `txn`.
fn read_history(
    txn: &ReadTransaction,
    tenant: &str,
    instance: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let table = txn.open_table(HISTORY).map_err(db)?;
    let range = table
        .range((tenant, instance, from)..=(tenant, instance, u64::MAX))
        .map_err(db)?;
    let mut out = Vec::new();
    for entry in range.take(limit) {
        let (_, value) = entry.map_err(db)?;
        out.push(decode("history", value.value())?);
    }
    Ok(out)
}
