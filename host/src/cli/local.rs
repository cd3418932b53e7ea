//! What every engine command opens: the data folder's redb file and compile cache, and the tenant
//! (its plugins loaded, its workflows deployed; unchanged workflows keep their version).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::plugin::{ArtifactStore, PluginRegistry, PluginRuntime, RuntimeConfig};
use crate::service::{Flowgate, LogNotifier, SystemClock};
use crate::store::RedbStore;
use crate::tenant::{Applied, TenantConfig};

/// Where the data lives and which tenant acts.
#[derive(Debug, Clone, Args)]
pub(crate) struct LocalArgs {
    /// Folder of the data file (`flowgate.redb`) and the compiled-plugin cache.
    #[arg(long, global = true, env = "FLOWGATE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The tenant's configuration file.
    #[arg(
        long,
        global = true,
        env = "FLOWGATE_TENANT",
        default_value = "examples/acme/tenant.toml"
    )]
    pub tenant: PathBuf,
}

/// An open engine for one tenant.
pub(crate) struct Local {
    pub flowgate: Flowgate,
    pub tenant: String,
}

impl LocalArgs {
    pub async fn open(&self) -> anyhow::Result<Local> {
        let tenant = TenantConfig::load(&self.tenant)?;
        let data = crate::data_dir::DataDir::new(&self.data_dir);
        let runtime = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(data.compiled()),
            pool_slots: None,
            ..RuntimeConfig::default()
        })?;
        let artifacts = ArtifactStore::new(data.plugins());
        let registry = PluginRegistry::with_artifacts(runtime, artifacts);
        tenant.sync_plugins(&registry, &mut Applied::new())?;
        let path = data.store();
        let store =
            RedbStore::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let flowgate = Flowgate::open(
            Arc::new(store),
            Arc::new(registry),
            Arc::new(SystemClock),
            Arc::new(LogNotifier),
        )?;
        flowgate.set_calendar(&tenant.id, tenant.calendar()?);
        flowgate.set_recording(&tenant.id, tenant.recording.plugin_calls);
        flowgate.set_processes(&tenant.id, tenant.process_settings());
        tenant.deploy_workflows(&flowgate).await?;
        Ok(Local {
            flowgate,
            tenant: tenant.id,
        })
    }
}

/// Parses JSON given inline (`{"a": 1}`) or as `@file.json`, which must be an object.
pub(crate) fn json_object(
    text: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => text.to_string(),
    };
    match serde_json::from_str(&text).context("the data is not valid JSON")? {
        serde_json::Value::Object(map) => Ok(map),
        _ => anyhow::bail!("the data must be a JSON object"),
    }
}
