//! The data of one call's `Store`: limits, the plugin's configuration and log, and a WASI context
//! that is only built if the guest touches WASI.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Grants;
use super::limits::Limiter;
use super::outbound::{HttpGrant, Outbound};

/// Bytes of stdout and stderr kept per call.
const STDIO_CAPTURE_BYTES: usize = 16 << 10;

/// A line the plugin logged during the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: super::types::LogLevel,
    /// The message.
    pub message: String,
    /// Key-value fields.
    pub fields: Vec<(String, String)>,
}

/// Everything one call's store holds.
pub(crate) struct CallState {
    pub limiter: Limiter,
    pub config: Arc<BTreeMap<String, String>>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    pub max_log_lines: usize,
    grants: Arc<Grants>,
    /// Built on the guest's first WASI call; most policy calls never make one.
    wasi: Option<Wasi>,
    /// Bytes of stdout and stderr already turned into log lines.
    stdio_seen: [usize; 2],
    /// The running call's clock, which its deadline is checked against.
    pub clock: Option<super::deadline::CallClock>,
    /// The running step action's idempotency key for outbound requests (see `plugin::outbound`).
    pub action_key: Option<Arc<str>>,
}

struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// Built on the guest's first `wasi:http` call.
    http: Option<(WasiHttpCtx, Outbound)>,
}

impl CallState {
    pub fn new(
        limiter: Limiter,
        config: Arc<BTreeMap<String, String>>,
        grants: Arc<Grants>,
        max_log_lines: usize,
    ) -> Self {
        CallState {
            limiter,
            config,
            logs: Vec::new(),
            logs_dropped: 0,
            max_log_lines,
            grants,
            wasi: None,
            stdio_seen: [0, 0],
            clock: None,
            action_key: None,
        }
    }

    /// Takes the call's log: what the plugin logged, then what it printed to stdout and stderr
    /// since the last take (one line each, tagged `stream`), and how many lines were dropped.
    pub fn take_logs(&mut self) -> (Vec<LogLine>, usize) {
        let mut logs = std::mem::take(&mut self.logs);
        let dropped = std::mem::take(&mut self.logs_dropped);
        let Some(wasi) = &self.wasi else {
            return (logs, dropped);
        };
        if let Some((_, outbound)) = &wasi.http {
            logs.extend(outbound.take_notes().into_iter().map(|message| LogLine {
                level: super::types::LogLevel::Warn,
                message,
                fields: vec![("source".to_string(), "http".to_string())],
            }));
        }
        let streams = [
            ("stdout", &wasi.stdout, super::types::LogLevel::Info),
            ("stderr", &wasi.stderr, super::types::LogLevel::Warn),
        ];
        for ((stream, pipe, level), seen) in streams.into_iter().zip(&mut self.stdio_seen) {
            let bytes = pipe.contents();
            let fresh = bytes.get(*seen..).unwrap_or_default();
            *seen = bytes.len();
            for line in String::from_utf8_lossy(fresh).lines() {
                if line.trim().is_empty() {
                    continue;
                }
                tracing::info!(target: "plugin", stream, "{line}");
                logs.push(LogLine {
                    level,
                    message: line.to_string(),
                    fields: vec![("stream".to_string(), stream.to_string())],
                });
            }
        }
        (logs, dropped)
    }

    /// What the guest wrote to stderr (a Rust panic message lands here), lossily decoded.
    pub fn stderr_text(&self) -> String {
        match &self.wasi {
            Some(wasi) => String::from_utf8_lossy(&wasi.stderr.contents())
                .trim()
                .to_string(),
            None => String::new(),
        }
    }
}

/// A fixed seed for `wasi:random/insecure-seed` (std's hash maps), so that un-granted plugins stay
/// deterministic.
const FIXED_SEED: u128 = 0x0f10_a6a7_e5ee_d000_0000_0000_0000_0001;

fn build_wasi(grants: &Grants) -> Wasi {
    tracing::trace!("plugin.wasi: building a WASI context");
    let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
    let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .insecure_random_seed(FIXED_SEED);
    for (key, value) in &grants.env {
        builder.env(key, value);
    }
    if let Some(files) = &grants.files {
        let perms = if files.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        if let Err(error) = builder.preopened_dir(&files.host_path, &files.guest_path, perms) {
            // The plugin then sees no directory and its file calls fail; the host keeps going.
            tracing::warn!(path = %files.host_path.display(), %error, "plugin.files: cannot open granted directory");
        }
    }
    if !grants.network.is_empty() {
        let allowed = grants.clone();
        builder.socket_addr_check(move |addr, _use| {
            let ok = allowed.allows_address(addr);
            Box::pin(async move { ok })
        });
        builder.allow_ip_name_lookup(true);
    }
    Wasi {
        ctx: builder.build(),
        table: ResourceTable::new(),
        stdout,
        stderr,
        http: None,
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let CallState { wasi, grants, .. } = self;
        let wasi = wasi.get_or_insert_with(|| build_wasi(grants));
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let CallState {
            wasi,
            grants,
            clock,
            action_key,
            ..
        } = self;
        let wasi = wasi.get_or_insert_with(|| build_wasi(grants));
        let (ctx, outbound) = wasi.http.get_or_insert_with(|| {
            // Without the grant the import is refused at load; an empty list denies everything.
            let grant = grants
                .http
                .clone()
                .unwrap_or_else(|| HttpGrant::allowing(&[]));
            (WasiHttpCtx::new(), Outbound::new(&grant))
        });
        outbound.call_ends = clock.map(|clock| clock.ends());
        outbound.idempotency_key = action_key.clone();
        WasiHttpCtxView {
            ctx,
            table: &mut wasi.table,
            hooks: outbound,
        }
    }
}
