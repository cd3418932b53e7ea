//! The HTTP API under `/api/v1/`: one module per resource. The tenant always comes from the
//! caller's token; another tenant's ids are simply not found.

mod definitions;
mod instances;
mod metrics;
mod plugins;
mod tasks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// Every route.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(prometheus))
        .route(
            "/api/v1/definitions",
            get(definitions::list).post(definitions::deploy),
        )
        .route("/api/v1/definitions/validate", post(definitions::validate))
        .route(
            "/api/v1/definitions/{id}/versions/{version}",
            get(definitions::version),
        )
        .route("/api/v1/plugins", get(plugins::list))
        .route("/api/v1/plugins/{name}", post(plugins::upload))
        .route(
            "/api/v1/instances",
            get(instances::list).post(instances::start),
        )
        .route("/api/v1/instances/{id}", get(instances::get))
        .route("/api/v1/instances/{id}/cancel", post(instances::cancel))
        .route("/api/v1/metrics/{workflow}", get(metrics::workflow))
        .route("/api/v1/tasks", get(tasks::inbox))
        .route("/api/v1/tasks/{id}/claim", post(tasks::claim))
        .route("/api/v1/tasks/{id}/unclaim", post(tasks::unclaim))
        .route("/api/v1/tasks/{id}/complete", post(tasks::complete))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Prometheus metrics. Unauthenticated like most scrape endpoints: keep it on a trusted network
/// (it names tenants and their plugins).
async fn prometheus(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let text = state.flowgate.render_metrics()?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    ))
}

/// Ready when the store answers and every tenant's plugins are loaded.
async fn ready(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let store = state.flowgate.store().tenants();
    let missing: Vec<&String> = state
        .tenants
        .iter()
        .filter(|(id, t)| state.flowgate.plugins().list(id).len() < t.plugins.len())
        .map(|(id, _)| id)
        .collect();
    match (store, missing.is_empty()) {
        (Ok(_), true) => Ok(axum::Json(json!({"ready": true}))),
        (Err(e), _) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("store: {e}"),
        )),
        (Ok(_), false) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("plugins not loaded for {missing:?}"),
        )),
    }
}
