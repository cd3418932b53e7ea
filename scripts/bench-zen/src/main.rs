//! The purchase-approval rules as one decision table, evaluated natively by zen-engine and by
//! flowgate-tables on the same requests: the time per evaluation, median of batches.
//!
//! Run: `scripts/bench-vs-zen.sh` (builds this in release and prints a Markdown table).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate_tables::{Decimal, Fact, Facts, Requirement, Source, Table, TableSpec, Value};
use serde_json::json;
use zen_engine::DecisionEngine;
use zen_engine::model::DecisionContent;

/// The same table for both engines: amount bands and the IT categories, collect policy.
const RULES: &[(&str, &str, &str)] = &[
    ("< 0", "", "reject"),
    ("[0..500)", "", "auto"),
    ("[500..5000)", "", "role:manager"),
    ("[5000..50000]", "", "role:director"),
    ("> 50000", "", "role:cfo"),
    ("", "\"it\", \"software\", \"hardware\"", "role:it-reviewer"),
];

const REQUESTS: &[(i64, &str)] = &[
    (120, "office"),
    (700, "it"),
    (7_000, "office"),
    (70_000, "hardware"),
];

fn zen_content() -> DecisionContent {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .enumerate()
        .map(|(i, (amount, category, approver))| {
            json!({"_id": format!("r{i}"), "in-amount": amount, "in-category": category,
                   "out-approver": format!("\"{approver}\"")})
        })
        .collect();
    let jdm = json!({
        "nodes": [
            {"id": "input", "name": "request", "type": "inputNode", "content": {}},
            {"id": "table", "name": "purchase", "type": "decisionTableNode", "content": {
                "hitPolicy": "collect",
                "inputs": [
                    {"id": "in-amount", "name": "Amount", "field": "amount"},
                    {"id": "in-category", "name": "Category", "field": "category"}
                ],
                "outputs": [{"id": "out-approver", "name": "Approver", "field": "approver"}],
                "rules": rules
            }},
            {"id": "output", "name": "decision", "type": "outputNode", "content": {}}
        ],
        "edges": [
            {"id": "e1", "sourceId": "input", "targetId": "table"},
            {"id": "e2", "sourceId": "table", "targetId": "output"}
        ]
    });
    match serde_json::from_value(jdm) {
        Ok(content) => content,
        Err(e) => panic!("JDM: {e}"),
    }
}

fn flowgate_spec() -> TableSpec {
    let rules: Vec<Vec<String>> = RULES
        .iter()
        .map(|(amount, category, approver)| {
            let cell = |s: &str| {
                if s.is_empty() {
                    "-".to_string()
                } else {
                    s.to_string()
                }
            };
            let (approver, reject) = match *approver {
                "reject" => (String::new(), "amount: must not be negative".to_string()),
                other => (other.to_string(), String::new()),
            };
            vec![cell(amount), cell(category), approver, reject]
        })
        .collect();
    let spec = json!({
        "hit": "collect",
        "inputs": [
            {"name": "amount", "from": "amount", "required": true},
            {"name": "category", "from": "category", "lowercase": true}
        ],
        "outputs": ["approver", "reject"],
        "rules": rules,
    });
    match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(e) => panic!("spec: {e}"),
    }
}

struct Request {
    amount: Decimal,
    category: String,
}

impl Facts for Request {
    fn value(&self, source: &Source) -> Result<Value, Fact> {
        match source {
            Source::Amount => Ok(Value::Number(self.amount)),
            Source::Category => Ok(Value::Text(self.category.clone())),
            _ => Err(Fact::Unavailable),
        }
    }
}

/// Per-evaluation time: the median of `batches` batches of `per_batch` evaluations.
fn measure(batches: usize, per_batch: usize, mut f: impl FnMut(usize)) -> Duration {
    for i in 0..per_batch {
        f(i);
    }
    let mut times: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for i in 0..per_batch {
                f(i);
            }
            start.elapsed() / per_batch as u32
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (batches, per_batch) = if quick { (5, 5_000) } else { (15, 50_000) };

    // zen-engine, its decision precompiled (its fastest path), on a current-thread runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    let mut content = zen_content();
    content.compile();
    let engine = DecisionEngine::default();
    let decision = engine.create_decision(Arc::new(content));
    let contexts: Vec<_> = REQUESTS
        .iter()
        .map(|(amount, category)| json!({"amount": amount, "category": category}).into())
        .collect::<Vec<zen_expression::variable::Variable>>();
    // Both engines must agree before their times mean anything.
    let zen_answers: Vec<String> = contexts
        .iter()
        .map(|c| {
            let response = runtime.block_on(decision.evaluate(c.clone()));
            match response {
                Ok(r) => r.result.to_value().to_string(),
                Err(e) => panic!("zen: {e:?}"),
            }
        })
        .collect();
    let zen = runtime.block_on(async {
        measure(batches, per_batch, |i| {
            let context = contexts[i % contexts.len()].clone();
            let fut = decision.evaluate(context);
            // A decision table has no awaits that park: poll it to completion in place.
            black_box(poll_to_end(fut).ok());
        })
    });

    let spec = flowgate_spec();
    let table = match Table::compile(&spec) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let requests: Vec<Request> = REQUESTS
        .iter()
        .map(|(amount, category)| Request {
            amount: Decimal::from(*amount),
            category: category.to_string(),
        })
        .collect();
    for (request, zen_answer) in requests.iter().zip(&zen_answers) {
        let request: &Request = request;
        let ours = match table.approve(request) {
            Ok(a) => a.requirement,
            Err(e) => panic!("{e}"),
        };
        let ours: Vec<String> = match &ours {
            Requirement::Auto => vec![],
            Requirement::Stages(_, stages) => stages
                .iter()
                .flat_map(|s| &s.approvers)
                .map(|a| match a {
                    flowgate_tables::Approver::Role(r) => format!("role:{r}"),
                    flowgate_tables::Approver::Person(p) => format!("person:{p}"),
                })
                .collect(),
        };
        let zen: serde_json::Value = serde_json::from_str(zen_answer).unwrap_or_default();
        let theirs: Vec<String> = zen
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["approver"].as_str())
            .filter(|a| *a != "auto")
            .map(str::to_string)
            .collect();
        assert_eq!(ours, theirs, "{} {}", request.amount, request.category);
    }
    let compiled = measure(batches, per_batch, |i| {
        black_box(table.approve(&requests[i % requests.len()]).ok());
    });
    let json = match serde_json::to_string(&spec) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    // What the plugin does on every call: read the table's JSON, check it, evaluate.
    let per_call = measure(batches, per_batch / 10, |i| {
        let spec: TableSpec = match serde_json::from_str(&json) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let table = Table::compile(&spec).ok();
        black_box(table.and_then(|t| t.approve(&requests[i % requests.len()]).ok()));
    });

    println!("| evaluation of the purchase table, natively | us per evaluation |");
    println!("|---|---:|");
    println!(
        "| zen-engine {} (precompiled decision) | {:.2} |",
        env!("ZEN_VERSION"),
        us(zen)
    );
    println!(
        "| flowgate-tables, table checked once | {:.2} |",
        us(compiled)
    );
    println!(
        "| flowgate-tables, JSON read and table checked every call (as the plugin does) | {:.2} |",
        us(per_call)
    );
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// Polls a future that never parks to completion.
fn poll_to_end<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
