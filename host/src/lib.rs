//! Flowgate: a workflow engine whose routing rules, approval policies and step actions are tenant
//! plugins (WebAssembly components).
//!
//! - [`engine`] (the `flowgate-engine` crate): the pure core that runs instances, with
//!   [`definition`] (workflow definitions, parsed and validated) and [`metrics`] (workflow metrics
//!   from the history). It has no wasmtime, tokio or redb among its dependencies.
//! - [`plugin`]: the sandboxed plugin runtime.
//! - [`store`]: durable storage (redb by default); [`data_dir`]: the data folder's layout.
//! - [`tenant`]: a tenant's configuration: plugins and workflows.
//! - [`service`]: the engine as a service: group-committing writer and effect driver.
//! - [`daemon`]: the HTTP API.
//! - [`cli`]: the `flowgate` command line.

pub mod backup;
pub mod cli;
pub mod daemon;
pub mod data_dir;
pub mod holidays;
pub mod plugin;
pub mod service;
pub mod store;
pub mod tenant;

pub use flowgate_engine as engine;
pub use flowgate_engine::{definition, metrics};
