//! Every way a plugin call or load can fail, each naming the tenant, plugin, version and capability.

use std::fmt;
use std::time::Duration;

use flowgate_engine::FailureKind;

use super::Capability;

/// A boxed error from a lower layer (wasmtime, the file system), kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use flowgate_engine::Blame;

/// One import a plugin may not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedImport {
    pub import: String,
    /// Why, e.g. "which needs the `clocks` grant that this tenant did not give the plugin".
    pub why: String,
    /// The grant that would allow it, if one would.
    pub grant: Option<String>,
}

fn refused_imports(refused: &[RefusedImport]) -> String {
    let listed: Vec<String> = refused
        .iter()
        .map(|r| format!("`{}`, {}", r.import, r.why))
        .collect();
    let mut text = match listed.len() {
        1 => format!("imports {}", listed[0]),
        n => format!(
            "imports {n} interfaces it may not use: {}",
            listed.join("; ")
        ),
    };
    let mut grants: Vec<&str> = refused.iter().filter_map(|r| r.grant.as_deref()).collect();
    grants.sort_unstable();
    grants.dedup();
    if !grants.is_empty() {
        let named: Vec<String> = grants.iter().map(|g| format!("`{g}`")).collect();
        text.push_str(&format!(
            " (to load it, the tenant grants it {})",
            named.join(" and ")
        ));
    }
    text
}

/// A plugin failure, with where it happened.
///
/// Its message includes the failure's; its `source()` is the failure's own cause (wasmtime's
/// error, an I/O error), so an error chain never repeats a line.
#[derive(Debug)]
pub struct PluginError {
    /// The tenant the plugin belongs to.
    pub tenant: String,
    /// The plugin's name within the tenant.
    pub plugin: String,
    /// The first 12 hex digits of the artifact's sha256.
    pub version: String,
    /// The capability being loaded or called, where there is one.
    pub capability: Option<Capability>,
    /// What went wrong (boxed: keeps `Result<_, PluginError>` small on the hot path).
    pub failure: Box<PluginFailure>,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` ({}) of tenant `{}`",
            self.plugin, self.version, self.tenant
        )?;
        if let Some(capability) = self.capability {
            write!(f, ", {capability}")?;
        }
        write!(f, ": {}", self.failure)
    }
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.failure)
    }
}

impl PluginError {
    /// Who has to act on it.
    pub fn blame(&self) -> Blame {
        self.failure.blame()
    }

    /// True when retrying the same call later may succeed: the plugin said so, or the host was
    /// busy, slow or failing.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The failure's kind, as incidents and the history record it.
    pub fn kind(&self) -> FailureKind {
        self.failure.kind()
    }
}

/// The error a plugin returned itself (the contract's `plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Transient: retry with backoff.
    #[error("retryable error: {0}")]
    Retryable(String),
    /// Retrying will not help.
    #[error("permanent error: {0}")]
    Permanent(String),
    /// The input did not have the shape the plugin needs.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl GuestError {
    /// Appends what the host knows about the failure to the plugin's message.
    pub(crate) fn add_context(&mut self, context: &str) {
        let (GuestError::Retryable(message)
        | GuestError::Permanent(message)
        | GuestError::InvalidInput(message)) = self;
        message.push_str(" (");
        message.push_str(context);
        message.push(')');
    }
}

/// What went wrong in a plugin load or call.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    /// The bytes are not a WebAssembly component wasmtime accepts, or do not link against the host.
    #[error("is not a valid component: {context}")]
    InvalidComponent {
        /// What was being checked.
        context: &'static str,
        /// wasmtime's error.
        #[source]
        source: BoxError,
    },
    /// The bytes are not WebAssembly at all.
    #[error("is not WebAssembly: it starts with {found}, not `\\0asm`")]
    NotWasm {
        /// The first bytes, escaped.
        found: String,
    },
    /// The bytes are a core WebAssembly module, not a component.
    #[error(
        "is a core WebAssembly module, not a component: build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The component was built against another version of the contract.
    #[error(
        "is built against flowgate:plugin@{found}; this host accepts flowgate:plugin@{accepted} (rebuild it with an SDK for that version)"
    )]
    ContractVersion {
        /// The version the component imports or exports.
        found: String,
        /// The versions this host accepts, as a semver range.
        accepted: &'static str,
    },
    /// A memory the component declares starts larger than its tenant lets a plugin grow.
    #[error(
        "declares a memory of {declared} bytes at start, over the tenant's cap of {limit} bytes (`limits.memory_bytes`)"
    )]
    MemoryOverCap {
        /// The memory's initial size in bytes.
        declared: u64,
        /// The tenant's cap in bytes.
        limit: u64,
    },
    /// The component exports none of the contract's capabilities.
    #[error(
        "exports none of the capabilities router, approval-policy, step-action (flowgate:plugin@0.1.0)"
    )]
    NoCapabilities,
    /// The component imports what its tenant was not granted, or what Flowgate never offers:
    /// every such import, each with the grant it needs.
    #[error("{}", refused_imports(refused))]
    ImportNotGranted {
        /// Each refused import's full name (e.g. `wasi:clocks/wall-clock@0.2.6`) and why.
        refused: Vec<RefusedImport>,
    },
    /// The capability called is not exported by this plugin.
    #[error("does not export the {0} capability")]
    MissingExport(Capability),
    /// The host could not instantiate the plugin right now (instance pool exhausted).
    #[error("could not be instantiated: {reason}")]
    Busy {
        /// wasmtime's words.
        reason: String,
    },
    /// The call used its whole fuel budget.
    #[error(
        "ran out of fuel: it used all {budget} units a call may use (raise `fuel` under the plugin's `[plugins.<name>.limits]` in tenant.toml, or `--fuel` for `flowgate plugin eval`, or make the call do less); fuel is not retried: the same input uses the same fuel"
    )]
    FuelExhausted {
        /// The budget that was used up.
        budget: u64,
    },
    /// The call ran past its time limit.
    #[error(
        "ran past its time limit of {limit:?} (time running or waiting for I/O, not waiting for a CPU; raise `timeout` under the plugin's `[plugins.<name>.limits]` in tenant.toml)"
    )]
    Deadline {
        /// The limit.
        limit: Duration,
    },
    /// The call tried to grow its memory past the cap.
    #[error("tried to grow its memory to {desired} bytes, over its cap of {limit} bytes")]
    MemoryCap {
        /// The cap in bytes.
        limit: u64,
        /// The size it asked for.
        desired: u64,
    },
    /// The call exhausted its wasm stack (usually unbounded recursion).
    #[error("overflowed its wasm stack")]
    StackOverflow,
    /// The call trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("trapped: {message}")]
    Trap {
        /// The trap and, where the guest printed one, its panic message.
        message: String,
    },
    /// The request was larger than the plugin may be given.
    #[error("input of {size} bytes is over the {limit} byte cap")]
    InputTooLarge {
        /// The request's size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin answered with more than it may return.
    #[error("output of {size} bytes is over the {limit} byte cap")]
    OutputTooLarge {
        /// The answer's size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin's answer breaks the contract (a route to an unknown step, invalid JSON, ...).
    #[error("returned a bad output: {reason}")]
    BadOutput {
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin returned its own error.
    #[error("{0}")]
    Guest(GuestError),
    /// The host itself failed.
    #[error("host error: {reason}")]
    Host {
        /// What the host was doing.
        reason: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl PluginFailure {
    /// The refusal of `imports` (each with why), as one failure.
    pub(crate) fn refused(imports: Vec<(String, super::grants::Refusal)>) -> Self {
        let refused = imports
            .into_iter()
            .map(|(import, refusal)| RefusedImport {
                import,
                why: refusal.to_string(),
                grant: refusal.grant().map(|g| g.to_string()),
            })
            .collect();
        PluginFailure::ImportNotGranted { refused }
    }

    /// The tenant's grants themselves are invalid.
    pub(crate) fn invalid_grants(reason: String) -> Self {
        PluginFailure::ImportNotGranted {
            refused: vec![RefusedImport {
                import: "(grants)".to_string(),
                why: format!("the tenant's grants are invalid: {reason}"),
                grant: None,
            }],
        }
    }

    /// Who has to act on it.
    pub fn blame(&self) -> Blame {
        self.kind().blame()
    }

    /// The failure's kind, as incidents and the history record it.
    pub fn kind(&self) -> FailureKind {
        match self {
            PluginFailure::Busy { .. } => FailureKind::Busy,
            PluginFailure::Deadline { .. } => FailureKind::Deadline,
            PluginFailure::Host { .. } => FailureKind::Host,
            PluginFailure::FuelExhausted { .. } => FailureKind::FuelExhausted,
            PluginFailure::MemoryCap { .. } | PluginFailure::MemoryOverCap { .. } => {
                FailureKind::MemoryCap
            }
            PluginFailure::StackOverflow => FailureKind::StackOverflow,
            PluginFailure::Trap { .. } => FailureKind::Trap,
            PluginFailure::InputTooLarge { .. } => FailureKind::InputTooLarge,
            PluginFailure::OutputTooLarge { .. } => FailureKind::OutputTooLarge,
            PluginFailure::MissingExport(_) => FailureKind::MissingExport,
            PluginFailure::Guest(GuestError::Retryable(_)) => FailureKind::Retryable,
            PluginFailure::Guest(GuestError::Permanent(_)) => FailureKind::Permanent,
            PluginFailure::Guest(GuestError::InvalidInput(_)) => FailureKind::InvalidInput,
            PluginFailure::BadOutput { .. }
            | PluginFailure::InvalidComponent { .. }
            | PluginFailure::NotWasm { .. }
            | PluginFailure::CoreModule
            | PluginFailure::ContractVersion { .. }
            | PluginFailure::NoCapabilities
            | PluginFailure::ImportNotGranted { .. } => FailureKind::BadOutput,
        }
    }
}

/// Converts a wasmtime error into a boxed source that keeps its message and chain.
pub(crate) fn boxed(error: wasmtime::Error) -> BoxError {
    error.into()
}
