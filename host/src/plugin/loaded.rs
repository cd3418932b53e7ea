//! A loaded plugin version and its calls: each on a fresh `Store`, within its limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store, Trap};

use super::bindings::types::{
    ActionRequest, ApprovalDecision, ApprovalRequest, RouteDecision, RouteRequest,
};
use super::bindings::{approval_policy, router, step_action, types};
use super::cache::CacheOutcome;
use super::error::{GuestError, PluginError, PluginFailure};
use super::limits::{Limiter, MemoryCapHit, PluginLimits};
use super::state::{CallState, LogLine};
use super::validate;
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
    /// The runtime's epoch tick, to turn a timeout into a deadline in ticks.
    pub epoch_tick: Duration,
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

/// A successful call's answer, with what it cost.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// The answer.
    pub value: T,
    /// Fuel the call used.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the answer.
    pub elapsed: Duration,
    /// Lines the plugin logged.
    pub logs: Vec<LogLine>,
    /// Lines dropped over the cap.
    pub logs_dropped: usize,
}

/// A step action's answer, checked: `data` is a JSON object to merge.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    /// Top-level keys to merge into the instance data.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// A note for the audit history.
    pub note: String,
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

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// The same compiled version with other settings (configuration values, limits, grants),
    /// checked against the grants again.
    pub fn with_settings(&self, settings: PluginSettings) -> Result<LoadedPlugin, PluginError> {
        let refused = settings
            .grants
            .validate()
            .map_err(|reason| ("(grants)".to_string(), reason))
            .and_then(|()| {
                settings
                    .grants
                    .check_imports(self.imports().iter().map(String::as_str))
                    .map_err(|(import, refusal)| (import, refusal.to_string()))
            });
        if let Err((import, why)) = refused {
            return Err(self.error(None, PluginFailure::ImportNotGranted { import, why }));
        }
        Ok(LoadedPlugin::new(
            self.id.clone(),
            self.sha256.clone(),
            self.compiled.clone(),
            settings,
            CacheOutcome::Memory,
        ))
    }

    fn error(&self, capability: Option<Capability>, failure: PluginFailure) -> PluginError {
        PluginError {
            tenant: self.id.tenant.clone(),
            plugin: self.id.name.clone(),
            version: self.sha256[..12].to_string(),
            capability,
            failure: Box::new(failure),
        }
    }

    /// Asks the router to choose among `request.candidates`.
    pub fn route(&self, request: &RouteRequest) -> Result<Called<RouteDecision>, PluginError> {
        let cap = Capability::Router;
        let indices = self.compiled.router.as_ref();
        let indices =
            indices.ok_or_else(|| self.error(Some(cap), PluginFailure::MissingExport(cap)))?;
        let size =
            request.context.data.len() + request.candidates.iter().map(String::len).sum::<usize>();
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_route(store, request)
        })?;
        self.finish(cap, called, |decision| {
            let size = decision.reason.len() + decision.next.iter().map(String::len).sum::<usize>();
            Ok((size, validate::route(&request.candidates, decision)?))
        })
    }

    /// Asks the approval policy what `request` needs.
    pub fn evaluate_approval(
        &self,
        request: &ApprovalRequest,
    ) -> Result<Called<ApprovalDecision>, PluginError> {
        let cap = Capability::ApprovalPolicy;
        let indices = self.compiled.approval.as_ref();
        let indices =
            indices.ok_or_else(|| self.error(Some(cap), PluginFailure::MissingExport(cap)))?;
        let size = request.context.data.len() + request.category.len() + request.requester.len();
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_evaluate(store, request)
        })?;
        self.finish(cap, called, |decision| {
            Ok((
                validate::approval_size(&decision),
                validate::approval(decision)?,
            ))
        })
    }

    /// Runs the step action.
    pub fn run_action(&self, request: &ActionRequest) -> Result<Called<ActionResult>, PluginError> {
        let cap = Capability::StepAction;
        let indices = self.compiled.action.as_ref();
        let indices =
            indices.ok_or_else(|| self.error(Some(cap), PluginFailure::MissingExport(cap)))?;
        let size = request.context.data.len() + request.params.len() + request.action.len();
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_run(store, request)
        })?;
        self.finish(cap, called, |output| {
            Ok((
                output.data.len() + output.note.len(),
                validate::action(output)?,
            ))
        })
    }

    /// Turns the guest's own result into ours: its error variant, the output cap, the contract.
    fn finish<W, T>(
        &self,
        cap: Capability,
        called: Called<Result<W, types::PluginError>>,
        check: impl FnOnce(W) -> Result<(usize, T), String>,
    ) -> Result<Called<T>, PluginError> {
        let Called {
            value,
            fuel_consumed,
            elapsed,
            logs,
            logs_dropped,
        } = called;
        let fail = |failure| self.error(Some(cap), failure);
        let answer = value.map_err(|e| fail(PluginFailure::Guest(guest_error(e))))?;
        let (size, value) =
            check(answer).map_err(|reason| fail(PluginFailure::BadOutput { reason }))?;
        let limit = self.limits.max_output_bytes;
        if size > limit {
            return Err(fail(PluginFailure::OutputTooLarge { size, limit }));
        }
        Ok(Called {
            value,
            fuel_consumed,
            elapsed,
            logs,
            logs_dropped,
        })
    }

    /// Instantiates on a fresh store within the limits and runs `call`.
    fn invoke<T>(
        &self,
        cap: Capability,
        context: &types::StepContext,
        input_size: usize,
        call: impl FnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<T>,
    ) -> Result<Called<T>, PluginError> {
        let limits = &self.limits;
        if input_size > limits.max_input_bytes {
            let failure = PluginFailure::InputTooLarge {
                size: input_size,
                limit: limits.max_input_bytes,
            };
            return Err(self.error(Some(cap), failure));
        }
        let span = tracing::debug_span!(
            "plugin.invoke",
            tenant = %self.id.tenant,
            plugin = %self.id.name,
            version = %&self.sha256[..12],
            capability = %cap,
            instance = %context.instance_id,
            step = %context.step_id,
        );
        let _entered = span.enter();
        let started = Instant::now();

        let state = CallState::new(
            Limiter::new(limits),
            self.config.clone(),
            self.grants.clone(),
            limits.max_log_lines,
        );
        let mut store = Store::new(&self.compiled.engine, state);
        store.limiter(|state| &mut state.limiter);
        let tick = self.compiled.epoch_tick;
        let ticks = limits.timeout.as_nanos().div_ceil(tick.as_nanos().max(1));
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1));
        if let Err(e) = store.set_fuel(limits.fuel) {
            let failure = PluginFailure::Host {
                reason: "cannot set fuel".to_string(),
                source: e.into(),
            };
            return Err(self.error(Some(cap), failure));
        }

        let result = self
            .compiled
            .pre
            .instantiate(&mut store)
            .and_then(|instance| call(&mut store, &instance));
        let fuel_left = store.get_fuel().unwrap_or(0);
        let fuel_consumed = limits.fuel.saturating_sub(fuel_left);
        match result {
            Ok(value) => {
                let (logs, logs_dropped) = store.into_data().into_logs();
                Ok(Called {
                    value,
                    fuel_consumed,
                    elapsed: started.elapsed(),
                    logs,
                    logs_dropped,
                })
            }
            Err(error) => {
                let failure = classify(error, store.data(), limits);
                tracing::debug!(%failure, fuel_consumed, "plugin.invoke failed");
                Err(self.error(Some(cap), failure))
            }
        }
    }
}

fn guest_error(error: types::PluginError) -> GuestError {
    match error {
        types::PluginError::Retryable(m) => GuestError::Retryable(m),
        types::PluginError::Permanent(m) => GuestError::Permanent(m),
        types::PluginError::InvalidInput(m) => GuestError::InvalidInput(m),
    }
}

/// Most of what a guest printed to stderr we keep in a trap message.
const STDERR_IN_MESSAGE: usize = 1000;

/// Names what stopped a call.
fn classify(error: wasmtime::Error, state: &CallState, limits: &PluginLimits) -> PluginFailure {
    if let Some(hit) = error.downcast_ref::<MemoryCapHit>() {
        return PluginFailure::MemoryCap {
            limit: hit.limit,
            desired: hit.desired,
        };
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return PluginFailure::Busy {
            reason: format!("{error}"),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginFailure::FuelExhausted {
            budget: limits.fuel,
        },
        Some(Trap::Interrupt) => PluginFailure::Deadline {
            limit: limits.timeout,
        },
        Some(Trap::StackOverflow) => PluginFailure::StackOverflow,
        trap => {
            let mut message = match trap {
                Some(trap) => trap.to_string(),
                None => format!("{error}"),
            };
            let stderr = state.stderr_text();
            if !stderr.is_empty() {
                let mut start = stderr.len().saturating_sub(STDERR_IN_MESSAGE);
                while !stderr.is_char_boundary(start) {
                    start += 1;
                }
                message = format!("{message}; the plugin wrote: {}", &stderr[start..]);
            }
            PluginFailure::Trap { message }
        }
    }
}
