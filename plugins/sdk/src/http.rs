//! Outbound HTTP for step actions (the `http` feature), through the host's `wasi:http`.
//!
//! The host does the network and TLS work and keeps the tenant's rules: only the hosts in the
//! plugin's `grants.http.allowed_hosts` are reached, each request ends within its timeout and the
//! call's deadline, bodies are capped, and during a step action every request carries the
//! activation's `Idempotency-Key` header. A header value may name a secret from `tenant.toml` as
//! `{{secret:NAME}}`: the host puts the value in as the request leaves, so the plugin never sees it.
//!
//! ```no_run
//! use flowgate_plugin_sdk::http::{Request, send};
//!
//! let answer = send(
//!     &Request::post("https://crm.example.com/accounts")
//!         .header("authorization", "Bearer {{secret:crm_token}}")
//!         .json(&serde_json::json!({"name": "Ada"})),
//! )?;
//! let account: serde_json::Value = answer.json()?;
//! # Ok::<(), flowgate_plugin_sdk::http::HttpError>(())
//! ```
//!
//! Natively (in `cargo test`) requests go to the handler given to
//! [`crate::testing::with_http`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PluginError;

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `http(s)://host[:port]/path?query`.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
    /// Redirects followed (each a new request the host checks again); 0 by default.
    pub max_redirects: u32,
}

impl Request {
    /// A request with this method and URL.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            max_redirects: 0,
        }
    }

    /// A `GET`.
    pub fn get(url: &str) -> Self {
        Request::new("GET", url)
    }

    /// A `POST`.
    pub fn post(url: &str) -> Self {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = serde_json::to_vec(body).unwrap_or_default();
        self.header("content-type", "application/json")
    }

    /// Follows up to `max` redirects.
    pub fn follow_redirects(mut self, max: u32) -> Self {
        self.max_redirects = max;
        self
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status and body and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body read as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Protocol {
            reason: format!(
                "the answer (status {}) is not the JSON expected: {e}",
                self.status
            ),
        })
    }
}

/// Why a request failed. [`HttpError::is_transient`] tells whether trying again may help; the
/// conversion into [`PluginError`] makes transient failures retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request: its host is not allowed, it resolves to a private address
    /// not on the list, or it names a secret the plugin was not given.
    Denied {
        /// What was refused; the reason is in the call's log.
        reason: String,
    },
    /// No answer within the request's timeout (or the call's deadline).
    Timeout {
        /// Which step timed out.
        reason: String,
    },
    /// The other system could not be reached (refused, unreachable, DNS).
    Unreachable {
        /// Why.
        reason: String,
    },
    /// A body was over its cap.
    TooLarge {
        /// Which one.
        reason: String,
    },
    /// The URL is not one a request can go to.
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// Anything else: TLS, a protocol error, too many redirects, an answer that is not JSON.
    Protocol {
        /// Why.
        reason: String,
    },
}

impl HttpError {
    /// Whether trying again later may succeed (a timeout or an unreachable system).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Timeout { .. } | HttpError::Unreachable { .. }
        )
    }

    fn reason(&self) -> &str {
        match self {
            HttpError::Denied { reason }
            | HttpError::Timeout { reason }
            | HttpError::Unreachable { reason }
            | HttpError::TooLarge { reason }
            | HttpError::InvalidUrl { reason }
            | HttpError::Protocol { reason } => reason,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            HttpError::Denied { .. } => "denied",
            HttpError::Timeout { .. } => "timed out",
            HttpError::Unreachable { .. } => "unreachable",
            HttpError::TooLarge { .. } => "too large",
            HttpError::InvalidUrl { .. } => "invalid URL",
            HttpError::Protocol { .. } => "failed",
        };
        write!(f, "HTTP request {kind}: {}", self.reason())
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for PluginError {
    fn from(error: HttpError) -> Self {
        if error.is_transient() {
            PluginError::Retryable(error.to_string())
        } else {
            PluginError::Permanent(error.to_string())
        }
    }
}

/// Sends `request` and reads the whole answer, following redirects up to
/// `request.max_redirects` (a 303 becomes a `GET`).
pub fn send(request: &Request) -> Result<Response, HttpError> {
    let mut request = request.clone();
    for _ in 0..=request.max_redirects {
        let response = send_once(&request)?;
        let location = match response.status {
            301 | 302 | 303 | 307 | 308 => response.header("location"),
            _ => None,
        };
        let Some(location) = location else {
            return Ok(response);
        };
        let next = resolve(&request.url, location)?;
        if response.status == 303 {
            request.method = "GET".to_string();
            request.body.clear();
        }
        request.url = next;
    }
    Err(HttpError::Protocol {
        reason: format!(
            "more than {} redirects, the last to {}",
            request.max_redirects, request.url
        ),
    })
}

/// A redirect's `Location` against the URL it answered.
fn resolve(base: &str, location: &str) -> Result<String, HttpError> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let url = Url::parse(base)?;
    if location.starts_with('/') {
        Ok(format!("{}://{}{location}", url.scheme, url.authority))
    } else {
        let dir = url.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        Ok(format!(
            "{}://{}{dir}/{location}",
            url.scheme, url.authority
        ))
    }
}

/// A URL split as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url<'a> {
    scheme: &'a str,
    authority: &'a str,
    /// The path and query, `/` at least.
    path: &'a str,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl {
            reason: format!("`{url}`: {reason}"),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("no scheme, e.g. https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(invalid("the scheme is neither http nor https"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let path = if path.is_empty() { "/" } else { path };
        Ok(Url {
            scheme,
            authority,
            path,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn send_once(request: &Request) -> Result<Response, HttpError> {
    Url::parse(&request.url)?;
    crate::testing::http_answer(request)
}

#[cfg(target_arch = "wasm32")]
fn send_once(request: &Request) -> Result<Response, HttpError> {
    wasi::send(request)
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Request, Response, Url};

    pub fn send(request: &Request) -> Result<Response, HttpError> {
        let url = Url::parse(&request.url)?;
        let invalid = |reason: String| HttpError::InvalidUrl { reason };
        let mut fields: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        if !request.body.is_empty() && !fields.iter().any(|(n, _)| n == "content-length") {
            // A known length, not a chunked body: what every server reads.
            let length = request.body.len().to_string().into_bytes();
            fields.push(("content-length".to_string(), length));
        }
        let headers = Fields::from_list(&fields).map_err(|e| HttpError::Protocol {
            reason: format!("a header is not allowed: {e:?}"),
        })?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let scheme = if url.scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_method(&method)
            .and_then(|()| outgoing.set_scheme(Some(&scheme)))
            .and_then(|()| outgoing.set_authority(Some(url.authority)))
            .and_then(|()| outgoing.set_path_with_query(Some(url.path)))
            .map_err(|()| invalid(format!("`{}` cannot be requested", request.url)))?;
        let body = outgoing.body().map_err(|()| HttpError::Protocol {
            reason: "the request's body was taken twice".into(),
        })?;
        let future = outgoing_handler::handle(outgoing, None).map_err(failed)?;
        // A refused request closes the body: its reason is the answer's, so wait for that first.
        let written = write_body(body, &request.body);
        future.subscribe().block();
        let incoming = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(failed(code)),
            Some(Err(())) | None => {
                return Err(written.err().unwrap_or(HttpError::Protocol {
                    reason: "the host gave no answer".into(),
                }));
            }
        };
        written?;
        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = incoming.consume().map_err(|()| HttpError::Protocol {
            reason: "the answer's body was taken twice".into(),
        })?;
        let mut bytes = Vec::new();
        {
            let stream = body.stream().map_err(|()| HttpError::Protocol {
                reason: "cannot read the answer's body".into(),
            })?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(error) => return Err(stream_error(error)),
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
        {
            let stream = body.write().map_err(|()| HttpError::Protocol {
                reason: "cannot write the request's body".into(),
            })?;
            for chunk in bytes.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(stream_error)?;
            }
        }
        OutgoingBody::finish(body, None).map_err(failed)
    }

    fn stream_error(error: StreamError) -> HttpError {
        match error {
            StreamError::LastOperationFailed(error) => {
                match wasip2::http::types::http_error_code(&error) {
                    Some(code) => failed(code),
                    None => HttpError::Protocol {
                        reason: error.to_debug_string(),
                    },
                }
            }
            StreamError::Closed => HttpError::Protocol {
                reason: "the connection closed early".into(),
            },
        }
    }

    /// A `wasi:http` error code as the SDK's error.
    fn failed(code: ErrorCode) -> HttpError {
        let reason = format!("{code:?}");
        match code {
            ErrorCode::HttpRequestDenied
            | ErrorCode::DestinationIpProhibited
            | ErrorCode::ConfigurationError => HttpError::Denied { reason },
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => HttpError::Timeout { reason },
            ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::DnsError(_) => HttpError::Unreachable { reason },
            ErrorCode::HttpRequestBodySize(_) | ErrorCode::HttpResponseBodySize(_) => {
                HttpError::TooLarge { reason }
            }
            ErrorCode::HttpRequestUriInvalid => HttpError::InvalidUrl { reason },
            _ => HttpError::Protocol { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            Url::parse("https://crm.example.com:8443/a/b?c=1#frag"),
            Ok(Url {
                scheme: "https",
                authority: "crm.example.com:8443",
                path: "/a/b?c=1"
            })
        );
        assert_eq!(Url::parse("http://h").map(|u| u.path), Ok("/"));
        assert!(matches!(
            Url::parse("ftp://h/"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Url::parse("crm.example.com/x"),
            Err(HttpError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn redirects_resolve_against_the_url_they_answered() {
        assert_eq!(
            resolve("http://a:1/x/y", "/z").as_deref(),
            Ok("http://a:1/z")
        );
        assert_eq!(
            resolve("http://a:1/x/y", "z").as_deref(),
            Ok("http://a:1/x/z")
        );
        assert_eq!(
            resolve("http://a:1/x", "https://b/").as_deref(),
            Ok("https://b/")
        );
    }

    #[test]
    fn transient_failures_become_retryable_errors() {
        let timeout = HttpError::Timeout {
            reason: "slow".into(),
        };
        assert!(matches!(
            PluginError::from(timeout),
            PluginError::Retryable(_)
        ));
        let denied = HttpError::Denied {
            reason: "no".into(),
        };
        assert!(matches!(
            PluginError::from(denied),
            PluginError::Permanent(_)
        ));
    }
}
