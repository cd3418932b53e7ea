//! Expense reimbursement action: computes the reimbursable amount of an expense report per policy
//! and flags out-of-policy lines.
//!
//! Policy, per line category (tenant configuration in minor units, e.g. cents):
//! - `meals`: at most `limit.meals` (7500) per line;
//! - `lodging`: at most `limit.lodging` (25000) per line;
//! - `travel`, `supplies` and any other category in `allowed_categories`: reimbursed in full;
//! - `alcohol` and any category not allowed: not reimbursed;
//! - any line over `receipt_required_above` (2500) without a receipt: not reimbursed.
//!
//! Expected instance data: `{"currency": "USD", "lines": [{"category": "meals", "amount": 4200,
//! "receipt": true, "description": "client dinner"}]}`. Merges `{"reimbursement": {...}}`.

use flowgate_plugin_sdk::{ActionOutput, ActionRequest, PluginError, StepAction, config};
use serde::{Deserialize, Serialize};

/// The exported plugin.
pub struct ExpenseReimbursement;

flowgate_plugin_sdk::export!(ExpenseReimbursement: step_action);

#[derive(Deserialize)]
struct Report {
    currency: String,
    lines: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    category: String,
    /// Minor units.
    amount: i64,
    #[serde(default)]
    receipt: bool,
    #[serde(default)]
    description: String,
}

/// What is merged into the instance data under `reimbursement`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Reimbursement {
    pub currency: String,
    pub claimed: i64,
    pub reimbursable: i64,
    pub flagged: Vec<Flag>,
    /// The execution that computed this, so a repeat delivery can be recognized.
    pub computed_by: String,
}

/// One out-of-policy line.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Flag {
    pub line: usize,
    pub reason: String,
    pub reimbursed: i64,
}

#[derive(Serialize)]
struct Output {
    reimbursement: Reimbursement,
}

struct Policy {
    meals: i64,
    lodging: i64,
    receipt_above: i64,
    allowed: Vec<String>,
}

impl Policy {
    fn from_config() -> Result<Self, PluginError> {
        Ok(Policy {
            meals: config::parse_or("limit.meals", 7_500)?,
            lodging: config::parse_or("limit.lodging", 25_000)?,
            receipt_above: config::parse_or("receipt_required_above", 2_500)?,
            allowed: config::list_or(
                "allowed_categories",
                &["meals", "lodging", "travel", "supplies"],
            ),
        })
    }

    /// The reimbursable part of a line, and why it is less than claimed.
    fn assess(&self, line: &Line) -> (i64, Option<String>) {
        let category = line.category.trim().to_lowercase();
        if !self.allowed.contains(&category) {
            return (
                0,
                Some(format!("category `{category}` is not reimbursable")),
            );
        }
        if line.amount > self.receipt_above && !line.receipt {
            return (
                0,
                Some(format!(
                    "no receipt for an amount over {}",
                    self.receipt_above
                )),
            );
        }
        let cap = match category.as_str() {
            "meals" => Some(self.meals),
            "lodging" => Some(self.lodging),
            _ => None,
        };
        match cap {
            Some(cap) if line.amount > cap => {
                (cap, Some(format!("over the {category} limit of {cap}")))
            }
            _ => (line.amount, None),
        }
    }
}

impl StepAction for ExpenseReimbursement {
    fn run(request: ActionRequest) -> Result<ActionOutput, PluginError> {
        let report: Report = request.context.data_as()?;
        if report.lines.is_empty() {
            return Err(PluginError::InvalidInput(
                "lines: an expense report needs at least one line".to_string(),
            ));
        }
        let policy = Policy::from_config()?;
        let mut claimed = 0i64;
        let mut reimbursable = 0i64;
        let mut flagged = Vec::new();
        for (index, line) in report.lines.iter().enumerate() {
            if line.amount < 0 {
                return Err(PluginError::InvalidInput(format!(
                    "lines[{index}].amount: must not be negative ({})",
                    line.description
                )));
            }
            let (paid, flag) = policy.assess(line);
            claimed = claimed.saturating_add(line.amount);
            reimbursable = reimbursable.saturating_add(paid);
            if let Some(reason) = flag {
                flagged.push(Flag {
                    line: index,
                    reason,
                    reimbursed: paid,
                });
            }
        }
        let note = format!(
            "{} of {} {} reimbursable, {} line(s) flagged",
            reimbursable,
            claimed,
            report.currency,
            flagged.len()
        );
        let output = Output {
            reimbursement: Reimbursement {
                currency: report.currency,
                claimed,
                reimbursable,
                flagged,
                computed_by: request.idempotency.key,
            },
        };
        ActionOutput::merge(&output, note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_plugin_sdk::IdempotencyKey;
    use flowgate_plugin_sdk::testing::{context, with_config};
    use serde_json::json;

    fn run(data: serde_json::Value) -> Result<Reimbursement, PluginError> {
        let request = ActionRequest {
            context: context(data),
            action: "compute".to_string(),
            params: "{}".to_string(),
            idempotency: IdempotencyKey {
                key: "i-1/reimburse/1/1".to_string(),
                instance_id: "i-1".to_string(),
                step_id: "reimburse".to_string(),
                attempt: 1,
            },
        };
        let output = ExpenseReimbursement::run(request)?;
        let mut value: serde_json::Value = serde_json::from_str(&output.data)
            .map_err(|e| PluginError::Permanent(e.to_string()))?;
        serde_json::from_value(value["reimbursement"].take())
            .map_err(|e| PluginError::Permanent(e.to_string()))
    }

    #[test]
    fn policy_caps_and_flags_lines() {
        let data = json!({"currency": "USD", "lines": [
            {"category": "meals", "amount": 4200, "receipt": true},
            {"category": "meals", "amount": 9000, "receipt": true},
            {"category": "lodging", "amount": 18000, "receipt": true},
            {"category": "alcohol", "amount": 1500, "receipt": true},
            {"category": "travel", "amount": 30000, "receipt": false},
            {"category": "supplies", "amount": 1999}
        ]});
        let Ok(r) = run(data) else {
            panic!("run failed")
        };
        assert_eq!(r.claimed, 4200 + 9000 + 18000 + 1500 + 30000 + 1999);
        assert_eq!(r.reimbursable, 4200 + 7500 + 18000 + 1999);
        let flagged: Vec<usize> = r.flagged.iter().map(|f| f.line).collect();
        assert_eq!(flagged, [1, 3, 4]);
        assert!(r.flagged[0].reason.contains("meals limit"));
        assert!(r.flagged[2].reason.contains("receipt"));
        assert_eq!(r.computed_by, "i-1/reimburse/1/1");
    }

    #[test]
    fn tenant_limits_apply() {
        with_config(&[("limit.meals", "10000")], || {
            let data = json!({"currency": "USD", "lines": [
                {"category": "meals", "amount": 9000, "receipt": true}
            ]});
            assert_eq!(run(data).map(|r| r.reimbursable).ok(), Some(9000));
        });
    }

    #[test]
    fn bad_reports_are_invalid_input() {
        for data in [
            json!({"currency": "USD", "lines": []}),
            json!({"currency": "USD", "lines": [{"category": "meals", "amount": -1}]}),
            json!({"lines": "none"}),
        ] {
            assert!(
                matches!(run(data.clone()), Err(PluginError::InvalidInput(_))),
                "{data}"
            );
        }
    }
}
