//! Prometheus metrics of the engine: commands by kind and outcome with their latency to
//! acknowledgement, commit batches, plugin calls by outcome, and (read at scrape time) timers
//! due, pending outbox entries and the writer's queue.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    tenant: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    tenant: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    tenant: String,
    plugin: String,
    capability: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

fn seconds_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Queue depths read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Depths {
    pub timers_due: usize,
    /// How late the oldest due timer is.
    pub overdue_seconds: f64,
    pub outbox: usize,
    pub queue: usize,
}

/// The engine's metrics.
pub struct Telemetry {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    latency: Family<KindLabel, Histogram, fn() -> Histogram>,
    batch_size: Histogram,
    commit_seconds: Histogram,
    plugin_calls: Family<PluginLabels, Counter>,
    timers_due: Family<TenantLabel, Gauge>,
    timers_overdue: Family<TenantLabel, Gauge<f64, AtomicU64>>,
    outbox_pending: Family<TenantLabel, Gauge>,
    writer_queue: Gauge,
    commits: Counter,
    changes: Counter,
    plugin_waiting: Family<TenantLabel, Gauge>,
    plugin_running: Family<TenantLabel, Gauge>,
    plugin_seconds: Family<TenantLabel, Counter<f64, AtomicU64>>,
    plugin_throttled: Family<TenantLabel, Counter>,
    plugin_long_calls: Family<TenantLabel, Counter>,
    commands_throttled: Family<TenantLabel, Counter>,
    resident: Gauge,
    commit_failures: Counter,
    store_failing: Gauge,
}

/// Durable writes since the service started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteTotals {
    /// Transactions committed.
    pub commits: u64,
    /// Changes those transactions wrote: an instance's new state (with its events and effects),
    /// a definition, a stored retry, a set of outbox entries cleared.
    pub changes: u64,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flowgate");
        let t = Telemetry {
            commands: Family::default(),
            latency: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: seconds_histogram(),
            plugin_calls: Family::default(),
            timers_due: Family::default(),
            timers_overdue: Family::default(),
            outbox_pending: Family::default(),
            writer_queue: Gauge::default(),
            commits: Counter::default(),
            changes: Counter::default(),
            plugin_waiting: Family::default(),
            plugin_running: Family::default(),
            plugin_seconds: Family::default(),
            plugin_throttled: Family::default(),
            plugin_long_calls: Family::default(),
            commands_throttled: Family::default(),
            resident: Gauge::default(),
            commit_failures: Counter::default(),
            store_failing: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "commands",
            "Commands handled, by kind and outcome",
            t.commands.clone(),
        );
        registry.register(
            "command_seconds",
            "Time from a command's submission to its acknowledgement",
            t.latency.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Commands committed per transaction",
            t.batch_size.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time of one durable commit",
            t.commit_seconds.clone(),
        );
        registry.register(
            "commits",
            "Durable transactions committed",
            t.commits.clone(),
        );
        registry.register(
            "commit_changes",
            "Changes written by those transactions: instance states, definitions, stored retries, sets of outbox entries cleared",
            t.changes.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls, by tenant, plugin, capability and outcome",
            t.plugin_calls.clone(),
        );
        registry.register(
            "timers_due",
            "Timers due and not yet fired",
            t.timers_due.clone(),
        );
        registry.register(
            "timers_overdue_seconds",
            "How long the oldest due timer has waited past its time (0 when none is due)",
            t.timers_overdue.clone(),
        );
        registry.register(
            "outbox_pending",
            "Effects waiting in the outbox",
            t.outbox_pending.clone(),
        );
        registry.register(
            "writer_queue",
            "Commands waiting for the writer",
            t.writer_queue.clone(),
        );
        registry.register(
            "tenant_plugin_queue",
            "Plugin calls waiting for the tenant's share of the plugin pool",
            t.plugin_waiting.clone(),
        );
        registry.register(
            "tenant_plugin_running",
            "Plugin calls of the tenant running",
            t.plugin_running.clone(),
        );
        registry.register(
            "tenant_plugin_seconds",
            "Plugin time the tenant used (wall time of its calls)",
            t.plugin_seconds.clone(),
        );
        registry.register(
            "tenant_plugin_throttled",
            "Plugin calls that waited because the tenant had used its plugin time for the second",
            t.plugin_throttled.clone(),
        );
        registry.register(
            "tenant_plugin_long_calls",
            "Plugin calls run in the long lane, below the daemon's priority, their plugin's calls having run long",
            t.plugin_long_calls.clone(),
        );
        registry.register(
            "tenant_commands_throttled",
            "API commands refused (429) because the tenant was over its commands per second",
            t.commands_throttled.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "The daemon's resident memory (the store's page cache, compiled plugins, instances cached)",
            t.resident.clone(),
        );
        registry.register(
            "commit_failures",
            "Transactions the store refused (their commands were answered with the cause)",
            t.commit_failures.clone(),
        );
        registry.register(
            "store_failing",
            "1 while commits fail for a resource reason (a full disk), else 0",
            t.store_failing.clone(),
        );
        Telemetry { registry, ..t }
    }
}

impl Telemetry {
    pub(crate) fn command(&self, tenant: &str, kind: &'static str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        let tenant = tenant.to_string();
        self.latency
            .get_or_create(&KindLabel {
                tenant: tenant.clone(),
                kind,
            })
            .observe(seconds);
        self.commands
            .get_or_create(&CommandLabels {
                tenant,
                kind,
                outcome,
            })
            .inc();
    }

    pub(crate) fn commit(&self, requests: usize, changes: usize, seconds: f64) {
        self.batch_size.observe(requests as f64);
        self.commit_seconds.observe(seconds);
        self.commits.inc();
        self.changes.inc_by(changes as u64);
    }

    pub(crate) fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    pub(crate) fn store_failing(&self, failing: bool) {
        self.store_failing.set(i64::from(failing));
    }

    /// Durable writes so far.
    pub fn write_totals(&self) -> WriteTotals {
        WriteTotals {
            commits: self.commits.get(),
            changes: self.changes.get(),
        }
    }

    pub(crate) fn plugin_call(
        &self,
        tenant: &str,
        plugin: &str,
        capability: &'static str,
        ok: bool,
    ) {
        let outcome = if ok { "ok" } else { "error" };
        let labels = PluginLabels {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            capability,
            outcome,
        };
        self.plugin_calls.get_or_create(&labels).inc();
    }

    pub(crate) fn set_depths(&self, tenant: &str, depths: Depths) {
        let label = TenantLabel {
            tenant: tenant.to_string(),
        };
        let Depths {
            timers_due,
            overdue_seconds,
            outbox,
            queue,
        } = depths;
        self.timers_due.get_or_create(&label).set(timers_due as i64);
        self.timers_overdue
            .get_or_create(&label)
            .set(overdue_seconds);
        self.outbox_pending.get_or_create(&label).set(outbox as i64);
        self.writer_queue.set(queue as i64);
    }

    /// A tenant's use of the plugin pool, read at scrape time.
    pub(crate) fn set_share(&self, share: &super::ShareStats) {
        let label = TenantLabel {
            tenant: share.tenant.clone(),
        };
        self.plugin_waiting
            .get_or_create(&label)
            .set(share.waiting as i64);
        self.plugin_running
            .get_or_create(&label)
            .set(share.running as i64);
        let seconds = self.plugin_seconds.get_or_create(&label);
        let total = share.plugin_time.as_secs_f64();
        seconds.inc_by((total - seconds.get()).max(0.0));
        let throttled = self.plugin_throttled.get_or_create(&label);
        throttled.inc_by(share.throttled.saturating_sub(throttled.get()));
        let long = self.plugin_long_calls.get_or_create(&label);
        long.inc_by(share.long_calls.saturating_sub(long.get()));
    }

    /// An API command refused for the tenant's commands per second.
    pub fn command_throttled(&self, tenant: &str) {
        self.commands_throttled
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "telemetry: cannot encode metrics");
        }
        out
    }
}

/// The process's resident memory, from `/proc/self/status` (Linux; none elsewhere).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
