//! A tenant's business calendar as its file states it: holidays listed inline and read from an
//! iCalendar file beside it.

use std::path::Path;

use flowgate::engine::calendar::Span;
use flowgate::tenant::TenantConfig;

fn at(rfc3339: &str) -> u64 {
    let parsed =
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    u64::try_from(parsed.timestamp_millis()).unwrap_or_default()
}

fn span(text: &str) -> Span {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_example_tenants_deadlines_skip_the_holidays_of_its_icalendar_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/tenant.toml");
    let tenant = TenantConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let calendar = tenant.calendar().unwrap_or_else(|e| panic!("{e}"));
    // Wednesday 5 May 2027, 15:00 in Berlin: two hours that day, Ascension Day (from the file)
    // off, two more on Friday morning.
    assert_eq!(
        calendar.after(at("2027-05-05T15:00:00+02:00"), &span("4 business hours")),
        at("2027-05-07T11:00:00+02:00")
    );
    // Christmas repeats yearly in the file: in 2030 as in 2026, 25 and 26 December are off.
    assert_eq!(
        calendar.after(at("2030-12-24T16:00:00+01:00"), &span("2 business hours")),
        at("2030-12-27T10:00:00+01:00")
    );
}

#[test]
fn a_holidays_file_that_cannot_be_read_keeps_the_tenant_from_loading_and_says_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = dir.path().join("tenant.toml");
    std::fs::write(
        &tenant,
        "id = \"t\"\n[calendar]\ntimezone = \"Europe/Berlin\"\nholidays_file = \"holidays.ics\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let load = || {
        TenantConfig::load(&tenant)
            .and_then(|t| t.calendar())
            .map(|_| ())
    };
    let missing = load().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        missing.contains("holidays.ics") && missing.contains("cannot read"),
        "{missing}"
    );
    std::fs::write(
        dir.path().join("holidays.ics"),
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nSUMMARY:Betriebsfeier\r\nDTSTART;VALUE=DATE:20270101\r\nRRULE:FREQ=NEVER\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = load().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused.contains(
            "holidays.ics: calendar.holidays_file: event `Betriebsfeier`: its RRULE `FREQ=NEVER`"
        ),
        "{refused}"
    );
}
