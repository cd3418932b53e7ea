//! Links for people outside the organization: a task assigned to an email address is opened by a
//! signed link, `/x/{tenant}/{task}/{expires}/{signature}`, with no account. The signature is an
//! HMAC-SHA256 of the tenant, the task and the expiry under this daemon's key (made once, kept in
//! the data folder as `link.key`), so a link cannot be made up or moved to another task, and it
//! stops working at its expiry. It is single-use: opening it claims the task for the participant
//! (kept in the instance like any claim, so it holds across restarts), and a claimed or finished
//! task's link opens nothing.

use std::path::Path;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::engine::Millis;

/// The daemon's link key and the address the links point at.
#[derive(Debug)]
pub struct Links {
    /// As long as SHA-256's block, the longest key HMAC uses as it is.
    key: [u8; 64],
    /// `http://host:port`, as configured (`public_url`) or as bound.
    base: OnceLock<String>,
}

impl Links {
    /// Reads the key from `path`, or makes one there (readable by the daemon's user only).
    pub fn open(path: &Path) -> std::io::Result<Links> {
        let key = match std::fs::read_to_string(path) {
            Ok(text) => parse_key(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not 128 hex digits; remove it to make a new key (links sent so far stop working)", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 64];
                for chunk in key.chunks_mut(16) {
                    chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                }
                write_private(path, &hex::encode(key))?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Links {
            key,
            base: OnceLock::new(),
        })
    }

    /// Where links point: set once, from the configuration or the address the daemon bound.
    pub fn set_base(&self, base: &str) {
        let _ = self.base.set(base.trim_end_matches('/').to_string());
    }

    fn signature(&self, tenant: &str, task: &str, expires: Millis) -> Hmac<Sha256> {
        let key: hmac::digest::Key<Hmac<Sha256>> = self.key.into();
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&key);
        mac.update(format!("flowgate-link-v1\n{tenant}\n{task}\n{expires}").as_bytes());
        mac
    }

    /// The path of the link to `task`, valid until `expires`.
    pub fn path(&self, tenant: &str, task: &str, expires: Millis) -> String {
        let signature = hex::encode(
            self.signature(tenant, task, expires)
                .finalize()
                .into_bytes(),
        );
        format!("/x/{tenant}/{task}/{expires}/{signature}")
    }

    /// The whole link, if the daemon knows its address.
    pub fn url(&self, tenant: &str, task: &str, expires: Millis) -> Option<String> {
        let base = self.base.get()?;
        Some(format!("{base}{}", self.path(tenant, task, expires)))
    }

    /// Whether `signature` is this daemon's for the tenant, task and expiry (in constant time).
    pub fn verify(&self, tenant: &str, task: &str, expires: Millis, signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.signature(tenant, task, expires)
            .verify_slice(&bytes)
            .is_ok()
    }
}

impl crate::service::LinkMaker for Links {
    fn link(&self, tenant: &str, task: &str, expires: Millis) -> Option<String> {
        self.url(tenant, task, expires)
    }
}

fn parse_key(text: &str) -> Option<[u8; 64]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_for_its_task_and_expiry_only_and_the_key_is_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("link.key");
        let links = Links::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let made = links.path("acme", "i1.t1", 1_000);
        let signature = made.rsplit('/').next().unwrap_or_default();
        assert!(links.verify("acme", "i1.t1", 1_000, signature));
        assert!(!links.verify("acme", "i1.t2", 1_000, signature));
        assert!(!links.verify("acme", "i1.t1", 2_000, signature));
        assert!(!links.verify("globex", "i1.t1", 1_000, signature));
        assert!(!links.verify("acme", "i1.t1", 1_000, "zz"));
        // The same key after a restart: links sent before still open.
        let again = Links::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.verify("acme", "i1.t1", 1_000, signature));
        assert_eq!(links.url("acme", "i1.t1", 1_000), None);
        links.set_base("http://flowgate.example/");
        assert_eq!(
            links.url("acme", "i1.t1", 1_000),
            Some(format!("http://flowgate.example{made}"))
        );
    }
}
