//! Process metrics over cases run through the engine: an invoice workflow hands each case on to
//! a payment workflow; the figures are checked against values worked out by hand.

use flowgate_engine::calendar::Calendar;
use flowgate_engine::process::{Costs, ProcessDefinition, case_figures, compute};
use flowgate_engine::{
    Applied, Command, Ctx, Effect, Event, Instance, Millis, Person, StartSpec, apply, start,
};
use serde_json::json;

use crate::env::{T0, definition};

const INVOICE: &str = r#"
id = "invoice"
start = "check"
[[steps]]
id = "check"
kind = "task"
role = "clerk"
on = { ok = "handed-on", reject = "refused" }
[[steps]]
id = "handed-on"
kind = "end"
then = { workflow = "payment" }
[[steps]]
id = "refused"
kind = "end"
outcome = "rejected"
"#;

const PAYMENT: &str = r#"
id = "payment"
start = "pay"
[[steps]]
id = "pay"
kind = "task"
role = "treasury"
next = "paid"
[[steps]]
id = "paid"
kind = "end"
"#;

const MINUTE: Millis = 60_000;

/// Around the clock, so that business time is wall-clock time here.
fn always() -> Calendar {
    let hours = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .map(|d| (d.to_string(), vec!["00:00-24:00".to_string()]))
        .into();
    Calendar::new("UTC", &hours, &[]).unwrap_or_else(|(f, m)| panic!("{f}: {m}"))
}

/// One instance and the events it produced.
struct Run {
    inst: Instance,
    events: Vec<Event>,
}

impl Run {
    fn keep(&mut self, inst: Instance, applied: Applied) -> Applied {
        self.inst = inst;
        self.events.extend(applied.events.iter().cloned());
        applied
    }

    fn command(&mut self, toml: &str, now: Millis, command: Command) -> Applied {
        let def = definition(toml);
        let calendar = always();
        let ctx = Ctx {
            def: &def,
            now,
            calendar: &calendar,
        };
        let (inst, applied) =
            apply(ctx, self.inst.clone(), command).unwrap_or_else(|e| panic!("{e}"));
        self.keep(inst, applied)
    }

    /// Claims the open task at `claim`, completes it at `done` with `outcome`.
    fn work(&mut self, toml: &str, claim: Millis, done: Millis, outcome: Option<&str>) -> Applied {
        let task = self
            .inst
            .open_tasks()
            .next()
            .map(|t| t.id.clone())
            .unwrap_or_else(|| panic!("no open task"));
        let by = Person::new("pam", &["clerk", "treasury"]);
        self.command(
            toml,
            claim,
            Command::ClaimTask {
                task: task.clone(),
                by: by.clone(),
            },
        );
        self.command(
            toml,
            done,
            Command::CompleteTask {
                task,
                by,
                outcome: outcome.map(str::to_string),
                data: Default::default(),
                expected_version: None,
                comment: None,
            },
        )
    }
}

fn begin(toml: &str, id: &str, now: Millis, process: Option<&str>) -> Run {
    let def = definition(toml);
    let calendar = always();
    let spec = StartSpec {
        id: id.into(),
        version: 1,
        tenant: "acme".into(),
        data: Default::default(),
        plugins: Default::default(),
        parent: None,
        process: process.map(str::to_string),
        started_by: if process.is_some() {
            "workflow invoice".into()
        } else {
            "ann".into()
        },
    };
    let ctx = Ctx {
        def: &def,
        now,
        calendar: &calendar,
    };
    let (inst, applied) = start(ctx, spec).unwrap_or_else(|e| panic!("{e}"));
    let mut run = Run {
        inst,
        events: Vec::new(),
    };
    run.keep(run.inst.clone(), applied);
    run
}

/// A case opened at `t`: the clerk claims after `queue`, works `work`; the payment starts
/// `handoff` later, and treasury claims it after `queue` and works `work` again.
fn paid_case(
    n: u32,
    t: Millis,
    queue: Millis,
    work: Millis,
    handoff: Millis,
) -> Vec<(Instance, Vec<Event>)> {
    let id = format!("inv-{n}");
    let mut invoice = begin(INVOICE, &id, t, None);
    let done = t + queue + work;
    let asked = invoice.work(INVOICE, t + queue, done, Some("ok"));
    let (token, activation) = asked
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::StartNext {
                token: Some(token),
                activation: Some(a),
                ..
            } => Some((*token, *a)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no next start"));
    let pay_id = format!("pay-{n}");
    let mut payment = begin(PAYMENT, &pay_id, done + handoff, Some(&id));
    invoice.command(
        INVOICE,
        done + handoff,
        Command::NextStarted {
            token,
            activation,
            instance: pay_id,
        },
    );
    let start = done + handoff;
    payment.work(PAYMENT, start + queue, start + queue + work, None);
    vec![
        (invoice.inst, invoice.events),
        (payment.inst, payment.events),
    ]
}

fn accounts_payable() -> ProcessDefinition {
    ProcessDefinition {
        id: "accounts-payable".into(),
        name: "Accounts payable".into(),
        description: String::new(),
        starts: "invoice".into(),
        workflows: vec!["invoice".into(), "payment".into()],
    }
}

fn costs() -> Costs {
    Costs {
        currency: "EUR".into(),
        person_hour: 60.0,
        steps: [("payment.pay".to_string(), 0.5)].into(),
    }
}

#[test]
fn one_case_reads_as_its_cycle_handoff_waits_and_cost() {
    let case = paid_case(1, T0, 10 * MINUTE, 20 * MINUTE, 2 * MINUTE);
    let f = case_figures(&case, &always(), Some(&costs()));
    assert!(!f.running);
    // 10 + 20 in the invoice, 2 handing on, 10 + 20 in the payment.
    assert_eq!(f.cycle_ms, Some(62 * MINUTE));
    assert_eq!(f.cycle_business_ms, Some(62 * MINUTE));
    assert_eq!(f.outcome.as_deref(), Some("payment completed"));
    assert_eq!(f.handoffs.len(), 1);
    assert_eq!(
        (f.handoffs[0].from.as_str(), f.handoffs[0].to.as_str()),
        ("inv-1", "pay-1")
    );
    assert_eq!(f.handoffs[0].delay_ms, 2 * MINUTE);
    let waits: Vec<(&str, &str, Millis)> = f
        .waits
        .iter()
        .map(|w| (w.workflow.as_str(), w.step.as_str(), w.ms))
        .collect();
    assert_eq!(
        waits,
        [
            ("invoice", "check", 30 * MINUTE),
            ("payment", "pay", 30 * MINUTE)
        ]
    );
    // 40 minutes of people's work at 60 an hour, and one priced payment.
    let cost = f.cost.unwrap_or_else(|| panic!("priced"));
    assert_eq!(cost.person_ms, 40 * MINUTE);
    assert_eq!((cost.people, cost.steps, cost.total), (40.0, 0.5, 40.5));
}

#[test]
fn process_metrics_give_percentiles_over_the_cases_that_ended_in_the_range() {
    let hour = 60 * MINUTE;
    let mut cases = vec![
        paid_case(1, T0, 10 * MINUTE, 20 * MINUTE, 0),
        paid_case(2, T0 + hour, 20 * MINUTE, 40 * MINUTE, 4 * MINUTE),
        paid_case(3, T0 + 2 * hour, 30 * MINUTE, 60 * MINUTE, 8 * MINUTE),
    ];
    // A fourth invoice is refused: its case ends in the invoice workflow.
    let mut refused = begin(INVOICE, "inv-4", T0 + 3 * hour, None);
    refused.work(
        INVOICE,
        T0 + 3 * hour,
        T0 + 3 * hour + 5 * MINUTE,
        Some("reject"),
    );
    cases.push(vec![(refused.inst, refused.events)]);
    // A fifth still waits for its clerk.
    let open = begin(INVOICE, "inv-5", T0 + 4 * hour, None);
    cases.push(vec![(open.inst, open.events)]);

    let (calendar, costs) = (always(), costs());
    let figures = cases
        .iter()
        .map(|members| case_figures(members, &calendar, Some(&costs)));
    let m = compute(
        &accounts_payable(),
        figures,
        T0,
        T0 + 24 * hour,
        Some(&costs),
    );
    assert_eq!((m.started, m.ended, m.running), (5, 4, 1));
    assert_eq!(m.outcomes["payment completed"], 3);
    assert_eq!(m.outcomes["invoice rejected"], 1);
    // Cycle times: 60, 124, 188 minutes and 5 minutes.
    assert_eq!(m.cycle_time.count, 4);
    assert_eq!(m.cycle_time.p50_ms, 60 * MINUTE);
    assert_eq!(m.cycle_time.p90_ms, 188 * MINUTE);
    assert_eq!(m.cycle_time.max_ms, 188 * MINUTE);
    let handoff = &m.handoffs["invoice → payment"];
    assert_eq!(
        (handoff.count, handoff.p50_ms, handoff.max_ms),
        (3, 4 * MINUTE, 8 * MINUTE)
    );
    // Where the cases wait: the clerk's check (30 + 60 + 90 + 5 minutes) and the payment
    // (30 + 60 + 90) against 12 minutes of handoffs, 377 in all.
    assert_eq!(
        (m.waits[0].workflow.as_str(), m.waits[0].step.as_str()),
        ("invoice", "check")
    );
    assert_eq!(m.waits[0].total_ms, 185 * MINUTE);
    assert_eq!(m.waits[0].per_case.count, 4);
    assert!((m.waits[0].share - 185.0 / 377.0).abs() < 1e-9);
    assert_eq!(m.waits[1].total_ms, 180 * MINUTE);
    assert_eq!(m.waits[2].step, "(handoff to payment)");
    assert_eq!(m.waits[2].total_ms, 12 * MINUTE);
    // Cost per case: people's time (40, 80, 120 minutes; the refused one 5) at 60 an hour,
    // plus 0.50 per payment.
    let cost = m.cost.unwrap_or_else(|| panic!("priced"));
    assert_eq!(cost.per_case.count, 4);
    assert_eq!(cost.per_case.p50, 40.5);
    assert_eq!(cost.per_case.max, 120.5);
    assert_eq!(cost.per_case.total, 5.0 + 40.5 + 80.5 + 120.5);
    assert_eq!((cost.people, cost.steps), (245.0, 1.5));

    // A range that ends before the last paid case ends leaves it out.
    let unpriced = cases
        .iter()
        .map(|members| case_figures(members, &calendar, None));
    let early = compute(
        &accounts_payable(),
        unpriced,
        T0,
        T0 + 3 * hour + 5 * MINUTE,
        None,
    );
    assert_eq!(early.ended, 2);
    assert!(early.cost.is_none(), "no costs, no cost figures");
    assert_eq!(json!(early)["cycle_time"]["max_ms"], 124 * MINUTE);
}

#[test]
fn process_definitions_and_costs_say_what_is_wrong() {
    let mut p = accounts_payable();
    assert!(p.problems().is_empty());
    p.starts = "intake".into();
    p.workflows.push("payment".into());
    let problems = p.problems();
    assert!(
        problems
            .iter()
            .any(|e| e.contains("`payment` is listed twice")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|e| e.starts_with("starts: `intake`")),
        "{problems:?}"
    );
    let mut c = costs();
    assert!(c.problems().is_empty());
    c.currency = "euro".into();
    c.person_hour = -1.0;
    c.steps.insert("pay".into(), f64::NAN);
    let problems = c.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
}
