//! Native stand-ins for the host, so plugins unit test with plain `cargo test`.
//!
//! ```
//! use flowgate_plugin_sdk::testing::{context, with_config};
//!
//! let ctx = context(serde_json::json!({"amount": 120}));
//! with_config(&[("limit", "100")], || {
//!     assert_eq!(flowgate_plugin_sdk::config::get("limit").as_deref(), Some("100"));
//! });
//! assert!(ctx.data.contains("120"));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{
    ActionRequest, ApprovalRequest, IdempotencyKey, LogLevel, Money, RouteRequest, StepContext,
};

/// A log line a plugin wrote during a native test.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[cfg(feature = "http")]
type HttpHandler = Box<dyn FnMut(&crate::http::Request) -> crate::http::Response>;

thread_local! {
    #[cfg(feature = "http")]
    static HTTP: RefCell<Option<HttpHandler>> = RefCell::new(None);
    static CONFIG: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with these configuration values set for the plugin, as a tenant would set them.
pub fn with_config<R>(pairs: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let values = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let previous = CONFIG.with(|c| std::mem::replace(&mut *c.borrow_mut(), values));
    let result = f();
    CONFIG.with(|c| *c.borrow_mut() = previous);
    result
}

/// Runs `f` with `handler` answering the plugin's HTTP requests, as the other system would
/// (the `http` feature). Without one, requests fail as denied.
#[cfg(feature = "http")]
pub fn with_http<R>(
    handler: impl FnMut(&crate::http::Request) -> crate::http::Response + 'static,
    f: impl FnOnce() -> R,
) -> R {
    let previous = HTTP.with(|h| h.borrow_mut().replace(Box::new(handler)));
    let result = f();
    HTTP.with(|h| *h.borrow_mut() = previous);
    result
}

#[cfg(all(feature = "http", not(target_arch = "wasm32")))]
pub(crate) fn http_answer(
    request: &crate::http::Request,
) -> Result<crate::http::Response, crate::http::HttpError> {
    HTTP.with(|h| match h.borrow_mut().as_mut() {
        Some(handler) => Ok(handler(request)),
        None => Err(crate::http::HttpError::Denied {
            reason: format!(
                "{} {}: no HTTP in a native test without testing::with_http",
                request.method, request.url
            ),
        }),
    })
}

/// The log lines written so far on this thread, oldest first; clears them.
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// A step context for tests with `data` as the instance data.
pub fn context(data: serde_json::Value) -> StepContext {
    StepContext {
        tenant: "test-tenant".to_string(),
        definition_id: "test-definition".to_string(),
        definition_version: 1,
        instance_id: "test-instance".to_string(),
        step_id: "test-step".to_string(),
        data: data.to_string(),
    }
}

/// An approval policy's request for `amount` in `category`, from `test-requester`, with no
/// instance data; its fields are public, to change what a test needs.
///
/// ```
/// use flowgate_plugin_sdk::testing::{approval_request, usd};
///
/// let request = approval_request(usd(120_00), "office");
/// assert_eq!(request.amount.map(|m| m.minor_units), Some(12_000));
/// ```
pub fn approval_request(amount: Money, category: &str) -> ApprovalRequest {
    ApprovalRequest {
        context: context(serde_json::json!({})),
        amount: Some(amount),
        category: category.to_string(),
        requester: "test-requester".to_string(),
    }
}

/// A router's request over `data`, choosing among `candidates`.
pub fn route_request(data: serde_json::Value, candidates: &[&str]) -> RouteRequest {
    RouteRequest {
        context: context(data),
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
    }
}

/// A step action's request for `action` with `params`, as the first attempt of its step.
pub fn action_request(action: &str, params: serde_json::Value) -> ActionRequest {
    ActionRequest {
        context: context(serde_json::json!({})),
        action: action.to_string(),
        params: params.to_string(),
        idempotency: IdempotencyKey {
            key: "test-instance/test-step/1/1".to_string(),
            instance_id: "test-instance".to_string(),
            step_id: "test-step".to_string(),
            attempt: 1,
        },
    }
}

/// An amount in US dollars, given in cents.
pub fn usd(cents: i64) -> Money {
    Money {
        currency: "USD".to_string(),
        minor_units: cents,
    }
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn config_value(key: &str) -> Option<String> {
    CONFIG.with(|c| c.borrow().get(key).cloned())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn config_keys() -> Vec<String> {
    CONFIG.with(|c| c.borrow().keys().cloned().collect())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str, fields: Vec<(String, String)>) {
    LOGS.with(|l| {
        l.borrow_mut().push(LogLine {
            level,
            message: message.to_string(),
            fields,
        })
    });
}
