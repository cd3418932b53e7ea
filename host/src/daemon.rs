//! The daemon: the engine service behind an HTTP API, for every configured tenant, with the effect
//! driver running in the background and a graceful shutdown.

mod api;
mod auth;
mod body;
mod config;
mod error;
mod exact;
mod extract;
pub(crate) mod quota;
mod shape;
mod tenants;
mod web;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

pub use auth::{Access, AccessKind, Authenticator, Principal, TokenConfig};
pub use config::{ConfigError, DaemonConfig};
pub use error::ApiError;
pub use tenants::{Snapshot, Tenants};

use crate::plugin::{ArtifactStore, PluginRegistry, PluginRuntime, RuntimeConfig, RuntimeError};
use crate::service::{ChannelNotifier, Flowgate, ServiceError, SystemClock};
use crate::store::{RedbStore, StoreError};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub flowgate: Flowgate,
    pub tenants: Arc<Tenants>,
    pub max_body_bytes: usize,
    /// Each tenant's commands per second.
    pub limiter: Arc<quota::CommandLimiter>,
    /// The web app's sign-in sessions.
    pub sessions: Arc<web::Sessions>,
    /// The signed links of outside participants.
    pub links: Arc<web::Links>,
    /// What the operator's routes need.
    pub operator: Arc<OperatorState>,
    /// The longest a long poll waits.
    pub long_poll: Duration,
}

/// The operator's token and where backups go.
#[derive(Debug)]
pub struct OperatorState {
    pub token_sha256: Option<[u8; 32]>,
    pub data: crate::data_dir::DataDir,
    pub backup_dir: PathBuf,
    /// Held while a backup is written: one at a time.
    pub backing_up: tokio::sync::Mutex<()>,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `message` names the file.
    #[error("cannot load a tenant: {message}")]
    Tenant { path: PathBuf, message: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot open the link key: {0}")]
    Links(#[source] std::io::Error),
}

/// Opens the store, loads every tenant (plugins, tokens, workflows) and builds the handlers' state.
pub async fn prepare(config: &DaemonConfig) -> Result<AppState, DaemonError> {
    let data = crate::data_dir::DataDir::new(&config.data_dir);
    let operator = Arc::new(OperatorState {
        token_sha256: config.operator_token()?,
        backup_dir: config
            .backup_dir
            .clone()
            .unwrap_or_else(|| data.root().join("backups")),
        data: data.clone(),
        backing_up: tokio::sync::Mutex::new(()),
    });
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(data.compiled()),
        ..RuntimeConfig::default()
    })?;
    let artifacts = ArtifactStore::new(data.plugins());
    let registry = Arc::new(PluginRegistry::with_artifacts(runtime, artifacts));
    let store = RedbStore::open_with_cache(data.store(), config.cache_mb.max(1) << 20)?;
    let links =
        Arc::new(web::Links::open(&data.root().join("link.key")).map_err(DaemonError::Links)?);
    let channels = Arc::new(ChannelNotifier::default());
    channels.set_links(links.clone());
    let flowgate = Flowgate::open(
        Arc::new(store),
        registry,
        Arc::new(SystemClock),
        channels.clone(),
    )?;
    let tenants = Tenants::load(config.tenants.clone(), flowgate.clone(), channels).await?;
    Ok(AppState {
        flowgate,
        tenants: Arc::new(tenants),
        max_body_bytes: config.max_body_bytes,
        limiter: Arc::default(),
        sessions: Arc::default(),
        links,
        operator,
        long_poll: Duration::from_millis(config.long_poll_ms.min(30_000)),
    })
}

/// Serves until `shutdown` resolves: then stops accepting, lets requests in flight finish (their
/// commands commit before they answer), stops the driver and returns.
pub async fn serve(
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let state = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(DaemonError::Serve)?;
    let public = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    state.links.set_base(&public);
    // Scripts and tests read this line to find the port (with `--listen 127.0.0.1:0`).
    println!("flowgate listening on http://{addr}");
    let tenant_count = state.tenants.snapshot().configs.len();
    tracing::info!(%addr, tenants = tenant_count, "daemon.start");

    let driver = state.flowgate.clone();
    let (stop_driver, driver_stopped) = tokio::sync::oneshot::channel::<()>();
    let tick = Duration::from_millis(config.tick_ms.max(10));
    let driving = tokio::spawn(async move {
        driver
            .run_driver(tick, async { drop(driver_stopped.await) })
            .await;
    });

    let (stop_watch, watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let every = (config.reload_ms > 0).then(|| Duration::from_millis(config.reload_ms.max(50)));
    let watching = tokio::spawn(
        state
            .tenants
            .clone()
            .watch(every, async { drop(watch_stopped.await) }),
    );

    let (stop_archive, archive_stopped) = tokio::sync::oneshot::channel::<()>();
    let archiving = tokio::spawn(archive(
        state.clone(),
        config
            .archive_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("archive")),
        Duration::from_millis(config.archive_ms.max(50)),
        async { drop(archive_stopped.await) },
    ));

    let limits = api::HttpLimits {
        request_timeout: Duration::from_millis(config.request_timeout_ms.max(1_000)),
        max_concurrent_requests: config.max_concurrent_requests.max(1),
    };
    let app = api::router(state, &limits);
    // Answers are small and each waits for the next request: send them without Nagle's delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("daemon.stop: requests finished; stopping the driver");
    let _ = stop_watch.send(());
    let _ = watching.await;
    let _ = stop_archive.send(());
    let _ = archiving.await;
    let _ = stop_driver.send(());
    let _ = driving.await;
    served.map_err(DaemonError::Serve)
}

/// Archives each tenant's finished instances past its `[retention]`, every `every`, until
/// `stop` resolves. A pass takes at most [`ARCHIVE_BATCH`] instances per commit, so the writer
/// is never held for long.
async fn archive(
    state: AppState,
    dir: PathBuf,
    every: Duration,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let snapshot = state.tenants.snapshot();
        for (tenant, config) in &snapshot.configs {
            let Some(retention) = config.retention else {
                continue;
            };
            let period =
                u64::try_from(retention.finished_instances.as_millis()).unwrap_or(u64::MAX);
            let before = state.flowgate.clock().now().saturating_sub(period);
            loop {
                match state
                    .flowgate
                    .archive_finished(tenant, before, ARCHIVE_BATCH, &dir)
                    .await
                {
                    Ok(done) if done.instances == 0 => break,
                    Ok(done) => {
                        tracing::info!(%tenant, instances = done.instances, files = ?done.files, "retention: archived finished instances");
                        if done.instances < ARCHIVE_BATCH {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%tenant, %error, "retention: archiving failed; tried again next pass");
                        break;
                    }
                }
            }
        }
    }
}

/// Instances archived per commit.
const ARCHIVE_BATCH: usize = 500;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
