//! Online backup and offline restore of a data folder.
//!
//! A backup is a folder an operator can ship elsewhere:
//!
//! ```text
//! <backups>/20261206T213000.123Z/
//!   flowgate.redb     the store, copied from one snapshot while the daemon kept serving
//!   plugins/          every installed plugin version and upload (content-addressed)
//!   link.key          the key that signs outside participants' links, so theirs stay valid
//!   backup.json       what was copied, and when
//! ```
//!
//! The store is copied first, then the plugins: a plugin version the copied store names was
//! installed before the commit that named it, so it is in the copy. A restore puts the backup's
//! store, plugins and key in place of the data folder's, setting the ones it replaces aside
//! (`*.before-restore-<time>`), with the daemon stopped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;
use crate::engine::Millis;
use crate::store::{BackupSummary, RedbStore, Storage, StoreError, wal_path};

/// The file describing a backup.
const MANIFEST: &str = "backup.json";
/// The key signing outside participants' links, in the data folder.
const LINK_KEY: &str = "link.key";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupReport {
    /// The backup's folder.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// When its snapshot was taken.
    #[serde(with = "crate::engine::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    pub definitions: u64,
    pub instances: u64,
    /// History events.
    pub events: u64,
    /// Records of every table, indexes included.
    pub records: u64,
    /// The store copy's size.
    pub bytes: u64,
    /// Plugin files copied (versions and uploads).
    pub plugin_files: u64,
}

/// What a restore put in place, and where the replaced files went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub from: PathBuf,
    /// When the restored backup was taken.
    #[serde(with = "crate::engine::time::rfc3339")]
    pub backup_at: Millis,
    pub instances: u64,
    /// The data folder's files the restore replaced, kept under these names.
    pub set_aside: Vec<PathBuf>,
}

/// Why a backup or a restore failed. A failed backup leaves no folder that looks whole (the
/// manifest is written last); a failed restore changes nothing it has not said.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `20261206T213000.123Z`: sorts by time, and is a valid file name everywhere.
fn stamp(at: Millis) -> String {
    let text = crate::engine::time::format(at).to_string();
    text.replace(['-', ':'], "")
}

/// Writes a backup of `store` and the data folder's plugins and link key into a new folder
/// under `into`, while the daemon serves.
pub fn backup(
    store: &dyn Storage,
    data: &DataDir,
    into: &Path,
    now: Millis,
) -> Result<BackupReport, BackupError> {
    let folder = into.join(stamp(now));
    if folder.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists already: a backup was taken this millisecond",
            folder.display()
        )));
    }
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let summary: BackupSummary = store.backup(&folder.join("flowgate.redb"))?;
    let plugin_files = copy_tree(&data.plugins(), &folder.join("plugins"))?;
    let key = data.root().join(LINK_KEY);
    if key.exists() {
        copy_file(&key, &folder.join(LINK_KEY))?;
    }
    let report = BackupReport {
        path: folder.clone(),
        at: now,
        definitions: summary.definitions,
        instances: summary.instances,
        events: summary.events,
        records: summary.records,
        bytes: summary.bytes,
        plugin_files,
    };
    let manifest = folder.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| io(&manifest)(e.into()))?;
    std::fs::write(&manifest, json).map_err(io(&manifest))?;
    sync_dir(&folder)?;
    Ok(report)
}

/// Puts the backup in `from` in place of the data folder's store, plugins and link key. The
/// daemon must be stopped: a store a process holds open is refused.
pub fn restore(from: &Path, data: &DataDir, now: Millis) -> Result<RestoreReport, BackupError> {
    let manifest_path = from.join(MANIFEST);
    let manifest: BackupReport = match std::fs::read(&manifest_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::Refused(format!(
                "{} is not a Flowgate backup manifest: {e}",
                manifest_path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Refused(format!(
                "{} has no {MANIFEST}: not a whole Flowgate backup (a backup writes it last)",
                from.display()
            )));
        }
        Err(e) => return Err(io(&manifest_path)(e)),
    };
    let current = data.store();
    if current.exists() {
        // Opening it is how a store held by a running daemon is told apart.
        drop(RedbStore::open(&current).map_err(|e| {
            BackupError::Refused(format!(
                "cannot open {} ({e}); if a daemon serves this data folder, stop it before restoring",
                current.display()
            ))
        })?);
    }
    std::fs::create_dir_all(data.root()).map_err(io(data.root()))?;
    // The copy is checked (it opens, at a schema this build reads) before anything is replaced.
    let incoming = data.root().join("flowgate.redb.restoring");
    let source = from.join("flowgate.redb");
    std::fs::copy(&source, &incoming).map_err(io(&source))?;
    let checked = RedbStore::open(&incoming).and_then(|s| s.tenants());
    // Closed cleanly, the check's store holds all it wrote: its log is not needed.
    let _ = std::fs::remove_file(wal_path(&incoming));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&incoming);
        return Err(BackupError::Refused(format!(
            "{} does not open as a Flowgate store: {e}",
            source.display()
        )));
    }
    let aside = |path: &Path| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".before-restore-{}", stamp(now)));
        path.with_file_name(name)
    };
    let mut set_aside = Vec::new();
    let mut replace = |path: &Path| -> Result<(), BackupError> {
        if path.exists() {
            let to = aside(path);
            std::fs::rename(path, &to).map_err(io(path))?;
            set_aside.push(to);
        }
        Ok(())
    };
    replace(&current)?;
    // The replaced store's write-ahead log goes with it.
    replace(&wal_path(&current))?;
    std::fs::rename(&incoming, &current).map_err(io(&current))?;
    let plugins = data.plugins();
    replace(&plugins)?;
    copy_tree(&from.join("plugins"), &plugins)?;
    let key = data.root().join(LINK_KEY);
    if from.join(LINK_KEY).exists() {
        replace(&key)?;
        copy_file(&from.join(LINK_KEY), &key)?;
    }
    sync_dir(data.root())?;
    Ok(RestoreReport {
        from: from.to_path_buf(),
        backup_at: manifest.at,
        instances: manifest.instances,
        set_aside,
    })
}

/// Copies the files under `from` to `to` (a missing `from` is an empty tree), leaving out the
/// temporary files of writes in progress. Returns how many files it copied.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(from)(e)),
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.map_err(io(from))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".tmp") {
            continue;
        }
        let (path, target) = (entry.path(), to.join(&name));
        if entry.file_type().map_err(io(&path))?.is_dir() {
            copied += copy_tree(&path, &target)?;
        } else {
            copy_file(&path, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Copies a file and makes the copy durable.
fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::copy(from, to).map_err(io(from))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(to))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
