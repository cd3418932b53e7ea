//! The web app, served by the daemon at `/`: people's inboxes and task forms, and the operators'
//! instances, timelines, diagrams and incidents. Pages are HTML rendered on the server from
//! askama templates (checked when the host compiles) and work without JavaScript; one small
//! script of our own (`assets/app.js`, no framework, nothing from a CDN) adds local times, the
//! inbox's refresh and checks in the page before a form is sent.
//!
//! Everything a page shows or does goes through the service with the same tenant and the same
//! person as the API would: another tenant's ids are not found, another role's task is
//! forbidden.

mod catalog;
mod diagram;
mod format;
mod forms;
mod links;
mod operate;
mod outside;
mod reports;
mod session;
mod start;
mod work;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};

pub use diagram::{DiagramError, Progress, svg};
pub use links::Links;
pub use session::Sessions;

use super::AppState;
use super::auth::{Access, Principal};
use super::error::ApiError;
use super::extract::Caller;
use super::quota;

/// The web app's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/inbox", get(work::inbox))
        .route("/tasks/{id}", get(work::task).post(work::complete))
        .route("/tasks/{id}/claim", post(work::claim))
        .route("/tasks/{id}/unclaim", post(work::unclaim))
        .route("/start", get(start::list))
        .route("/start/{workflow}", get(start::form).post(start::start))
        .route("/instances", get(operate::instances))
        .route("/instances/{id}", get(operate::instance))
        .route("/instances/{id}/diagram.svg", get(instance_diagram))
        .route("/instances/{id}/cancel", post(operate::cancel))
        .route("/instances/{id}/pause", post(operate::pause))
        .route("/instances/{id}/resume", post(operate::resume))
        .route("/instances/{id}/incidents/{token}", post(operate::resolve))
        .route("/incidents", get(operate::incidents))
        .route("/definitions", get(catalog::definitions))
        .route("/definitions/{id}", get(catalog::definition))
        .route("/definitions/{id}/draft", post(catalog::draft))
        .route("/plugins", get(catalog::plugins))
        .route("/reports", get(reports::index))
        .route("/reports/{workflow}", get(reports::report))
        .route("/reports/processes/{id}", get(reports::process_report))
        .route(
            "/x/{tenant}/{task}/{expires}/{signature}",
            get(outside::landing).post(outside::open),
        )
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

/// The signed-in person (or administrator) a page is for.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Principal,
    pub session: session::Session,
    /// For someone outside the organization: the one task their link opened.
    pub only_task: Option<String>,
}

impl Viewer {
    pub fn caller(&self) -> Caller {
        Caller(self.caller.clone())
    }

    pub fn tenant(&self) -> &str {
        &self.caller.tenant
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.caller.access, Access::Admin)
    }

    /// The header every page shows.
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        let (user, roles) = match &self.caller.access {
            Access::Person(p) => (p.id.clone(), p.roles.join(", ")),
            Access::Admin => (self.caller.token.clone(), "administrator".to_string()),
        };
        Chrome {
            user,
            roles,
            tenant: self.caller.tenant.clone(),
            csrf: self.session.csrf.clone(),
            nav,
            admin: self.is_admin(),
            outsider: self.only_task.is_some(),
            zone: self.caller.timezone.clone().unwrap_or_default(),
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, form: &Fields) -> Result<(), PageError> {
        match form.get("csrf") {
            Some(token) if self.session.csrf_matches(token) => Ok(()),
            _ => Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The page was open too long or from another sign-in. Go back, reload it and try again.",
            )),
        }
    }

    /// Takes one command from the tenant's quota, as an API command would.
    pub fn take_command(&self, state: &AppState) -> Result<(), PageError> {
        quota::admit(state, self.tenant()).map_err(PageError::from)
    }
}

/// The page header's facts.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub roles: String,
    pub tenant: String,
    pub csrf: String,
    /// Which tab is open.
    pub nav: &'static str,
    pub admin: bool,
    /// Someone outside the organization, who sees only their task.
    pub outsider: bool,
    /// The IANA zone the reader's times are shown in; empty for their browser's.
    pub zone: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let found = session_id(&parts.headers)
            .and_then(|id| state.sessions.get(&id))
            .and_then(|session| match &session.holder {
                // The token is checked again each time: one removed from the tenant's file ends
                // its sessions.
                session::Holder::Token(token) => {
                    let caller = state.tenants.snapshot().auth.authenticate(token)?;
                    Some(Viewer {
                        caller,
                        session,
                        only_task: None,
                    })
                }
                session::Holder::Outsider {
                    tenant,
                    task,
                    email,
                } => Some(Viewer {
                    caller: Principal {
                        tenant: tenant.clone(),
                        token: format!("link for {email}"),
                        access: Access::Person(crate::engine::Person {
                            id: email.clone(),
                            roles: Vec::new(),
                            via: None,
                        }),
                        timezone: None,
                    },
                    only_task: Some(task.clone()),
                    session,
                }),
            });
        if let Some(viewer) = &found
            && let Some(task) = &viewer.only_task
        {
            let path = parts.uri.path();
            let own = format!("/tasks/{task}");
            if path != own && path != "/logout" {
                return Err(PageError::new(
                    StatusCode::FORBIDDEN,
                    "This link opens one task",
                    "The link you were sent opens only the task it was sent for.",
                )
                .into_response());
            }
        }
        found.ok_or_else(|| {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/inbox", |p| p.as_str())
                .to_string();
            Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response()
        })
    }
}

/// A submitted form's fields, in order (a name may repeat).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Fields {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, PageError> {
        match axum::Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(axum::Form(fields)) => Ok(Fields(fields)),
            Err(rejection) => Err(PageError::new(
                rejection.status(),
                "The form could not be read",
                rejection.body_text(),
            )),
        }
    }
}

/// A page that could not be shown, as a page that says why.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        let title = match error.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not yours to open",
            StatusCode::CONFLICT => "This has moved on",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            StatusCode::SERVICE_UNAVAILABLE => "Flowgate is busy",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        PageError::new(error.status, title, error.message)
    }
}

impl From<crate::service::ServiceError> for PageError {
    fn from(error: crate::service::ServiceError) -> Self {
        PageError::from(ApiError::from(error))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, html(&self)).into_response()
    }
}

/// The latest version of each of the tenant's workflows, by id.
pub fn latest_definitions(
    s: &AppState,
    tenant: &str,
) -> Result<std::collections::BTreeMap<String, crate::definition::Definition>, PageError> {
    let mut latest = std::collections::BTreeMap::new();
    for d in s.flowgate.definitions(tenant)? {
        match latest.get(&d.definition.id) {
            Some((version, _)) if *version >= d.version => {}
            _ => {
                latest.insert(d.definition.id.clone(), (d.version, d.definition));
            }
        }
    }
    Ok(latest.into_iter().map(|(id, (_, def))| (id, def)).collect())
}

/// The ids of the tenant's workflows, for a page's workflow filter.
pub fn workflow_ids(s: &AppState, tenant: &str) -> Result<Vec<String>, PageError> {
    Ok(latest_definitions(s, tenant)?.into_keys().collect())
}

/// A rendered template as an HTML answer; a template that fails to render is a 500 page.
pub fn html<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "web: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// `application/x-www-form-urlencoded`-style escaping for a query value.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Debug, Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(query: axum::extract::Query<LoginQuery>) -> Response {
    html(&LoginPage {
        next: safe_next(query.next.as_deref()),
        error: None,
    })
}

/// Only a path of this site: never another origin (`//evil.example`, `https://...`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/inbox".to_string(),
    }
}

/// The session id the request's `Cookie` header carries.
fn session_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == session::COOKIE)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` header.
fn set_cookie(cookie: &Cookie<'_>) -> [(header::HeaderName, String); 1] {
    [(header::SET_COOKIE, cookie.to_string())]
}

async fn login(State(state): State<AppState>, form: Fields) -> Response {
    let next = safe_next(form.get("next"));
    let token = form.get("token").unwrap_or("").trim();
    if state.tenants.snapshot().auth.authenticate(token).is_none() {
        let page = LoginPage {
            next,
            error: Some("That token is not valid. Check it and try again.".to_string()),
        };
        return (StatusCode::UNAUTHORIZED, html(&page)).into_response();
    }
    let id = state
        .sessions
        .start(session::Holder::Token(token.to_string()), session::LIFETIME);
    let cookie = Cookie::build((session::COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            session::LIFETIME.as_secs().try_into().unwrap_or(i64::MAX),
        ))
        .build();
    (set_cookie(&cookie), Redirect::to(&next)).into_response()
}

async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    form: Fields,
) -> Response {
    if let Err(e) = viewer.check_csrf(&form) {
        return e.into_response();
    }
    if let Some(id) = session_id(&headers) {
        state.sessions.end(&id);
    }
    let gone = Cookie::build((session::COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    (set_cookie(&gone), Redirect::to("/login")).into_response()
}

const CSS: &str = include_str!("web/assets/app.css");
const JS: &str = include_str!("web/assets/app.js");

async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Security headers for every page: no framing, no sniffing, scripts and styles only from here.
pub async fn headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A diagram as an `image/svg+xml` answer that runs nothing when opened on its own.
pub fn svg_response(drawn: Result<String, DiagramError>) -> Result<Response, ApiError> {
    let svg = drawn
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}

/// An instance's diagram, marked with where it is, as an SVG answer.
pub fn instance_svg(state: &AppState, tenant: &str, id: &str) -> Result<Response, ApiError> {
    let (instance, history) = state.flowgate.instance_with_history(tenant, id)?;
    let def =
        state
            .flowgate
            .definition(tenant, &instance.definition_id, instance.definition_version)?;
    svg_response(svg(&def, Some(&Progress::of(&instance, &history))))
}

async fn instance_diagram(
    State(state): State<AppState>,
    viewer: Viewer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match instance_svg(&state, viewer.tenant(), &id) {
        Ok(r) => r,
        Err(e) => PageError::from(e).into_response(),
    }
}
