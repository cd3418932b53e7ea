//! Decision tables as a plugin: rules a tenant writes in `tenant.toml` (or a CSV file beside it)
//! rather than in Rust, evaluated as a router or as an approval policy.
//!
//! ```toml
//! [plugins.purchase-rules]
//! path = "decision_table.wasm"
//! [plugins.purchase-rules.table]
//! hit = "collect"
//! inputs = [
//!   { name = "amount", from = "amount", required = true },
//!   { name = "category", from = "category", lowercase = true },
//! ]
//! outputs = ["approver", "note"]
//! rules = [
//!   ["[0..500)",   "-",                      "auto",            "under the limit"],
//!   [">= 500",     "-",                      "role:manager",    "manager band"],
//!   ["-",          "it, software, hardware", "role:it-reviewer", "IT review"],
//! ]
//! ```
//!
//! The host checks the table when it loads the tenant (an error names the rule and the column)
//! and passes it to the plugin as the configuration value `table`, as JSON. The format is
//! `flowgate_tables`'s: hit policies `first`, `unique` and `collect`, DMN-style cells.

use flowgate_plugin_sdk::{
    ApprovalDecision, ApprovalPolicy, ApprovalRequest, ApprovalRequirement, ApprovalStage,
    PluginError, RouteDecision, RouteRequest, Router, StageOrder, config, log,
};
use flowgate_tables::{
    Approval, Approver, Decimal, EvalError, Fact, Facts, Requirement, Route, Source, Table,
    TableSpec, Value,
};

/// The exported plugin.
pub struct DecisionTable;

flowgate_plugin_sdk::export!(DecisionTable: router, approval_policy);

/// The configuration key the host puts the checked table under.
pub const TABLE_KEY: &str = "table";

/// The tenant's table, checked again (the host checked it already; this plugin may also run with
/// settings the host did not write, e.g. `flowgate plugin eval --config`).
fn table() -> Result<Table, PluginError> {
    let Some(json) = config::get(TABLE_KEY) else {
        return Err(PluginError::Permanent(format!(
            "no decision table configured: give this plugin a `[plugins.<name>.table]` in tenant.toml (or the configuration value `{TABLE_KEY}` as JSON)"
        )));
    };
    let spec: TableSpec = serde_json::from_str(&json).map_err(|e| {
        PluginError::Permanent(format!("configuration `{TABLE_KEY}` is not a table: {e}"))
    })?;
    Table::compile(&spec).map_err(|e| PluginError::Permanent(format!("decision table: {e}")))
}

fn plugin_error(error: EvalError) -> PluginError {
    match error {
        EvalError::InvalidInput(m) => PluginError::InvalidInput(m),
        EvalError::Table(m) => PluginError::Permanent(format!("decision table: {m}")),
    }
}

/// The instance data, parsed once per call.
fn data(text: &str) -> Result<serde_json::Value, PluginError> {
    serde_json::from_str(text)
        .map_err(|e| PluginError::InvalidInput(format!("instance data: not JSON: {e}")))
}

fn pointer(data: &serde_json::Value, pointer: &str) -> Result<Value, Fact> {
    data.pointer(pointer).map_or(Ok(Value::Missing), |v| {
        Value::from_json(v).map_err(Fact::Invalid)
    })
}

struct Approving<'a> {
    request: &'a ApprovalRequest,
    data: serde_json::Value,
}

impl Facts for Approving<'_> {
    fn value(&self, source: &Source) -> Result<Value, Fact> {
        let text = |s: &str| Ok(Value::Text(s.to_string()));
        match source {
            Source::Amount => Ok(self.request.amount.as_ref().map_or(Value::Missing, |m| {
                Value::Number(Decimal::new(m.minor_units, m.minor_unit_exponent()))
            })),
            Source::Currency => Ok(self
                .request
                .amount
                .as_ref()
                .map_or(Value::Missing, |m| Value::Text(m.currency.clone()))),
            Source::Category => text(&self.request.category),
            Source::Requester => text(&self.request.requester),
            Source::Step => text(&self.request.context.step_id),
            Source::Definition => text(&self.request.context.definition_id),
            Source::Data(p) => pointer(&self.data, p),
            Source::Candidates => Err(Fact::Unavailable),
        }
    }
}

struct Routing<'a> {
    request: &'a RouteRequest,
    data: serde_json::Value,
}

impl Facts for Routing<'_> {
    fn value(&self, source: &Source) -> Result<Value, Fact> {
        let text = |s: &str| Ok(Value::Text(s.to_string()));
        match source {
            Source::Candidates => Ok(Value::List(
                self.request
                    .candidates
                    .iter()
                    .map(|c| Value::Text(c.clone()))
                    .collect(),
            )),
            Source::Step => text(&self.request.context.step_id),
            Source::Definition => text(&self.request.context.definition_id),
            Source::Data(p) => pointer(&self.data, p),
            Source::Amount | Source::Currency | Source::Category | Source::Requester => {
                Err(Fact::Unavailable)
            }
        }
    }
}

impl ApprovalPolicy for DecisionTable {
    fn evaluate(request: ApprovalRequest) -> Result<ApprovalDecision, PluginError> {
        let table = table()?;
        let facts = Approving {
            data: data(&request.context.data)?,
            request: &request,
        };
        let Approval {
            requirement,
            reason,
        } = table.approve(&facts).map_err(plugin_error)?;
        let requirement = match requirement {
            Requirement::Auto => ApprovalRequirement::AutoApprove,
            Requirement::Stages(order, stages) => ApprovalRequirement::Stages((
                match order {
                    flowgate_tables::StageOrder::Parallel => StageOrder::Parallel,
                    flowgate_tables::StageOrder::Sequential => StageOrder::Sequential,
                },
                stages
                    .into_iter()
                    .map(|stage| {
                        ApprovalStage::quorum(
                            stage.name,
                            stage
                                .approvers
                                .into_iter()
                                .map(|a| match a {
                                    Approver::Role(r) => flowgate_plugin_sdk::Approver::Role(r),
                                    Approver::Person(p) => flowgate_plugin_sdk::Approver::Person(p),
                                })
                                .collect(),
                            stage.required,
                        )
                    })
                    .collect(),
            )),
        };
        log::info("decision table evaluated", &[("reason", &reason)]);
        Ok(ApprovalDecision {
            requirement,
            reason,
        })
    }
}

impl Router for DecisionTable {
    fn route(request: RouteRequest) -> Result<RouteDecision, PluginError> {
        let table = table()?;
        let facts = Routing {
            data: data(&request.context.data)?,
            request: &request,
        };
        let Route { next, reason } = table
            .route(&facts, &request.candidates)
            .map_err(plugin_error)?;
        log::info("decision table evaluated", &[("reason", &reason)]);
        Ok(RouteDecision { next, reason })
    }
}

// Amounts in tests are written dollars_cents (`499_99` is 499.99 USD).
#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use flowgate_plugin_sdk::serde_json::json;
    use flowgate_plugin_sdk::testing::{approval_request, route_request, usd, with_config};

    const PURCHASE: &str = r#"{
        "hit": "collect",
        "inputs": [
            {"name": "amount", "from": "amount", "required": true},
            {"name": "category", "from": "category", "lowercase": true},
            {"name": "rush", "from": "/rush"}
        ],
        "outputs": ["approver", "note"],
        "rules": [
            ["[0..500)", "-", "-", "auto", "under the limit"],
            [">= 500", "-", "-", "role:manager", "manager band"],
            ["-", "it, software", "-", "role:it-reviewer", "IT review"],
            ["-", "-", "true", "person:dora", "rush orders"]
        ]
    }"#;

    fn approvers(cents: i64, category: &str) -> Result<Vec<String>, PluginError> {
        with_config(&[(TABLE_KEY, PURCHASE)], || {
            DecisionTable::evaluate(approval_request(usd(cents), category)).map(|d| d.approvers())
        })
    }

    #[test]
    fn the_table_decides_approvals_in_exact_amounts() {
        assert_eq!(approvers(499_99, "office"), Ok(vec![]));
        assert_eq!(approvers(500_00, "office"), Ok(vec!["role:manager".into()]));
        assert_eq!(
            approvers(10_00, "Software"),
            Ok(vec!["role:it-reviewer".into()])
        );
    }

    #[test]
    fn instance_data_is_an_input_too() {
        let mut request = approval_request(usd(10_00), "office");
        request.context.data = json!({"rush": true}).to_string();
        let decided = with_config(&[(TABLE_KEY, PURCHASE)], || {
            DecisionTable::evaluate(request).map(|d| (d.approvers(), d.reason))
        });
        assert_eq!(
            decided,
            Ok((
                vec!["person:dora".to_string()],
                "amount = 10, category = office, rush = true: rule 1 (under the limit); rule 4 (rush orders)".to_string()
            ))
        );
    }

    #[test]
    fn routing_with_an_approval_table_is_a_permanent_error() {
        let routed = with_config(&[(TABLE_KEY, PURCHASE)], || {
            DecisionTable::route(route_request(json!({}), &["a"]))
        });
        assert!(
            matches!(&routed, Err(PluginError::Permanent(m)) if m.contains("no `next` column")),
            "{routed:?}"
        );
    }

    #[test]
    fn a_missing_or_broken_table_is_a_permanent_error() {
        let missing = DecisionTable::route(route_request(json!({}), &["a"]));
        assert!(
            matches!(&missing, Err(PluginError::Permanent(m)) if m.contains("no decision table configured")),
            "{missing:?}"
        );
        let broken = with_config(&[(TABLE_KEY, r#"{"hit": "first"}"#)], || {
            DecisionTable::route(route_request(json!({}), &["a"]))
        });
        assert!(
            matches!(&broken, Err(PluginError::Permanent(m)) if m.contains("missing field `inputs`")),
            "{broken:?}"
        );
    }

    #[test]
    fn bad_input_is_invalid_input_naming_the_field() {
        let mut request = approval_request(usd(10_00), "office");
        request.amount = None;
        let refused = with_config(&[(TABLE_KEY, PURCHASE)], || {
            DecisionTable::evaluate(request)
        });
        assert!(
            matches!(&refused, Err(PluginError::InvalidInput(m)) if m.starts_with("amount:")),
            "{refused:?}"
        );
    }
}
