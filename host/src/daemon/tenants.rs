//! The tenants as configured now. Their files (configuration, plugins, workflows) are watched:
//! when one changes, or on SIGHUP, every tenant is read again and what changed is applied while
//! the daemon serves: plugins installed or re-set, tokens and notification settings replaced,
//! workflows deployed. A tenant whose new configuration is broken keeps its previous one, and the
//! error is logged and shown on `/readyz`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::DaemonError;
use super::auth::Authenticator;
use crate::plugin::PluginRegistry;
use crate::service::{ChannelNotifier, Flowgate};
use crate::tenant::{Applied, TenantConfig, TenantError};

/// One consistent view of every tenant: handlers take it once per request.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub configs: BTreeMap<String, TenantConfig>,
    pub auth: Authenticator,
    /// Each tenant's plugins as applied (file sha256 and settings).
    pub applied: BTreeMap<String, Applied>,
}

/// What a file looked like: its size and modification time, or nothing when missing.
type Stamp = Vec<(PathBuf, Option<(u64, SystemTime)>)>;

/// The configured tenants, reloadable.
#[derive(Debug)]
pub struct Tenants {
    paths: Vec<PathBuf>,
    flowgate: Flowgate,
    channels: Arc<ChannelNotifier>,
    current: RwLock<Arc<Snapshot>>,
    /// The last reload's problems, by tenant file.
    problems: Mutex<BTreeMap<PathBuf, Problem>>,
    stamp: Mutex<Stamp>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// A tenant file that did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The tenant's id, or (when the file does not say) the name its file suggests.
    pub tenant: String,
    /// What is wrong, naming the file.
    pub message: String,
    /// True when the tenant serves all the same: with its previous configuration, or from
    /// another file (this one claims its id again); false when it is not served at all (it has
    /// not loaded since the daemon started), and its work waits.
    pub served: bool,
}

impl Tenants {
    /// Loads every tenant. A tenant whose file does not load is logged and reported on `/readyz`
    /// while the others serve; it is picked up by the reload that finds it fixed.
    pub async fn load(
        paths: Vec<PathBuf>,
        flowgate: Flowgate,
        channels: Arc<ChannelNotifier>,
    ) -> Result<Self, DaemonError> {
        let tenants = Tenants {
            paths,
            flowgate,
            channels,
            current: RwLock::new(Arc::new(Snapshot::default())),
            problems: Mutex::new(BTreeMap::new()),
            stamp: Mutex::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
        };
        tenants.reload().await;
        Ok(tenants)
    }

    /// Every tenant as configured now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last reload's problems, by tenant file.
    pub fn problems(&self) -> BTreeMap<PathBuf, Problem> {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads every tenant again and applies what changed; returns the problems (each tenant with
    /// one keeps its previous configuration).
    pub async fn reload(&self) -> BTreeMap<PathBuf, Problem> {
        let _one = self.reloading.lock().await;
        let before = self.snapshot();
        let mut next = Snapshot::default();
        let mut problems = BTreeMap::new();
        for path in &self.paths {
            match self.apply(path, &before, &next).await {
                Ok((config, applied)) => {
                    next.applied.insert(config.id.clone(), applied);
                    next.configs.insert(config.id.clone(), config);
                }
                Err(error) => {
                    // Most errors name the file already; the others get it in front.
                    let text = error.to_string();
                    let file = path.display().to_string();
                    let message = if text.contains(&file) {
                        text
                    } else {
                        format!("{file}: {text}")
                    };
                    // Keep what was in force for this file.
                    let old = before.configs.values().find(|c| c.path == *path);
                    if let Some(old) = old {
                        if let Some(applied) = before.applied.get(&old.id) {
                            next.applied.insert(old.id.clone(), applied.clone());
                        }
                        next.configs.insert(old.id.clone(), old.clone());
                    }
                    let problem = Problem {
                        tenant: old.map_or_else(|| tenant_named_by(path), |c| c.id.clone()),
                        message,
                        served: old.is_some(),
                    };
                    problems.insert(path.clone(), problem);
                }
            }
        }
        for config in next.configs.values() {
            // Tokens were checked in `apply`; a tenant kept from before had valid ones.
            if let Err(message) = next.auth.add(&config.id, &config.tokens) {
                let problem = Problem {
                    tenant: config.id.clone(),
                    message,
                    served: false,
                };
                problems.insert(config.path.clone(), problem);
            }
        }
        for (path, problem) in problems.iter_mut() {
            problem.served = next.configs.contains_key(&problem.tenant);
            tracing::error!(tenant = %problem.tenant, path = %path.display(), error = %problem.message, served = problem.served, "tenant.load failed; the other tenants serve");
        }
        // The files as they are after this reload (those the tenants now name), so that the
        // watcher does not take a tenant's first plugins and workflows for a change.
        let stamp = self.stamp_now(&next);
        let not_served = problems.values().filter(|p| !p.served);
        self.flowgate
            .pause_tenants(not_served.map(|p| p.tenant.clone()));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        *self.problems.lock().unwrap_or_else(PoisonError::into_inner) = problems.clone();
        problems
    }

    /// Loads one tenant file and applies it: plugins, notification channels, workflows.
    /// `next` holds the tenants read before this one in the same reload.
    async fn apply(
        &self,
        path: &Path,
        before: &Snapshot,
        next: &Snapshot,
    ) -> Result<(TenantConfig, Applied), TenantError> {
        let config = TenantConfig::load(path)?;
        if let Some(other) = next.configs.get(&config.id) {
            return Err(TenantError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "tenant id `{}` is already configured by {}",
                    config.id,
                    other.path.display()
                ),
            });
        }
        Authenticator::default()
            .add(&config.id, &config.tokens)
            .map_err(|message| TenantError::Parse {
                path: path.to_path_buf(),
                message,
            })?;
        let channels = config.channels()?;
        let mut applied = before.applied.get(&config.id).cloned().unwrap_or_default();
        let registry: Arc<PluginRegistry> = self.flowgate.plugins().clone();
        let flowgate = self.flowgate.clone();
        let (config, applied, changed) = tokio::task::spawn_blocking(move || {
            let changed = config.sync_plugins(&registry, &mut applied);
            crate::daemon::api::plugins::run_shadows(&flowgate, &config.id);
            (config, applied, changed)
        })
        .await
        .map_err(|e| TenantError::Parse {
            path: path.to_path_buf(),
            message: format!("loading plugins failed: {e}"),
        })?;
        let changed = changed?;
        if !changed.is_empty() {
            tracing::info!(tenant = %config.id, plugins = ?changed, "tenant.plugins applied");
        }
        self.channels.set(&config.id, channels);
        self.flowgate
            .set_plugin_quota(&config.id, config.quotas.plugins());
        self.flowgate.set_calendar(&config.id, config.calendar()?);
        self.flowgate
            .set_recording(&config.id, config.recording.plugin_calls);
        self.flowgate
            .set_processes(&config.id, config.process_settings());
        for deployed in config.deploy_workflows(&self.flowgate).await? {
            if deployed.new_version {
                tracing::info!(tenant = %config.id, workflow = %deployed.stored.definition.id, version = deployed.stored.version, "tenant.workflow deployed");
            }
        }
        Ok((config, applied))
    }

    /// The files every tenant is made of, as they are now.
    fn stamp_now(&self, snapshot: &Snapshot) -> Stamp {
        let mut files: Vec<PathBuf> = self.paths.clone();
        for config in snapshot.configs.values() {
            files.extend(config.files());
        }
        files.sort();
        files.dedup();
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let seen = meta.and_then(|m| Some((m.len(), m.modified().ok()?)));
                (f, seen)
            })
            .collect()
    }

    /// True when a file changed since the last reload.
    pub fn changed(&self) -> bool {
        let now = self.stamp_now(&self.snapshot());
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) != now
    }

    /// Reloads when SIGHUP arrives or, looking every `every` (if given), a file changed; until
    /// `stop`.
    pub async fn watch(self: Arc<Self>, every: Option<Duration>, stop: impl Future<Output = ()>) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut stop = std::pin::pin!(stop);
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            let tick = async {
                match every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = &mut stop => return,
                _ = hup => "SIGHUP",
                _ = tick => {
                    if !self.changed() { continue; }
                    "a file changed"
                }
            };
            tracing::info!(reason, "tenant.reload");
            self.reload().await;
        }
    }
}

/// The tenant a file is for when it cannot be loaded: its `id` if the TOML says one, else the
/// name of its folder (`acme/tenant.toml`) or of the file (`acme.toml`).
fn tenant_named_by(path: &Path) -> String {
    let said = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("id")?.as_str().map(str::to_string));
    said.or_else(|| {
        let stem = path.file_stem()?.to_str()?;
        if stem == "tenant" {
            path.parent()?.file_name()?.to_str().map(str::to_string)
        } else {
            Some(stem.to_string())
        }
    })
    .unwrap_or_else(|| path.display().to_string())
}
