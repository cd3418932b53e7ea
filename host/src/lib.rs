//! Flowgate: a workflow engine whose routing rules, approval policies and step actions are tenant
//! plugins (WebAssembly components).
//!
//! - [`definition`]: workflow definitions, parsed and validated.
//! - [`engine`]: the pure core that runs instances.
//! - [`metrics`]: workflow metrics from the history.
//! - [`plugin`]: the sandboxed plugin runtime.
//! - [`store`]: durable storage (redb by default).
//! - [`tenant`]: a tenant's configuration: plugins and workflows.
//! - [`service`]: the engine as a service: group-committing writer and effect driver.
//! - [`daemon`]: the HTTP API.
//! - [`cli`]: the `flowgate` command line.

pub mod cli;
pub mod daemon;
pub mod definition;
pub mod engine;
pub mod metrics;
pub mod plugin;
pub mod service;
pub mod store;
pub mod tenant;
