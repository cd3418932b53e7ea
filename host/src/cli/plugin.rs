//! `flowgate plugin inspect|eval`: look inside a component and call it once, outside any workflow.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::print_json;
use crate::plugin::types::{
    ActionRequest, ApprovalRequest, IdempotencyKey, Money, RouteRequest, StepContext,
};
use crate::plugin::{Capability, Grants, PluginId, PluginRuntime, PluginSettings, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Print a component's version hash, capabilities and imports.
    Inspect {
        /// The component (`.wasm`).
        wasm: PathBuf,
    },
    /// Call a component once with a request read from a JSON file.
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The component (`.wasm`).
    wasm: PathBuf,
    /// Which capability to call.
    #[arg(long, value_parser = parse_capability)]
    capability: Capability,
    /// The request: `{"data": {...}, "amount": {"currency": "USD", "minor_units": 120000},
    /// "category": "...", "requester": "...", "candidates": [...], "action": "...", "params": {...}}`.
    #[arg(long)]
    input: PathBuf,
    /// A configuration value for the plugin, `key=value`; repeatable.
    #[arg(long = "config", value_parser = parse_pair)]
    config: Vec<(String, String)>,
    /// Fuel per call (default: the tenant default, 11,000,000).
    #[arg(long)]
    fuel: Option<u64>,
    /// Grant the wall and monotonic clocks.
    #[arg(long)]
    grant_clocks: bool,
    /// Grant random numbers.
    #[arg(long)]
    grant_random: bool,
    /// Compiled-component cache directory.
    #[arg(long, env = "FLOWGATE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_capability(s: &str) -> Result<Capability, String> {
    match s {
        "router" => Ok(Capability::Router),
        "approval-policy" => Ok(Capability::ApprovalPolicy),
        "step-action" => Ok(Capability::StepAction),
        other => Err(format!(
            "`{other}` is not a capability; use router, approval-policy or step-action"
        )),
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// The request file's shape: one file can serve every capability.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalInput {
    #[serde(default)]
    data: serde_json::Value,
    amount: Option<Money>,
    #[serde(default)]
    category: String,
    #[serde(default)]
    requester: String,
    #[serde(default)]
    candidates: Vec<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    params: serde_json::Value,
}

pub(crate) fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Inspect { wasm } => inspect(wasm),
        PluginCommand::Eval(args) => eval(args),
    }
}

fn runtime(cache_dir: Option<PathBuf>) -> anyhow::Result<PluginRuntime> {
    let config = RuntimeConfig {
        cache_dir,
        pool_slots: None,
        ..RuntimeConfig::default()
    };
    Ok(PluginRuntime::new(config)?)
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn inspect(wasm: PathBuf) -> anyhow::Result<()> {
    let runtime = runtime(None)?;
    let everything = PluginSettings {
        grants: Grants {
            clocks: true,
            random: true,
            ..Grants::default()
        },
        ..PluginSettings::default()
    };
    let id = PluginId::new("inspect", wasm.display().to_string());
    let loaded = runtime.load(id, &read(&wasm)?, everything)?;
    let report = serde_json::json!({
        "sha256": loaded.sha256(),
        "capabilities": loaded.capabilities(),
        "imports": loaded.imports(),
    });
    print_json(&report)
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let input: EvalInput = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid request", args.input.display()))?;
    let mut limits = crate::plugin::PluginLimits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    let budget = limits.fuel;
    let settings = PluginSettings {
        limits,
        config: args.config.into_iter().collect::<BTreeMap<_, _>>(),
        grants: Grants {
            clocks: args.grant_clocks,
            random: args.grant_random,
            ..Grants::default()
        },
    };
    let runtime = runtime(args.cache_dir)?;
    let name = args
        .wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let plugin = runtime.load(PluginId::new("cli", name), &read(&args.wasm)?, settings)?;

    let context = StepContext {
        tenant: "cli".to_string(),
        definition_id: "cli".to_string(),
        definition_version: 1,
        instance_id: "cli-1".to_string(),
        step_id: "eval".to_string(),
        data: input.data.to_string(),
    };
    let (value, fuel, elapsed, logs) = match args.capability {
        Capability::Router => {
            let request = RouteRequest {
                context,
                candidates: input.candidates,
            };
            let c = plugin.route(&request)?;
            (
                serde_json::to_value(&c.value)?,
                c.fuel_consumed,
                c.elapsed,
                c.logs,
            )
        }
        Capability::ApprovalPolicy => {
            let request = ApprovalRequest {
                context,
                amount: input.amount,
                category: input.category,
                requester: input.requester,
            };
            let c = plugin.evaluate_approval(&request)?;
            (
                serde_json::to_value(&c.value)?,
                c.fuel_consumed,
                c.elapsed,
                c.logs,
            )
        }
        Capability::StepAction => {
            let request = ActionRequest {
                context,
                action: input.action,
                params: input.params.to_string(),
                idempotency: IdempotencyKey {
                    key: "cli-1/eval/1/1".to_string(),
                    instance_id: "cli-1".to_string(),
                    step_id: "eval".to_string(),
                    attempt: 1,
                },
            };
            let c = plugin.run_action(&request)?;
            let out = serde_json::json!({"data": c.value.data, "note": c.value.note});
            (out, c.fuel_consumed, c.elapsed, c.logs)
        }
    };
    let report = serde_json::json!({
        "plugin": plugin.sha256(),
        "capability": args.capability,
        "result": value,
        "fuel_consumed": fuel,
        "fuel_budget": budget,
        // How close the call came to the cap that would stop it.
        "fuel_share": fuel as f64 / budget.max(1) as f64,
        "elapsed_us": elapsed.as_micros() as u64,
        "logs": logs.iter().map(|l| &l.message).collect::<Vec<_>>(),
    });
    print_json(&report)
}
