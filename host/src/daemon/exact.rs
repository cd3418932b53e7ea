//! Numbers in request bodies are kept exactly or refused: serde_json reads an integer past 64 bits
//! (a 30-digit account number) or a decimal with more digits than a double holds as the nearest
//! double, silently. This scan of the raw body finds the first such literal and where it is.

/// A number literal the API cannot keep exactly, and its place in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inexact {
    /// Where: `data.amount_cents`, `items[2].price`; empty for the document itself.
    pub field: String,
    /// The literal as sent.
    pub literal: String,
}

enum Frame {
    Object {
        key: Option<String>,
        expect_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The first number in `json` (a syntactically valid document) that a JSON number here cannot
/// hold exactly, if any.
pub fn first_inexact(json: &[u8]) -> Option<Inexact> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'{' => stack.push(Frame::Object {
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                None => {}
            },
            b'"' => {
                let end = string_end(json, at);
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = serde_json::from_slice(&json[at..end]).ok();
                    *expect_key = false;
                }
                at = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let end = json[at..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(json.len(), |n| at + n);
                let literal = String::from_utf8_lossy(&json[at..end]).into_owned();
                if !is_exact(&literal) {
                    return Some(Inexact {
                        field: path(&stack),
                        literal,
                    });
                }
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// The index just past the string literal starting at `start` (its opening quote).
fn string_end(json: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < json.len() {
        match json[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    json.len()
}

fn path(stack: &[Frame]) -> String {
    let mut out = String::new();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Whether serde_json keeps `literal` exactly: an integer that fits 64 bits, or a decimal whose
/// nearest double reads back as the same decimal.
fn is_exact(literal: &str) -> bool {
    if !literal.contains(['.', 'e', 'E']) {
        return literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok();
    }
    match literal.parse::<f64>() {
        Ok(value) if value.is_finite() => decimal(literal) == decimal(&format!("{value:e}")),
        _ => false,
    }
}

/// A decimal literal as (negative, significant digits, exponent of the last digit), so that
/// `1.50`, `15e-1` and `1.5` compare equal.
fn decimal(literal: &str) -> (bool, String, i64) {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let mut exponent = exponent - fraction.len() as i64;
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    exponent += (trimmed.len() - significant.len()) as i64;
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, significant.to_string(), exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(json: &str) -> Option<(String, String)> {
        first_inexact(json.as_bytes()).map(|i| (i.field, i.literal))
    }

    #[test]
    fn integers_past_64_bits_are_found_with_their_field() {
        let big = "123456789012345678901234567890";
        let json = format!(r#"{{"workflow": "p", "data": {{"a": 1, "account": {big}}}}}"#);
        assert_eq!(
            found(&json),
            Some(("data.account".to_string(), big.to_string()))
        );
        let json = format!(r#"{{"items": [{{"n": 1}}, {{"n": -{big}}}]}}"#);
        assert_eq!(
            found(&json),
            Some(("items[1].n".to_string(), format!("-{big}")))
        );
    }

    #[test]
    fn what_64_bits_and_doubles_hold_passes() {
        for ok in [
            r#"{"a": 9223372036854775807, "b": -9223372036854775808, "c": 18446744073709551615}"#,
            r#"{"a": 0.1, "b": 0.30000000000000004, "c": 1.5e3, "d": 125.50, "e": -0.0, "f": 1E-7}"#,
            r#"{"text": "12345678901234567890123 in a string", "k\"ey": [1, 2.5]}"#,
        ] {
            assert_eq!(found(ok), None, "{ok}");
        }
    }

    #[test]
    fn decimals_with_more_digits_than_a_double_holds_are_found() {
        assert_eq!(
            found(r#"{"rate": 0.1234567890123456789}"#),
            Some(("rate".to_string(), "0.1234567890123456789".to_string()))
        );
        assert_eq!(
            found(r#"[1, 1e400]"#),
            Some(("[1]".to_string(), "1e400".to_string()))
        );
    }
}
