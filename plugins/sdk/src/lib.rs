//! Write Flowgate plugins in plain Rust.
//!
//! A plugin implements one or more capability traits ([`Router`], [`ApprovalPolicy`],
//! [`StepAction`]) and exports them with one macro call. Build it with
//! `cargo build --release --target wasm32-wasip2`; unit test it natively with `cargo test`
//! (the [`testing`] module stands in for the host there).
//!
//! ```
//! use flowgate_plugin_sdk::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PluginError};
//!
//! struct AlwaysAuto;
//!
//! impl ApprovalPolicy for AlwaysAuto {
//!     fn evaluate(_request: ApprovalRequest) -> Result<ApprovalDecision, PluginError> {
//!         Ok(ApprovalDecision::auto_approve("everything is fine here"))
//!     }
//! }
//!
//! // In a plugin crate (crate-type = ["cdylib"]):
//! // flowgate_plugin_sdk::export!(AlwaysAuto: approval_policy);
//! ```

mod bindings {
    #![allow(unsafe_code, clippy::all, unused_qualifications, missing_docs)]
    wit_bindgen::generate!({
        // The contract travels with the crate, so a copy of the SDK builds wherever it is; a test
        // of the host keeps it equal to `wit/` at the repository root.
        path: "wit/flowgate-plugin@0.1.0",
        world: "flowgate:plugin/sdk@0.1.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The JSON crate the SDK reads and writes data with, for plugins and their tests.
pub use serde_json;

pub mod config;
mod context;
#[cfg(feature = "http")]
pub mod http;
pub mod log;
pub mod testing;

/// The generated WIT bindings the `export!` macro builds on.
pub mod wit {
    pub use crate::bindings::flowgate::plugin::{host, types};
}

pub use wit::host::LogLevel;
pub use wit::types::{
    ActionOutput, ActionRequest, ApprovalDecision, ApprovalRequest, ApprovalRequirement,
    ApprovalStage, Approver, IdempotencyKey, Money, PluginError, RouteDecision, RouteRequest,
    StageOrder, StepContext,
};

/// Exports a type as a plugin: `export!(MyPlugin: router, approval_policy, step_action)`,
/// naming the capabilities it implements.
pub use flowgate_plugin_sdk_macros::export;

/// Chooses the next step (or several, for parallel branches) from the instance data.
pub trait Router {
    /// Choose among `request.candidates`; any other step id is refused by the host.
    fn route(request: RouteRequest) -> Result<RouteDecision, PluginError>;
}

/// Decides who must approve a request, and how many of them.
pub trait ApprovalPolicy {
    /// Return the approval requirement for `request`.
    fn evaluate(request: ApprovalRequest) -> Result<ApprovalDecision, PluginError>;
}

/// Runs an automated step and returns data to merge into the instance.
pub trait StepAction {
    /// Run the action. The host may deliver the same attempt twice after a crash:
    /// `request.idempotency.key` is then the same, so side effects can be deduplicated.
    fn run(request: ActionRequest) -> Result<ActionOutput, PluginError>;
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
