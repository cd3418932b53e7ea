//! Completing a task, with an idempotency key kept as payment APIs keep theirs: the same key
//! with the same request answers as the first time did; the same key with another request is
//! refused, naming the key; a task completed already, with a new key or none, is a conflict.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::writer::KeyedCompletion;
use super::{Flowgate, ServiceError, task_instance};
use crate::engine::{Command, CommandError, Instance, Person, Status, Task};
use crate::store::CompletionKey;

/// How long a completion's idempotency key is kept: a retry within a day answers as the first.
pub const COMPLETION_KEY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// A task completion, as a person (or an administrator for one) asks it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub task: String,
    pub by: Person,
    pub outcome: Option<String>,
    pub data: Map<String, Value>,
    /// Refused when the instance is no longer at this version.
    pub expected_version: Option<u64>,
    /// Makes a retry safe.
    pub key: Option<String>,
    /// Why, kept in the history.
    pub comment: Option<String>,
}

/// What a completion answers: where the instance is now and what is open in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    pub instance: String,
    pub status: Status,
    pub version: u64,
    pub open_tasks: Vec<Task>,
    /// True when this is the first answer again, for a repeat with the same key.
    #[serde(skip)]
    pub replayed: bool,
}

impl Completed {
    pub fn of(instance: &Instance) -> Self {
        Completed {
            instance: instance.id.clone(),
            status: instance.status,
            version: instance.version,
            open_tasks: instance.open_tasks().cloned().collect(),
            replayed: false,
        }
    }
}

impl Completion {
    /// What the request asks, hashed: two requests with the same fingerprint are the same.
    fn fingerprint(&self) -> String {
        let mut asked = json!({
            "task": self.task,
            "by": self.by.id,
            "outcome": self.outcome,
            "data": self.data,
            "expected_version": self.expected_version,
        });
        // Only when there is one, so that keys kept before comments existed still match.
        if let Some(comment) = &self.comment {
            asked["comment"] = comment.as_str().into();
        }
        hex::encode(Sha256::digest(asked.to_string().as_bytes()))
    }
}

impl Flowgate {
    /// Completes a task. The API and the CLI complete tasks through this one method.
    pub async fn complete(
        &self,
        tenant: &str,
        completion: Completion,
    ) -> Result<Completed, ServiceError> {
        let keyed = completion.key.clone().map(|key| KeyedCompletion {
            key,
            fingerprint: completion.fingerprint(),
            task: completion.task.clone(),
        });
        if let Some(keyed) = &keyed
            && let Some(first) = self.kept_completion(tenant, &keyed.key)?
        {
            return replay(first, keyed);
        }
        let instance = task_instance(&completion.task)?;
        let command = Command::CompleteTask {
            task: completion.task,
            by: completion.by,
            outcome: completion.outcome,
            data: completion.data,
            expected_version: completion.expected_version,
            comment: completion.comment,
        };
        let done = self
            .command_keyed(tenant, &instance, command, keyed.clone())
            .await;
        match (done, keyed) {
            (Ok(after), _) => Ok(Completed::of(&after)),
            // Another request with the same key may have completed it first.
            (Err(ServiceError::Command(CommandError::Conflict(message))), Some(keyed)) => {
                match self.kept_completion(tenant, &keyed.key)? {
                    Some(first) => replay(first, &keyed),
                    None => Err(ServiceError::Command(CommandError::Conflict(message))),
                }
            }
            (Err(other), _) => Err(other),
        }
    }

    /// The completion made with `key`, if it is kept still.
    fn kept_completion(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<CompletionKey>, ServiceError> {
        let now = self.shared.clock.now();
        Ok(self
            .shared
            .store
            .completion_key(tenant, key)?
            .filter(|k| k.at.saturating_add(COMPLETION_KEY_RETENTION_MS) > now))
    }
}

/// The first answer for a repeat of the same request; a refusal for another request.
fn replay(first: CompletionKey, asked: &KeyedCompletion) -> Result<Completed, ServiceError> {
    if first.fingerprint != asked.fingerprint {
        let what = if first.task == asked.task {
            "a completion of this task with other data, outcome or person".to_string()
        } else {
            format!("the completion of task `{}`", first.task)
        };
        return Err(ServiceError::Invalid {
            field: "Idempotency-Key".to_string(),
            message: format!(
                "key `{}` was used for {what}; a different request needs a new key",
                first.key
            ),
        });
    }
    let mut answer: Completed = serde_json::from_value(first.answer).map_err(|e| {
        ServiceError::Unavailable(format!("the kept answer for key `{}`: {e}", first.key))
    })?;
    answer.replayed = true;
    Ok(answer)
}
