//! Plugin calls: one path for every capability. A [`PluginCall`] from the core becomes the
//! contract's request, runs on the plugin pool against the version the instance is pinned to, and
//! comes back as the core's [`PluginAnswer`] or an [`EffectFailure`]. A new capability adds a
//! request and an answer here and nowhere else in the service.

use std::sync::Arc;

use super::pool::Placement;
use super::{Flowgate, ServiceError};
use crate::definition::StageOrder;
use crate::engine::{
    ActionOutput, Approver, CallUsage, EffectFailure, FailureKind, Instance, PluginAnswer,
    PluginCall, PluginRef, PluginRequest, RequiredStage, Requirement, Routed,
};
use crate::plugin::types::{
    self, ActionRequest, ApprovalRequest, ApprovalRequirement, IdempotencyKey, Money, RouteRequest,
    StepContext,
};
use crate::plugin::{LoadedPlugin, LogLine, PluginError, PluginId, short_version};

/// A plugin call's result as the core records it, with what a call that answered used.
pub(crate) type CallResult = (Result<PluginAnswer, EffectFailure>, Option<CallUsage>);

impl Flowgate {
    /// Calls the plugin version `instance` is pinned to for `call`, and counts the outcome.
    /// `Err` only when the call could not be made at all.
    pub(crate) async fn invoke(
        &self,
        instance: &Instance,
        call: &PluginCall,
    ) -> Result<CallResult, ServiceError> {
        match self.pinned(instance, &call.plugin) {
            Ok(plugin) => {
                self.invoke_on(plugin, instance, call, Placement::Pool)
                    .await
            }
            Err(missing) => {
                log_failed(instance, call, &missing);
                Ok((Err(missing), None))
            }
        }
    }

    /// Calls `plugin` for `call` in the tenant's share of the plugin pool, where `placement`
    /// says; a decision is recorded with its input (see `record`).
    pub(crate) async fn invoke_on(
        &self,
        plugin: Arc<LoadedPlugin>,
        instance: &Instance,
        call: &PluginCall,
        placement: Placement,
    ) -> Result<CallResult, ServiceError> {
        let context = context(instance, &call.step);
        let result = self
            .call_plugin(plugin.clone(), &instance.tenant, context, call, placement)
            .await?;
        match &result {
            (Ok(answer), usage) => {
                let fuel = usage.as_ref().map_or(0, |u| u.fuel);
                self.record_call(&plugin, instance, call, answer, fuel);
                self.shadow_call(instance, call, answer);
            }
            (Err(failed), _) => log_failed(instance, call, failed),
        }
        Ok(result)
    }

    /// Calls `plugin` for `call` in `context` in `tenant`'s share of the plugin pool, where
    /// `placement` says, and counts the outcome.
    pub(crate) async fn call_plugin(
        &self,
        plugin: Arc<LoadedPlugin>,
        tenant: &str,
        context: StepContext,
        call: &PluginCall,
        placement: Placement,
    ) -> Result<CallResult, ServiceError> {
        let request = call.request.clone();
        let capability = request.capability();
        let key_of = (context.instance_id.clone(), call.step.clone(), call.attempt);
        let result = self
            .shared
            .pool
            .run_placed(tenant, &call.plugin, placement, move || {
                let by = plugin_ref(&plugin);
                match answer(&plugin, context, request, key_of, &by) {
                    Ok((answer, usage)) => (Ok(answer), Some(usage)),
                    Err(e) => (Err(failure(&e, &by)), None),
                }
            })
            .await?;
        self.shared.telemetry.plugin_call(
            tenant,
            &call.plugin,
            capability.as_str(),
            result.0.is_ok(),
        );
        Ok(result)
    }

    /// The plugin version the instance is pinned to.
    pub(crate) fn pinned(
        &self,
        instance: &Instance,
        name: &str,
    ) -> Result<Arc<LoadedPlugin>, EffectFailure> {
        let id = PluginId::new(instance.tenant.clone(), name);
        let missing = |message: String| EffectFailure {
            message,
            kind: FailureKind::NotLoaded,
            plugin: None,
        };
        let Some(sha) = instance.plugins.get(name) else {
            return Err(missing(format!(
                "instance is not pinned to a version of plugin `{name}`"
            )));
        };
        self.shared.plugins.version(&id, sha).ok_or_else(|| {
            missing(format!(
                "plugin `{name}` version {} is not loaded; load it to resume",
                short_version(sha)
            ))
        })
    }
}

/// Makes the contract's request, calls the plugin and turns its answer into the core's.
fn answer(
    plugin: &LoadedPlugin,
    context: StepContext,
    request: PluginRequest,
    (instance_id, step_id, attempt): (String, String, u32),
    by: &PluginRef,
) -> Result<(PluginAnswer, CallUsage), PluginError> {
    let usage = |fuel: u64, logs: &[LogLine]| CallUsage {
        fuel,
        logs: logs.iter().map(log_line).collect(),
    };
    Ok(match request {
        PluginRequest::StepAction {
            action,
            params,
            key,
        } => {
            let request = ActionRequest {
                context,
                action,
                params: params.to_string(),
                idempotency: IdempotencyKey {
                    key,
                    instance_id,
                    step_id,
                    attempt,
                },
            };
            let call = plugin.run_action(&request)?;
            let used = usage(call.fuel_consumed, &call.logs);
            let done = call.value;
            let answer = PluginAnswer::StepAction(ActionOutput {
                data: done.data,
                note: done.note,
                plugin: by.clone(),
            });
            (answer, used)
        }
        PluginRequest::ApprovalPolicy {
            amount,
            currency,
            category,
            requester,
        } => {
            let request = ApprovalRequest {
                context,
                amount: amount.map(|minor_units| Money {
                    currency,
                    minor_units,
                }),
                category,
                requester,
            };
            let call = plugin.evaluate_approval(&request)?;
            let used = usage(call.fuel_consumed, &call.logs);
            let answer = PluginAnswer::ApprovalPolicy(requirement(call.value, by.clone()));
            (answer, used)
        }
        PluginRequest::Router { candidates } => {
            let routed = plugin.route(&RouteRequest {
                context,
                candidates,
            })?;
            let used = usage(routed.fuel_consumed, &routed.logs);
            let answer = PluginAnswer::Router(Routed {
                next: routed.value.next,
                reason: routed.value.reason,
                plugin: by.clone(),
            });
            (answer, used)
        }
    })
}

pub(crate) fn context(instance: &Instance, step: &str) -> StepContext {
    StepContext {
        tenant: instance.tenant.clone(),
        definition_id: instance.definition_id.clone(),
        definition_version: instance.definition_version,
        instance_id: instance.id.clone(),
        step_id: step.to_string(),
        data: serde_json::Value::Object(instance.data.clone()).to_string(),
    }
}

/// Logs a failed plugin call with the tenant, instance, step, plugin and version it concerns.
fn log_failed(instance: &Instance, call: &PluginCall, failed: &EffectFailure) {
    let version = failed.plugin.as_ref().map(|p| short_version(&p.sha256));
    tracing::warn!(
        tenant = %instance.tenant,
        instance = %instance.id,
        workflow = %instance.definition_id,
        step = %call.step,
        plugin = %call.plugin,
        version = version.unwrap_or("-"),
        attempt = call.attempt,
        kind = %failed.kind,
        blame = failed.blame().as_str(),
        error = %failed.message,
        "plugin call failed"
    );
}

fn plugin_ref(plugin: &LoadedPlugin) -> PluginRef {
    PluginRef {
        name: plugin.id().name.clone(),
        sha256: plugin.sha256().to_string(),
    }
}

fn failure(error: &PluginError, plugin: &PluginRef) -> EffectFailure {
    EffectFailure {
        message: error.to_string(),
        kind: error.kind(),
        plugin: Some(plugin.clone()),
    }
}

/// An approval policy's decision as the engine (and the API) says it.
pub(crate) fn requirement(decision: types::ApprovalDecision, plugin: PluginRef) -> Requirement {
    let (auto_approve, order, stages) = match decision.requirement {
        ApprovalRequirement::AutoApprove => (true, StageOrder::Sequential, Vec::new()),
        ApprovalRequirement::Stages((order, stages)) => {
            let order = match order {
                types::StageOrder::Sequential => StageOrder::Sequential,
                types::StageOrder::Parallel => StageOrder::Parallel,
            };
            let stages = stages
                .into_iter()
                .map(|s| RequiredStage {
                    name: s.name,
                    approvers: s
                        .approvers
                        .into_iter()
                        .map(|a| match a {
                            types::Approver::Role(r) => Approver::Role(r),
                            types::Approver::Person(p) => Approver::Person(p),
                        })
                        .collect(),
                    required: s.required,
                })
                .collect();
            (false, order, stages)
        }
    };
    Requirement {
        auto_approve,
        order,
        stages,
        reason: decision.reason,
        plugin: Some(plugin),
    }
}

/// A plugin's log line as the history keeps it: `info message key=value ...`.
fn log_line(line: &LogLine) -> String {
    use crate::plugin::LogLevel;
    let level = match line.level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let mut text = format!("{level} {}", line.message);
    for (key, value) in &line.fields {
        text.push_str(&format!(" {key}={value}"));
    }
    text
}
