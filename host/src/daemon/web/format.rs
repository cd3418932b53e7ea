//! How the pages say things: times (in UTC for the page to show in the reader's zone), waits,
//! data as labelled values rather than JSON, and amounts of money.

use serde_json::{Map, Value};

use crate::definition::{Definition, Step};

/// An instant as RFC 3339 in UTC (`2026-12-02T13:40:19Z`); the page's script shows it in the
/// reader's time zone.
pub fn iso(millis: u64) -> String {
    crate::engine::time::format_seconds(millis).to_string()
}

/// A span of time, as people say it: `just now`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn span(millis: u64) -> String {
    let minutes = millis / 60_000;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => "just now".to_string(),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// Whom a task is for: its assignee, `role x`, or its candidates.
pub fn offered_to(task: &crate::engine::Task) -> String {
    match (&task.assignee, &task.role) {
        (Some(person), _) => person.clone(),
        (None, Some(role)) => format!("role {role}"),
        (None, None) => task.candidates.join(", "),
    }
}

/// A data key as a label: `amount_cents` → `Amount cents`, `po.number` → `Po number`.
pub fn label(key: &str) -> String {
    let words = key.replace(['_', '-', '.'], " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One row of an instance's data, as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow {
    pub label: String,
    pub value: String,
}

/// An instance's data as rows: nested objects flattened (`po.number`), lists joined, yes and no
/// for booleans, and the amounts the workflow's approval policies read shown with their
/// currency (`11,400.00 USD`).
pub fn data_rows(def: Option<&Definition>, data: &Map<String, Value>) -> Vec<DataRow> {
    let money = def.map(money_fields).unwrap_or_default();
    let mut rows = Vec::new();
    flatten("", data, &mut |path, value| {
        let shown = money
            .iter()
            .find(|(amount, _)| amount == path)
            .and_then(|(_, currency)| {
                let code = crate::engine::data_path(data, currency)?.as_str()?;
                Some(format_money(value.as_i64()?, code))
            })
            .unwrap_or_else(|| scalar(value));
        let key = money
            .iter()
            .find(|(amount, _)| amount == path)
            .map_or(path, |_| path.trim_end_matches("_cents"));
        rows.push(DataRow {
            label: label(key),
            value: shown,
        });
    });
    rows
}

fn flatten(prefix: &str, data: &Map<String, Value>, out: &mut dyn FnMut(&str, &Value)) {
    for (key, value) in data {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&path, inner, out),
            other => out(&path, other),
        }
    }
}

/// A value without JSON's quotes and brackets.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "—".to_string(),
        Value::Bool(true) => "Yes".to_string(),
        Value::Bool(false) => "No".to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "—".to_string(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{}: {}", label(k), scalar(v)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// `(amount, currency)` data paths that the definition's approval policies read.
fn money_fields(def: &Definition) -> Vec<(String, String)> {
    def.steps
        .iter()
        .filter_map(|s| match s {
            Step::Approval(a) if a.policy.is_some() => {
                Some((a.request.amount.clone(), a.request.currency.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The decimals of a currency's minor unit (ISO 4217): 2 for most, 0 for JPY, 3 for KWD.
pub fn decimals(currency: &str) -> usize {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A decimal amount a person typed (`1250.5`, `-3`, `0.05`) as minor units with `decimals`
/// digits, exactly; none if it is not such a number or has more decimals than the currency.
pub fn parse_money(text: &str, decimals: usize) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !plain(whole)
        || !plain(fraction)
        || fraction.len() > decimals
    {
        return None;
    }
    let padded = format!("{whole}{fraction:0<decimals$}");
    let minor: i64 = padded.parse().ok()?;
    Some(if negative { -minor } else { minor })
}

/// Minor units in a currency, with its ISO 4217 decimals: `1140000 USD` → `11,400.00 USD`.
pub fn format_money(minor: i64, currency: &str) -> String {
    let decimals = decimals(currency);
    // Padded on the left so that 5 cents reads 0.05.
    let digits = format!("{:0>width$}", minor.unsigned_abs(), width = decimals + 1);
    let (whole, fraction) = digits.split_at(digits.len() - decimals);
    let sign = if minor < 0 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{} {currency}", group(whole))
    } else {
        format!("{sign}{}.{fraction} {currency}", group(whole))
    }
}

/// A count with its thousands separated: `22,454`.
pub fn thousands(n: u64) -> String {
    group(&n.to_string())
}

/// A size for people: `812 B`, `18.3 KB`, `4.1 MB` (powers of 1,000, as disks are sold).
pub fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Thousands separated by commas.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_their_unit() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(18_340), "18.3 KB");
        assert_eq!(bytes(4_100_000), "4.1 MB");
        assert_eq!(bytes(7_250_000_000), "7.2 GB");
    }

    #[test]
    fn amounts_read_as_money_in_their_currency() {
        assert_eq!(format_money(1_140_000, "USD"), "11,400.00 USD");
        assert_eq!(format_money(5, "EUR"), "0.05 EUR");
        assert_eq!(format_money(-123_456, "USD"), "-1,234.56 USD");
        assert_eq!(format_money(1_500_000, "JPY"), "1,500,000 JPY");
        assert_eq!(format_money(1_234, "KWD"), "1.234 KWD");
    }

    #[test]
    fn typed_amounts_become_minor_units_exactly_or_not_at_all() {
        assert_eq!(parse_money("11400", 2), Some(1_140_000));
        assert_eq!(parse_money("11400.5", 2), Some(1_140_050));
        assert_eq!(parse_money("0.05", 2), Some(5));
        assert_eq!(parse_money(".5", 2), Some(50));
        assert_eq!(parse_money("-3", 2), Some(-300));
        assert_eq!(parse_money("1500", 0), Some(1500));
        for bad in [
            "",
            ".",
            "1.234",
            "1,5",
            "12a",
            "1e3",
            "--1",
            "99999999999999999999",
        ] {
            assert_eq!(parse_money(bad, 2), None, "{bad}");
        }
        assert_eq!(parse_money("1.5", 0), None);
    }

    #[test]
    fn spans_and_labels_read_as_people_say_them() {
        assert_eq!(span(30_000), "just now");
        assert_eq!(span(12 * 60_000), "12 min");
        assert_eq!(span(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(span(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        assert_eq!(label("amount_cents"), "Amount cents");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        // A deadline past year 9999 (in effect never) is shown as it is, not a page that fails.
        assert_eq!(iso(u64::MAX), u64::MAX.to_string());
    }
}
