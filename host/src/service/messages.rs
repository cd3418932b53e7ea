//! Messages from other systems (`POST /api/v1/messages`): delivered exactly once to the steps
//! that wait for them, idempotent by the sender's message id.
//!
//! The service finds the waiting instances in the store's subscription index (a read, not a
//! scan) and prepares each delivery as it prepares any command, decisions included. When none
//! waits, it prepares what happens instead: a start of the workflow the message starts, or the
//! message kept (buffered) for the step that will wait for it. The writer then records all of it
//! with the message in one transaction, after looking once more: a step that began to wait
//! meanwhile takes the message, and one that stopped waiting is passed over.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::prepare::{Prepared, StartRequest};
use super::writer::Request;
use super::{Flowgate, ServiceError};
use crate::engine::{self, Command, CommandError, Instance, MAX_CORRELATION, Message};
use crate::store::{MessageRecord, MessageStatus};

/// The most instances one message is delivered to; more waiting is refused as ambiguous
/// rather than delivered in part.
pub const MAX_TAKERS: usize = 100;

/// The longest message id and name, in bytes.
const MAX_ID: usize = 200;

/// What the writer does with a message no step takes.
pub(crate) enum Otherwise {
    /// Start this instance with it.
    Start(Box<Prepared>),
    /// Keep it this many milliseconds.
    Buffer { keep_ms: u64 },
    /// Nothing: the service saw steps waiting. If none does any more, it looks again.
    LookAgain,
}

/// The writer's answer.
pub(crate) enum Outcome {
    /// The message's record, and whether it was a repeat of one received before.
    Recorded(Box<MessageRecord>, bool),
    /// The steps the service found waiting have stopped waiting: look again.
    Stale,
}

/// A message's record as answered: what became of it, and whether it was a repeat.
#[derive(Debug, Clone)]
pub struct Sent {
    pub record: MessageRecord,
    pub replayed: bool,
}

/// What was sent, hashed: the same id with another content is refused.
pub(crate) fn fingerprint(message: &Message) -> String {
    let mut sent = serde_json::json!({
        "name": message.name,
        "correlation": message.correlation,
        "data": message.data,
    });
    if let Some(process) = &message.process {
        sent["process"] = Value::String(process.clone());
    }
    hex::encode(Sha256::digest(sent.to_string().as_bytes()))
}

/// The first answer for a repeat; a refusal for another message under the same id.
pub(crate) fn replay(
    first: MessageRecord,
    fingerprint: &str,
) -> Result<MessageRecord, ServiceError> {
    if first.fingerprint != fingerprint {
        return Err(ServiceError::Invalid {
            field: "id".to_string(),
            message: format!(
                "message id `{}` was used for another message (`{}` for `{}`); a different message needs a new id",
                first.id, first.name, first.correlation
            ),
        });
    }
    Ok(first)
}

/// Whether a step of `instance` waits for `message`.
pub(crate) fn waits_for(instance: &Instance, message: &Message) -> bool {
    instance.awaits(&message.name, &message.correlation)
}

fn check(message: &Message) -> Result<(), ServiceError> {
    let invalid = |field: &str, message: String| ServiceError::Invalid {
        field: field.to_string(),
        message,
    };
    for (field, value) in [("id", &message.id), ("name", &message.name)] {
        if value.is_empty() || value.len() > MAX_ID {
            return Err(invalid(
                field,
                format!("must be 1 to {MAX_ID} bytes, got {}", value.len()),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(field, "must not hold control characters".into()));
        }
    }
    if message.correlation.is_empty() || message.correlation.len() > MAX_CORRELATION {
        return Err(invalid(
            "correlation",
            format!(
                "must be 1 to {MAX_CORRELATION} bytes, got {}",
                message.correlation.len()
            ),
        ));
    }
    Ok(())
}

impl Flowgate {
    /// Delivers a message to the steps waiting for it; or starts the workflow it starts; or
    /// keeps it for the step that will wait for it. A message that no workflow of the tenant
    /// could ever take is refused, as is one that none takes now and none keeps.
    pub async fn send_message(&self, tenant: &str, message: Message) -> Result<Sent, ServiceError> {
        check(&message)?;
        let fingerprint = fingerprint(&message);
        // Three looks at most: another only when the steps seen waiting stopped meanwhile.
        for _ in 0..3 {
            if let Some(first) = self.shared.store.message(tenant, &message.id)? {
                let record = replay(first, &fingerprint)?;
                return Ok(Sent {
                    record,
                    replayed: true,
                });
            }
            let now = self.shared.clock.now();
            let waiting = self.shared.store.subscribers(
                tenant,
                &message.name,
                &message.correlation,
                MAX_TAKERS + 1,
            )?;
            if waiting.len() > MAX_TAKERS {
                return Err(ServiceError::Invalid {
                    field: "correlation".into(),
                    message: format!(
                        "more than {MAX_TAKERS} instances wait for `{}` with correlation `{}`; a message reaches at most {MAX_TAKERS}",
                        message.name, message.correlation
                    ),
                });
            }
            let mut deliveries = BTreeMap::new();
            let command = Command::ReceiveMessage(message.clone());
            for id in waiting {
                match self
                    .prepare_command(tenant, &id, command.clone(), now)
                    .await
                {
                    Ok(prepared) => {
                        deliveries.insert(id, Box::new(prepared));
                    }
                    // It stopped waiting since the index was read.
                    Err(ServiceError::Command(CommandError::NotFound { .. })) => {}
                    Err(ServiceError::Command(CommandError::Conflict(_))) => {}
                    Err(error) => return Err(error),
                }
            }
            let otherwise = if deliveries.is_empty() {
                self.otherwise(tenant, &message, now).await?
            } else {
                Otherwise::LookAgain
            };
            let outcome = self
                .send("receive-message", tenant, |reply| Request::Message {
                    tenant: tenant.to_string(),
                    message: Box::new(message.clone()),
                    fingerprint: fingerprint.clone(),
                    deliveries,
                    otherwise,
                    reply,
                })
                .await?;
            match outcome {
                Outcome::Recorded(record, replayed) => {
                    return Ok(Sent {
                        record: *record,
                        replayed,
                    });
                }
                Outcome::Stale => continue,
            }
        }
        Err(ServiceError::Unavailable(format!(
            "the steps waiting for `{}` kept changing; send the message again",
            message.name
        )))
    }

    /// What happens to a message no step waits for.
    async fn otherwise(
        &self,
        tenant: &str,
        message: &Message,
        now: u64,
    ) -> Result<Otherwise, ServiceError> {
        let latest = self.latest_definitions(tenant)?;
        let starts = latest
            .iter()
            .find(|d| d.definition.start_message(&message.name).is_some());
        if let Some(stored) = starts {
            let def = &stored.definition;
            if let Some(process) = &message.process {
                self.joinable(tenant, process, &def.id)?;
            }
            let mut data = message.data.clone();
            if let Some(field) = def
                .start_message(&message.name)
                .and_then(|m| m.correlate.clone())
            {
                correlate_into(&mut data, &field, &message.correlation)?;
            }
            let start = StartRequest {
                tenant: tenant.to_string(),
                definition: def.id.clone(),
                data,
                started_by: message.sent_by.clone(),
                key: None,
                parent: None,
                process: message.process.clone(),
            };
            let prepared = self.prepare_start(&start, now).await?;
            return Ok(Otherwise::Start(Box::new(prepared)));
        }
        let buffer = latest
            .iter()
            .filter_map(|d| d.definition.buffers(&message.name))
            .max();
        if let Some(buffer) = buffer {
            let keep = u64::try_from(buffer.as_millis()).unwrap_or(u64::MAX);
            return Ok(Otherwise::Buffer { keep_ms: keep });
        }
        if latest.iter().any(|d| d.definition.receives(&message.name)) {
            return Err(ServiceError::Command(CommandError::Conflict(format!(
                "no instance waits for `{}` with correlation `{}`, and no workflow keeps it for later (a step's `buffer` would)",
                message.name, message.correlation
            ))));
        }
        Err(ServiceError::Invalid {
            field: "name".into(),
            message: format!(
                "no workflow of tenant `{tenant}` waits for or starts on a message `{}`",
                message.name
            ),
        })
    }

    /// Messages received, by id after `after`.
    pub fn messages(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, ServiceError> {
        Ok(self.shared.store.messages(tenant, after, limit)?)
    }

    /// A message received, by the sender's id.
    pub fn message(&self, tenant: &str, id: &str) -> Result<MessageRecord, ServiceError> {
        self.shared
            .store
            .message(tenant, id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "message",
                id: id.to_string(),
            })
    }

    /// The latest version of each of the tenant's definitions.
    pub(crate) fn latest_definitions(
        &self,
        tenant: &str,
    ) -> Result<Vec<crate::store::StoredDefinition>, ServiceError> {
        let mut latest: BTreeMap<String, crate::store::StoredDefinition> = BTreeMap::new();
        for stored in self.shared.store.definitions(tenant)? {
            let newer = latest
                .get(&stored.definition.id)
                .is_none_or(|d| d.version < stored.version);
            if newer {
                latest.insert(stored.definition.id.clone(), stored);
            }
        }
        Ok(latest.into_values().collect())
    }
}

/// Puts a start message's correlation into the start data, where later messages find it.
fn correlate_into(
    data: &mut Map<String, Value>,
    field: &str,
    correlation: &str,
) -> Result<(), ServiceError> {
    match data.get(field) {
        Some(value) if engine::correlation_of(value).as_deref() != Some(correlation) => {
            Err(ServiceError::Invalid {
                field: format!("data.{field}"),
                message: format!(
                    "is {value}, but the message's correlation `{correlation}` is kept in it"
                ),
            })
        }
        Some(_) => Ok(()),
        None => {
            data.insert(field.to_string(), Value::String(correlation.to_string()));
            Ok(())
        }
    }
}

impl MessageRecord {
    /// The instances it reached (delivered to or started).
    pub fn instances(&self) -> Vec<String> {
        match &self.status {
            MessageStatus::Delivered { instances, .. } => instances.clone(),
            MessageStatus::Started { instance } | MessageStatus::Dropped { instance, .. } => {
                vec![instance.clone()]
            }
            MessageStatus::Held { instances, .. } => instances.clone(),
            _ => Vec::new(),
        }
    }
}
