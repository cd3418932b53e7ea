//! Each tenant's plugins by name: the current version, and every version an instance may still
//! be pinned to. Installing a version swaps an `Arc`, so calls in flight finish on theirs. With an
//! [`ArtifactStore`], every installed version is kept on disk and a version an instance is pinned
//! to is loaded again on demand after a restart.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::PluginId;
use super::artifacts::ArtifactStore;
use super::error::{PluginError, PluginFailure};
use super::loaded::{LoadedPlugin, PluginSettings};
use super::runtime::PluginRuntime;

/// The plugins of every tenant.
#[derive(Debug)]
pub struct PluginRegistry {
    runtime: PluginRuntime,
    plugins: RwLock<HashMap<PluginId, Versions>>,
    artifacts: Option<ArtifactStore>,
}

#[derive(Debug, Default)]
struct Versions {
    current: Option<Arc<LoadedPlugin>>,
    by_sha256: HashMap<String, Arc<LoadedPlugin>>,
}

impl PluginRegistry {
    /// An empty registry over `runtime`.
    pub fn new(runtime: PluginRuntime) -> Self {
        PluginRegistry {
            runtime,
            plugins: RwLock::new(HashMap::new()),
            artifacts: None,
        }
    }

    /// A registry that keeps every installed version in `artifacts`.
    pub fn with_artifacts(runtime: PluginRuntime, artifacts: ArtifactStore) -> Self {
        PluginRegistry {
            artifacts: Some(artifacts),
            ..PluginRegistry::new(runtime)
        }
    }

    /// Where installed versions are kept, if anywhere.
    pub fn artifacts(&self) -> Option<&ArtifactStore> {
        self.artifacts.as_ref()
    }

    /// The runtime.
    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    /// Loads `wasm` as the tenant's plugin `id.name` and makes it the current version. On error
    /// nothing changes. Installing the same bytes again with other settings replaces the settings.
    pub fn install(
        &self,
        id: PluginId,
        wasm: &[u8],
        settings: PluginSettings,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let loaded = Arc::new(self.runtime.load(id.clone(), wasm, settings)?);
        if let Some(artifacts) = &self.artifacts {
            artifacts
                .keep(&id, loaded.sha256(), wasm)
                .map_err(|source| PluginError {
                    tenant: id.tenant.clone(),
                    plugin: id.name.clone(),
                    version: loaded.sha256()[..12].to_string(),
                    capability: None,
                    failure: Box::new(PluginFailure::Host {
                        reason: "cannot keep the artifact".to_string(),
                        source: Box::new(source),
                    }),
                })?;
        }
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        let versions = plugins.entry(id).or_default();
        versions
            .by_sha256
            .insert(loaded.sha256().to_string(), loaded.clone());
        versions.current = Some(loaded.clone());
        Ok(loaded)
    }

    /// Changes the settings (configuration, limits, grants) of every loaded version of a plugin
    /// without reloading it. On error nothing changes.
    pub fn update_settings(
        &self,
        id: &PluginId,
        settings: PluginSettings,
    ) -> Result<Option<Arc<LoadedPlugin>>, PluginError> {
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        let Some(versions) = plugins.get_mut(id) else {
            return Ok(None);
        };
        let mut updated = HashMap::new();
        for (sha, loaded) in &versions.by_sha256 {
            updated.insert(
                sha.clone(),
                Arc::new(loaded.with_settings(settings.clone())?),
            );
        }
        let current = versions
            .current
            .as_ref()
            .and_then(|c| updated.get(c.sha256()).cloned());
        versions.by_sha256 = updated;
        versions.current = current.clone();
        Ok(current)
    }

    /// The tenant's current version of a plugin.
    pub fn current(&self, id: &PluginId) -> Option<Arc<LoadedPlugin>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins.get(id).and_then(|v| v.current.clone())
    }

    /// A specific version (by sha256) of the tenant's plugin, current or not. A version not loaded
    /// in this process is loaded from the artifact store, with the current version's settings.
    pub fn version(&self, id: &PluginId, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        let settings = {
            let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
            let versions = plugins.get(id);
            if let Some(found) = versions.and_then(|v| v.by_sha256.get(sha256)) {
                return Some(found.clone());
            }
            versions
                .and_then(|v| v.current.as_ref())
                .map(|c| c.settings())
                .unwrap_or_default()
        };
        let wasm = match self.artifacts.as_ref()?.read(id, sha256) {
            Ok(wasm) => wasm?,
            Err(error) => {
                tracing::warn!(plugin = %id, %error, "cannot read a kept plugin version");
                return None;
            }
        };
        let loaded = match self.runtime.load(id.clone(), &wasm, settings) {
            Ok(loaded) => Arc::new(loaded),
            Err(error) => {
                tracing::warn!(plugin = %id, %error, "cannot load a kept plugin version");
                return None;
            }
        };
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        let versions = plugins.entry(id.clone()).or_default();
        let kept = versions
            .by_sha256
            .entry(loaded.sha256().to_string())
            .or_insert(loaded);
        Some(kept.clone())
    }

    /// The tenant's plugins, by name, with their current version.
    pub fn list(&self, tenant: &str) -> Vec<Arc<LoadedPlugin>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<_> = plugins
            .iter()
            .filter(|(id, _)| id.tenant == tenant)
            .filter_map(|(_, v)| v.current.clone())
            .collect();
        found.sort_by(|a, b| a.id().name.cmp(&b.id().name));
        found
    }

    /// Every version of a plugin loaded in this process, sorted by sha256.
    pub fn versions(&self, id: &PluginId) -> Vec<Arc<LoadedPlugin>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<_> = plugins
            .get(id)
            .map(|v| v.by_sha256.values().cloned().collect())
            .unwrap_or_default();
        found.sort_by(|a, b| a.sha256().cmp(b.sha256()));
        found
    }
}
