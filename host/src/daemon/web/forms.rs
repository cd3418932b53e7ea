//! Forms drawn from a definition's typed fields (a task's form, a workflow's start form), and
//! what a submitted form becomes: the data those fields declare.

use serde_json::{Map, Value};

use axum::http::StatusCode;

use super::Fields;
use super::format;
use crate::daemon::error::ApiError;
use crate::definition::{FieldKind, FormField};

/// One form field, as the page draws it.
#[derive(Debug)]
pub struct FieldView {
    pub name: String,
    pub label: String,
    /// `text`, `number`, `date`, `checkbox`, `select` or `money`.
    pub input: &'static str,
    pub step: &'static str,
    pub required: bool,
    pub options: Vec<String>,
    pub value: String,
    /// For money: the currency, when it is fixed.
    pub currency: String,
    pub error: Option<String>,
}

/// The field as drawn, with what was submitted (after a refusal) and the error it got.
pub fn field_view(field: &FormField, submitted: &Fields, error: Option<String>) -> FieldView {
    let (input, step) = match field.kind {
        FieldKind::Text => ("text", ""),
        FieldKind::Number => ("number", "any"),
        FieldKind::Integer => ("number", "1"),
        FieldKind::Boolean => ("checkbox", ""),
        FieldKind::Date => ("date", ""),
        FieldKind::Choice => ("select", ""),
        FieldKind::Money => ("money", ""),
    };
    FieldView {
        label: format::label(field.name.trim_end_matches("_cents")),
        input,
        step,
        required: field.required,
        options: field.options.clone(),
        value: submitted.get(&field.name).unwrap_or("").to_string(),
        currency: field.currency.clone().unwrap_or_default(),
        error,
        name: field.name.clone(),
    }
}

/// A field the page refused before sending it on: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: String,
    pub message: String,
}

/// The form's values as the data its fields declare: numbers as numbers, a checkbox as true or
/// false, money as minor units of its currency (from the field, the form, or `data`). A number
/// that does not parse is sent as the text it is, so that the engine's check names the field and
/// what it expected; money that does not parse exactly is refused here, naming the field. An
/// empty field is left out.
pub fn form_data(
    fields: &[FormField],
    form: &Fields,
    data: &Map<String, Value>,
) -> Result<Map<String, Value>, Refused> {
    let mut out = Map::new();
    for field in fields {
        let raw = form.get(&field.name).map(str::trim);
        let value = match (field.kind, raw) {
            (FieldKind::Boolean, raw) => Value::Bool(raw.is_some_and(|v| v == "on" || v == "true")),
            (_, None | Some("")) => continue,
            (FieldKind::Integer, Some(v)) => v
                .parse::<i64>()
                .map_or_else(|_| Value::String(v.to_string()), Value::from),
            (FieldKind::Number, Some(v)) => serde_json::from_str::<serde_json::Number>(v)
                .map_or_else(|_| Value::String(v.to_string()), Value::Number),
            (FieldKind::Money, Some(v)) => {
                let currency = field
                    .currency
                    .clone()
                    .or_else(|| {
                        let from = field.currency_field.as_deref()?;
                        form.get(from)
                            .map(str::to_string)
                            .or_else(|| data.get(from)?.as_str().map(str::to_string))
                    })
                    .unwrap_or_default();
                let decimals = format::decimals(&currency);
                let minor = format::parse_money(&v.replace([',', ' '], ""), decimals);
                let Some(minor) = minor else {
                    let example = if decimals == 0 { "1250" } else { "1250.50" };
                    return Err(Refused {
                        field: field.name.clone(),
                        message: format!(
                            "Enter an amount like {example}, with at most {decimals} decimals{}",
                            if currency.is_empty() {
                                String::new()
                            } else {
                                format!(" for {currency}")
                            }
                        ),
                    });
                };
                Value::from(minor)
            }
            (_, Some(v)) => Value::String(v.to_string()),
        };
        out.insert(field.name.clone(), value);
    }
    Ok(out)
}

/// A field the page refused, as the engine's refusals read: `data.<field>: why`.
pub fn refused_error(refused: &Refused) -> ApiError {
    let field = format!("data.{}", refused.field);
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("{field}: {}", refused.message),
    )
    .with(serde_json::json!({ "field": field }))
}

/// `data.amount: expected integer, got "x"` → `expected integer, got "x"`.
fn reason_of(message: &str) -> String {
    let reason = message.split_once(": ").map_or(message, |(_, r)| r);
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The fields as drawn, each with the error that names it; an error that names none of them is
/// given back to be shown above the form.
pub fn draw(
    form: &[FormField],
    submitted: &Fields,
    error: Option<&ApiError>,
) -> (Vec<FieldView>, Option<String>) {
    let named = error.and_then(|e| e.details.get("field").and_then(Value::as_str));
    let fields = form
        .iter()
        .map(|f| {
            let mine = named == Some(format!("data.{}", f.name).as_str());
            let message = error.filter(|_| mine).map(|e| reason_of(&e.message));
            field_view(f, submitted, message)
        })
        .collect();
    let shown = form
        .iter()
        .any(|f| named == Some(format!("data.{}", f.name).as_str()));
    let general = error.filter(|_| !shown).map(|e| e.message.clone());
    (fields, general)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, kind: FieldKind) -> FormField {
        FormField {
            name: name.to_string(),
            kind,
            required: false,
            options: Vec::new(),
            currency: None,
            currency_field: None,
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn form_values_become_the_types_the_form_declares() {
        let fields = [
            field("count", FieldKind::Integer),
            field("rate", FieldKind::Number),
            field("ok", FieldKind::Boolean),
            field("note", FieldKind::Text),
            field("bad", FieldKind::Integer),
            field("empty", FieldKind::Text),
        ];
        let submitted = form(&[
            ("count", "12"),
            ("rate", "2.5"),
            ("note", " hi "),
            ("bad", "twelve"),
            ("empty", ""),
        ]);
        let data = form_data(&fields, &submitted, &Map::new()).map(Value::Object);
        assert_eq!(
            data,
            Ok(
                serde_json::json!({"count": 12, "rate": 2.5, "ok": false, "note": "hi", "bad": "twelve"})
            )
        );
    }

    #[test]
    fn money_is_kept_in_minor_units_of_its_currency_or_refused_by_name() {
        let mut amount = field("amount_cents", FieldKind::Money);
        amount.currency_field = Some("currency".to_string());
        let fields = [amount, field("currency", FieldKind::Text)];
        let data = form_data(
            &fields,
            &form(&[("amount_cents", "11,400.50"), ("currency", "USD")]),
            &Map::new(),
        );
        assert_eq!(
            data.map(Value::Object),
            Ok(serde_json::json!({"amount_cents": 1_140_050, "currency": "USD"}))
        );
        let yen = form_data(
            &fields,
            &form(&[("amount_cents", "1500"), ("currency", "JPY")]),
            &Map::new(),
        );
        assert_eq!(yen.map(|d| d["amount_cents"].clone()), Ok(1500.into()));
        let refused = form_data(
            &fields,
            &form(&[("amount_cents", "1.505"), ("currency", "USD")]),
            &Map::new(),
        );
        assert_eq!(
            refused.map_err(|r| r.field),
            Err("amount_cents".to_string())
        );
    }
}
