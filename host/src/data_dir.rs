//! The data folder's layout, in one place: the daemon and the CLI's local mode open the same
//! files from it.
//!
//! ```text
//! data/
//!   flowgate.redb               definitions, instances, history, outbox (the store)
//!   flowgate.redb-wal           the store's write-ahead log (commits since its last checkpoint)
//!   plugins/<tenant>/<name>/    every installed plugin version, by sha256
//!   cwasm/                      compiled components, so a restart does not compile again
//! ```

use std::path::{Path, PathBuf};

/// A data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The redb store.
    pub fn store(&self) -> PathBuf {
        self.root.join("flowgate.redb")
    }

    /// Installed plugin versions.
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// The compile cache.
    pub fn compiled(&self) -> PathBuf {
        self.root.join("cwasm")
    }
}
