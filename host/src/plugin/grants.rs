//! What a tenant's plugin may import, and the check that refuses anything else at load.
//!
//! Every plugin may import the contract (`flowgate:plugin/*`) and the inert baseline that Rust's
//! std links into every `wasm32-wasip2` component (stdio, environment, exit, I/O streams, the
//! hash-map seed). The baseline gives nothing away: the environment is empty, stdin is closed,
//! stdout and stderr go to the plugin's log, and the seed is fixed. Clocks, randomness, files,
//! sockets and outbound HTTP must be granted.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A capability beyond the baseline that a tenant can grant its plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Wall and monotonic clocks.
    Clocks,
    /// Secure and insecure random numbers.
    Random,
    /// A preopened directory.
    Files,
    /// Sockets to allowed addresses.
    Network,
    /// Outbound HTTP requests (`wasi:http`) to allowed hosts.
    Http,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Grant::Clocks => "clocks",
            Grant::Random => "random",
            Grant::Files => "files",
            Grant::Network => "network",
            Grant::Http => "http",
        })
    }
}

/// A directory a plugin may read (and, if `writable`, write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGrant {
    /// The directory on the host.
    pub host_path: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest_path: String,
    /// Whether the plugin may write.
    #[serde(default)]
    pub writable: bool,
}

/// What a tenant granted its plugin. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Wall and monotonic clocks.
    #[serde(default)]
    pub clocks: bool,
    /// Random numbers.
    #[serde(default)]
    pub random: bool,
    /// Environment variables the plugin sees (none by default).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A directory the plugin may use.
    #[serde(default)]
    pub files: Option<FileGrant>,
    /// Addresses the plugin may connect to: `ip` (any port) or `ip:port`. Empty: no network.
    #[serde(default)]
    pub network: Vec<String>,
    /// Outbound HTTP through `wasi:http`: the hosts, timeouts, size caps and secrets.
    #[serde(default)]
    pub http: Option<super::outbound::HttpGrant>,
}

/// Interfaces every plugin may import, without version.
const CONTRACT: &[&str] = &["flowgate:plugin/host", "flowgate:plugin/types"];

/// The std baseline: present in every std guest, inert in Flowgate.
const BASELINE: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure-seed",
];

/// Which grant each further WASI interface needs.
const GRANTED: &[(&str, Grant)] = &[
    ("wasi:clocks/wall-clock", Grant::Clocks),
    ("wasi:clocks/monotonic-clock", Grant::Clocks),
    ("wasi:random/random", Grant::Random),
    ("wasi:random/insecure", Grant::Random),
    ("wasi:filesystem/types", Grant::Files),
    ("wasi:filesystem/preopens", Grant::Files),
    ("wasi:sockets/network", Grant::Network),
    ("wasi:sockets/instance-network", Grant::Network),
    ("wasi:sockets/tcp", Grant::Network),
    ("wasi:sockets/tcp-create-socket", Grant::Network),
    ("wasi:sockets/udp", Grant::Network),
    ("wasi:sockets/udp-create-socket", Grant::Network),
    ("wasi:sockets/ip-name-lookup", Grant::Network),
    ("wasi:http/outgoing-handler", Grant::Http),
    ("wasi:http/types", Grant::Http),
];

/// `wasi:http/types` names the monotonic clock's `duration` for its timeouts, so a plugin granted
/// HTTP imports the clock's interface too; it may, without the clocks grant.
const HTTP_NEEDS: &str = "wasi:clocks/monotonic-clock";

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It needs a grant the tenant did not give.
    NotGranted(Grant),
    /// Flowgate offers no such interface to plugins.
    NotOffered,
}

impl Refusal {
    /// The grant that would allow the import, if one would.
    pub fn grant(&self) -> Option<Grant> {
        match self {
            Refusal::NotGranted(grant) => Some(*grant),
            Refusal::NotOffered => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotGranted(grant) => write!(
                f,
                "which needs the `{grant}` grant that this tenant did not give the plugin"
            ),
            Refusal::NotOffered => f.write_str(
                "which Flowgate does not offer to plugins (only flowgate:plugin/host, the std baseline of wasi:cli and wasi:io, and granted clocks, random, files, network or http)",
            ),
        }
    }
}

impl Grants {
    /// Whether this grant is given.
    pub fn has(&self, grant: Grant) -> bool {
        match grant {
            Grant::Clocks => self.clocks,
            Grant::Random => self.random,
            Grant::Files => self.files.is_some(),
            Grant::Network => !self.network.is_empty(),
            Grant::Http => self.http.is_some(),
        }
    }

    /// Checks one import name (`namespace:package/interface@version`).
    pub fn check_import(&self, import: &str) -> Result<(), Refusal> {
        let unversioned = import.split('@').next().unwrap_or(import);
        if CONTRACT.contains(&unversioned) || BASELINE.contains(&unversioned) {
            return Ok(());
        }
        if unversioned == HTTP_NEEDS && self.has(Grant::Http) {
            return Ok(());
        }
        match GRANTED.iter().find(|(name, _)| *name == unversioned) {
            Some((_, grant)) if self.has(*grant) => Ok(()),
            Some((_, grant)) => Err(Refusal::NotGranted(*grant)),
            None => Err(Refusal::NotOffered),
        }
    }

    /// Checks every import; every refused one is returned with its name, in import order.
    pub fn check_imports<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Vec<(String, Refusal)>> {
        let refused: Vec<(String, Refusal)> = imports
            .into_iter()
            .filter_map(|import| {
                self.check_import(import)
                    .err()
                    .map(|refusal| (import.to_string(), refusal))
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// Whether the plugin may use `addr` (only with the network grant).
    pub fn allows_address(&self, addr: SocketAddr) -> bool {
        self.network.iter().any(|allowed| {
            if let Ok(exact) = allowed.parse::<SocketAddr>() {
                exact == addr
            } else if let Ok(ip) = allowed.parse::<IpAddr>() {
                ip == addr.ip()
            } else {
                false
            }
        })
    }

    /// Checks the grant's own values: network entries must be addresses, allowed hosts must
    /// parse, secrets must be readable.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(http) = &self.http {
            http.validate().map_err(|reason| format!("http.{reason}"))?;
        }
        for entry in &self.network {
            if entry.parse::<SocketAddr>().is_err() && entry.parse::<IpAddr>().is_err() {
                return Err(format!("network: `{entry}` is neither `ip` nor `ip:port`"));
            }
        }
        if let Some(files) = &self.files
            && !files.guest_path.starts_with('/')
        {
            return Err(format!(
                "files.guest_path: `{}` must be absolute",
                files.guest_path
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(f: impl FnOnce(&mut Grants)) -> Grants {
        let mut g = Grants::default();
        f(&mut g);
        g
    }

    #[test]
    fn contract_and_baseline_need_no_grant() {
        let none = Grants::default();
        for import in [
            "flowgate:plugin/host@0.1.0",
            "flowgate:plugin/types@0.1.0",
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.0",
            "wasi:random/insecure-seed@0.2.3",
        ] {
            assert_eq!(none.check_import(import), Ok(()), "{import}");
        }
    }

    #[test]
    fn capabilities_need_their_grant() {
        let cases = [
            ("wasi:clocks/wall-clock@0.2.6", Grant::Clocks),
            ("wasi:random/random@0.2.6", Grant::Random),
            ("wasi:filesystem/preopens@0.2.6", Grant::Files),
            ("wasi:sockets/tcp@0.2.6", Grant::Network),
        ];
        let everything = Grants {
            clocks: true,
            random: true,
            files: Some(FileGrant {
                host_path: "/tmp".into(),
                guest_path: "/data".into(),
                writable: false,
            }),
            network: vec!["127.0.0.1".into()],
            ..Grants::default()
        };
        for (import, grant) in cases {
            assert_eq!(
                Grants::default().check_import(import),
                Err(Refusal::NotGranted(grant))
            );
            assert_eq!(everything.check_import(import), Ok(()), "{import}");
        }
    }

    #[test]
    fn http_needs_its_grant_and_brings_the_clock_type_it_names() {
        let none = Grants::default();
        let http = grants(|g| {
            g.http = Some(super::super::outbound::HttpGrant::allowing(&[
                "https://crm.example.com",
            ]))
        });
        for import in [
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:http/types@0.2.6",
            "wasi:clocks/monotonic-clock@0.2.6",
        ] {
            assert_eq!(
                none.check_import(import).err().and_then(|r| r.grant()),
                Some(if import.contains("clocks") {
                    Grant::Clocks
                } else {
                    Grant::Http
                }),
                "{import}"
            );
            assert_eq!(http.check_import(import), Ok(()), "{import}");
        }
        // HTTP brings the clock's interface, not the wall clock.
        assert_eq!(
            http.check_import("wasi:clocks/wall-clock@0.2.6"),
            Err(Refusal::NotGranted(Grant::Clocks))
        );
    }

    #[test]
    fn unknown_interfaces_are_never_offered() {
        let all = grants(|g| g.clocks = true);
        assert_eq!(
            all.check_import("wasi:http/incoming-handler@0.2.0"),
            Err(Refusal::NotOffered)
        );
        assert_eq!(
            all.check_import("evil:corp/backdoor"),
            Err(Refusal::NotOffered)
        );
    }

    #[test]
    fn check_imports_names_every_refused_import() {
        let imports = [
            "flowgate:plugin/host@0.1.0",
            "wasi:clocks/monotonic-clock@0.2.0",
            "wasi:random/random@0.2.0",
        ];
        assert_eq!(
            Grants::default().check_imports(imports),
            Err(vec![
                (
                    "wasi:clocks/monotonic-clock@0.2.0".to_string(),
                    Refusal::NotGranted(Grant::Clocks)
                ),
                (
                    "wasi:random/random@0.2.0".to_string(),
                    Refusal::NotGranted(Grant::Random)
                ),
            ])
        );
        // Granting one leaves the other refused.
        let clocks = grants(|g| g.clocks = true);
        assert_eq!(
            clocks.check_imports(imports),
            Err(vec![(
                "wasi:random/random@0.2.0".to_string(),
                Refusal::NotGranted(Grant::Random)
            )])
        );
    }

    #[test]
    fn network_allows_only_listed_addresses() {
        let g = grants(|g| g.network = vec!["10.0.0.1".into(), "127.0.0.1:8080".into()]);
        let addr = |s: &str| s.parse::<SocketAddr>().ok();
        let allowed = |s: &str| addr(s).is_some_and(|a| g.allows_address(a));
        assert!(allowed("10.0.0.1:443"));
        assert!(allowed("127.0.0.1:8080"));
        assert!(!allowed("127.0.0.1:8081"));
        assert!(!allowed("10.0.0.2:443"));
        assert!(
            !Grants::default().allows_address(
                "10.0.0.1:1"
                    .parse()
                    .unwrap_or(SocketAddr::from(([10, 0, 0, 1], 1)))
            )
        );
    }

    #[test]
    fn validate_names_bad_entries() {
        let bad = grants(|g| g.network = vec!["example.com".into()]);
        assert!(bad.validate().is_err_and(|e| e.contains("example.com")));
        assert_eq!(Grants::default().validate(), Ok(()));
    }
}
