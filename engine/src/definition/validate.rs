//! Deploy-time checks: every problem found, each with the path of the field at fault.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::model::{
    ApprovalStep, Definition, Escalation, FormField, JoinMode, ReceiveStep, Span, Step,
    SubworkflowStep, TaskStep, WaitStep,
};
use crate::Capability;

/// What a definition may refer to outside itself: the tenant's plugins and definitions.
pub trait Catalog {
    /// The capabilities of the tenant's plugin `name`, or `None` if it has no such plugin.
    fn plugin_capabilities(&self, name: &str) -> Option<Vec<Capability>>;
    /// Whether the tenant has (or is deploying) a definition with this id.
    fn has_definition(&self, id: &str) -> bool;
}

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: `steps[2] (review).on.approve`.
    pub path: String,
    /// What is wrong and why.
    pub message: String,
    /// The index of the step at fault, to find its line in the source.
    #[serde(skip)]
    pub step: Option<usize>,
    /// The source line, when known.
    pub line: Option<usize>,
}

struct Checker<'a> {
    def: &'a Definition,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, step: Option<usize>, field: &str, message: impl Into<String>) {
        let path = match step {
            Some(i) => {
                let id = self.def.steps[i].id();
                if field.is_empty() {
                    format!("steps[{i}] ({id})")
                } else {
                    format!("steps[{i}] ({id}).{field}")
                }
            }
            None => field.to_string(),
        };
        self.problems.push(Problem {
            path,
            message: message.into(),
            step,
            line: None,
        });
    }
}

/// Whether `id` may name a workflow (or a process): 1-64 of a-z, 0-9, `-` and `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks `def` against itself and `catalog`; an empty list means it may be deployed.
pub fn validate(def: &Definition, catalog: &dyn Catalog) -> Vec<Problem> {
    let mut c = Checker {
        def,
        problems: Vec::new(),
    };
    if !valid_id(&def.id) {
        c.at(
            None,
            "id",
            format!("`{}` must be 1-64 of a-z, 0-9, - and _", def.id),
        );
    }
    if def.steps.is_empty() {
        c.at(None, "steps", "a workflow needs at least one step");
        return c.problems;
    }

    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, step) in def.steps.iter().enumerate() {
        if !valid_id(step.id()) {
            c.at(
                Some(i),
                "id",
                format!("`{}` must be 1-64 of a-z, 0-9, - and _", step.id()),
            );
        }
        if let Some(first) = index.insert(step.id(), i) {
            c.at(
                Some(i),
                "id",
                format!(
                    "duplicate step id `{}`, first used by steps[{first}]",
                    step.id()
                ),
            );
        }
    }
    if !index.contains_key(def.start.as_str()) {
        c.at(None, "start", format!("unknown step `{}`", def.start));
    }
    check_fields(&mut c, None, "start_form", &def.start_form);
    check_start_messages(&mut c);
    check_schedules(&mut c);
    for (i, step) in def.steps.iter().enumerate() {
        for (field, target) in step.targets() {
            if !index.contains_key(target) {
                c.at(Some(i), &field, format!("unknown step `{target}`"));
            }
        }
        check_step(&mut c, i, step, &index, catalog);
    }
    check_joins(&mut c);
    check_reachability(&mut c, &index);
    c.problems
}

fn check_step(
    c: &mut Checker<'_>,
    i: usize,
    step: &Step,
    index: &BTreeMap<&str, usize>,
    catalog: &dyn Catalog,
) {
    if let Some((plugin, capability)) = step.plugin() {
        let field = match step {
            Step::Approval(_) => "policy",
            _ => "plugin",
        };
        match catalog.plugin_capabilities(plugin) {
            None => c.at(Some(i), field, format!("the tenant has no plugin `{plugin}`")),
            Some(caps) if !caps.contains(&capability) => c.at(
                Some(i),
                field,
                format!("plugin `{plugin}` does not export the {capability} capability (it exports {caps:?})"),
            ),
            Some(_) => {}
        }
    }
    match step {
        Step::Task(t) => check_task(c, i, t),
        Step::Approval(a) => check_approval(c, i, a),
        Step::Wait(w) => check_wait(c, i, w),
        Step::Receive(r) => check_receive(c, i, r),
        Step::End(e) => {
            if let Some(next) = &e.then
                && !catalog.has_definition(&next.workflow)
            {
                c.at(
                    Some(i),
                    "then.workflow",
                    format!("the tenant has no workflow `{}`", next.workflow),
                );
            }
        }
        Step::Route(r) if r.candidates.is_empty() => c.at(
            Some(i),
            "candidates",
            "a route needs at least one candidate",
        ),
        Step::Action(a) if a.retry.max_attempts == 0 => {
            c.at(Some(i), "retry.max_attempts", "must be at least 1")
        }
        Step::Action(a) if !a.params.is_object() => {
            c.at(Some(i), "params", "must be a table (JSON object)")
        }
        Step::Parallel(p) => {
            if p.branches.len() < 2 {
                c.at(
                    Some(i),
                    "branches",
                    "a parallel step needs at least two branches",
                );
            }
            if index
                .get(p.join.as_str())
                .is_some_and(|&j| !matches!(c.def.steps[j], Step::Join(_)))
            {
                c.at(Some(i), "join", format!("`{}` is not a join step", p.join));
            }
        }
        Step::Subworkflow(s) => {
            if !catalog.has_definition(&s.workflow) {
                c.at(
                    Some(i),
                    "workflow",
                    format!("the tenant has no workflow `{}`", s.workflow),
                );
            }
            if s.next.is_none() && s.on.is_empty() {
                c.at(Some(i), "next", "needs `next` or `on`");
            }
            for outcome in s.on.keys() {
                if !["completed", "rejected", "cancelled"].contains(&outcome.as_str()) {
                    c.at(
                        Some(i),
                        &format!("on.{outcome}"),
                        "outcomes are completed, rejected, cancelled",
                    );
                }
            }
            check_fan_out(c, i, s);
        }
        _ => {}
    }
    if let Some(deadline) = step.deadline() {
        if deadline.due.is_zero() {
            c.at(Some(i), "deadline.due", "must be longer than zero");
        }
        for (r, before) in deadline.reminders.iter().enumerate() {
            if let (Span::Wall(before), Span::Wall(due)) = (before, &deadline.due)
                && before > due
            {
                c.at(
                    Some(i),
                    &format!("deadline.reminders[{r}]"),
                    "a reminder cannot come before the task opens",
                );
            }
        }
        if let Some(Escalation::Outcome { outcome, .. }) = &deadline.escalation {
            let allowed: Vec<String> = match step {
                Step::Task(t) => t.on.keys().cloned().collect(),
                Step::Receive(r) => r.on.keys().cloned().collect(),
                _ => vec!["approve".into(), "reject".into()],
            };
            let plain_task = matches!(step, Step::Task(t) if t.on.is_empty());
            if !plain_task && !allowed.contains(outcome) {
                c.at(
                    Some(i),
                    "deadline.escalation.outcome",
                    format!("`{outcome}` is not one of the step's outcomes {allowed:?}"),
                );
            }
        }
    }
    check_boundaries(c, i, step);
}

/// A message name: what senders write in `name`.
fn valid_message(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

const MESSAGE_NAME: &str = "must be 1-128 of letters, digits, and - _ . : /";

fn check_receive(c: &mut Checker<'_>, i: usize, r: &ReceiveStep) {
    if !valid_message(&r.message) {
        c.at(
            Some(i),
            "message",
            format!("`{}` {MESSAGE_NAME}", r.message),
        );
    }
    if r.correlate.is_empty() {
        c.at(
            Some(i),
            "correlate",
            "name the data field whose value messages are matched on",
        );
    }
    check_fields(c, Some(i), "fields", &r.fields);
    let escalation = r.deadline.as_ref().and_then(|d| d.escalation.as_ref());
    if let Some(Escalation::Reassign { .. }) = escalation {
        c.at(
            Some(i),
            "deadline.escalation",
            "a wait for a message has no task to reassign: notify roles, or take an outcome",
        );
    }
    let taken = match escalation {
        Some(Escalation::Outcome { outcome, .. }) => Some(outcome.as_str()),
        _ => None,
    };
    for outcome in r.on.keys() {
        if Some(outcome.as_str()) != taken {
            c.at(
                Some(i),
                &format!("on.{outcome}"),
                "a receive step leaves by `next`; `on` holds only the outcome its deadline's escalation takes",
            );
        }
    }
    if r.role.is_none() && r.deadline.as_ref().is_some_and(|d| !d.reminders.is_empty()) {
        c.at(
            Some(i),
            "role",
            "reminders need a role to remind: name who watches this wait",
        );
    }
}

/// The messages that may interrupt a human step.
fn check_boundaries(c: &mut Checker<'_>, i: usize, step: &Step) {
    let mut names = BTreeSet::new();
    for (b, boundary) in step.boundaries().iter().enumerate() {
        let at = |what: &str| format!("messages[{b}].{what}");
        if !valid_message(&boundary.message) {
            c.at(
                Some(i),
                &at("message"),
                format!("`{}` {MESSAGE_NAME}", boundary.message),
            );
        } else if !names.insert(&boundary.message) {
            c.at(
                Some(i),
                &at("message"),
                format!("`{}` is listed twice", boundary.message),
            );
        }
        if boundary.correlate.is_empty() {
            c.at(
                Some(i),
                &at("correlate"),
                "name the data field whose value messages are matched on",
            );
        }
        check_fields(c, Some(i), &at("fields"), &boundary.fields);
    }
}

fn check_schedules(c: &mut Checker<'_>) {
    let mut ids = BTreeSet::new();
    for (n, schedule) in c.def.schedules.iter().enumerate() {
        let at = |field: &str| format!("schedules[{n}].{field}");
        if !valid_id(&schedule.id) {
            let message = format!("`{}` must be 1-64 of a-z, 0-9, - and _", schedule.id);
            c.at(None, &at("id"), message);
        } else if !ids.insert(schedule.id.clone()) {
            let message = format!("duplicate schedule id `{}`", schedule.id);
            c.at(None, &at("id"), message);
        }
        if let Err((field, message)) = crate::schedule::Due::of(schedule) {
            c.at(None, &at(field), message);
        }
        if let Err(crate::CommandError::Invalid { field, message }) =
            crate::tasks::check_form(&c.def.start_form, &schedule.data)
        {
            c.at(None, &at(&field), message);
        }
    }
}

fn check_start_messages(c: &mut Checker<'_>) {
    let mut names = BTreeSet::new();
    for (m, start) in c.def.start_messages.iter().enumerate() {
        let path = format!("start_messages[{m}].message");
        if !valid_message(&start.message) {
            let message = format!("`{}` {MESSAGE_NAME}", start.message);
            c.at(None, &path, message);
        } else if !names.insert(start.message.clone()) {
            let message = format!("`{}` is listed twice", start.message);
            c.at(None, &path, message);
        }
        if start.correlate.as_deref() == Some("") {
            let path = format!("start_messages[{m}].correlate");
            c.at(None, &path, "name a data field, or leave it out");
        }
    }
}

fn check_task(c: &mut Checker<'_>, i: usize, t: &TaskStep) {
    let ways = [
        t.assignee.is_some(),
        t.assignee_from.is_some(),
        t.role.is_some(),
        !t.candidates.is_empty(),
        t.external_from.is_some(),
    ];
    if ways.iter().filter(|w| **w).count() != 1 {
        c.at(
            Some(i),
            "",
            "a task needs exactly one of assignee, assignee_from, role, candidates, external_from",
        );
    }
    if t.link_valid.is_some() && t.external_from.is_none() {
        c.at(
            Some(i),
            "link_valid",
            "only a task for an outside participant (`external_from`) has a link",
        );
    }
    match (&t.next, t.on.is_empty()) {
        (Some(_), false) => c.at(Some(i), "next", "use either `next` or `on`, not both"),
        (None, true) => c.at(Some(i), "next", "a task needs `next` or `on` outcomes"),
        _ => {}
    }
    check_fields(c, Some(i), "form", &t.form);
    if t.free_data && !t.form.is_empty() {
        c.at(
            Some(i),
            "free_data",
            "a step with a `form` takes its fields; `free_data` is for a step without one",
        );
    }
}

/// A form's fields: unique names, options for choices only, a currency for money only.
fn check_fields(c: &mut Checker<'_>, step: Option<usize>, path: &str, form: &[FormField]) {
    use super::model::FieldKind;
    let mut names = BTreeSet::new();
    for (f, field) in form.iter().enumerate() {
        let at = |what: &str| format!("{path}[{f}].{what}");
        if !names.insert(&field.name) {
            c.at(
                step,
                &at("name"),
                format!("duplicate field `{}`", field.name),
            );
        }
        let choice = field.kind == FieldKind::Choice;
        if choice == field.options.is_empty() {
            c.at(
                step,
                &at("options"),
                "a choice needs options, and only a choice has them",
            );
        }
        let money = field.kind == FieldKind::Money;
        let currencies =
            usize::from(field.currency.is_some()) + usize::from(field.currency_field.is_some());
        if money && currencies != 1 {
            c.at(
                step,
                &at("currency"),
                "money needs exactly one of `currency` (an ISO 4217 code) or `currency_field`",
            );
        }
        if !money && currencies != 0 {
            c.at(step, &at("currency"), "only money has a currency");
        }
        if let Some(code) = &field.currency
            && !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        {
            c.at(
                step,
                &at("currency"),
                format!("`{code}` is not an ISO 4217 code such as \"EUR\""),
            );
        }
    }
}

fn check_approval(c: &mut Checker<'_>, i: usize, a: &ApprovalStep) {
    check_fields(c, Some(i), "form", &a.form);
    if a.free_data && !a.form.is_empty() {
        c.at(
            Some(i),
            "free_data",
            "a step with a `form` takes its fields; `free_data` is for a step without one",
        );
    }
    match (&a.policy, a.approvers.is_empty()) {
        (Some(_), false) => c.at(
            Some(i),
            "approvers",
            "use either `policy` or `approvers`, not both",
        ),
        (None, true) => c.at(
            Some(i),
            "approvers",
            "an approval needs `policy` or `approvers`",
        ),
        _ => {}
    }
    for (s, stage) in a.approvers.iter().enumerate() {
        let m = stage.roles.len() + stage.people.len();
        if m == 0 {
            c.at(
                Some(i),
                &format!("approvers[{s}]"),
                "a stage needs roles or people",
            );
        } else if stage.required == 0 || stage.required as usize > m {
            c.at(
                Some(i),
                &format!("approvers[{s}].required"),
                format!("must be between 1 and {m}, the number of approvers"),
            );
        }
    }
}

fn check_wait(c: &mut Checker<'_>, i: usize, w: &WaitStep) {
    let ways = [
        w.duration.is_some(),
        w.until.is_some(),
        w.until_from.is_some(),
    ];
    if ways.iter().filter(|w| **w).count() != 1 {
        c.at(
            Some(i),
            "",
            "a wait needs exactly one of duration, until, until_from",
        );
    }
    if let Some(until) = &w.until
        && humantime::parse_rfc3339_weak(until).is_err()
    {
        c.at(
            Some(i),
            "until",
            format!("`{until}` is not an RFC 3339 date-time"),
        );
    }
}

/// Every join belongs to exactly one parallel step, and a quorum fits its branches.
fn check_joins(c: &mut Checker<'_>) {
    let def = c.def;
    for (i, step) in def.steps.iter().enumerate() {
        let Step::Join(join) = step else { continue };
        let forks: Vec<usize> = def
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Parallel(p) if p.join == join.id))
            .map(|(k, _)| k)
            .collect();
        match forks.as_slice() {
            [] => c.at(
                Some(i),
                "",
                "a join with no parallel step naming it in `join`",
            ),
            [fork] => {
                if let Step::Parallel(p) = &def.steps[*fork] {
                    let m = p.branches.len() as u32;
                    match (join.mode, join.required) {
                        (JoinMode::Quorum, Some(n)) if n == 0 || n > m => c.at(
                            Some(i),
                            "required",
                            format!("must be between 1 and {m}, the branches of `{}`", p.id),
                        ),
                        (JoinMode::Quorum, None) => {
                            c.at(Some(i), "required", "a quorum join needs `required`")
                        }
                        (JoinMode::All | JoinMode::Any, Some(_)) => {
                            c.at(Some(i), "required", "only a quorum join takes `required`")
                        }
                        _ => {}
                    }
                }
            }
            _ => c.at(Some(i), "", "more than one parallel step names this join"),
        }
    }
}

/// Every step can be reached from `start`, and an end can be reached at all.
fn check_reachability(c: &mut Checker<'_>, index: &BTreeMap<&str, usize>) {
    let def = c.def;
    let Some(&start) = index.get(def.start.as_str()) else {
        return;
    };
    let mut seen = vec![false; def.steps.len()];
    let mut queue = VecDeque::from([start]);
    seen[start] = true;
    while let Some(i) = queue.pop_front() {
        for (_, target) in def.steps[i].targets() {
            if let Some(&j) = index.get(target)
                && !seen[j]
            {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    for (i, reached) in seen.iter().enumerate() {
        if !reached {
            c.at(
                Some(i),
                "",
                format!("unreachable from the start step `{}`", def.start),
            );
        }
    }
    if !def.steps.iter().any(|s| matches!(s, Step::End(_))) {
        c.at(None, "steps", "a workflow needs an end step");
        return;
    }
    // Walking the steps backwards from every end finds the steps that can finish; a reached step
    // that cannot would loop forever (b -> c -> b) with no way out.
    let mut ends = vec![false; def.steps.len()];
    let mut back: Vec<Vec<usize>> = vec![Vec::new(); def.steps.len()];
    for (i, step) in def.steps.iter().enumerate() {
        for (_, target) in step.targets() {
            if let Some(&j) = index.get(target) {
                back[j].push(i);
            }
        }
    }
    let mut queue: VecDeque<usize> = (0..def.steps.len())
        .filter(|&i| matches!(def.steps[i], Step::End(_)))
        .collect();
    for &i in &queue {
        ends[i] = true;
    }
    while let Some(j) = queue.pop_front() {
        for &i in &back[j] {
            if !ends[i] {
                ends[i] = true;
                queue.push_back(i);
            }
        }
    }
    for (i, step) in def.steps.iter().enumerate() {
        if seen[i] && !ends[i] {
            let next: Vec<&str> = step.targets().into_iter().map(|(_, t)| t).collect();
            c.at(
                Some(i),
                "",
                format!(
                    "no end step can be reached from here: it only leads to {}, which loop without an end",
                    next.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// A fan-out's list, element key and join; `item`, `join` and `required` only with `for_each`.
fn check_fan_out(c: &mut Checker, i: usize, s: &SubworkflowStep) {
    let Some(list) = &s.for_each else {
        for (field, given) in [
            ("item", s.item.is_some()),
            ("join", s.join.is_some()),
            ("required", s.required.is_some()),
        ] {
            if given {
                c.at(
                    Some(i),
                    field,
                    "only a fan-out takes it: set `for_each` to the list to start one instance per element",
                );
            }
        }
        return;
    };
    if list.trim().is_empty() {
        c.at(Some(i), "for_each", "names no data field");
    }
    if s.item.as_deref().is_some_and(|k| k.trim().is_empty()) {
        c.at(Some(i), "item", "must not be empty");
    }
    match (s.join.unwrap_or_default(), s.required) {
        (JoinMode::Quorum, Some(0)) => c.at(Some(i), "required", "must be at least 1"),
        (JoinMode::Quorum, None) => c.at(Some(i), "required", "a quorum join needs `required`"),
        (JoinMode::All | JoinMode::Any, Some(_)) => {
            c.at(Some(i), "required", "only a quorum join takes `required`")
        }
        _ => {}
    }
    if !s.wait && (s.join.is_some() || s.output.is_some()) {
        c.at(
            Some(i),
            if s.join.is_some() { "join" } else { "output" },
            "a fan-out that does not wait (`wait = false`) has nothing to join",
        );
    }
}
