//! The HTTP API under `/api/v1/`: one module per resource. The tenant always comes from the
//! caller's token; another tenant's ids are simply not found.

mod definitions;
mod hooks;
mod incidents;
mod instances;
mod lifecycle;
mod messages;
mod metrics;
mod operator;
pub(crate) mod plugins;
mod processes;
mod schedules;
mod schema;
mod statuses;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::{AppState, body};

/// Bounds on requests.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub request_timeout: std::time::Duration,
    pub max_concurrent_requests: usize,
}

/// The API description; paths come from the handlers' annotations as they are routed.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flowgate",
        description = "The Flowgate workflow engine: definitions, plugins, instances, tasks and metrics \
                       of the caller's tenant (from its bearer token). Every error answers \
                       `{\"error\": {\"code\", \"message\", \"details\"}}`, including a \
                       method a path does not serve (405, with `Allow` listing those it does)."
    ),
    modifiers(&BearerAuth, &StrictBodies),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The bearer-token security scheme every `/api/v1` route uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The request bodies refuse fields they do not declare (`deny_unknown_fields`); the document
/// says so (`additionalProperties: false`), so that clients and generators know it.
struct StrictBodies;

impl Modify for StrictBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in [
            "Source",
            "Start",
            "Cancel",
            "Act",
            "Retry",
            "Skip",
            "SendMessage",
            "Why",
            "AllOfVersion",
            "Migrate",
        ] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Every route, and the OpenAPI document made from them.
pub fn router(state: AppState, http: &HttpLimits) -> Router {
    let limit = state.max_body_bytes;
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(prometheus))
        .routes(routes!(operator::backup))
        .routes(routes!(definitions::list, definitions::deploy))
        .routes(routes!(definitions::validate))
        .routes(routes!(definitions::version))
        .routes(routes!(definitions::diagram))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::upload))
        .routes(routes!(plugins::versions))
        .routes(routes!(plugins::calls))
        .routes(routes!(plugins::replay))
        .routes(routes!(plugins::upload_candidate, plugins::candidates))
        .routes(routes!(plugins::replay_candidate))
        .routes(routes!(plugins::promote_candidate))
        .routes(routes!(plugins::discard_candidate))
        .routes(routes!(instances::list, instances::start))
        .routes(routes!(instances::get))
        .routes(routes!(instances::cancel))
        .routes(routes!(lifecycle::pause_instance))
        .routes(routes!(lifecycle::resume_instance))
        .routes(routes!(lifecycle::pause_version))
        .routes(routes!(lifecycle::resume_version))
        .routes(routes!(lifecycle::migrate))
        .routes(routes!(instances::diagram))
        .routes(routes!(processes::get))
        .routes(routes!(processes::definitions))
        .routes(routes!(processes::definition))
        .routes(routes!(processes::metrics))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::retry))
        .routes(routes!(incidents::skip))
        .routes(routes!(messages::list, messages::send))
        .routes(routes!(messages::get))
        .routes(routes!(hooks::receive))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(metrics::workflow))
        .routes(routes!(tasks::inbox))
        .routes(routes!(tasks::claim))
        .routes(routes!(tasks::unclaim))
        .routes(routes!(tasks::complete))
        .split_for_parts();
    let mut openapi = openapi;
    statuses::add_shared(&mut openapi);
    let openapi = Arc::new(openapi);
    let web = super::web::router().layer(axum::middleware::from_fn(super::web::headers));
    routes
        .merge(web)
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::quota::limit,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, body::buffer))
        // A request (its body read included) that takes longer is answered 503; long polls
        // wait 30 s at most, so the default of 60 s never cuts one.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            http.request_timeout,
        ))
        .layer(GlobalConcurrencyLimitLayer::new(
            http.max_concurrent_requests,
        ))
        .layer(axum::middleware::from_fn(super::shape::json_errors))
        // The request id (the client's `X-Request-Id`, or a new one) is in every log line of the
        // request and in its answer.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                })
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                )
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// No route: in the API's error shape, or as a page for a browser outside `/api`.
async fn not_found(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_page = !uri.path().starts_with("/api/")
        && headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        return super::web::PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no page at this address.",
        )
        .into_response();
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// Alive.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", responses((status = 200, description = "`ok`")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics. Unauthenticated like most scrape endpoints: keep it on a trusted network
/// (it names tenants and their plugins).
#[utoipa::path(get, path = "/metrics", operation_id = "prometheusMetrics", tag = "operations", responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn prometheus(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let text = state.flowgate.render_metrics()?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            // prometheus-client encodes OpenMetrics (it ends in `# EOF`): say so.
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// Ready when the store answers and commits (after a failed commit, until one succeeds again),
/// every tenant's plugins are loaded and the last reload of the tenants' files found no problem.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations", responses((status = 200, description = "`{ready: true}`"), (status = 503, description = "What is not ready", body = ErrorBody)))]
async fn ready(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let unavailable =
        |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    if let Some(failure) = state.flowgate.store_failure().await {
        let since = crate::engine::time::format(failure.since).to_string();
        let message = format!(
            "the store cannot commit since {since}: {}; it is tried again every second",
            failure.error
        );
        return Err(ApiError::store_unavailable(&failure.error, message)
            .with(json!({"since": since, "retry_after_seconds": 1})));
    }
    // After the probe above: a store closed by a failed reopen is opened by it.
    if let Err(e) = state.flowgate.store().tenants() {
        return Err(unavailable(format!("store: {e}")));
    }
    let snapshot = state.tenants.snapshot();
    let missing: Vec<&String> = snapshot
        .configs
        .iter()
        .filter(|(id, t)| state.flowgate.plugins().list(id).len() < t.plugins.len())
        .map(|(id, _)| id)
        .collect();
    if !missing.is_empty() {
        return Err(unavailable(format!("plugins not loaded for {missing:?}")));
    }
    let problems = state.tenants.problems();
    if !problems.is_empty() {
        // Everyone learns which tenants; only a tenant's administrator (and the log) which
        // file and what is wrong with it.
        let admin_of = Caller::from_headers(&headers, &state)
            .filter(|c| c.admin("see").is_ok())
            .map(|c| c.tenant().to_string());
        let mut tenants: Vec<&str> = problems.values().map(|p| p.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let not_served: Vec<&str> = problems
            .values()
            .filter(|p| !p.served)
            .map(|p| p.tenant.as_str())
            .collect();
        let visible: Vec<serde_json::Value> = problems
            .iter()
            .filter(|(_, p)| admin_of.as_deref() == Some(p.tenant.as_str()))
            .map(|(path, p)| json!({"tenant": p.tenant, "file": path, "error": p.message}))
            .collect();
        let message = if not_served.is_empty() {
            format!(
                "the configuration of {} did not load; it serves as before",
                names(&tenants)
            )
        } else {
            format!(
                "the configuration of {} did not load; {} not served until it does",
                names(&tenants),
                names(&not_served)
            )
        };
        let mut details = json!({"tenants": tenants, "not_served": not_served});
        if !visible.is_empty() {
            details["problems"] = visible.into();
        }
        return Err(unavailable(message).with(details));
    }
    Ok(axum::Json(json!({"ready": true})))
}

/// `tenant `a``, or `tenants `a`, `b``.
fn names(tenants: &[&str]) -> String {
    let quoted: Vec<String> = tenants.iter().map(|t| format!("`{t}`")).collect();
    match quoted.len() {
        1 => format!("tenant {}", quoted[0]),
        _ => format!("tenants {}", quoted.join(", ")),
    }
}
