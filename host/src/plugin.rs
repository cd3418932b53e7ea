//! The sandboxed plugin runtime: tenant plugins are WebAssembly components that implement the
//! `flowgate:plugin@0.1.0` contract in `wit/`, run by wasmtime with fuel, deadline, memory, stack
//! and size caps, and nothing from the outside world unless their tenant granted it.
//!
//! ```no_run
//! use flowgate::plugin::{PluginId, PluginRegistry, PluginRuntime, PluginSettings, RuntimeConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = PluginRegistry::new(PluginRuntime::new(RuntimeConfig::default())?);
//! let wasm = std::fs::read("purchase_approval.wasm")?;
//! let id = PluginId::new("acme", "purchase-approval");
//! let plugin = registry.install(id, &wasm, PluginSettings::default())?;
//! println!("{} exports {:?}", plugin.sha256(), plugin.capabilities());
//! # Ok(())
//! # }
//! ```

mod artifacts;
mod bindings;
mod cache;
mod called;
mod deadline;
mod error;
mod grants;
mod host_api;
mod limits;
mod loaded;
mod outbound;
mod registry;
mod runtime;
mod session;
mod state;
pub mod types;
mod validate;

use serde::{Deserialize, Serialize};

pub use artifacts::{ArtifactError, ArtifactStore, Candidate, Upload, valid_name};
pub use cache::CacheOutcome;
pub use called::{ActionResult, Called};
pub use error::{Blame, BoxError, GuestError, PluginError, PluginFailure, RefusedImport};
pub use grants::{FileGrant, Grant, Grants, Refusal};
pub use limits::PluginLimits;
pub use loaded::{LoadedPlugin, PluginSettings};
pub use outbound::{HttpGrant, SecretSource};
pub use registry::PluginRegistry;
pub use runtime::{PluginRuntime, RuntimeConfig, RuntimeError, sha256_hex, short_version};
pub use session::PluginSession;
pub use state::LogLine;
pub use types::LogLevel;

pub use flowgate_engine::Capability;

/// A tenant's plugin, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PluginId {
    /// The tenant.
    pub tenant: String,
    /// The plugin's name within the tenant.
    pub name: String,
}

impl PluginId {
    /// The plugin `name` of `tenant`.
    pub fn new(tenant: impl Into<String>, name: impl Into<String>) -> Self {
        PluginId {
            tenant: tenant.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}
