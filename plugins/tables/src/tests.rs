use serde_json::json;

use super::*;

/// Facts from a JSON object of the request's fields, with `data` as the instance data.
struct Json(serde_json::Value);

impl Facts for Json {
    fn value(&self, source: &Source) -> Result<Value, Fact> {
        let found = match source {
            Source::Data(pointer) => self.0["data"].pointer(pointer),
            other => self.0.get(other.to_string()),
        };
        match found {
            None if matches!(source, Source::Data(_)) => Ok(Value::Missing),
            None => Err(Fact::Unavailable),
            Some(v) => Value::from_json(v).map_err(Fact::Invalid),
        }
    }
}

fn table(spec: serde_json::Value) -> Table {
    let spec: TableSpec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => panic!("spec: {e}"),
    };
    match Table::compile(&spec) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn error(spec: serde_json::Value) -> String {
    let spec: TableSpec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => return format!("spec: {e}"),
    };
    match Table::compile(&spec) {
        Ok(_) => "compiled".to_string(),
        Err(e) => e.to_string(),
    }
}

fn purchase() -> Table {
    table(json!({
        "hit": "collect",
        "inputs": [
            {"name": "amount", "from": "amount", "required": true},
            {"name": "category", "from": "category", "lowercase": true},
        ],
        "outputs": ["approver", "stage", "reject", "note"],
        "rules": [
            ["< 0", "-", "", "", "amount: must not be negative", ""],
            ["[0..500)", "-", "auto", "", "", "under the auto-approval limit"],
            ["[500..5000)", "-", "role:manager", "manager", "", "manager band"],
            ["[5000..50000]", "-", "role:director", "director", "", "director band"],
            ["> 50000", "-", "role:cfo", "cfo", "", "over the CFO threshold"],
            ["-", "it, software, hardware", "role:it-reviewer", "it-review", "", "IT review"],
        ],
    }))
}

fn approvers(approval: &Approval) -> Vec<String> {
    match &approval.requirement {
        Requirement::Auto => vec!["auto".to_string()],
        Requirement::Stages(_, stages) => stages
            .iter()
            .flat_map(|s| &s.approvers)
            .map(|a| match a {
                Approver::Role(r) => r.clone(),
                Approver::Person(p) => format!("person:{p}"),
            })
            .collect(),
    }
}

fn approve(table: &Table, amount: serde_json::Value, category: &str) -> Vec<String> {
    match table.approve(&Json(json!({"amount": amount, "category": category}))) {
        Ok(a) => approvers(&a),
        Err(e) => vec![format!("error: {e}")],
    }
}

#[test]
fn collect_gathers_a_stage_per_matching_rule() {
    let t = purchase();
    assert_eq!(approve(&t, json!(499.99), "office"), ["auto"]);
    assert_eq!(approve(&t, json!(500), "office"), ["manager"]);
    assert_eq!(approve(&t, json!(50000), "Office"), ["director"]);
    assert_eq!(approve(&t, json!(50000.01), "office"), ["cfo"]);
    assert_eq!(approve(&t, json!(120), " IT "), ["it-reviewer"]);
    assert_eq!(
        approve(&t, json!(700), "software"),
        ["manager", "it-reviewer"]
    );
}

#[test]
fn the_reason_shows_the_inputs_and_the_rules_notes() {
    let t = purchase();
    let approval = t.approve(&Json(json!({"amount": 700, "category": "it"})));
    assert_eq!(
        approval.map(|a| a.reason),
        Ok("amount = 700, category = it: rule 3 (manager band); rule 6 (IT review)".to_string())
    );
}

#[test]
fn rejects_and_missing_required_inputs_are_invalid_input() {
    let t = purchase();
    let rejected = t.approve(&Json(json!({"amount": -5, "category": "office"})));
    assert!(
        matches!(&rejected, Err(EvalError::InvalidInput(m)) if m.starts_with("amount: must not be negative (rule 1")),
        "{rejected:?}"
    );
    let missing = t.approve(&Json(json!({"amount": null, "category": "office"})));
    assert!(
        matches!(&missing, Err(EvalError::InvalidInput(m)) if m.contains("needs `amount`")),
        "{missing:?}"
    );
    let wrong = t.approve(&Json(json!({"amount": 5, "category": 7})));
    assert!(
        matches!(&wrong, Err(EvalError::InvalidInput(m)) if m.contains("category: the decision table compares text here, got `7`")),
        "{wrong:?}"
    );
}

fn tickets() -> Table {
    table(json!({
        "hit": "first",
        "inputs": [
            {"name": "safety", "from": ["/subject", "/body"], "words": ["injury", "fire", "smoke"], "required": true},
            {"name": "tier", "from": "/customer/tier", "lowercase": true},
            {"name": "offered", "from": "candidates"},
            {"name": "billing", "from": ["/subject", "/body"], "words": ["invoice", "refund", "charged"]},
            {"name": "technical", "from": ["/subject", "/body"], "words": ["error", "login", "crash"]},
        ],
        "outputs": ["next"],
        "rules": [
            ["> 0", "-", "-", "-", "-", "escalation"],
            ["-", "platinum, enterprise", "priority", "-", "-", "priority"],
            ["-", "-", "-", "> 0", "<= billing", "billing"],
            ["-", "-", "-", "-", "> 0", "technical"],
            ["-", "-", "-", "-", "-", "general"],
        ],
    }))
}

fn route(table: &Table, data: serde_json::Value, candidates: &[&str]) -> String {
    let candidates: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
    let facts = Json(json!({"data": data, "candidates": candidates}));
    match table.route(&facts, &candidates) {
        Ok(r) => r.next.join(","),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn words_lists_and_references_route_tickets() {
    let t = tickets();
    let all = ["billing", "technical", "general", "priority", "escalation"];
    let without_priority = ["billing", "technical", "general", "escalation"];
    let gold = json!({"tier": "gold"});
    let cases = [
        (
            json!({"subject": "Refund", "body": "charged twice", "customer": gold}),
            "billing",
        ),
        (
            json!({"subject": "Refund", "body": "login error crash"}),
            "technical",
        ),
        (json!({"subject": "Refund", "body": "login"}), "billing"),
        (json!({"subject": "Hello"}), "general"),
        (
            json!({"subject": "Smoke!", "customer": {"tier": "Platinum"}}),
            "escalation",
        ),
        (
            json!({"subject": "login", "customer": {"tier": "Platinum"}}),
            "priority",
        ),
    ];
    for (data, expected) in cases {
        assert_eq!(route(&t, data.clone(), &all), expected, "{data}");
    }
    let platinum = json!({"subject": "login", "customer": {"tier": "platinum"}});
    assert_eq!(route(&t, platinum, &without_priority), "technical");
    assert!(route(&t, json!({"subject": " "}), &all).contains("needs `safety`"));
    assert!(route(&t, json!({"subject": 5}), &all).contains("/subject: expected text"));
}

#[test]
fn hit_policies() {
    let spec = |hit: &str| {
        json!({
            "hit": hit,
            "inputs": [{"name": "n", "from": "/n"}],
            "outputs": ["next"],
            "rules": [["> 1", "a"], ["> 2", "b"], ["> 2", "a"]],
        })
    };
    let all = ["a", "b"];
    assert_eq!(route(&table(spec("first")), json!({"n": 3}), &all), "a");
    assert_eq!(route(&table(spec("collect")), json!({"n": 3}), &all), "a,b");
    assert!(
        route(&table(spec("unique")), json!({"n": 3}), &all).contains("rules 1, 2, 3 all match")
    );
    assert!(route(&table(spec("first")), json!({"n": 0}), &all).contains("no rule matched n = 0"));
    assert!(route(&table(spec("first")), json!({"n": 3}), &["b"]).contains("does not offer"));
}

#[test]
fn a_router_table_cannot_approve_and_the_reverse() {
    let t = tickets();
    assert!(matches!(
        t.approve(&Json(json!({"data": {}}))),
        Err(EvalError::Table(m)) if m.contains("no `approver` column")
    ));
    let facts = Json(json!({"data": {}}));
    assert!(matches!(
        purchase().route(&facts, &[]),
        Err(EvalError::Table(m)) if m.contains("no `next` column")
    ));
    let routing_amount = table(json!({
        "hit": "first",
        "inputs": [{"name": "amount", "from": "amount"}],
        "outputs": ["next"],
        "rules": [["-", "a"]],
    }));
    assert!(matches!(
        routing_amount.route(&facts, &["a".to_string()]),
        Err(EvalError::Table(m)) if m.contains("reads `amount`")
    ));
}

#[test]
fn approvers_quorums_and_sequential_order() {
    let t = table(json!({
        "hit": "collect",
        "order": "sequential",
        "inputs": [{"name": "amount", "from": "amount"}],
        "outputs": ["approver", "required"],
        "rules": [
            ["-", "person:dora, person:ian, role:cfo", "2"],
            [">= 10", "role:board", ""],
        ],
    }));
    let approval = t.approve(&Json(json!({"amount": 10})));
    let Ok(Approval {
        requirement: Requirement::Stages(order, stages),
        ..
    }) = approval
    else {
        panic!("{approval:?}");
    };
    assert_eq!(order, StageOrder::Sequential);
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name, "dora");
    assert_eq!(stages[0].required, 2);
    assert_eq!(
        stages[1].approvers,
        vec![Approver::Role("board".to_string())]
    );
}

#[test]
fn errors_name_the_rule_and_the_column() {
    let base = |rules: serde_json::Value| {
        json!({
            "hit": "first",
            "inputs": [
                {"name": "amount", "from": "amount"},
                {"name": "category", "from": "category", "lowercase": true},
            ],
            "outputs": ["approver", "required"],
            "rules": rules,
        })
    };
    let cases = [
        (
            json!([["[500..50", "-", "auto", ""]]),
            "rule 1, column `amount`: `[500..50` is not a range",
        ),
        (
            json!([["-", "-", "auto", ""], ["\"x\"", "-", "auto", ""]]),
            "rule 2, column `amount`: `x` is text, but this column compares a number",
        ),
        (
            json!([["-", "IT", "auto", ""]]),
            "rule 1, column `category`: `IT` has capitals",
        ),
        (
            json!([["-", "-", "manager", ""]]),
            "rule 1, column `approver`: `manager` is not an approver",
        ),
        (
            json!([["-", "-", "role:a, role:b", "3"]]),
            "rule 1, column `required`: `3` is not a number from 1 to 2",
        ),
        (
            json!([["-", "-", "auto", "1"]]),
            "rule 1, column `required`: set, but the approver is `auto`",
        ),
        (
            json!([["-", "-", "auto"]]),
            "rule 1: 3 cells, but the table has 2 inputs and 2 outputs (4 columns)",
        ),
        (
            json!([["-", "-", "", ""]]),
            "rule 1: the rule decides nothing: set `approver`",
        ),
        (json!([]), "rules: a table needs at least one rule"),
    ];
    for (rules, expected) in cases {
        let found = error(base(rules.clone()));
        assert!(
            found.starts_with(expected),
            "{rules}\n  got: {found}\n want: {expected}"
        );
    }
    let spec_errors = [
        (
            json!({"hit": "first", "inputs": [{"name": "x", "from": "nowhere"}], "outputs": ["next"], "rules": [["-", "a"]]}),
            "input `x`: `from = \"nowhere\"` is neither",
        ),
        (
            json!({"hit": "first", "inputs": [{"name": "x", "from": "/x"}], "outputs": ["go"], "rules": [["-", "a"]]}),
            "output `go`: unknown",
        ),
        (
            json!({"hit": "first", "inputs": [{"name": "x", "from": "/x"}], "outputs": ["note"], "rules": [["-", "a"]]}),
            "outputs: a table needs `next`",
        ),
        (
            json!({"hit": "first", "inputs": [{"name": "x", "from": ["/x", "/y"]}], "outputs": ["next"], "rules": [["-", "a"]]}),
            "input `x`: several sources",
        ),
        (
            json!({"hit": "first", "inputs": [{"name": "x", "from": "/x"}, {"name": "y", "from": "category"}], "outputs": ["next"], "rules": [["> y", "-", "a"]]}),
            "rule 1, column `x`: compares with `y`, which holds text",
        ),
        (
            json!({"hit": "most", "inputs": [], "outputs": [], "rules": []}),
            "spec: unknown variant `most`",
        ),
    ];
    for (spec, expected) in spec_errors {
        let found = error(spec.clone());
        assert!(
            found.starts_with(expected),
            "{spec}\n  got: {found}\n want: {expected}"
        );
    }
}

#[cfg(feature = "csv")]
#[test]
fn rules_from_csv_name_their_lines() {
    let mut spec: TableSpec = match serde_json::from_value(json!({
        "hit": "first",
        "inputs": [{"name": "category", "from": "category"}],
        "outputs": ["next", "note"],
        "rules_file": "routes.csv",
    })) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let csv = "category,next,note\n\"it, software\",it-desk,\"IT, of course\"\n-,general,\n";
    assert_eq!(
        spec.clone().read_csv_rules(csv, "routes.csv").map(drop),
        Ok(())
    );
    let mut good = spec.clone();
    let _ = good.read_csv_rules(csv, "routes.csv");
    assert_eq!(good.rules[0], ["it, software", "it-desk", "IT, of course"]);
    assert!(Table::compile(&good).is_ok());

    let bad_header = spec.clone().read_csv_rules("cat,next,note\n", "routes.csv");
    assert!(
        bad_header.as_ref().is_err_and(|e| e
            .to_string()
            .starts_with("routes.csv line 1: the header names")),
        "{bad_header:?}"
    );
    let _ = spec.read_csv_rules("category,next,note\n-,general,\n<,x,\n", "routes.csv");
    let found = Table::compile(&spec)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        found.starts_with("rule 2 (routes.csv line 3), column `category`: `<` needs a value"),
        "{found}"
    );
}
