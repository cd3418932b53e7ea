//! Sign-in sessions of the web app. A person signs in with their API token once; the daemon keeps
//! the session (in memory: a restart signs everyone out) and gives the browser only its random
//! id, in an `HttpOnly`, `SameSite=Strict` cookie that expires with it. Every request
//! authenticates the token again, so a token removed from the tenant's file ends its sessions at
//! once. Each session has its own CSRF token, which every form carries and every POST must match.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "flowgate_session";

/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// The most sessions kept; past it, signing in ends the oldest.
const MAX_SESSIONS: usize = 10_000;

/// Who a session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Someone who signed in with an API token (kept in memory only).
    Token(String),
    /// Someone outside the organization, from their link: they may open only that task.
    Outsider {
        tenant: String,
        task: String,
        email: String,
    },
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub holder: Holder,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires: Instant,
}

/// Every live session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `holder` that lasts `lifetime`; returns its id.
    pub fn start(&self, holder: Holder, lifetime: Duration) -> String {
        let id = random_hex();
        let session = Session {
            holder,
            csrf: random_hex(),
            expires: Instant::now() + lifetime,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), session);
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match live.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's, compared in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// 244 random bits, as hex: two v4 UUIDs (122 random bits each) from the OS's generator.
fn random_hex() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_ends() {
        let sessions = Sessions::default();
        let id = sessions.start(Holder::Token("secret".to_string()), LIFETIME);
        let found = sessions.get(&id);
        assert_eq!(
            found.as_ref().map(|s| &s.holder),
            Some(&Holder::Token("secret".to_string()))
        );
        assert!(found.is_some_and(|s| !s.csrf_matches("") && s.csrf.len() == 64));
        assert!(sessions.get("not-an-id").is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }
}
