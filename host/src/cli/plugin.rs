//! `flowgate plugin inspect|eval`: look inside a component and call it once, outside any workflow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Run a component against a folder of JSON fixtures (request, tenant settings, expected
    /// decision or refusal); fails naming each difference.
    Test(TestArgs),
    /// Create a plugin crate that builds as it is: the SDK, the small-stack flag, a unit test,
    /// a fixture and a README.
    New(NewArgs),
    /// Run a candidate version on the decisions a running daemon recorded (`--url`, and an
    /// administrator's `--token`), and print where it decides otherwise; nothing is made current.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The plugin's name in the tenant.
    pub name: String,
    /// The candidate component (`.wasm`).
    pub wasm: PathBuf,
    /// The newest this many recorded calls (default 100).
    #[arg(long)]
    pub last: Option<u32>,
    /// Only calls from this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only calls made at or after this RFC 3339 date-time.
    #[arg(long)]
    pub since: Option<String>,
    /// Exit non-zero when the candidate decides any call otherwise, or fails on one.
    #[arg(long)]
    pub expect_same: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The plugin's name (and its crate's): lowercase letters, digits and `-`.
    name: String,
    #[arg(long, value_parser = parse_capability)]
    capability: Capability,
    /// The folder to create it in (default: the current one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Flowgate's plugin SDK (`plugins/sdk` of Flowgate's source); by default the one this
    /// `flowgate` was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The component (`.wasm`).
    wasm: PathBuf,
    /// The folder of fixtures (`*.json`).
    fixtures: PathBuf,
    /// Compiled-component cache directory.
    #[arg(long, env = "FLOWGATE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
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
    /// A decision table for the decision-table plugin, as in `[plugins.<name>.table]`: a TOML
    /// or JSON file (its `rules_file` relative to it), checked, then passed as `table`.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Fuel per call (default: the tenant default, 11,000,000).
    #[arg(long)]
    fuel: Option<u64>,
    /// Grant the wall and monotonic clocks.
    #[arg(long)]
    grant_clocks: bool,
    /// Grant random numbers.
    #[arg(long)]
    grant_random: bool,
    /// Grant outbound HTTP to this host, as in `grants.http.allowed_hosts`
    /// (`https://crm.example.com`); repeatable.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Time for the call in milliseconds (default 100; a call that waits on HTTP needs more).
    #[arg(long)]
    timeout: Option<u64>,
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
        PluginCommand::Test(args) => test(args),
        PluginCommand::New(args) => new(args),
        PluginCommand::Replay(_) => anyhow::bail!(
            "`plugin replay` runs against a daemon's recorded calls: give --url and an administrator's --token"
        ),
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
            http: Some(crate::plugin::HttpGrant::allowing(&[
                "https://inspect.invalid",
            ])),
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
    let mut limits = limits_with(args.fuel);
    if let Some(ms) = args.timeout {
        limits.timeout = std::time::Duration::from_millis(ms);
    }
    let budget = limits.fuel;
    let refs: Vec<&str> = args.allow_hosts.iter().map(String::as_str).collect();
    let http = (!refs.is_empty()).then(|| crate::plugin::HttpGrant::allowing(&refs));
    let mut config = args.config.into_iter().collect::<BTreeMap<_, _>>();
    if let Some(path) = &args.table {
        config.insert(crate::tenant::TABLE_KEY.to_string(), table_json(path)?);
    }
    let settings = PluginSettings {
        limits,
        config,
        grants: Grants {
            clocks: args.grant_clocks,
            random: args.grant_random,
            http,
            ..Grants::default()
        },
    };
    let runtime = runtime(args.cache_dir)?;
    let plugin = runtime.load(plugin_id(&args.wasm), &read(&args.wasm)?, settings)?;
    let called = call(&plugin, args.capability, input)?;
    let report = serde_json::json!({
        "plugin": plugin.sha256(),
        "capability": args.capability,
        "result": called.value,
        "fuel_consumed": called.fuel,
        "fuel_budget": budget,
        // How close the call came to the cap that would stop it.
        "fuel_share": called.fuel as f64 / budget.max(1) as f64,
        "elapsed_us": called.elapsed.as_micros() as u64,
        "logs": called.logs,
    });
    print_json(&report)
}

/// A decision table file (TOML or JSON), checked, as the JSON the plugin reads.
fn table_json(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut spec: flowgate_tables::TableSpec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    crate::tenant::check_table(&mut spec, base)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(serde_json::to_string(&spec)?)
}

/// The default limits, with `fuel` per call if one is given.
fn limits_with(fuel: Option<u64>) -> crate::plugin::PluginLimits {
    let defaults = crate::plugin::PluginLimits::default();
    crate::plugin::PluginLimits {
        fuel: fuel.unwrap_or(defaults.fuel),
        ..defaults
    }
}

fn plugin_id(wasm: &Path) -> PluginId {
    let name = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    PluginId::new("cli", name)
}

/// What one call gave.
struct Called {
    /// The decision or the action's output, in the API's JSON shape.
    value: serde_json::Value,
    fuel: u64,
    elapsed: std::time::Duration,
    logs: Vec<String>,
}

/// Calls `capability` of `plugin` once with `input`, as a step of a test instance would.
fn call(
    plugin: &crate::plugin::LoadedPlugin,
    capability: Capability,
    input: EvalInput,
) -> Result<Called, crate::plugin::PluginError> {
    let context = StepContext {
        tenant: "cli".to_string(),
        definition_id: "cli".to_string(),
        definition_version: 1,
        instance_id: "cli-1".to_string(),
        step_id: "eval".to_string(),
        data: input.data.to_string(),
    };
    let lines = |logs: &[crate::plugin::LogLine]| logs.iter().map(|l| l.message.clone()).collect();
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    Ok(match capability {
        Capability::Router => {
            let request = RouteRequest {
                context,
                candidates: input.candidates,
            };
            let c = plugin.route(&request)?;
            Called {
                value: json(serde_json::to_value(&c.value)),
                fuel: c.fuel_consumed,
                elapsed: c.elapsed,
                logs: lines(&c.logs),
            }
        }
        Capability::ApprovalPolicy => {
            let request = ApprovalRequest {
                context,
                amount: input.amount,
                category: input.category,
                requester: input.requester,
            };
            let c = plugin.evaluate_approval(&request)?;
            let by = crate::engine::PluginRef {
                name: plugin.id().name.clone(),
                sha256: plugin.sha256().to_string(),
            };
            // The decision in the API's shape, as an instance's history shows it (the version
            // is the report's `plugin`).
            let decision = crate::service::requirement(c.value, by);
            let mut value = json(serde_json::to_value(&decision));
            if let Some(fields) = value.as_object_mut() {
                fields.remove("plugin");
            }
            Called {
                value,
                fuel: c.fuel_consumed,
                elapsed: c.elapsed,
                logs: lines(&c.logs),
            }
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
            Called {
                value: serde_json::json!({"data": c.value.data, "note": c.value.note}),
                fuel: c.fuel_consumed,
                elapsed: c.elapsed,
                logs: lines(&c.logs),
            }
        }
    })
}

/// One fixture of `plugin test`: a request, the tenant's settings for the plugin, and what the
/// call must give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// `router`, `approval-policy` or `step-action`.
    capability: String,
    /// The request, as `plugin eval` reads it.
    input: EvalInput,
    /// The tenant's configuration values for the plugin.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Fuel per call (default: the tenant default).
    fuel: Option<u64>,
    /// The decision (or action output) expected, in the JSON `plugin eval` prints as `result`.
    expect: Option<serde_json::Value>,
    /// Or: a refusal whose message contains this.
    expect_error: Option<String>,
}

/// Runs the component against every `*.json` fixture of the folder, in name order: prints a
/// report, and each mismatch field by field on stderr; fails when any fixture does.
fn test(args: TestArgs) -> anyhow::Result<()> {
    let wasm = read(&args.wasm)?;
    let runtime = runtime(args.cache_dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.fixtures)
        .with_context(|| format!("cannot read {}", args.fixtures.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "{} has no .json fixtures",
        args.fixtures.display()
    );
    let (mut rows, mut failed, mut sha) = (Vec::new(), 0, String::new());
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let fixture: Fixture = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a fixture", file.display()))?;
        let capability = parse_capability(&fixture.capability)
            .map_err(|e| anyhow::anyhow!("{}: capability: {e}", file.display()))?;
        anyhow::ensure!(
            fixture.expect.is_some() != fixture.expect_error.is_some(),
            "{}: give `expect` (a decision) or `expect_error` (part of a refusal), one of them",
            file.display()
        );
        let limits = limits_with(fixture.fuel);
        let budget = limits.fuel;
        let settings = PluginSettings {
            limits,
            config: fixture.config,
            grants: Grants::default(),
        };
        let plugin = runtime.load(plugin_id(&args.wasm), &wasm, settings)?;
        sha = plugin.sha256().to_string();
        let outcome = call(&plugin, capability, fixture.input);
        let expected = fixture.expect.unwrap_or_default();
        let (problems, fuel) = match (&outcome, &fixture.expect_error) {
            (Ok(called), None) => {
                let mut found = Vec::new();
                differences("result", &expected, &called.value, &mut found);
                (found, Some(called.fuel))
            }
            (Ok(called), Some(part)) => (
                vec![format!(
                    "expected a refusal containing {part:?}, got {}",
                    called.value
                )],
                Some(called.fuel),
            ),
            (Err(error), Some(part)) if error.to_string().contains(part.as_str()) => {
                (Vec::new(), None)
            }
            (Err(error), _) => (vec![format!("refused: {error}")], None),
        };
        if !problems.is_empty() {
            failed += 1;
            eprintln!("FAIL {name}");
            for p in &problems {
                eprintln!("  {p}");
            }
        }
        rows.push(serde_json::json!({
            "fixture": name,
            "passed": problems.is_empty(),
            "problems": problems,
            "fuel_consumed": fuel,
            "fuel_budget": budget,
            "fuel_share": fuel.map(|f| f as f64 / budget.max(1) as f64),
        }));
    }
    print_json(&serde_json::json!({
        "plugin": sha,
        "passed": files.len() - failed,
        "failed": failed,
        "fixtures": rows,
    }))?;
    anyhow::ensure!(failed == 0, "{failed} of {} fixtures failed", files.len());
    Ok(())
}

/// Where `actual` differs from `expected`, path by path (`result.requirement.stages[0]`).
fn differences(
    path: &str,
    expected: &serde_json::Value,
    actual: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                match a.get(key) {
                    Some(found) => differences(&format!("{path}.{key}"), value, found, out),
                    None => out.push(format!("{path}.{key}: expected {value}, missing")),
                }
            }
            for (key, value) in a {
                if !e.contains_key(key) {
                    out.push(format!("{path}.{key}: not expected, got {value}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: expected {e}, got {a}")),
    }
}

/// Creates `<dir>/<name>/`, a plugin crate for `capability` that builds, tests and runs as it is.
fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(
        valid,
        "`{name}` is not a plugin name: lowercase letters, digits and `-`, starting with a letter"
    );
    let sdk = match args.sdk {
        Some(path) => path,
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk")),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the plugin SDK is not at {}: pass --sdk <path to Flowgate's plugins/sdk>",
            sdk.display()
        )
    })?;
    anyhow::ensure!(
        sdk.join("Cargo.toml").is_file(),
        "{} is not the plugin SDK (no Cargo.toml): pass --sdk <path to Flowgate's plugins/sdk>",
        sdk.display()
    );
    let root = args.dir.join(name);
    anyhow::ensure!(
        !root.exists(),
        "{} exists already: choose another name or folder",
        root.display()
    );
    let (code, fixture) = match args.capability {
        Capability::ApprovalPolicy => (
            include_str!("new_plugin/approval-policy.rs.txt"),
            include_str!("new_plugin/approval-policy.json.txt"),
        ),
        Capability::Router => (
            include_str!("new_plugin/router.rs.txt"),
            include_str!("new_plugin/router.json.txt"),
        ),
        Capability::StepAction => (
            include_str!("new_plugin/step-action.rs.txt"),
            include_str!("new_plugin/step-action.json.txt"),
        ),
    };
    let capability = args.capability.to_string();
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{file}", &name.replace('-', "_"))
            .replace("{capability}", &capability)
            .replace("{sdk}", &sdk.display().to_string())
    };
    let files = [
        (
            "Cargo.toml",
            fill(include_str!("new_plugin/Cargo.toml.txt")),
        ),
        (
            ".cargo/config.toml",
            fill(include_str!("new_plugin/config.toml.txt")),
        ),
        ("src/lib.rs", fill(code)),
        ("fixtures/example.json", fill(fixture)),
        ("README.md", fill(include_str!("new_plugin/README.md.txt"))),
        (".gitignore", "/target\n".to_string()),
    ];
    for (path, text) in &files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_json(&serde_json::json!({
        "created": root.display().to_string(),
        "capability": capability,
        "sdk": sdk.display().to_string(),
        "component": format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
        "files": files.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
    }))
}
