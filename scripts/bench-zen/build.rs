// Records the zen-engine version the comparison ran against, from Cargo.lock.
fn main() {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"zen-engine\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "?".to_string());
    println!("cargo:rustc-env=ZEN_VERSION={version}");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
