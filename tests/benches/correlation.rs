//! Message correlation: other systems report signatures (`signature-received`, correlated by the
//! document id) to instances of `document-esign` waiting at their receive step, from 1 and 64
//! concurrent clients, with few and with a million instances waiting. Each message is found
//! through the subscription index and delivered in one durable commit (the step moves on to its
//! archive task); the figure to watch is how little the million costs.
//!
//! Run: `cargo bench -p flowgate-tests --bench correlation` (`-- --waiting 100000` for a smaller
//! store, `--seconds 10` per row, `--clients 64` for one row). The few are 100,000 waiting
//! instances of their own; the many are stored beside them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowgate::engine::{Instance, Message, Person};
use flowgate::service::Flowgate;
use flowgate::store::RedbStore;
use flowgate_tests::bench::{Discard, arg, pct, store_copies};
use flowgate_tests::cpu;
use serde_json::{Map, Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The template's document id, replaced in every copy by the copy's own.
const TEMPLATE: &str = "DOC-TEMPLATE-0000";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An instance waiting for its signature, as the engine made it.
async fn template(flowgate: &Flowgate) -> Instance {
    let data = object(json!({"document_id": TEMPLATE, "title": "Master services agreement"}));
    let started = flowgate
        .start("acme", "document-esign", data, "bench", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let task = started
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("no prepare task"));
    let clerk = Person::new("cy", &["clerk"]);
    flowgate
        .complete_task("acme", &task, clerk, None, Map::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Stores `count` copies of the waiting instance (state and indexes, as the engine stores
/// them), document ids `{prefix}-{n}`.
fn preload(store: &RedbStore, template: &Instance, prefix: &str, count: u64) {
    let took = store_copies(store, template, count, |n, text| {
        text.replace(&template.id, &format!("{prefix}-i{n:09}"))
            .replace(TEMPLATE, &format!("{prefix}-{n}"))
    });
    eprintln!(
        "{count} instances waiting ({prefix}) in {:.1}s",
        took.as_secs_f64()
    );
}

struct Run {
    cpu: Option<f64>,
    latencies: Vec<Duration>,
    elapsed: Duration,
    commits: u64,
}

/// `clients` loops sending a signature each to documents `{prefix}-{next}` until the time is
/// over or every waiting document has had its message.
async fn run(
    flowgate: &Flowgate,
    prefix: &str,
    waiting: u64,
    next: Arc<AtomicU64>,
    clients: usize,
    duration: Duration,
) -> Run {
    let stop = Instant::now() + duration;
    let started = Instant::now();
    let cpu_before = cpu::process_seconds(std::process::id());
    let commits_before = flowgate.write_totals().commits;
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (flowgate, next, prefix) = (flowgate.clone(), next.clone(), prefix.to_string());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < stop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= waiting {
                    break;
                }
                let message = Message {
                    id: format!("{prefix}-m{n}"),
                    name: "signature-received".into(),
                    correlation: format!("{prefix}-{n}"),
                    data: object(json!({"signed_by": "Dana Signer"})),
                    sent_by: "esign".into(),
                    process: None,
                };
                let t = Instant::now();
                let sent = flowgate
                    .send_message("acme", message)
                    .await
                    .unwrap_or_else(|e| panic!("message {n}: {e}"));
                latencies.push(t.elapsed());
                assert_eq!(
                    sent.record.instances().len(),
                    1,
                    "delivered to one instance"
                );
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
    Run {
        cpu: cpu_before.and_then(|b| Some(cpu_after? - b)),
        elapsed: started.elapsed(),
        commits: flowgate.write_totals().commits - commits_before,
        latencies,
    }
}

fn report(label: &str, clients: usize, r: &Run) {
    let secs = r.elapsed.as_secs_f64();
    let n = r.latencies.len().max(1) as f64;
    println!(
        "| {label:<20} | {clients:>3} | {:>9.0} | {:>6.2} | {:>7.2} | {:>7.2} | {:>6.0} |",
        r.latencies.len() as f64 / secs,
        r.commits as f64 / n,
        pct(&r.latencies, 50),
        pct(&r.latencies, 99),
        r.cpu.unwrap_or(0.0) / n * 1e6,
    );
}

async fn open(dir: &Path) -> (Flowgate, Arc<RedbStore>) {
    flowgate_tests::bench::example_engine(dir, "correlation.redb", Arc::new(Discard)).await
}

fn main() {
    let many = arg("--waiting", 1_000_000);
    let few = 100_000;
    let seconds = arg("--seconds", 5);
    let client_counts: Vec<usize> = match arg("--clients", 0) {
        0 => vec![1, 64],
        n => vec![n as usize],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (flowgate, store) = open(dir.path()).await;
        let template = template(&flowgate).await;
        assert_eq!(
            template.subscriptions.len(),
            1,
            "the template waits for its signature"
        );

        println!("| instances waiting | clients | messages/s | commits per message | p50 ms | p99 ms | CPU µs per message |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (prefix, count) in [("few", few), ("many", many)] {
            preload(&store, &template, prefix, count);
            let next = Arc::new(AtomicU64::new(0));
            for &clients in &client_counts {
                let r = run(&flowgate, prefix, count, next.clone(), clients, Duration::from_secs(seconds)).await;
                report(&count.to_string(), clients, &r);
            }
        }
    });
}
