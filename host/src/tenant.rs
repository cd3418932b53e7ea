//! A tenant's configuration file: its plugins (path, optional sha256 pin, configuration values,
//! limits, grants) and the folder of workflows it deploys.
//!
//! ```toml
//! id = "acme"
//! workflows = "workflows"
//!
//! [plugins.purchase-approval]
//! path = "plugins/purchase_approval.wasm"
//! config = { manager_threshold = "500" }
//! limits = { fuel = 20000000 }
//! grants = { clocks = true }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::definition::DefinitionError;
use crate::plugin::{
    Grants, LoadedPlugin, PluginError, PluginId, PluginLimits, PluginRegistry, PluginSettings,
    sha256_hex,
};
use crate::service::{Deployed, Flowgate, ServiceError};

/// A tenant as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// A folder of workflow definitions to deploy, relative to the configuration file.
    pub workflows: Option<PathBuf>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Where notifications (task assigned, reminders, overdue, escalated, finished) are POSTed.
    pub webhook: Option<crate::service::WebhookConfig>,
    /// API credentials (used by the daemon).
    #[serde(default)]
    pub tokens: Vec<crate::daemon::TokenConfig>,
    /// Where the file was read from; relative paths start there.
    #[serde(skip)]
    pub base: PathBuf,
}

/// One plugin of a tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file.
    pub path: PathBuf,
    /// When set, the file must have this sha256.
    pub sha256: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: PluginLimits,
    #[serde(default)]
    pub grants: Grants,
}

impl PluginConfig {
    /// The settings a loaded version of this plugin runs with.
    pub fn settings(&self) -> PluginSettings {
        PluginSettings {
            config: self.config.clone(),
            limits: self.limits,
            grants: self.grants.clone(),
        }
    }
}

/// Why a tenant could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("plugin `{plugin}`: {path} has sha256 {found}, but the configuration pins {expected}")]
    Pin {
        plugin: String,
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl TenantConfig {
    /// Reads a tenant configuration file.
    pub fn load(path: &Path) -> Result<Self, TenantError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenantError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: TenantConfig = toml::from_str(&text).map_err(|e| TenantError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// Loads every plugin into the registry (each becomes the tenant's current version).
    pub fn install_plugins(
        &self,
        registry: &PluginRegistry,
    ) -> Result<Vec<Arc<LoadedPlugin>>, TenantError> {
        let mut loaded = Vec::new();
        for (name, plugin) in &self.plugins {
            let path = self.resolve(&plugin.path);
            let bytes = std::fs::read(&path).map_err(|source| TenantError::Read {
                path: path.clone(),
                source,
            })?;
            if let Some(expected) = &plugin.sha256 {
                let found = sha256_hex(&bytes);
                if !found.eq_ignore_ascii_case(expected) {
                    return Err(TenantError::Pin {
                        plugin: name.clone(),
                        path,
                        expected: expected.clone(),
                        found,
                    });
                }
            }
            let settings = plugin.settings();
            loaded.push(registry.install(
                PluginId::new(self.id.clone(), name.clone()),
                &bytes,
                settings,
            )?);
        }
        Ok(loaded)
    }

    /// Deploys every workflow in the folder; unchanged ones keep their version. A workflow that
    /// starts another is deployed after it.
    pub async fn deploy_workflows(
        &self,
        flowgate: &Flowgate,
    ) -> Result<Vec<Deployed>, TenantError> {
        let Some(dir) = &self.workflows else {
            return Ok(Vec::new());
        };
        let dir = self.resolve(dir);
        let entries = std::fs::read_dir(&dir).map_err(|source| TenantError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
            .collect();
        files.sort();
        let mut deployed = Vec::new();
        // Each pass deploys what it can; a workflow waiting for a sub-workflow goes next pass.
        while !files.is_empty() {
            let mut waiting = Vec::new();
            for file in &files {
                let source = std::fs::read_to_string(file).map_err(|source| TenantError::Read {
                    path: file.clone(),
                    source,
                })?;
                match flowgate
                    .deploy(&self.id, &file.display().to_string(), &source)
                    .await
                {
                    Ok(d) => deployed.push(d),
                    Err(ServiceError::Definition(DefinitionError::Invalid {
                        problems, ..
                    })) if problems
                        .iter()
                        .all(|p| p.message.starts_with("the tenant has no workflow")) =>
                    {
                        waiting.push(file.clone());
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            if waiting.len() == files.len() {
                // No progress: the sub-workflows are missing for good; report the first.
                let file = &waiting[0];
                let source = std::fs::read_to_string(file).map_err(|source| TenantError::Read {
                    path: file.clone(),
                    source,
                })?;
                flowgate
                    .deploy(&self.id, &file.display().to_string(), &source)
                    .await?;
            }
            files = waiting;
        }
        Ok(deployed)
    }
}
