//! Every request body is read in full, up to the limit, before the request is routed.
//!
//! An answer given before the body is read (a 401 for a missing token, a 404, a 405) used to
//! leave the body's bytes unread in the socket. The server then closed the connection, and a
//! close with unread data makes the kernel send a reset, which can destroy the answer before the
//! client reads it: the client saw `connection reset` instead of the 401. Reading the body first
//! means no answer ever races its own request.
//!
//! A body over the limit is read on and thrown away up to [`DRAIN_BYTES`] more (or for
//! [`DRAIN_TIME`]), then answered 413 in the API's error shape with `Connection: close`: a client
//! that is still sending gets its answer instead of a reset.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;

use super::error::ApiError;

/// How much of an oversized body is read and discarded so that its answer arrives.
const DRAIN_BYTES: usize = 16 << 20;
/// How long an oversized body is read and discarded at most.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The middleware: buffers the body (at most `limit` bytes) and hands it on.
pub async fn buffer(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match read(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Refused::TooLarge) => {
            let mut answer = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over the {limit} byte limit"),
            )
            .with(json!({"limit": limit}))
            .into_response();
            answer
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            answer
        }
        Err(Refused::Unreadable(message)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body could not be read: {message}"),
        )
        .into_response(),
    }
}

enum Refused {
    TooLarge,
    Unreadable(String),
}

async fn read(mut body: Body, limit: usize) -> Result<Bytes, Refused> {
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refused::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > limit {
            drain(body).await;
            return Err(Refused::TooLarge);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer))
}

/// Reads and discards what is left of a refused body, within bounds.
async fn drain(mut body: Body) {
    let discard = async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}
