//! The pages a link opens for someone outside the organization: a landing page that says what is
//! asked (a mail scanner that fetches the link changes nothing), then, on their click, the task
//! is claimed for them and a session opens that task alone.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};

use super::session::{self, Holder};
use super::{PageError, html, quota, set_cookie, urlencode};
use crate::daemon::AppState;
use crate::engine::{Person, Task, TaskStatus};

#[derive(Debug, Template)]
#[template(path = "link.html")]
struct Landing {
    title: String,
    action: String,
    until: String,
}

type LinkPath = Path<(String, String, u64, String)>;

/// The task the link opens, if the link is this daemon's, unexpired, and the task still waits
/// for its participant.
fn check(
    s: &AppState,
    tenant: &str,
    task: &str,
    expires: u64,
    signature: &str,
) -> Result<Task, PageError> {
    let invalid = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that the whole link was copied from the message you were sent.",
        )
    };
    if !s.links.verify(tenant, task, expires, signature) {
        return Err(invalid());
    }
    if s.flowgate.clock().now() >= expires {
        return Err(PageError::new(
            StatusCode::GONE,
            "This link has expired",
            "Ask the person who sent it for a new one.",
        ));
    }
    let instance = crate::engine::Instance::of_task(task)
        .and_then(|i| s.flowgate.instance(tenant, i).ok())
        .ok_or_else(invalid)?;
    let found = instance.tasks.get(task).cloned().ok_or_else(invalid)?;
    if found.link_expires_at != Some(expires) {
        return Err(invalid());
    }
    if found.status != TaskStatus::Open {
        return Err(PageError::new(
            StatusCode::GONE,
            "This is done already",
            "The task this link was sent for is finished: there is nothing more to do.",
        ));
    }
    if found.claimed_by.is_some() {
        return Err(PageError::new(
            StatusCode::GONE,
            "This link was used already",
            "A link opens its task once. If that was not you, tell the person who sent it.",
        ));
    }
    Ok(found)
}

pub async fn landing(
    State(s): State<AppState>,
    Path((tenant, task, expires, signature)): LinkPath,
) -> Result<Response, PageError> {
    let found = check(&s, &tenant, &task, expires, &signature)?;
    Ok(html(&Landing {
        title: found.title,
        action: s.links.path(&tenant, &task, expires),
        until: super::format::iso(expires),
    }))
}

pub async fn open(
    State(s): State<AppState>,
    Path((tenant, task, expires, signature)): LinkPath,
) -> Result<Response, PageError> {
    let found = check(&s, &tenant, &task, expires, &signature)?;
    let Some(email) = found.assignee.clone() else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "The task has no participant.",
        ));
    };
    quota::admit(&s, &tenant).map_err(PageError::from)?;
    // The claim is what makes the link single-use: it is kept with the instance.
    let by = Person {
        id: email.clone(),
        roles: Vec::new(),
        via: None,
    };
    s.flowgate.claim_task(&tenant, &task, by).await?;
    let left = expires.saturating_sub(s.flowgate.clock().now());
    let lifetime = session::LIFETIME.min(std::time::Duration::from_millis(left));
    let id = s.sessions.start(
        Holder::Outsider {
            tenant,
            task: task.clone(),
            email,
        },
        lifetime,
    );
    let cookie = Cookie::build((session::COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            lifetime.as_secs().try_into().unwrap_or(i64::MAX),
        ))
        .build();
    Ok((
        set_cookie(&cookie),
        Redirect::to(&format!("/tasks/{}", urlencode(&task))),
    )
        .into_response())
}
