//! The contract versions this host accepts, each as its generated bindings with the conversions
//! to and from the host's own types (`plugin::types`). Only the runtime names a generated type:
//! a second version (`flowgate:plugin@0.2.0`) is a sibling module and its conversions.

pub(crate) mod v0_1;

pub(crate) use v0_1::{Plugin, approval_policy, router, step_action};
