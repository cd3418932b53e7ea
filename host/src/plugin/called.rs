//! What a successful plugin call gives back: the answer with what it cost (fuel, time, logs),
//! shared by the one-call API (`LoadedPlugin`) and sessions.

use std::time::Duration;

use super::state::LogLine;

/// A successful call's answer, with what it cost.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// The answer.
    pub value: T,
    /// Fuel the call used.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the answer.
    pub elapsed: Duration,
    /// Lines the plugin logged.
    pub logs: Vec<LogLine>,
    /// Lines dropped over the cap.
    pub logs_dropped: usize,
}

/// A step action's answer, checked: `data` is a JSON object to merge.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    /// Top-level keys to merge into the instance data.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// A note for the audit history.
    pub note: String,
}
