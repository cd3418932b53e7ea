//! One instance of a plugin and the calls made on it, each re-armed with its own fuel, deadline
//! and caps, and each failure classified into a [`PluginFailure`].

use std::time::Instant;

use wasmtime::component::Instance;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::v0_1::wire;
use super::called::{ActionResult, Called};
use super::deadline::CallClock;
use super::error::{GuestError, PluginError, PluginFailure};
use super::limits::{Limiter, MemoryCapHit, PluginLimits};
use super::loaded::LoadedPlugin;
use super::runtime::{EpochTicker, Running};
use super::state::CallState;
use super::types::{
    self, ActionRequest, ApprovalDecision, ApprovalRequest, RouteDecision, RouteRequest,
};
use super::{Capability, validate};

/// A live instance of a plugin; see [`LoadedPlugin::session`].
pub struct PluginSession<'a> {
    plugin: &'a LoadedPlugin,
    store: Store<CallState>,
    instance: Instance,
}

impl std::fmt::Debug for PluginSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSession")
            .field("plugin", self.plugin)
            .finish_non_exhaustive()
    }
}

impl<'a> PluginSession<'a> {
    /// Instantiates `plugin` on a fresh store.
    pub(crate) fn open(
        plugin: &'a LoadedPlugin,
        capability: Option<Capability>,
    ) -> Result<Self, PluginError> {
        let (config, grants, limits) = plugin.settings_parts();
        let state = CallState::new(
            Limiter::new(limits),
            config.clone(),
            grants.clone(),
            limits.max_log_lines,
        );
        let compiled = plugin.compiled();
        let mut store = Store::new(&compiled.engine, state);
        store.limiter(|state| &mut state.limiter);
        // At the deadline in wall time, the time the call waited for a CPU is given back.
        store.epoch_deadline_callback(|ctx| {
            Ok(match ctx.data().clock.and_then(|clock| clock.next()) {
                Some(ticks) => UpdateDeadline::Continue(ticks),
                None => UpdateDeadline::Interrupt,
            })
        });
        // Instantiation runs guest initializers: it is armed like a call.
        let _running = arm(&mut store, limits, &compiled.ticker)
            .map_err(|failure| plugin.error(capability, failure))?;
        match compiled.pre.instantiate(&mut store) {
            Ok(instance) => Ok(PluginSession {
                plugin,
                store,
                instance,
            }),
            Err(error) => {
                let failure = classify(error, store.data(), limits);
                Err(plugin.error(capability, failure))
            }
        }
    }

    /// Asks the router to choose among `request.candidates`.
    pub fn route(&mut self, request: &RouteRequest) -> Result<Called<RouteDecision>, PluginError> {
        let cap = Capability::Router;
        let Some(indices) = self.plugin.compiled().router.clone() else {
            return Err(self.missing(cap));
        };
        let size =
            request.context.data.len() + request.candidates.iter().map(String::len).sum::<usize>();
        let sent = wire::RouteRequest::from(request);
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_route(store, &sent)
        })?;
        self.finish(cap, called, |decision| {
            let decision = RouteDecision::from(decision);
            let size = decision.reason.len() + decision.next.iter().map(String::len).sum::<usize>();
            Ok((size, validate::route(&request.candidates, decision)?))
        })
    }

    /// Asks the approval policy what `request` needs.
    pub fn evaluate_approval(
        &mut self,
        request: &ApprovalRequest,
    ) -> Result<Called<ApprovalDecision>, PluginError> {
        let cap = Capability::ApprovalPolicy;
        let Some(indices) = self.plugin.compiled().approval.clone() else {
            return Err(self.missing(cap));
        };
        let size = request.context.data.len() + request.category.len() + request.requester.len();
        let sent = wire::ApprovalRequest::from(request);
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices
                .load(&mut *store, instance)?
                .call_evaluate(store, &sent)
        })?;
        self.finish(cap, called, |decision| {
            let decision = ApprovalDecision::from(decision);
            let size = validate::approval_size(&decision);
            Ok((size, validate::approval(decision)?))
        })
    }

    /// Runs the step action.
    pub fn run_action(
        &mut self,
        request: &ActionRequest,
    ) -> Result<Called<ActionResult>, PluginError> {
        let cap = Capability::StepAction;
        let Some(indices) = self.plugin.compiled().action.clone() else {
            return Err(self.missing(cap));
        };
        let size = request.context.data.len() + request.params.len() + request.action.len();
        let sent = wire::ActionRequest::from(request);
        // Outbound requests carry the key of the step activation, the same on every attempt.
        let key = &request.idempotency;
        let activation = key
            .key
            .strip_suffix(&format!("/{}", key.attempt))
            .unwrap_or(&key.key);
        self.store.data_mut().action_key = Some(activation.into());
        let called = self.invoke(cap, &request.context, size, |store, instance| {
            indices.load(&mut *store, instance)?.call_run(store, &sent)
        });
        self.store.data_mut().action_key = None;
        let called = called?;
        self.finish(cap, called, |output| {
            let output = types::ActionOutput::from(output);
            let size = output.data.len() + output.note.len();
            Ok((size, validate::action(output)?))
        })
    }

    fn missing(&self, cap: Capability) -> PluginError {
        self.plugin
            .error(Some(cap), PluginFailure::MissingExport(cap))
    }

    /// Re-arms the store and runs `call` on the instance.
    fn invoke<T>(
        &mut self,
        cap: Capability,
        context: &types::StepContext,
        input_size: usize,
        call: impl FnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<T>,
    ) -> Result<Called<T>, PluginError> {
        let plugin = self.plugin;
        let limits = plugin.limits();
        if input_size > limits.max_input_bytes {
            let failure = PluginFailure::InputTooLarge {
                size: input_size,
                limit: limits.max_input_bytes,
            };
            return Err(plugin.error(Some(cap), failure));
        }
        let span = tracing::debug_span!(
            "plugin.invoke",
            tenant = %plugin.id().tenant,
            plugin = %plugin.id().name,
            version = %&plugin.sha256()[..12],
            capability = %cap,
            instance = %context.instance_id,
            step = %context.step_id,
        );
        let _entered = span.enter();
        let started = Instant::now();
        let _running = arm(&mut self.store, limits, &plugin.compiled().ticker)
            .map_err(|failure| plugin.error(Some(cap), failure))?;

        let result = call(&mut self.store, &self.instance);
        let fuel_left = self.store.get_fuel().unwrap_or(0);
        let fuel_consumed = limits.fuel.saturating_sub(fuel_left);
        match result {
            Ok(value) => {
                let (logs, logs_dropped) = self.store.data_mut().take_logs();
                Ok(Called {
                    value,
                    fuel_consumed,
                    elapsed: started.elapsed(),
                    logs,
                    logs_dropped,
                })
            }
            Err(error) => {
                let failure = classify(error, self.store.data(), limits);
                tracing::debug!(%failure, fuel_consumed, "plugin.invoke failed");
                Err(plugin.error(Some(cap), failure))
            }
        }
    }

    /// Turns the guest's own result into ours: its error variant, the output cap, the contract.
    fn finish<W, T>(
        &self,
        cap: Capability,
        called: Called<Result<W, wire::PluginError>>,
        check: impl FnOnce(W) -> Result<(usize, T), String>,
    ) -> Result<Called<T>, PluginError> {
        let Called {
            value,
            fuel_consumed,
            elapsed,
            logs,
            logs_dropped,
        } = called;
        let fail = |failure| self.plugin.error(Some(cap), failure);
        let answer = value.map_err(|e| {
            let mut error = GuestError::from(e);
            // What the host refused on the plugin's behalf (an outbound request) is why.
            let host_said: Vec<&str> = logs
                .iter()
                .filter(|line| {
                    line.fields
                        .iter()
                        .any(|(k, v)| k == "source" && v == "http")
                })
                .map(|line| line.message.as_str())
                .collect();
            if !host_said.is_empty() {
                error.add_context(&format!("the host: {}", host_said.join("; ")));
            }
            fail(PluginFailure::Guest(error))
        })?;
        let (size, value) =
            check(answer).map_err(|reason| fail(PluginFailure::BadOutput { reason }))?;
        let limit = self.plugin.limits().max_output_bytes;
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
}

/// Gives the store a full fuel budget and a deadline `limits.timeout` from now (see
/// [`CallClock`] for what counts), and marks a call running until the guard it returns is
/// dropped, so that the epoch ticks.
fn arm<'t>(
    store: &mut Store<CallState>,
    limits: &PluginLimits,
    ticker: &'t EpochTicker,
) -> Result<Running<'t>, PluginFailure> {
    let running = ticker.running();
    let clock = CallClock::start(limits.timeout, ticker.tick);
    store.set_epoch_deadline(clock.first());
    store.data_mut().clock = Some(clock);
    store
        .set_fuel(limits.fuel)
        .map_err(|e| PluginFailure::Host {
            reason: "cannot set fuel".to_string(),
            source: e.into(),
        })?;
    Ok(running)
}

/// Whether the trap's backtrace is one, two or three functions calling each other all the way
/// down. A Rust guest keeps part of its stack in linear memory; when that stack overflows it
/// wraps below address 0 and traps as an out-of-bounds access rather than a stack overflow.
fn recursing(error: &wasmtime::Error) -> bool {
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = trace.frames();
    let distinct: std::collections::BTreeSet<u32> = frames.iter().map(|f| f.func_index()).collect();
    frames.len() >= RECURSION_FRAMES && distinct.len() <= 3
}

/// Frames the backtrace must have for [`recursing`] (it keeps at most [`super::runtime::BACKTRACE_FRAMES`]).
const RECURSION_FRAMES: usize = 24;

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
        Some(Trap::MemoryOutOfBounds) if recursing(&error) => PluginFailure::StackOverflow,
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
