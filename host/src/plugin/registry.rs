//! Each tenant's plugins by name: the current version, and every version an instance may still
//! be pinned to. Installing a version swaps an `Arc`, so calls in flight finish on theirs.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::loaded::{LoadedPlugin, PluginSettings};
use super::runtime::PluginRuntime;
use super::{PluginError, PluginId};

/// The plugins of every tenant.
#[derive(Debug)]
pub struct PluginRegistry {
    runtime: PluginRuntime,
    plugins: RwLock<HashMap<PluginId, Versions>>,
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
        }
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

    /// A specific version (by sha256) of the tenant's plugin, current or not.
    pub fn version(&self, id: &PluginId, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .get(id)
            .and_then(|v| v.by_sha256.get(sha256).cloned())
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
