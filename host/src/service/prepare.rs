//! Commands are applied before they reach the writer, and the decisions they lead to are taken
//! at once, so a command and its decisions commit in one transaction.
//!
//! A router or an approval-policy plugin only reads its input and answers. When a command reaches
//! such a step, the plugin version the instance is pinned to is asked right away, in the tenant's
//! share of the plugin pool (on the caller's own thread when the plugin's calls are short and the
//! share is free: see `pool::Placement`), and its answer applied too; the caller's answer then
//! already holds the tasks the decision opened, and nobody polls. The history is the one the outbox
//! path writes: the decision's events name the plugin and its version, with its reason.
//!
//! Only deterministic plugins decide here (nothing granted that varies between calls: clocks,
//! random numbers, files, the network), and only answers: a call that fails goes through the
//! outbox like a step action, where the driver retries it with backoff and raises an incident
//! when retries are exhausted. The writer never waits on a plugin.
//!
//! The state is read before the writer sees the command, so the writer keeps the prepared state
//! only if the instance is still at the version it was read at. Otherwise (another command got
//! there first) it applies the command afresh to the current state, and the decisions that
//! command reaches go through the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::pool::Placement;
use super::{Flowgate, ServiceError};
use crate::definition::Definition;
use crate::engine::{
    self, Applied, Command, Ctx, Effect, Instance, Millis, ParentLink, PluginCall, StartSpec,
};
use crate::plugin::PluginId;
use crate::store::IndexKeys;

/// Decisions one command may take before it commits: a guard against routes that loop.
const MAX_DECISIONS: usize = 64;

/// A command applied ahead of the writer.
pub(crate) struct Prepared {
    /// The version the state was read at; `None` for a new instance.
    pub base_version: Option<u64>,
    /// The index entries of the state read, so the store can diff without the old state.
    pub before: Option<IndexKeys>,
    pub instance: Instance,
    pub applied: Applied,
}

/// A start request.
pub(crate) struct StartRequest {
    pub tenant: String,
    pub definition: String,
    pub data: Map<String, Value>,
    pub started_by: String,
    pub key: Option<String>,
    pub parent: Option<ParentLink>,
    /// The process instance the start joins; none begins a new one.
    pub process: Option<String>,
}

impl Flowgate {
    /// Applies `command` to the instance as stored, and takes the decisions it reaches.
    pub(crate) async fn prepare_command(
        &self,
        tenant: &str,
        id: &str,
        command: Command,
        now: Millis,
    ) -> Result<Prepared, ServiceError> {
        let base = self.shared.committed(tenant, id)?.ok_or_else(|| {
            ServiceError::from(engine::CommandError::NotFound {
                what: "instance",
                id: id.to_string(),
            })
        })?;
        let base = Arc::unwrap_or_clone(base);
        let version = command.applies_under().unwrap_or(base.definition_version);
        let def = self
            .shared
            .definition(tenant, &base.definition_id, version)?;
        let (base_version, before) = (base.version, IndexKeys::of(&base));
        let (instance, applied) = engine::apply(
            Ctx {
                def: &def,
                now,
                calendar: &self.shared.calendar(tenant),
            },
            base,
            command,
        )?;
        let (instance, applied) = self.decide(&def, instance, applied, now).await;
        Ok(Prepared {
            base_version: Some(base_version),
            before: Some(before),
            instance,
            applied,
        })
    }

    /// Starts a new instance of the latest version, pinned to the plugins' current versions,
    /// and takes the decisions its first steps reach.
    pub(crate) async fn prepare_start(
        &self,
        req: &StartRequest,
        now: Millis,
    ) -> Result<Prepared, ServiceError> {
        let tenant = &req.tenant;
        let version = self
            .shared
            .latest_version(tenant, &req.definition)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "workflow",
                id: req.definition.clone(),
            })?;
        let def = self.shared.definition(tenant, &req.definition, version)?;
        let mut plugins = BTreeMap::new();
        for name in def.plugins() {
            let current = self
                .shared
                .plugins
                .current(&PluginId::new(tenant.clone(), name))
                .ok_or_else(|| ServiceError::Invalid {
                    field: "definition".to_string(),
                    message: format!(
                        "workflow `{}` uses plugin `{name}`, which tenant `{tenant}` does not have loaded",
                        def.id
                    ),
                })?;
            plugins.insert(name.to_string(), current.sha256().to_string());
        }
        let spec = StartSpec {
            id: uuid::Uuid::now_v7().to_string(),
            version,
            tenant: tenant.clone(),
            data: req.data.clone(),
            plugins,
            parent: req.parent.clone(),
            process: req.process.clone(),
            started_by: req.started_by.clone(),
        };
        let (instance, applied) = engine::start(
            Ctx {
                def: &def,
                now,
                calendar: &self.shared.calendar(tenant),
            },
            spec,
        )?;
        let (instance, applied) = self.decide(&def, instance, applied, now).await;
        Ok(Prepared {
            base_version: None,
            before: None,
            instance,
            applied,
        })
    }

    /// Takes every decision among `applied`'s effects that a deterministic plugin answers,
    /// applying each answer in turn; what is left goes to the outbox.
    async fn decide(
        &self,
        def: &Definition,
        mut instance: Instance,
        mut applied: Applied,
        now: Millis,
    ) -> (Instance, Applied) {
        // Effects before `looked` stay for the outbox.
        let mut looked = 0;
        for _ in 0..MAX_DECISIONS {
            let Some(at) = applied.effects[looked..]
                .iter()
                .position(
                    |e| matches!(e, Effect::CallPlugin(c) if c.request.capability().is_decision()),
                )
                .map(|offset| looked + offset)
            else {
                break;
            };
            let Effect::CallPlugin(call) = &applied.effects[at] else {
                break;
            };
            let Some(command) = self.decision(&instance, call).await else {
                looked = at + 1;
                continue;
            };
            // A copy: if the answer cannot be applied, the state before it stays.
            let calendar = self.shared.calendar(&instance.tenant);
            match engine::apply(
                Ctx {
                    def,
                    now,
                    calendar: &calendar,
                },
                instance.clone(),
                command,
            ) {
                Ok((next, more)) => {
                    applied.effects.remove(at);
                    applied.events.extend(more.events);
                    applied.effects.extend(more.effects);
                    instance = next;
                }
                Err(error) => {
                    tracing::warn!(%error, instance = %instance.id, step = %call.step, "decision not applied; it goes through the outbox");
                    looked = at + 1;
                }
            }
        }
        (instance, applied)
    }

    /// The command answering `call`, when a deterministic plugin answered it.
    async fn decision(&self, instance: &Instance, call: &PluginCall) -> Option<Command> {
        let plugin = self.pinned(instance, &call.plugin).ok()?;
        if !plugin.is_deterministic() {
            return None;
        }
        match self
            .invoke_on(plugin, instance, call, Placement::CallerIfShort)
            .await
        {
            Ok((Ok(answer), usage)) => Some(call.answered_with(Ok(answer), usage)),
            // Failures are retried with backoff from the outbox, or become incidents there.
            Ok((Err(_), _)) | Err(_) => None,
        }
    }
}
