//! Outbound HTTP for plugins granted it: `wasi:http` requests, sent by the host only to the hosts
//! the tenant allowed, over TLS the host does, within the call's deadline and size caps.
//!
//! The plugin builds a request with `wasi:http/outgoing-handler`; wasmtime-wasi-http turns it into
//! an `http::Request` and hands it to [`Outbound::send_request`], which is where every rule is
//! kept:
//!
//! - **Allowed hosts.** The request's scheme, host and port must match an entry of
//!   `allowed_hosts` (`https://crm.example.com`, `https://*.example.com`, `http://127.0.0.1:8080`).
//!   The host does not follow redirects; a plugin that does sends a new request, checked again.
//! - **Private addresses.** A host name is resolved by the host, and the connection goes to the
//!   address that was checked (no second lookup a DNS answer could change). An address that is
//!   not public (loopback, private, link-local, unique-local, ...) is refused unless the entry
//!   names that address itself: allowing `crm.example.com` never reaches the operator's network.
//! - **Deadline and size.** Each request ends by `timeout_ms` and by the end of the plugin call,
//!   whichever is first (a plugin waiting on a slow server cannot outlive its call); request and
//!   response bodies are capped.
//! - **Secrets.** A header value may say `{{secret:NAME}}`; the host puts the secret's value in
//!   place as the request leaves. The plugin never reads it, and it is never in the instance's data
//!   or history. Secrets come from the environment or a file, named in `tenant.toml`.
//! - **Idempotency.** During a step action, every request carries `Idempotency-Key` (unless the
//!   plugin set one): the same for every attempt of one step activation, so the other system can
//!   recognize a retry of a request it already handled.
//!
//! Refusals reach the plugin as `wasi:http` error codes (`HTTP-request-denied`,
//! `destination-IP-prohibited`, `connection-timeout`, ...) and the reason lands in the call's log.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::uri::Scheme;
use axum::http::{self, HeaderName, HeaderValue, Request, Response};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What a tenant grants a plugin for outbound HTTP (`[plugins.<name>.grants.http]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// Where requests may go: `scheme://host[:port]`, the scheme `http`, `https` or `*`, the host
    /// a name, `*.` and a domain (its subdomains), or an IP address; without a port, the scheme's
    /// default.
    pub allowed_hosts: Vec<String>,
    /// Time per request in milliseconds (connect, send, answer and body), and never past the end
    /// of the plugin call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Cap on a request's body, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_request_bytes: u64,
    /// Cap on a response's body, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_response_bytes: u64,
    /// Secrets the plugin may name in a header value as `{{secret:NAME}}`.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
}

/// The longest `timeout_ms` (an hour); a request never outlives its plugin call anyway.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_bytes() -> u64 {
    1 << 20
}

/// Where a secret's value is read, each time a request uses it (so a rotated secret applies at
/// once): an environment variable of the daemon, or a file (its content, less a final newline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

impl SecretSource {
    fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable `{var}` is not set"))
            }
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read `{}`: {e}", path.display())),
        }
    }
}

impl HttpGrant {
    /// A grant of these hosts with the default timeout and caps and no secrets.
    pub fn allowing(hosts: &[&str]) -> Self {
        HttpGrant {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            timeout_ms: default_timeout_ms(),
            max_request_bytes: default_max_bytes(),
            max_response_bytes: default_max_bytes(),
            secrets: BTreeMap::new(),
        }
    }

    /// Checks every entry and secret, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.allowed_hosts.is_empty() {
            return Err("allowed_hosts: empty; name at least one host the plugin may call".into());
        }
        for entry in &self.allowed_hosts {
            AllowedHost::parse(entry).map_err(|why| format!("allowed_hosts: `{entry}` {why}"))?;
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(format!(
                "timeout_ms: {} is not between 1 and {MAX_TIMEOUT_MS} (an hour)",
                self.timeout_ms
            ));
        }
        for (name, source) in &self.secrets {
            if !valid_secret_name(name) {
                return Err(format!(
                    "secrets.{name}: a secret's name is letters, digits, `_` and `-`"
                ));
            }
            source
                .read()
                .map_err(|why| format!("secrets.{name}: {why}"))?;
        }
        Ok(())
    }

    fn allowed(&self) -> Vec<AllowedHost> {
        // Validated when the plugin loaded.
        self.allowed_hosts
            .iter()
            .filter_map(|entry| AllowedHost::parse(entry).ok())
            .collect()
    }
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One parsed `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// `None`: either scheme.
    scheme: Option<Scheme>,
    host: HostPattern,
    /// `None`: the scheme's default port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Name(String),
    /// `*.example.com`: kept as `.example.com`.
    Subdomains(String),
    Ip(IpAddr),
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self, &'static str> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("needs a scheme, e.g. `https://crm.example.com`")?;
        let scheme = match scheme {
            "https" => Some(Scheme::HTTPS),
            "http" => Some(Scheme::HTTP),
            "*" => None,
            _ => return Err("has a scheme other than `http`, `https` or `*`"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err("names more than a host and port");
        }
        let authority: http::uri::Authority = rest
            .parse()
            .map_err(|_| "is not a host with an optional port")?;
        let port_text = rest
            .get(authority.host().len()..)
            .and_then(|after| after.strip_prefix(':'));
        if port_text.is_some_and(|port| port.parse::<u16>().is_err()) {
            return Err("is not a host with an optional port");
        }
        let host = authority.host().to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = if let Ok(ip) = bare.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err("has a wildcard other than a leading `*.`");
            }
            HostPattern::Subdomains(format!(".{domain}"))
        } else if host.contains('*') {
            return Err("has a wildcard other than a leading `*.`");
        } else if host.is_empty() {
            return Err("names no host");
        } else {
            HostPattern::Name(host)
        };
        Ok(AllowedHost {
            scheme,
            host,
            port: authority.port_u16(),
        })
    }

    fn allows(&self, target: &Target) -> bool {
        let scheme_ok = self.scheme.as_ref().is_none_or(|s| *s == target.scheme);
        let port = self.port.unwrap_or(default_port(&target.scheme));
        let host_ok = match (&self.host, &target.host) {
            (HostPattern::Ip(allowed), Host::Ip(ip)) => allowed == ip,
            (HostPattern::Name(allowed), Host::Name(name)) => allowed == name,
            (HostPattern::Subdomains(suffix), Host::Name(name)) => name.ends_with(suffix.as_str()),
            _ => false,
        };
        scheme_ok && host_ok && port == target.port
    }
}

fn default_port(scheme: &Scheme) -> u16 {
    if *scheme == Scheme::HTTPS { 443 } else { 80 }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: Scheme,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::Name(name) => write!(f, "{}://{name}:{}", self.scheme, self.port),
            Host::Ip(ip) => write!(f, "{}://{}", self.scheme, SocketAddr::new(*ip, self.port)),
        }
    }
}

impl Target {
    fn of(uri: &http::Uri) -> Option<Target> {
        let scheme = uri.scheme()?.clone();
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host),
        };
        let port = authority.port_u16().unwrap_or(default_port(&scheme));
        Some(Target { scheme, host, port })
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// unique-local, shared (carrier NAT), documentation, multicast, broadcast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The `wasi:http` hooks of one plugin store: the grant, and what the running call adds (its
/// end, its idempotency key).
pub(crate) struct Outbound {
    grant: Arc<HttpGrant>,
    allowed: Arc<[AllowedHost]>,
    /// When the running call must end, if one is running.
    pub call_ends: Option<std::time::Instant>,
    /// The running step action's idempotency key for requests (`None` outside an action).
    pub idempotency_key: Option<Arc<str>>,
    /// Why requests were refused or failed, for the call's log.
    notes: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("allowed_hosts", &self.grant.allowed_hosts)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    pub fn new(grant: &HttpGrant) -> Self {
        Outbound {
            allowed: grant.allowed().into(),
            grant: Arc::new(grant.clone()),
            call_ends: None,
            idempotency_key: None,
            notes: Arc::default(),
        }
    }

    /// Takes the notes written since the last take.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn note(&self, note: String) {
        tracing::info!(target: "plugin", "{note}");
        Notes(self.notes.clone()).push(note);
    }

    /// Checks a request against the grant and prepares it: secrets in place, the idempotency
    /// key added, the body capped. Returns the target, the checked request and its deadline.
    fn prepare(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(Target, Request<WasiBody>, Deadlines), Error> {
        let Some(target) = Target::of(request.uri()) else {
            self.note(format!(
                "http: `{}` names no scheme and host",
                request.uri()
            ));
            return Err(Error::HttpRequestUriInvalid);
        };
        if !self.allowed.iter().any(|allowed| allowed.allows(&target)) {
            self.note(format!(
                "http: request to {target} refused: not in this plugin's allowed_hosts ({})",
                self.grant.allowed_hosts.join(", ")
            ));
            return Err(Error::HttpRequestDenied);
        }
        for value in request.headers_mut().values_mut() {
            let Ok(text) = value.to_str() else { continue };
            if !text.contains("{{secret:") {
                continue;
            }
            match self.fill_secrets(text) {
                Ok(filled) => {
                    let mut filled = HeaderValue::from_str(&filled).map_err(|_| {
                        self.note("http: a secret's value cannot be a header value".into());
                        Error::ConfigurationError
                    })?;
                    filled.set_sensitive(true);
                    *value = filled;
                }
                Err(why) => {
                    self.note(format!("http: request to {target} refused: {why}"));
                    return Err(Error::ConfigurationError);
                }
            }
        }
        if let Some(key) = &self.idempotency_key {
            let name = HeaderName::from_static("idempotency-key");
            if !request.headers().contains_key(&name)
                && let Ok(value) = HeaderValue::from_str(key)
            {
                request.headers_mut().insert(name, value);
            }
        }
        let limit = self.grant.max_request_bytes;
        let request = request.map(|body| {
            Capped::new(body, limit, Error::HttpRequestBodySize(Some(limit)), None).boxed_unsync()
        });
        let deadlines = Deadlines::new(&self.grant, self.call_ends, options);
        Ok((target, request, deadlines))
    }

    fn fill_secrets(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{secret:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + "{{secret:".len()..];
            let end = after
                .find("}}")
                .ok_or("a header has `{{secret:` with no closing `}}`")?;
            let name = after[..end].trim();
            let source = self.grant.secrets.get(name).ok_or_else(|| {
                format!("the secret `{name}` is not one of this plugin's secrets in tenant.toml")
            })?;
            out.push_str(
                &source
                    .read()
                    .map_err(|why| format!("secret `{name}`: {why}"))?,
            );
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A clone of the notes, for the request's future.
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn push(&self, note: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(note);
    }
}

/// When a request's steps must be done by.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    /// Everything, the body included.
    end: Instant,
    connect: Instant,
    first_byte: Duration,
}

impl Deadlines {
    fn new(
        grant: &HttpGrant,
        call_ends: Option<std::time::Instant>,
        options: Option<RequestOptions>,
    ) -> Self {
        let now = Instant::now();
        let mut end = now + Duration::from_millis(grant.timeout_ms.min(MAX_TIMEOUT_MS));
        if let Some(call_ends) = call_ends {
            end = end.min(Instant::from_std(call_ends));
        }
        let options = options.unwrap_or_default();
        let connect = options
            .connect_timeout
            .and_then(|limit| now.checked_add(limit))
            .map_or(end, |at| at.min(end));
        Deadlines {
            end,
            connect,
            first_byte: options.first_byte_timeout.unwrap_or(Duration::MAX),
        }
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        drop(fut);
        let prepared = self.prepare(request, options);
        let allowed = self.allowed.clone();
        let max_response = self.grant.max_response_bytes;
        let notes = Notes(self.notes.clone());
        Box::new(async move {
            let (target, request, deadlines) = prepared?;
            let sent = send(&target, &allowed, request, deadlines, max_response, &notes).await;
            sent.map(|response| {
                let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                    Box::new(async { Ok(()) });
                (response, done)
            })
        })
    }
}

/// Resolves, checks the address, connects (with TLS for `https`) and sends.
async fn send(
    target: &Target,
    allowed: &[AllowedHost],
    mut request: Request<WasiBody>,
    deadlines: Deadlines,
    max_response: u64,
    notes: &Notes,
) -> Result<Response<WasiBody>, Error> {
    let addr = tokio::time::timeout_at(deadlines.connect, address(target, allowed, notes))
        .await
        .map_err(|_| Error::DnsTimeout)??;
    let tcp = tokio::time::timeout_at(deadlines.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            notes.push(format!("http: connecting to {target} timed out"));
            Error::ConnectionTimeout
        })?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = if target.scheme == Scheme::HTTPS {
        let name = match &target.host {
            Host::Name(name) => rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?,
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let tls = tokio::time::timeout_at(
            deadlines.connect,
            tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Tls)?;
        handshake(TokioIo::new(tls), deadlines).await?
    } else {
        handshake(TokioIo::new(tcp), deadlines).await?
    };
    tokio::spawn(connection);

    // The connection is to the host already: the request line carries only the path.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let first_byte = Instant::now()
        .checked_add(deadlines.first_byte)
        .map_or(deadlines.end, |at| at.min(deadlines.end));
    let late = || {
        notes.push(format!("http: {target} did not answer in time"));
        Error::ConnectionReadTimeout
    };
    let response = tokio::time::timeout_at(first_byte, sender.send_request(request))
        .await
        .map_err(|_| late())?
        // The connection ends at the deadline too; whichever is seen first, it is a timeout.
        .map_err(|e| {
            if Instant::now() >= first_byte {
                late()
            } else {
                Error::from(e)
            }
        })?;
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_response) {
        notes.push(format!(
            "http: {target} answered with {} bytes, over the cap of {max_response}",
            declared.unwrap_or_default()
        ));
        return Err(Error::HttpResponseBodySize(declared));
    }
    Ok(response.map(|body| {
        Capped::new(
            body.map_err(Error::from),
            max_response,
            Error::HttpResponseBodySize(Some(max_response)),
            Some(deadlines.end),
        )
        .boxed_unsync()
    }))
}

type Handshake = (
    hyper::client::conn::http1::SendRequest<WasiBody>,
    Pin<Box<dyn Future<Output = ()> + Send>>,
);

async fn handshake<T>(io: TokioIo<T>, deadlines: Deadlines) -> Result<Handshake, Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) =
        tokio::time::timeout_at(deadlines.connect, hyper::client::conn::http1::handshake(io))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    // The connection lives until the response's body is read or dropped, and is closed soon
    // after the request's end: the request itself ends at it (see `send` and `Capped`).
    let end = deadlines.end + Duration::from_secs(1);
    let connection = Box::pin(async move {
        let _ = tokio::time::timeout_at(end, connection).await;
    });
    Ok((sender, connection))
}

/// The address to connect to: the literal one, or the first resolved one the grant allows.
async fn address(
    target: &Target,
    allowed: &[AllowedHost],
    notes: &Notes,
) -> Result<SocketAddr, Error> {
    let name = match &target.host {
        // An address named in the request was checked against the entries naming it.
        Host::Ip(ip) => return Ok(SocketAddr::new(*ip, target.port)),
        Host::Name(name) => name,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), target.port))
        .await
        .map_err(|_| Error::DnsError {
            rcode: Some(format!("cannot resolve {name}")),
            info_code: None,
        })?
        .collect();
    let listed = |ip: IpAddr| {
        let by_address = Target {
            host: Host::Ip(ip),
            ..target.clone()
        };
        allowed.iter().any(|entry| entry.allows(&by_address))
    };
    match resolved
        .iter()
        .find(|addr| is_public(addr.ip()) || listed(addr.ip()))
    {
        Some(addr) => Ok(*addr),
        None if resolved.is_empty() => Err(Error::DestinationNotFound),
        None => {
            let found: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
            notes.push(format!(
                "http: request to {target} refused: {name} resolves to {}, not a public address, and no allowed_hosts entry names it",
                found.join(", ")
            ));
            Err(Error::DestinationIpProhibited)
        }
    }
}

/// The TLS client setup: rustls with ring and the Mozilla roots (webpki-roots), built once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .with_root_certificates(roots.clone())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// A body that ends in `over` past `limit` bytes, and in a timeout at `deadline`.
struct Capped<B> {
    inner: B,
    seen: u64,
    limit: u64,
    over: Option<Error>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Capped<B> {
    fn new(inner: B, limit: u64, over: Error, deadline: Option<Instant>) -> Self {
        Capped {
            inner,
            seen: 0,
            limit,
            over: Some(over),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.seen += data.len() as u64;
            if this.seen > this.limit {
                let over = this.over.take().unwrap_or(Error::HttpProtocolError);
                return Poll::Ready(Some(Err(over)));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::of(&url.parse().unwrap_or_default()).unwrap_or(Target {
            scheme: Scheme::HTTP,
            host: Host::Name(String::new()),
            port: 0,
        })
    }

    fn allows(entry: &str, url: &str) -> bool {
        AllowedHost::parse(entry).is_ok_and(|allowed| allowed.allows(&target(url)))
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        assert!(allows(
            "https://crm.example.com",
            "https://crm.example.com/api"
        ));
        assert!(allows(
            "https://crm.example.com",
            "https://CRM.example.com:443/"
        ));
        assert!(!allows(
            "https://crm.example.com",
            "http://crm.example.com/"
        ));
        assert!(!allows(
            "https://crm.example.com",
            "https://crm.example.com:8443/"
        ));
        assert!(!allows(
            "https://crm.example.com",
            "https://evil.com/?crm.example.com"
        ));
        assert!(!allows(
            "https://crm.example.com",
            "https://crm.example.com.evil.com/"
        ));
        assert!(allows(
            "*://crm.example.com:8080",
            "http://crm.example.com:8080/"
        ));
        assert!(allows("https://*.example.com", "https://a.b.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com/"));
        assert!(!allows("https://*.example.com", "https://badexample.com/"));
        assert!(allows("http://127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(!allows("http://127.0.0.1:8080", "http://127.0.0.1:8081/x"));
        assert!(!allows("http://127.0.0.1:8080", "http://localhost:8080/x"));
        assert!(allows("http://[::1]:9000", "http://[::1]:9000/"));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (entry, why) in [
            ("crm.example.com", "needs a scheme"),
            ("ftp://crm.example.com", "other than"),
            ("https://crm.example.com/api", "more than a host"),
            ("https://user@crm.example.com", "more than a host"),
            ("https://crm.*.com", "wildcard"),
            ("https://*.", "wildcard"),
            ("https://crm.example.com:http", "not a host"),
        ] {
            let refused = AllowedHost::parse(entry);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains(why)),
                "{entry}: {refused:?}"
            );
        }
        let mut grant = HttpGrant::allowing(&[]);
        assert!(grant.validate().is_err_and(|e| e.contains("empty")));
        grant.allowed_hosts = vec!["https://ok.example.com".into()];
        grant.secrets.insert(
            "token".into(),
            SecretSource::Env("FLOWGATE_TEST_NO_SUCH_VAR".into()),
        );
        assert!(
            grant.validate().is_err_and(
                |e| e.contains("secrets.token") && e.contains("FLOWGATE_TEST_NO_SUCH_VAR")
            )
        );
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(!is_public(ip), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(is_public(ip), "{public}");
        }
    }

    #[test]
    fn secrets_fill_headers_and_unknown_ones_are_refused() {
        let path = std::env::temp_dir().join(format!("flowgate-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t\n").unwrap_or_default();
        let mut grant = HttpGrant::allowing(&["https://crm.example.com"]);
        grant
            .secrets
            .insert("crm".into(), SecretSource::File(path.clone()));
        let outbound = Outbound::new(&grant);
        assert_eq!(
            outbound.fill_secrets("Bearer {{secret:crm}}").as_deref(),
            Ok("Bearer s3cr3t")
        );
        assert!(
            outbound
                .fill_secrets("{{secret:other}}")
                .is_err_and(|e| e.contains("`other`"))
        );
        assert!(outbound.fill_secrets("{{secret:crm").is_err());
        let _ = std::fs::remove_file(path);
    }
}
