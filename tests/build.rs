//! Builds every plugin and test guest in `plugins/` to a wasm component, and exposes their paths
//! as constants (`flowgate_tests::artifacts::PURCHASE_APPROVAL`, ...) plus a `for_each_guest!`
//! macro that the integration tests use to require a test module per guest.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for watched in ["Cargo.toml", "Cargo.lock", "sdk", "sdk-macros"] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }

    let guests = guest_crates(&plugins);
    for (_, dir) in &guests {
        println!("cargo:rerun-if-changed={}", dir.display());
    }

    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
        .current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        // The outer build's settings are for the host, not for wasm guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "building the plugins to wasm failed ({s}); run `cargo build --release --target wasm32-wasip2` in plugins/ to see why"
        ),
        Err(e) => panic!("cannot run cargo to build the plugins: {e}"),
    }

    let out_dir = plugins.join("target/wasm32-wasip2/release");
    let mut consts = String::new();
    let mut names = String::new();
    for (name, _) in &guests {
        let file = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(file.exists(), "expected {} after the build", file.display());
        let ident = name.replace('-', "_");
        consts.push_str(&format!(
            "/// The `{name}` component.\npub const {}: &str = {:?};\n",
            ident.to_uppercase(),
            file.display().to_string()
        ));
        names.push_str(&format!("$m!({ident});\n"));
    }
    let generated = format!(
        "{consts}\n/// Calls `$m!(guest_name)` for every guest.\n#[macro_export]\nmacro_rules! for_each_guest {{\n($m:ident) => {{\n{names}}};\n}}\n"
    );
    let out = PathBuf::from(env("OUT_DIR")).join("artifacts.rs");
    if let Err(e) = std::fs::write(&out, generated) {
        panic!("cannot write {}: {e}", out.display());
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// Every crate under `plugins/` (and `plugins/test-guests/`) that builds a cdylib.
fn guest_crates(plugins: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for parent in [plugins.to_path_buf(), plugins.join("test-guests")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            if !text.contains("cdylib") {
                continue;
            }
            let name = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_string());
            if let Some(name) = name {
                found.push((name, entry.path()));
            }
        }
    }
    found.sort();
    found
}
