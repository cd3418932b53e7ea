//! Each tenant's commands per second through the API: a token bucket per tenant, refilled at its
//! `quotas.commands_per_second` with bursts of twice as many. A command past it answers 429 with
//! `Retry-After`, before any work is done, so one tenant's burst costs the others nothing.
//! Reads are not counted; the engine's own commands (plugin answers, timers) never are.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::Caller;

/// The tenants' buckets.
#[derive(Debug, Default)]
pub struct CommandLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl CommandLimiter {
    /// Takes one command from `tenant`'s bucket; `Err` with the seconds to wait when empty.
    pub fn take(&self, tenant: &str, per_second: u32) -> Result<(), f64> {
        let rate = f64::from(per_second.max(1));
        let burst = 2.0 * rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - bucket.tokens) / rate)
        }
    }
}

/// Refuses a tenant's command (a POST) past its quota.
pub async fn limit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(caller) = Caller::from_headers(request.headers(), &state) else {
        return next.run(request).await;
    };
    let tenant = caller.tenant().to_string();
    // The handler's `Caller` takes the principal from here rather than authenticating again.
    request.extensions_mut().insert(caller.0);
    match admit(&state, &tenant) {
        Ok(()) => next.run(request).await,
        // The answer carries `Retry-After` from its `retry_after_seconds`.
        Err(refused) => refused.into_response(),
    }
}

/// Takes one command from `tenant`'s bucket, or says (429) how long to wait. The API's POSTs and
/// the web app's forms both come through here.
pub fn admit(state: &AppState, tenant: &str) -> Result<(), ApiError> {
    let per_second = state.tenants.snapshot().configs.get(tenant).map_or_else(
        || crate::tenant::Quotas::default().commands_per_second,
        |c| c.quotas.commands_per_second,
    );
    state.limiter.take(tenant, per_second).map_err(|wait| {
        state.flowgate.command_throttled(tenant);
        let seconds = wait.ceil().max(1.0) as u64;
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "tenant `{tenant}` is over its {per_second} commands per second; retry in {seconds} s"
            ),
        )
        .with(json!({"limit": per_second, "retry_after_seconds": seconds}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_of_twice_the_rate_then_refuses() {
        let limiter = CommandLimiter::default();
        for _ in 0..20 {
            assert!(limiter.take("a", 10).is_ok());
        }
        let wait = limiter.take("a", 10);
        assert!(wait.is_err_and(|w| w > 0.0 && w <= 0.1), "{wait:?}");
        // Another tenant has its own bucket.
        assert!(limiter.take("b", 10).is_ok());
    }
}
