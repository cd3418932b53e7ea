//! Holidays from an iCalendar file (RFC 5545), as public holiday calendars are published: every
//! day an event covers is a holiday, each occurrence of a repeating event included.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use icalendar::{CalendarDateTime, Component, DatePerhapsTime};

/// Repeating events are expanded through this year.
const HORIZON_YEAR: i32 = 2100;
/// The occurrences one repeating event may have before the horizon.
const MAX_OCCURRENCES: u16 = 5_000;
/// The days one event may span.
const MAX_SPAN_DAYS: i64 = 366;

/// The days the calendar's events cover, in `zone` for events given at an instant. An error
/// names the event (its summary, or else its UID) and what is wrong with it.
pub fn parse(text: &str, zone: Tz) -> Result<BTreeSet<NaiveDate>, String> {
    let calendar: icalendar::Calendar = text
        .parse()
        .map_err(|e: String| format!("not an iCalendar file: {}", e.trim()))?;
    let mut days = BTreeSet::new();
    for event in calendar.events() {
        let name = event
            .get_summary()
            .or_else(|| event.get_uid())
            .unwrap_or("(an event without summary or UID)");
        let fail = |why: String| format!("event `{name}`: {why}");
        if event.property_value("STATUS") == Some("CANCELLED") {
            continue;
        }
        let start = event
            .get_start()
            .ok_or_else(|| fail("has no DTSTART (or it is not a date)".into()))?;
        let first = date_of(&start, zone);
        // DTEND is exclusive for dates; an event given at instants covers the days it touches.
        let last = match event.get_end() {
            Some(end @ DatePerhapsTime::Date(_)) => date_of(&end, zone).pred_opt().unwrap_or(first),
            Some(end) => date_of(&end, zone),
            None => first,
        }
        .max(first);
        let span = (last - first).num_days();
        if span >= MAX_SPAN_DAYS {
            return Err(fail(format!(
                "spans {} days; at most {MAX_SPAN_DAYS}",
                span + 1
            )));
        }
        let starts = match event.property_value("RRULE") {
            None => vec![first],
            Some(rule) => occurrences(first, rule, &exdates(event, zone)).map_err(fail)?,
        };
        for start in starts {
            for offset in 0..=span {
                if let Some(day) = start.checked_add_signed(chrono::Duration::days(offset)) {
                    days.insert(day);
                }
            }
        }
    }
    Ok(days)
}

/// The local date of a DTSTART or DTEND.
fn date_of(value: &DatePerhapsTime, zone: Tz) -> NaiveDate {
    match value {
        DatePerhapsTime::Date(date) => *date,
        DatePerhapsTime::DateTime(CalendarDateTime::Floating(local)) => local.date(),
        DatePerhapsTime::DateTime(CalendarDateTime::Utc(at)) => {
            at.with_timezone(&zone).date_naive()
        }
        // A time in a zone of its own (Outlook names zones its own way): its date there.
        DatePerhapsTime::DateTime(CalendarDateTime::WithTimezone { date_time, .. }) => {
            date_time.date()
        }
    }
}

/// The dates an event's EXDATE properties leave out.
fn exdates(event: &icalendar::Event, zone: Tz) -> BTreeSet<NaiveDate> {
    event
        .multi_properties()
        .get("EXDATE")
        .into_iter()
        .flatten()
        .chain(event.properties().get("EXDATE"))
        .flat_map(|p| p.value().split(',').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|value| {
            let property = icalendar::Property::new("EXDATE", value.trim());
            Some(date_of(&DatePerhapsTime::from_property(&property)?, zone))
        })
        .collect()
}

/// `rule` with its `UNTIL` in UTC, as the rule's start is: a date (`UNTIL=20281225`) to the end
/// of that day, a floating time as UTC.
fn in_utc(rule: &str) -> String {
    rule.split(';')
        .map(|part| match part.strip_prefix("UNTIL=") {
            Some(date) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
                format!("UNTIL={date}T235959Z")
            }
            Some(time) if !time.ends_with('Z') => format!("UNTIL={time}Z"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The start dates of a repeating event through the horizon, less its exceptions.
fn occurrences(
    first: NaiveDate,
    rule: &str,
    except: &BTreeSet<NaiveDate>,
) -> Result<Vec<NaiveDate>, String> {
    let set: rrule::RRuleSet = format!(
        "DTSTART:{}T000000Z\nRRULE:{}",
        first.format("%Y%m%d"),
        in_utc(rule)
    )
    .parse()
    .map_err(|e| format!("its RRULE `{rule}` is not a recurrence rule: {e}"))?;
    let horizon = rrule::Tz::UTC
        .with_ymd_and_hms(HORIZON_YEAR, 12, 31, 23, 59, 59)
        .single()
        .ok_or("the horizon is not a date")?;
    let found = set.before(horizon).all(MAX_OCCURRENCES);
    if found.limited {
        return Err(format!(
            "its RRULE `{rule}` repeats more than {MAX_OCCURRENCES} times before {HORIZON_YEAR}; \
             a day off every week belongs in the working hours"
        ));
    }
    Ok(found
        .dates
        .iter()
        .map(|at| at.date_naive())
        .filter(|d| !except.contains(d) && d.year() <= HORIZON_YEAR)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn calendar(events: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//holidays//EN\r\n{events}END:VCALENDAR\r\n"
        )
    }

    fn days(text: &str) -> Vec<String> {
        parse(text, BERLIN)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    fn refusal(text: &str) -> String {
        match parse(text, BERLIN) {
            Ok(days) => panic!("accepted: {days:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn dated_events_are_the_days_they_cover_with_dtend_exclusive() {
        let text = calendar(
            "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Tag der Arbeit\r\nDTSTART;VALUE=DATE:20270501\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:Weihnachten\r\nDTSTART;VALUE=DATE:20271225\r\nDTEND;VALUE=DATE:20271227\r\nEND:VEVENT\r\n",
        );
        assert_eq!(days(&text), ["2027-05-01", "2027-12-25", "2027-12-26"]);
    }

    #[test]
    fn a_repeating_holiday_is_every_occurrence_less_its_exceptions() {
        let text = calendar(
            "BEGIN:VEVENT\r\nUID:3\r\nSUMMARY:Tag der Deutschen Einheit\r\nDTSTART;VALUE=DATE:20261003\r\n\
             RRULE:FREQ=YEARLY;COUNT=4\r\nEXDATE;VALUE=DATE:20281003\r\nEND:VEVENT\r\n",
        );
        assert_eq!(days(&text), ["2026-10-03", "2027-10-03", "2029-10-03"]);
        let until_a_date = calendar(
            "BEGIN:VEVENT\r\nUID:5\r\nSUMMARY:Heiligabend\r\nDTSTART;VALUE=DATE:20261224\r\nRRULE:FREQ=YEARLY;UNTIL=20281224\r\nEND:VEVENT\r\n",
        );
        assert_eq!(
            days(&until_a_date),
            ["2026-12-24", "2027-12-24", "2028-12-24"]
        );
        let open_ended = calendar(
            "BEGIN:VEVENT\r\nUID:4\r\nSUMMARY:Neujahr\r\nDTSTART;VALUE=DATE:20270101\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n",
        );
        let all = days(&open_ended);
        assert_eq!(all.len(), 74, "2027 through {HORIZON_YEAR}");
        assert_eq!(all.last().map(String::as_str), Some("2100-01-01"));
    }

    #[test]
    fn an_event_at_an_instant_is_the_local_day_and_a_cancelled_one_is_none() {
        let text = calendar(
            "BEGIN:VEVENT\r\nUID:5\r\nSUMMARY:Betriebsausflug\r\nDTSTART:20270611T230000Z\r\nDTEND:20270612T150000Z\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:6\r\nSUMMARY:Abgesagt\r\nSTATUS:CANCELLED\r\nDTSTART;VALUE=DATE:20270701\r\nEND:VEVENT\r\n",
        );
        // 23:00 UTC is already the next day in Berlin.
        assert_eq!(days(&text), ["2027-06-12"]);
    }

    #[test]
    fn what_cannot_be_read_is_refused_naming_the_event_and_why() {
        assert!(refusal("not a calendar").starts_with("not an iCalendar file"));
        let no_start = calendar("BEGIN:VEVENT\r\nUID:7\r\nSUMMARY:Ohne Datum\r\nEND:VEVENT\r\n");
        assert_eq!(
            refusal(&no_start),
            "event `Ohne Datum`: has no DTSTART (or it is not a date)"
        );
        let bad_rule = calendar(
            "BEGIN:VEVENT\r\nUID:8\r\nDTSTART;VALUE=DATE:20270101\r\nRRULE:FREQ=SOMETIMES\r\nEND:VEVENT\r\n",
        );
        let why = refusal(&bad_rule);
        assert!(
            why.starts_with("event `8`: its RRULE `FREQ=SOMETIMES`"),
            "{why}"
        );
        let weekly = calendar(
            "BEGIN:VEVENT\r\nUID:9\r\nSUMMARY:Freitags frei\r\nDTSTART;VALUE=DATE:20270101\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\n",
        );
        assert!(refusal(&weekly).contains("more than 5000 times"));
        let long = calendar(
            "BEGIN:VEVENT\r\nUID:10\r\nSUMMARY:Sabbatical\r\nDTSTART;VALUE=DATE:20270101\r\nDTEND;VALUE=DATE:20290101\r\nEND:VEVENT\r\n",
        );
        assert_eq!(
            refusal(&long),
            "event `Sabbatical`: spans 731 days; at most 366"
        );
    }
}
