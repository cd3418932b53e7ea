//! Starting the real `flowgate serve`, for the black-box tests and the HTTP benchmark.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `bin serve --config config` (which should listen on port 0) and waits for the line
/// that names its address; returns the process and its base URL (`http://127.0.0.1:port`).
pub fn spawn(bin: &str, config: &Path) -> (Child, String) {
    spawn_logging_to(bin, config, None)
}

/// As [`spawn`], with the log as JSON lines in the file `log` (else on the test's stderr).
pub fn spawn_logging_to(bin: &str, config: &Path, log: Option<&Path>) -> (Child, String) {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    match log {
        Some(path) => {
            let file = std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            command.env("FLOWGATE_LOG_FORMAT", "json").stderr(file)
        }
        None => command.stderr(Stdio::inherit()),
    };
    let mut child = command
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
