//! Every error the daemon answers is in the API's one JSON error shape. Handlers and extractors
//! answer with [`ApiError`] already; what the router and axum's own extractors answer (405 with an
//! empty body, a path that is not UTF-8 as plain text) is rewritten here, keeping its status and
//! headers (`Allow`, `Retry-After`) and its words.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;

/// Plain-text error bodies longer than this are not errors axum writes; they are cut.
const MAX_TEXT: usize = 4 << 10;

/// The middleware.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    // The web app's error pages are HTML, for people; they stay as they are.
    let shaped_already = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || shaped_already {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]).into_owned()
        }
        Err(_) => String::new(),
    };
    let (code, fallback) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{method} is not allowed on this route; its `Allow` header lists what is"),
        ),
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed".to_string()),
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is too large".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the body's content type is not accepted here".to_string(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid", "the request is invalid".to_string()),
        s if s.is_server_error() => ("internal", "the server failed".to_string()),
        _ => (
            "error",
            status.canonical_reason().unwrap_or("error").to_string(),
        ),
    };
    let message = if text.trim().is_empty() {
        fallback
    } else {
        text.trim().to_string()
    };
    let shaped = ApiError::new(status, code, message).into_response();
    let (shaped_parts, body) = shaped.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in shaped_parts.headers.iter() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, Body::new(body))
}
