//! Compiled components on disk, keyed by the artifact's sha256 and the engine's compatibility
//! hash, so that a restart loads plugins without compiling them again.
//!
//! Trust: `Component::deserialize` runs the native code it loads, so the cache directory must
//! be writable by the daemon alone, like its data file. Files are written to a temporary name and
//! renamed, so a crash never leaves a half-written artifact under a real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached component for `sha256`, if there is a usable one. An unusable file (from another
    /// wasmtime version or configuration, or damaged) is removed and `None` returned.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        // Read, don't map: a mapped file rewritten in place by anyone would crash the daemon
        // (SIGBUS) the next time the plugin runs. Reading costs a copy at load time only.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "plugin.cache: cannot read artifact");
                return None;
            }
        };
        // SAFETY: the bytes were written by `store` below into a directory only the daemon writes
        // (see the module docs), and wasmtime checks their engine compatibility before use.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "plugin.cache: discarding unusable artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failing to cache is logged, never fatal.
    pub fn store(&self, sha256: &str, component: &Component) {
        if let Err(error) = self.try_store(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), %error, "plugin.cache: cannot store artifact");
        }
    }

    fn try_store(
        &self,
        sha256: &str,
        component: &Component,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let bytes = component.serialize().map_err(|e| e.to_string())?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(sha256))?;
        Ok(())
    }
}
