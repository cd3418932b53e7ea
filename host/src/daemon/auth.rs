//! API credentials: bearer tokens, stored as sha256 hashes in each tenant's configuration and
//! compared in constant time. A token is either an administrator's (deploys, uploads, cancels) or
//! a person's (acts on their own tasks, starts and reads instances).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::engine::Person;
pub use crate::tenant::{AccessKind, TokenConfig};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub token: String,
    pub access: Access,
    /// The IANA zone the holder reads times in, if their token names one.
    pub timezone: Option<String>,
}

/// What the caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Admin,
    Person(Person),
}

struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// Every tenant's tokens.
#[derive(Default)]
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

impl Authenticator {
    /// Adds a tenant's tokens; a malformed one is an error naming it.
    pub fn add(&mut self, tenant: &str, tokens: &[TokenConfig]) -> Result<(), String> {
        for t in tokens {
            let bytes = hex::decode(t.sha256.trim())
                .map_err(|e| format!("token `{}`: sha256 is not hex: {e}", t.name))?;
            let hash: [u8; 32] = bytes.try_into().map_err(|_| {
                format!(
                    "token `{}`: sha256 must be 32 bytes (64 hex digits)",
                    t.name
                )
            })?;
            let access = match t.access {
                AccessKind::Admin => Access::Admin,
                AccessKind::Person => {
                    let id = t.person.clone().ok_or_else(|| {
                        format!("token `{}`: a person token needs `person`", t.name)
                    })?;
                    Access::Person(Person {
                        id,
                        roles: t.roles.clone(),
                        via: None,
                    })
                }
            };
            if let Some(zone) = &t.timezone
                && zone.parse::<chrono_tz::Tz>().is_err()
            {
                return Err(format!(
                    "token `{}`: timezone `{zone}` is not an IANA time zone (like `Europe/Berlin`)",
                    t.name
                ));
            }
            let principal = Principal {
                tenant: tenant.to_string(),
                token: t.name.clone(),
                access,
                timezone: t.timezone.clone(),
            };
            self.entries.push(Entry { hash, principal });
        }
        Ok(())
    }

    /// The principal a bearer token belongs to. Every stored hash is compared, in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry.principal.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, access: AccessKind) -> TokenConfig {
        TokenConfig {
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            access,
            person: Some("dora".to_string()),
            roles: vec!["director".to_string()],
            timezone: None,
        }
    }

    #[test]
    fn tokens_resolve_to_their_tenant_and_access() {
        let mut auth = Authenticator::default();
        assert!(
            auth.add("acme", &[token("ops", "s3cret", AccessKind::Admin)])
                .is_ok()
        );
        assert!(
            auth.add("globex", &[token("dora", "other", AccessKind::Person)])
                .is_ok()
        );
        let ops = auth.authenticate("s3cret");
        assert_eq!(
            ops.map(|p| (p.tenant, p.access)),
            Some(("acme".to_string(), Access::Admin))
        );
        let dora = auth.authenticate("other").map(|p| p.tenant);
        assert_eq!(dora.as_deref(), Some("globex"));
        assert!(auth.authenticate("s3cret ").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn malformed_hashes_are_named() {
        let mut bad = token("x", "y", AccessKind::Admin);
        bad.sha256 = "abc".to_string();
        let err = Authenticator::default()
            .add("acme", &[bad])
            .err()
            .unwrap_or_default();
        assert!(err.contains("token `x`"), "{err}");
    }

    #[test]
    fn a_tokens_time_zone_is_kept_and_an_unknown_one_is_named() {
        let mut tokyo = token("ian", "t", AccessKind::Person);
        tokyo.timezone = Some("Asia/Tokyo".to_string());
        let mut auth = Authenticator::default();
        assert_eq!(auth.add("acme", &[tokyo]), Ok(()));
        let zone = auth.authenticate("t").and_then(|p| p.timezone);
        assert_eq!(zone.as_deref(), Some("Asia/Tokyo"));
        let mut mars = token("x", "y", AccessKind::Person);
        mars.timezone = Some("Mars/Olympus".to_string());
        let err = Authenticator::default()
            .add("acme", &[mars])
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "token `x`: timezone `Mars/Olympus` is not an IANA time zone (like `Europe/Berlin`)"
        );
    }
}
