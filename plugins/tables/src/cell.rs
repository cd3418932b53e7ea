//! An input cell: a test on one input's value, in the syntax of DMN's simple unary tests.
//!
//! | cell                      | matches                                            |
//! |---------------------------|----------------------------------------------------|
//! | `-` or empty              | anything, a missing value too                      |
//! | `it, "software", 42, true`| any of these values (bare words are text)          |
//! | `< 500`, `>= 5000`        | numbers so compared; the right side may name an input (`>= technical`) |
//! | `= x`, `!= x`             | equal / not equal to a value or an input            |
//! | `[500..5000)`             | a range: `[`/`]` include the bound, `(`/`)` exclude it |
//! | `not(it, software)`       | none of these                                       |
//!
//! A missing value matches only `-`; a list value matches a test when one of its elements does.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::value::{Kind, Value, parse_number};

/// A parsed input cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Any,
    Tests { negated: bool, atoms: Vec<Atom> },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Atom {
    Equal(Operand),
    NotEqual(Operand),
    Compare(Ordering, bool, Operand),
    Range { low: Bound, high: Bound },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bound {
    value: Decimal,
    inclusive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    /// Another input's value, by its column index.
    Input(usize),
}

impl Cell {
    /// Parses `text`; `inputs` are the table's input names, which comparisons may refer to.
    pub(crate) fn parse(text: &str, inputs: &[&str]) -> Result<Cell, String> {
        let text = text.trim();
        if text.is_empty() || text == "-" {
            return Ok(Cell::Any);
        }
        let (negated, inner) = match text
            .strip_prefix("not(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            Some(inner) => (true, inner),
            None => (false, text),
        };
        let atoms = split(inner)?
            .into_iter()
            .map(|item| atom(item, inputs))
            .collect::<Result<Vec<_>, _>>()?;
        if atoms.is_empty() {
            return Err("an empty list; write `-` to match anything".to_string());
        }
        Ok(Cell::Tests { negated, atoms })
    }

    /// The kinds this cell's literals and comparisons imply for its column.
    pub(crate) fn kinds(&self) -> Vec<(Kind, String)> {
        let Cell::Tests { atoms, .. } = self else {
            return Vec::new();
        };
        atoms
            .iter()
            .filter_map(|atom| match atom {
                Atom::Equal(Operand::Literal(v)) | Atom::NotEqual(Operand::Literal(v)) => {
                    v.kind().map(|k| (k, format!("`{v}`")))
                }
                Atom::Compare(..) => Some((Kind::Number, "a comparison".to_string())),
                Atom::Range { .. } => Some((Kind::Number, "a range".to_string())),
                _ => None,
            })
            .collect()
    }

    /// The inputs this cell refers to.
    pub(crate) fn references(&self) -> impl Iterator<Item = usize> + '_ {
        let atoms: &[Atom] = match self {
            Cell::Any => &[],
            Cell::Tests { atoms, .. } => atoms,
        };
        atoms.iter().filter_map(|atom| match atom {
            Atom::Equal(Operand::Input(i))
            | Atom::NotEqual(Operand::Input(i))
            | Atom::Compare(_, _, Operand::Input(i)) => Some(*i),
            _ => None,
        })
    }

    /// Text literals with capitals, which a lowercased input never equals.
    pub(crate) fn capitalized(&self) -> Option<String> {
        let Cell::Tests { atoms, .. } = self else {
            return None;
        };
        atoms.iter().find_map(|atom| match atom {
            Atom::Equal(Operand::Literal(Value::Text(s)))
            | Atom::NotEqual(Operand::Literal(Value::Text(s)))
                if s.chars().any(char::is_uppercase) =>
            {
                Some(s.clone())
            }
            _ => None,
        })
    }

    /// Whether `value` passes, with `values` the inputs' values for references.
    pub(crate) fn matches(&self, value: &Value, values: &[Value]) -> bool {
        let Cell::Tests { negated, atoms } = self else {
            return true;
        };
        if *value == Value::Missing {
            return false;
        }
        let hit = match value {
            Value::List(items) => items
                .iter()
                .any(|item| atoms.iter().any(|a| a.matches(item, values))),
            _ => atoms.iter().any(|a| a.matches(value, values)),
        };
        hit != *negated
    }
}

impl Atom {
    fn matches(&self, value: &Value, values: &[Value]) -> bool {
        let resolve = |operand: &'_ Operand| -> Option<Value> {
            match operand {
                Operand::Literal(v) => Some(v.clone()),
                Operand::Input(i) => values.get(*i).filter(|v| **v != Value::Missing).cloned(),
            }
        };
        match self {
            Atom::Equal(operand) => resolve(operand).is_some_and(|other| other == *value),
            Atom::NotEqual(operand) => resolve(operand).is_some_and(|other| other != *value),
            Atom::Compare(ordering, or_equal, operand) => match (value, resolve(operand)) {
                (Value::Number(a), Some(Value::Number(b))) => {
                    let found = a.cmp(&b);
                    found == *ordering || (*or_equal && found == Ordering::Equal)
                }
                _ => false,
            },
            Atom::Range { low, high } => match value {
                Value::Number(n) => {
                    let above = if low.inclusive {
                        *n >= low.value
                    } else {
                        *n > low.value
                    };
                    let below = if high.inclusive {
                        *n <= high.value
                    } else {
                        *n < high.value
                    };
                    above && below
                }
                _ => false,
            },
        }
    }
}

/// Splits a cell at the commas that are outside quotes and brackets.
fn split(text: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("a quote is not closed".to_string());
    }
    items.push(text[start..].trim());
    if let Some(position) = items.iter().position(|item| item.is_empty()) {
        return Err(format!(
            "item {} of the list is empty (a stray comma?)",
            position + 1
        ));
    }
    Ok(items)
}

fn atom(item: &str, inputs: &[&str]) -> Result<Atom, String> {
    for (prefix, build) in [
        ("<=", (Ordering::Less, true)),
        (">=", (Ordering::Greater, true)),
        ("<", (Ordering::Less, false)),
        (">", (Ordering::Greater, false)),
    ] {
        if let Some(rest) = item.strip_prefix(prefix) {
            let operand = operand(rest.trim(), inputs, prefix)?;
            if let Operand::Literal(v) = &operand
                && v.kind() != Some(Kind::Number)
            {
                return Err(format!(
                    "`{prefix}` compares numbers, and `{}` is not one",
                    rest.trim()
                ));
            }
            return Ok(Atom::Compare(build.0, build.1, operand));
        }
    }
    if let Some(rest) = item.strip_prefix("!=") {
        return Ok(Atom::NotEqual(operand(rest.trim(), inputs, "!=")?));
    }
    if let Some(rest) = item.strip_prefix('=') {
        return Ok(Atom::Equal(operand(rest.trim(), inputs, "=")?));
    }
    if item.starts_with(['[', '(', ']']) {
        return range(item);
    }
    Ok(Atom::Equal(Operand::Literal(literal(item)?)))
}

/// The right side of an operator: a literal, or an input's name.
fn operand(text: &str, inputs: &[&str], operator: &str) -> Result<Operand, String> {
    if text.is_empty() {
        return Err(format!("`{operator}` needs a value after it"));
    }
    if let Some(i) = inputs.iter().position(|name| *name == text) {
        return Ok(Operand::Input(i));
    }
    let value = literal(text)?;
    if matches!(value, Value::Text(_)) && !text.starts_with('"') {
        return Err(format!(
            "`{text}` after `{operator}` is neither a value nor an input of this table (inputs: {}; quote text: \"{text}\")",
            inputs.join(", ")
        ));
    }
    Ok(Operand::Literal(value))
}

fn literal(text: &str) -> Result<Value, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return Err(format!("`{text}`: a quote is not closed"));
        };
        return Ok(Value::Text(inner.replace("\\\"", "\"")));
    }
    if let Some(n) = parse_number(text) {
        return Ok(Value::Number(n));
    }
    match text {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if text.contains(['"', '[', ']', '(', ')', '<', '>', '=']) || text.contains("..") {
        return Err(format!(
            "`{text}` is not a value or a test (text with symbols goes in quotes)"
        ));
    }
    Ok(Value::Text(text.to_string()))
}

fn range(text: &str) -> Result<Atom, String> {
    let shape = || {
        format!(
            "`{text}` is not a range; write `[500..5000)`: `[` `]` include a bound, `(` `)` exclude it"
        )
    };
    let low_inclusive = match text.chars().next() {
        Some('[') => true,
        Some('(' | ']') => false,
        _ => return Err(shape()),
    };
    let high_inclusive = match text.chars().last() {
        Some(']') => true,
        Some(')' | '[') => false,
        _ => return Err(shape()),
    };
    let inner = &text[1..text.len() - 1];
    let Some((low, high)) = inner.split_once("..") else {
        return Err(shape());
    };
    let bound = |s: &str| {
        parse_number(s.trim())
            .ok_or_else(|| format!("`{}` in the range `{text}` is not a number", s.trim()))
    };
    let (low, high) = (bound(low)?, bound(high)?);
    if low > high {
        return Err(format!(
            "the range `{text}` is empty: its low bound is above its high bound"
        ));
    }
    Ok(Atom::Range {
        low: Bound {
            value: low,
            inclusive: low_inclusive,
        },
        high: Bound {
            value: high,
            inclusive: high_inclusive,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: i64) -> Value {
        Value::Number(Decimal::from(n))
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn check(cell: &str, value: Value) -> bool {
        match Cell::parse(cell, &["amount", "limit"]) {
            Ok(c) => c.matches(&value, &[num(0), num(100)]),
            Err(e) => panic!("{cell}: {e}"),
        }
    }

    #[test]
    fn ranges_include_and_exclude_their_bounds() {
        assert!(check("[500..5000)", num(500)));
        assert!(!check("[500..5000)", num(5000)));
        assert!(check("[500..5000]", num(5000)));
        assert!(!check("(500..5000]", num(500)));
        assert!(check("]500..5000[", num(501)));
        let cents = Value::Number(Decimal::new(49999, 2));
        assert!(!check("[500..5000)", cents.clone()));
        assert!(check("< 500", cents));
    }

    #[test]
    fn lists_comparisons_and_negation() {
        assert!(check("it, \"software\", hardware", text("software")));
        assert!(!check("it, software", text("office")));
        assert!(check("not(it, software)", text("office")));
        assert!(check(">= 5000", num(5000)));
        assert!(!check("> 5000", num(5000)));
        assert!(check("!= 3", num(4)));
        assert!(check("true", Value::Bool(true)));
        assert!(check(
            "\"a, b\"",
            Value::List(vec![text("x"), text("a, b")])
        ));
    }

    #[test]
    fn comparisons_may_name_another_input() {
        assert!(check(">= limit", num(100)));
        assert!(!check("> limit", num(100)));
        assert!(check("= limit", num(100)));
    }

    #[test]
    fn missing_values_match_only_the_dash() {
        assert!(check("-", Value::Missing));
        assert!(check("", Value::Missing));
        assert!(!check("not(it)", Value::Missing));
        assert!(!check("< 5", Value::Missing));
    }

    #[test]
    fn bad_cells_say_why() {
        let error = |cell: &str| Cell::parse(cell, &["amount"]).err().unwrap_or_default();
        assert!(error("[500..50").contains("not a range"));
        assert!(error("[5000..500]").contains("empty"));
        assert!(error("< abc").contains("neither a value nor an input"));
        assert!(error("< \"abc\"").contains("compares numbers"));
        assert!(error("it,,software").contains("item 2"));
        assert!(error("\"open").contains("not closed"));
        assert!(error("a<b").contains("not a value or a test"));
    }
}
