//! The daemon's configuration: a TOML file, overridden by environment variables, overridden by
//! command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "data"
//! tenants = ["examples/acme/tenant.toml"]
//! max_body_bytes = 4194304
//! cache_mb = 64
//! # The operator's token (`echo -n TOKEN | sha256sum`), for `flowgate backup`.
//! operator_token_sha256 = "..."
//! backup_dir = "backups"
//! archive_dir = "archive"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How the daemon runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder of the data file and the compiled-plugin cache.
    pub data_dir: PathBuf,
    /// Tenant configuration files.
    pub tenants: Vec<PathBuf>,
    /// Largest request body, in bytes (plugin uploads included).
    pub max_body_bytes: usize,
    /// How often the driver looks for due timers when nothing wakes it, in milliseconds.
    pub tick_ms: u64,
    /// How often tenant files are checked for changes, in milliseconds (0: only on SIGHUP).
    pub reload_ms: u64,
    /// The store's page cache, in MiB: most of the daemon's memory beyond the plugins'.
    pub cache_mb: usize,
    /// A request that takes longer (body included) is answered 503, in milliseconds.
    pub request_timeout_ms: u64,
    /// Requests served at once; more wait for a turn.
    pub max_concurrent_requests: usize,
    /// The address people reach the daemon at (`https://flowgate.acme.example`), for the links
    /// sent to outside participants; by default, the address it listens on.
    pub public_url: Option<String>,
    /// The sha256 (hex) of the operator's token, which takes online backups; without it, no one
    /// can.
    pub operator_token_sha256: Option<String>,
    /// Where online backups are written, one folder each; by default `backups` in the data
    /// folder.
    pub backup_dir: Option<PathBuf>,
    /// Where finished instances past their tenant's `[retention]` are archived (a folder per
    /// tenant, a JSON Lines file per day); by default `archive` in the data folder.
    pub archive_dir: Option<PathBuf>,
    /// How often retention looks for instances to archive, in milliseconds.
    pub archive_ms: u64,
    /// The longest a long poll (`GET /api/v1/instances/{id}?changed_since=`) waits, in
    /// milliseconds, whatever its `wait_ms` asks (default and most 30000): lower it when a proxy
    /// in front of the daemon closes idle requests sooner.
    pub long_poll_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            tenants: vec![PathBuf::from("examples/acme/tenant.toml")],
            max_body_bytes: 4 << 20,
            tick_ms: 250,
            reload_ms: 1000,
            cache_mb: 64,
            request_timeout_ms: 60_000,
            max_concurrent_requests: 1024,
            public_url: None,
            operator_token_sha256: None,
            backup_dir: None,
            archive_dir: None,
            archive_ms: 60_000,
            long_poll_ms: 30_000,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
}

impl DaemonConfig {
    /// The operator's token hash, checked: 32 bytes of hex.
    pub fn operator_token(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        let Some(text) = &self.operator_token_sha256 else {
            return Ok(None);
        };
        hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Some)
            .ok_or_else(|| ConfigError::Env {
                name: "operator_token_sha256",
                value: text.clone(),
                message:
                    "must be the sha256 of the token: 64 hex digits (`echo -n TOKEN | sha256sum`)"
                        .to_string(),
            })
    }

    /// Reads `path` (or the defaults without one), then applies `FLOWGATE_LISTEN`,
    /// `FLOWGATE_DATA_DIR`, `FLOWGATE_OPERATOR_TOKEN_SHA256` and `FLOWGATE_TENANTS`
    /// (comma-separated paths).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut config: DaemonConfig =
                    toml::from_str(&text).map_err(|e| ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: e.to_string().trim().to_string(),
                    })?;
                // Relative paths in the file are relative to the file.
                let base = path.parent().unwrap_or(Path::new(""));
                config.data_dir = base.join(&config.data_dir);
                config.tenants = config.tenants.iter().map(|t| base.join(t)).collect();
                config.backup_dir = config.backup_dir.map(|d| base.join(d));
                config.archive_dir = config.archive_dir.map(|d| base.join(d));
                config
            }
            None => DaemonConfig::default(),
        };
        if let Ok(value) = std::env::var("FLOWGATE_LISTEN") {
            config.listen =
                value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                        name: "FLOWGATE_LISTEN",
                        value,
                        message: e.to_string(),
                    })?;
        }
        if let Ok(value) = std::env::var("FLOWGATE_DATA_DIR") {
            config.data_dir = PathBuf::from(value);
        }
        if let Ok(value) = std::env::var("FLOWGATE_OPERATOR_TOKEN_SHA256") {
            config.operator_token_sha256 = Some(value);
        }
        if let Ok(value) = std::env::var("FLOWGATE_TENANTS") {
            config.tenants = value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        Ok(config)
    }
}
