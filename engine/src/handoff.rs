//! Hand-offs between workflows of a process: an end step with `then` starts the next workflow
//! and ends its instance once that one runs; a start that is refused (the workflow is not
//! deployed, its start data does not fit) stops the step with an incident, so a person sees it,
//! fixes the cause and retries, instead of the engine trying again for ever.

use super::command::CommandError;
use super::effect::Effect;
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{Incident, Wait};
use crate::definition::{NextWorkflow, Step};

impl Run<'_> {
    /// Token `id` reached `end`, which starts `next`: the other branches stop, the next
    /// workflow is asked for, and the token waits for it to run.
    pub(crate) fn hand_on(&mut self, id: u64, activation: u64, next: &NextWorkflow) {
        let others: Vec<u64> = self
            .inst
            .tokens
            .keys()
            .copied()
            .filter(|t| *t != id)
            .collect();
        for other in others {
            self.drop_token(other);
        }
        self.inst.forks.clear();
        if let Some(token) = self.inst.tokens.get_mut(&id) {
            token.forks.clear();
        }
        let data = if next.data.is_empty() {
            self.inst.data.clone()
        } else {
            next.data
                .iter()
                .filter_map(|(field, path)| {
                    crate::data_path(&self.inst.data, path).map(|v| (field.clone(), v.clone()))
                })
                .collect()
        };
        self.emit(
            Actor::System,
            EventKind::NextStarted {
                workflow: next.workflow.clone(),
            },
            None,
        );
        let process = self.inst.process_id().to_string();
        self.effect(Effect::StartNext {
            workflow: next.workflow.clone(),
            data,
            process,
            token: Some(id),
            activation: Some(activation),
        });
        self.set_wait(
            id,
            Wait::Next {
                workflow: next.workflow.clone(),
            },
        );
    }

    /// The next workflow runs as `instance`: this one ends at its end step.
    pub(crate) fn next_started(
        &mut self,
        token: u64,
        activation: u64,
        instance: String,
    ) -> Result<(), CommandError> {
        let Some(Wait::Next { workflow }) = self.live_token(token, activation).map(|t| &t.wait)
        else {
            // Told again (the driver carried the start out twice): nothing more to do.
            return Ok(());
        };
        let workflow = workflow.clone();
        let Some(Step::End(end)) = self.token_step(token) else {
            return Err(CommandError::Conflict(format!(
                "token {token} waits for a next workflow outside an end step"
            )));
        };
        let (outcome, step) = (end.outcome, end.id.clone());
        self.emit(
            Actor::System,
            EventKind::FollowedBy { workflow, instance },
            None,
        );
        self.finish(outcome, Some(step), Actor::System, None);
        Ok(())
    }

    /// The workflow that token `id`'s step starts was refused: an incident on the step when it
    /// waits for that workflow; a record in the history when it went on (a sub-workflow it does
    /// not wait for).
    pub(crate) fn start_refused(
        &mut self,
        token: u64,
        activation: u64,
        workflow: &str,
        error: String,
    ) {
        let error = format!("workflow `{workflow}` did not start: {error}");
        let waits = self.live_token(token, activation).is_some_and(|t| {
            matches!(
                t.wait,
                Wait::Next { .. } | Wait::Subworkflow | Wait::Children(_)
            )
        });
        if waits {
            let incident = Incident {
                error,
                source: "start".to_string(),
                plugin: None,
                sha256: None,
                attempts: 1,
                raised_at: self.ctx.now,
                kind: None,
                blame: None,
            };
            self.raise_incident(token, incident);
            return;
        }
        self.emit(
            Actor::System,
            EventKind::StartRefused {
                workflow: workflow.to_string(),
                error,
            },
            None,
        );
    }
}
