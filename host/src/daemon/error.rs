//! Every API error has the same shape: a status code and
//! `{"error": {"code", "message", "details"}}`, with the path of the bad field where there is one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::definition::DefinitionError;
use crate::engine::CommandError;
use crate::plugin::{ArtifactError, Blame, PluginError};
use crate::service::ServiceError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Object(serde_json::Map::new()),
        }
    }

    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    /// Refuses a blank `reason`; `kept` says where it is kept (`in the history`).
    pub fn require_reason(reason: &str, kept: &str) -> Result<(), ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("`reason` must say why; it is kept {kept}"),
            )
            .with(serde_json::json!({"field": "reason"})));
        }
        Ok(())
    }

    /// The store cannot serve for want of a resource: 503, code `storage_full` when the disk is
    /// full, with when to try again (`Retry-After`).
    pub fn store_unavailable(cause: &StoreError, message: impl Into<String>) -> Self {
        let code = match cause {
            StoreError::DiskFull(_) => "storage_full",
            _ => "unavailable",
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            .with(json!({"retry_after_seconds": 1}))
    }

    pub fn forbidden(what: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not {what}"),
        )
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"error": {
    "code": "invalid",
    "message": "invalid data.amount_cents: step `approval` gives it to its approval policy, which needs an integer amount in minor units (12550 for 125.50), within 64 bits; got \"12.50\"",
    "details": {"field": "data.amount_cents"}
}})))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid`,
    /// `invalid_definition`, `invalid_plugin`, `malformed_json`, `payload_too_large`, ...
    pub code: &'static str,
    /// What, where and why, for people.
    pub message: String,
    /// Structured details: the field, the limit, the problems (`{}` when there are none).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let retry_after = body
            .error
            .details
            .get("retry_after_seconds")
            .and_then(Value::as_u64);
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::Definition(DefinitionError::Parse { file, .. }) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_definition", message)
                    .with(json!({"file": file}))
            }
            ServiceError::Definition(DefinitionError::Invalid { file, problems }) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_definition",
                message,
            )
            .with(json!({"file": file, "problems": problems})),
            ServiceError::Command(CommandError::NotFound { .. })
            | ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            ServiceError::Command(CommandError::Conflict(_)) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ServiceError::Command(CommandError::Forbidden(_)) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            ServiceError::Command(CommandError::Invalid { field, .. })
            | ServiceError::Invalid { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
                    .with(json!({"field": field}))
            }
            ServiceError::Store(e) if e.is_resource() => ApiError::store_unavailable(&e, message),
            ServiceError::Store(_) => {
                tracing::error!(%message, "api: storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
            }
            ServiceError::CommitFailed(cause) => ApiError::store_unavailable(&cause, message),
            ServiceError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(error: PluginError) -> Self {
        let (status, code) = match error.blame() {
            Blame::Guest => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
            Blame::Host => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, error.to_string())
            .with(json!({"plugin": error.plugin, "version": error.version}))
    }
}

impl From<ArtifactError> for ApiError {
    fn from(error: ArtifactError) -> Self {
        tracing::error!(%error, "api: cannot keep a plugin artifact");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            error.to_string(),
        )
    }
}
