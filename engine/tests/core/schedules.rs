//! When schedules are due: cron in a real time zone across both DST changes, and intervals.

use flowgate_engine::definition::Schedule;
use flowgate_engine::schedule::Due;

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

fn schedule(toml_fields: &str) -> Schedule {
    let source = format!("id = \"s\"\n{toml_fields}");
    toml::from_str(&source).unwrap_or_else(|e| panic!("{e}"))
}

fn due(toml_fields: &str) -> Due {
    Due::of(&schedule(toml_fields)).unwrap_or_else(|(field, e)| panic!("{field}: {e}"))
}

/// The due times after `from`, `n` of them, in UTC.
fn next(due: &Due, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = at(from);
    for _ in 0..n {
        let Some(next) = due.next_after(t) else { break };
        out.push(iso(next));
        t = next;
    }
    out
}

#[test]
fn a_weekday_cron_in_berlin_skips_the_weekend_and_follows_the_spring_change() {
    let d = due("cron = \"30 9 * * MON-FRI\"\ntimezone = \"Europe/Berlin\"");
    // Friday 27 March 2026 is the last weekday in CET (UTC+1); Monday 30 March is in CEST.
    assert_eq!(
        next(&d, "2026-03-27T00:00:00Z", 2),
        ["2026-03-27T08:30:00Z", "2026-03-30T07:30:00Z"]
    );
}

#[test]
fn a_local_time_the_spring_change_removes_fires_once_that_day() {
    // 02:30 does not exist in Berlin on 29 March 2026 (clocks go from 02:00 to 03:00).
    let d = due("cron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"");
    let times = next(&d, "2026-03-28T12:00:00Z", 3);
    let on_29th = times.iter().filter(|t| t.starts_with("2026-03-29")).count()
        + times
            .iter()
            .filter(|t| t.starts_with("2026-03-28T2"))
            .count();
    assert!(on_29th <= 1, "{times:?}");
    assert!(
        times.contains(&"2026-03-30T00:30:00Z".to_string()),
        "{times:?}"
    );
}

#[test]
fn a_local_time_the_autumn_change_repeats_fires_once() {
    // 02:30 happens twice in Berlin on 25 October 2026 (03:00 CEST back to 02:00 CET).
    let d = due("cron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"");
    let times = next(&d, "2026-10-24T12:00:00Z", 3);
    let that_night: Vec<&String> = times
        .iter()
        .filter(|t| t.as_str() > "2026-10-24T12" && t.as_str() < "2026-10-25T12")
        .collect();
    assert_eq!(that_night.len(), 1, "{times:?}");
    assert!(
        times.contains(&"2026-10-26T01:30:00Z".to_string()),
        "{times:?}"
    );
}

#[test]
fn an_interval_is_aligned_to_the_clock() {
    let d = due("every = \"15m\"");
    assert_eq!(
        next(&d, "2026-12-02T10:07:00Z", 3),
        [
            "2026-12-02T10:15:00Z",
            "2026-12-02T10:30:00Z",
            "2026-12-02T10:45:00Z"
        ]
    );
}

#[test]
fn a_bad_schedule_names_its_field() {
    for (fields, field) in [
        ("cron = \"61 * * * *\"", "cron"),
        (
            "cron = \"0 9 * * *\"\ntimezone = \"Mars/Olympus\"",
            "timezone",
        ),
        ("every = \"500ms\"", "every"),
        ("cron = \"0 9 * * *\"\nevery = \"1h\"", "cron"),
        ("", "cron"),
    ] {
        let got = Due::of(&schedule(fields)).err().map(|(f, _)| f);
        assert_eq!(got, Some(field), "{fields}");
    }
}
