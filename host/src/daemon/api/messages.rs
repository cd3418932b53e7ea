//! Messages from other systems: sent once, delivered to the steps waiting for them (or starting
//! the workflow they start, or kept for the step that will wait), and listed with what became
//! of each.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::daemon::AppState;
use crate::daemon::auth::Access;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::daemon::extract::{Body, Caller, Params};
use crate::engine::{self, Message};
use crate::service::Sent;
use crate::store::{MessageRecord, MessageStatus};

/// A message from another system.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"id": "esign-evt-5521", "name": "signature-received", "correlation": "DOC-2026-88", "data": {"signed_by": "Ian Malcolm"}})))]
pub struct SendMessage {
    /// The sender's id for this message: sending it again is safe (the first answer is
    /// repeated); the same id with another message is refused.
    #[schema(min_length = 1, max_length = 200)]
    id: String,
    /// The message's name, as the waiting step's `message` names it.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Matched against the value of the waiting step's `correlate` field: text, or an integer.
    #[schema(value_type = Value)]
    correlation: Value,
    /// Data for the waiting step, which takes only the fields it declares.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    /// The process instance (case) the message is about: only that case's instances take it,
    /// and an instance it starts joins the case rather than opening one of its own.
    #[schema(min_length = 1, max_length = 200)]
    process: Option<String>,
}

/// What became of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    id: String,
    name: String,
    correlation: String,
    /// `delivered`, `started`, `buffered`, `expired`; `held` while the instances that take it
    /// are paused, then `delivered`, or `dropped` if the one resumed no longer took it.
    status: &'static str,
    /// The instances whose steps took it, or the one it started.
    instances: Vec<String>,
    /// For a buffered (or expired) message: until when it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::engine::time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<u64>,
    /// When it was received.
    #[serde(with = "crate::engine::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    received_at: u64,
    sent_by: String,
    /// True when this answer repeats the first one for the same id.
    replayed: bool,
}

impl MessageView {
    pub(super) fn of(record: &MessageRecord, replayed: bool) -> Self {
        let expires_at = match record.status {
            MessageStatus::Buffered { expires_at } => Some(expires_at),
            MessageStatus::Expired { at } => Some(at),
            _ => None,
        };
        MessageView {
            id: record.id.clone(),
            name: record.name.clone(),
            correlation: record.correlation.clone(),
            status: record.status.as_str(),
            instances: record.instances(),
            expires_at,
            received_at: record.received_at,
            sent_by: record.sent_by.clone(),
            replayed,
        }
    }
}

/// Sends a message: every step waiting for it with this correlation takes it, in one
/// transaction; if none waits, it starts the workflow whose `start_messages` name it, or it is
/// kept for the `buffer` time of the steps that wait for it.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    operation_id = "sendMessage",
    tag = "messages",
    request_body = SendMessage,
    responses(
        (status = 200, description = "Delivered, or a workflow started (`status`); or a repeat of an id sent before (`replayed`)", body = MessageView),
        (status = 202, description = "No step waits yet: kept until `expires_at`; or the instances that wait are paused: `held` until they resume", body = MessageView),
        (status = 400, description = "Malformed JSON, with the position", body = ErrorBody),
        (status = 404, description = "The `process` named is not a case of the caller's tenant", body = ErrorBody),
        (status = 409, description = "No instance waits for it and no workflow keeps it", body = ErrorBody),
        (status = 422, description = "Invalid (`details.field`): data the step does not take, no workflow receives the name, the id used for another message", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<SendMessage>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let correlation = engine::correlation_of(&body.correlation).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "`correlation` is {}; it must be text (1 to {} bytes) or an integer",
                body.correlation,
                engine::MAX_CORRELATION
            ),
        )
        .with(serde_json::json!({"field": "correlation"}))
    })?;
    let sent_by = match &caller.0.access {
        Access::Person(p) => p.id.clone(),
        Access::Admin => caller.0.token.clone(),
    };
    let message = Message {
        id: body.id,
        name: body.name,
        correlation,
        data: body.data,
        sent_by,
        process: body.process,
    };
    let Sent { record, replayed } = s.flowgate.send_message(caller.tenant(), message).await?;
    let status = match record.status {
        MessageStatus::Buffered { .. } | MessageStatus::Held { .. } if !replayed => {
            StatusCode::ACCEPTED
        }
        _ => StatusCode::OK,
    };
    Ok((status, Json(MessageView::of(&record, replayed))))
}

/// The messages received, by id, with what became of each.
#[utoipa::path(
    get,
    path = "/api/v1/messages",
    operation_id = "listMessages",
    tag = "messages",
    params(
        ("status" = Option<String>, Query, description = "Only `delivered`, `started`, `buffered` or `expired` ones"),
        ("after" = Option<String>, Query, description = "Ids after this one (paging)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)")
    ),
    responses(
        (status = 200, description = "The messages", body = [MessageView]),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 422, description = "An unknown status", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    params.only(&["status", "after", "limit"])?;
    let status = params.one_of(
        "status",
        &[
            "delivered",
            "started",
            "buffered",
            "expired",
            "held",
            "dropped",
        ],
    )?;
    let limit = params.limit(100, 1000)?;
    let after = params.text("after");
    let mut out = Vec::new();
    let mut cursor = after;
    // Filtering by status reads on past the ones that do not match, a page at a time.
    loop {
        let page = s
            .flowgate
            .messages(caller.tenant(), cursor.as_deref(), 1000)?;
        let done = page.len() < 1000;
        cursor = page.last().map(|m| m.id.clone());
        out.extend(
            page.iter()
                .filter(|m| status.as_deref().is_none_or(|st| st == m.status.as_str()))
                .map(|m| MessageView::of(m, false)),
        );
        if done || out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(Json(out))
}

/// A message, by the sender's id.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    operation_id = "getMessage",
    tag = "messages",
    params(("id" = String, Path, description = "The sender's message id")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 404, description = "Not found in the caller's tenant", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let record = s.flowgate.message(caller.tenant(), &id)?;
    Ok(Json(MessageView::of(&record, false)))
}
