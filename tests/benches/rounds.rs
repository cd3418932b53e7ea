//! The purchase-approval rounds workload (issue 8), in process or over HTTP, with 1 or many
//! clients, on a redb file with durable commits.
//!
//! `--instances N` purchase requests (`rounds/purchase.toml`) are started, a third each in the
//! auto-approval, manager, and director-plus-IT-reviewer bands, so that an instance takes 2, 3 or
//! 4 client commands (3 on average). Then, round after round, each client takes the next live
//! instance and completes one of its open tasks, taken from the previous answer (nobody polls
//! while decisions answer in the command's own transaction), until every instance has ended.
//!
//! Reports instances/s, client commands/s, p50/p99 per command, commits and changes per
//! instance, and CPU per client command (the daemon's over HTTP). The run stops at `--limit`
//! seconds whatever happens, and an instance that stops moving (no open task and no end for 30 s)
//! is named, so a lost wake-up is a finding, not a hang. The last line is the result as JSON
//! (`scripts/bench-vs-spiff.sh` reads it).
//!
//! Run: `cargo bench -p flowgate-tests --bench rounds -- --mode http --clients 1`
//! (`--mode engine|http`, `--clients N`, `--instances N`, `--limit S`).

#[path = "common/http1.rs"]
mod http1;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flowgate::engine::{Instance, Person, Status, TaskStatus};
use flowgate::service::{BoxFuture, Delivery, Flowgate, Notifier};
use flowgate_tests::bench::{arg, pct};
use flowgate_tests::cpu;
use serde_json::{Map, Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKFLOW: &str = "purchase-rounds";
/// How long an instance may show no open task and no end before it is named as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// The example tenant has no notification channels; in process the same holds.
struct NoChannels;

impl Notifier for NoChannels {
    fn deliver<'a>(&'a self, _: &'a Delivery) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn delivers(&self, _: &str) -> bool {
        false
    }
}

/// An open task as a client sees it.
#[derive(Debug, Clone)]
struct Open {
    id: String,
    step: String,
    role: String,
}

/// An instance as a client sees it after a command.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    version: u64,
    ended: bool,
    open: Vec<Open>,
}

impl Seen {
    fn of(instance: &Instance) -> Seen {
        Seen {
            id: instance.id.clone(),
            version: instance.version,
            ended: instance.status != Status::Running,
            open: instance
                .tasks
                .values()
                .filter(|t| t.status == TaskStatus::Open)
                .map(|t| Open {
                    id: t.id.clone(),
                    step: t.step.clone(),
                    role: t.role.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// From an instance (a start's answer, a long poll) or a completion's answer
    /// (`{instance, status, version, open_tasks}`).
    fn of_json(answer: &Value) -> Seen {
        let tasks: Vec<&Value> = match (&answer["tasks"], &answer["open_tasks"]) {
            (Value::Object(tasks), _) => tasks.values().collect(),
            (_, Value::Array(open)) => open.iter().collect(),
            _ => Vec::new(),
        };
        let open = tasks
            .into_iter()
            .filter(|t| t["status"] == "open")
            .map(|t| Open {
                id: text(&t["id"]),
                step: text(&t["step"]),
                role: text(&t["role"]),
            })
            .collect();
        let id = answer["id"].as_str().or(answer["instance"].as_str());
        Seen {
            id: id.unwrap_or_default().to_string(),
            version: answer["version"].as_u64().unwrap_or(0),
            ended: answer["status"] != "running",
            open,
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// A client: the engine in process, or one keep-alive connection to the daemon.
enum Client {
    Engine(Flowgate),
    Http(http1::Connection),
}

impl Client {
    async fn start(&mut self, data: Map<String, Value>) -> Seen {
        match self {
            Client::Engine(f) => {
                let started = f.start("acme", WORKFLOW, data, "bench", None).await;
                Seen::of(&started.unwrap_or_else(|e| panic!("start: {e}")))
            }
            Client::Http(c) => {
                let body = json!({"workflow": WORKFLOW, "data": data});
                Seen::of_json(&c.request("POST", "/api/v1/instances", Some(&body)).await)
            }
        }
    }

    async fn complete(&mut self, task: &Open) -> Seen {
        let outcome = (task.step != "submit").then(|| "approve".to_string());
        match self {
            Client::Engine(f) => {
                let by = Person::new("bench", &[task.role.as_str()]);
                let done = f
                    .complete_task("acme", &task.id, by, outcome, Map::new())
                    .await;
                Seen::of(&done.unwrap_or_else(|e| panic!("complete {}: {e}", task.id)))
            }
            Client::Http(c) => {
                let body = json!({"outcome": outcome, "by": {"id": "bench", "roles": [task.role]}});
                let path = format!("/api/v1/tasks/{}/complete", task.id);
                Seen::of_json(&c.request("POST", &path, Some(&body)).await)
            }
        }
    }

    /// The instance once it changed past `version`, or after 5 s as it is.
    async fn wait(&mut self, id: &str, version: u64) -> Seen {
        match self {
            Client::Engine(f) => {
                let wait = Duration::from_secs(5);
                let seen = f.instance_changed("acme", id, version, wait).await;
                Seen::of(&seen.unwrap_or_else(|e| panic!("wait {id}: {e}")))
            }
            Client::Http(c) => {
                let path = format!(
                    "/api/v1/instances/{id}?history=false&changed_since={version}&wait_ms=5000"
                );
                Seen::of_json(&c.request("GET", &path, None).await["instance"])
            }
        }
    }
}

fn data(n: usize) -> Map<String, Value> {
    let (cents, category) = match n % 3 {
        0 => (10_000, "office"),  // 100.00: auto-approved
        1 => (200_000, "office"), // 2,000.00: a manager
        _ => (2_000_000, "it"),   // 20,000.00 of IT: a director and an IT reviewer
    };
    let data = json!({"amount_cents": cents, "currency": "USD", "category": category, "requester": "bench"});
    data.as_object().cloned().unwrap_or_default()
}

/// What the clients found.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    finished: usize,
    stuck: Vec<String>,
    unfinished: Vec<String>,
}

/// One unit of work: start instance `n`, or complete a task of an instance seen.
enum Job {
    Start(usize),
    Next(Seen),
}

/// Runs `job`; what is still live goes to `next`.
async fn work(client: &mut Client, job: Job, tally: &Mutex<Tally>, next: &Mutex<Vec<Job>>) {
    let began = Instant::now();
    let mut seen = match job {
        Job::Start(n) => client.start(data(n)).await,
        Job::Next(seen) => match seen.open.first() {
            Some(task) => client.complete(task).await,
            None => seen,
        },
    };
    let latency = began.elapsed();
    // An answer with no open task and no end: the rest of the way is someone else's (the
    // outbox, a timer). Wait for it, but not for ever.
    let waiting = Instant::now();
    while !seen.ended && seen.open.is_empty() && waiting.elapsed() < STUCK_AFTER {
        seen = client.wait(&seen.id, seen.version).await;
    }
    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    tally.latencies.push(latency);
    if seen.ended {
        tally.finished += 1;
    } else if seen.open.is_empty() {
        tally.stuck.push(seen.id);
    } else {
        drop(tally);
        next.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Job::Next(seen));
    }
}

/// Drives every instance to its end, round after round, with `clients`; stops at `deadline`.
async fn drive(clients: Vec<Client>, instances: usize, deadline: Instant) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = clients;
    let mut round: Vec<Job> = (0..instances).map(Job::Start).collect();
    while !round.is_empty() {
        let queue = Arc::new(Mutex::new(VecDeque::from(round)));
        let next = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = clients
            .drain(..)
            .map(|mut client| {
                let (queue, next, tally) = (queue.clone(), next.clone(), tally.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let job = queue
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .pop_front();
                        let Some(job) = job else { break };
                        work(&mut client, job, &tally, &next).await;
                    }
                    client
                })
            })
            .collect();
        for worker in workers {
            clients.push(
                worker
                    .await
                    .unwrap_or_else(|e| panic!("a client failed: {e}")),
            );
        }
        let left: Vec<Job> = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        round = std::mem::take(&mut *next.lock().unwrap_or_else(PoisonError::into_inner));
        if Instant::now() >= deadline {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            for job in left.into_iter().chain(round.drain(..)) {
                tally.unfinished.push(match job {
                    Job::Start(n) => format!("(start {n})"),
                    Job::Next(seen) => seen.id,
                });
            }
        }
    }
    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::take(&mut *tally)
}

fn definition() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rounds/purchase.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Measured {
    tally: Tally,
    seconds: f64,
    commits: f64,
    changes: f64,
    cpu: Option<f64>,
}

async fn in_process(dir: &Path, clients: usize, instances: usize, limit: Duration) -> Measured {
    let (flowgate, _) =
        flowgate_tests::bench::example_engine(dir, "rounds.redb", Arc::new(NoChannels)).await;
    flowgate
        .deploy("acme", "purchase.toml", &definition())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = flowgate.clone();
    let driving = tokio::spawn(async move {
        let stopped = async { drop(stopped.await) };
        driver.run_driver(Duration::from_millis(250), stopped).await;
    });
    let before = flowgate.write_totals();
    let cpu_before = cpu::process_seconds(std::process::id());
    let began = Instant::now();
    let all = (0..clients)
        .map(|_| Client::Engine(flowgate.clone()))
        .collect();
    let tally = drive(all, instances, began + limit).await;
    let seconds = began.elapsed().as_secs_f64();
    let cpu = cpu::process_seconds(std::process::id()).zip(cpu_before);
    let after = flowgate.write_totals();
    let _ = stop.send(());
    let _ = driving.await;
    Measured {
        tally,
        seconds,
        commits: (after.commits - before.commits) as f64,
        changes: (after.changes - before.changes) as f64,
        cpu: cpu.map(|(a, b)| a - b),
    }
}

/// `flowgate_commits_total` and `flowgate_commit_changes_total` from the daemon's `/metrics`.
async fn commit_counters(connection: &mut http1::Connection) -> (f64, f64) {
    let (_, text) = connection.send("GET", "/metrics", None).await;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read("flowgate_commits_total"),
        read("flowgate_commit_changes_total"),
    )
}

fn over_http(dir: &Path, clients: usize, instances: usize, limit: Duration) -> Measured {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ntenants = [{:?}]\n",
        dir.join("data"),
        root.join("examples/acme/tenant.toml"),
    );
    let config_path = dir.join("flowgate.toml");
    std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
    let (mut child, base) =
        flowgate_tests::daemon::spawn(env!("CARGO_BIN_EXE_flowgate"), &config_path);
    let addr = base.trim_start_matches("http://").to_string();
    // The load driver runs on this one thread, to take as little of the cores as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let measured = runtime.block_on(async {
        let mut admin = http1::Connection::connect(&addr).await;
        let deploy = json!({"file": "purchase.toml", "source": definition()});
        admin
            .request("POST", "/api/v1/definitions", Some(&deploy))
            .await;
        let mut all = Vec::new();
        for _ in 0..clients {
            all.push(Client::Http(http1::Connection::connect(&addr).await));
        }
        let (commits, changes) = commit_counters(&mut admin).await;
        let cpu_before = cpu::process_seconds(child.id());
        let began = Instant::now();
        let tally = drive(all, instances, began + limit).await;
        let seconds = began.elapsed().as_secs_f64();
        let cpu = cpu::process_seconds(child.id()).zip(cpu_before);
        let (commits_after, changes_after) = commit_counters(&mut admin).await;
        Measured {
            tally,
            seconds,
            commits: commits_after - commits,
            changes: changes_after - changes,
            cpu: cpu.map(|(a, b)| a - b),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    measured
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "engine".to_string());
    let clients = arg("--clients", 1).max(1) as usize;
    let instances = arg("--instances", 2_000) as usize;
    let limit = Duration::from_secs(arg("--limit", 600));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let Measured {
        mut tally,
        seconds,
        commits,
        changes,
        cpu,
    } = match mode.as_str() {
        "http" => over_http(dir.path(), clients, instances, limit),
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(in_process(dir.path(), clients, instances, limit))
        }
    };
    tally.latencies.sort();
    let commands = tally.latencies.len();
    let per = |n: f64| n / instances.max(1) as f64;
    let cpu_us = cpu.map(|c| c / commands.max(1) as f64 * 1e6);
    println!(
        "{mode}, {clients} client(s), {instances} instances: {:.2} s, {:.0} instances/s, {:.0} client commands/s",
        seconds,
        tally.finished as f64 / seconds,
        commands as f64 / seconds
    );
    println!(
        "per instance: {:.2} client commands, {:.2} commits, {:.2} changes written; p50 {:.2} ms, p99 {:.2} ms per command",
        per(commands as f64),
        per(commits),
        per(changes),
        pct(&tally.latencies, 50),
        pct(&tally.latencies, 99)
    );
    match cpu_us {
        Some(us) => println!(
            "CPU ({}): {us:.0} µs per client command",
            if mode == "http" {
                "the daemon"
            } else {
                "this process"
            }
        ),
        None => println!("CPU: not measured on this system"),
    }
    if !tally.stuck.is_empty() {
        println!(
            "FINDING: {} instance(s) stopped moving: {:?}",
            tally.stuck.len(),
            &tally.stuck[..tally.stuck.len().min(10)]
        );
    }
    if !tally.unfinished.is_empty() {
        println!(
            "FINDING: the {} s limit stopped the run with {} instance(s) unfinished: {:?}",
            limit.as_secs(),
            tally.unfinished.len(),
            &tally.unfinished[..tally.unfinished.len().min(10)]
        );
    }
    let result = json!({
        "engine": "flowgate", "mode": mode, "clients": clients, "instances": instances,
        "finished": tally.finished, "seconds": seconds,
        "instances_per_s": tally.finished as f64 / seconds,
        "client_commands": commands, "commands_per_s": commands as f64 / seconds,
        "commits_per_instance": per(commits), "changes_per_instance": per(changes),
        "cpu_us_per_command": cpu_us,
        "p50_ms": pct(&tally.latencies, 50), "p99_ms": pct(&tally.latencies, 99),
        "stuck": tally.stuck, "unfinished": tally.unfinished.len(),
    });
    println!("{result}");
}
