//! Host-side bindings of `flowgate:plugin@0.1.0`, generated from `wit/`.
//!
//! The host binds the `plugin` world, which exports every capability, but never instantiates it
//! whole: each capability's export indices are looked up on their own, so a plugin exports only
//! what it implements.

#![allow(missing_docs, missing_debug_implementations, unused_qualifications)]

wasmtime::component::bindgen!({
    path: "../wit/flowgate-plugin@0.1.0",
    world: "flowgate:plugin/plugin@0.1.0",
    // Decisions go into the audit history and the CLI's output as JSON.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub use self::flowgate::plugin::host::LogLevel;
pub use self::flowgate::plugin::types;
pub use exports::flowgate::plugin::{approval_policy, router, step_action};
