//! Webhook notifications: each delivery is POSTed as JSON to the tenant's URL, signed with
//! HMAC-SHA256 over the body (`X-Flowgate-Signature: sha256=<hex>`), with the delivery id in
//! `X-Flowgate-Delivery` for the receiver to dedupe on. A failed delivery stays in the outbox and
//! is retried with backoff, so every notification arrives at least once.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::Delivery;

/// A tenant's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// The HMAC key.
    pub secret: String,
    /// Per-request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `host:port` part of a URL (the whole URL when it has none): the lane its deliveries
/// share.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Credentials are not part of the destination.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.to_ascii_lowercase()
}

/// POSTs one delivery to a webhook; anything but a 2xx answer is an error.
pub async fn post(hook: &WebhookConfig, d: &Delivery) -> Result<(), String> {
    let body = serde_json::to_vec(d).map_err(|e| e.to_string())?;
    let signed = signature(&hook.secret, &body);
    let id = d.id.to_string();
    let hook = hook.clone();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(hook.timeout_ms)))
            .build()
            .into();
        let response = agent
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header("X-Flowgate-Delivery", &id)
            .header("X-Flowgate-Signature", &signed)
            .send(&body[..])
            .map_err(|e| format!("POST {}: {e}", hook.url))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("POST {} answered {status}", hook.url))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_to_one_host_share_a_lane() {
        assert_eq!(
            host_of("https://Hooks.Example.com:8443/a?b"),
            "hooks.example.com:8443"
        );
        assert_eq!(host_of("http://user:pw@10.0.0.1/x"), "10.0.0.1");
        assert_eq!(host_of("http://127.0.0.1:9000"), "127.0.0.1:9000");
    }

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        let s = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
