//! Request extractors that answer in the API's error shape: the caller's credentials, query
//! parameters (400 naming the parameter), and JSON bodies (400 with the position of a syntax
//! error, 413 with the limit, 415 without JSON).

use std::collections::BTreeMap;

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
        // Authenticated already by the command limiter, for a POST.
        if let Some(principal) = parts.extensions.remove::<Principal>() {
            return Ok(Caller(principal));
        }
        Caller::from_headers(&parts.headers, state).ok_or_else(ApiError::unauthorized)
    }
}

impl Caller {
    /// The caller a request's `Authorization: Bearer` names, if any token of a tenant matches.
    pub fn from_headers(headers: &axum::http::HeaderMap, state: &AppState) -> Option<Caller> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)?;
        state
            .tenants
            .snapshot()
            .auth
            .authenticate(token.trim())
            .map(Caller)
    }
}

/// A JSON body, refused in the API's error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(too_large(limit));
            }
            Err(rejection) => {
                let status = rejection.status();
                return Err(ApiError::new(status, "bad_request", rejection.body_text()));
            }
        };
        let value = match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(body_error(rejection, limit)),
        };
        if let Some(inexact) = super::exact::first_inexact(&bytes) {
            let at = if inexact.field.is_empty() {
                "the body".to_string()
            } else {
                format!("`{}`", inexact.field)
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "{at} is {}, which cannot be kept exactly: integers must fit in 64 bits and decimals in a double; send it as a string",
                    inexact.literal
                ),
            )
            .with(json!({"field": inexact.field, "value": inexact.literal})));
        }
        Ok(Body(value))
    }
}

/// `application/json`, or a `+json` type, as axum's `Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is over the {limit} byte limit"),
    )
    .with(json!({"limit": limit}))
}

fn body_error(rejection: JsonRejection, limit: usize) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    match rejection {
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
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

/// Query parameters, read with errors that name the parameter.
pub struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text()))
    }
}

impl Params {
    pub fn invalid(key: &str, message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).with(json!({"field": key}))
    }

    /// A text parameter.
    pub fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    /// A parameter that must be one of `allowed`: anything else is 422 naming the parameter and
    /// the values it takes (a misspelt status would otherwise match nothing, silently).
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "query `{key}` is `{value}`; it must be one of {}",
                    allowed.join(", ")
                ),
            )
            .with(json!({"field": key, "allowed": allowed}))),
            found => Ok(found.cloned()),
        }
    }

    /// A number parameter; `what` says what it counts, for the error.
    /// At most `i64::MAX`, as the document's `int64` says.
    pub fn number(&self, key: &str, what: &str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(key)
            .map(|v| {
                let n = v
                    .parse::<u64>()
                    .map_err(|e| Self::invalid(key, format!("query `{key}` ({what}): {e}")))?;
                if n > i64::MAX as u64 {
                    return Err(Self::invalid(
                        key,
                        format!(
                            "query `{key}` ({what}) is {n}, past the largest, {}",
                            i64::MAX
                        ),
                    ));
                }
                Ok(n)
            })
            .transpose()
    }

    /// An instant: an RFC 3339 date-time with its offset (`2026-12-04T09:30:00+01:00`, or `Z`).
    /// A `+` left unencoded arrives as a space, and is read as the `+` it was.
    pub fn instant(&self, key: &str) -> Result<Option<u64>, ApiError> {
        let Some(text) = self.0.get(key) else {
            return Ok(None);
        };
        crate::engine::time::parse(&text.replace(' ', "+"))
            .map(Some)
            .map_err(|e| Self::invalid(key, format!("query `{key}`: {e}")))
    }

    /// A page size: `default` without one, else 1 to `max`; any other is refused, not cut to fit.
    pub fn limit(&self, default: u64, max: u64) -> Result<usize, ApiError> {
        match self.number("limit", "a count")? {
            None => Ok(default as usize),
            Some(n) if (1..=max).contains(&n) => Ok(n as usize),
            Some(n) => Err(Self::invalid(
                "limit",
                format!("query `limit` must be 1 to {max}, not {n}"),
            )),
        }
    }

    /// A `true` / `false` parameter.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.0.get(key).map(String::as_str) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(Self::invalid(
                key,
                format!("query `{key}` must be true or false, not `{other}`"),
            )),
        }
    }

    /// Refuses a parameter not in `known` (a misspelt filter would otherwise match everything).
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(Self::invalid(
                unknown,
                format!(
                    "unknown query parameter `{unknown}`; known: {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// Every parameter whose name starts with `prefix`, without it.
    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str())))
    }
}
