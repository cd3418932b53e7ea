//! The flow between steps: parallel branches and joins (all, any, N of M), waits, sub-workflows.

use flowgate_engine::definition::EndOutcome;
use flowgate_engine::{Applied, Command, Effect, Resolution, TimerKind, Wait};
use serde_json::json;

use crate::env::*;

fn parallel(mode: &str) -> String {
    format!(
        r#"
id = "review"
start = "split"

[[steps]]
id = "split"
kind = "parallel"
branches = ["legal", "finance", "security"]
join = "joined"

[[steps]]
id = "legal"
kind = "task"
role = "legal"
next = "joined"

[[steps]]
id = "finance"
kind = "task"
role = "finance"
next = "joined"

[[steps]]
id = "security"
kind = "task"
role = "security"
next = "joined"

[[steps]]
id = "joined"
kind = "join"
{mode}
next = "sign"

[[steps]]
id = "sign"
kind = "task"
role = "ceo"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#
    )
}

#[test]
fn a_join_of_all_waits_for_every_branch() {
    let (mut env, applied) = Env::start(&parallel("mode = \"all\""), json!({}));
    assert_eq!(
        effects(&applied).len(),
        3,
        "each branch's task is announced"
    );
    assert_eq!(env.at_steps(), ["finance", "legal", "security"]);
    env.complete("legal", "lu", "legal", None);
    let second = env.complete("finance", "fi", "finance", None);
    assert_eq!(
        events(&second).last().map(String::as_str),
        Some("branch-joined joined")
    );
    assert!(env.open_tasks("sign").is_empty());
    env.complete("security", "si", "security", None);
    assert_eq!(env.at_steps(), ["sign"]);
}

#[test]
fn a_join_of_any_cancels_the_other_branches() {
    let (mut env, _) = Env::start(&parallel("mode = \"any\""), json!({}));
    let first = env.complete("finance", "fi", "finance", None);
    let cancelled: Vec<String> = events(&first)
        .into_iter()
        .filter(|e| e.starts_with("task-cancelled") || e.starts_with("branch-cancelled"))
        .collect();
    assert_eq!(cancelled.len(), 4, "{cancelled:?}");
    assert_eq!(env.at_steps(), ["sign"]);
    assert!(env.open_tasks("legal").is_empty() && env.open_tasks("security").is_empty());
}

#[test]
fn a_quorum_join_goes_on_at_n_of_m() {
    let (mut env, _) = Env::start(&parallel("mode = \"quorum\"\nrequired = 2"), json!({}));
    env.complete("security", "si", "security", None);
    assert!(env.open_tasks("sign").is_empty());
    env.complete("legal", "lu", "legal", None);
    assert_eq!(env.at_steps(), ["sign"]);
    assert!(
        env.open_tasks("finance").is_empty(),
        "the last branch is not needed"
    );
}

const WAITING: &str = r#"
id = "cooling-off"
start = "wait"

[[steps]]
id = "wait"
kind = "wait"
duration = "2h"
next = "confirm"

[[steps]]
id = "confirm"
kind = "task"
role = "sales"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn a_wait_arms_a_timer_and_its_firing_moves_on() {
    let (mut env, applied) = Env::start(WAITING, json!({}));
    assert!(
        applied.effects.is_empty(),
        "a timer is state, not an effect"
    );
    let timer = env
        .inst
        .timers
        .values()
        .next()
        .cloned()
        .unwrap_or_else(|| panic!("no timer"));
    assert_eq!(timer.due_at, T0 + 2 * 3_600_000);
    assert!(matches!(timer.kind, TimerKind::Wait { .. }));
    env.now = timer.due_at;
    let fired = env.ok(Command::TimerFired {
        timer: timer.id.clone(),
    });
    assert_eq!(
        events(&fired)[..2],
        ["step-completed wait", "step-entered confirm"]
    );
    assert_eq!(fired.events[0].actor, flowgate_engine::Actor::Timer);
    // The same timer again (a repeated delivery) changes nothing.
    assert!(env.ok(Command::TimerFired { timer: timer.id }).is_empty());
}

const PARENT: &str = r#"
id = "hire"
start = "check"

[[steps]]
id = "check"
kind = "subworkflow"
workflow = "background-check"
input = ["employee"]
output = "background"
on = { rejected = "declined" }
next = "done"

[[steps]]
id = "done"
kind = "end"

[[steps]]
id = "declined"
kind = "end"
outcome = "rejected"
"#;

#[test]
fn a_subworkflow_starts_with_its_input_and_its_outcome_picks_the_way() {
    let (mut env, applied) = Env::start(PARENT, json!({"employee": "eve", "salary": 1}));
    let Some(Effect::StartChild {
        token,
        activation,
        workflow,
        data,
        wait,
    }) = applied.effects.first().cloned()
    else {
        panic!("{:?}", effects(&applied));
    };
    assert_eq!((workflow.as_str(), wait), ("background-check", true));
    assert_eq!(serde_json::Value::Object(data), json!({"employee": "eve"}));
    // A finish for another activation (a stale child) changes nothing.
    let stale = Command::ChildFinished {
        token,
        activation: activation + 1,
        child: "c0".into(),
        outcome: EndOutcome::Completed,
        data: Default::default(),
        index: None,
    };
    assert!(env.ok(stale).is_empty());
    let finished = env.ok(Command::ChildFinished {
        token,
        activation,
        child: "c1".into(),
        outcome: EndOutcome::Rejected,
        data: object(json!({"verdict": "no"})),
        index: None,
    });
    assert!(events(&finished).contains(&"subworkflow-finished check".to_string()));
    assert_eq!(env.inst.status.as_str(), "rejected");
    assert_eq!(env.inst.data["background"], json!({"verdict": "no"}));
}

#[test]
fn a_child_tells_its_parent_when_it_ends() {
    let def = definition(
        r#"
id = "background-check"
start = "done"
[[steps]]
id = "done"
kind = "end"
"#,
    );
    let spec = flowgate_engine::StartSpec {
        id: "c1".into(),
        version: 1,
        tenant: "acme".into(),
        data: object(json!({"employee": "eve"})),
        plugins: Default::default(),
        parent: Some(flowgate_engine::ParentLink {
            instance: "i1".into(),
            token: 1,
            activation: 2,
            index: None,
        }),
        process: Some("i1".into()),
        started_by: "ann".into(),
    };
    let calendar = flowgate_engine::calendar::Calendar::default();
    let ctx = flowgate_engine::Ctx {
        def: &def,
        now: T0,
        calendar: &calendar,
    };
    let (child, applied) = flowgate_engine::start(ctx, spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(child.status.as_str(), "completed");
    assert_eq!(
        effects(&applied),
        ["notify-parent completed", "notify instance-finished"]
    );
}

const QUESTIONNAIRE: &str = r#"
id = "questionnaire"
start = "ask"
[[steps]]
id = "ask"
kind = "task"
role = "sales"
next = "complete"
[[steps]]
id = "complete"
kind = "end"
then = { workflow = "contract", data = { client = "customer.name", email = "customer.email" } }
"#;

/// The questionnaire, answered: its end step has asked for the contract workflow.
fn answered() -> (Env, Applied) {
    let (mut env, _) = Env::start(
        QUESTIONNAIRE,
        json!({"customer": {"name": "Initech", "email": "bill@initech.example"}, "notes": "x"}),
    );
    assert_eq!(env.inst.process_id(), "i1", "a root begins its own process");
    let done = env.complete("ask", "sam", "sales", None);
    (env, done)
}

/// The token the end step's start reports to, and its activation.
fn next_start(applied: &Applied) -> (u64, u64) {
    applied
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::StartNext {
                token: Some(token),
                activation: Some(activation),
                ..
            } => Some((*token, *activation)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no start of the next workflow: {:?}", effects(applied)))
}

#[test]
fn an_end_step_starts_the_next_workflow_of_the_process_with_mapped_data() {
    let (mut env, done) = answered();
    let next: Vec<_> = done
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartNext {
                workflow,
                data,
                process,
                ..
            } => Some((workflow.clone(), data.clone(), process.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(next.len(), 1, "{:?}", effects(&done));
    let (workflow, data, process) = &next[0];
    assert_eq!((workflow.as_str(), process.as_str()), ("contract", "i1"));
    assert_eq!(
        serde_json::Value::Object(data.clone()),
        json!({"client": "Initech", "email": "bill@initech.example"}),
        "only the mapped fields"
    );
    assert!(events(&done).contains(&"next-started".to_string()));
    // The case is not over until the contract workflow runs.
    assert_eq!(env.inst.status.as_str(), "running");
    let (token, activation) = next_start(&done);
    env.now += 40;
    let ran = env.ok(Command::NextStarted {
        token,
        activation,
        instance: "i2".into(),
    });
    assert_eq!(env.inst.status.as_str(), "completed");
    assert_eq!(events(&ran), ["followed-by", "instance-ended complete"]);
    assert_eq!(env.inst.ended_at, Some(T0 + 40));
    // Told twice (the driver carried the start out again): nothing changes.
    let again = env.ok(Command::NextStarted {
        token,
        activation,
        instance: "i2".into(),
    });
    assert!(again.events.is_empty());
}

#[test]
fn a_refused_next_start_is_an_incident_to_retry_or_skip() {
    let (mut env, done) = answered();
    let (token, activation) = next_start(&done);
    let refused = env.ok(Command::StartRefused {
        token,
        activation,
        workflow: "contract".into(),
        error: "workflow `contract` not found".into(),
    });
    assert_eq!(events(&refused), ["incident-raised complete"]);
    let Wait::Incident(incident) = &env.inst.tokens[&token].wait else {
        panic!("no incident: {:?}", env.inst.tokens[&token].wait);
    };
    assert_eq!(incident.source, "start");
    assert!(
        incident.error.contains("`contract` did not start"),
        "{}",
        incident.error
    );
    assert_eq!(env.inst.status.as_str(), "running");

    // Once the workflow is deployed, a retry asks for it again.
    let retried = env.ok(Command::ResolveIncident {
        token,
        by: "olga".into(),
        resolution: Resolution::Retry {
            plugin_version: None,
        },
        reason: "deployed the contract workflow".into(),
    });
    assert!(
        effects(&retried)
            .iter()
            .any(|e| e.starts_with("start-next")),
        "{:?}",
        effects(&retried)
    );
    let (token, activation) = next_start(&retried);
    env.ok(Command::StartRefused {
        token,
        activation,
        workflow: "contract".into(),
        error: "invalid data: `client` is required".into(),
    });
    // Skipping ends the case here, without the next workflow.
    let skipped = env.ok(Command::ResolveIncident {
        token,
        by: "olga".into(),
        resolution: Resolution::Skip {
            outcome: None,
            data: Default::default(),
        },
        reason: "the client signed on paper".into(),
    });
    assert_eq!(env.inst.status.as_str(), "completed");
    assert!(
        !effects(&skipped)
            .iter()
            .any(|e| e.starts_with("start-next"))
    );
    assert_eq!(
        events(&skipped).last().map(String::as_str),
        Some("instance-ended complete")
    );
}

#[test]
fn a_refused_subworkflow_is_an_incident_on_its_step() {
    let toml = r#"
id = "onboarding"
start = "check"
[[steps]]
id = "check"
kind = "subworkflow"
workflow = "background-check"
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;
    let (mut env, started) = Env::start(toml, json!({}));
    let (token, activation) = started
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::StartChild {
                token, activation, ..
            } => Some((*token, *activation)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no child: {:?}", effects(&started)));
    env.ok(Command::StartRefused {
        token,
        activation,
        workflow: "background-check".into(),
        error: "workflow `background-check` not found".into(),
    });
    assert!(matches!(env.inst.tokens[&token].wait, Wait::Incident(_)));
    let retried = env.ok(Command::ResolveIncident {
        token,
        by: "olga".into(),
        resolution: Resolution::Retry {
            plugin_version: None,
        },
        reason: "deployed it".into(),
    });
    assert!(
        effects(&retried)
            .iter()
            .any(|e| e.starts_with("start-child"))
    );
}
