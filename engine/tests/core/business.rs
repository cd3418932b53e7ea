//! Business time: deadlines counted in a tenant's working hours, across a weekend, holidays and
//! both DST changes of a real zone; and a task's deadline timers stated in it.

use std::collections::BTreeMap;

use flowgate_engine::TimerKind;
use flowgate_engine::calendar::{Calendar, Span};
use serde_json::json;

use crate::env::Env;

fn at(rfc3339: &str) -> u64 {
    let parsed =
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    u64::try_from(parsed.timestamp_millis()).unwrap_or_default()
}

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn span(text: &str) -> Span {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// Berlin, Monday to Friday 09:00-17:00, with Easter 2026's Good Friday and Monday off.
fn berlin() -> Calendar {
    let hours: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| (d.to_string(), vec!["09:00-17:00".to_string()]))
        .collect();
    let holidays = ["2026-04-03".to_string(), "2026-04-06".to_string()];
    Calendar::new("Europe/Berlin", &hours, &holidays).unwrap_or_else(|(f, e)| panic!("{f}: {e}"))
}

#[test]
fn business_days_cross_a_weekend_and_the_spring_change_at_the_same_local_time() {
    let c = berlin();
    // Friday 27 March, 15:00 CET; Berlin moves to CEST on Sunday the 29th.
    let opened = at("2026-03-27T15:00:00+01:00");
    let due = c.after(opened, &span("2 business days"));
    assert_eq!(iso(due), "2026-03-31T13:00:00Z", "Tuesday 15:00 CEST");
    // Four working hours before it: Tuesday 11:00, never the weekend.
    let reminder = c.before(due, &span("4 business hours"));
    assert_eq!(iso(reminder), "2026-03-31T09:00:00Z");
}

#[test]
fn business_hours_skip_the_night_and_the_weekend() {
    let c = berlin();
    let opened = at("2026-03-27T15:00:00+01:00");
    // Two hours on Friday, two on Monday morning (now in CEST).
    let due = c.after(opened, &span("4 business hours"));
    assert_eq!(iso(due), "2026-03-30T09:00:00Z");
    assert_eq!(c.between(opened, due), 4 * 3_600_000);
    // A reminder four working hours before Monday 10:00 lands on Friday afternoon.
    let monday_ten = at("2026-03-30T10:00:00+02:00");
    let reminder = c.before(monday_ten, &span("4 business hours"));
    assert_eq!(iso(reminder), "2026-03-27T13:00:00Z", "Friday 14:00 CET");
}

#[test]
fn the_autumn_change_and_holidays_are_counted_right() {
    let c = berlin();
    // Friday 23 October, 16:00 CEST; Berlin is back on CET from Sunday the 25th.
    let due = c.after(at("2026-10-23T16:00:00+02:00"), &span("2 business hours"));
    assert_eq!(iso(due), "2026-10-26T09:00:00Z", "Monday 10:00 CET");
    // Thursday before Easter, 16:00: Good Friday and Easter Monday are holidays.
    let due = c.after(at("2026-04-02T16:00:00+02:00"), &span("1 business days"));
    assert_eq!(iso(due), "2026-04-07T14:00:00Z", "Tuesday 16:00 CEST");
    // Opened out of hours (Saturday night): counted from Monday's opening.
    let due = c.after(at("2026-03-28T22:00:00+01:00"), &span("1 business hours"));
    assert_eq!(iso(due), "2026-03-30T08:00:00Z", "Monday 10:00 CEST");
}

#[test]
fn spans_are_read_and_written_as_people_write_them() {
    assert_eq!(span("2 business days"), Span::BusinessDays(2));
    assert_eq!(span("4 business hours").to_string(), "4 business hours");
    assert_eq!(span("2d").to_string(), "2days");
    for bad in ["2 business weeks", "two business days", "business", "soon"] {
        assert!(bad.parse::<Span>().is_err(), "{bad}");
    }
    let hours: BTreeMap<String, Vec<String>> =
        BTreeMap::from([("mon".to_string(), vec!["17:00-09:00".to_string()])]);
    let err = Calendar::new("UTC", &hours, &[]).err().map(|(f, _)| f);
    assert_eq!(err.as_deref(), Some("hours.mon[0]"));
    let err = Calendar::new("UTC", &BTreeMap::new(), &[])
        .err()
        .map(|(f, _)| f);
    assert_eq!(err.as_deref(), Some("hours"));
    let err = Calendar::new("Nowhere/Land", &hours, &[])
        .err()
        .map(|(f, _)| f);
    assert_eq!(err.as_deref(), Some("timezone"));
}

#[test]
fn a_task_deadline_in_business_time_arms_its_timers_in_working_hours() {
    let toml = r#"
id = "sla"
start = "answer"
[[steps]]
id = "answer"
kind = "task"
role = "agent"
next = "done"
[steps.deadline]
due = "1 business days"
reminders = ["2 business hours"]
escalation = { action = "notify", after = "1 business hours", roles = ["lead"] }
[[steps]]
id = "done"
kind = "end"
"#;
    // The tests' T0 is Tuesday 14 November 2023, 22:13 UTC: after hours in the default
    // calendar (Monday to Friday, 09:00-17:00 UTC).
    let (env, _) = Env::start(toml, json!({}));
    let mut timers: Vec<(String, String)> = env
        .inst
        .timers
        .values()
        .map(|t| {
            let kind = match t.kind {
                TimerKind::Reminder { .. } => "reminder",
                TimerKind::Due { .. } => "due",
                TimerKind::Escalate { .. } => "escalate",
                _ => "other",
            };
            (kind.to_string(), iso(t.due_at))
        })
        .collect();
    timers.sort();
    assert_eq!(
        timers,
        [
            ("due".to_string(), "2023-11-16T09:00:00Z".to_string()),
            ("escalate".to_string(), "2023-11-16T10:00:00Z".to_string()),
            ("reminder".to_string(), "2023-11-15T15:00:00Z".to_string()),
        ]
    );
}
