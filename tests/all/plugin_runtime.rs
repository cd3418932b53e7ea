//! The runtime around the calls: invalid components, the compile cache, hot swaps, concurrency.

use std::sync::Arc;
use std::time::Duration;

use flowgate::plugin::{
    CacheOutcome, PluginFailure, PluginId, PluginLimits, PluginRegistry, PluginRuntime,
    PluginSettings, RuntimeConfig,
};
use flowgate_tests::artifacts::{EXPENSE_REIMBURSEMENT, MISBEHAVE, PURCHASE_APPROVAL};
use serde_json::json;

use crate::common::{action, runtime, wasm};

#[test]
fn invalid_artifacts_are_refused_with_the_reason() {
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "garbage",
            b"definitely not wasm",
            "is not WebAssembly: it starts with `defi`",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0",
            "is a core WebAssembly module, not a component",
        ),
        ("empty", b"", "is not WebAssembly: it starts with nothing"),
        // A component header with nothing after it.
        (
            "truncated",
            b"\0asm\x0d\0\x01\0\x01",
            "is not a valid component",
        ),
    ];
    for (what, bytes, said) in cases {
        let err = runtime()
            .load(
                PluginId::new("acme", what),
                bytes,
                PluginSettings::default(),
            )
            .err();
        let Some(err) = err else {
            panic!("{what} loaded");
        };
        assert_eq!(err.blame(), flowgate::plugin::Blame::Guest, "{what}");
        assert!(err.to_string().contains(said), "{what}: {err}");
    }
}

/// Every `from` in `bytes` replaced by `to`, of the same length (names in a component are
/// length-prefixed, so the component stays well-formed).
fn renamed(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
        found += 1;
    }
    assert!(found > 0, "nothing to rename");
    out
}

#[test]
fn a_guest_of_another_contract_version_is_refused_naming_both_versions() {
    // The purchase plugin as if built against flowgate:plugin@0.2.0: every import and export of
    // the contract names that version.
    let bytes = renamed(
        &wasm(PURCHASE_APPROVAL),
        b"flowgate:plugin/approval-policy@0.1.0",
        b"flowgate:plugin/approval-policy@0.2.0",
    );
    let bytes = renamed(
        &bytes,
        b"flowgate:plugin/host@0.1.0",
        b"flowgate:plugin/host@0.2.0",
    );
    let err = runtime()
        .load(
            PluginId::new("acme", "next-contract"),
            &bytes,
            PluginSettings::default(),
        )
        .err();
    let Some(err) = err else {
        panic!("a guest of contract 0.2.0 loaded");
    };
    let PluginFailure::ContractVersion { found, accepted } = &*err.failure else {
        panic!("{err}");
    };
    assert_eq!((found.as_str(), *accepted), ("0.2.0", "0.1.x"));
    let message = err.to_string();
    assert!(
        message.contains("is built against flowgate:plugin@0.2.0")
            && message.contains("this host accepts flowgate:plugin@0.1.x"),
        "{message}"
    );
}

#[test]
fn a_guest_whose_memory_starts_over_the_tenants_cap_is_refused_naming_the_cap() {
    let limits = PluginLimits {
        memory_bytes: 64 << 10,
        ..PluginLimits::default()
    };
    let settings = PluginSettings {
        limits,
        ..PluginSettings::default()
    };
    let err = runtime()
        .load(
            PluginId::new("acme", "small-cap"),
            &wasm(PURCHASE_APPROVAL),
            settings,
        )
        .err();
    let Some(err) = err else {
        panic!("a plugin whose memory starts over a 64 KiB cap loaded");
    };
    let PluginFailure::MemoryOverCap { declared, limit } = &*err.failure else {
        panic!("{err}");
    };
    assert_eq!(*limit, 64 << 10);
    assert!(*declared > *limit, "{declared}");
    let message = err.to_string();
    assert!(
        message.contains("over the tenant's cap of 65536 bytes"),
        "{message}"
    );
    // With the default cap it loads.
    runtime()
        .load(
            PluginId::new("acme", "default-cap"),
            &wasm(PURCHASE_APPROVAL),
            PluginSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn compiled_components_are_cached_on_disk_across_runtimes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pool_slots: None,
        ..RuntimeConfig::default()
    };
    let bytes = wasm(PURCHASE_APPROVAL);
    let id = PluginId::new("acme", "purchase-approval");
    let first = PluginRuntime::new(config()).unwrap_or_else(|e| panic!("{e}"));
    let a = first.load(id.clone(), &bytes, PluginSettings::default());
    assert_eq!(
        a.map(|p| p.loaded_from()).ok(),
        Some(CacheOutcome::Compiled)
    );
    let again = first.load(id.clone(), &bytes, PluginSettings::default());
    assert_eq!(
        again.map(|p| p.loaded_from()).ok(),
        Some(CacheOutcome::Memory)
    );

    // A restart: a new runtime over the same directory loads without compiling.
    let second = PluginRuntime::new(config()).unwrap_or_else(|e| panic!("{e}"));
    let b = second.load(id.clone(), &bytes, PluginSettings::default());
    assert_eq!(
        b.as_ref().map(|p| p.loaded_from()).ok(),
        Some(CacheOutcome::Disk)
    );
    assert!(b.is_ok_and(|p| p.sha256() == flowgate::plugin::sha256_hex(&bytes)));

    // A damaged cache file is discarded and the component compiled again.
    for entry in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        std::fs::write(entry.path(), b"damaged").unwrap_or_else(|e| panic!("{e}"));
    }
    let third = PluginRuntime::new(config()).unwrap_or_else(|e| panic!("{e}"));
    let c = third.load(id, &bytes, PluginSettings::default());
    assert_eq!(
        c.map(|p| p.loaded_from()).ok(),
        Some(CacheOutcome::Compiled)
    );
}

#[test]
fn a_new_version_swaps_in_while_calls_run_on_the_old_one() {
    let registry = Arc::new(PluginRegistry::new(runtime().clone()));
    let id = PluginId::new("acme", "reimburse");
    let settings = PluginSettings {
        limits: PluginLimits {
            fuel: u64::MAX / 2,
            timeout: Duration::from_secs(60),
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let v1 = registry
        .install(id.clone(), &wasm(MISBEHAVE), settings.clone())
        .unwrap_or_else(|e| panic!("{e}"));

    // A long call on v1 holds its own Arc of v1.
    let in_flight = {
        let plugin = registry
            .current(&id)
            .unwrap_or_else(|| panic!("no current"));
        std::thread::spawn(move || {
            plugin
                .run_action(&action(
                    "spin",
                    json!({}),
                    json!({"iterations": 200_000_000u64}),
                ))
                .map(|c| c.value.data)
                .map_err(|e| e.to_string())
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let v2 = registry
        .install(id.clone(), &wasm(EXPENSE_REIMBURSEMENT), settings)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(v1.sha256(), v2.sha256());

    let finished = in_flight
        .join()
        .unwrap_or_else(|_| panic!("call thread panicked"));
    assert_eq!(finished.map(|d| d["by"].clone()), Ok(json!("misbehave")));

    let current = registry.current(&id).map(|p| p.sha256().to_string());
    assert_eq!(current.as_deref(), Some(v2.sha256()));
    // Instances pinned to v1 still find it.
    assert!(registry.version(&id, v1.sha256()).is_some());
    assert_eq!(registry.versions(&id).len(), 2);
}

#[test]
fn a_refused_install_changes_nothing() {
    let registry = PluginRegistry::new(runtime().clone());
    let id = PluginId::new("acme", "p");
    let v1 = registry.install(id.clone(), &wasm(MISBEHAVE), PluginSettings::default());
    let v1 = v1.map(|p| p.sha256().to_string()).unwrap_or_default();
    assert!(
        registry
            .install(id.clone(), b"junk", PluginSettings::default())
            .is_err()
    );
    assert_eq!(
        registry.current(&id).map(|p| p.sha256().to_string()),
        Some(v1)
    );
    assert_eq!(registry.versions(&id).len(), 1);
}

#[test]
fn settings_change_without_reloading() {
    let registry = PluginRegistry::new(runtime().clone());
    let id = PluginId::new("acme", "cfg");
    let install = registry.install(id.clone(), &wasm(MISBEHAVE), PluginSettings::default());
    assert!(install.is_ok());
    let settings = crate::common::with_config(&[("k", "v")]);
    let updated = registry.update_settings(&id, settings);
    let plugin = updated
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no plugin"));
    let data = plugin.run_action(&action("config", json!({}), json!({})));
    assert_eq!(
        data.map(|c| c.value.data["k"].clone()).ok(),
        Some(json!("v"))
    );
    assert!(registry.list("acme").iter().any(|p| p.id().name == "cfg"));
    assert!(registry.list("other-tenant").is_empty());
}

#[test]
fn many_threads_call_at_once() {
    let plugin = crate::common::loaded(MISBEHAVE, "misbehave", PluginSettings::default());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                (0..20)
                    .filter(|_| {
                        plugin
                            .run_action(&action("ok", json!({}), json!({})))
                            .is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert_eq!(ok, 160);
}

#[test]
fn a_session_serves_several_calls_each_with_its_own_budget_and_log() {
    let settings = PluginSettings {
        limits: PluginLimits {
            fuel: 3_000_000,
            ..PluginLimits::default()
        },
        ..PluginSettings::default()
    };
    let plugin = crate::common::loaded(PURCHASE_APPROVAL, "purchase-approval", settings);
    let mut session = plugin
        .session(None)
        .unwrap_or_else(|e| panic!("session: {e}"));
    let request = flowgate::plugin::types::ApprovalRequest {
        context: crate::common::context(json!({})),
        amount: Some(flowgate::plugin::types::Money {
            currency: "USD".to_string(),
            minor_units: 70_000,
        }),
        category: "office".to_string(),
        requester: "carol".to_string(),
    };
    // Far more calls than one budget of fuel would pay for: each call is refuelled.
    let mut total_fuel = 0;
    for _ in 0..200 {
        let called = session
            .evaluate_approval(&request)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(called.logs.len(), 1, "each call has its own log");
        total_fuel += called.fuel_consumed;
    }
    assert!(total_fuel > 3_000_000, "{total_fuel}");
    let err = session
        .run_action(&action("ok", json!({}), json!({})))
        .err();
    assert!(matches!(
        err.map(|e| *e.failure),
        Some(PluginFailure::MissingExport(
            flowgate::plugin::Capability::StepAction
        ))
    ));
}

/// The SDK carries its own copy of the contract, so that a plugin crate outside this repository
/// builds: it must be the contract the host implements, file for file.
#[test]
fn the_sdk_carries_the_hosts_contract_unchanged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let host = root.join("wit/flowgate-plugin@0.1.0");
    let sdk = root.join("plugins/sdk/wit/flowgate-plugin@0.1.0");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&sdk), names(&host), "the same files");
    for name in names(&host) {
        let read = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        assert!(
            read(&sdk) == read(&host),
            "plugins/sdk/wit/flowgate-plugin@0.1.0/{name} differs from wit/: copy wit/ over it"
        );
    }
}
