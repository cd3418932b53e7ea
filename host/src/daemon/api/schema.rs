//! How the engine's own records look in JSON, for the OpenAPI document. The engine crate stays
//! free of HTTP concerns, so these describe its serde output from here; a test keeps each in step
//! with what a real record serializes to, and Schemathesis checks every answer against them.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// A workflow instance: its data, where its tokens stand, its tasks, and when it ran.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Instance, examples(json!({
    "id": "01a24ff4-b4b4-7250-adf6-1815b2b84264",
    "tenant": "acme",
    "definition_id": "purchase-request",
    "definition_version": 1,
    "plugins": {
        "purchase-approval": "5c387bc4df0187cbd158aca804b81a327d3abeb22960bf82c334974f41a0a8d5"
    },
    "status": "running",
    "data": {
        "amount_cents": 90000,
        "category": "furniture",
        "currency": "EUR",
        "requester": "dora",
        "title": "Chairs"
    },
    "tokens": {
        "1": {
            "id": 1,
            "step": "approval",
            "activation": 2,
            "entered_at": "2026-12-07T10:02:46.836Z",
            "forks": [],
            "wait": {
                "for": "approval",
                "order": "parallel",
                "stages": [
                    {
                        "name": "manager",
                        "approvers": [
                            {
                                "role": "manager"
                            }
                        ],
                        "required": 1,
                        "tasks": [
                            "01a24ff4-b4b4-7250-adf6-1815b2b84264.t3"
                        ],
                        "approved_by": [],
                        "status": "open"
                    }
                ]
            }
        }
    },
    "tasks": {
        "01a24ff4-b4b4-7250-adf6-1815b2b84264.t3": {
            "id": "01a24ff4-b4b4-7250-adf6-1815b2b84264.t3",
            "instance": "01a24ff4-b4b4-7250-adf6-1815b2b84264",
            "token": 1,
            "activation": 2,
            "step": "approval",
            "title": "Approve the purchase: manager",
            "assignee": null,
            "role": "manager",
            "candidates": [],
            "claimed_by": null,
            "claimed_at": null,
            "status": "open",
            "stage": 0,
            "outcomes": [
                "approve",
                "reject"
            ],
            "created_at": "2026-12-07T10:02:46.836Z",
            "due_at": null,
            "completed_at": null,
            "completed_by": null,
            "outcome": null
        }
    },
    "timers": {},
    "forks": {},
    "parent": null,
    "process": "01a24ff4-b4b4-7250-adf6-1815b2b84264",
    "started_by": "acme-admin",
    "started_at": "2026-12-07T10:02:46.836Z",
    "ended_at": null,
    "version": 2,
    "history_len": 5,
    "next_id": 4
})))]
pub struct InstanceDoc {
    pub id: String,
    pub tenant: String,
    /// The workflow.
    pub definition_id: String,
    /// The workflow version it is pinned to.
    pub definition_version: u32,
    /// The plugin versions it is pinned to: name → sha256.
    pub plugins: BTreeMap<String, String>,
    pub status: InstanceStatusDoc,
    /// The instance data.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The active steps, by token id: each `{id, step, activation, entered_at, forks, wait}`,
    /// `wait.for` saying what it waits for (`task`, `approval`, `action`, `incident`, ...).
    #[schema(value_type = Object)]
    pub tokens: serde_json::Value,
    /// Every task it opened, by id.
    pub tasks: BTreeMap<String, TaskDoc>,
    /// Its timers (deadlines, reminders, waits), by id.
    #[schema(value_type = Object)]
    pub timers: serde_json::Value,
    /// Its parallel branches, by fork id.
    #[schema(value_type = Object)]
    pub forks: serde_json::Value,
    /// The messages it waits for, by subscription id (absent when none).
    #[schema(value_type = Option<Object>)]
    pub subscriptions: Option<serde_json::Value>,
    /// The instance that started it as a sub-workflow, if one did.
    #[schema(value_type = Option<Object>)]
    pub parent: Option<serde_json::Value>,
    /// Set while an administrator holds it: `{by, at, reason}` (absent otherwise).
    #[schema(value_type = Option<Object>)]
    pub paused: Option<serde_json::Value>,
    /// What arrived while it was paused, applied on resume (absent when nothing).
    #[schema(value_type = Option<Vec<Object>>)]
    pub held: Option<Vec<serde_json::Value>>,
    /// The case (process instance) it belongs to, when not its own (absent otherwise).
    pub process: Option<String>,
    pub started_by: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// Bumped by every change: a long poll's `changed_since`.
    pub version: u64,
    /// Events in its history.
    pub history_len: u64,
    /// The next id it gives a token, task or timer.
    pub next_id: u64,
}

/// Where an instance stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = InstanceStatus)]
#[allow(dead_code, reason = "it describes engine::Status; nothing builds it")]
pub enum InstanceStatusDoc {
    Running,
    Completed,
    Rejected,
    Cancelled,
}

/// A task a person (or someone outside the organization) completes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskDoc {
    pub id: String,
    pub instance: String,
    pub token: u64,
    pub activation: u64,
    pub step: String,
    pub title: String,
    /// The person it is assigned to, if one.
    pub assignee: Option<String>,
    /// The role whose members may claim it, if one.
    pub role: Option<String>,
    /// For an approval: who may approve (`role:manager`, `person:ann`).
    pub candidates: Vec<String>,
    pub claimed_by: Option<String>,
    #[schema(format = DateTime)]
    pub claimed_at: Option<String>,
    pub status: TaskStatusDoc,
    /// For an approver's task: the stage index.
    pub stage: Option<u64>,
    /// The outcomes a person may choose; empty when there is one way on.
    pub outcomes: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub completed_by: Option<String>,
    pub outcome: Option<String>,
    /// For someone outside the organization: until when their link opens it (absent otherwise).
    #[schema(format = DateTime)]
    pub link_expires_at: Option<String>,
}

/// A task's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = TaskStatus)]
#[allow(
    dead_code,
    reason = "it describes engine::TaskStatus; nothing builds it"
)]
pub enum TaskStatusDoc {
    Open,
    Completed,
    Cancelled,
}

/// An instance with its history: `GET /api/v1/instances/{id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InstanceWithHistory)]
pub struct InstanceViewDoc {
    pub instance: InstanceDoc,
    /// Every event, oldest first: `{seq, at, actor, kind, ...}` (left out with `history=false`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub history: Option<Vec<serde_json::Value>>,
    /// What the instance keeps in the store (with the history only).
    pub stored: Option<StoredDoc>,
}

/// What an instance keeps in the store.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Stored)]
pub struct StoredDoc {
    pub state_bytes: u64,
    pub history_events: u64,
    pub history_bytes: u64,
}

/// A task completed: where its instance stands now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Completed)]
pub struct CompletedDoc {
    pub instance: String,
    pub status: InstanceStatusDoc,
    pub version: u64,
    /// The tasks open now, those the completion opened among them.
    pub open_tasks: Vec<TaskDoc>,
}

/// Durations over a set, in milliseconds (nearest-rank percentiles).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Summary)]
pub struct SummaryDoc {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// One step's metrics.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StepMetrics)]
pub struct StepMetricsDoc {
    pub completed: u64,
    pub completed_by_people: u64,
    /// From a task's creation to its completion.
    pub task_completion: SummaryDoc,
    /// The same in the tenant's working hours.
    pub task_completion_business: SummaryDoc,
    /// From the step before it ending to this one being taken up.
    pub handoff_delay: SummaryDoc,
    pub plugin_calls: u64,
    pub plugin_failures: u64,
    /// `plugin_failures / plugin_calls`, or 0 without calls.
    pub error_rate: f64,
}

/// A workflow's metrics over `[from, to)`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowMetrics)]
pub struct WorkflowMetricsDoc {
    pub workflow: String,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub started: u64,
    pub ended: u64,
    /// Outcome (`completed`, `rejected`, `cancelled`) → cycle times of instances ended in range.
    pub cycle_time: BTreeMap<String, SummaryDoc>,
    /// The same in the tenant's working hours.
    pub cycle_time_business: BTreeMap<String, SummaryDoc>,
    /// By step id.
    pub steps: BTreeMap<String, StepMetricsDoc>,
    /// Share of completed steps that no person completed.
    pub automation_share: f64,
}

/// A process's metrics over `[from, to)`: its cases, live and archived.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProcessMetrics)]
pub struct ProcessMetricsDoc {
    pub process: String,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    /// Cases opened in the range.
    pub started: u64,
    /// Cases that ended in the range: every figure below is theirs.
    pub ended: u64,
    /// Cases opened before `to` that still run.
    pub running: u64,
    /// `workflow outcome` → cases.
    pub outcomes: BTreeMap<String, u64>,
    pub cycle_time: SummaryDoc,
    pub cycle_time_business: SummaryDoc,
    /// `from-workflow → workflow` → delays.
    pub handoffs: BTreeMap<String, SummaryDoc>,
    /// Where the cases wait most, longest first: `{workflow, step, total_ms, share, per_case}`.
    #[schema(value_type = Vec<Object>)]
    pub waits: Vec<serde_json::Value>,
    /// `{currency, per_case, people, steps}`; none when the tenant prices nothing.
    #[schema(value_type = Option<Object>)]
    pub cost: Option<serde_json::Value>,
}

/// A process definition, with how its workflows link and what does not fit.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProcessDefinition)]
pub struct ProcessDefinitionDoc {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The workflow whose instances open a case.
    pub starts: String,
    pub workflows: Vec<String>,
    /// One workflow starting another: `{from, step, kind, to}`.
    #[schema(value_type = Vec<Object>)]
    pub links: Vec<serde_json::Value>,
    /// A workflow not deployed, a link leaving the process.
    pub problems: Vec<String>,
}

/// A case: a process instance, its instances and timeline, and its figures.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProcessInstance)]
pub struct ProcessViewDoc {
    pub process: String,
    /// Its instances, in the order they started: `{id, workflow, status, started_at, ended_at, ...}`.
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<serde_json::Value>,
    /// Every event of every instance, in time order.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<serde_json::Value>,
    pub running: bool,
    pub cycle_ms: Option<u64>,
    pub cycle_business_ms: Option<u64>,
    pub outcome: Option<String>,
    /// `{from, to, from_workflow, workflow, delay_ms}`.
    #[schema(value_type = Vec<Object>)]
    pub handoffs: Vec<serde_json::Value>,
    /// `{workflow, step, ms}`, longest first.
    #[schema(value_type = Vec<Object>)]
    pub waits: Vec<serde_json::Value>,
    /// `{currency, person_ms, people, steps, total}`, when the tenant prices its work.
    #[schema(value_type = Option<Object>)]
    pub cost: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use super::*;
    use crate::engine::{Instance, Status, Task, TaskStatus};

    /// The properties a schema names, and those it requires.
    fn properties(schema: RefOr<Schema>) -> (BTreeSet<String>, BTreeSet<String>) {
        match schema {
            RefOr::T(Schema::Object(object)) => (
                object.properties.keys().cloned().collect(),
                object.required.iter().cloned().collect(),
            ),
            _ => panic!("not an object schema"),
        }
    }

    fn task() -> Task {
        Task {
            id: "t1".into(),
            instance: "i1".into(),
            token: 1,
            activation: 1,
            step: "approve".into(),
            title: "Approve".into(),
            assignee: None,
            role: Some("manager".into()),
            candidates: vec!["role:manager".into()],
            claimed_by: None,
            claimed_at: None,
            status: TaskStatus::Open,
            stage: None,
            outcomes: vec!["approve".into(), "reject".into()],
            created_at: 1,
            due_at: None,
            completed_at: None,
            completed_by: None,
            outcome: None,
            link_expires_at: Some(2),
        }
    }

    /// Every key a record serializes to is a documented property, every property it always
    /// writes is required, and every property is one a record can write.
    fn agrees(json: serde_json::Value, schema: RefOr<Schema>, sometimes: &[&str]) {
        let written: BTreeSet<String> = json
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let (documented, required) = properties(schema);
        let optional: BTreeSet<String> = sometimes.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            written.union(&optional).cloned().collect::<BTreeSet<_>>(),
            documented,
            "properties"
        );
        for name in &required {
            assert!(
                written.contains(name),
                "`{name}` is required but not written"
            );
        }
    }

    #[test]
    fn the_task_schema_names_what_a_task_writes() {
        let json = serde_json::to_value(task()).unwrap_or_default();
        agrees(json, TaskDoc::schema(), &[]);
        let (_, required) = properties(TaskDoc::schema());
        assert!(
            !required.contains("link_expires_at"),
            "absent for most tasks"
        );
    }

    #[test]
    fn the_status_schemas_say_what_the_engine_writes() {
        use InstanceStatusDoc as I;
        let pairs = [
            (I::Running, Status::Running),
            (I::Completed, Status::Completed),
            (I::Rejected, Status::Rejected),
            (I::Cancelled, Status::Cancelled),
        ];
        for (doc, status) in pairs {
            assert_eq!(json(&doc), json(&status));
        }
        use TaskStatusDoc as T;
        let pairs = [
            (T::Open, TaskStatus::Open),
            (T::Completed, TaskStatus::Completed),
            (T::Cancelled, TaskStatus::Cancelled),
        ];
        for (doc, status) in pairs {
            assert_eq!(json(&doc), json(&status));
        }
    }

    fn json(value: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }

    #[test]
    fn the_completion_and_stored_schemas_name_what_they_write() {
        let completed = crate::service::Completed {
            instance: "i1".into(),
            status: Status::Running,
            version: 3,
            open_tasks: vec![task()],
            replayed: false,
        };
        agrees(json(&completed), CompletedDoc::schema(), &[]);
        let stored = crate::store::StoredSize {
            state_bytes: 1,
            history_events: 2,
            history_bytes: 3,
        };
        agrees(json(&stored), StoredDoc::schema(), &[]);
    }

    #[test]
    fn the_metrics_schemas_name_what_the_metrics_write() {
        use crate::metrics::{StepMetrics, Summary, WorkflowMetrics};
        agrees(json(&Summary::of(vec![1, 2])), SummaryDoc::schema(), &[]);
        agrees(json(&StepMetrics::default()), StepMetricsDoc::schema(), &[]);
        let mut metrics = WorkflowMetrics::default();
        metrics.steps.insert("a".into(), StepMetrics::default());
        agrees(json(&metrics), WorkflowMetricsDoc::schema(), &[]);
        let process = crate::engine::process::ProcessDefinition {
            id: "p".into(),
            name: "P".into(),
            description: String::new(),
            starts: "a".into(),
            workflows: vec!["a".into()],
        };
        let computed = crate::engine::process::compute(&process, Vec::new(), 0, 1, None);
        agrees(json(&computed), ProcessMetricsDoc::schema(), &[]);
        let view = crate::service::ProcessDefinitionView {
            definition: process,
            links: Vec::new(),
            problems: Vec::new(),
        };
        agrees(json(&view), ProcessDefinitionDoc::schema(), &[]);
        let case = crate::service::ProcessView {
            process: "i1".into(),
            instances: Vec::new(),
            timeline: Vec::new(),
            running: true,
            cycle_ms: None,
            cycle_business_ms: None,
            outcome: None,
            handoffs: Vec::new(),
            waits: Vec::new(),
            cost: None,
        };
        agrees(json(&case), ProcessViewDoc::schema(), &[]);
    }

    #[test]
    fn the_instance_schema_names_what_an_instance_writes() {
        let instance = Instance {
            id: "i1".into(),
            tenant: "acme".into(),
            definition_id: "purchase".into(),
            definition_version: 1,
            plugins: BTreeMap::new(),
            status: Status::Running,
            data: serde_json::Map::new(),
            tokens: BTreeMap::new(),
            tasks: BTreeMap::from([("t1".to_string(), task())]),
            timers: BTreeMap::new(),
            forks: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            parent: None,
            paused: None,
            held: Vec::new(),
            process: String::new(),
            started_by: "ann".into(),
            started_at: 5,
            ended_at: None,
            version: 0,
            history_len: 0,
            next_id: 1,
        };
        let json = serde_json::to_value(&instance).unwrap_or_default();
        // Written only when set: subscriptions, paused, held, process.
        agrees(
            json,
            InstanceDoc::schema(),
            &["subscriptions", "paused", "held", "process"],
        );
    }

    #[test]
    fn the_instance_example_is_an_instance_the_engine_wrote() {
        let schema = InstanceDoc::schema();
        let RefOr::T(Schema::Object(object)) = schema else {
            panic!("an object schema")
        };
        let [example] = object.examples.as_slice() else {
            panic!("one example")
        };
        let instance: Instance = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("the example is not an instance: {e}"));
        assert_eq!(json(&instance), *example, "read and written back unchanged");
    }
}
