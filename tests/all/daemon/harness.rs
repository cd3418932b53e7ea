//! The black-box harness: the real `flowgate` binary on a free loopback port, with its own data
//! folder, driven over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ACME_ADMIN: &str = "acme-admin-token";
pub const GLOBEX_ADMIN: &str = "globex-admin-token";

pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub agent: ureq::Agent,
    pub dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example tenant and the globex fixture.
pub fn example_tenants() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![
        root.join("examples/acme/tenant.toml"),
        root.join("tests/fixtures/globex/tenant.toml"),
    ]
}

pub fn start(max_body_bytes: usize) -> Daemon {
    start_in(
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        max_body_bytes,
    )
}

/// Starts the daemon on `dir` (its data folder is `dir/data`), which may hold earlier data.
pub fn start_in(dir: tempfile::TempDir, max_body_bytes: usize) -> Daemon {
    let extra = format!("max_body_bytes = {max_body_bytes}\n");
    start_with(dir, &example_tenants(), &extra)
}

/// Starts the daemon on `dir` serving `tenants`, with more configuration lines.
pub fn start_with(dir: tempfile::TempDir, tenants: &[PathBuf], extra: &str) -> Daemon {
    start_configured(dir, tenants, extra, false)
}

/// As [`start_with`], logging JSON lines to `flowgate.log` in `dir` ([`Daemon::log`]).
pub fn start_logged(dir: tempfile::TempDir, tenants: &[PathBuf], extra: &str) -> Daemon {
    start_configured(dir, tenants, extra, true)
}

fn start_configured(
    dir: tempfile::TempDir,
    tenants: &[PathBuf],
    extra: &str,
    logged: bool,
) -> Daemon {
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ntenants = {:?}\ntick_ms = 50\n{extra}",
        dir.path().join("data"),
        tenants,
    );
    let config_path = dir.path().join("flowgate.toml");
    std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
    let log = logged.then(|| dir.path().join("flowgate.log"));
    let (child, base) = flowgate_tests::daemon::spawn_logging_to(
        env!("CARGO_BIN_EXE_flowgate"),
        &config_path,
        log.as_deref(),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Daemon {
        child,
        base,
        agent,
        dir,
    }
}

/// Stops a daemon and gives back its folder, to start another on the same data.
pub fn folder_of(mut d: Daemon) -> tempfile::TempDir {
    let dir = std::mem::replace(
        &mut d.dir,
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    );
    drop(d);
    dir
}

impl Daemon {
    /// The log lines written so far, parsed (a daemon from [`start_logged`]).
    pub fn log(&self) -> Vec<Value> {
        let path = self.dir.path().join("flowgate.log");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // A line still being written is not read yet.
        let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("log line {line:?}: {e}"))
            })
            .collect()
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut req = self.agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            ("DELETE", _) => {
                let mut req = self.agent.delete(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            (_, body) => {
                let mut req = self.agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send_json(body.unwrap_or_else(|| json!({})))
            }
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn raw(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Any method, with these headers and body (none when empty): the status, the `Allow`
    /// header and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Option<String>, Value) {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let sent = if body.is_empty() {
            self.agent
                .run(builder.body(()).unwrap_or_else(|e| panic!("{e}")))
        } else {
            self.agent.run(
                builder
                    .body(body.to_vec())
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            response.status().as_u16(),
            allow,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Starts an instance of `workflow` with `token`; returns the instance (asserting 201).
    pub fn start_instance(&self, token: &str, workflow: &str) -> Value {
        let start = json!({"workflow": workflow});
        let (status, body) = self.call("POST", "/api/v1/instances", Some(token), Some(start));
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Polls until the instance has an open task for `role` (the driver runs in the background).
    pub fn task_for(&self, instance: &str, role: &str) -> String {
        self.open_task(ACME_ADMIN, instance, role)
    }

    /// Polls until the instance (read with `token`) has an open task for `role`.
    pub fn open_task(&self, token: &str, instance: &str, role: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let (_, body) = self.call(
                "GET",
                &format!("/api/v1/instances/{instance}"),
                Some(token),
                None,
            );
            let tasks = body["instance"]["tasks"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some((id, _)) = tasks
                .iter()
                .find(|(_, t)| t["status"] == "open" && t["role"] == role)
            {
                return id.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no open task for {role} in {instance}");
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(no error code)")
}

pub fn start_purchase(d: &Daemon, cents: i64, category: &str) -> String {
    let data = json!({"workflow": "purchase-request", "data": {"amount_cents": cents, "currency": "USD", "category": category, "requester": "alice"}});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(data));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap_or_default().to_string()
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(d: &mut Daemon) {
    let pid = d.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = d.child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
}

/// Polls `check` every 50 ms until it gives a value, for up to 20 s.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the daemon with SIGKILL: nothing is flushed or finished.
pub fn crash(d: &mut Daemon) {
    let _ = d.child.kill();
    let _ = d.child.wait();
}

/// The Python with the contract tools (`scripts/python-tools.sh`, which `./test.sh` sources).
pub fn tools_python() -> PathBuf {
    let made = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-tools/bin/python");
    let python = std::env::var_os("FLOWGATE_TEST_PYTHON").map_or(made, Into::into);
    assert!(
        python.exists(),
        "{} is missing: run ./test.sh, or `source scripts/python-tools.sh` once",
        python.display()
    );
    python
}

/// Runs a script of the tools' Python with `input` on stdin; its stdout as JSON (asserting it
/// succeeded).
pub fn python_on(script: &str, input: &[u8]) -> Value {
    use std::io::Write;
    let mut child = Command::new(tools_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Runs the `flowgate` command line with `args` (none of its environment variables): whether it
/// succeeded, what it printed (as JSON) and its stderr.
pub fn run_cli(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .env_remove("FLOWGATE_URL")
        .env_remove("FLOWGATE_TOKEN")
        .env_remove("FLOWGATE_DATA_DIR")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An instant the API answered with, RFC 3339 text, as milliseconds since the epoch.
pub fn instant(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not RFC 3339 text"));
    let at = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    u64::try_from(at.timestamp_millis()).unwrap_or_default()
}
