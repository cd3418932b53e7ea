//! Workflow definitions as authored: a start step and a list of steps, each of one kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::calendar::Span;

/// A workflow definition, as deployed by a tenant. Deploying a changed one makes a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Stable id, e.g. `expense-report`; versions share it.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// What the workflow gets done.
    #[serde(default)]
    pub description: String,
    /// The first step.
    pub start: String,
    /// The fields a start gives, checked as a task's form is (the web app draws them as the
    /// start form); none means any data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_form: Vec<FormField>,
    /// The steps, in any order.
    pub steps: Vec<Step>,
    /// Messages that start an instance when no running instance waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_messages: Vec<StartMessage>,
    /// Schedules that start instances: cron expressions or intervals, in a time zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
}

/// Starts an instance at each due time: a cron expression in a time zone, or an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Names the schedule within the workflow, e.g. `weekly`.
    pub id: String,
    /// A cron expression: five fields (minute hour day-of-month month day-of-week) or six with
    /// seconds first; names (`MON`, `JAN`) and `L`, `#`, `W` as croner reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Or an interval (`15m`, `1h`), its due times aligned to the Unix epoch.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    /// The IANA time zone the cron expression is read in (`Europe/Berlin`); default UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// What a due time does while the last instance it started still runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// After downtime, due times missed by less than this still start; older ones are skipped
    /// and counted as missed. Default 1 hour.
    #[serde(default = "an_hour", with = "duration")]
    pub catch_up: Duration,
    /// The data each instance starts with, checked against the start form.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

fn utc() -> String {
    "UTC".to_string()
}

fn an_hour() -> Duration {
    Duration::from_secs(3_600)
}

/// What a due time does while the schedule's last instance still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Skip it (counted as skipped).
    #[default]
    Skip,
    /// Keep one: it starts when the running instance ends; further ones are skipped.
    BufferOne,
    /// Start it anyway.
    Allow,
}

/// A message from another system that starts an instance; its data is the start data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMessage {
    /// The message's name, e.g. `order-placed`.
    pub message: String,
    /// The data field the message's correlation is kept in, so that later messages about the
    /// same business case find the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlate: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// A person does something (fills a form, reviews, signs).
    Task(TaskStep),
    /// People approve, reject, or request changes.
    Approval(ApprovalStep),
    /// A plugin runs an automated action.
    Action(ActionStep),
    /// A plugin chooses the next step(s) from the data.
    Route(RouteStep),
    /// Wait for a duration or until a date.
    Wait(WaitStep),
    /// Start branches that run at once.
    Parallel(ParallelStep),
    /// Wait for branches of a parallel step: all, any, or N of them.
    Join(JoinStep),
    /// Start another workflow, and wait for its result or go on.
    Subworkflow(SubworkflowStep),
    /// Wait for a message from another system, correlated by a key in the data.
    Receive(ReceiveStep),
    /// Finish the instance.
    End(EndStep),
}

/// A human task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// Assign to this person.
    pub assignee: Option<String>,
    /// Assign to the person named by this instance-data field (e.g. `manager`).
    pub assignee_from: Option<String>,
    /// Offer to anyone holding this role.
    pub role: Option<String>,
    /// Offer to any of these people.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Assign to someone outside the organization: the instance-data field holding their email
    /// address. They are sent a signed link that opens only this task, with no account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_from: Option<String>,
    /// How long an outside participant's link stays valid (default 7 days).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub link_valid: Option<Duration>,
    /// Fields the person fills in; validated on completion, merged into the data. A completion
    /// may carry only these.
    #[serde(default)]
    pub form: Vec<FormField>,
    /// Takes whatever data a completion carries, unchecked, instead of a form's fields.
    #[serde(default, skip_serializing_if = "is_false")]
    pub free_data: bool,
    /// The next step when there is one way on.
    pub next: Option<String>,
    /// Outcome → next step, when the person chooses the way on (e.g. `resolve`, `escalate`).
    #[serde(default)]
    pub on: BTreeMap<String, String>,
    /// When it is due, reminders and escalation.
    pub deadline: Option<Deadline>,
    /// Messages that, arriving while the task is open, withdraw it and take another way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageBoundary>,
}

/// A message that may arrive while a person works on a step (e.g. "customer replied" while the
/// agent's task is open): the step's open tasks are withdrawn and the instance goes to `next`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBoundary {
    /// The message's name.
    pub message: String,
    /// The data field whose value the message's correlation must equal.
    pub correlate: String,
    /// The fields the message may carry, checked as a form's and merged; others are refused.
    #[serde(default)]
    pub fields: Vec<FormField>,
    /// A message that arrives before the step is reached is kept this long (default: not kept).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub buffer: Option<Duration>,
    /// Where the instance goes when the message arrives.
    pub next: String,
}

/// One form field of a human task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// The data key it fills.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Whether completing the task needs it.
    #[serde(default)]
    pub required: bool,
    /// Allowed values, for `choice`.
    #[serde(default)]
    pub options: Vec<String>,
    /// For `money`: its ISO 4217 currency, when it is always the same (`"EUR"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// For `money`: the field (of the form, or of the instance's data) that holds its currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_field: Option<String>,
}

/// The type of a form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    Text,
    Number,
    Integer,
    Boolean,
    /// An RFC 3339 date (`2026-11-22`) or date-time.
    Date,
    /// One of `options`.
    Choice,
    /// An amount of money as an integer of minor units (12550 for 125.50 EUR), in `currency`
    /// or the currency `currency_field` holds. People enter it as a decimal.
    Money,
}

/// An approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// An approval-policy plugin decides who must approve.
    pub policy: Option<String>,
    /// Where the policy's request comes from in the instance data.
    #[serde(default)]
    pub request: PolicyRequest,
    /// Or the approvers written inline.
    #[serde(default)]
    pub approvers: Vec<InlineStage>,
    /// With inline approvers: whether stages run one after another or at once.
    #[serde(default)]
    pub order: StageOrder,
    /// Where each outcome leads.
    pub on: ApprovalOutcomes,
    /// Fields an approver fills in (a cost centre, a reference); without one, an answer carries
    /// an outcome and a comment but no data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<FormField>,
    /// Takes whatever data an answer carries, unchecked, instead of a form's fields.
    #[serde(default, skip_serializing_if = "is_false")]
    pub free_data: bool,
    /// When it is due, reminders and escalation.
    pub deadline: Option<Deadline>,
    /// Messages that, arriving while the approval is open, withdraw it and take another way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageBoundary>,
}

/// Data fields that make up an approval policy's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRequest {
    /// Field holding the amount in minor units (cents).
    pub amount: String,
    /// Field holding the ISO 4217 currency.
    pub currency: String,
    /// Field holding the category.
    pub category: String,
    /// Field holding the requester.
    pub requester: String,
}

impl Default for PolicyRequest {
    fn default() -> Self {
        PolicyRequest {
            amount: "amount".to_string(),
            currency: "currency".to_string(),
            category: "category".to_string(),
            requester: "requester".to_string(),
        }
    }
}

/// Approvers written in the definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineStage {
    /// Shown in the history.
    pub name: String,
    /// Roles, one approver slot each.
    #[serde(default)]
    pub roles: Vec<String>,
    /// People, one approver slot each.
    #[serde(default)]
    pub people: Vec<String>,
    /// How many must approve (N of M); default 1.
    #[serde(default = "one")]
    pub required: u32,
}

fn one() -> u32 {
    1
}

/// Whether approval stages run in sequence or at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageOrder {
    #[default]
    Sequential,
    Parallel,
}

/// Where an approval's outcomes lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApprovalOutcomes {
    pub approve: String,
    pub reject: String,
    /// Where "request changes" leads; without it, approvers cannot request changes.
    pub request_changes: Option<String>,
}

/// An automated step run by a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The tenant's plugin.
    pub plugin: String,
    /// The action name passed to the plugin.
    #[serde(default)]
    pub action: String,
    /// Parameters passed to the plugin as JSON.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// Retries of retryable failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    pub next: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// How an action is retried after a retryable failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// Each further wait is this many times the last.
    pub multiplier: f64,
    /// The longest wait.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1) as i32);
        let wait = self.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(wait.min(self.max_backoff.as_secs_f64()))
    }
}

/// A plugin chooses the way on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The tenant's router plugin.
    pub plugin: String,
    /// The steps it may choose from; several chosen run in parallel.
    pub candidates: Vec<String>,
}

/// Waits for a duration, until a date, or until a date in the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default, with = "opt_duration")]
    pub duration: Option<Duration>,
    /// An RFC 3339 date-time.
    pub until: Option<String>,
    /// A data field holding an RFC 3339 date-time.
    pub until_from: Option<String>,
    pub next: String,
}

/// Starts branches that run at once and meet at `join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The first step of each branch.
    pub branches: Vec<String>,
    /// The join step where the branches meet.
    pub join: String,
}

/// How many branches a join waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinMode {
    #[default]
    All,
    Any,
    /// `required` of them (N of M).
    Quorum,
}

/// Where the branches of a parallel step meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub mode: JoinMode,
    /// With `quorum`: how many branches must arrive.
    pub required: Option<u32>,
    pub next: String,
}

/// Starts another workflow of the same tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubworkflowStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The definition id to start (its latest version).
    pub workflow: String,
    /// Wait for it to finish (default), or start it and go on.
    #[serde(default = "yes")]
    pub wait: bool,
    /// Data keys passed to it; empty passes all.
    #[serde(default)]
    pub input: Vec<String>,
    /// Key under which its final data is stored; without it, its data is merged. With
    /// `for_each`, a list of each instance's final data in the order of the elements (`null`
    /// for one that did not end); without it, the instances' data is not merged.
    pub output: Option<String>,
    /// Fan-out: a data field (a path) holding a list; one instance of `workflow` is started per
    /// element, which it gets under `item`.
    pub for_each: Option<String>,
    /// The key under which each instance of a fan-out gets its element (default `item`).
    pub item: Option<String>,
    /// When a fan-out goes on: once every instance completed (`all`, the default), once one did
    /// (`any`), or once `required` did (`quorum`). The instances still running then are
    /// cancelled; when too many end otherwise for the join to be met, the step goes on with
    /// outcome `rejected` (or `cancelled` when none was rejected).
    pub join: Option<JoinMode>,
    /// With `join = "quorum"`: how many instances must complete.
    pub required: Option<u32>,
    /// The next step.
    pub next: Option<String>,
    /// Its outcome (`completed`, `rejected`, `cancelled`) → next step.
    #[serde(default)]
    pub on: BTreeMap<String, String>,
}

/// At most this many instances per fan-out: a longer list raises an incident.
pub const MAX_FAN_OUT: usize = 200;

impl SubworkflowStep {
    /// The key each fan-out instance gets its element under.
    pub fn item_key(&self) -> &str {
        self.item.as_deref().unwrap_or("item")
    }

    /// How many of `count` fan-out instances must complete for the step to go on.
    pub fn required_of(&self, count: u32) -> u32 {
        match self.join.unwrap_or_default() {
            JoinMode::All => count,
            JoinMode::Any => 1,
            JoinMode::Quorum => self.required.unwrap_or(count),
        }
    }
}

fn yes() -> bool {
    true
}

/// Waits for a message from another system (`POST /api/v1/messages`): the one whose name is
/// `message` and whose correlation equals the value of the data field `correlate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The message's name, e.g. `signature-received`.
    pub message: String,
    /// The data field whose value (text or an integer) the message's correlation must equal.
    pub correlate: String,
    /// The fields the message may carry, checked as a form's and merged; others are refused.
    #[serde(default)]
    pub fields: Vec<FormField>,
    /// A message that arrives before the instance waits is kept this long (default: not kept).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub buffer: Option<Duration>,
    /// The next step once the message arrived.
    pub next: String,
    /// Escalation outcome → step, for a deadline whose escalation takes an outcome (`timeout`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on: BTreeMap<String, String>,
    /// The role told of reminders and when the wait is overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When the message is due, reminders and escalation (`notify` or `outcome`).
    pub deadline: Option<Deadline>,
}

/// Ends the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndStep {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub outcome: EndOutcome,
    /// The workflow that follows when the instance ends here, in the same process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<NextWorkflow>,
}

/// A workflow an end step starts, and the data it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextWorkflow {
    /// The workflow id; its latest version starts.
    pub workflow: String,
    /// Its start data: field → dotted path in this instance's data. Empty passes all data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndOutcome {
    #[default]
    Completed,
    Rejected,
    Cancelled,
}

impl std::fmt::Display for EndOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndOutcome::Completed => "completed",
            EndOutcome::Rejected => "rejected",
            EndOutcome::Cancelled => "cancelled",
        })
    }
}

/// When a human step is due, when to remind, and what to do when it is overdue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    /// Due this long after the task opens: wall-clock (`2d`) or business time (`2 business
    /// days`, `4 business hours`) in the tenant's calendar.
    pub due: Span,
    /// Reminders this long before the due time (`0s` reminds at the due time), likewise.
    #[serde(default)]
    pub reminders: Vec<Span>,
    /// What happens when it is overdue.
    pub escalation: Option<Escalation>,
}

/// What happens when a task is overdue, `after` this long past its due time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Escalation {
    /// Notify these roles.
    Notify {
        #[serde(default = "no_time")]
        after: Span,
        roles: Vec<String>,
    },
    /// Hand the task to this role.
    Reassign {
        #[serde(default = "no_time")]
        after: Span,
        role: String,
    },
    /// Complete the task with this outcome (e.g. `reject`, or `escalate` to a step).
    Outcome {
        #[serde(default = "no_time")]
        after: Span,
        outcome: String,
    },
}

fn no_time() -> Span {
    Span::Wall(Duration::ZERO)
}

impl Escalation {
    /// How long past the due time it happens.
    pub fn after(&self) -> Span {
        match self {
            Escalation::Notify { after, .. }
            | Escalation::Reassign { after, .. }
            | Escalation::Outcome { after, .. } => *after,
        }
    }
}

impl Step {
    /// The step's id.
    pub fn id(&self) -> &str {
        match self {
            Step::Task(s) => &s.id,
            Step::Approval(s) => &s.id,
            Step::Action(s) => &s.id,
            Step::Route(s) => &s.id,
            Step::Wait(s) => &s.id,
            Step::Parallel(s) => &s.id,
            Step::Join(s) => &s.id,
            Step::Subworkflow(s) => &s.id,
            Step::Receive(s) => &s.id,
            Step::End(s) => &s.id,
        }
    }

    /// The step's title, or its id.
    pub fn title(&self) -> &str {
        let title = match self {
            Step::Task(s) => &s.title,
            Step::Approval(s) => &s.title,
            Step::Action(s) => &s.title,
            Step::Route(s) => &s.title,
            Step::Wait(s) => &s.title,
            Step::Parallel(s) => &s.title,
            Step::Join(s) => &s.title,
            Step::Subworkflow(s) => &s.title,
            Step::Receive(s) => &s.title,
            Step::End(s) => &s.title,
        };
        if title.is_empty() { self.id() } else { title }
    }

    /// The kind's name, as written in definitions.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Task(_) => "task",
            Step::Approval(_) => "approval",
            Step::Action(_) => "action",
            Step::Route(_) => "route",
            Step::Wait(_) => "wait",
            Step::Parallel(_) => "parallel",
            Step::Join(_) => "join",
            Step::Subworkflow(_) => "subworkflow",
            Step::Receive(_) => "receive",
            Step::End(_) => "end",
        }
    }

    /// Every step this one can lead to, with the field that names it.
    pub fn targets(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        if let Step::Task(TaskStep { on, .. })
        | Step::Subworkflow(SubworkflowStep { on, .. })
        | Step::Receive(ReceiveStep { on, .. }) = self
        {
            out.extend(on.iter().map(|(k, v)| (format!("on.{k}"), v.as_str())));
        }
        match self {
            Step::Task(TaskStep { next: Some(n), .. })
            | Step::Subworkflow(SubworkflowStep { next: Some(n), .. }) => {
                out.push(("next".to_string(), n))
            }
            Step::Action(s) => out.push(("next".to_string(), &s.next)),
            Step::Wait(s) => out.push(("next".to_string(), &s.next)),
            Step::Join(s) => out.push(("next".to_string(), &s.next)),
            Step::Receive(s) => out.push(("next".to_string(), &s.next)),
            Step::Approval(s) => {
                out.push(("on.approve".to_string(), &s.on.approve));
                out.push(("on.reject".to_string(), &s.on.reject));
                if let Some(r) = &s.on.request_changes {
                    out.push(("on.request-changes".to_string(), r));
                }
            }
            Step::Route(s) => {
                for (i, c) in s.candidates.iter().enumerate() {
                    out.push((format!("candidates[{i}]"), c));
                }
            }
            Step::Parallel(s) => {
                for (i, b) in s.branches.iter().enumerate() {
                    out.push((format!("branches[{i}]"), b));
                }
                out.push(("join".to_string(), &s.join));
            }
            _ => {}
        }
        for (i, boundary) in self.boundaries().iter().enumerate() {
            out.push((format!("messages[{i}].next"), &boundary.next));
        }
        out
    }

    /// The deadline of a human step or of a wait for a message.
    pub fn deadline(&self) -> Option<&Deadline> {
        match self {
            Step::Task(s) => s.deadline.as_ref(),
            Step::Approval(s) => s.deadline.as_ref(),
            Step::Receive(s) => s.deadline.as_ref(),
            _ => None,
        }
    }

    /// The messages that may interrupt a human step.
    pub fn boundaries(&self) -> &[MessageBoundary] {
        match self {
            Step::Task(s) => &s.messages,
            Step::Approval(s) => &s.messages,
            _ => &[],
        }
    }

    /// The messages this step waits for: name, correlation field, and how long one that comes
    /// early is kept.
    pub fn awaited(&self) -> Vec<(&str, &str, Option<Duration>)> {
        match self {
            Step::Receive(r) => vec![(r.message.as_str(), r.correlate.as_str(), r.buffer)],
            _ => self
                .boundaries()
                .iter()
                .map(|b| (b.message.as_str(), b.correlate.as_str(), b.buffer))
                .collect(),
        }
    }

    /// The plugin this step calls and the capability it needs.
    pub fn plugin(&self) -> Option<(&str, crate::Capability)> {
        use crate::Capability;
        match self {
            Step::Action(s) => Some((&s.plugin, Capability::StepAction)),
            Step::Route(s) => Some((&s.plugin, Capability::Router)),
            Step::Approval(ApprovalStep {
                policy: Some(p), ..
            }) => Some((p, Capability::ApprovalPolicy)),
            _ => None,
        }
    }
}

impl Definition {
    /// What people call it: its name, or its id.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id() == id)
    }

    /// Whether any step waits for message `name`, or a message of that name starts it.
    pub fn receives(&self, name: &str) -> bool {
        self.start_messages.iter().any(|m| m.message == name)
            || self
                .steps
                .iter()
                .any(|s| s.awaited().iter().any(|(m, ..)| *m == name))
    }

    /// How long a message `name` that no instance waits for yet is kept for this workflow's
    /// steps: the longest `buffer` among the steps that wait for it.
    pub fn buffers(&self, name: &str) -> Option<Duration> {
        self.steps
            .iter()
            .flat_map(|s| s.awaited())
            .filter(|(m, ..)| *m == name)
            .filter_map(|(_, _, buffer)| buffer)
            .max()
    }

    /// The start message of this name, if a message of that name starts the workflow.
    pub fn start_message(&self, name: &str) -> Option<&StartMessage> {
        self.start_messages.iter().find(|m| m.message == name)
    }

    /// The plugins the definition calls, by name.
    pub fn plugins(&self) -> std::collections::BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| s.plugin().map(|p| p.0))
            .collect()
    }
}

/// Serde for a `Duration` written as `"2d"`, `"4h 30m"`, `"90s"`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like `2d` or `4h 30m`: {e}"
            ))
        })
    }
}

pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::duration")] Duration);
        Option::<Wrapped>::deserialize(d).map(|w| w.map(|Wrapped(d)| d))
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}
