//! Every plugin version ever installed, kept on disk by content (`<tenant>/<name>/<sha256>.wasm`),
//! so instances pinned to an old or uploaded version still run after a restart; and which version
//! an upload made current, so an upload survives a restart too.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PluginId;

/// Where plugin artifacts live.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

/// An upload that made a version current. `configured` is the fingerprint of the tenant's
/// configuration of the plugin at the time: when that changes, the configuration wins again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub sha256: String,
    pub configured: Option<String>,
}

/// A version uploaded as a candidate: kept, not current, until it is promoted or discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub sha256: String,
    /// When it was uploaded, in milliseconds since the epoch.
    pub uploaded_at: u64,
    /// Whether it runs beside the current version on live decisions (shadow mode), its
    /// decisions compared and never applied.
    #[serde(default)]
    pub shadow: bool,
}

/// Why an artifact could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("plugin name `{0}` must be 1 to 64 letters, digits, `-` or `_`")]
    BadName(String),
    #[error("plugin artifact {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `name` may name a plugin (and so a folder).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ArtifactStore {
    /// A store under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArtifactStore { dir: dir.into() }
    }

    fn folder(&self, id: &PluginId) -> Result<PathBuf, ArtifactError> {
        for part in [&id.tenant, &id.name] {
            if !valid_name(part) {
                return Err(ArtifactError::BadName(part.clone()));
            }
        }
        Ok(self.dir.join(&id.tenant).join(&id.name))
    }

    /// Keeps `wasm` (whose sha256 is `sha256`) unless it is already kept.
    pub fn keep(&self, id: &PluginId, sha256: &str, wasm: &[u8]) -> Result<(), ArtifactError> {
        let path = self.folder(id)?.join(format!("{sha256}.wasm"));
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, wasm)
    }

    /// A kept version's bytes, if it was kept.
    pub fn read(&self, id: &PluginId, sha256: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        if !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = self.folder(id)?.join(format!("{sha256}.wasm"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ArtifactError::Io { path, source }),
        }
    }

    /// Every kept version of a plugin: its sha256 and when it was kept (milliseconds since the
    /// epoch), oldest first.
    pub fn versions(&self, id: &PluginId) -> Result<Vec<(String, u64)>, ArtifactError> {
        let dir = self.folder(id)?;
        let Some(entries) = read_dir(&dir)? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(sha) = name.strip_suffix(".wasm") else {
                continue;
            };
            let kept = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            found.push((sha.to_string(), kept));
        }
        found.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Ok(found)
    }

    /// Records that an upload made `upload.sha256` current.
    pub fn set_upload(&self, id: &PluginId, upload: &Upload) -> Result<(), ArtifactError> {
        let path = self.folder(id)?.join("upload.json");
        let json = serde_json::to_vec(upload).map_err(|e| ArtifactError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&path, &json)
    }

    /// Forgets the upload of `id`: its configuration is current again.
    pub fn clear_upload(&self, id: &PluginId) -> Result<(), ArtifactError> {
        let path = self.folder(id)?.join("upload.json");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ArtifactError::Io { path, source }),
        }
    }

    /// The plugin's candidates, oldest first.
    pub fn candidates(&self, id: &PluginId) -> Result<Vec<Candidate>, ArtifactError> {
        let path = self.folder(id)?.join("candidates.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Io {
                path,
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(ArtifactError::Io { path, source }),
        }
    }

    /// Replaces the plugin's candidates.
    pub fn set_candidates(
        &self,
        id: &PluginId,
        candidates: &[Candidate],
    ) -> Result<(), ArtifactError> {
        let path = self.folder(id)?.join("candidates.json");
        let json = serde_json::to_vec(candidates).map_err(|e| ArtifactError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&path, &json)
    }

    /// The uploads of a tenant's plugins, by plugin name.
    pub fn uploads(&self, tenant: &str) -> Result<Vec<(String, Upload)>, ArtifactError> {
        if !valid_name(tenant) {
            return Err(ArtifactError::BadName(tenant.to_string()));
        }
        let dir = self.dir.join(tenant);
        let Some(entries) = read_dir(&dir)? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join("upload.json");
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Upload>(&text) {
                Ok(upload) => {
                    found.push((entry.file_name().to_string_lossy().into_owned(), upload))
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable upload record")
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// The entries of `dir`; `None` when it does not exist (nothing was kept there yet).
fn read_dir(dir: &Path) -> Result<Option<std::fs::ReadDir>, ArtifactError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ArtifactError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place, so a
/// crash leaves either the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_versions_and_uploads_read_back() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let store = ArtifactStore::new(dir.path());
        let id = PluginId::new("acme", "router");
        assert!(store.keep(&id, "ab12", b"wasm").is_ok());
        assert_eq!(
            store.read(&id, "ab12").ok().flatten(),
            Some(b"wasm".to_vec())
        );
        assert_eq!(store.read(&id, "cd34").ok().flatten(), None);
        assert_eq!(store.read(&id, "../x").ok().flatten(), None);
        let upload = Upload {
            sha256: "ab12".to_string(),
            configured: None,
        };
        assert!(store.set_upload(&id, &upload).is_ok());
        let uploads = store.uploads("acme").unwrap_or_default();
        assert_eq!(uploads, vec![("router".to_string(), upload)]);
        assert!(store.clear_upload(&id).is_ok());
        assert!(store.uploads("acme").unwrap_or_default().is_empty());

        assert!(store.candidates(&id).unwrap_or_default().is_empty());
        let candidate = Candidate {
            sha256: "cd34".to_string(),
            uploaded_at: 7,
            shadow: true,
        };
        assert!(
            store
                .set_candidates(&id, std::slice::from_ref(&candidate))
                .is_ok()
        );
        assert_eq!(store.candidates(&id).unwrap_or_default(), vec![candidate]);
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        let store = ArtifactStore::new("/nonexistent");
        let bad = PluginId::new("acme", "../../etc");
        let err = store.keep(&bad, "ab", b"x").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`../../etc`")));
        assert!(!valid_name(""));
        assert!(valid_name("purchase-approval_2"));
    }
}
