//! Per-call resource limits and the memory limiter that enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one plugin call may use. Set per tenant (and per plugin); the defaults suit policy code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Fuel per call: deterministic, roughly one unit per wasm instruction. The default follows
    /// Shopify Functions' 11M instruction budget.
    pub fuel: u64,
    /// Time per call (ms in tenant.toml), enforced by epoch interruption: wall-clock time less
    /// the time the call's thread waited for a CPU, and never more than ten times this in wall
    /// time (see `plugin::deadline`).
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: u64,
    /// Cap on the request (instance data and parameters), in bytes.
    pub max_input_bytes: usize,
    /// Cap on the answer, in bytes.
    pub max_output_bytes: usize,
    /// Log lines kept per call; more are counted and dropped.
    pub max_log_lines: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel: 11_000_000,
            timeout: Duration::from_millis(100),
            memory_bytes: 32 << 20,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_log_lines: 100,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Raised (as the trap's error) when a guest grows memory past its cap, so that the caller can
/// tell a memory cap from any other trap.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("memory growth to {desired} bytes is over the cap of {limit} bytes")]
pub(crate) struct MemoryCapHit {
    pub limit: u64,
    pub desired: u64,
}

/// Enforces [`PluginLimits::memory_bytes`] and a table cap.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: u64,
}

/// Table elements an instance may have; generous for Rust guests, small enough to stop abuse.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    pub fn new(limits: &PluginLimits) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryCapHit {
                limit: self.memory_bytes,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
