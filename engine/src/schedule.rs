//! When a schedule is due: the next cron occurrence in its time zone, or the next multiple of
//! its interval. Pure functions of the schedule and a time.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::Millis;
use crate::definition::Schedule;

/// A schedule read for computing: its cron expression parsed and its zone found.
#[derive(Debug, Clone)]
pub struct Due {
    when: When,
}

#[derive(Debug, Clone)]
enum When {
    Cron(Box<Cron>, Tz),
    Every(Millis),
}

impl Due {
    /// Reads `schedule`, or says what is wrong with it (which field, and why).
    pub fn of(schedule: &Schedule) -> Result<Due, (&'static str, String)> {
        let tz = Tz::from_str(&schedule.timezone).map_err(|_| {
            (
                "timezone",
                format!(
                    "`{}` is not an IANA time zone such as \"Europe/Berlin\" or \"UTC\"",
                    schedule.timezone
                ),
            )
        })?;
        match (&schedule.cron, schedule.every) {
            (Some(cron), None) => {
                let parsed = Cron::from_str(cron)
                    .map_err(|e| ("cron", format!("`{cron}` is not a cron expression: {e}")))?;
                Ok(Due {
                    when: When::Cron(Box::new(parsed), tz),
                })
            }
            (None, Some(every)) => {
                let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
                if ms < 1_000 {
                    return Err(("every", "must be at least 1s".to_string()));
                }
                Ok(Due {
                    when: When::Every(ms),
                })
            }
            _ => Err((
                "cron",
                "a schedule needs exactly one of `cron` or `every`".to_string(),
            )),
        }
    }

    /// The first due time strictly after `after`, if there is one.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        match &self.when {
            When::Every(ms) => (after / ms).checked_add(1)?.checked_mul(*ms),
            When::Cron(cron, tz) => {
                let at = Utc
                    .timestamp_millis_opt(i64::try_from(after).ok()?)
                    .single()?;
                let local: DateTime<Tz> = at.with_timezone(tz);
                let next = cron.find_next_occurrence(&local, false).ok()?;
                u64::try_from(next.with_timezone(&Utc).timestamp_millis()).ok()
            }
        }
    }
}
