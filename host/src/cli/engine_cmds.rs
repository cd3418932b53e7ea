//! `flowgate workflow|instance|task|incident|tick`: the engine over a local data file (or, with
//! `--url`, a running daemon's API: see `remote`).

use clap::Subcommand;
use serde_json::json;

use super::local::{LocalArgs, json_object};
use super::print_json;
use crate::engine::{Person, Resolution};
use crate::service::Completion;
use crate::store::{Inbox, InstanceFilter};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Check a definition against the tenant without deploying it.
    Validate { file: std::path::PathBuf },
    /// Deploy a definition; a changed one becomes a new version.
    Deploy { file: std::path::PathBuf },
    /// List the tenant's definitions and versions.
    List,
    /// Move running instances of one version to another: `--dry-run` lists, per instance,
    /// whether it can move and why not.
    Migrate {
        workflow: String,
        #[arg(long = "from")]
        from_version: u32,
        #[arg(long = "to")]
        to_version: u32,
        /// Where a step goes when not to the step of the same id: `old=new`; repeatable.
        #[arg(long = "map", value_parser = pair)]
        steps: Vec<(String, String)>,
        /// Pin a plugin to a loaded version: `name=sha256`; repeatable.
        #[arg(long = "plugin", value_parser = pair)]
        plugins: Vec<(String, String)>,
        /// Only this instance; repeatable (otherwise every running instance of `--from`).
        #[arg(long = "instance")]
        instances: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
    },
}

/// `key=value`, as `--map` and `--plugin` take them.
fn pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not `key=value`")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum InstanceCommand {
    /// Start an instance of the latest version of a workflow.
    Start {
        workflow: String,
        /// The instance data: a JSON object, or @file.json.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Who starts it.
        #[arg(long, default_value = "cli")]
        by: String,
        /// An idempotency key: starting again with it returns the same instance.
        #[arg(long)]
        key: Option<String>,
    },
    /// Show an instance and its history.
    Show { id: String },
    /// List instances.
    List {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Cancel an instance.
    Cancel {
        id: String,
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Pause an instance: what arrives is held, and people's commands refused, until resumed.
    Pause {
        id: String,
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Resume a paused instance: what was held is applied, in order.
    Resume {
        id: String,
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// Open tasks of a person or a role.
    List {
        #[arg(long, conflicts_with = "role", required_unless_present = "role")]
        person: Option<String>,
        #[arg(long)]
        role: Option<String>,
    },
    /// Claim a task.
    Claim {
        task: String,
        #[arg(long)]
        by: String,
        /// A role `by` holds; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Complete a task with an outcome and form data.
    Complete {
        task: String,
        #[arg(long)]
        by: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        outcome: Option<String>,
        /// Form data: a JSON object, or @file.json.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Why, kept in the history.
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IncidentCommand {
    /// The running instances' incidents.
    List,
    /// Run the failed step's plugin call again.
    Retry {
        instance: String,
        /// The incident's token, as `incident list` shows it.
        #[arg(value_name = "TOKEN")]
        incident: u64,
        /// Who resolves it (with `--url`, the token's holder).
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
        /// On the plugin's current version (a fixed one), pinning the instance to it.
        #[arg(long)]
        current: bool,
    },
    /// Leave the step as if it produced `--outcome`.
    Skip {
        instance: String,
        /// The incident's token, as `incident list` shows it.
        #[arg(value_name = "TOKEN")]
        incident: u64,
        /// Who resolves it (with `--url`, the token's holder).
        #[arg(long, default_value = "cli")]
        by: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        outcome: Option<String>,
        /// Data the step would have given: a JSON object, or @file.json.
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn workflow(local: &LocalArgs, command: WorkflowCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let l = local.open().await?;
        match command {
            WorkflowCommand::Validate { file } => {
                let source = std::fs::read_to_string(&file)?;
                let def = l.flowgate.validate(&l.tenant, &file.display().to_string(), &source)?;
                print_json(&json!({"valid": true, "id": def.id, "steps": def.steps.len()}))
            }
            WorkflowCommand::Deploy { file } => {
                let source = std::fs::read_to_string(&file)?;
                let d = l.flowgate.deploy(&l.tenant, &file.display().to_string(), &source).await?;
                print_json(&json!({"id": d.stored.definition.id, "version": d.stored.version, "new_version": d.new_version}))
            }
            WorkflowCommand::List => {
                let all = l.flowgate.definitions(&l.tenant)?;
                let rows: Vec<_> = all
                    .iter()
                    .map(|d| json!({"id": d.definition.id, "version": d.version, "name": d.definition.name, "deployed_at": d.deployed_at}))
                    .collect();
                print_json(&json!(rows))
            }
            WorkflowCommand::Migrate { workflow, from_version, to_version, steps, plugins, instances, dry_run, by, reason } => {
                let request = crate::service::MigrationRequest {
                    definition: workflow,
                    from_version,
                    to_version,
                    steps: steps.into_iter().collect(),
                    plugins: plugins.into_iter().collect(),
                    instances: (!instances.is_empty()).then_some(instances),
                    dry_run,
                    after: None,
                    by,
                    reason,
                };
                let report = l.flowgate.migrate(&l.tenant, request).await?;
                l.flowgate.run_until_idle().await?;
                print_json(&serde_json::to_value(report)?)
            }
        }
    })
}

pub(crate) fn instance(local: &LocalArgs, command: InstanceCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let l = local.open().await?;
        let shown = match command {
            InstanceCommand::Start { workflow, data, by, key } => {
                let i = l.flowgate.start(&l.tenant, &workflow, json_object(&data)?, &by, key).await?;
                l.flowgate.run_until_idle().await?;
                i.id
            }
            InstanceCommand::Show { id } => id,
            InstanceCommand::List { workflow, status, limit } => {
                let filter = InstanceFilter { definition: workflow, status, limit, ..Default::default() };
                let rows: Vec<_> = l
                    .flowgate
                    .instances(&l.tenant, &filter)?
                    .iter()
                    .map(|i| json!({"id": i.id, "workflow": i.definition_id, "version": i.definition_version, "status": i.status, "incident": i.has_incident(), "started_at": i.started_at}))
                    .collect();
                return print_json(&json!(rows));
            }
            InstanceCommand::Cancel { id, by, reason } => {
                l.flowgate.cancel(&l.tenant, &id, &by, reason).await?;
                l.flowgate.run_until_idle().await?;
                id
            }
            InstanceCommand::Pause { id, by, reason } => {
                l.flowgate.pause(&l.tenant, &id, &by, reason).await?;
                id
            }
            InstanceCommand::Resume { id, by, reason } => {
                l.flowgate.resume(&l.tenant, &id, &by, Some(reason)).await?;
                l.flowgate.run_until_idle().await?;
                id
            }
        };
        let instance = l.flowgate.instance(&l.tenant, &shown)?;
        let history = l.flowgate.history(&l.tenant, &shown)?;
        print_json(&json!({"instance": instance, "history": history}))
    })
}

pub(crate) fn task(local: &LocalArgs, command: TaskCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let l = local.open().await?;
        let instance = match command {
            TaskCommand::List { person, role } => {
                let inbox = match (person, role) {
                    (Some(p), _) => Inbox::Person(p),
                    (None, Some(r)) => Inbox::Role(r),
                    (None, None) => anyhow::bail!("give --person or --role"),
                };
                let tasks = l.flowgate.inbox(&l.tenant, &inbox, None, 100)?;
                return print_json(&json!(tasks));
            }
            TaskCommand::Claim { task, by, roles } => {
                l.flowgate
                    .claim_task(
                        &l.tenant,
                        &task,
                        Person {
                            id: by,
                            roles,
                            via: None,
                        },
                    )
                    .await?
            }
            TaskCommand::Complete {
                task,
                by,
                roles,
                outcome,
                data,
                comment,
            } => {
                let data = json_object(&data)?;
                let completion = Completion {
                    task,
                    by: Person {
                        id: by,
                        roles,
                        via: None,
                    },
                    outcome,
                    data,
                    expected_version: None,
                    key: None,
                    comment,
                };
                let done = l.flowgate.complete(&l.tenant, completion).await?;
                l.flowgate.run_until_idle().await?;
                l.flowgate.instance(&l.tenant, &done.instance)?
            }
        };
        let open: Vec<_> = instance.open_tasks().collect();
        print_json(&json!({"instance": instance.id, "status": instance.status, "open_tasks": open}))
    })
}

pub(crate) fn incident(local: &LocalArgs, command: IncidentCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let l = local.open().await?;
        let (instance, token, by, reason, resolution) = match command {
            IncidentCommand::List => {
                let rows: Vec<_> = l
                    .flowgate
                    .incidents(&l.tenant, 1_000)?
                    .iter()
                    .flat_map(|i| {
                        i.tokens.values().filter_map(|t| match &t.wait {
                            crate::engine::Wait::Incident(incident) => Some(json!({
                                "instance": i.id, "workflow": i.definition_id, "token": t.id,
                                "step": t.step, "error": incident.error, "attempts": incident.attempts,
                            })),
                            _ => None,
                        })
                    })
                    .collect();
                return print_json(&json!(rows));
            }
            IncidentCommand::Retry {
                instance,
                incident,
                by,
                reason,
                current,
            } => {
                if current {
                    l.flowgate
                        .retry_on_current(&l.tenant, &instance, incident, &by, reason)
                        .await?;
                    l.flowgate.run_until_idle().await?;
                    let i = l.flowgate.instance(&l.tenant, &instance)?;
                    return print_json(
                        &json!({"instance": i.id, "status": i.status, "incident": i.has_incident()}),
                    );
                }
                let retry = Resolution::Retry {
                    plugin_version: None,
                };
                (instance, incident, by, reason, retry)
            }
            IncidentCommand::Skip {
                instance,
                incident: token,
                by,
                reason,
                outcome,
                data,
            } => {
                let data = json_object(&data)?;
                (
                    instance,
                    token,
                    by,
                    reason,
                    Resolution::Skip { outcome, data },
                )
            }
        };
        l.flowgate
            .resolve_incident(&l.tenant, &instance, token, &by, resolution, reason)
            .await?;
        l.flowgate.run_until_idle().await?;
        let i = l.flowgate.instance(&l.tenant, &instance)?;
        print_json(&json!({"instance": i.id, "status": i.status, "incident": i.has_incident()}))
    })
}

/// Fires due timers and carries out pending effects.
pub(crate) fn tick(local: &LocalArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let l = local.open().await?;
        let handled = l.flowgate.run_until_idle().await?;
        print_json(&json!({"handled": handled}))
    })
}
