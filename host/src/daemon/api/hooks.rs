//! Inbound webhooks: systems that cannot call the API with a token POST to a tenant's hook,
//! signed with the hook's secret; the body becomes a message or a start, mapped by the JSON
//! pointers the tenant file gives. A redelivery (the same event id) changes nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use utoipa::ToSchema;

use super::messages::MessageView;
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};
use crate::engine::{self, Message};
use crate::service::Sent;
use crate::tenant::InboundHook;

/// Receives a signed event for a tenant's inbound hook and sends the message or starts the
/// workflow it maps to.
#[utoipa::path(
    post,
    path = "/hooks/{tenant}/{name}",
    operation_id = "receiveHook",
    tag = "messages",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("name" = String, Path, description = "The hook's name in the tenant file"),
        ("X-Flowgate-Signature" = String, Header, description = "`sha256=<hex>` of HMAC-SHA256(secret, body)")
    ),
    request_body(content = Object, description = "The sender's event, as JSON"),
    responses(
        (status = 200, description = "A message delivered, or a redelivery of an event already handled", body = HookAnswer),
        (status = 201, description = "A start hook started an instance", body = HookStarted),
        (status = 202, description = "No step waits yet: the message is kept", body = MessageView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No signature, or not the hook's", body = ErrorBody),
        (status = 404, description = "No such hook, or the `process` it maps is not a case of the tenant", body = ErrorBody),
        (status = 409, description = "No instance waits for the message and no workflow keeps it", body = ErrorBody),
        (status = 422, description = "The body lacks what the hook maps (`details.pointer`), or what it maps is refused", body = ErrorBody),
    )
)]
pub async fn receive(
    State(s): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<HookAnswer>), ApiError> {
    let snapshot = s.tenants.snapshot();
    let hook = snapshot
        .configs
        .get(&tenant)
        .and_then(|c| c.inbound.iter().find(|h| h.name == name))
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no inbound hook `{name}` for tenant `{tenant}`"),
            )
        })?;
    verify(&hook, &headers, &body)?;
    crate::daemon::quota::admit(&s, &tenant)?;
    let event: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let id = text_at(&event, &hook.id, "event id (text or an integer)")?;
    let mut data = Map::new();
    for (field, pointer) in &hook.data {
        if let Some(value) = event.pointer(pointer).filter(|v| !v.is_null()) {
            data.insert(field.clone(), value.clone());
        }
    }
    let sent_by = format!("hook {}", hook.name);
    let process = match &hook.process {
        Some(pointer) => match event.pointer(pointer).filter(|v| !v.is_null()) {
            Some(_) => Some(text_at(&event, pointer, "process instance id (text)")?),
            None => None,
        },
        None => None,
    };
    if let (Some(name), Some(pointer)) = (&hook.message, &hook.correlation) {
        let correlation = event
            .pointer(pointer)
            .and_then(engine::correlation_of)
            .ok_or_else(|| missing(pointer, "text or an integer to correlate on"))?;
        let message = Message {
            id,
            name: name.clone(),
            correlation,
            data,
            sent_by,
            process,
        };
        let Sent { record, replayed } = s.flowgate.send_message(&tenant, message).await?;
        let status = match record.status {
            crate::store::MessageStatus::Buffered { .. }
            | crate::store::MessageStatus::Held { .. }
                if !replayed =>
            {
                StatusCode::ACCEPTED
            }
            _ => StatusCode::OK,
        };
        let view = MessageView::of(&record, replayed);
        return Ok((status, Json(HookAnswer::Message(view))));
    }
    let workflow = hook.start.clone().unwrap_or_default();
    let key = Some(format!("hook:{}:{id}", hook.name));
    let started = s
        .flowgate
        .start_or_replay(&tenant, &workflow, data, &sent_by, key, process)
        .await?;
    let status = if started.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = HookStarted {
        instance: started.instance.id.clone(),
        workflow,
        replayed: started.replayed,
    };
    Ok((status, Json(HookAnswer::Started(answer))))
}

/// What a hook did: a message sent, or an instance started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HookAnswer {
    Message(MessageView),
    Started(HookStarted),
}

/// An instance a start hook started (or, for a redelivery, had started).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookStarted {
    instance: String,
    workflow: String,
    /// True for a redelivery of an event already handled.
    replayed: bool,
}

/// The body's signature must be the hook's, compared in constant time.
fn verify(hook: &InboundHook, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let refused = |why: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{why}: sign the body with HMAC-SHA256 under the hook's secret and send `X-Flowgate-Signature: sha256=<hex>`"
            ),
        )
    };
    let given = headers
        .get("x-flowgate-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("no signature"))?;
    let hex_part = given
        .strip_prefix("sha256=")
        .ok_or_else(|| refused("the signature is not `sha256=<hex>`"))?;
    let bytes = hex::decode(hex_part).map_err(|_| refused("the signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(hook.secret.as_bytes())
        .map_err(|_| refused("the hook's key is unusable"))?;
    mac.update(body);
    mac.verify_slice(&bytes)
        .map_err(|_| refused("the signature does not match the body"))
}

fn missing(pointer: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("the body has no {what} at `{pointer}`"),
    )
    .with(json!({"pointer": pointer}))
}

/// The text (or integer, as text) at `pointer`; `what` says what it should be.
fn text_at(event: &Value, pointer: &str, what: &str) -> Result<String, ApiError> {
    event
        .pointer(pointer)
        .and_then(engine::correlation_of)
        .ok_or_else(|| missing(pointer, what))
}
