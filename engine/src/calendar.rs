//! Business time: a tenant's working hours per weekday and its holidays, in its time zone.
//! Deadlines may be stated in it (`due = "2 business days"`, a reminder `"4 business hours"`
//! before); such a time always falls within working hours, so no reminder fires at 03:00 on a
//! Sunday. Pure: the zone database is compiled in (chrono-tz), nothing is read.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Millis;

/// A length of time as a deadline states it: wall-clock, or business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Wall-clock time (`2d`, `4h 30m`).
    Wall(Duration),
    /// Working time (`4 business hours`, `90 business minutes`).
    Business(Duration),
    /// Working days (`2 business days`): the same time of day that many working days later.
    BusinessDays(u32),
}

impl Span {
    /// Whether it is zero.
    pub fn is_zero(&self) -> bool {
        match self {
            Span::Wall(d) | Span::Business(d) => d.is_zero(),
            Span::BusinessDays(n) => *n == 0,
        }
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if let [n, "business", unit] = words.as_slice() {
            let n: u32 = n
                .parse()
                .map_err(|_| format!("`{text}`: `{n}` is not a whole number"))?;
            return match *unit {
                "day" | "days" => Ok(Span::BusinessDays(n)),
                "hour" | "hours" => Ok(Span::Business(Duration::from_secs(u64::from(n) * 3_600))),
                "minute" | "minutes" => Ok(Span::Business(Duration::from_secs(u64::from(n) * 60))),
                other => Err(format!(
                    "`{text}`: business time is counted in days, hours or minutes, not `{other}`"
                )),
            };
        }
        if words.contains(&"business") {
            return Err(format!(
                "`{text}` is not a business time like `2 business days` or `4 business hours`"
            ));
        }
        humantime::parse_duration(text)
            .map(Span::Wall)
            .map_err(|e| {
                format!("`{text}` is not a duration like `2d`, `4h 30m` or `2 business days`: {e}")
            })
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::Wall(d) => write!(f, "{}", humantime::format_duration(*d)),
            Span::Business(d) if d.as_secs() % 3_600 == 0 => {
                write!(f, "{} business hours", d.as_secs() / 3_600)
            }
            Span::Business(d) => write!(f, "{} business minutes", d.as_secs() / 60),
            Span::BusinessDays(n) => write!(f, "{n} business days"),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Working hours per weekday, holidays and a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    tz: Tz,
    /// Monday first: the working intervals of each weekday, in order.
    week: [Vec<(NaiveTime, NaiveTime)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

/// How far a calendar looks for working time before it gives up (a calendar with no working
/// day at all is refused when it is made, so this only bounds the search).
const HORIZON_DAYS: u32 = 3_660;

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// How `24:00` is kept: working hours to the end of the day reach the next midnight. (Hours are
/// written to the minute, so no range ends at this second otherwise.)
const END_OF_DAY: NaiveTime = match NaiveTime::from_hms_opt(23, 59, 59) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

impl Default for Calendar {
    /// Monday to Friday, 09:00 to 17:00 UTC, no holidays: what business time means until a
    /// tenant says otherwise.
    fn default() -> Self {
        let day = vec![(hm(9, 0), hm(17, 0))];
        Calendar {
            tz: Tz::UTC,
            week: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                Vec::new(),
                Vec::new(),
            ],
            holidays: BTreeSet::new(),
        }
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
}

impl Calendar {
    /// A calendar from a zone name, each weekday's hours (`mon` → `["09:00-12:00",
    /// "13:00-17:00"]`; a day not named is not worked) and holidays (`2026-12-25`). The error
    /// names the field at fault.
    pub fn new(
        timezone: &str,
        hours: &std::collections::BTreeMap<String, Vec<String>>,
        holidays: &[String],
    ) -> Result<Calendar, (String, String)> {
        let tz = Tz::from_str(timezone).map_err(|_| {
            (
                "timezone".to_string(),
                format!("`{timezone}` is not an IANA time zone such as \"Europe/Berlin\""),
            )
        })?;
        let mut week: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (day, ranges) in hours {
            let Some(index) = WEEKDAYS.iter().position(|d| d == day) else {
                return Err((
                    format!("hours.{day}"),
                    format!("weekdays are {}", WEEKDAYS.join(", ")),
                ));
            };
            for (r, range) in ranges.iter().enumerate() {
                let field = format!("hours.{day}[{r}]");
                let parsed = range.split_once('-').and_then(|(a, b)| {
                    let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
                    let b = match b.trim() {
                        "24:00" => END_OF_DAY,
                        b => NaiveTime::parse_from_str(b, "%H:%M").ok()?,
                    };
                    Some((a, b))
                });
                match parsed {
                    Some((a, b)) if a < b => week[index].push((a, b)),
                    _ => {
                        return Err((
                            field,
                            format!("`{range}` is not a range of the day like \"09:00-17:00\""),
                        ));
                    }
                }
            }
            week[index].sort();
            if week[index].windows(2).any(|w| w[0].1 > w[1].0) {
                return Err((format!("hours.{day}"), "the ranges overlap".to_string()));
            }
        }
        if week.iter().all(Vec::is_empty) {
            return Err((
                "hours".to_string(),
                "a calendar needs working hours on at least one weekday".to_string(),
            ));
        }
        let mut days = BTreeSet::new();
        for (h, text) in holidays.iter().enumerate() {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                (
                    format!("holidays[{h}]"),
                    format!("`{text}` is not a date like 2026-12-25"),
                )
            })?;
            days.insert(date);
        }
        Ok(Calendar {
            tz,
            week,
            holidays: days,
        })
    }

    /// The calendar's time zone.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The instant `span` after `from`.
    pub fn after(&self, from: Millis, span: &Span) -> Millis {
        match span {
            Span::Wall(d) => from.saturating_add(ms(*d)),
            Span::Business(d) => self.add_working(from, ms(*d)),
            Span::BusinessDays(n) => self.add_days(from, *n),
        }
    }

    /// The instant `span` before `to` (a reminder before a due time).
    pub fn before(&self, to: Millis, span: &Span) -> Millis {
        match span {
            Span::Wall(d) => to.saturating_sub(ms(*d)),
            Span::Business(d) => self.sub_working(to, ms(*d)),
            Span::BusinessDays(n) => {
                // The same time of day `n` working days earlier, within working hours.
                let mut date = self.local(to).date();
                let time = self.local(to).time();
                let mut left = *n;
                for _ in 0..HORIZON_DAYS {
                    if left == 0 {
                        break;
                    }
                    date = date.pred_opt().unwrap_or(date);
                    if !self.intervals(date).is_empty() {
                        left -= 1;
                    }
                }
                self.clamp(date, time)
            }
        }
    }

    /// Working time between `from` and `to`, in milliseconds.
    pub fn between(&self, from: Millis, to: Millis) -> Millis {
        if to <= from {
            return 0;
        }
        let mut total = 0;
        let mut date = self.local(from).date();
        let last = self.local(to).date();
        for _ in 0..HORIZON_DAYS {
            for (start, end) in self.utc_intervals(date) {
                let (a, b) = (start.max(from), end.min(to));
                if b > a {
                    total += b - a;
                }
            }
            if date >= last {
                break;
            }
            date = date.succ_opt().unwrap_or(date);
        }
        total
    }

    fn local(&self, at: Millis) -> NaiveDateTime {
        Utc.timestamp_millis_opt(at as i64)
            .single()
            .map(|t| t.with_timezone(&self.tz).naive_local())
            .unwrap_or_default()
    }

    /// A local date and time as an instant; a time a DST change skips is taken as the first
    /// instant after the gap, a repeated one as its first occurrence.
    fn instant(&self, date: NaiveDate, time: NaiveTime) -> Millis {
        let local = date.and_time(time);
        let resolved = match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
            LocalResult::None => (1..=4).find_map(|q| {
                self.tz
                    .from_local_datetime(&(local + chrono::Duration::minutes(15 * q)))
                    .earliest()
            }),
        };
        resolved
            .map(|t| u64::try_from(t.with_timezone(&Utc).timestamp_millis()).unwrap_or(0))
            .unwrap_or(0)
    }

    fn intervals(&self, date: NaiveDate) -> &[(NaiveTime, NaiveTime)] {
        if self.holidays.contains(&date) {
            return &[];
        }
        &self.week[date.weekday().num_days_from_monday() as usize]
    }

    fn utc_intervals(&self, date: NaiveDate) -> Vec<(Millis, Millis)> {
        self.intervals(date)
            .iter()
            .map(|(a, b)| {
                let end = if *b == END_OF_DAY {
                    let next = date.succ_opt().unwrap_or(date);
                    self.instant(next, NaiveTime::MIN)
                } else {
                    self.instant(date, *b)
                };
                (self.instant(date, *a), end)
            })
            .collect()
    }

    fn add_working(&self, from: Millis, mut left: Millis) -> Millis {
        let mut date = self.local(from).date();
        for _ in 0..HORIZON_DAYS {
            for (start, end) in self.utc_intervals(date) {
                if end <= from {
                    continue;
                }
                let start = start.max(from);
                if left <= end - start {
                    return start + left;
                }
                left -= end - start;
            }
            date = date.succ_opt().unwrap_or(date);
        }
        from
    }

    fn sub_working(&self, to: Millis, mut left: Millis) -> Millis {
        let mut date = self.local(to).date();
        for _ in 0..HORIZON_DAYS {
            for (start, end) in self.utc_intervals(date).into_iter().rev() {
                if start >= to {
                    continue;
                }
                let end = end.min(to);
                if left <= end - start {
                    return end - left;
                }
                left -= end - start;
            }
            date = date.pred_opt().unwrap_or(date);
        }
        to
    }

    fn add_days(&self, from: Millis, n: u32) -> Millis {
        let open = self.add_working(from, 0);
        let local = self.local(open);
        let (mut date, time) = (local.date(), local.time());
        let mut left = n;
        for _ in 0..HORIZON_DAYS {
            if left == 0 {
                break;
            }
            date = date.succ_opt().unwrap_or(date);
            if !self.intervals(date).is_empty() {
                left -= 1;
            }
        }
        self.clamp(date, time)
    }

    /// `time` on `date` if it is working time, else the nearest edge of that day's hours.
    fn clamp(&self, date: NaiveDate, time: NaiveTime) -> Millis {
        let intervals = self.intervals(date);
        if intervals.iter().any(|(a, b)| *a <= time && time <= *b) {
            return self.instant(date, time);
        }
        let before: Option<&(NaiveTime, NaiveTime)> =
            intervals.iter().rev().find(|(_, b)| *b < time);
        match (before, intervals.first()) {
            (Some((_, b)), _) => self.instant(date, *b),
            (None, Some((a, _))) => self.instant(date, *a),
            (None, None) => self.instant(date, time),
        }
    }
}

fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
