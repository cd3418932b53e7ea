//! Flowgate: a workflow engine whose routing rules, approval policies and step actions are tenant
//! plugins (WebAssembly components).
//!
//! - [`plugin`]: the sandboxed plugin runtime.
//! - [`cli`]: the `flowgate` command line.

pub mod cli;
pub mod plugin;
