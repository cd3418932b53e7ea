//! A tenant's configuration file: its plugins (path, optional sha256 pin, configuration values,
//! limits, grants) and the folder of workflows it deploys.
//!
//! ```toml
//! id = "acme"
//! workflows = "workflows"
//!
//! [plugins.purchase-approval]
//! path = "plugins/purchase_approval.wasm"
//! config = { manager_threshold = "500" }
//! limits = { fuel = 20000000 }
//! grants = { clocks = true }
//!
//! [plugins.ticket-rules]
//! path = "plugins/decision_table.wasm"
//! [plugins.ticket-rules.table]      # a decision table, checked here, given to the plugin
//! hit = "first"
//! inputs = [{ name = "tier", from = "/customer/tier", lowercase = true }]
//! outputs = ["next"]
//! rules_file = "ticket-rules.csv"   # or rules = [["platinum", "priority"], ["-", "general"]]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::definition::DefinitionError;
use crate::engine::calendar::Calendar;
use crate::engine::process::{Costs, ProcessDefinition};
use crate::plugin::{
    ArtifactError, Grants, PluginError, PluginId, PluginLimits, PluginRegistry, PluginSettings,
    Upload, sha256_hex,
};
use crate::service::{Channels, Deployed, EmailSender, Flowgate, ServiceError};

/// A tenant as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// A folder of workflow definitions to deploy, relative to the configuration file.
    pub workflows: Option<PathBuf>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Where notifications (task assigned, reminders, overdue, escalated, finished) are POSTed.
    pub webhook: Option<crate::service::WebhookConfig>,
    /// Where notifications are emailed (SMTP), and people's and roles' addresses.
    pub email: Option<crate::service::EmailConfig>,
    /// API credentials (used by the daemon).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// What the tenant may use of the host, so that no tenant slows another down.
    #[serde(default)]
    pub quotas: Quotas,
    /// Working hours, holidays and time zone, for deadlines in business time.
    pub calendar: Option<CalendarConfig>,
    /// Endpoints for systems that cannot call the API with a token: each request, signed with
    /// the hook's secret, becomes a message or a start.
    #[serde(default)]
    pub inbound: Vec<InboundHook>,
    /// Processes (`[processes.<id>]`): the workflows that serve one business case together,
    /// measured end to end.
    #[serde(default)]
    pub processes: BTreeMap<String, ProcessDefinition>,
    /// What work costs (`[costs]`), for the cost per case in process metrics.
    pub costs: Option<Costs>,
    /// How long finished instances stay in the hot store (`[retention]`).
    pub retention: Option<Retention>,
    /// What is kept of plugin calls for replay (`[recording]`).
    #[serde(default)]
    pub recording: Recording,
    /// The folder the file was read from; relative paths start there.
    #[serde(skip)]
    pub base: PathBuf,
    /// The file it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// What is kept of plugin calls (`[recording]`): each decision a router or approval policy
/// takes, with its exact input, so that a candidate version can be replayed on them
/// (`POST /api/v1/plugins/{name}/replay`) before it becomes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// The newest calls kept per plugin; 0 keeps none. Default 1,000.
    #[serde(default = "default_plugin_calls")]
    pub plugin_calls: u64,
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            plugin_calls: default_plugin_calls(),
        }
    }
}

fn default_plugin_calls() -> u64 {
    crate::service::DEFAULT_KEEP
}

/// How long finished instances stay in the hot store. Past it, each is archived to a JSON Lines
/// file of the day it ended and removed; its workflow's metrics keep what it contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Finished instances that ended longer ago than this (`"90d"`, at least `"1m"`).
    #[serde(deserialize_with = "retention_period")]
    pub finished_instances: std::time::Duration,
}

/// A humane duration (`"90d"`, `"12h"`) of a minute or more.
fn retention_period<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::time::Duration, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(deserializer)?;
    let period = humantime::parse_duration(&text).map_err(|e| {
        D::Error::custom(format!(
            "`{text}` is not a duration like \"90d\" or \"12h\": {e}"
        ))
    })?;
    if period < std::time::Duration::from_secs(60) {
        return Err(D::Error::custom(format!(
            "`{text}` is shorter than a minute: finished instances would leave before anyone read them"
        )));
    }
    Ok(period)
}

/// A tenant's share of the host (`[quotas]` in its file). The defaults protect the others:
/// half the machine's plugin capacity, and 5,000 commands a second (about half of what the
/// engine commits on two cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Plugin calls at once.
    pub plugin_concurrency: usize,
    /// Milliseconds of plugin time in each second.
    pub plugin_ms_per_second: u64,
    /// Commands (starts, completions, claims, cancels...) through the API in each second,
    /// with bursts of up to twice as many; past it, requests answer 429 with `Retry-After`.
    pub commands_per_second: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        let plugins = crate::service::PluginQuota::default();
        Quotas {
            plugin_concurrency: plugins.plugin_concurrency,
            plugin_ms_per_second: plugins.plugin_ms_per_second,
            commands_per_second: 5_000,
        }
    }
}

impl Quotas {
    /// The plugin pool's part of these quotas.
    pub fn plugins(&self) -> crate::service::PluginQuota {
        crate::service::PluginQuota {
            plugin_concurrency: self.plugin_concurrency.max(1),
            plugin_ms_per_second: self.plugin_ms_per_second,
        }
    }
}

/// What was applied of a tenant's plugins: name → the file's sha256 and the settings.
pub type Applied = BTreeMap<String, (String, PluginSettings)>;

/// One plugin of a tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file. Without one, `sha256` names a version uploaded earlier.
    pub path: Option<PathBuf>,
    /// With `path`, the file must have this sha256; without, the uploaded version to use.
    pub sha256: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: PluginLimits,
    #[serde(default)]
    pub grants: Grants,
    /// A decision table for the decision-table plugin: checked when the tenant loads (errors
    /// name the rule and the column), then given to the plugin as the configuration value
    /// `table` (JSON), its rules read from `rules_file` when it has one.
    pub table: Option<flowgate_tables::TableSpec>,
}

/// The configuration key a plugin's decision table reaches it under.
pub const TABLE_KEY: &str = "table";

impl PluginConfig {
    /// The settings a loaded version of this plugin runs with.
    pub fn settings(&self) -> PluginSettings {
        let mut config = self.config.clone();
        if let Some(table) = &self.table {
            // A spec of strings, vectors and enums always serializes.
            let json = serde_json::to_string(table).unwrap_or_default();
            config.insert(TABLE_KEY.to_string(), json);
        }
        PluginSettings {
            config,
            limits: self.limits,
            grants: self.grants.clone(),
        }
    }
}

/// Why a decision table could not be used.
#[derive(Debug)]
pub enum TableProblem {
    /// Its rules file could not be read.
    Read(PathBuf, std::io::Error),
    /// It does not hold together: where and why.
    Invalid(String),
}

impl std::fmt::Display for TableProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableProblem::Read(path, source) => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TableProblem::Invalid(message) => f.write_str(message),
        }
    }
}

/// Reads a decision table's rules file (relative to `base`) into it, and checks the table.
pub fn check_table(
    table: &mut flowgate_tables::TableSpec,
    base: &Path,
) -> Result<(), TableProblem> {
    if let Some(file) = table.rules_file.clone() {
        if !table.rules.is_empty() {
            return Err(TableProblem::Invalid(
                "`rules` and `rules_file` are both set; keep one of the two".to_string(),
            ));
        }
        let full = base.join(&file);
        let text =
            std::fs::read_to_string(&full).map_err(|source| TableProblem::Read(full, source))?;
        table
            .read_csv_rules(&text, &file)
            .map_err(|e| TableProblem::Invalid(e.to_string()))?;
    }
    flowgate_tables::Table::compile(table)
        .map(drop)
        .map_err(|e| TableProblem::Invalid(e.to_string()))
}

/// A tenant's business calendar (`[calendar]`): deadlines stated in business time count only
/// these hours. Without one: Monday to Friday, 09:00-17:00 UTC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Working hours per weekday (`mon` .. `sun`), e.g. `mon = ["09:00-12:00", "13:00-17:00"]`;
    /// a weekday not named is not worked. Default: Monday to Friday, 09:00-17:00.
    pub hours: Option<BTreeMap<String, Vec<String>>>,
    /// Days not worked, e.g. `["2026-12-25", "2026-12-26"]`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// More days not worked, from an iCalendar file (beside the tenant's file, or absolute):
    /// every day an event covers, repeating events expanded.
    pub holidays_file: Option<PathBuf>,
}

/// An inbound webhook (`[[inbound]]`): `POST /hooks/{tenant}/{name}`, its body signed with
/// HMAC-SHA256 under `secret` as Flowgate signs its own webhooks (`X-Flowgate-Signature:
/// sha256=<hex>`), mapped by JSON pointers to a message or to a start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundHook {
    /// The endpoint's last path segment.
    pub name: String,
    /// The HMAC key the sender signs with.
    pub secret: String,
    /// Send the message of this name...
    pub message: Option<String>,
    /// ... or start the latest version of this workflow.
    pub start: Option<String>,
    /// Pointer to the sender's id for the event (`/event_id`): the message id, or the start's
    /// idempotency key, so that a redelivered request does nothing twice.
    pub id: String,
    /// For a message: pointer to its correlation (`/document/id`).
    pub correlation: Option<String>,
    /// Data field → pointer to its value in the body (`signed_by = "/signer/name"`).
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Pointer to the process instance (case) the event is about (`/case`), when the sender
    /// knows it: the message reaches only that case, and what it starts joins it.
    pub process: Option<String>,
}

/// Why a tenant could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("plugin `{plugin}`: {path} has sha256 {found}, but the configuration pins {expected}")]
    Pin {
        plugin: String,
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: {message}")]
    Email { path: PathBuf, message: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{path}: plugin `{plugin}` has no `path`, and {}", match sha256 {
        Some(sha) => format!("no uploaded version has sha256 {sha} (upload it first: POST /api/v1/plugins/{plugin})"),
        None => "no `sha256` of an uploaded version either".to_string(),
    })]
    NoArtifact {
        path: PathBuf,
        plugin: String,
        sha256: Option<String>,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl TenantConfig {
    /// Reads a tenant configuration file.
    pub fn load(path: &Path) -> Result<Self, TenantError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenantError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: TenantConfig = toml::from_str(&text).map_err(|e| TenantError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.path = path.to_path_buf();
        config.calendar()?;
        config.check_inbound()?;
        config.check_processes()?;
        config.check_tables()?;
        Ok(config)
    }

    /// Reads each decision table's rules file and checks the table, so that a mistake is
    /// reported here, naming the plugin, the rule and the column.
    fn check_tables(&mut self) -> Result<(), TenantError> {
        let path = self.path.clone();
        let problem = |name: &str, message: String| TenantError::Parse {
            path: path.clone(),
            message: format!("plugins.{name}.table: {message}"),
        };
        for (name, plugin) in &mut self.plugins {
            let Some(table) = &mut plugin.table else {
                continue;
            };
            if plugin.config.contains_key(TABLE_KEY) {
                return Err(problem(
                    name,
                    format!("the plugin's `config` sets `{TABLE_KEY}` too; keep one of the two"),
                ));
            }
            check_table(table, &self.base).map_err(|e| match e {
                TableProblem::Read(path, source) => TenantError::Read { path, source },
                TableProblem::Invalid(message) => problem(name, message),
            })?;
        }
        Ok(())
    }

    /// Each process has an id like a workflow's and names its workflows once, `starts` among
    /// them; costs are amounts of zero or more in one currency. Every id gets its own.
    fn check_processes(&mut self) -> Result<(), TenantError> {
        let problem = |message: String| TenantError::Parse {
            path: self.path.clone(),
            message,
        };
        for (id, process) in &mut self.processes {
            if !crate::definition::valid_id(id) {
                return Err(problem(format!(
                    "processes.{id}: the id must be 1-64 of a-z, 0-9, - and _"
                )));
            }
            process.id.clone_from(id);
        }
        for (id, process) in &self.processes {
            if let Some(first) = process.problems().into_iter().next() {
                return Err(problem(format!("processes.{id}.{first}")));
            }
        }
        if let Some(first) = self
            .costs
            .as_ref()
            .and_then(|c| c.problems().into_iter().next())
        {
            return Err(problem(format!("costs.{first}")));
        }
        Ok(())
    }

    /// Each inbound hook names a message (with its correlation) or a start, and pointers.
    fn check_inbound(&self) -> Result<(), TenantError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, hook) in self.inbound.iter().enumerate() {
            let problem = |message: String| TenantError::Parse {
                path: self.path.clone(),
                message: format!("inbound[{i}] ({}): {message}", hook.name),
            };
            let valid_name = !hook.name.is_empty()
                && hook.name.len() <= 64
                && hook
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return Err(problem("`name` must be 1-64 of a-z, 0-9 and -".into()));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(problem("another hook has this name".into()));
            }
            if hook.secret.len() < 16 {
                return Err(problem("`secret` must be at least 16 characters".into()));
            }
            match (&hook.message, &hook.start, &hook.correlation) {
                (Some(_), None, Some(_)) | (None, Some(_), None) => {}
                (Some(_), None, None) => {
                    return Err(problem("a message hook needs `correlation`".into()));
                }
                (None, Some(_), Some(_)) => {
                    return Err(problem("a start hook takes no `correlation`".into()));
                }
                _ => return Err(problem("needs exactly one of `message` or `start`".into())),
            }
            let pointers = std::iter::once(&hook.id)
                .chain(&hook.correlation)
                .chain(hook.data.values());
            for pointer in pointers {
                if !pointer.starts_with('/') {
                    return Err(problem(format!(
                        "`{pointer}` is not a JSON pointer like \"/event/id\""
                    )));
                }
            }
        }
        Ok(())
    }

    /// Its business calendar, checked: an error names the field at fault.
    pub fn calendar(&self) -> Result<Calendar, TenantError> {
        let Some(c) = &self.calendar else {
            return Ok(Calendar::default());
        };
        let weekdays = BTreeMap::from_iter(
            ["mon", "tue", "wed", "thu", "fri"]
                .map(|d| (d.to_string(), vec!["09:00-17:00".to_string()])),
        );
        let hours = c.hours.clone().unwrap_or(weekdays);
        let mut holidays = c.holidays.clone();
        if let Some(file) = &c.holidays_file {
            let path = self.base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| TenantError::Read {
                path: path.clone(),
                source,
            })?;
            // The zone is checked (and named in the error) by Calendar::new below.
            let zone = c.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
            let days =
                crate::holidays::parse(&text, zone).map_err(|message| TenantError::Parse {
                    path: path.clone(),
                    message: format!("calendar.holidays_file: {message}"),
                })?;
            holidays.extend(days.iter().map(|d| d.to_string()));
        }
        Calendar::new(&c.timezone, &hours, &holidays).map_err(|(field, message)| {
            TenantError::Parse {
                path: self.path.clone(),
                message: format!("calendar.{field}: {message}"),
            }
        })
    }

    /// Its process definitions and costs, as the service keeps them.
    pub fn process_settings(&self) -> crate::service::ProcessSettings {
        crate::service::ProcessSettings {
            definitions: self.processes.clone(),
            costs: self.costs.clone(),
        }
    }

    /// The notification channels it configures (checking the email settings).
    pub fn channels(&self) -> Result<Channels, TenantError> {
        let email = self
            .email
            .clone()
            .map(EmailSender::new)
            .transpose()
            .map_err(|message| TenantError::Email {
                path: self.path.clone(),
                message,
            })?;
        Ok(Channels {
            webhook: self.webhook.clone(),
            email,
        })
    }

    /// The files it is made of: itself, its plugins and its workflows (to notice changes).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        files.extend(
            self.plugins
                .values()
                .filter_map(|p| p.path.as_ref())
                .map(|p| self.resolve(p)),
        );
        if let Some(dir) = &self.workflows
            && let Ok(entries) = std::fs::read_dir(self.resolve(dir))
        {
            let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            found.sort();
            files.extend(found);
        }
        files
    }

    /// Reads a plugin's file, checking its pin; or, without a path, the uploaded version its
    /// sha256 names.
    pub fn plugin_bytes(
        &self,
        name: &str,
        plugin: &PluginConfig,
        registry: &PluginRegistry,
    ) -> Result<Vec<u8>, TenantError> {
        let Some(path) = &plugin.path else {
            let uploaded = match (&plugin.sha256, registry.artifacts()) {
                (Some(sha), Some(artifacts)) => {
                    let id = PluginId::new(self.id.clone(), name);
                    artifacts.read(&id, &sha.to_ascii_lowercase())?
                }
                _ => None,
            };
            return uploaded.ok_or_else(|| TenantError::NoArtifact {
                path: self.path.clone(),
                plugin: name.to_string(),
                sha256: plugin.sha256.clone(),
            });
        };
        let path = self.resolve(path);
        let bytes = std::fs::read(&path).map_err(|source| TenantError::Read {
            path: path.clone(),
            source,
        })?;
        if let Some(expected) = &plugin.sha256 {
            let found = sha256_hex(&bytes);
            if !found.eq_ignore_ascii_case(expected) {
                return Err(TenantError::Pin {
                    plugin: name.to_string(),
                    path,
                    expected: expected.clone(),
                    found,
                });
            }
        }
        Ok(bytes)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// Loads every plugin into a registry that has none of the tenant's yet (each becomes the
    /// tenant's current version).
    pub fn install_plugins(&self, registry: &PluginRegistry) -> Result<(), TenantError> {
        self.sync_plugins(registry, &mut Applied::new()).map(drop)
    }

    /// Brings the registry in line with the configured plugins, given what was `applied` before
    /// (empty at start-up); returns the names that changed. A plugin whose file is new or changed
    /// becomes the current version, unless an upload was made since that file was configured (the
    /// upload stays current); changed settings apply to every loaded version. An uploaded plugin
    /// the configuration does not name is loaded too. On error the plugins before it are applied.
    pub fn sync_plugins(
        &self,
        registry: &PluginRegistry,
        applied: &mut Applied,
    ) -> Result<Vec<String>, TenantError> {
        let uploads: BTreeMap<String, Upload> = match registry.artifacts() {
            Some(artifacts) => artifacts.uploads(&self.id)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        let mut changed = Vec::new();
        for (name, plugin) in &self.plugins {
            let id = PluginId::new(self.id.clone(), name.clone());
            if plugin.path.is_none() && plugin.sha256.is_none() {
                // Settings alone: they apply to whichever version is uploaded.
                let settings = plugin.settings();
                let current = registry.current(&id).map(|p| p.sha256().to_string());
                match (&current, uploads.get(name)) {
                    (Some(_), _) => {
                        if applied
                            .get(name)
                            .is_none_or(|(_, before)| *before != settings)
                        {
                            registry.update_settings(&id, settings.clone())?;
                            changed.push(name.clone());
                        }
                    }
                    (None, Some(upload)) => {
                        if let Some(wasm) = self.kept(registry, &id, &upload.sha256) {
                            registry.install(id.clone(), &wasm, settings.clone())?;
                            changed.push(name.clone());
                        }
                    }
                    (None, None) => {}
                }
                applied.insert(name.clone(), (current.unwrap_or_default(), settings));
                continue;
            }
            let bytes = self.plugin_bytes(name, plugin, registry)?;
            let sha = sha256_hex(&bytes);
            let settings = plugin.settings();
            match applied.get(name) {
                Some((was, before)) if *was == sha => {
                    if *before != settings {
                        registry.update_settings(&id, settings.clone())?;
                        changed.push(name.clone());
                    }
                }
                _ => {
                    let upload = uploads
                        .get(name)
                        .filter(|u| u.configured.as_deref() == Some(sha.as_str()));
                    let kept = upload.and_then(|u| self.kept(registry, &id, &u.sha256));
                    registry.install(id.clone(), &bytes, settings.clone())?;
                    match kept {
                        // Installed after the file's version, so the upload stays current.
                        Some(wasm) => drop(registry.install(id, &wasm, settings.clone())?),
                        None => {
                            if let Some(artifacts) = registry.artifacts() {
                                artifacts.clear_upload(&id)?;
                            }
                        }
                    }
                    changed.push(name.clone());
                }
            }
            applied.insert(name.clone(), (sha, settings));
        }
        for (name, upload) in &uploads {
            let id = PluginId::new(self.id.clone(), name.clone());
            if self.plugins.contains_key(name) || registry.current(&id).is_some() {
                continue;
            }
            if let Some(wasm) = self.kept(registry, &id, &upload.sha256) {
                registry.install(id, &wasm, PluginSettings::default())?;
                changed.push(name.clone());
            }
        }
        Ok(changed)
    }

    /// A kept version's bytes from the registry's artifact store.
    fn kept(&self, registry: &PluginRegistry, id: &PluginId, sha256: &str) -> Option<Vec<u8>> {
        match registry.artifacts()?.read(id, sha256) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(plugin = %id, %error, "cannot read an uploaded plugin version");
                None
            }
        }
    }

    /// Deploys every workflow in the folder; unchanged ones keep their version. A workflow that
    /// starts another is deployed after it.
    pub async fn deploy_workflows(
        &self,
        flowgate: &Flowgate,
    ) -> Result<Vec<Deployed>, TenantError> {
        let Some(dir) = &self.workflows else {
            return Ok(Vec::new());
        };
        let dir = self.resolve(dir);
        let entries = std::fs::read_dir(&dir).map_err(|source| TenantError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
            .collect();
        files.sort();
        let mut deployed = Vec::new();
        // Each pass deploys what it can; a workflow waiting for a sub-workflow goes next pass.
        while !files.is_empty() {
            let mut waiting = Vec::new();
            for file in &files {
                let source = std::fs::read_to_string(file).map_err(|source| TenantError::Read {
                    path: file.clone(),
                    source,
                })?;
                match flowgate
                    .deploy(&self.id, &file.display().to_string(), &source)
                    .await
                {
                    Ok(d) => deployed.push(d),
                    Err(ServiceError::Definition(DefinitionError::Invalid {
                        problems, ..
                    })) if problems
                        .iter()
                        .all(|p| p.message.starts_with("the tenant has no workflow")) =>
                    {
                        waiting.push(file.clone());
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            if waiting.len() == files.len() {
                // No progress: the sub-workflows are missing for good; report the first.
                let file = &waiting[0];
                let source = std::fs::read_to_string(file).map_err(|source| TenantError::Read {
                    path: file.clone(),
                    source,
                })?;
                flowgate
                    .deploy(&self.id, &file.display().to_string(), &source)
                    .await?;
            }
            files = waiting;
        }
        Ok(deployed)
    }
}

/// An API token of the tenant, as its file gives it (a sha256, never the token).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs.
    pub name: String,
    /// The sha256 of the token, hex. (`echo -n TOKEN | sha256sum`)
    pub sha256: String,
    /// `admin`, or `person` acting as `person` with `roles`.
    pub access: AccessKind,
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The holder's IANA time zone (`America/New_York`): the web app shows them times in it.
    /// Without it, times read in the zone of the holder's browser.
    pub timezone: Option<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessKind {
    Admin,
    Person,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<TenantConfig, TenantError> {
        let dir = tempfile::tempdir().map_err(|source| TenantError::Read {
            path: PathBuf::new(),
            source,
        })?;
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).map_err(|source| TenantError::Read {
            path: path.clone(),
            source,
        })?;
        TenantConfig::load(&path)
    }

    #[test]
    fn a_decision_table_is_checked_at_load_and_reaches_the_plugin_as_json() {
        let head = "id = \"t\"\n[plugins.rules]\nsha256 = \"00\"\n[plugins.rules.table]\nhit = \"first\"\ninputs = [{ name = \"tier\", from = \"/tier\" }]\noutputs = [\"next\"]\n";
        let ok = load(&format!(
            "{head}rules = [[\"gold\", \"fast\"], [\"-\", \"slow\"]]\n"
        ));
        let settings = ok.map(|c| c.plugins["rules"].settings());
        let table = settings.map(|s| s.config.get(TABLE_KEY).cloned().unwrap_or_default());
        let table = table.map_err(|e| e.to_string());
        assert!(
            table
                .as_deref()
                .is_ok_and(|t| t.contains(r#""rules":[["gold","fast"],["-","slow"]]"#)),
            "{table:?}"
        );
        for (rules, said) in [
            (
                "rules = [[\"gold\", \"fast\"], [\"> gold\", \"slow\"]]",
                "plugins.rules.table: rule 2, column `tier`: `gold` after `>` is neither a value nor an input",
            ),
            ("rules_file = \"absent.csv\"", "absent.csv"),
            (
                "rules = [[\"-\", \"a\"]]\n[plugins.rules.config]\ntable = \"{}\"",
                "plugins.rules.table: the plugin's `config` sets `table` too",
            ),
        ] {
            let refused = load(&format!("{head}{rules}\n"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(refused.contains(said), "{rules}: {refused}");
        }
    }

    #[test]
    fn a_retention_is_a_humane_duration_of_a_minute_or_more() {
        let ok = load("id = \"t\"\n[retention]\nfinished_instances = \"90d\"\n");
        assert_eq!(
            ok.ok().and_then(|c| c.retention),
            Some(Retention {
                finished_instances: std::time::Duration::from_secs(90 * 86_400)
            })
        );
        for (value, said) in [
            ("soon", "is not a duration like"),
            ("5s", "shorter than a minute"),
        ] {
            let text = format!("id = \"t\"\n[retention]\nfinished_instances = \"{value}\"\n");
            let refused = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                refused.contains(said) && refused.contains("finished_instances"),
                "{refused}"
            );
        }
    }
}
