//! The values a table compares: what an input reads from the request, and what a cell writes.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// A value an input took for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent, or JSON `null`: only the `-` test matches it.
    Missing,
    Bool(bool),
    /// Exact decimal, so `499.99 < 500` holds as written.
    Number(Decimal),
    Text(String),
    /// A test against a list matches when it matches any element.
    List(Vec<Value>),
}

/// The type a column compares, inferred from its cells when the table is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Number,
    Text,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bool => "true or false",
            Kind::Number => "a number",
            Kind::Text => "text",
        })
    }
}

impl Value {
    /// A JSON value as a table value; objects are not comparable.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, String> {
        Ok(match json {
            serde_json::Value::Null => Value::Missing,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(number(n)?),
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Array(items) => Value::List(
                items
                    .iter()
                    .map(Value::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(_) => {
                return Err("is an object; a table compares text, numbers, true/false and lists of them (point to a field inside it)".to_string());
            }
        })
    }

    /// The value's kind, for scalars.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Value::Bool(_) => Some(Kind::Bool),
            Value::Number(_) => Some(Kind::Number),
            Value::Text(_) => Some(Kind::Text),
            Value::Missing | Value::List(_) => None,
        }
    }

    /// Text trimmed and lowercased (elements of a list too); other values unchanged.
    pub(crate) fn lowercased(self) -> Value {
        match self {
            Value::Text(s) => Value::Text(s.trim().to_lowercase()),
            Value::List(items) => Value::List(items.into_iter().map(Value::lowercased).collect()),
            other => other,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => f.write_str("(none)"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{}", n.normalize()),
            Value::Text(s) => f.write_str(s),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A JSON number exactly: integers as they are, fractions by their shortest decimal form (what
/// the sender wrote, for any number a person types).
fn number(n: &serde_json::Number) -> Result<Decimal, String> {
    if let Some(i) = n.as_i64() {
        return Ok(Decimal::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Decimal::from(u));
    }
    let text = n.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("{text} is out of the range a table compares (28 digits)"))
}

/// A number as written in a cell: digits, an optional sign and fraction.
pub(crate) fn parse_number(text: &str) -> Option<Decimal> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_');
    if !looks_numeric {
        return None;
    }
    Decimal::from_str_exact(&text.replace('_', "")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_are_exact() {
        let v = Value::from_json(&json!(499.99));
        assert_eq!(v, Ok(Value::Number(Decimal::new(49999, 2))));
        assert_eq!(
            Value::from_json(&json!(500)),
            Ok(Value::Number(Decimal::from(500)))
        );
        assert!(Value::from_json(&json!({"a": 1})).is_err());
        assert_eq!(
            Value::from_json(&json!(["a", null])),
            Ok(Value::List(vec![Value::Text("a".into()), Value::Missing]))
        );
    }

    #[test]
    fn cell_numbers() {
        assert_eq!(parse_number("50_000"), Some(Decimal::from(50_000)));
        assert_eq!(parse_number("-2.5"), Some(Decimal::new(-25, 1)));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("1e3"), None);
        assert_eq!(parse_number("."), None);
    }
}
