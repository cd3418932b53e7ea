//! `flowgate serve`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::daemon::{self, DaemonConfig};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (listen, data_dir, tenants, max_body_bytes, tick_ms, reload_ms).
    #[arg(long, env = "FLOWGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file and FLOWGATE_LISTEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub(crate) fn run(
    args: ServeArgs,
    data_dir: Option<PathBuf>,
    tenant: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = DaemonConfig::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(tenant) = tenant {
        config.tenants = vec![tenant];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon::serve(config, daemon::shutdown_signal()))?;
    Ok(())
}
