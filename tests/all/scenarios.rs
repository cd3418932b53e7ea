//! End-to-end scenarios, as data: each file in `tests/scenarios/` starts a workflow of the example
//! tenant (`examples/acme`, with its real plugins) on a redb store, plays people's acts and the
//! passing of time, and checks what a user would see: open tasks, data, notifications, the path
//! taken and the final status.

use flowgate::engine::time;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowgate::engine::{Command, EventKind, Instance, Person};
use flowgate::plugin::PluginRegistry;
use flowgate::service::{Flowgate, ManualClock, RecordingNotifier, ServiceError};
use flowgate::store::{Inbox, RedbStore};
use flowgate::tenant::TenantConfig;
use serde::Deserialize;
use serde_json::{Map, Value};

/// 2026-01-05T09:00:00Z, a Monday.
pub const T0: u64 = 1_767_603_600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    workflow: String,
    #[serde(default = "default_starter")]
    started_by: String,
    #[serde(default)]
    data: Map<String, Value>,
    /// When the instance starts (RFC 3339 with its offset); by default [`T0`].
    starts_at: Option<String>,
    #[serde(default)]
    act: Vec<Act>,
    expect: Expect,
}

fn default_starter() -> String {
    "starter".to_string()
}

/// One thing that happens; exactly one of the action fields is set, plus optional checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Act {
    /// Complete the one open task in this inbox (`role:x` or `person:x`).
    complete: Option<String>,
    /// Claim the one open task in this inbox.
    claim: Option<String>,
    by: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    outcome: Option<String>,
    #[serde(default)]
    data: Map<String, Value>,
    /// Let this much time pass (`2h`), firing what comes due.
    wait: Option<String>,
    /// Cancel the instance with this reason.
    cancel: Option<String>,
    /// Pause the instance with this reason.
    pause: Option<String>,
    /// Resume the instance with this reason.
    resume: Option<String>,
    /// Send a message from another system.
    message: Option<SendAct>,
    /// Deploy this definition source (a new version of a workflow).
    deploy: Option<String>,
    /// Migrate the instance to another version of its workflow.
    migrate: Option<MigrateAct>,
    /// The act must fail with a message containing this.
    error: Option<String>,
    /// After the act: the open tasks, as sorted inbox names.
    open: Option<Vec<String>>,
    /// After the act: data values at dotted paths.
    #[serde(default)]
    data_is: BTreeMap<String, Value>,
    /// After the act: the steps the instance is in, sorted.
    at: Option<Vec<String>>,
    /// After the act: whether the instance is paused.
    paused: Option<bool>,
    /// After the act: when the one open task is due (RFC 3339 with its offset).
    due: Option<String>,
    /// After the act: what became of these messages, by id (`delivered`, `held`, `dropped`...).
    #[serde(default)]
    messages: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendAct {
    id: String,
    name: String,
    correlation: String,
    #[serde(default)]
    data: Map<String, Value>,
    /// What happened to it: `delivered`, `buffered` or `started`.
    status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateAct {
    from_version: u32,
    to_version: u32,
    #[serde(default)]
    steps: BTreeMap<String, String>,
    #[serde(default)]
    dry_run: bool,
    /// The instance's problems (empty: it can move).
    #[serde(default)]
    problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: String,
    /// The steps completed, in order.
    path: Vec<String>,
    /// Notification kinds delivered at least once (`reminder`, `overdue`, ...).
    #[serde(default)]
    notified: Vec<String>,
    #[serde(default)]
    data_is: BTreeMap<String, Value>,
    /// The process instance the workflow began, and its process definition's metrics.
    process: Option<ExpectProcess>,
}

/// A case's figures, worked out by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectProcess {
    /// The process definition whose metrics (over the scenario's day) hold this one case.
    definition: String,
    /// The workflows of its instances, in the order they started.
    instances: Vec<String>,
    outcome: String,
    cycle_ms: u64,
    cycle_business_ms: u64,
    /// Each handoff's delay, in order.
    handoffs: Vec<u64>,
    /// `[workflow, step, ms]`, longest first.
    waits: Vec<(String, String, u64)>,
    cost: ExpectCost,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectCost {
    people: f64,
    steps: f64,
    total: f64,
}

pub struct Harness {
    pub flowgate: Flowgate,
    pub clock: Arc<ManualClock>,
    pub notifier: Arc<RecordingNotifier>,
    pub tenant: String,
    _dir: tempfile::TempDir,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme")
}

/// The example tenant on a fresh redb store.
pub async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = RedbStore::open(dir.path().join("flowgate.redb")).unwrap_or_else(|e| panic!("{e}"));
    harness_on(Arc::new(store), dir).await
}

pub async fn harness_on(
    store: Arc<dyn flowgate::store::Storage>,
    dir: tempfile::TempDir,
) -> Harness {
    let tenant =
        TenantConfig::load(&examples().join("tenant.toml")).unwrap_or_else(|e| panic!("{e}"));
    let registry = PluginRegistry::new(crate::common::runtime().clone());
    tenant
        .install_plugins(&registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::new(T0));
    let notifier = Arc::new(RecordingNotifier::default());
    let flowgate = Flowgate::open(store, Arc::new(registry), clock.clone(), notifier.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    flowgate.set_calendar(
        &tenant.id,
        tenant.calendar().unwrap_or_else(|e| panic!("{e}")),
    );
    flowgate.set_processes(&tenant.id, tenant.process_settings());
    tenant
        .deploy_workflows(&flowgate)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Harness {
        flowgate,
        clock,
        notifier,
        tenant: tenant.id,
        _dir: dir,
    }
}

impl Harness {
    /// The one open task of the tenant in `inbox` (`role:x` or `person:x`).
    pub fn task_in(&self, inbox: &str) -> Result<String, String> {
        let inbox = parse_inbox(inbox)?;
        let tasks = self
            .flowgate
            .inbox(&self.tenant, &inbox, None, 100)
            .map_err(|e| e.to_string())?;
        match tasks.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(format!("no open task for {inbox:?}")),
            many => Err(format!("{} open tasks for {inbox:?}", many.len())),
        }
    }

    pub async fn settle(&self) {
        self.flowgate
            .run_until_idle()
            .await
            .unwrap_or_else(|e| panic!("driver: {e}"));
    }
}

fn parse_inbox(text: &str) -> Result<Inbox, String> {
    match text.split_once(':') {
        Some(("role", r)) => Ok(Inbox::Role(r.to_string())),
        Some(("person", p)) => Ok(Inbox::Person(p.to_string())),
        _ => Err(format!("`{text}` is not role:x or person:x")),
    }
}

fn inbox_name(task: &flowgate::engine::Task) -> String {
    match (&task.assignee, &task.role) {
        (Some(p), _) => format!("person:{p}"),
        (None, Some(r)) => format!("role:{r}"),
        _ => format!("person:{}", task.candidates.join(",")),
    }
}

fn check_data(data: &Map<String, Value>, expected: &BTreeMap<String, Value>, at: &str) {
    for (path, value) in expected {
        let found = flowgate::engine::data_path(data, path);
        assert_eq!(found, Some(value), "{at}: data at `{path}`");
    }
}

async fn act(h: &Harness, instance: &str, act: &Act, at: &str) -> Result<(), String> {
    let person = || Person {
        id: act.by.clone().unwrap_or_else(|| "someone".to_string()),
        roles: act.roles.clone(),
        via: None,
    };
    let result: Result<(), ServiceError> = if let Some(inbox) = &act.complete {
        let task = h.task_in(inbox)?;
        h.flowgate
            .complete_task(
                &h.tenant,
                &task,
                person(),
                act.outcome.clone(),
                act.data.clone(),
            )
            .await
            .map(|_| ())
    } else if let Some(inbox) = &act.claim {
        let task = h.task_in(inbox)?;
        h.flowgate
            .claim_task(&h.tenant, &task, person())
            .await
            .map(|_| ())
    } else if let Some(wait) = &act.wait {
        let by = humantime::parse_duration(wait).map_err(|e| format!("{at}: {e}"))?;
        // Time passes in steps, so that each timer fires at its own moment.
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(600));
            h.clock.advance(step);
            left -= step;
            h.settle().await;
        }
        Ok(())
    } else if let Some(reason) = &act.cancel {
        let command = Command::Cancel {
            by: act.by.clone().unwrap_or_default(),
            reason: reason.clone(),
        };
        h.flowgate
            .command(&h.tenant, instance, command)
            .await
            .map(|_| ())
    } else if let Some(reason) = &act.pause {
        let by = act.by.clone().unwrap_or_default();
        h.flowgate
            .pause(&h.tenant, instance, &by, reason.clone())
            .await
            .map(|_| ())
    } else if let Some(reason) = &act.resume {
        let by = act.by.clone().unwrap_or_default();
        h.flowgate
            .resume(&h.tenant, instance, &by, Some(reason.clone()))
            .await
            .map(|_| ())
    } else if let Some(send) = &act.message {
        let message = flowgate::engine::Message {
            id: send.id.clone(),
            name: send.name.clone(),
            correlation: send.correlation.clone(),
            data: send.data.clone(),
            sent_by: act.by.clone().unwrap_or_else(|| "esign".to_string()),
            process: None,
        };
        h.flowgate
            .send_message(&h.tenant, message)
            .await
            .map(|sent| {
                let status = sent.record.status.as_str();
                assert_eq!(status, send.status, "{at}: what became of the message");
            })
    } else if let Some(source) = &act.deploy {
        h.flowgate
            .deploy(&h.tenant, "scenario.toml", source)
            .await
            .map(|_| ())
    } else if let Some(m) = &act.migrate {
        let workflow = h
            .flowgate
            .instance(&h.tenant, instance)
            .map_err(|e| e.to_string())?
            .definition_id;
        let request = flowgate::service::MigrationRequest {
            definition: workflow,
            from_version: m.from_version,
            to_version: m.to_version,
            steps: m.steps.clone(),
            plugins: BTreeMap::new(),
            instances: Some(vec![instance.to_string()]),
            dry_run: m.dry_run,
            after: None,
            by: act.by.clone().unwrap_or_default(),
            reason: "scenario".to_string(),
        };
        h.flowgate.migrate(&h.tenant, request).await.map(|report| {
            let row = &report.instances[0];
            assert_eq!(row.problems, m.problems, "{at}: migration problems");
            assert_eq!(
                row.moved,
                !m.dry_run && m.problems.is_empty(),
                "{at}: moved"
            );
        })
    } else {
        Ok(())
    };
    match (&act.error, result) {
        (None, Ok(())) => {}
        (None, Err(e)) => return Err(format!("{at}: unexpected error: {e}")),
        (Some(expected), Ok(())) => {
            return Err(format!("{at}: expected an error containing {expected:?}"));
        }
        (Some(expected), Err(e)) => {
            let message = e.to_string();
            if !message.contains(expected.as_str()) {
                return Err(format!(
                    "{at}: error {message:?} does not contain {expected:?}"
                ));
            }
        }
    }
    h.settle().await;
    let current: Instance = h
        .flowgate
        .instance(&h.tenant, instance)
        .map_err(|e| e.to_string())?;
    if let Some(open) = &act.open {
        let mut found: Vec<String> = Vec::new();
        // Open tasks across the tenant: sub-workflows' tasks count too.
        let all = h
            .flowgate
            .instances(
                &h.tenant,
                &flowgate::store::InstanceFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
        for i in &all {
            found.extend(i.open_tasks().map(inbox_name));
        }
        found.sort();
        let mut expected = open.clone();
        expected.sort();
        assert_eq!(found, expected, "{at}: open tasks");
    }
    check_data(&current.data, &act.data_is, at);
    if let Some(expected) = &act.at {
        let mut steps: Vec<String> = current.tokens.values().map(|t| t.step.clone()).collect();
        steps.sort();
        assert_eq!(&steps, expected, "{at}: steps");
    }
    if let Some(paused) = act.paused {
        assert_eq!(current.paused.is_some(), paused, "{at}: paused");
    }
    for (id, expected) in &act.messages {
        let record = h
            .flowgate
            .message(&h.tenant, id)
            .map_err(|e| format!("{at}: message {id}: {e}"))?;
        assert_eq!(record.status.as_str(), expected, "{at}: message {id}");
    }
    if let Some(due) = &act.due {
        let expected = time::parse(due).unwrap_or_else(|e| panic!("{at}: due: {e}"));
        let open: Vec<Option<u64>> = current.open_tasks().map(|t| t.due_at).collect();
        let [found] = open.as_slice() else {
            panic!("{at}: due: {} open tasks", open.len());
        };
        let shown = found.map(|f| time::format(f).to_string());
        assert_eq!(*found, Some(expected), "{at}: due {shown:?}, not {due}");
    }
    Ok(())
}

async fn run(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let scenario: Scenario =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let h = harness().await;
    if let Some(starts) = &scenario.starts_at {
        h.clock.set(
            time::parse(starts).unwrap_or_else(|e| panic!("{}: starts_at: {e}", file.display())),
        );
    }
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let instance = h
        .flowgate
        .start(
            &h.tenant,
            &scenario.workflow,
            scenario.data.clone(),
            &scenario.started_by,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    h.settle().await;
    for (i, a) in scenario.act.iter().enumerate() {
        let at = format!("{name}: act[{i}]");
        if let Err(message) = act(&h, &instance.id, a, &at).await {
            panic!("{message}");
        }
    }
    let done = h
        .flowgate
        .instance(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        done.status.as_str(),
        scenario.expect.status,
        "{name}: status"
    );
    let history = h
        .flowgate
        .history(&h.tenant, &instance.id)
        .unwrap_or_else(|e| panic!("{e}"));
    let path: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepCompleted { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(path, scenario.expect.path, "{name}: path");
    for (n, event) in history.iter().enumerate() {
        assert_eq!(event.seq, n as u64, "{name}: history is gapless");
    }
    let delivered: Vec<String> = h
        .notifier
        .delivered()
        .iter()
        .map(|d| {
            serde_json::to_value(d.notification.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    for kind in &scenario.expect.notified {
        assert!(
            delivered.contains(kind),
            "{name}: no `{kind}` notification in {delivered:?}"
        );
    }
    check_data(&done.data, &scenario.expect.data_is, &name);
    if let Some(expected) = &scenario.expect.process {
        check_process(&h, &instance.id, expected, &name).await;
    }
}

async fn check_process(h: &Harness, root: &str, expected: &ExpectProcess, name: &str) {
    let case = h
        .flowgate
        .process(&h.tenant, root)
        .unwrap_or_else(|e| panic!("{name}: process: {e}"));
    let workflows: Vec<&str> = case.instances.iter().map(|i| i.workflow.as_str()).collect();
    assert_eq!(
        workflows, expected.instances,
        "{name}: the case's workflows"
    );
    assert!(!case.running, "{name}: the case still runs");
    assert_eq!(
        case.outcome.as_deref(),
        Some(expected.outcome.as_str()),
        "{name}: outcome"
    );
    assert_eq!(case.cycle_ms, Some(expected.cycle_ms), "{name}: cycle time");
    assert_eq!(
        case.cycle_business_ms,
        Some(expected.cycle_business_ms),
        "{name}: cycle time in business time"
    );
    let handoffs: Vec<u64> = case.handoffs.iter().map(|h| h.delay_ms).collect();
    assert_eq!(handoffs, expected.handoffs, "{name}: handoffs");
    let waits: Vec<(String, String, u64)> = case
        .waits
        .iter()
        .map(|w| (w.workflow.clone(), w.step.clone(), w.ms))
        .collect();
    assert_eq!(waits, expected.waits, "{name}: waits");
    let cost = case
        .cost
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no cost"));
    let c = &expected.cost;
    assert_eq!(
        (cost.people, cost.steps, cost.total),
        (c.people, c.steps, c.total),
        "{name}: cost"
    );

    // The process definition's metrics over the day hold this case and only it.
    let day = 24 * 3_600_000;
    let m = h
        .flowgate
        .process_metrics(&h.tenant, &expected.definition, T0, T0 + day)
        .unwrap_or_else(|e| panic!("{name}: process metrics: {e}"));
    assert_eq!((m.started, m.ended, m.running), (1, 1, 0), "{name}: cases");
    assert_eq!(
        m.outcomes.get(&expected.outcome),
        Some(&1),
        "{name}: outcomes"
    );
    assert_eq!(m.cycle_time.p50_ms, expected.cycle_ms, "{name}: cycle p50");
    assert_eq!(m.handoffs.len(), expected.handoffs.len(), "{name}: links");
    let longest = &m.waits[0];
    let (workflow, step, ms) = &expected.waits[0];
    assert_eq!(
        (&longest.workflow, &longest.step, longest.total_ms),
        (workflow, step, *ms)
    );
    let total: u64 = expected.waits.iter().map(|w| w.2).sum::<u64>() + handoffs.iter().sum::<u64>();
    assert!(
        (longest.share - *ms as f64 / total as f64).abs() < 1e-9,
        "{name}: share"
    );
    let cost = m
        .cost
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no cost metrics"));
    assert_eq!(cost.per_case.p50, c.total, "{name}: cost per case");

    // Once retention archives the case, its process metrics are the same.
    let archive = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let now = flowgate::service::Clock::now(h.clock.as_ref());
    let archived = h
        .flowgate
        .archive_finished(&h.tenant, now + 1, 1_000, archive.path())
        .await
        .unwrap_or_else(|e| panic!("{name}: archive: {e}"));
    assert_eq!(
        archived.instances,
        expected.instances.len(),
        "{name}: the whole case is archived"
    );
    assert!(
        h.flowgate.process(&h.tenant, root).is_err(),
        "{name}: archived"
    );
    let after = h
        .flowgate
        .process_metrics(&h.tenant, &expected.definition, T0, T0 + day)
        .unwrap_or_else(|e| panic!("{name}: process metrics after archiving: {e}"));
    assert_eq!(after, m, "{name}: process metrics after archiving");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let file = format!("{}/scenarios/{}.toml", env!("CARGO_MANIFEST_DIR"), stringify!($name).replace('_', "-"));
                run(Path::new(&file)).await;
            }
        )*

        #[test]
        fn every_scenario_file_has_a_test() {
            let listed = [$(stringify!($name).replace('_', "-")),*];
            let dir = format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let stem = entry.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                assert!(listed.contains(&stem), "tests/scenarios/{stem}.toml is not listed in scenarios!");
            }
        }
    };
}

scenarios!(
    accounts_payable_process,
    client_onboarding_process,
    quote_request_across_dst,
    quote_request_across_easter,
    expense_report_approved,
    expense_report_revised_and_escalated,
    document_approval_with_revision,
    document_approval_migrated,
    document_esign_paused,
    document_esign_paused_past_its_deadline,
    document_esign_signed_early,
    employee_onboarding,
    proposal_review_quorum,
    purchase_request_it_director,
    purchase_request_auto_approved,
    purchase_request_rejected,
    support_ticket_safety_escalation,
    support_ticket_sla_missed,
    supplier_quotes,
);
