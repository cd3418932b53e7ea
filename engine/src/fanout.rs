//! Fan-out: a sub-workflow step with `for_each` starts one instance per element of a list in the
//! data and waits until its join is met (all of them, any one, or `required` of them
//! completed). The instances still running then are cancelled; when too many end otherwise for
//! the join to be met, the step goes on at once with outcome `rejected` (or `cancelled`).

use serde_json::{Map, Value};

use super::command::CommandError;
use super::effect::Effect;
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{EndedChild, FanOut, Wait};
use crate::definition::{EndOutcome, MAX_FAN_OUT, Step, SubworkflowStep};

impl Run<'_> {
    /// Token `id` entered fan-out step `sub`, whose list is the data field `list`.
    pub(crate) fn enter_fan_out(
        &mut self,
        id: u64,
        activation: u64,
        sub: &SubworkflowStep,
        list: &str,
    ) -> Result<(), CommandError> {
        let elements = match crate::data_path(&self.inst.data, list) {
            Some(Value::Array(elements)) => elements.clone(),
            Some(other) => {
                self.engine_incident(
                    id,
                    format!(
                        "`{list}` must be a list to start one `{}` per element, got {}",
                        sub.workflow,
                        type_name(other)
                    ),
                );
                return Ok(());
            }
            None => {
                self.engine_incident(
                    id,
                    format!(
                        "the data has no `{list}` to start one `{}` per element",
                        sub.workflow
                    ),
                );
                return Ok(());
            }
        };
        if elements.len() > MAX_FAN_OUT {
            self.engine_incident(
                id,
                format!(
                    "`{list}` has {} elements; a fan-out starts at most {MAX_FAN_OUT}",
                    elements.len()
                ),
            );
            return Ok(());
        }
        let count = elements.len() as u32;
        let required = sub.required_of(count);
        if sub.wait && required > count {
            self.engine_incident(
                id,
                format!("`{list}` has {count} elements, and the join needs {required} to complete"),
            );
            return Ok(());
        }
        let base = self.child_input(sub);
        let children = elements
            .into_iter()
            .map(|element| {
                let mut data = base.clone();
                data.insert(sub.item_key().to_string(), element);
                data
            })
            .collect::<Vec<_>>();
        self.emit(
            Actor::System,
            EventKind::SubworkflowStarted {
                step: sub.id.clone(),
                workflow: sub.workflow.clone(),
                count: Some(count),
            },
            None,
        );
        if !children.is_empty() {
            self.effect(Effect::StartChildren {
                token: id,
                activation,
                workflow: sub.workflow.clone(),
                children,
                wait: sub.wait,
            });
        }
        if !sub.wait {
            return self.advance(id, None, Actor::System, None);
        }
        let fan = FanOut {
            started: count,
            required,
            ended: Default::default(),
        };
        if count == 0 {
            // An empty list under `all`: nothing to wait for.
            return self.leave_fan_out(id, sub, fan);
        }
        self.set_wait(id, Wait::Children(fan));
        Ok(())
    }

    /// Instance `child`, started for element `index` of token `token`'s fan-out, ended.
    pub(crate) fn fan_out_child_finished(
        &mut self,
        token: u64,
        index: u32,
        child: &str,
        outcome: EndOutcome,
        data: Map<String, Value>,
    ) -> Result<(), CommandError> {
        let Some(Step::Subworkflow(sub)) = self.token_step(token) else {
            return Ok(());
        };
        let sub = sub.clone();
        let Some(Wait::Children(fan)) = self.inst.tokens.get_mut(&token).map(|t| &mut t.wait)
        else {
            return Ok(());
        };
        if index >= fan.started || fan.ended_at(index).is_some() {
            // Told twice (the child's end was carried out again): already counted.
            return Ok(());
        }
        fan.ended.push(EndedChild {
            index,
            instance: child.to_string(),
            outcome,
            data,
        });
        let fan = fan.clone();
        self.emit(
            Actor::System,
            EventKind::SubworkflowFinished {
                step: sub.id.clone(),
                child: child.to_string(),
                outcome: outcome.to_string(),
            },
            None,
        );
        let met = fan.completed() >= fan.required;
        let out_of_reach = fan.completed() + fan.running() < fan.required;
        if met || out_of_reach {
            self.leave_fan_out(token, &sub, fan)?;
        }
        Ok(())
    }

    /// The join is met, or cannot be any more: the outputs are merged, the instances still
    /// running are cancelled, and the token goes on.
    fn leave_fan_out(
        &mut self,
        token: u64,
        sub: &SubworkflowStep,
        fan: FanOut,
    ) -> Result<(), CommandError> {
        let completed = fan.completed();
        let outcome = if completed >= fan.required {
            EndOutcome::Completed
        } else if fan.ended.iter().any(|c| c.outcome == EndOutcome::Rejected) {
            EndOutcome::Rejected
        } else {
            EndOutcome::Cancelled
        };
        self.emit(
            Actor::System,
            EventKind::BranchJoined {
                step: sub.id.clone(),
                arrived: completed,
                required: fan.required,
            },
            None,
        );
        if let Some(key) = &sub.output {
            let outputs = (0..fan.started)
                .map(|i| {
                    fan.ended_at(i)
                        .map_or(Value::Null, |c| Value::Object(c.data.clone()))
                })
                .collect();
            self.merge(
                Map::from_iter([(key.clone(), Value::Array(outputs))]),
                Actor::System,
            );
        }
        if fan.running() > 0 {
            self.cancel_children(token, "the fan-out no longer waits for it");
        }
        let outcome = outcome.to_string();
        self.advance(token, Some(&outcome), Actor::System, None)
    }

    /// Asks for the sub-workflows that token `token` waits for to be cancelled.
    pub(crate) fn cancel_children(&mut self, token: u64, reason: &str) {
        let Some(activation) = self.inst.tokens.get(&token).map(|t| t.activation) else {
            return;
        };
        self.effect(Effect::CancelChildren {
            token,
            activation,
            reason: reason.to_string(),
        });
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}
