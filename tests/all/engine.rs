//! The engine through its service API: concurrency, conflicts, idempotency, refusals that change
//! nothing, versioning, incidents, and durability across a restart.

use std::sync::Arc;
use std::time::Duration;

use flowgate::engine::{
    Blame, Command, CommandError, EventKind, FailureKind, Person, Resolution, Status, Wait,
};
use flowgate::plugin::{PluginId, PluginSettings};
use flowgate::service::{
    Flowgate, InboxPage, ManualClock, RecordingNotifier, ServiceError, TaskFilter,
};
use flowgate::store::{Inbox, RedbStore, Storage};
use flowgate_tests::artifacts::MISBEHAVE;
use serde_json::{Map, Value, json};

use crate::scenarios::{Harness, T0, harness};

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

async fn start(h: &Harness, workflow: &str, data: Value) -> flowgate::engine::Instance {
    let instance = h
        .flowgate
        .start(&h.tenant, workflow, obj(data), "tester", None)
        .await
        .unwrap_or_else(|e| panic!("start {workflow}: {e}"));
    h.settle().await;
    instance
}

/// The incident instance `id` of the harness's tenant stands at, if any.
/// The incident an instance stands at, with its token, if it stands at one.
fn incident_with_token(h: &Harness, id: &str) -> Option<(u64, flowgate::engine::Incident)> {
    let instance = h
        .flowgate
        .instance(&h.tenant, id)
        .unwrap_or_else(|e| panic!("{e}"));
    instance.tokens.values().find_map(|t| match &t.wait {
        Wait::Incident(i) => Some((t.id, i.clone())),
        _ => None,
    })
}

fn incident_of(h: &Harness, id: &str) -> Option<flowgate::engine::Incident> {
    incident_with_token(h, id).map(|(_, incident)| incident)
}

/// The incident an instance stands at, with its token; it must stand at one.
fn incident_at(h: &Harness, id: &str) -> (u64, flowgate::engine::Incident) {
    incident_with_token(h, id).unwrap_or_else(|| panic!("{id} has no incident"))
}

fn reviewer(n: usize) -> Person {
    Person::new(format!("reviewer-{n}"), &["reviewer"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_many_concurrent_completions_wins() {
    let h = harness().await;
    let instance = start(&h, "document-approval", json!({"author": "amos"})).await;
    let task = h.task_in("role:reviewer").unwrap_or_else(|e| panic!("{e}"));
    let attempts: Vec<_> = (0..32)
        .map(|n| {
            let flowgate = h.flowgate.clone();
            let (tenant, task) = (h.tenant.clone(), task.clone());
            tokio::spawn(async move {
                flowgate
                    .complete_task(
                        &tenant,
                        &task,
                        reviewer(n),
                        Some("approve".into()),
                        Map::new(),
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => won += 1,
            Err(ServiceError::Command(CommandError::Conflict(message))) => {
                assert!(message.contains("already completed"), "{message}");
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1);
    let history = h
        .flowgate
        .history(&h.tenant, &instance.id)
        .unwrap_or_default();
    let completions = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskCompleted { .. }))
        .count();
    assert_eq!(completions, 1);
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_changes_nothing() {
    let h = harness().await;
    let instance = start(&h, "document-approval", json!({"author": "amos"})).await;
    let task = h.task_in("role:reviewer").unwrap_or_else(|e| panic!("{e}"));
    let claimed = h.flowgate.claim_task(&h.tenant, &task, reviewer(1)).await;
    let after_claim = claimed.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after_claim.version, instance.version + 1);
    let stale = Command::CompleteTask {
        task: task.clone(),
        by: reviewer(1),
        outcome: Some("approve".into()),
        data: Map::new(),
        expected_version: Some(instance.version),
        comment: None,
    };
    let err = h
        .flowgate
        .command(&h.tenant, &instance.id, stale)
        .await
        .err();
    assert!(
        matches!(&err, Some(ServiceError::Command(CommandError::Conflict(m))) if m.contains("version")),
        "{err:?}"
    );
    let now = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now, after_claim, "a refused command changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_with_an_idempotency_key_happens_once() {
    let h = harness().await;
    let starts: Vec<_> = (0..16)
        .map(|_| {
            let flowgate = h.flowgate.clone();
            let tenant = h.tenant.clone();
            tokio::spawn(async move {
                flowgate
                    .start(
                        &tenant,
                        "document-approval",
                        obj(json!({"author": "amos"})),
                        "t",
                        Some("order-77".into()),
                    )
                    .await
                    .map(|i| i.id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for s in starts {
        ids.push(
            s.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let all = h
        .flowgate
        .instances(
            &h.tenant,
            &flowgate::store::InstanceFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap_or_default();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn unknown_ids_and_other_tenants_data_are_not_found() {
    let h = harness().await;
    let instance = start(&h, "document-approval", json!({"author": "amos"})).await;
    let task = h.task_in("role:reviewer").unwrap_or_else(|e| panic!("{e}"));
    let complete = |tenant: &str, task: &str| {
        let flowgate = h.flowgate.clone();
        let (tenant, task) = (tenant.to_string(), task.to_string());
        async move {
            flowgate
                .complete_task(
                    &tenant,
                    &task,
                    reviewer(1),
                    Some("approve".into()),
                    Map::new(),
                )
                .await
        }
    };
    // Another tenant cannot see acme's task, even with its id.
    let err = complete("globex", &task).await.err();
    assert!(
        matches!(
            &err,
            Some(ServiceError::Command(CommandError::NotFound {
                what: "instance",
                ..
            }))
        ),
        "{err:?}"
    );
    assert!(h.flowgate.instance("globex", &instance.id).is_err());
    assert!(
        h.flowgate
            .inbox("globex", &Inbox::Role("reviewer".into()), None, 10)
            .unwrap_or_default()
            .is_empty()
    );
    // Unknown ids.
    let err = complete(&h.tenant, &format!("{}.t999", instance.id))
        .await
        .err();
    assert!(
        matches!(
            &err,
            Some(ServiceError::Command(CommandError::NotFound {
                what: "task",
                ..
            }))
        ),
        "{err:?}"
    );
    let err = complete(&h.tenant, "no-such-task").await.err();
    assert!(matches!(err, Some(ServiceError::NotFound { .. })));
    let err = h
        .flowgate
        .start(&h.tenant, "no-such-workflow", Map::new(), "t", None)
        .await
        .err();
    assert!(matches!(
        err,
        Some(ServiceError::NotFound {
            what: "workflow",
            ..
        })
    ));
    // Nothing changed for acme.
    let now = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now.version, instance.version);
}

const BROKEN: &str = r#"
id = "broken"
start = "first"

[[steps]]
id = "first"
kind = "task"
role = "clerk"
next = "secnd"

[[steps]]
id = "orphan"
kind = "task"
role = "clerk"
next = "done"

[[steps]]
id = "lonely-join"
kind = "join"
next = "done"

[[steps]]
id = "check"
kind = "action"
plugin = "purchase-approval"
next = "done"

[[steps]]
id = "first"
kind = "end"

[[steps]]
id = "done"
kind = "end"
"#;

/// The problems a deploy of `source` is refused with.
async fn refused(h: &Harness, file: &str, source: &str) -> Vec<flowgate::definition::Problem> {
    let err = h.flowgate.deploy(&h.tenant, file, source).await.err();
    match err {
        Some(ServiceError::Definition(flowgate::definition::DefinitionError::Invalid {
            problems,
            ..
        })) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[tokio::test]
async fn steps_that_loop_with_no_way_to_an_end_are_refused() {
    let h = harness().await;
    let looping = r#"
id = "looping"
start = "ask"

[[steps]]
id = "ask"
kind = "task"
role = "clerk"
on = { finish = "done", review = "b" }

[[steps]]
id = "b"
kind = "task"
role = "clerk"
next = "c"

[[steps]]
id = "c"
kind = "task"
role = "clerk"
next = "b"

[[steps]]
id = "done"
kind = "end"
"#;
    let problems = refused(&h, "looping.toml", looping).await;
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["steps[1] (b)", "steps[2] (c)"], "{problems:#?}");
    assert!(
        problems[0].message.contains("no end step can be reached")
            && problems[0].message.contains("`c`"),
        "{problems:#?}"
    );
}

#[tokio::test]
async fn a_step_with_a_form_cannot_also_take_free_data() {
    let h = harness().await;
    let both = r#"
id = "both"
start = "ask"

[[steps]]
id = "ask"
kind = "task"
role = "clerk"
form = [{ name = "x", type = "text" }]
free_data = true
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;
    let problems = refused(&h, "both.toml", both).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "steps[0] (ask).free_data");
    assert_eq!(problems[0].line, Some(5), "the step's line");
}

#[tokio::test]
async fn a_broken_definition_is_refused_with_every_problem_located() {
    let h = harness().await;
    let before = h.flowgate.definitions(&h.tenant).unwrap_or_default().len();
    let problems = refused(&h, "broken.toml", BROKEN).await;
    let has = |path: &str, message: &str, line: Option<usize>| {
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(message) && p.line == line)
    };
    assert!(
        has("steps[0] (first).next", "unknown step `secnd`", Some(5)),
        "{problems:#?}"
    );
    assert!(
        has("steps[1] (orphan)", "unreachable", Some(11)),
        "{problems:#?}"
    );
    assert!(
        has("steps[2] (lonely-join)", "no parallel step", Some(17)),
        "{problems:#?}"
    );
    assert!(
        has(
            "steps[3] (check).plugin",
            "does not export the step-action capability",
            Some(22)
        ),
        "{problems:#?}"
    );
    assert!(
        has("steps[4] (first).id", "duplicate step id", Some(28)),
        "{problems:#?}"
    );
    assert_eq!(
        h.flowgate.definitions(&h.tenant).unwrap_or_default().len(),
        before,
        "nothing deployed"
    );

    let malformed = h
        .flowgate
        .deploy(&h.tenant, "bad.toml", "id = \"x\"\nstart = 5\n")
        .await
        .err();
    let message = malformed.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("bad.toml") && message.contains("line 2"),
        "{message}"
    );
}

const V1: &str = r#"
id = "pinned"
start = "one"
[[steps]]
id = "one"
kind = "task"
role = "clerk"
next = "end"
[[steps]]
id = "end"
kind = "end"
"#;

#[tokio::test]
async fn a_changed_definition_is_a_new_version_and_instances_stay_pinned() {
    let h = harness().await;
    let v1 = h
        .flowgate
        .deploy(&h.tenant, "pinned.toml", V1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((v1.stored.version, v1.new_version), (1, true));
    let again = h
        .flowgate
        .deploy(&h.tenant, "pinned.toml", V1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (again.stored.version, again.new_version),
        (1, false),
        "unchanged: same version"
    );
    let old = start(&h, "pinned", json!({})).await;

    let v2_source = V1.replace("next = \"end\"", "next = \"two\"")
        + "[[steps]]\nid = \"two\"\nkind = \"task\"\nrole = \"clerk\"\nnext = \"end\"\n";
    let v2 = h
        .flowgate
        .deploy(&h.tenant, "pinned.toml", &v2_source)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v2.stored.version, 2);
    let new = start(&h, "pinned", json!({})).await;
    assert_eq!((old.definition_version, new.definition_version), (1, 2));

    let clerk = Person::new("cat", &["clerk"]);
    for instance in [&old, &new] {
        let task = instance
            .open_tasks()
            .next()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        let done = h
            .flowgate
            .complete_task(&h.tenant, &task, clerk.clone(), None, Map::new())
            .await;
        assert!(done.is_ok(), "{done:?}");
    }
    let old = h
        .flowgate
        .instance(&h.tenant, &old.id)
        .unwrap_or_else(|e| panic!("{e}"));
    let new = h
        .flowgate
        .instance(&h.tenant, &new.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.status, Status::Completed, "v1 ends after one task");
    assert_eq!(new.status, Status::Running, "v2 has a second task");
}

fn action_workflow(action: &str, attempts: u32) -> String {
    format!(
        r#"
id = "flaky-{action}"
start = "call"
[[steps]]
id = "call"
kind = "action"
plugin = "flaky"
action = "{action}"
retry = {{ max_attempts = {attempts}, initial_backoff = "10s" }}
next = "done"
[[steps]]
id = "done"
kind = "end"
"#
    )
}

async fn with_flaky_plugin(h: &Harness) -> String {
    let wasm = crate::common::wasm(MISBEHAVE);
    let loaded = h
        .flowgate
        .plugins()
        .install(
            PluginId::new(h.tenant.clone(), "flaky"),
            &wasm,
            PluginSettings::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    loaded.sha256().to_string()
}

#[tokio::test]
async fn a_call_past_its_deadline_is_retried_as_the_hosts_condition_before_an_incident() {
    let h = harness().await;
    let settings = PluginSettings {
        limits: flowgate::plugin::PluginLimits {
            fuel: u64::MAX / 2,
            timeout: Duration::from_millis(50),
            ..Default::default()
        },
        ..PluginSettings::default()
    };
    let wasm = crate::common::wasm(MISBEHAVE);
    h.flowgate
        .plugins()
        .install(PluginId::new(h.tenant.clone(), "flaky"), &wasm, settings)
        .unwrap_or_else(|e| panic!("{e}"));
    // The step allows no retry of the plugin's own errors: these are the host's retries.
    let source = action_workflow("loop", 1);
    h.flowgate
        .deploy(&h.tenant, "flaky.toml", &source)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start(&h, "flaky-loop", json!({})).await;
    let failed = |h: &Harness| {
        h.flowgate
            .history(&h.tenant, &instance.id)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::PluginCallFailed { kind, retry_at, .. } => Some((kind, retry_at)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for (attempt, wait_ms) in [(1, 200), (2, 400), (3, 800), (4, 1_600)] {
        let so_far = failed(&h);
        assert_eq!(so_far.len(), attempt, "{so_far:?}");
        let (kind, retry_at) = so_far[attempt - 1];
        assert_eq!(kind, Some(FailureKind::Deadline));
        assert!(retry_at.is_some(), "attempt {attempt} is retried");
        let current = h.flowgate.instance(&h.tenant, &instance.id);
        assert!(current.is_ok_and(|i| !i.has_incident()));
        h.clock.advance(Duration::from_millis(wait_ms));
        h.settle().await;
    }
    let incident = incident_of(&h, &instance.id)
        .unwrap_or_else(|| panic!("an incident after five attempts: {:?}", failed(&h)));
    assert_eq!(incident.attempts, 5);
    assert_eq!(
        (incident.kind, incident.blame),
        (Some(FailureKind::Deadline), Some(Blame::Host))
    );
    // The first call ran 50 ms of CPU: the four after it ran in the long lane, below the
    // daemon's other work, and still each ended at its deadline.
    let shares = h.flowgate.plugin_shares();
    let share = shares.iter().find(|s| s.tenant == h.tenant);
    assert_eq!(share.map(|s| s.long_calls), Some(4), "{shares:?}");
}

#[tokio::test]
async fn retryable_failures_retry_with_backoff_then_become_an_incident_a_person_resolves() {
    let h = harness().await;
    let sha = with_flaky_plugin(&h).await;
    let source = action_workflow("retryable", 3);
    h.flowgate
        .deploy(&h.tenant, "flaky.toml", &source)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start(&h, "flaky-retryable", json!({})).await;

    // Attempt 1 failed at once; attempts 2 and 3 wait for their backoff (10s, then 20s).
    let failures = |h: &Harness| {
        h.flowgate
            .history(&h.tenant, &instance.id)
            .unwrap_or_default()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::PluginCallFailed { .. }))
            .count()
    };
    assert_eq!(failures(&h), 1);
    h.clock.advance(Duration::from_secs(10));
    h.settle().await;
    assert_eq!(failures(&h), 2);
    h.clock.advance(Duration::from_secs(20));
    h.settle().await;
    assert_eq!(failures(&h), 3);

    let stuck = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stuck.has_incident());
    let (token, incident) = stuck
        .tokens
        .values()
        .find_map(|t| match &t.wait {
            Wait::Incident(i) => Some((t.id, i.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no incident"));
    assert_eq!(incident.sha256.as_deref(), Some(sha.as_str()));
    assert!(
        incident.error.contains("the ledger is busy"),
        "{}",
        incident.error
    );
    assert_eq!(incident.attempts, 3);

    // Retrying fails again (the plugin always fails); skipping moves on.
    let resolve = |resolution| Command::ResolveIncident {
        token,
        by: "olga".into(),
        resolution,
        reason: "ledger fixed".into(),
    };
    h.flowgate
        .command(
            &h.tenant,
            &instance.id,
            resolve(Resolution::Retry {
                plugin_version: None,
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.settle().await;
    assert_eq!(failures(&h), 4);
    h.clock.advance(Duration::from_secs(60));
    h.settle().await;
    let skip = resolve(Resolution::Skip {
        outcome: None,
        data: Default::default(),
    });
    let done = h.flowgate.command(&h.tenant, &instance.id, skip).await;
    let done = done.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, Status::Completed);
    let history = h
        .flowgate
        .history(&h.tenant, &instance.id)
        .unwrap_or_default();
    let resolved: Vec<_> = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::IncidentResolved { .. }))
        .map(|e| e.reason.clone())
        .collect();
    assert_eq!(
        resolved,
        [
            Some("ledger fixed".to_string()),
            Some("ledger fixed".to_string())
        ]
    );
}

#[tokio::test]
async fn a_permanent_failure_is_an_incident_at_once_and_cancel_ends_it() {
    let h = harness().await;
    with_flaky_plugin(&h).await;
    h.flowgate
        .deploy(&h.tenant, "p.toml", &action_workflow("permanent", 5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start(&h, "flaky-permanent", json!({})).await;
    let stuck = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stuck.has_incident());
    let cancel = Command::Cancel {
        by: "olga".into(),
        reason: "account closed for good".into(),
    };
    let done = h
        .flowgate
        .command(&h.tenant, &instance.id, cancel)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, Status::Cancelled);
    let again = Command::Cancel {
        by: "olga".into(),
        reason: "twice".into(),
    };
    let err = h
        .flowgate
        .command(&h.tenant, &instance.id, again)
        .await
        .err();
    assert!(matches!(
        err,
        Some(ServiceError::Command(CommandError::Conflict(_)))
    ));
}

#[tokio::test]
async fn actions_get_an_idempotency_key_per_attempt() {
    let h = harness().await;
    with_flaky_plugin(&h).await;
    h.flowgate
        .deploy(&h.tenant, "k.toml", &action_workflow("echo-key", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start(&h, "flaky-echo-key", json!({})).await;
    let done = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, Status::Completed);
    let key = done
        .data
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        key.starts_with(&format!("{}/call/", instance.id)) && key.ends_with("/1"),
        "{key}"
    );
    assert_eq!(done.data.get("attempt"), Some(&json!(1)));
}

#[tokio::test]
async fn calls_in_flight_use_the_plugin_version_the_instance_is_pinned_to() {
    let h = harness().await;
    // Started, but the routing call is still in the outbox.
    let data = json!({"subject": "Refund for a double charge", "next": ["general"]});
    let old = h
        .flowgate
        .start(&h.tenant, "support-ticket", obj(data.clone()), "t", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let original = old
        .plugins
        .get("ticket-routing")
        .cloned()
        .unwrap_or_default();

    // The tenant replaces its router with another component (this one routes to `data.next`).
    let replacement = crate::common::wasm(MISBEHAVE);
    let id = PluginId::new(h.tenant.clone(), "ticket-routing");
    let new_version = h
        .flowgate
        .plugins()
        .install(id, &replacement, PluginSettings::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let new = start(&h, "support-ticket", data).await;
    assert_eq!(
        new.plugins.get("ticket-routing").map(String::as_str),
        Some(new_version.sha256())
    );

    h.settle().await;
    let routed_by = |id: &str| {
        let instance = h
            .flowgate
            .instance(&h.tenant, id)
            .unwrap_or_else(|e| panic!("{e}"));
        let roles: Vec<String> = instance
            .open_tasks()
            .filter_map(|t| t.role.clone())
            .collect();
        let history = h.flowgate.history(&h.tenant, id).unwrap_or_default();
        let sha = history.iter().find_map(|e| match (&e.kind, &e.actor) {
            (EventKind::Routed { .. }, flowgate::engine::Actor::Plugin { sha256, .. }) => {
                Some(sha256.clone())
            }
            _ => None,
        });
        (roles, sha)
    };
    // The old instance was routed by the version it was pinned to: by keywords, to billing.
    assert_eq!(
        routed_by(&old.id),
        (vec!["billing-agent".to_string()], Some(original))
    );
    // The new one by the new version, which follows `data.next`.
    assert_eq!(
        routed_by(&new.id),
        (
            vec!["support-agent".to_string()],
            Some(new_version.sha256().to_string())
        )
    );
}

#[tokio::test]
async fn acknowledged_work_and_armed_timers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("flowgate.redb");
    let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let h = crate::scenarios::harness_on(
        Arc::new(store),
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let instance = start(&h, "support-ticket", json!({"subject": "Refund please"})).await;
    let tenant = h.tenant.clone();
    drop(h);
    let reopened = crate::common::reopen(&path).await;
    let stored = reopened
        .instance(&tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.is_some_and(|i| {
        i.open_tasks()
            .any(|t| t.role.as_deref() == Some("billing-agent"))
    }));

    let registry = flowgate::plugin::PluginRegistry::new(crate::common::runtime().clone());
    let clock = Arc::new(ManualClock::new(T0));
    let notifier = Arc::new(RecordingNotifier::default());
    let flowgate = Flowgate::open(
        Arc::new(reopened),
        Arc::new(registry),
        clock.clone(),
        notifier,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    clock.advance(Duration::from_secs(9 * 3600));
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = flowgate
        .instance(&tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    let roles: Vec<_> = after.open_tasks().filter_map(|t| t.role.clone()).collect();
    assert_eq!(
        roles,
        ["support-lead"],
        "the SLA timer fired after the restart"
    );
}

#[tokio::test]
async fn inboxes_filter_by_workflow_step_due_date_and_claim_and_page_through_filters() {
    let h = harness().await;
    let clerk_steps = |id: &str, step: &str, deadline: &str| {
        format!(
            "id = \"{id}\"\nstart = \"{step}\"\n\n[[steps]]\nid = \"{step}\"\nkind = \"task\"\nrole = \"clerk\"\nnext = \"done\"\n{deadline}\n[[steps]]\nid = \"done\"\nkind = \"end\"\n"
        )
    };
    let with_deadline = "[steps.deadline]\ndue = \"1h\"\n";
    for (id, step, deadline) in [("intake", "check", with_deadline), ("filing", "file", "")] {
        let source = clerk_steps(id, step, deadline);
        let deployed = h
            .flowgate
            .deploy(&h.tenant, &format!("{id}.toml"), &source)
            .await;
        assert!(deployed.is_ok(), "{deployed:?}");
    }
    for _ in 0..3 {
        start(&h, "intake", json!({})).await;
    }
    for _ in 0..2 {
        start(&h, "filing", json!({})).await;
    }
    let clerks = Inbox::Role("clerk".into());
    let page = |filter: TaskFilter, after: Option<String>, limit: usize| {
        h.flowgate
            .inbox_page(&h.tenant, &clerks, &filter, after.as_deref(), limit)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let steps = |p: &InboxPage| p.tasks.iter().map(|t| t.step.clone()).collect::<Vec<_>>();
    let intake = TaskFilter {
        workflow: Some("intake".into()),
        ..TaskFilter::default()
    };
    assert_eq!(steps(&page(intake.clone(), None, 50)), ["check"; 3]);
    let filing = TaskFilter {
        step: Some("file".into()),
        ..TaskFilter::default()
    };
    assert_eq!(steps(&page(filing, None, 50)), ["file"; 2]);
    let due = TaskFilter {
        due_before: Some(T0 + 2 * 3_600_000),
        ..TaskFilter::default()
    };
    assert_eq!(
        page(due, None, 50).tasks.len(),
        3,
        "only intake tasks have a deadline"
    );

    // Claimed tasks drop out of an `unclaimed` inbox.
    let first = page(intake.clone(), None, 1).tasks[0].id.clone();
    let claimed = h
        .flowgate
        .claim_task(&h.tenant, &first, Person::new("cleo", &["clerk"]))
        .await;
    assert!(claimed.is_ok(), "{claimed:?}");
    let unclaimed = TaskFilter {
        unclaimed: true,
        ..TaskFilter::default()
    };
    let open = page(unclaimed, None, 50);
    assert_eq!(open.tasks.len(), 4);
    assert!(open.tasks.iter().all(|t| t.id != first));

    // Paging a filtered inbox visits each matching task once.
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let p = page(intake.clone(), after, 2);
        seen.extend(p.tasks.iter().map(|t| t.id.clone()));
        match p.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (3, 3), "{seen:?}");
}

#[tokio::test]
async fn metrics_show_how_late_the_oldest_due_timer_is() {
    let h = harness().await;
    let source = "id = \"pause\"\nstart = \"wait\"\n\n[[steps]]\nid = \"wait\"\nkind = \"wait\"\nduration = \"1h\"\nnext = \"done\"\n\n[[steps]]\nid = \"done\"\nkind = \"end\"\n";
    let deployed = h.flowgate.deploy(&h.tenant, "pause.toml", source).await;
    assert!(deployed.is_ok(), "{deployed:?}");
    start(&h, "pause", json!({})).await;
    let gauge = |text: &str| {
        let line = format!(
            "flowgate_timers_overdue_seconds{{tenant=\"{}\"}} ",
            h.tenant
        );
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let text = h.flowgate.render_metrics().unwrap_or_default();
    assert_eq!(gauge(&text), Some(0.0), "nothing due yet");
    // 90 minutes later, with the driver not run, the timer is 30 minutes late.
    h.clock.advance(Duration::from_secs(90 * 60));
    let text = h.flowgate.render_metrics().unwrap_or_default();
    assert_eq!(gauge(&text), Some(1800.0), "{text}");
    assert!(text.contains(&format!("flowgate_timers_due{{tenant=\"{}\"}} 1", h.tenant)));
    h.settle().await;
    let text = h.flowgate.render_metrics().unwrap_or_default();
    assert_eq!(gauge(&text), Some(0.0), "fired");
}

/// The quote-request instances of `parent`'s fan-out, in element order.
fn quote_requests(h: &Harness, parent: &str) -> Vec<flowgate::engine::Instance> {
    let filter = flowgate::store::InstanceFilter {
        definition: Some("quote-request".into()),
        process: Some(parent.to_string()),
        limit: 100,
        ..Default::default()
    };
    let mut children = h
        .flowgate
        .instances(&h.tenant, &filter)
        .unwrap_or_else(|e| panic!("{e}"));
    children.sort_by_key(|c| c.parent.as_ref().and_then(|p| p.index));
    children
}

#[tokio::test]
async fn cancelling_a_fan_out_cancels_the_instances_it_waits_for() {
    let h = harness().await;
    let suppliers = json!([
        {"name": "Acme Valves", "buyer": "bea"},
        {"name": "Globex Fluid", "buyer": "cal"},
        {"name": "Initech Flow", "buyer": "dan"},
    ]);
    let parent = start(
        &h,
        "supplier-quotes",
        json!({"part": "valve", "quantity": 4, "suppliers": suppliers}),
    )
    .await;
    let children = quote_requests(&h, &parent.id);
    let buyers: Vec<String> = children
        .iter()
        .map(|c| {
            c.data["supplier"]["buyer"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(buyers, ["bea", "cal", "dan"]);
    assert!(children.iter().all(|c| c.status == Status::Running));

    h.flowgate
        .cancel(
            &h.tenant,
            &parent.id,
            "pia",
            "the part was discontinued".into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.settle().await;
    for child in quote_requests(&h, &parent.id) {
        assert_eq!(child.status, Status::Cancelled, "{}", child.id);
        assert!(
            child
                .tasks
                .values()
                .all(|t| t.status != flowgate::engine::TaskStatus::Open)
        );
        let history = h
            .flowgate
            .history(&h.tenant, &child.id)
            .unwrap_or_else(|e| panic!("{e}"));
        let last = history.last().map(|e| e.reason.clone());
        assert_eq!(
            last,
            Some(Some("the step that waits for it was cancelled".to_string())),
            "{}",
            child.id
        );
    }
}

#[tokio::test]
async fn a_fan_out_start_refused_midway_withdraws_those_started_and_is_an_incident() {
    let h = harness().await;
    let child = r#"
id = "check-one"
start = "check"
start_form = [
  { name = "item", type = "text", required = true },
  { name = "batch", type = "text" },
]
[[steps]]
id = "check"
kind = "task"
role = "clerk"
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;
    let parent = r#"
id = "check-all"
start = "checks"
[[steps]]
id = "checks"
kind = "subworkflow"
workflow = "check-one"
for_each = "items"
input = ["batch"]
next = "done"
[[steps]]
id = "done"
kind = "end"
"#;
    for (file, source) in [("c.toml", child), ("p.toml", parent)] {
        h.flowgate
            .deploy(&h.tenant, file, source)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let instance = start(
        &h,
        "check-all",
        json!({"batch": "b1", "items": ["a", "b", 7]}),
    )
    .await;
    let incident = incident_of(&h, &instance.id).unwrap_or_else(|| panic!("no incident"));
    assert!(
        incident.error.contains("instance 3 of check-one") && incident.error.contains("item"),
        "{}",
        incident.error
    );
    let filter = flowgate::store::InstanceFilter {
        definition: Some("check-one".into()),
        limit: 100,
        ..Default::default()
    };
    let started = h
        .flowgate
        .instances(&h.tenant, &filter)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.len(), 2, "the first two started");
    assert!(
        started.iter().all(|c| c.status == Status::Cancelled),
        "{:?}",
        started.iter().map(|c| c.status).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_incident_retried_on_the_fixed_current_version_runs_it_and_the_history_says_so() {
    let h = harness().await;
    let broken = with_flaky_plugin(&h).await;
    h.flowgate
        .deploy(&h.tenant, "p.toml", &action_workflow("permanent", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instance = start(&h, "flaky-permanent", json!({})).await;
    let (token, _) = incident_at(&h, &instance.id);

    // The author uploads a version that works (here: one that answers every action).
    let fixed = h
        .flowgate
        .plugins()
        .install(
            PluginId::new(h.tenant.clone(), "flaky"),
            &crate::common::wasm(flowgate_tests::artifacts::CLOCK_READER),
            PluginSettings {
                grants: flowgate::plugin::Grants {
                    clocks: true,
                    ..Default::default()
                },
                ..PluginSettings::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .sha256()
        .to_string();
    assert_ne!(fixed, broken);

    // A plain retry runs the version the instance is pinned to, and fails again.
    let retry = Command::ResolveIncident {
        token,
        by: "olga".into(),
        resolution: Resolution::Retry {
            plugin_version: None,
        },
        reason: "try again".into(),
    };
    h.flowgate
        .command(&h.tenant, &instance.id, retry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.settle().await;
    let (token, again) = incident_at(&h, &instance.id);
    assert_eq!(again.sha256.as_deref(), Some(broken.as_str()));

    // On the current version, the step runs on the fixed plugin, and the instance stays on it.
    let done = h
        .flowgate
        .retry_on_current(
            &h.tenant,
            &instance.id,
            token,
            "olga",
            "fixed in 1.0.1".into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.plugins.get("flaky"), Some(&fixed));
    h.settle().await;
    let ended = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended.status, Status::Completed);
    assert!(ended.data.contains_key("now_secs"), "{:?}", ended.data);
    let history = h
        .flowgate
        .history(&h.tenant, &instance.id)
        .unwrap_or_default();
    let repinned: Vec<_> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PluginRepinned {
                plugin, from, to, ..
            } => Some((plugin.clone(), from.clone(), to.clone(), e.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        repinned,
        [(
            "flaky".to_string(),
            Some(broken),
            fixed,
            Some("fixed in 1.0.1".to_string())
        )]
    );

    // The incident is resolved: another retry finds none.
    let refused = h
        .flowgate
        .retry_on_current(&h.tenant, &instance.id, token, "olga", "again".into())
        .await;
    assert!(
        matches!(refused, Err(ServiceError::NotFound { .. })),
        "{refused:?}"
    );
}
