//! What the benchmark binaries share: their command-line options and percentiles.

use std::time::Duration;

/// The number after `name` on the command line (`--seconds 5`), or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile of sorted durations, in milliseconds (0 for none).
pub fn pct(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Delivers nothing: the benchmarks measure the engine, not a webhook receiver.
#[derive(Debug)]
pub struct Discard;

impl flowgate::service::Notifier for Discard {
    fn deliver<'a>(
        &'a self,
        _: &'a flowgate::service::Delivery,
    ) -> flowgate::service::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Stores `count` copies of `template`, copy `n` being the template's JSON as `edit(n, json)`
/// rewrites it, as the engine itself stores instances (state and indexes), 10,000 to a
/// transaction; how long it took.
pub fn store_copies(
    store: &flowgate::store::RedbStore,
    template: &flowgate::engine::Instance,
    count: u64,
    edit: impl Fn(u64, &str) -> String,
) -> Duration {
    use flowgate::store::{Change, Storage};
    let text = serde_json::to_string(template).unwrap_or_default();
    let started = std::time::Instant::now();
    let mut batch = Vec::new();
    for n in 0..count {
        let instance: flowgate::engine::Instance =
            serde_json::from_str(&edit(n, &text)).unwrap_or_else(|e| panic!("{e}"));
        batch.push(Change::Instance {
            before: None,
            after: std::sync::Arc::new(instance),
            events: Vec::new(),
            outbox: Vec::new(),
            idempotency_key: None,
            completion_key: None,
        });
        if batch.len() == 10_000 {
            store
                .commit(batch.clone().into())
                .unwrap_or_else(|e| panic!("{e}"));
            batch.clear();
        }
    }
    store
        .commit(batch.clone().into())
        .unwrap_or_else(|e| panic!("{e}"));
    started.elapsed()
}

/// The example tenant on a fresh redb file `store` in `dir` (compile cache beside it), its
/// plugins installed and its workflows deployed, with the system clock and `notifier`.
pub async fn example_engine(
    dir: &std::path::Path,
    store: &str,
    notifier: std::sync::Arc<dyn flowgate::service::Notifier>,
) -> (
    flowgate::service::Flowgate,
    std::sync::Arc<flowgate::store::RedbStore>,
) {
    use flowgate::plugin::{PluginRegistry, PluginRuntime, RuntimeConfig};
    use std::sync::Arc;
    let opened = flowgate::store::RedbStore::open(dir.join(store));
    let store = Arc::new(opened.unwrap_or_else(|e| panic!("{e}")));
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cwasm")),
        ..RuntimeConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let registry = PluginRegistry::new(runtime);
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/tenant.toml");
    let tenant = flowgate::tenant::TenantConfig::load(&examples).unwrap_or_else(|e| panic!("{e}"));
    tenant
        .install_plugins(&registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let flowgate = flowgate::service::Flowgate::open(
        store.clone(),
        Arc::new(registry),
        Arc::new(flowgate::service::SystemClock),
        notifier,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    tenant
        .deploy_workflows(&flowgate)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (flowgate, store)
}
