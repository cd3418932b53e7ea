//! Fan-out: a sub-workflow step that starts one instance per element of a list and joins them
//! (all, any, N of M), cancelling those it no longer waits for.

use flowgate_engine::definition::{EndOutcome, Format, parse};
use flowgate_engine::{Applied, Command, Effect, Resolution, Wait};
use serde_json::{Value, json};

use crate::env::*;

/// Asks each supplier in `suppliers` for a quote on `part`, joined by `join`.
fn quotes(join: &str) -> String {
    format!(
        r#"
id = "supplier-quotes"
start = "quotes"
[[steps]]
id = "quotes"
kind = "subworkflow"
workflow = "quote-request"
for_each = "request.suppliers"
item = "supplier"
input = ["part"]
output = "quotes"
{join}
next = "choose"
on = {{ rejected = "none", cancelled = "none" }}
[[steps]]
id = "choose"
kind = "task"
role = "procurement"
next = "done"
[[steps]]
id = "none"
kind = "end"
outcome = "rejected"
[[steps]]
id = "done"
kind = "end"
"#
    )
}

const SUPPLIERS: [&str; 3] = ["acme", "globex", "initech"];

fn asked(join: &str) -> (Env, Applied) {
    Env::start(
        &quotes(join),
        json!({"part": "valve", "request": {"suppliers": SUPPLIERS}}),
    )
}

/// The token and activation of the step's `StartChildren`, and the data each child starts with.
fn children(applied: &Applied) -> (u64, u64, Vec<Value>) {
    applied
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::StartChildren {
                token,
                activation,
                children,
                ..
            } => Some((
                *token,
                *activation,
                children.iter().cloned().map(Value::Object).collect(),
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fan-out: {:?}", effects(applied)))
}

fn finished(token: u64, activation: u64, index: u32, outcome: EndOutcome, price: u32) -> Command {
    Command::ChildFinished {
        token,
        activation,
        child: format!("c{index}"),
        outcome,
        data: object(json!({"price": price})),
        index: Some(index),
    }
}

#[test]
fn each_element_starts_an_instance_with_its_item_and_a_join_of_all_waits_for_every_one() {
    let (mut env, started) = asked("");
    assert_eq!(
        effects(&started),
        ["start-children 3xquote-request wait=true"]
    );
    let (token, activation, data) = children(&started);
    assert_eq!(
        data,
        SUPPLIERS.map(|s| json!({"part": "valve", "supplier": s}))
    );
    env.ok(finished(token, activation, 2, EndOutcome::Completed, 30));
    env.ok(finished(token, activation, 0, EndOutcome::Completed, 10));
    // The same end told twice counts once.
    let again = env.ok(finished(token, activation, 0, EndOutcome::Completed, 10));
    assert!(again.events.is_empty(), "{:?}", events(&again));
    assert_eq!(env.at_steps(), ["quotes"]);
    let last = env.ok(finished(token, activation, 1, EndOutcome::Completed, 20));
    assert_eq!(env.at_steps(), ["choose"]);
    assert!(events(&last).contains(&"branch-joined quotes".to_string()));
    assert!(
        !effects(&last)
            .iter()
            .any(|e| e.starts_with("cancel-children")),
        "nothing left to cancel: {:?}",
        effects(&last)
    );
    assert_eq!(
        env.inst.data["quotes"],
        json!([{"price": 10}, {"price": 20}, {"price": 30}])
    );
}

#[test]
fn a_quorum_goes_on_at_n_of_m_and_cancels_the_rest() {
    let (mut env, started) = asked("join = \"quorum\"\nrequired = 2");
    let (token, activation, _) = children(&started);
    env.ok(finished(token, activation, 2, EndOutcome::Completed, 30));
    // A rejection leaves the quorum within reach: one is still running.
    env.ok(finished(token, activation, 1, EndOutcome::Rejected, 0));
    assert_eq!(env.at_steps(), ["quotes"]);
    // Where the fan-out stands is stored as the instance is: it reads back the same.
    let stored = serde_json::to_string(&env.inst).unwrap_or_else(|e| panic!("{e}"));
    let read: flowgate_engine::Instance =
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read, env.inst);
    let met = env.ok(finished(token, activation, 0, EndOutcome::Completed, 10));
    assert_eq!(env.at_steps(), ["choose"]);
    assert!(
        !effects(&met)
            .iter()
            .any(|e| e.starts_with("cancel-children")),
        "all three ended: {:?}",
        effects(&met)
    );
    assert_eq!(
        env.inst.data["quotes"],
        json!([{"price": 10}, {"price": 0}, {"price": 30}])
    );

    let (mut env, started) = asked("join = \"quorum\"\nrequired = 2");
    let (token, activation, _) = children(&started);
    env.ok(finished(token, activation, 0, EndOutcome::Completed, 10));
    let met = env.ok(finished(token, activation, 2, EndOutcome::Completed, 30));
    assert_eq!(env.at_steps(), ["choose"]);
    assert!(
        effects(&met).contains(&format!("cancel-children {token}")),
        "{:?}",
        effects(&met)
    );
    // The one not ended has no data yet.
    assert_eq!(
        env.inst.data["quotes"],
        json!([{"price": 10}, null, {"price": 30}])
    );
    // It ends cancelled afterwards: the step has moved on and it changes nothing.
    let late = env.ok(finished(token, activation, 1, EndOutcome::Cancelled, 0));
    assert!(late.events.is_empty(), "{:?}", events(&late));
}

#[test]
fn a_join_out_of_reach_goes_on_rejected_at_once() {
    let (mut env, started) = asked("join = \"quorum\"\nrequired = 2");
    let (token, activation, _) = children(&started);
    env.ok(finished(token, activation, 0, EndOutcome::Rejected, 0));
    let lost = env.ok(finished(token, activation, 1, EndOutcome::Rejected, 0));
    assert!(
        effects(&lost).contains(&format!("cancel-children {token}")),
        "{:?}",
        effects(&lost)
    );
    assert_eq!(env.inst.status.as_str(), "rejected");
    assert!(events(&lost).contains(&"instance-ended none".to_string()));
}

#[test]
fn a_join_of_any_goes_on_at_the_first_completed() {
    let (mut env, started) = asked("join = \"any\"");
    let (token, activation, _) = children(&started);
    env.ok(finished(token, activation, 1, EndOutcome::Cancelled, 0));
    assert_eq!(env.at_steps(), ["quotes"]);
    let first = env.ok(finished(token, activation, 2, EndOutcome::Completed, 30));
    assert_eq!(env.at_steps(), ["choose"]);
    assert!(effects(&first).contains(&format!("cancel-children {token}")));
}

#[test]
fn a_list_that_cannot_be_fanned_out_is_an_incident_to_retry() {
    let cases = [
        (json!({"part": "valve"}), "has no `request.suppliers`"),
        (
            json!({"request": {"suppliers": "acme"}}),
            "must be a list to start one `quote-request` per element, got text",
        ),
        (
            json!({"request": {"suppliers": vec!["s"; 201]}}),
            "has 201 elements; a fan-out starts at most 200",
        ),
        (
            json!({"request": {"suppliers": ["acme"]}}),
            "has 1 elements, and the join needs 2 to complete",
        ),
    ];
    for (data, message) in cases {
        let (mut env, started) = Env::start(&quotes("join = \"quorum\"\nrequired = 2"), data);
        assert!(
            !effects(&started)
                .iter()
                .any(|e| e.starts_with("start-children")),
            "{message}: {:?}",
            effects(&started)
        );
        let (token, incident) = env
            .inst
            .tokens
            .iter()
            .find_map(|(id, t)| match &t.wait {
                Wait::Incident(i) => Some((*id, i.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{message}: no incident"));
        assert!(incident.error.contains(message), "{}", incident.error);
        // Put right, the retry fans out.
        env.inst
            .data
            .insert("request".into(), json!({"suppliers": ["acme", "globex"]}));
        let retried = env.ok(Command::ResolveIncident {
            token,
            by: "olga".into(),
            resolution: Resolution::Retry {
                plugin_version: None,
            },
            reason: "fixed the request".into(),
        });
        assert_eq!(
            effects(&retried),
            ["start-children 2xquote-request wait=true"]
        );
    }
}

#[test]
fn an_empty_list_joined_by_all_goes_on_at_once() {
    let (env, started) = Env::start(&quotes(""), json!({"request": {"suppliers": []}}));
    assert_eq!(env.at_steps(), ["choose"]);
    assert!(
        effects(&started)
            .iter()
            .all(|e| !e.starts_with("start-children"))
    );
    assert_eq!(env.inst.data["quotes"], json!([]));
}

#[test]
fn a_fan_out_that_does_not_wait_goes_on_at_once() {
    let toml = quotes("").replace("output = \"quotes\"", "wait = false");
    let (env, started) = Env::start(&toml, json!({"request": {"suppliers": SUPPLIERS}}));
    assert_eq!(env.at_steps(), ["choose"]);
    assert_eq!(
        effects(&started)[0],
        "start-children 3xquote-request wait=false"
    );
}

#[test]
fn cancelling_the_instance_cancels_the_instances_it_waits_for() {
    let (mut env, started) = asked("");
    let (token, activation, _) = children(&started);
    env.ok(finished(token, activation, 0, EndOutcome::Completed, 10));
    let cancelled = env.ok(Command::Cancel {
        by: "olga".into(),
        reason: "part discontinued".into(),
    });
    assert!(
        effects(&cancelled).contains(&format!("cancel-children {token}")),
        "{:?}",
        effects(&cancelled)
    );
    assert_eq!(env.inst.status.as_str(), "cancelled");
}

#[test]
fn a_refused_start_is_an_incident_on_the_fan_out_step() {
    let (mut env, started) = asked("");
    let (token, activation, _) = children(&started);
    env.ok(Command::StartRefused {
        token,
        activation,
        workflow: "quote-request".into(),
        error: "instance 2 of quote-request: workflow `quote-request` not found".into(),
    });
    let Wait::Incident(incident) = &env.inst.tokens[&token].wait else {
        panic!("no incident: {:?}", env.inst.tokens[&token].wait);
    };
    assert!(incident.error.contains("instance 2"), "{}", incident.error);
}

#[test]
fn fan_out_fields_are_checked_where_they_are_written() {
    struct Everything;
    impl flowgate_engine::definition::Catalog for Everything {
        fn plugin_capabilities(&self, _: &str) -> Option<Vec<flowgate_engine::Capability>> {
            None
        }
        fn has_definition(&self, _: &str) -> bool {
            true
        }
    }
    let problems = |join: &str, extra: &str| -> Vec<String> {
        let toml = quotes(join).replace("for_each = \"request.suppliers\"", extra);
        let def = parse("q.toml", &toml, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        flowgate_engine::definition::validate(&def, &Everything)
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    };
    let list = "for_each = \"request.suppliers\"";
    assert_eq!(problems("", list), Vec::<String>::new());
    let without_list = problems("join = \"any\"", "");
    assert!(
        without_list
            .iter()
            .any(|p| p.starts_with("steps[0] (quotes).join: only a fan-out")),
        "{without_list:?}"
    );
    let no_required = problems("join = \"quorum\"", list);
    assert!(
        no_required
            .iter()
            .any(|p| p.contains(".required: a quorum join needs `required`")),
        "{no_required:?}"
    );
    let zero = problems("join = \"quorum\"\nrequired = 0", list);
    assert!(
        zero.iter().any(|p| p.contains("must be at least 1")),
        "{zero:?}"
    );
    let stray = problems("join = \"all\"\nrequired = 2", list);
    assert!(
        stray
            .iter()
            .any(|p| p.contains("only a quorum join takes `required`")),
        "{stray:?}"
    );
    let no_wait = problems("wait = false", list);
    assert!(
        no_wait
            .iter()
            .any(|p| p.contains("(quotes).output: a fan-out that does not wait")),
        "{no_wait:?}"
    );
}
