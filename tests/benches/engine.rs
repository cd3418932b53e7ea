//! Engine throughput and latency: purchase-request instances run from start to end (the
//! purchase-approval plugin decides; a manager approves; procurement orders) by 1, 16 and 64
//! concurrent clients on a redb file with durable commits, first on an empty store and then with
//! many instances already stored; plus the time of an inbox query for a role.
//!
//! Run: `cargo bench -p flowgate-tests --bench engine` (`-- --stored 100000` for a smaller store,
//! `--stored 0` to skip it, `-- --seconds 5` per measurement, `--clients 64` for one row).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowgate::engine::{Instance, Person, Status};
use flowgate::service::Flowgate;
use flowgate::store::{Inbox, InstanceFilter, RedbStore};
use flowgate_tests::bench::{Discard, arg, pct, store_copies};
use flowgate_tests::cpu;
use serde_json::{Map, Value, json};

// The daemon's allocator, so that the engine is measured as the daemon runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn data() -> Map<String, Value> {
    match json!({"amount_cents": 120_000, "currency": "USD", "category": "office", "requester": "bench"})
    {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

async fn open(dir: &Path) -> (Flowgate, Arc<RedbStore>) {
    flowgate_tests::bench::example_engine(dir, "bench.redb", Arc::new(Discard)).await
}

/// Waits (politely) until the instance has an open task for `role`.
async fn task_for(flowgate: &Flowgate, id: &str, role: &str) -> String {
    loop {
        if let Ok(i) = flowgate.instance("acme", id)
            && let Some(t) = i.open_tasks().find(|t| t.role.as_deref() == Some(role))
        {
            return t.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Run {
    /// CPU seconds the process used.
    cpu: Option<f64>,
    client_commands: u64,
    instances: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Transactions and changes committed meanwhile (the driver's included).
    written: flowgate::service::WriteTotals,
}

/// `clients` loops, each running instances start to end until `duration` is over.
async fn run(flowgate: &Flowgate, clients: usize, duration: Duration) -> Run {
    let stop = Instant::now() + duration;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = cpu::process_seconds(std::process::id());
    let written_before = flowgate.write_totals();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (flowgate, done) = (flowgate.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let manager = Person::new("mia", &["manager"]);
            let buyer = Person::new("pat", &["procurement"]);
            while Instant::now() < stop {
                let t = Instant::now();
                let Ok(instance) = flowgate
                    .start("acme", "purchase-request", data(), "bench", None)
                    .await
                else {
                    break;
                };
                latencies.push(t.elapsed());
                let task = task_for(&flowgate, &instance.id, "manager").await;
                let t = Instant::now();
                let ok = flowgate
                    .complete_task(
                        "acme",
                        &task,
                        manager.clone(),
                        Some("approve".into()),
                        Map::new(),
                    )
                    .await;
                latencies.push(t.elapsed());
                assert!(ok.is_ok(), "{ok:?}");
                let task = task_for(&flowgate, &instance.id, "procurement").await;
                let t = Instant::now();
                let po = match json!({"po_number": "PO-1"}) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let end: Instance = flowgate
                    .complete_task("acme", &task, buyer.clone(), None, po)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                latencies.push(t.elapsed());
                assert_eq!(end.status, Status::Completed);
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap_or_default());
    }
    latencies.sort();
    let cpu_after = cpu::process_seconds(std::process::id());
    let written = flowgate.write_totals();
    Run {
        written: flowgate::service::WriteTotals {
            commits: written.commits - written_before.commits,
            changes: written.changes - written_before.changes,
        },
        cpu: cpu_before.and_then(|b| Some(cpu_after? - b)),
        client_commands: latencies.len() as u64,
        instances: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn report(label: &str, clients: usize, r: &Run) {
    let secs = r.elapsed.as_secs_f64();
    // Transactions committed, the driver's included (measured, not assumed).
    let commits = r.written.commits;
    println!(
        "| {label:<22} | {clients:>3} | {:>9.0} | {:>9.0} | {:>8.0} | {:>7.2} | {:>7.2} | {:>6.0} |",
        r.client_commands as f64 / secs,
        commits as f64 / secs,
        r.instances as f64 / secs,
        pct(&r.latencies, 50),
        pct(&r.latencies, 99),
        r.cpu.unwrap_or(0.0) / r.client_commands.max(1) as f64 * 1e6,
    );
}

/// Stores `count` copies of a purchase request waiting for its approver, in batches, as the
/// engine itself would store them (state, indexes); open tasks spread over 100 roles.
fn preload(store: &RedbStore, template: &Instance, count: u64) {
    let took = store_copies(store, template, count, |n, text| {
        let role = if n % 100 == 0 {
            "manager".to_string()
        } else {
            format!("role-{}", n % 100)
        };
        text.replace(&template.id, &format!("pre-{n:09}"))
            .replace("\"role\":\"manager\"", &format!("\"role\":\"{role}\""))
    });
    eprintln!("preloaded {count} instances in {:.1}s", took.as_secs_f64());
}

fn main() {
    let stored = arg("--stored", 1_000_000);
    let seconds = arg("--seconds", 10);
    // `--clients N` measures N clients only; `--stored 0` skips the stored-instances half.
    let client_counts: Vec<usize> = match arg("--clients", 0) {
        0 => vec![1, 16, 64],
        n => vec![n as usize],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (flowgate, store) = open(dir.path()).await;
        let driver = flowgate.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let driving = tokio::spawn(async move {
            driver.run_driver(Duration::from_millis(50), async { drop(stop_rx.await) }).await
        });

        println!("| store | clients | client cmds/s | commits/s | instances/s | p50 ms | p99 ms | CPU µs per client cmd |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for &clients in &client_counts {
            let r = run(&flowgate, clients, Duration::from_secs(seconds)).await;
            report("empty", clients, &r);
        }
        if stored == 0 {
            let _ = stop_tx.send(());
            let _ = driving.await;
            return;
        }

        // A template: an instance waiting for its manager.
        let template = flowgate.start("acme", "purchase-request", data(), "bench", None).await.unwrap_or_else(|e| panic!("{e}"));
        task_for(&flowgate, &template.id, "manager").await;
        let template = flowgate.instance("acme", &template.id).unwrap_or_else(|e| panic!("{e}"));
        preload(&store, &template, stored);
        let label = format!("{stored} stored");
        for &clients in &client_counts {
            let r = run(&flowgate, clients, Duration::from_secs(seconds)).await;
            report(&label, clients, &r);
        }

        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let page = flowgate.inbox("acme", &Inbox::Role("manager".into()), None, 50).unwrap_or_default();
            times.push(t.elapsed());
            assert_eq!(page.len() as u64, (stored / 100).clamp(1, 50));
        }
        times.sort();
        println!(
            "\ninbox query, role `manager` ({} open tasks of {} stored instances), first page of 50 with task details: p50 {:.2} ms, p99 {:.2} ms",
            stored / 100,
            stored,
            pct(&times, 50),
            pct(&times, 99)
        );
        // Listing by a status no instance has: the listing index answers at once. A data field
        // alone has no index: that list scans (and decodes) every instance of the tenant.
        let time_list = |filter: &InstanceFilter, samples: usize| {
            let mut times = Vec::new();
            for _ in 0..samples {
                let t = Instant::now();
                let page = flowgate.instances("acme", filter).unwrap_or_default();
                times.push(t.elapsed());
                assert!(page.is_empty());
            }
            times.sort();
            (pct(&times, 50), pct(&times, 99))
        };
        let cancelled = InstanceFilter {
            status: Some("cancelled".into()),
            limit: 50,
            ..InstanceFilter::default()
        };
        let (p50, p99) = time_list(&cancelled, 50);
        println!("instance list, status `cancelled` (none among {stored}): p50 {p50:.2} ms, p99 {p99:.2} ms");
        let mut nobody = InstanceFilter {
            limit: 50,
            ..InstanceFilter::default()
        };
        nobody.data.insert("requester".into(), json!("nobody"));
        let (p50, p99) = time_list(&nobody, 3);
        println!("instance list, data field only (a scan of {stored}): p50 {p50:.0} ms, p99 {p99:.0} ms");
        let _ = stop_tx.send(());
        let _ = driving.await;
    });
}
