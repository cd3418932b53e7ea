//! The tenant's configuration values for this plugin, set by an administrator without recompiling.
//!
//! Natively (in `cargo test`) the values come from [`crate::testing::with_config`].

use std::str::FromStr;

use crate::PluginError;

/// The raw value of `key`, if the tenant set one.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wit::host::get_config(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::config_value(key)
    }
}

/// Every key the tenant set for this plugin, sorted.
pub fn keys() -> Vec<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wit::host::config_keys()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::config_keys()
    }
}

/// The value of `key` parsed as `T`, or `default` when unset. A value that does not parse is a
/// permanent error naming the key, since retrying will not fix a configuration mistake.
pub fn parse_or<T>(key: &str, default: T) -> Result<T, PluginError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match get(key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e| {
            PluginError::Permanent(format!("configuration `{key}` = {raw:?} is invalid: {e}"))
        }),
    }
}

/// A comma-separated list, or `default` when unset.
pub fn list_or(key: &str, default: &[&str]) -> Vec<String> {
    match get(key) {
        None => default.iter().map(|s| s.to_string()).collect(),
        Some(raw) => raw
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::with_config;

    #[test]
    fn parse_or_reads_defaults_and_names_bad_keys() {
        with_config(&[("limit", "12"), ("bad", "twelve")], || {
            assert_eq!(parse_or("limit", 1u32).ok(), Some(12));
            assert_eq!(parse_or("unset", 7u32).ok(), Some(7));
            let Err(PluginError::Permanent(msg)) = parse_or("bad", 1u32) else {
                panic!("expected a permanent error");
            };
            assert!(msg.contains("`bad`"), "{msg}");
            assert_eq!(keys(), vec!["bad".to_string(), "limit".to_string()]);
        });
    }

    #[test]
    fn list_or_splits_on_commas() {
        with_config(&[("cats", " it, software ,,")], || {
            assert_eq!(list_or("cats", &["x"]), vec!["it", "software"]);
            assert_eq!(list_or("none", &["x"]), vec!["x"]);
        });
    }
}
