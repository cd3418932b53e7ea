//! A loaded plugin version and its calls: each on a fresh `Store`, within its limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::{approval_policy, router, step_action};
use super::cache::CacheOutcome;
use super::called::{ActionResult, Called};
use super::error::{PluginError, PluginFailure};
use super::limits::PluginLimits;
use super::session::PluginSession;
use super::state::CallState;
use super::types::{ActionRequest, ApprovalDecision, ApprovalRequest, RouteDecision, RouteRequest};
use super::{Capability, Grants, PluginId};

/// What a tenant set for one plugin: configuration values, limits and grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Values the plugin reads with `get-config`.
    pub config: BTreeMap<String, String>,
    /// Per-call limits.
    pub limits: PluginLimits,
    /// Capabilities beyond the baseline.
    pub grants: Grants,
}

/// A component compiled and pre-linked once, shared by every tenant that loads the same artifact.
pub(crate) struct Compiled {
    pub engine: Engine,
    pub pre: InstancePre<CallState>,
    pub router: Option<router::GuestIndices>,
    pub approval: Option<approval_policy::GuestIndices>,
    pub action: Option<step_action::GuestIndices>,
    pub imports: Vec<String>,
    /// The runtime's epoch ticker: a call's deadline is counted in its ticks, and it ticks only
    /// while calls run.
    pub ticker: Arc<super::runtime::EpochTicker>,
}

/// One version of one tenant's plugin, ready to call. Calls hold an `Arc` of it, so replacing the
/// tenant's current version never disturbs calls in flight.
pub struct LoadedPlugin {
    id: PluginId,
    sha256: String,
    compiled: Arc<Compiled>,
    config: Arc<BTreeMap<String, String>>,
    grants: Arc<Grants>,
    limits: PluginLimits,
    loaded_from: CacheOutcome,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.id)
            .field("sha256", &self.sha256)
            .field("capabilities", &self.capabilities())
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub(crate) fn new(
        id: PluginId,
        sha256: String,
        compiled: Arc<Compiled>,
        settings: PluginSettings,
        loaded_from: CacheOutcome,
    ) -> Self {
        LoadedPlugin {
            loaded_from,
            id,
            sha256,
            compiled,
            config: Arc::new(settings.config),
            grants: Arc::new(settings.grants),
            limits: settings.limits,
        }
    }

    /// Which tenant's plugin this is.
    pub fn id(&self) -> &PluginId {
        &self.id
    }

    /// The artifact's sha256 in hex: this version's identity.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The capabilities the component exports.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.compiled.capabilities()
    }

    /// The imports the component declares.
    pub fn imports(&self) -> &[String] {
        &self.compiled.imports
    }

    /// Whether loading compiled the component, or found it compiled in memory or on disk.
    pub fn loaded_from(&self) -> CacheOutcome {
        self.loaded_from
    }

    /// The settings this version runs with.
    pub fn settings(&self) -> PluginSettings {
        PluginSettings {
            config: (*self.config).clone(),
            limits: self.limits,
            grants: (*self.grants).clone(),
        }
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Whether a call's answer follows from its input alone: nothing was granted that varies
    /// between calls (clocks, random numbers, files, the network). Such a plugin's decisions are
    /// taken in the same transaction as the command that reaches them, and can be replayed.
    pub fn is_deterministic(&self) -> bool {
        use super::grants::Grant;
        [
            Grant::Clocks,
            Grant::Random,
            Grant::Files,
            Grant::Network,
            Grant::Http,
        ]
        .into_iter()
        .all(|grant| !self.grants.has(grant))
    }

    /// The same compiled version with other settings (configuration values, limits, grants),
    /// checked against the grants again.
    pub fn with_settings(&self, settings: PluginSettings) -> Result<LoadedPlugin, PluginError> {
        if let Err(reason) = settings.grants.validate() {
            return Err(self.error(None, PluginFailure::invalid_grants(reason)));
        }
        if let Err(refused) = settings
            .grants
            .check_imports(self.imports().iter().map(String::as_str))
        {
            return Err(self.error(None, PluginFailure::refused(refused)));
        }
        Ok(LoadedPlugin::new(
            self.id.clone(),
            self.sha256.clone(),
            self.compiled.clone(),
            settings,
            CacheOutcome::Memory,
        ))
    }

    pub(crate) fn error(
        &self,
        capability: Option<Capability>,
        failure: PluginFailure,
    ) -> PluginError {
        PluginError {
            tenant: self.id.tenant.clone(),
            plugin: self.id.name.clone(),
            version: self.sha256[..12].to_string(),
            capability,
            failure: Box::new(failure),
        }
    }

    /// Asks the router to choose among `request.candidates`, on a fresh instance.
    pub fn route(&self, request: &RouteRequest) -> Result<Called<RouteDecision>, PluginError> {
        self.session(Some(Capability::Router))?.route(request)
    }

    /// Asks the approval policy what `request` needs, on a fresh instance.
    pub fn evaluate_approval(
        &self,
        request: &ApprovalRequest,
    ) -> Result<Called<ApprovalDecision>, PluginError> {
        self.session(Some(Capability::ApprovalPolicy))?
            .evaluate_approval(request)
    }

    /// Runs the step action, on a fresh instance.
    pub fn run_action(&self, request: &ActionRequest) -> Result<Called<ActionResult>, PluginError> {
        self.session(Some(Capability::StepAction))?
            .run_action(request)
    }

    /// A fresh instance for one or more calls. Each call gets the full fuel, deadline and caps;
    /// the instance's memory carries over between calls, so a session serves one tenant's batch,
    /// never several tenants.
    pub fn session(
        &self,
        capability: Option<Capability>,
    ) -> Result<PluginSession<'_>, PluginError> {
        if let Some(cap) = capability
            && !self.capabilities().contains(&cap)
        {
            return Err(self.error(Some(cap), PluginFailure::MissingExport(cap)));
        }
        PluginSession::open(self, capability)
    }

    pub(crate) fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    pub(crate) fn settings_parts(
        &self,
    ) -> (&Arc<BTreeMap<String, String>>, &Arc<Grants>, &PluginLimits) {
        (&self.config, &self.grants, &self.limits)
    }
}
