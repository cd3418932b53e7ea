//! Property-based fuzzing with proptest (stable Rust, shrinking to a smallest failing input), run
//! for a bounded number of cases in every test run (`FLOWGATE_FUZZ_CASES`, default 128; raise it
//! for a longer hunt):
//!
//! - definitions: every example workflow mutated line by line (TOML) and leaf by leaf (JSON), and
//!   definitions generated from the step kinds with references among random ids, go through
//!   parsing, validation, deploying and a start; nothing panics, a refusal names the file and
//!   what is wrong, and what validates deploys and starts or is refused as input;
//! - request bodies: any JSON data to a start and to a task's completion is taken or refused with
//!   the field named, and a refusal leaves the instance as it was;
//! - the store's commit: random batches on redb and on the in-memory model answer alike (the
//!   store model, from a seed proptest picks).

use std::sync::{Arc, OnceLock};

use flowgate::definition::DefinitionError;
use flowgate::engine::{CommandError, Person};
use flowgate::service::{Flowgate, ManualClock, ServiceError};
use flowgate::store::MemStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::scenarios::T0;

/// Cases per property.
fn cases() -> u32 {
    std::env::var("FLOWGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Failures are reported with their shrunk input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

/// One engine for every case: the example tenant on the in-memory store.
fn engine() -> &'static (tokio::runtime::Runtime, Flowgate) {
    static ENGINE: OnceLock<(tokio::runtime::Runtime, Flowgate)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let flowgate = runtime.block_on(crate::common::acme_on(
            Arc::new(MemStore::new()),
            Arc::new(ManualClock::new(T0)),
        ));
        (runtime, flowgate)
    })
}

/// The example workflows' sources.
fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// What a refused definition must say: its file, and for each problem where and what.
fn check_refusal(file: &str, error: &ServiceError) -> Result<(), TestCaseError> {
    match error {
        ServiceError::Definition(DefinitionError::Parse { file: f, message }) => {
            prop_assert_eq!(f, file);
            prop_assert!(!message.trim().is_empty());
        }
        ServiceError::Definition(DefinitionError::Invalid { file: f, problems }) => {
            prop_assert_eq!(f, file);
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?}");
            }
        }
        other => prop_assert!(false, "a definition refused as {other:?}"),
    }
    Ok(())
}

/// Validates `source` under a fresh id; what validates is deployed and started with `data`.
fn deploy_and_start(
    file: &str,
    source: &str,
    data: &Map<String, Value>,
) -> Result<(), TestCaseError> {
    let (runtime, flowgate) = engine();
    match flowgate.validate("acme", file, source) {
        Err(error) => check_refusal(file, &error),
        Ok(def) => {
            let id = def.id.clone();
            let deployed = runtime.block_on(flowgate.deploy("acme", file, source));
            prop_assert!(deployed.is_ok(), "validated, then refused: {deployed:?}");
            let started = runtime.block_on(flowgate.start("acme", &id, data.clone(), "fuzz", None));
            if let Err(error) = started {
                prop_assert!(
                    matches!(
                        error,
                        ServiceError::Invalid { .. }
                            | ServiceError::Command(CommandError::Invalid { .. })
                    ),
                    "a start refused as {error:?}"
                );
            }
            Ok(())
        }
    }
}

/// A line-level mutation of a TOML source.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    /// The value after `=` replaced.
    Value(usize, String),
    Insert(usize, String),
    Swap(usize, usize),
    /// The value of one line given to another (another step's id, a number where text was).
    Borrow(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        "[ -~]{0,16}",
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("\"missing-step\"".to_string()),
        Just("[[steps]]".to_string()),
        Just("\"\u{1F600}\u{0}\"".to_string()),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), text.clone()).prop_map(|(l, t)| Edit::Value(l, t)),
        (any::<usize>(), text).prop_map(|(l, t)| Edit::Insert(l, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Borrow(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Borrow(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Borrow(a, b)),
    ]
}

fn apply(source: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        let at = |n: usize| n % lines.len();
        match edit {
            Edit::Delete(n) => {
                lines.remove(at(*n));
            }
            Edit::Duplicate(n) => {
                let line = lines[at(*n)].clone();
                lines.insert(at(*n), line);
            }
            Edit::Value(n, text) => {
                let i = at(*n);
                if let Some((key, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{key}= {text}");
                }
            }
            Edit::Insert(n, text) => lines.insert(at(*n), text.clone()),
            Edit::Swap(a, b) => {
                let (a, b) = (at(*a), at(*b));
                lines.swap(a, b);
            }
            Edit::Borrow(to, from) => {
                let (to, from) = (at(*to), at(*from));
                let value = lines[from].split_once('=').map(|(_, v)| v.to_string());
                if let (Some(value), Some((key, _))) = (value, lines[to].clone().split_once('=')) {
                    lines[to] = format!("{key}={value}");
                }
            }
        }
    }
    lines.join("\n")
}

/// A fresh workflow id for each case, so that deploys do not make versions of one another.
fn fresh_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("fuzz-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Replaces the `id = "..."` at the top with a fresh one.
fn renamed(source: &str) -> String {
    let id = fresh_id();
    let mut done = false;
    source
        .lines()
        .map(|line| {
            if !done && line.starts_with("id = ") {
                done = true;
                format!("id = \"{id}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn any_mutation_of_an_example_definition_deploys_or_is_refused_naming_the_problem() {
    let sources = examples();
    let strategy = (0..sources.len(), prop::collection::vec(edit(), 1..6));
    runner(cases())
        .run(&strategy, |(which, edits)| {
            let source = renamed(&apply(&sources[which], &edits));
            deploy_and_start("fuzz.toml", &source, &Map::new())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "approval",
            "task",
            "end",
            "wait",
            "parallel",
            "join",
            "route",
            "action",
            "subworkflow",
            "receive",
            "all",
            "any",
            "quorum",
            "purchase-approval",
            "manager",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the leaf at `pick` (in document order, modulo their number) with `with`.
fn replace_leaf(value: &mut Value, pick: &mut usize, with: &Value) -> bool {
    match value {
        Value::Object(map) => map.values_mut().any(|v| replace_leaf(v, pick, with)),
        Value::Array(items) => items.iter_mut().any(|v| replace_leaf(v, pick, with)),
        leaf => {
            if *pick == 0 {
                *leaf = with.clone();
                true
            } else {
                *pick -= 1;
                false
            }
        }
    }
}

#[test]
fn any_json_definition_near_the_examples_deploys_or_is_refused_naming_the_problem() {
    let sources: Vec<Value> = examples()
        .iter()
        .map(|s| {
            let value: toml::Value = toml::from_str(s).unwrap_or_else(|e| panic!("{e}"));
            serde_json::to_value(value).unwrap_or_default()
        })
        .collect();
    // A leaf replaced by another leaf of the same document (mostly: the shapes stay plausible)
    // or by any JSON value.
    let replacement = prop_oneof![
        3 => any::<usize>().prop_map(Err),
        1 => json_value().prop_map(Ok),
    ];
    let strategy = (
        0..sources.len(),
        prop::collection::vec((any::<usize>(), replacement), 1..4),
    );
    runner(cases())
        .run(&strategy, |(which, replacements)| {
            let mut def = sources[which].clone();
            for (pick, with) in &replacements {
                let leaves = count_leaves(&def).max(1);
                let with = match with {
                    Ok(value) => value.clone(),
                    Err(other) => nth_leaf(&def, other % leaves).unwrap_or(Value::Null),
                };
                replace_leaf(&mut def, &mut (pick % leaves), &with);
            }
            if let Some(map) = def.as_object_mut() {
                map.insert("id".into(), Value::String(fresh_id()));
            }
            deploy_and_start("fuzz.json", &def.to_string(), &Map::new())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn nth_leaf(value: &Value, n: usize) -> Option<Value> {
    let mut leaves = Vec::new();
    collect_leaves(value, &mut leaves);
    leaves.get(n).cloned()
}

fn collect_leaves(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => map.values().for_each(|v| collect_leaves(v, out)),
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        leaf => out.push(leaf.clone()),
    }
}

fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(count_leaves).sum(),
        Value::Array(items) => items.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

/// A step of a generated definition: a kind and references among the ids `s0`..`s5`.
fn step() -> impl Strategy<Value = Value> {
    let id = (0..6u8).prop_map(|n| format!("s{n}"));
    let ids = prop::collection::vec(id.clone(), 0..4);
    (
        prop::sample::select(vec![
            "task",
            "approval",
            "action",
            "route",
            "wait",
            "parallel",
            "join",
            "end",
            "subworkflow",
            "receive",
        ]),
        id.clone(),
        ids,
        any::<u8>(),
    )
        .prop_map(|(kind, next, branches, n)| {
            let mut step = json!({"kind": kind});
            let next = Value::String(next);
            match kind {
                "task" => {
                    step["role"] = json!("clerk");
                    step["next"] = next;
                    if n % 3 == 0 {
                        step["form"] = json!([{"name": "x", "type": "integer", "required": true}]);
                    }
                }
                "approval" => {
                    step["approvers"] = json!([{"name": "m", "roles": ["manager"]}]);
                    let reject = branches.first().cloned().unwrap_or_else(|| "s0".into());
                    step["on"] = json!({"approve": next, "reject": reject});
                }
                "action" => {
                    step["plugin"] = json!("expense-reimbursement");
                    step["action"] = json!("compute");
                    step["next"] = next;
                }
                "route" => {
                    step["plugin"] = json!("ticket-routing");
                    step["candidates"] = json!(branches);
                }
                "wait" => {
                    step["duration"] = json!(format!("{}m", n));
                    step["next"] = next;
                }
                "parallel" => {
                    step["branches"] = json!(branches);
                    step["join"] = next;
                }
                "join" => {
                    step["mode"] = json!(["all", "any", "quorum"][usize::from(n % 3)]);
                    if n % 3 == 2 {
                        step["required"] = json!(n % 4);
                    }
                    step["next"] = next;
                }
                "subworkflow" => {
                    step["workflow"] = json!("background-check");
                    step["next"] = next;
                }
                "receive" => {
                    step["message"] = json!("m");
                    step["correlate"] = json!("k");
                    step["next"] = next;
                }
                _ => {}
            }
            step
        })
}

#[test]
fn generated_definitions_of_every_step_kind_deploy_and_start_or_are_refused() {
    let strategy = (
        prop::collection::vec(step(), 1..7),
        prop::collection::btree_map("[a-z]{1,3}", json_value(), 0..3),
    );
    runner(cases())
        .run(&strategy, |(steps, data)| {
            // Half the steps lead to the one after them and the last ends, so that many
            // definitions are valid and get run; the others point anywhere.
            let last = steps.len() - 1;
            let steps: Vec<Value> = steps
                .into_iter()
                .enumerate()
                .map(|(i, mut s)| {
                    s["id"] = json!(format!("s{i}"));
                    if i == last && i % 2 == 0 {
                        s = json!({"id": format!("s{i}"), "kind": "end"});
                    } else if i % 2 == 0 && s.get("next").is_some() {
                        s["next"] = json!(format!("s{}", i + 1));
                    }
                    s
                })
                .collect();
            let def = json!({"id": fresh_id(), "start": "s0", "steps": steps});
            let data: Map<String, Value> = data.into_iter().collect();
            deploy_and_start("fuzz.json", &def.to_string(), &data)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn any_data_to_a_start_and_a_completion_is_taken_or_refused_naming_the_field() {
    let (runtime, flowgate) = engine();
    let data = || prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..5);
    let fields = prop::sample::select(vec![
        "amount_cents",
        "currency",
        "category",
        "requester",
        "po_number",
    ]);
    let strategy = (
        data(),
        prop::collection::vec((fields, json_value()), 0..4),
        data(),
    );
    runner(cases())
        .run(&strategy, |(random, typed, completion)| {
            // Random fields, and the purchase's own fields with values of any type.
            let mut start: Map<String, Value> = random.into_iter().collect();
            for (field, value) in typed {
                start.insert(field.to_string(), value);
            }
            let started =
                runtime.block_on(flowgate.start("acme", "purchase-request", start, "fuzz", None));
            let started = match started {
                Ok(started) => started,
                Err(error) => {
                    let named = match &error {
                        ServiceError::Invalid { field, .. } => !field.is_empty(),
                        ServiceError::Command(CommandError::Invalid { field, .. }) => {
                            !field.is_empty()
                        }
                        _ => false,
                    };
                    prop_assert!(named, "a start refused as {error:?}");
                    return Ok(());
                }
            };
            let Some(task) = started.open_tasks().next().map(|t| t.id.clone()) else {
                return Ok(());
            };
            let before = flowgate
                .instance("acme", &started.id)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let outcome = ["approve", "reject", "other"][completion.len() % 3];
            let done = runtime.block_on(flowgate.complete_task(
                "acme",
                &task,
                Person::new("mia", &["manager", "director", "it"]),
                Some(outcome.into()),
                completion.into_iter().collect(),
            ));
            if let Err(error) = done {
                prop_assert!(
                    matches!(
                        error,
                        ServiceError::Invalid { .. }
                            | ServiceError::Command(
                                CommandError::Invalid { .. } | CommandError::Forbidden(_)
                            )
                    ),
                    "a completion refused as {error:?}"
                );
                let after = flowgate
                    .instance("acme", &started.id)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    after.version,
                    before.version,
                    "a refusal changed the instance"
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn random_commits_on_redb_answer_like_the_model_from_any_seed() {
    runner(cases().div_ceil(32))
        .run(&any::<u64>(), |seed| {
            crate::store_model::compare_after_random_batches(seed, 60);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
