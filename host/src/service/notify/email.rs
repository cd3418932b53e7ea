//! Email notifications over SMTP (lettre): each delivery becomes a plain-text message to the
//! addresses of its assignee and roles, with a `Message-ID` made from the delivery id so a
//! retried delivery can be recognised as the same message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::Delivery;

/// A tenant's email settings.
///
/// ```toml
/// [email]
/// url = "smtp://mail.acme.example:587?tls=required"   # smtps://host:465 for TLS, smtp://host:25 plain
/// from = "Flowgate <flowgate@acme.example>"
/// username = "flowgate"
/// password_env = "ACME_SMTP_PASSWORD"
/// [email.people]
/// dora = "dora@acme.example"
/// [email.roles]
/// procurement = "procurement@acme.example"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP relay, as a lettre URL: `smtp://` (add `?tls=required` for STARTTLS) or `smtps://`.
    pub url: String,
    /// The sender, e.g. `Flowgate <flowgate@acme.example>`.
    pub from: String,
    /// The SMTP user, if the relay wants one.
    pub username: Option<String>,
    /// The environment variable holding the SMTP password (never the password itself).
    pub password_env: Option<String>,
    /// Per-message timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Person id → address.
    #[serde(default)]
    pub people: BTreeMap<String, String>,
    /// Role → address (a list or a shared mailbox).
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A tenant's SMTP transport (it pools connections), built once per configuration.
#[derive(Clone)]
pub struct EmailSender {
    config: EmailConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// Checks the settings (URL, addresses, password variable) and builds the transport.
    pub fn new(config: EmailConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("email.from `{}`: {e}", config.from))?;
        for (section, map) in [("people", &config.people), ("roles", &config.roles)] {
            for (key, address) in map {
                address
                    .parse::<Mailbox>()
                    .map_err(|e| format!("email.{section}.{key} `{address}`: {e}"))?;
            }
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| format!("email.url `{}`: {e}", config.url))?
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let Some(user) = &config.username {
            let password = match &config.password_env {
                Some(name) => std::env::var(name).map_err(|_| {
                    format!("email.password_env: the environment variable `{name}` is not set")
                })?,
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(EmailSender {
            from,
            transport: builder.build(),
            config,
        })
    }

    /// The addresses a delivery goes to: its assignee's and its roles', each once; for an outside
    /// participant's task, their own address alone.
    pub fn recipients(&self, d: &Delivery) -> Vec<Mailbox> {
        if d.notification.link_expires_at.is_some() {
            return d
                .notification
                .assignee
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
        }
        let people = d
            .notification
            .assignee
            .iter()
            .map(|p| self.config.people.get(p));
        let roles = d
            .notification
            .roles
            .iter()
            .map(|r| self.config.roles.get(r));
        let addresses: BTreeSet<&String> = people.chain(roles).flatten().collect();
        addresses
            .into_iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// Sends one delivery, with the outside participant's `link` if it has one; a delivery
    /// nobody has an address for is done at once.
    pub async fn send(&self, d: &Delivery, link: Option<&str>) -> Result<(), String> {
        let to = self.recipients(d);
        if to.is_empty() {
            tracing::debug!(tenant = %d.tenant, id = d.id, "email: no address for this notification");
            return Ok(());
        }
        let message = compose(&self.from, to, d, link)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP {}: {e}", self.config.url))
    }
}

/// The message for a delivery.
fn compose(
    from: &Mailbox,
    to: Vec<Mailbox>,
    d: &Delivery,
    link: Option<&str>,
) -> Result<Message, String> {
    let n = &d.notification;
    if let (Some(link), Some(expires)) = (link, n.link_expires_at) {
        // An outside participant: what is asked and their link, without the internals.
        let until = crate::engine::time::format_seconds(expires);
        let body = format!(
            "You are asked to: {}\n\nOpen this link to do it (no account needed):\n{link}\n\nThe link works once, until {until} (UTC). If it has expired or was used already, ask the person who sent it for a new one.\n",
            n.title
        );
        return Message::builder()
            .from(from.clone())
            .subject(n.title.clone())
            .message_id(Some(format!("<{}.{}@flowgate>", d.tenant, d.id)))
            .header(ContentType::TEXT_PLAIN)
            .to(to
                .into_iter()
                .next()
                .ok_or_else(|| "no recipient".to_string())?)
            .body(body)
            .map_err(|e| format!("cannot build the message: {e}"));
    }
    let kind = serde_json::to_value(n.kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('-', " ")))
        .unwrap_or_default();
    let mut body = format!("{}\n\nWhat: {kind}\nInstance: {}\n", n.title, d.instance);
    if let Some(task) = &n.task {
        body.push_str(&format!("Task: {task}\n"));
    }
    if let Some(assignee) = &n.assignee {
        body.push_str(&format!("Assignee: {assignee}\n"));
    }
    if !n.roles.is_empty() {
        body.push_str(&format!("Roles: {}\n", n.roles.join(", ")));
    }
    body.push_str(&format!("Delivery: {}\n", d.id));
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(format!("[Flowgate] {}", n.title))
        .message_id(Some(format!("<{}.{}@flowgate>", d.tenant, d.id)))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    builder
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Notification, NotificationKind};

    fn config() -> EmailConfig {
        EmailConfig {
            url: "smtp://127.0.0.1:2525".to_string(),
            from: "Flowgate <flowgate@acme.example>".to_string(),
            username: None,
            password_env: None,
            timeout_ms: 1000,
            people: BTreeMap::from([("dora".to_string(), "dora@acme.example".to_string())]),
            roles: BTreeMap::from([
                ("manager".to_string(), "managers@acme.example".to_string()),
                ("director".to_string(), "dora@acme.example".to_string()),
            ]),
        }
    }

    fn delivery(assignee: Option<&str>, roles: &[&str]) -> Delivery {
        Delivery {
            id: 7,
            tenant: "acme".to_string(),
            instance: "i1".to_string(),
            notification: Notification {
                kind: NotificationKind::TaskAssigned,
                task: Some("i1.t1".to_string()),
                title: "Approve PO-1".to_string(),
                assignee: assignee.map(str::to_string),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                link_expires_at: None,
            },
        }
    }

    #[tokio::test]
    async fn recipients_come_from_people_and_roles_each_once() {
        let Ok(sender) = EmailSender::new(config()) else {
            panic!("valid settings refused")
        };
        let to: Vec<String> = sender
            .recipients(&delivery(Some("dora"), &["director", "manager", "cfo"]))
            .iter()
            .map(|m| m.email.to_string())
            .collect();
        assert_eq!(to, vec!["dora@acme.example", "managers@acme.example"]);
        assert!(sender.recipients(&delivery(Some("zed"), &[])).is_empty());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut bad = config();
        bad.roles
            .insert("cfo".to_string(), "not an address".to_string());
        let err = EmailSender::new(bad).err().unwrap_or_default();
        assert!(err.contains("email.roles.cfo"), "{err}");
        let mut bad = config();
        bad.url = "http://nope".to_string();
        assert!(
            EmailSender::new(bad)
                .err()
                .unwrap_or_default()
                .contains("email.url")
        );
        let mut bad = config();
        bad.username = Some("u".to_string());
        bad.password_env = Some("FLOWGATE_TEST_SURELY_UNSET".to_string());
        let err = EmailSender::new(bad).err().unwrap_or_default();
        assert!(err.contains("FLOWGATE_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn the_message_names_the_task_and_carries_the_delivery_id() {
        let Ok(from) = "flowgate@acme.example".parse::<Mailbox>() else {
            panic!("address")
        };
        let to = vec![from.clone()];
        let Ok(message) = compose(&from, to, &delivery(Some("dora"), &[]), None) else {
            panic!("message")
        };
        let text = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(text.contains("Subject: [Flowgate] Approve PO-1"), "{text}");
        assert!(text.contains("Message-ID: <acme.7@flowgate>"), "{text}");
        assert!(text.contains("Task: i1.t1"), "{text}");
        assert!(text.contains("What: task assigned"), "{text}");
    }

    #[tokio::test]
    async fn an_outside_participant_is_mailed_at_their_own_address_with_their_link_only() {
        let Ok(sender) = EmailSender::new(config()) else {
            panic!("valid settings refused")
        };
        let mut d = delivery(Some("joan@client.example"), &["director"]);
        d.notification.link_expires_at = Some(86_400_000);
        let to: Vec<String> = sender
            .recipients(&d)
            .iter()
            .map(|m| m.email.to_string())
            .collect();
        assert_eq!(to, ["joan@client.example"], "not the roles' addresses");
        let Ok(from) = "flowgate@acme.example".parse::<Mailbox>() else {
            panic!("address")
        };
        let link = "https://flowgate.example/x/acme/i1.t1/86400000/ab";
        let Ok(message) = compose(&from, sender.recipients(&d), &d, Some(link)) else {
            panic!("message")
        };
        let text = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(text.contains(link), "{text}");
        assert!(text.contains("1970-01-02T00:00:00Z"), "{text}");
        assert!(!text.contains("Instance: i1"), "no internals: {text}");
    }
}
