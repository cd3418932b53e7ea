//! Record and replay: every decision a router or approval policy takes is kept with its exact
//! input (the plugin's newest [`DEFAULT_KEEP`] by default, `[recording] plugin_calls` in
//! `tenant.toml`), so that a candidate version can be run on the decisions production actually
//! took before it becomes current, and the differences shown side by side.
//!
//! A record needs no commit of its own: like an outbox clear, it rides along with the next
//! batch the writer commits, which is nearly always the one holding the decision itself. A
//! crash before that commit loses the record, not the decision.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use super::pool::Placement;
use super::{Flowgate, ServiceError};
use crate::engine::{Instance, PluginAnswer, PluginCall};
use crate::plugin::types::StepContext;
use crate::plugin::{LoadedPlugin, PluginId};
use crate::store::CallRecord;

/// Calls kept per plugin unless the tenant says otherwise.
pub const DEFAULT_KEEP: u64 = 1_000;

/// Records waiting beyond this many are dropped, oldest first (the store is failing).
pub(crate) const MAX_WAITING: usize = 10_000;

/// A replay reads at most this many records.
pub const MAX_REPLAY: usize = 10_000;

/// A decision as the history shows it, without the version that took it.
pub(crate) fn decision_json(answer: &PluginAnswer) -> serde_json::Value {
    let mut value = serde_json::to_value(answer).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("plugin");
        fields.remove("capability");
    }
    value
}

/// What a replay compares: the decision without its reason (wording may change freely).
fn substance(decision: &serde_json::Value) -> serde_json::Value {
    let mut value = decision.clone();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("reason");
    }
    value
}

/// Shadow calls kept per candidate to show, newest last.
const SHADOW_SHOWN: usize = 50;

/// A candidate running beside the current version on live decisions: its decisions are
/// compared with the ones applied, and never applied themselves.
pub(crate) struct Shadow {
    plugin: Arc<LoadedPlugin>,
    tally: Mutex<ShadowReport>,
}

/// What a shadow candidate decided on live calls, against the current version.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    /// The candidate's sha256.
    pub candidate: String,
    /// Live calls it ran beside.
    pub calls: u64,
    /// Calls on which it decided as the current version did.
    pub same: u64,
    /// Calls on which it decided otherwise; the newest are in `recent`.
    pub differ: u64,
    /// Calls on which it failed.
    pub errors: u64,
    /// The newest calls decided otherwise or failed, side by side with what was applied.
    #[schema(value_type = Vec<ReplayedCall>)]
    pub recent: std::collections::VecDeque<ReplayedCall>,
}

/// Which recorded calls a replay runs.
#[derive(Debug, Clone, Default)]
pub struct ReplayScope {
    /// The newest this many (default 100, at most [`MAX_REPLAY`]).
    pub last: Option<usize>,
    /// Only calls from this workflow.
    pub workflow: Option<String>,
    /// Only calls made at or after this time.
    pub since: Option<crate::engine::Millis>,
}

/// What a candidate version would have decided on recorded calls.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub plugin: String,
    /// The candidate's sha256.
    pub candidate: String,
    /// The version now current, if one is.
    pub current: Option<String>,
    /// Calls run again.
    pub replayed: usize,
    /// Calls on which the candidate decided as recorded (its reason may differ).
    pub same: usize,
    /// Calls on which it decided otherwise, side by side.
    pub differ: Vec<ReplayedCall>,
    /// Calls on which it failed (or refused the input).
    pub errors: Vec<ReplayedCall>,
    /// Recorded calls left out: their version was granted clocks, random numbers, files or
    /// the network, so a rerun does not see the same input.
    pub not_replayable: usize,
    /// Fuel the candidate used: in all, and at most on one call; and what the recorded calls
    /// used, for comparison.
    pub fuel: ReplayFuel,
}

/// Fuel a replay used.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReplayFuel {
    pub candidate_total: u64,
    pub candidate_max: u64,
    pub recorded_total: u64,
}

/// One replayed call whose outcome is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayedCall {
    pub instance: String,
    pub workflow: String,
    pub step: String,
    #[serde(with = "crate::engine::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: crate::engine::Millis,
    /// The version that decided then.
    pub recorded_by: String,
    /// The decision recorded then, as the history shows it.
    #[schema(value_type = Object)]
    pub recorded: serde_json::Value,
    /// The candidate's decision, when it took one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub candidate: Option<serde_json::Value>,
    /// The candidate's failure, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Flowgate {
    /// Sets how many calls per plugin the tenant keeps for replay (0 keeps none).
    pub fn set_recording(&self, tenant: &str, keep: u64) {
        self.shared
            .recording
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string(), keep);
    }

    fn keep(&self, tenant: &str) -> u64 {
        self.shared
            .recording
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .copied()
            .unwrap_or(DEFAULT_KEEP)
    }

    /// Runs `candidate` beside the plugin's current version on live decisions from now on
    /// (shadow mode), or stops doing so with `None`. Not kept across a restart by itself: the
    /// daemon sets it again from the candidates it keeps.
    pub fn set_shadow(&self, tenant: &str, plugin: &str, candidate: Option<Arc<LoadedPlugin>>) {
        let mut shadows = self
            .shared
            .shadows
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (tenant.to_string(), plugin.to_string());
        match candidate {
            Some(plugin) => {
                let same = shadows
                    .get(&key)
                    .is_some_and(|s| s.plugin.sha256() == plugin.sha256());
                if !same {
                    let tally = ShadowReport {
                        candidate: plugin.sha256().to_string(),
                        ..ShadowReport::default()
                    };
                    shadows.insert(
                        key,
                        Arc::new(Shadow {
                            plugin,
                            tally: Mutex::new(tally),
                        }),
                    );
                }
            }
            None => drop(shadows.remove(&key)),
        }
    }

    /// What the plugin's shadow candidate decided so far, if it has one.
    pub fn shadow_report(&self, tenant: &str, plugin: &str) -> Option<ShadowReport> {
        let shadows = self
            .shared
            .shadows
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let shadow = shadows.get(&(tenant.to_string(), plugin.to_string()))?;
        Some(
            shadow
                .tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }

    /// Runs the plugin's shadow candidate, if it has one, on a live call the current version
    /// answered; off the caller's path (the answer does not wait for it).
    pub(crate) fn shadow_call(
        &self,
        instance: &Instance,
        call: &PluginCall,
        answer: &PluginAnswer,
    ) {
        if !call.request.capability().is_decision() {
            return;
        }
        let shadow = {
            let shadows = self
                .shared
                .shadows
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match shadows.get(&(instance.tenant.clone(), call.plugin.clone())) {
                Some(shadow) => shadow.clone(),
                None => return,
            }
        };
        let record = CallRecord {
            tenant: instance.tenant.clone(),
            plugin: call.plugin.clone(),
            seq: 0,
            at: self.shared.clock.now(),
            sha256: instance
                .plugins
                .get(&call.plugin)
                .cloned()
                .unwrap_or_default(),
            instance: instance.id.clone(),
            workflow: instance.definition_id.clone(),
            workflow_version: instance.definition_version,
            step: call.step.clone(),
            request: call.request.clone(),
            data: String::new(),
            decision: decision_json(answer),
            fuel: 0,
            replayable: true,
        };
        let context = super::calls::context(instance, &call.step);
        let call = call.clone();
        let service = self.clone();
        tokio::spawn(async move {
            let ran = service
                .call_plugin(
                    shadow.plugin.clone(),
                    &record.tenant,
                    context,
                    &call,
                    Placement::Pool,
                )
                .await;
            let mut tally = shadow.tally.lock().unwrap_or_else(PoisonError::into_inner);
            tally.calls += 1;
            let shown = match ran {
                Ok((Ok(answer), _)) => {
                    let decided = decision_json(&answer);
                    if substance(&decided) == substance(&record.decision) {
                        tally.same += 1;
                        None
                    } else {
                        tally.differ += 1;
                        Some(shown(&record, Some(decided), None))
                    }
                }
                Ok((Err(failure), _)) => {
                    tally.errors += 1;
                    Some(shown(&record, None, Some(failure.message)))
                }
                Err(error) => {
                    tally.errors += 1;
                    Some(shown(&record, None, Some(error.to_string())))
                }
            };
            if let Some(call) = shown {
                if tally.recent.len() >= SHADOW_SHOWN {
                    tally.recent.pop_front();
                }
                tally.recent.push_back(call);
            }
        });
    }

    /// Keeps a decision with its input, for the next commit.
    pub(crate) fn record_call(
        &self,
        plugin: &LoadedPlugin,
        instance: &Instance,
        call: &PluginCall,
        answer: &PluginAnswer,
        fuel: u64,
    ) {
        if !call.request.capability().is_decision() {
            return;
        }
        let keep = self.keep(&instance.tenant);
        if keep == 0 {
            return;
        }
        let record = CallRecord {
            tenant: instance.tenant.clone(),
            plugin: call.plugin.clone(),
            seq: 0,
            at: self.shared.clock.now(),
            sha256: plugin.sha256().to_string(),
            instance: instance.id.clone(),
            workflow: instance.definition_id.clone(),
            workflow_version: instance.definition_version,
            step: call.step.clone(),
            request: call.request.clone(),
            data: serde_json::Value::Object(instance.data.clone()).to_string(),
            decision: decision_json(answer),
            fuel,
            replayable: plugin.is_deterministic(),
        };
        self.shared.recorded.push((record, keep));
    }

    /// The plugin's recorded calls, newest first.
    pub fn call_records(
        &self,
        tenant: &str,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, ServiceError> {
        Ok(self.shared.store.call_records(tenant, plugin, limit)?)
    }

    /// Runs `candidate` (a version of `plugin` that is not current) on recorded calls, in the
    /// sandbox and on the plugin pool in the tenant's share, and reports where it decides
    /// otherwise than the recorded version did.
    pub async fn replay(
        &self,
        tenant: &str,
        plugin: &str,
        candidate: Arc<LoadedPlugin>,
        scope: &ReplayScope,
    ) -> Result<ReplayReport, ServiceError> {
        let last = scope.last.unwrap_or(100).clamp(1, MAX_REPLAY);
        // Without a filter, the newest `last` are all that is read.
        let filtered = scope.workflow.is_some() || scope.since.is_some();
        let read = if filtered { MAX_REPLAY } else { last };
        let mut records = self.shared.store.call_records(tenant, plugin, read)?;
        records.retain(|r| {
            scope.workflow.as_ref().is_none_or(|w| *w == r.workflow)
                && scope.since.is_none_or(|since| r.at >= since)
        });
        records.truncate(last);
        let current = self
            .shared
            .plugins
            .current(&PluginId::new(tenant, plugin))
            .map(|p| p.sha256().to_string());
        let mut report = ReplayReport {
            plugin: plugin.to_string(),
            candidate: candidate.sha256().to_string(),
            current,
            replayed: 0,
            same: 0,
            differ: Vec::new(),
            errors: Vec::new(),
            not_replayable: 0,
            fuel: ReplayFuel::default(),
        };
        // Oldest first, as they happened.
        for record in records.into_iter().rev() {
            if !record.replayable {
                report.not_replayable += 1;
                continue;
            }
            let (context, call) = match replayed_input(&record) {
                Ok(input) => input,
                Err(message) => {
                    report.errors.push(shown(&record, None, Some(message)));
                    continue;
                }
            };
            let (result, usage) = self
                .call_plugin(candidate.clone(), tenant, context, &call, Placement::Pool)
                .await?;
            report.replayed += 1;
            report.fuel.recorded_total += record.fuel;
            if let Some(usage) = &usage {
                report.fuel.candidate_total += usage.fuel;
                report.fuel.candidate_max = report.fuel.candidate_max.max(usage.fuel);
            }
            match result {
                Ok(answer) => {
                    let decided = decision_json(&answer);
                    if substance(&decided) == substance(&record.decision) {
                        report.same += 1;
                    } else {
                        report.differ.push(shown(&record, Some(decided), None));
                    }
                }
                Err(failure) => {
                    report
                        .errors
                        .push(shown(&record, None, Some(failure.message)));
                }
            }
        }
        Ok(report)
    }
}

/// The context and call a record was made from, as the plugin saw them.
fn replayed_input(record: &CallRecord) -> Result<(StepContext, PluginCall), String> {
    let data: serde_json::Value = serde_json::from_str(&record.data)
        .map_err(|e| format!("the recorded instance data is not JSON: {e}"))?;
    let context = StepContext {
        tenant: record.tenant.clone(),
        definition_id: record.workflow.clone(),
        definition_version: record.workflow_version,
        instance_id: record.instance.clone(),
        step_id: record.step.clone(),
        data: data.to_string(),
    };
    let call = PluginCall {
        token: 0,
        activation: 0,
        attempt: 1,
        step: record.step.clone(),
        plugin: record.plugin.clone(),
        request: record.request.clone(),
    };
    Ok((context, call))
}

fn shown(
    record: &CallRecord,
    candidate: Option<serde_json::Value>,
    error: Option<String>,
) -> ReplayedCall {
    ReplayedCall {
        instance: record.instance.clone(),
        workflow: record.workflow.clone(),
        step: record.step.clone(),
        at: record.at,
        recorded_by: record.sha256.clone(),
        recorded: record.decision.clone(),
        candidate,
        error,
    }
}
