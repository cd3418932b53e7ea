//! A guest that misbehaves on request, for the host's sandbox tests. The action name picks the
//! misbehaviour; `ok` behaves.

use std::hint::black_box;

use flowgate_plugin_sdk::{
    ActionOutput, ActionRequest, PluginError, RouteDecision, RouteRequest, Router, StepAction,
    config, log,
};

struct Misbehave;

flowgate_plugin_sdk::export!(Misbehave: step_action, router);

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the frames from being folded into a loop.
    black_box(depth) + recurse(black_box(depth + 1))
}

impl StepAction for Misbehave {
    fn run(request: ActionRequest) -> Result<ActionOutput, PluginError> {
        let data = |d: &str| {
            Ok(ActionOutput {
                data: d.to_string(),
                note: request.action.clone(),
            })
        };
        match request.action.as_str() {
            "ok" => data(r#"{"ok": true}"#),
            "echo-key" => ActionOutput::merge(
                &serde_json::json!({"key": request.idempotency.key, "attempt": request.idempotency.attempt}),
                "echo",
            ),
            "config" => {
                let values: serde_json::Map<String, serde_json::Value> = config::keys()
                    .into_iter()
                    .map(|k| {
                        let v = config::get(&k).unwrap_or_default();
                        (k, serde_json::Value::String(v))
                    })
                    .collect();
                ActionOutput::merge(&values, "config")
            }
            "log" => {
                for i in 0..10_000 {
                    log::info("line", &[("i", &i.to_string())]);
                }
                println!("to stdout");
                eprintln!("to stderr");
                data("{}")
            }
            "spin" => {
                let params: serde_json::Value = request.params_as()?;
                let iterations = params["iterations"].as_u64().unwrap_or(0);
                let mut n = 0u64;
                for _ in 0..iterations {
                    n = black_box(n.wrapping_add(1));
                }
                data(&format!(r#"{{"spun": {n}, "by": "misbehave"}}"#))
            }
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recurse" => {
                let depth = recurse(0);
                data(&format!(r#"{{"depth": {depth}}}"#))
            }
            "trap" => panic!("deliberate panic for the trap test"),
            "huge-output" => {
                let blob = "x".repeat(4 << 20);
                data(&format!(r#"{{"blob": "{blob}"}}"#))
            }
            "bad-json" => data("this is not json"),
            "not-object" => data("[1, 2, 3]"),
            "retryable" => Err(PluginError::Retryable("the ledger is busy".to_string())),
            "permanent" => Err(PluginError::Permanent("account closed".to_string())),
            other => Err(PluginError::InvalidInput(format!(
                "unknown action `{other}`"
            ))),
        }
    }
}

impl Router for Misbehave {
    fn route(request: RouteRequest) -> Result<RouteDecision, PluginError> {
        let wanted: serde_json::Value = request.context.data_as()?;
        let next = wanted["next"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RouteDecision {
            next,
            reason: "as asked".to_string(),
        })
    }
}
