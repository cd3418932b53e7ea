//! Request extractors that answer in the API's error shape: the caller's credentials, and JSON
//! bodies (400 with the position of a syntax error, 413 with the limit, 415 without JSON).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;
use super::auth::{Access, Principal};
use super::error::ApiError;
use crate::engine::Person;

/// The authenticated caller.
pub struct Caller(pub Principal);

impl Caller {
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// Refuses anyone but an administrator.
    pub fn admin(&self, what: &str) -> Result<(), ApiError> {
        match self.0.access {
            Access::Admin => Ok(()),
            Access::Person(_) => Err(ApiError::forbidden(what)),
        }
    }

    /// The person acting: a person token acts as its person; an administrator names one.
    pub fn person(&self, named: Option<Person>) -> Result<Person, ApiError> {
        match (&self.0.access, named) {
            (Access::Person(p), None) => Ok(p.clone()),
            (Access::Person(p), Some(n)) if n.id == p.id => Ok(p.clone()),
            (Access::Person(_), Some(_)) => Err(ApiError::forbidden("act as someone else")),
            // Recorded in the history as acting through this administrator token.
            (Access::Admin, Some(n)) => Ok(Person {
                via: Some(self.0.token.clone()),
                ..n
            }),
            (Access::Admin, None) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "an administrator token must say who acts: `by: {\"id\": ..., \"roles\": [...]}`",
            )
            .with(json!({"field": "by"}))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        state
            .tenants
            .snapshot()
            .auth
            .authenticate(token.trim())
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A JSON body, refused in the API's error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(body_error(rejection, state.max_body_bytes)),
        }
    }
}

fn body_error(rejection: JsonRejection, limit: usize) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    match rejection {
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            format!("the request body is over the {limit} byte limit"),
        )
        .with(json!({"limit": limit})),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", text)
        }
        JsonRejection::JsonDataError(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", text)
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(status, "unsupported_media_type", text)
        }
        _ => ApiError::new(status, "bad_request", text),
    }
}
