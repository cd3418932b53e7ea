//! Plugin call costs for the purchase-approval policy: a full call on a fresh store
//! (instantiate + call + drop), a call on a reused instance, the same logic natively, and
//! component compile time against cached load time, each with the pooling allocator and without.
//!
//! Run: `cargo bench -p flowgate-tests --bench plugin_call` (add `-- --quick` for a short run).

use std::time::{Duration, Instant};

use flowgate::plugin::types::{ApprovalRequest, Money, StepContext};
use flowgate::plugin::{PluginId, PluginRuntime, PluginSettings, RuntimeConfig};
use flowgate_plugin_sdk::ApprovalPolicy;
use flowgate_tests::artifacts::PURCHASE_APPROVAL;

struct Stats {
    median: Duration,
    p99: Duration,
    samples: usize,
}

/// Times `f` once per sample, `per_sample` calls a sample, after a warm-up.
fn measure(samples: usize, per_sample: u32, mut f: impl FnMut()) -> Stats {
    for _ in 0..(samples / 10).max(10) {
        f();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_sample {
                f();
            }
            start.elapsed() / per_sample
        })
        .collect();
    times.sort();
    Stats {
        median: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
        samples,
    }
}

fn row(name: &str, stats: &Stats) {
    println!(
        "| {name:<52} | {:>10.2} | {:>10.2} | {:>7} |",
        stats.median.as_nanos() as f64 / 1000.0,
        stats.p99.as_nanos() as f64 / 1000.0,
        stats.samples
    );
}

fn request() -> ApprovalRequest {
    ApprovalRequest {
        context: StepContext {
            tenant: "acme".to_string(),
            definition_id: "purchase".to_string(),
            definition_version: 1,
            instance_id: "inst-42".to_string(),
            step_id: "approval".to_string(),
            data: r#"{"item":"Laptops","quantity":6,"vendor":"Contoso"}"#.to_string(),
        },
        amount: Some(Money {
            currency: "USD".to_string(),
            minor_units: 1_140_000,
        }),
        category: "it".to_string(),
        requester: "alice@acme.example".to_string(),
    }
}

fn native_request() -> flowgate_plugin_sdk::ApprovalRequest {
    let r = request();
    flowgate_plugin_sdk::ApprovalRequest {
        context: flowgate_plugin_sdk::StepContext {
            tenant: r.context.tenant,
            definition_id: r.context.definition_id,
            definition_version: r.context.definition_version,
            instance_id: r.context.instance_id,
            step_id: r.context.step_id,
            data: r.context.data,
        },
        amount: r.amount.map(|m| flowgate_plugin_sdk::Money {
            currency: m.currency,
            minor_units: m.minor_units,
        }),
        category: r.category,
        requester: r.requester,
    }
}

fn runtime(pool_slots: Option<u32>, cache_dir: Option<std::path::PathBuf>) -> PluginRuntime {
    let config = RuntimeConfig {
        pool_slots,
        cache_dir,
        ..RuntimeConfig::default()
    };
    PluginRuntime::new(config).unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let calls = if quick { 2_000 } else { 20_000 };
    let wasm = std::fs::read(PURCHASE_APPROVAL).unwrap_or_else(|e| panic!("{e}"));
    let id = PluginId::new("acme", "purchase-approval");
    let req = request();

    println!(
        "| measurement (purchase-approval, {} KiB component) | median µs | p99 µs | samples |",
        wasm.len() / 1024
    );
    println!("|---|---:|---:|---:|");
    let variants: [(&str, Option<u32>, usize, bool); 6] = [
        ("pooling, 1 MiB resident, CoW", Some(256), 1 << 20, true),
        ("pooling, 1 MiB resident, copy", Some(256), 1 << 20, false),
        ("pooling, 4 MiB resident, CoW", Some(256), 4 << 20, true),
        ("pooling, 4 MiB resident, copy", Some(256), 4 << 20, false),
        ("pooling, 0 resident, CoW", Some(256), 0, true),
        ("on-demand, CoW", None, 0, true),
    ];
    for (label, pool, resident, cow) in variants {
        let config = RuntimeConfig {
            pool_slots: pool,
            keep_resident_bytes: resident,
            memory_init_cow: cow,
            ..RuntimeConfig::default()
        };
        let rt = PluginRuntime::new(config).unwrap_or_else(|e| panic!("runtime: {e}"));
        let plugin = rt
            .load(id.clone(), &wasm, PluginSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let fresh = measure(calls, 1, || {
            let called = plugin.evaluate_approval(&req);
            assert!(called.is_ok());
        });
        row(&format!("full call on a fresh store ({label})"), &fresh);
        let instantiate = measure(calls, 1, || {
            assert!(plugin.session(None).is_ok());
        });
        row(
            &format!("  of which instantiate + drop ({label})"),
            &instantiate,
        );
        let mut session = plugin.session(None).unwrap_or_else(|e| panic!("{e}"));
        let reused = measure(calls, 1, || {
            assert!(session.evaluate_approval(&req).is_ok());
        });
        row(&format!("call on a reused instance ({label})"), &reused);
    }

    // The runtime's floor: a guest action that makes no host calls and returns a constant.
    let floor_rt = runtime(Some(256), None);
    let misbehave =
        std::fs::read(flowgate_tests::artifacts::MISBEHAVE).unwrap_or_else(|e| panic!("{e}"));
    let empty = floor_rt
        .load(
            PluginId::new("acme", "misbehave"),
            &misbehave,
            PluginSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = flowgate::plugin::types::ActionRequest {
        context: req.context.clone(),
        action: "ok".to_string(),
        params: "{}".to_string(),
        idempotency: flowgate::plugin::types::IdempotencyKey {
            key: "k".to_string(),
            instance_id: "i".to_string(),
            step_id: "s".to_string(),
            attempt: 1,
        },
    };
    let floor = measure(calls, 1, || {
        assert!(empty.run_action(&ok).is_ok());
    });
    row("floor: no-op action on a fresh store (pooling)", &floor);

    // The same rules as a decision table (the example tenant's `purchase-rules`): the plugin
    // reads the table's JSON and checks it on every call, then evaluates it.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/tenant.toml");
    let tenant = flowgate::tenant::TenantConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
    let table_settings = tenant.plugins["purchase-rules"].settings();
    let table_wasm =
        std::fs::read(flowgate_tests::artifacts::DECISION_TABLE).unwrap_or_else(|e| panic!("{e}"));
    let table = floor_rt
        .load(
            PluginId::new("acme", "purchase-rules"),
            &table_wasm,
            table_settings,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = floor_rt
        .load(id.clone(), &wasm, PluginSettings::default())
        .and_then(|p| p.evaluate_approval(&req))
        .map(|c| format!("{:?}", c.value.requirement))
        .unwrap_or_else(|e| panic!("{e}"));
    let decided = table
        .evaluate_approval(&req)
        .map(|c| (format!("{:?}", c.value.requirement), c.fuel_consumed));
    let fuel = match decided {
        Ok((requirement, fuel)) if requirement == expected => fuel,
        other => panic!("the table decided {other:?}, the plugin {expected:?}"),
    };
    let tabled = measure(calls, 1, || {
        assert!(table.evaluate_approval(&req).is_ok());
    });
    row(
        &format!(
            "decision-table plugin, same rules as a table ({} KiB, {fuel} fuel)",
            table_wasm.len() / 1024
        ),
        &tabled,
    );

    let native_req = native_request();
    let native = measure(calls / 10, 100, || {
        let decision =
            purchase_approval::PurchaseApproval::evaluate(std::hint::black_box(native_req.clone()));
        assert!(decision.is_ok());
    });
    row("same logic natively (Rust, no wasm)", &native);

    let compile_rt = runtime(None, None);
    let compile = measure(if quick { 3 } else { 10 }, 1, || {
        compile_rt.clear_memory_cache();
        assert!(
            compile_rt
                .load(id.clone(), &wasm, PluginSettings::default())
                .is_ok()
        );
    });
    row("component compile (Component::new + pre-link)", &compile);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cached_rt = runtime(None, Some(dir.path().to_path_buf()));
    assert!(
        cached_rt
            .load(id.clone(), &wasm, PluginSettings::default())
            .is_ok()
    );
    let cached = measure(if quick { 20 } else { 200 }, 1, || {
        cached_rt.clear_memory_cache();
        assert!(
            cached_rt
                .load(id.clone(), &wasm, PluginSettings::default())
                .is_ok()
        );
    });
    row("cached load from disk (deserialize + pre-link)", &cached);
}
