//! Structured logging into the host's logs, tagged there with tenant, plugin and instance.
//!
//! Natively (in `cargo test`) lines are kept for [`crate::testing::take_logs`].

use crate::LogLevel;

/// Write one log line with key-value fields.
pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    {
        crate::wit::host::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::record_log(level, message, fields);
    }
}

/// Log at debug level.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Debug, message, fields);
}

/// Log at info level.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Info, message, fields);
}

/// Log at warn level.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(LogLevel::Warn, message, fields);
}
