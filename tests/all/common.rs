//! Shared set-up: one runtime for the whole binary, with a disk cache so components compile once
//! per build rather than once per test.

use std::sync::{Arc, OnceLock};

use flowgate::plugin::types::{ActionRequest, IdempotencyKey, StepContext};
use flowgate::plugin::{
    LoadedPlugin, PluginError, PluginId, PluginRuntime, PluginSettings, RuntimeConfig,
};

/// The runtime shared by tests that need no special configuration.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let config = RuntimeConfig {
            cache_dir: Some(cache_dir()),
            ..RuntimeConfig::default()
        };
        PluginRuntime::new(config).unwrap_or_else(|e| panic!("runtime: {e}"))
    })
}

/// Where tests cache compiled components.
pub fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cwasm")
}

/// The bytes of a built component.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Loads a component for tenant `acme` under `name`.
pub fn load(path: &str, name: &str, settings: PluginSettings) -> Result<LoadedPlugin, PluginError> {
    runtime().load(PluginId::new("acme", name), &wasm(path), settings)
}

/// Loads a component that must load.
pub fn loaded(path: &str, name: &str, settings: PluginSettings) -> Arc<LoadedPlugin> {
    Arc::new(load(path, name, settings).unwrap_or_else(|e| panic!("load {name}: {e}")))
}

/// Settings with these configuration values.
pub fn with_config(pairs: &[(&str, &str)]) -> PluginSettings {
    PluginSettings {
        config: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginSettings::default()
    }
}

/// A step context with `data` as the instance data.
pub fn context(data: serde_json::Value) -> StepContext {
    StepContext {
        tenant: "acme".to_string(),
        definition_id: "test".to_string(),
        definition_version: 1,
        instance_id: "inst-1".to_string(),
        step_id: "step".to_string(),
        data: data.to_string(),
    }
}

/// An action request for `action` with these params.
pub fn action(action: &str, data: serde_json::Value, params: serde_json::Value) -> ActionRequest {
    ActionRequest {
        context: context(data),
        action: action.to_string(),
        params: params.to_string(),
        idempotency: IdempotencyKey {
            key: "inst-1/step/1/1".to_string(),
            instance_id: "inst-1".to_string(),
            step_id: "step".to_string(),
            attempt: 1,
        },
    }
}

/// Opens a redb file whose previous owner (a dropped service) may still be closing it: the
/// writer thread lets go of the file only once every handle to it is gone.
pub async fn reopen(path: &std::path::Path) -> flowgate::store::RedbStore {
    loop {
        match flowgate::store::RedbStore::open(path) {
            Ok(store) => return store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// The example tenant on `store` at `clock`: its plugins installed, its workflows deployed.
pub async fn acme_on(
    store: Arc<dyn flowgate::store::Storage>,
    clock: Arc<dyn flowgate::service::Clock>,
) -> flowgate::service::Flowgate {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme");
    let tenant = flowgate::tenant::TenantConfig::load(&examples.join("tenant.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let registry = flowgate::plugin::PluginRegistry::new(runtime().clone());
    tenant
        .install_plugins(&registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let flowgate = flowgate::service::Flowgate::open(
        store,
        Arc::new(registry),
        clock,
        Arc::new(flowgate::service::RecordingNotifier::default()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    tenant
        .deploy_workflows(&flowgate)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate
}
