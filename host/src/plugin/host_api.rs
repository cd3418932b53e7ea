//! The `flowgate:plugin/host` imports: structured logging and the tenant's configuration values.

use super::bindings::v0_1::{LogLevel, flowgate::plugin::host, wire};
use super::state::{CallState, LogLine};

/// Longest log message or field value kept; longer ones are cut.
const MAX_LOG_TEXT: usize = 4 << 10;

fn clip(mut text: String) -> String {
    if text.len() > MAX_LOG_TEXT {
        let mut end = MAX_LOG_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl host::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        if self.logs.len() >= self.max_log_lines {
            self.logs_dropped += 1;
            return;
        }
        let message = clip(message);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (clip(k), clip(v)))
            .collect();
        // Rendered only if a subscriber wants the event.
        let rendered = Fields(&fields);
        // The enclosing `plugin.invoke` span carries tenant, plugin and instance.
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", fields = %rendered, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", fields = %rendered, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", fields = %rendered, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", fields = %rendered, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", fields = %rendered, "{message}"),
        }
        self.logs.push(LogLine {
            level: level.into(),
            message,
            fields,
        });
    }

    fn get_config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config_keys(&mut self) -> Vec<String> {
        self.config.keys().cloned().collect()
    }
}

impl wire::Host for CallState {}

/// Key-value fields, written `k=v k2=v2` when displayed.
struct Fields<'a>(&'a [(String, String)]);

impl std::fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries() {
        let long = "é".repeat(MAX_LOG_TEXT);
        let clipped = clip(long);
        assert!(clipped.len() <= MAX_LOG_TEXT + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short".to_string()), "short");
    }
}
