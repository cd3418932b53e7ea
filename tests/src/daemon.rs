//! Starting the real `flowgate serve`, for the black-box tests and the HTTP benchmark.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `bin serve --config config` (which should listen on port 0) and waits for the line
/// that names its address; returns the process and its base URL (`http://127.0.0.1:port`).
pub fn spawn(bin: &str, config: &Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn flowgate: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let base = line
        .trim()
        .strip_prefix("flowgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base)
}
