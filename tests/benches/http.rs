//! The HTTP layer's cost: the real daemon (`flowgate serve`, release build, redb file, durable
//! commits) driven over loopback by 64 concurrent keep-alive connections from one async thread, each running purchase
//! requests from start to end the way the engine benchmark does in-process: start the instance,
//! wait for the manager's task, approve it, complete procurement's task. Reports requests per
//! second and p50/p99 latency for start-instance and complete-task.
//!
//! Run: `cargo bench -p flowgate-tests --bench http` (`-- --seconds S`, `-- --clients N`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowgate_tests::bench::{arg, pct};
use flowgate_tests::cpu;
use serde_json::{Value, json};

#[path = "common/http1.rs"]
mod http1;

/// A keep-alive connection that counts its long polls.
struct Client {
    connection: http1::Connection,
    polls: Arc<AtomicU64>,
}

impl Client {
    async fn connect(addr: &str, polls: Arc<AtomicU64>) -> Client {
        let connection = http1::Connection::connect(addr).await;
        Client { connection, polls }
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.connection.request(method, path, body).await
    }

    /// The open task for `role`: from `answer`'s open tasks, else by long-polling the instance
    /// until a change brings one.
    async fn task_for(&mut self, id: &str, role: &str, answer: &Value) -> String {
        let find = |tasks: &Value| {
            let list: Vec<Value> = match tasks {
                Value::Array(a) => a.clone(),
                Value::Object(o) => o.values().cloned().collect(),
                _ => Vec::new(),
            };
            list.into_iter()
                .find(|t| t["status"] == "open" && t["role"] == role)
                .and_then(|t| t["id"].as_str().map(str::to_string))
        };
        // A start answers with the instance (`tasks`), a completion with its `open_tasks`.
        if let Some(found) = find(&answer["tasks"]).or_else(|| find(&answer["open_tasks"])) {
            return found;
        }
        let mut version = answer["version"].as_u64().unwrap_or(0);
        loop {
            self.polls.fetch_add(1, Ordering::Relaxed);
            let path = format!(
                "/api/v1/instances/{id}?history=false&changed_since={version}&wait_ms=5000"
            );
            let body = self.request("GET", &path, None).await;
            if let Some(found) = find(&body["instance"]["tasks"]) {
                return found;
            }
            version = body["instance"]["version"].as_u64().unwrap_or(version);
        }
    }
}

#[derive(Default)]
struct Latencies {
    start: Vec<Duration>,
    complete: Vec<Duration>,
    instances: u64,
}

async fn run_client(mut client: Client, stop: Instant) -> Latencies {
    let mut l = Latencies::default();
    let data = json!({"workflow": "purchase-request", "data": {"amount_cents": 120_000, "currency": "USD", "category": "office", "requester": "bench"}});
    let approve = json!({"outcome": "approve", "by": {"id": "mia", "roles": ["manager"]}});
    let order =
        json!({"data": {"po_number": "PO-1"}, "by": {"id": "pat", "roles": ["procurement"]}});
    while Instant::now() < stop {
        let t = Instant::now();
        let started = client
            .request("POST", "/api/v1/instances", Some(&data))
            .await;
        l.start.push(t.elapsed());
        let id = started["id"].as_str().unwrap_or_default().to_string();
        let task = client.task_for(&id, "manager", &started).await;
        let t = Instant::now();
        let path = format!("/api/v1/tasks/{task}/complete");
        let answer = client.request("POST", &path, Some(&approve)).await;
        l.complete.push(t.elapsed());
        let task = client.task_for(&id, "procurement", &answer).await;
        let t = Instant::now();
        let path = format!("/api/v1/tasks/{task}/complete");
        let end = client.request("POST", &path, Some(&order)).await;
        l.complete.push(t.elapsed());
        assert_eq!(end["status"], "completed", "{end}");
        l.instances += 1;
    }
    l
}

fn main() {
    let seconds = arg("--seconds", 10);
    let clients = arg("--clients", 64) as usize;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ntenants = [{:?}]\n",
        dir.path().join("data"),
        root.join("examples/acme/tenant.toml"),
    );
    let config_path = dir.path().join("flowgate.toml");
    std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
    let (mut child, base) =
        flowgate_tests::daemon::spawn(env!("CARGO_BIN_EXE_flowgate"), &config_path);

    let addr = base.trim_start_matches("http://").to_string();
    let polls = Arc::new(AtomicU64::new(0));
    // The whole load driver runs on this one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (all, began, daemon_cpu, driver_cpu) = runtime.block_on(async {
        let mut connections = Vec::new();
        for _ in 0..clients {
            connections.push(Client::connect(&addr, polls.clone()).await);
        }
        let began = Instant::now();
        let daemon_cpu = cpu::process_seconds(child.id());
        let driver_cpu = cpu::process_seconds(std::process::id());
        let stop = began + Duration::from_secs(seconds);
        let tasks: Vec<_> = connections
            .into_iter()
            .map(|c| tokio::spawn(run_client(c, stop)))
            .collect();
        let mut all = Latencies::default();
        for t in tasks {
            let l = t.await.unwrap_or_default();
            all.start.extend(l.start);
            all.complete.extend(l.complete);
            all.instances += l.instances;
        }
        (all, began, daemon_cpu, driver_cpu)
    });
    let mut all = all;
    let secs = began.elapsed().as_secs_f64();
    let used = |pid: u32, before: Option<f64>| Some(cpu::process_seconds(pid)? - before?);
    let daemon_cpu = used(child.id(), daemon_cpu);
    let driver_cpu = used(std::process::id(), driver_cpu);
    let _ = child.kill();
    let _ = child.wait();
    all.start.sort();
    all.complete.sort();

    println!(
        "{clients} connections, {secs:.1} s, {} instances ({:.0}/s)",
        all.instances,
        all.instances as f64 / secs
    );
    println!("| request | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (name, l) in [
        ("start instance", &all.start),
        ("complete task", &all.complete),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} |",
            l.len() as f64 / secs,
            pct(l, 50),
            pct(l, 99)
        );
    }
    let count = all.start.len() + all.complete.len();
    let commands = count as f64 / secs;
    println!("| all client commands | {commands:.0} | | |");
    println!(
        "| (long polls for the plugin's decision) | {:.0} | | |",
        polls.load(Ordering::Relaxed) as f64 / secs
    );
    if let (Some(daemon), Some(driver)) = (daemon_cpu, driver_cpu) {
        println!(
            "\nCPU: the daemon {daemon:.1} s ({:.0}% of 2 cores), this load driver {driver:.1} s; \
             daemon CPU per client command {:.0} µs",
            daemon / secs / 2.0 * 100.0,
            daemon / count as f64 * 1e6
        );
    }
}
