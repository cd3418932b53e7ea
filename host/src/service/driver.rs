//! The driver: carries out committed effects (plugin calls, sub-workflows, notifications) and
//! fires due timers, reporting back with commands. Effects are carried out at least once: an
//! entry leaves the outbox in the same transaction as the command reporting its result, so a
//! crash in between repeats the effect with the same idempotency key.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;

use super::writer::Request;
use super::{Delivery, Flowgate, ServiceError};
use crate::definition::StageOrder;
use crate::engine::{
    ActionOutput, Approver, Command, Effect, EffectFailure, Instance, PluginRef, RequiredStage,
    Requirement, Routed,
};
use crate::plugin::types::{
    self, ActionRequest, ApprovalRequest, ApprovalRequirement, IdempotencyKey, Money, RouteRequest,
    StepContext,
};
use crate::plugin::{LoadedPlugin, PluginError, PluginId};
use crate::store::OutboxEntry;

/// Entries and timers read per tenant per pass.
const PAGE: usize = 256;

impl Flowgate {
    /// Carries out pending effects and fires due timers, once; returns how many it handled.
    pub async fn step(&self) -> Result<usize, ServiceError> {
        let now = self.shared.clock.now();
        let mut work = JoinSet::new();
        let mut count = 0;
        for tenant in self.shared.store.tenants()? {
            for due in self.shared.store.due_timers(&tenant, now, PAGE)? {
                let key = (
                    tenant.clone(),
                    format!("timer:{}:{}", due.instance, due.timer),
                );
                if !self.claim(&key) {
                    continue;
                }
                count += 1;
                let this = self.clone();
                let tenant = tenant.clone();
                work.spawn(async move {
                    let command = Command::TimerFired { timer: due.timer };
                    let result = this.command(&tenant, &due.instance, command).await;
                    this.release(&key);
                    result.map(|_| ())
                });
            }
            for entry in self.shared.store.due_outbox(&tenant, now, PAGE)? {
                let key = (tenant.clone(), format!("outbox:{}", entry.id));
                if !self.claim(&key) {
                    continue;
                }
                count += 1;
                let this = self.clone();
                let tenant = tenant.clone();
                let (id, attempts) = (entry.id, entry.attempts);
                work.spawn(async move {
                    let result = this.execute(entry).await;
                    if result.is_err() {
                        this.retry_later(&tenant, id, attempts + 1).await;
                    }
                    this.release(&key);
                    result
                });
            }
        }
        while let Some(done) = work.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "driver: an effect or timer failed; it stays pending")
                }
                Err(error) => tracing::error!(%error, "driver: a task panicked"),
            }
        }
        Ok(count)
    }

    /// Steps until nothing is pending (for the CLI and tests). Timers not yet due stay armed.
    pub async fn run_until_idle(&self) -> Result<usize, ServiceError> {
        let mut total = 0;
        for _ in 0..10_000 {
            let done = self.step().await?;
            if done == 0 {
                return Ok(total);
            }
            total += done;
        }
        Err(ServiceError::Unavailable(
            "the driver did not settle after 10,000 passes".to_string(),
        ))
    }

    /// Runs the driver until `stop` resolves: after every commit, and at least every `tick`.
    pub async fn run_driver(&self, tick: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(error) = self.step().await {
                tracing::error!(%error, "driver: pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Stores a failed attempt: the entry waits 1 s, 2 s, 4 s ... up to 5 minutes before the
    /// next, across restarts too. If that cannot be stored, the entry is simply due again.
    async fn retry_later(&self, tenant: &str, id: u64, attempts: u32) {
        let wait = (1_000u64 << attempts.saturating_sub(1).min(20)).min(300_000);
        let due_at = self.shared.clock.now().saturating_add(wait);
        let tenant = tenant.to_string();
        let stored = self
            .send("retry", |reply| Request::Retry {
                tenant,
                outbox: id,
                attempts,
                due_at,
                reply,
            })
            .await;
        if let Err(error) = stored {
            tracing::warn!(%error, outbox = id, "driver: cannot store a retry time");
        }
    }

    fn claim(&self, key: &(String, String)) -> bool {
        let mut set = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.insert(key.clone())
    }

    fn release(&self, key: &(String, String)) {
        let mut set = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.remove(key);
    }

    /// Carries out one outbox entry and reports back.
    async fn execute(&self, entry: OutboxEntry) -> Result<(), ServiceError> {
        let OutboxEntry {
            id,
            tenant,
            instance,
            effect,
            ..
        } = entry;
        let done = Some(id);
        let (tenant, instance) = (tenant.as_str(), instance.as_str());
        let report = |command: Command| async move {
            self.command_done(tenant, instance, command, done)
                .await
                .map(|_| ())
        };
        let Some(current) = self.shared.store.instance(tenant, instance)? else {
            return self.mark_done(tenant, id).await;
        };
        match effect {
            Effect::RunAction {
                token,
                activation,
                attempt,
                step,
                plugin,
                action,
                params,
                key,
            } => {
                let request = ActionRequest {
                    context: context(&current, &step),
                    action,
                    params: params.to_string(),
                    idempotency: IdempotencyKey {
                        key,
                        instance_id: current.id.clone(),
                        step_id: step,
                        attempt,
                    },
                };
                let result = self
                    .call_plugin(&current, &plugin, "step-action", move |p, by| {
                        p.run_action(&request).map(|c| ActionOutput {
                            data: c.value.data,
                            note: c.value.note,
                            plugin: by,
                        })
                    })
                    .await?;
                report(Command::ActionDone {
                    token,
                    activation,
                    attempt,
                    result,
                })
                .await
            }
            Effect::EvaluatePolicy {
                token,
                activation,
                attempt,
                step,
                plugin,
                amount,
                currency,
                category,
                requester,
            } => {
                let request = ApprovalRequest {
                    context: context(&current, &step),
                    amount: amount.map(|minor_units| Money {
                        currency,
                        minor_units,
                    }),
                    category,
                    requester,
                };
                let result = self
                    .call_plugin(&current, &plugin, "approval-policy", move |p, by| {
                        p.evaluate_approval(&request)
                            .map(|c| requirement(c.value, by))
                    })
                    .await?;
                report(Command::PolicyDone {
                    token,
                    activation,
                    attempt,
                    result,
                })
                .await
            }
            Effect::EvaluateRoute {
                token,
                activation,
                attempt,
                step,
                plugin,
                candidates,
            } => {
                let request = RouteRequest {
                    context: context(&current, &step),
                    candidates,
                };
                let result = self
                    .call_plugin(&current, &plugin, "router", move |p, by| {
                        p.route(&request).map(|c| Routed {
                            next: c.value.next,
                            reason: c.value.reason,
                            plugin: by,
                        })
                    })
                    .await?;
                report(Command::RouteDone {
                    token,
                    activation,
                    attempt,
                    result,
                })
                .await
            }
            Effect::StartChild {
                token,
                activation,
                workflow,
                data,
                wait,
            } => {
                let parent = wait.then(|| crate::engine::ParentLink {
                    instance: current.id.clone(),
                    token,
                    activation,
                });
                // Keyed by the outbox entry: carrying the effect out again finds the same child.
                let key = Some(format!("child-of:{}:{id}", current.id));
                self.start_child(tenant, &workflow, data, &current.started_by, key, parent)
                    .await?;
                self.mark_done(tenant, id).await
            }
            Effect::NotifyParent {
                parent,
                outcome,
                data,
            } => {
                let command = Command::ChildFinished {
                    token: parent.token,
                    activation: parent.activation,
                    child: current.id.clone(),
                    outcome,
                    data,
                };
                match self.command(tenant, &parent.instance, command).await {
                    Ok(_) | Err(ServiceError::Command(_)) => self.mark_done(tenant, id).await,
                    Err(other) => Err(other),
                }
            }
            Effect::Notify(notification) => {
                let delivery = Delivery {
                    id,
                    tenant: tenant.to_string(),
                    instance: current.id.clone(),
                    notification,
                };
                match self.shared.notifier.deliver(&delivery).await {
                    Ok(()) => self.mark_done(tenant, id).await,
                    Err(error) => Err(ServiceError::Unavailable(format!(
                        "notification {id} not delivered: {error}"
                    ))),
                }
            }
        }
    }

    async fn mark_done(&self, tenant: &str, outbox: u64) -> Result<(), ServiceError> {
        let tenant = tenant.to_string();
        self.send("done", |reply| Request::Done {
            tenant,
            outbox,
            reply,
        })
        .await
    }

    /// Calls the plugin version the instance is pinned to, on the blocking pool, and counts the
    /// outcome. A failure is the engine's to handle (retry, incident), so it is a value here.
    async fn call_plugin<T: Send + 'static>(
        &self,
        instance: &Instance,
        name: &str,
        capability: &'static str,
        call: impl FnOnce(&LoadedPlugin, PluginRef) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<Result<T, EffectFailure>, ServiceError> {
        let result = match self.pinned(instance, name) {
            Ok(plugin) => {
                blocking(move || {
                    let by = plugin_ref(&plugin);
                    call(&plugin, by.clone()).map_err(|e| failure(&e, &by))
                })
                .await?
            }
            Err(missing) => Err(missing),
        };
        self.shared
            .telemetry
            .plugin_call(&instance.tenant, name, capability, result.is_ok());
        Ok(result)
    }

    /// The plugin version the instance is pinned to.
    fn pinned(&self, instance: &Instance, name: &str) -> Result<Arc<LoadedPlugin>, EffectFailure> {
        let id = PluginId::new(instance.tenant.clone(), name);
        let missing = |message: String| EffectFailure {
            message,
            retryable: false,
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
                &sha[..sha.len().min(12)]
            ))
        })
    }
}

/// Runs a plugin call on the blocking pool: wasm is CPU work.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("plugin call task failed: {e}")))
}

fn context(instance: &Instance, step: &str) -> StepContext {
    StepContext {
        tenant: instance.tenant.clone(),
        definition_id: instance.definition_id.clone(),
        definition_version: instance.definition_version,
        instance_id: instance.id.clone(),
        step_id: step.to_string(),
        data: serde_json::Value::Object(instance.data.clone()).to_string(),
    }
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
        retryable: error.is_retryable(),
        plugin: Some(plugin.clone()),
    }
}

fn requirement(decision: types::ApprovalDecision, plugin: PluginRef) -> Requirement {
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
