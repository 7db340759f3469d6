//! Cron schedules with the meaning of robfig/cron's `ParseStandard` (the Kubernetes CronJob
//! controller's parser), evaluated in an IANA time zone, and the CronJob controller's rules for
//! missed runs. Pure: every function takes `now` or a time, never reads a clock.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Set on a day field written as `*` or `?`: then day-of-month and day-of-week must both match;
/// otherwise either may (robfig's and Vixie cron's rule).
const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    tz: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid schedule {schedule:?}: {reason}")]
    InvalidSchedule { schedule: String, reason: String },
    #[error("invalid time zone {0:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    InvalidTimeZone(String),
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[] };
const DOM: Field = Field { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Field = Field { name: "day of week", min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

fn value(field: &Field, s: &str) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(field.min + i as u32);
    }
    let v: u32 = s.parse().map_err(|_| format!("{:?} is not a number or a name in the {} field", s, field.name))?;
    if v < field.min || v > field.max {
        return Err(format!("{v} is outside {}-{} in the {} field", field.min, field.max, field.name));
    }
    Ok(v)
}

fn parse_field(field: &Field, text: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step {s:?} in the {} field is not a number", field.name))?;
                if step == 0 {
                    return Err(format!("step 0 in the {} field", field.name));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end, mut extra) = if range == "*" || range == "?" {
            (field.min, field.max, STAR)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(field, a)?, value(field, b)?, 0)
        } else {
            let v = value(field, range)?;
            // `n/step` means from n to the end of the range.
            (v, if step.is_some() { field.max } else { v }, 0)
        };
        if start > end {
            return Err(format!("range {range:?} in the {} field runs backwards", field.name));
        }
        let step = step.unwrap_or(1);
        if step > 1 {
            extra = 0;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
        bits |= extra;
    }
    Ok(bits)
}

impl Schedule {
    /// Parses a standard 5-field cron expression or a descriptor (`@yearly`, `@annually`,
    /// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`), evaluated in `time_zone`
    /// (an IANA name; `None` means UTC).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz: Tz = match time_zone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| ScheduleError::InvalidTimeZone(name.to_owned()))?,
        };
        let invalid = |reason: String| ScheduleError::InvalidSchedule { schedule: schedule.to_owned(), reason };
        let trimmed = schedule.trim();
        let spec = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") => {
                return Err(invalid("set the time zone with spec.timeZone, not in the schedule".into()));
            }
            s if s.starts_with('@') => return Err(invalid(format!("unknown descriptor {s}"))),
            s => s,
        };
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(invalid(format!("expected 5 fields (minute hour day-of-month month day-of-week), got {}", fields.len())));
        }
        Ok(Schedule {
            minute: parse_field(&MINUTE, fields[0]).map_err(invalid)?,
            hour: parse_field(&HOUR, fields[1]).map_err(invalid)?,
            dom: parse_field(&DOM, fields[2]).map_err(invalid)?,
            month: parse_field(&MONTH, fields[3]).map_err(invalid)?,
            dow: parse_field(&DOW, fields[4]).map_err(invalid)?,
            tz,
        })
    }

    fn day_matches(&self, t: &DateTime<Tz>) -> bool {
        let dom = self.dom & (1 << t.day()) != 0;
        let dow = self.dow & (1 << t.weekday().num_days_from_sunday()) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 { dom && dow } else { dom || dow }
    }

    /// A local wall-clock time as an instant. Like Go's `time.Date`: a time in a DST gap moves
    /// forward by the gap; a repeated time takes its first occurrence.
    fn local(&self, naive: NaiveDateTime) -> DateTime<Tz> {
        let mut n = naive;
        for _ in 0..4 {
            if let Some(t) = self.tz.from_local_datetime(&n).earliest() {
                return t;
            }
            n += Duration::minutes(30);
        }
        self.tz.from_utc_datetime(&naive)
    }

    /// The first scheduled time strictly after `after`, or `None` if there is none within five
    /// years (e.g. `0 0 30 2 *`). robfig/cron's algorithm: hours and minutes advance in absolute
    /// time, so a time skipped by a DST change does not run and a repeated one runs twice,
    /// as with a Kubernetes CronJob.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Truncate in UTC: chrono's `with_second` on a zoned time fails in a repeated hour.
        let minute = after.with_second(0)?.with_nanosecond(0)?;
        let mut t = (minute + Duration::minutes(1)).with_timezone(&self.tz);
        let year_limit = t.year() + 5;
        let mut added = false;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while self.month & (1 << t.month()) == 0 {
                if !added {
                    added = true;
                    t = self.local(NaiveDate::from_ymd_opt(t.year(), t.month(), 1)?.and_hms_opt(0, 0, 0)?);
                }
                let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
                t = self.local(NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?);
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = self.local(t.date_naive().and_hms_opt(0, 0, 0)?);
                }
                t = self.local(t.naive_local() + Duration::days(1));
                // Midnight may not exist or repeat on a DST day; get back to it.
                if t.hour() != 0 {
                    t = if t.hour() > 12 {
                        t + Duration::hours(24 - i64::from(t.hour()))
                    } else {
                        t - Duration::hours(i64::from(t.hour()))
                    };
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = self.local(t.date_naive().and_hms_opt(t.hour(), 0, 0)?);
                }
                t += Duration::hours(1);
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << t.minute()) == 0 {
                added = true;
                t += Duration::minutes(1);
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t.with_timezone(&Utc));
        }
    }
}

/// Runs beyond which the controller reports that too many were missed (as the CronJob controller).
pub const TOO_MANY_MISSED: u32 = 100;

/// What the schedule says to do at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// The most recent scheduled time not yet run, within the deadline: start it now.
    pub run: Option<DateTime<Utc>>,
    /// Scheduled times passed since the last run (including `run`): more than one means runs were
    /// missed, and only the most recent one starts.
    pub missed: u32,
    /// Scheduled times passed beyond `startingDeadlineSeconds` and were skipped.
    pub skipped_past_deadline: bool,
    /// When to look again.
    pub next: Option<DateTime<Utc>>,
}

/// The CronJob controller's rule: among the scheduled times after `last_scheduled` (or the
/// policy's creation) and up to `now`, start only the most recent, and only if it is within
/// `starting_deadline_seconds` of `now`.
pub fn decide(
    schedule: &Schedule,
    last_scheduled: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    starting_deadline_seconds: Option<i64>,
    now: DateTime<Utc>,
) -> ScheduleDecision {
    let since = last_scheduled.unwrap_or(created);
    let mut earliest = since;
    let mut skipped_past_deadline = false;
    if let Some(deadline) = starting_deadline_seconds {
        // Times older than the deadline could not start anyway: skip them without counting.
        let horizon = now - Duration::seconds(deadline);
        if horizon > earliest {
            skipped_past_deadline = schedule.next_after(since).is_some_and(|t| t < horizon);
            earliest = horizon - Duration::seconds(1);
        }
    }
    let mut run = None;
    let mut missed = 0u32;
    let mut t = schedule.next_after(earliest);
    while let Some(due) = t {
        if due > now {
            break;
        }
        run = Some(due);
        missed = missed.saturating_add(1);
        t = schedule.next_after(due);
    }
    ScheduleDecision { run, missed, skipped_past_deadline, next: t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
    }

    fn next(schedule: &str, tz: Option<&str>, after: &str) -> Option<String> {
        Schedule::parse(schedule, tz).expect("parse").next_after(utc(after)).map(|t| t.to_rfc3339())
    }

    #[test]
    fn next_times_in_utc() {
        let cases = [
            ("*/1 * * * *", "2026-11-29T01:00:30Z", "2026-11-29T01:01:00+00:00"),
            ("* * * * *", "2026-11-29T01:00:00Z", "2026-11-29T01:01:00+00:00"),
            ("*/15 * * * *", "2026-11-29T01:07:00Z", "2026-11-29T01:15:00+00:00"),
            ("5/20 * * * *", "2026-11-29T01:26:00Z", "2026-11-29T01:45:00+00:00"),
            ("0 2 * * *", "2026-11-29T02:00:00Z", "2026-11-30T02:00:00+00:00"),
            ("30 1-3 * * *", "2026-11-29T03:31:00Z", "2026-11-30T01:30:00+00:00"),
            ("0 0 1,15 * *", "2026-11-02T00:00:00Z", "2026-11-15T00:00:00+00:00"),
            ("0 9 * * MON-FRI", "2026-11-28T10:00:00Z", "2026-11-30T09:00:00+00:00"), // Sat -> Mon
            ("0 9 * * sun", "2026-11-28T10:00:00Z", "2026-11-29T09:00:00+00:00"),
            ("0 0 1 JAN *", "2026-11-29T00:00:00Z", "2027-01-01T00:00:00+00:00"),
            ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00+00:00"),
            // Day of month and day of week both restricted: either matches (the 13th or a Friday).
            ("0 0 13 * 5", "2026-11-01T00:00:00Z", "2026-11-06T00:00:00+00:00"),
            ("0 0 13 * 5", "2026-11-07T00:00:00Z", "2026-11-13T00:00:00+00:00"),
            // One of them `*`: both must match.
            ("0 0 * * 5", "2026-11-07T00:00:00Z", "2026-11-13T00:00:00+00:00"),
            ("0 0 13 * *", "2026-11-14T00:00:00Z", "2026-12-13T00:00:00+00:00"),
            ("0 0 13 * ?", "2026-11-14T00:00:00Z", "2026-12-13T00:00:00+00:00"),
            // `*/1` keeps the star; `*/2` does not.
            ("0 0 */2 * 1", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00+00:00"),
        ];
        for (schedule, after, want) in cases {
            assert_eq!(next(schedule, None, after).as_deref(), Some(want), "{schedule} after {after}");
        }
    }

    #[test]
    fn descriptors() {
        let cases = [
            ("@yearly", "2027-01-01T00:00:00+00:00"),
            ("@annually", "2027-01-01T00:00:00+00:00"),
            ("@monthly", "2026-12-01T00:00:00+00:00"),
            ("@weekly", "2026-11-29T00:00:00+00:00"),
            ("@daily", "2026-11-29T00:00:00+00:00"),
            ("@midnight", "2026-11-29T00:00:00+00:00"),
            ("@hourly", "2026-11-28T11:00:00+00:00"),
        ];
        for (schedule, want) in cases {
            assert_eq!(next(schedule, None, "2026-11-28T10:30:00Z").as_deref(), Some(want), "{schedule}");
        }
    }

    #[test]
    fn impossible_schedules_have_no_next_time() {
        assert_eq!(next("0 0 30 2 *", None, "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn invalid_schedules_and_zones_are_errors() {
        for bad in ["", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 7",
            "*/0 * * * *", "5-1 * * * *", "@every 5m", "@reboot", "CRON_TZ=UTC * * * * *", "x * * * *", "* * * FOO *"]
        {
            assert!(matches!(Schedule::parse(bad, None), Err(ScheduleError::InvalidSchedule { .. })), "{bad:?}");
        }
        assert_eq!(Schedule::parse("* * * * *", Some("Mars/Olympus")), Err(ScheduleError::InvalidTimeZone("Mars/Olympus".into())));
        assert!(Schedule::parse("* * * * *", Some("Europe/Berlin")).is_ok());
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:00 in Berlin is 01:00 UTC in winter.
        assert_eq!(next("0 2 * * *", Some("Europe/Berlin"), "2026-11-29T00:00:00Z").as_deref(), Some("2026-11-29T01:00:00+00:00"));
        // Spring forward (2026-03-29, 02:00 -> 03:00 in Berlin): 02:30 does not exist and is
        // skipped that day, as with a CronJob; 03:30 runs as usual.
        assert_eq!(next("30 2 * * *", Some("Europe/Berlin"), "2026-03-28T02:00:00Z").as_deref(), Some("2026-03-30T00:30:00+00:00"));
        assert_eq!(next("30 3 * * *", Some("Europe/Berlin"), "2026-03-28T03:00:00Z").as_deref(), Some("2026-03-29T01:30:00+00:00"));
        // Fall back (2026-10-25, 03:00 -> 02:00 in Berlin): 02:30 happens twice and runs twice.
        let first = next("30 2 * * *", Some("Europe/Berlin"), "2026-10-24T12:00:00Z").expect("first");
        assert_eq!(first, "2026-10-25T00:30:00+00:00");
        assert_eq!(next("30 2 * * *", Some("Europe/Berlin"), "2026-10-25T00:30:00Z").as_deref(), Some("2026-10-25T01:30:00+00:00"));
        assert_eq!(next("30 2 * * *", Some("Europe/Berlin"), "2026-10-25T01:30:00Z").as_deref(), Some("2026-10-26T01:30:00+00:00"));
        // A daily midnight job across the change keeps local midnight.
        assert_eq!(next("0 0 * * *", Some("Europe/Berlin"), "2026-03-28T23:30:00Z").as_deref(), Some("2026-03-29T22:00:00+00:00"));
        // Half-hour zone.
        assert_eq!(next("0 9 * * *", Some("Asia/Kolkata"), "2026-11-29T00:00:00Z").as_deref(), Some("2026-11-29T03:30:00+00:00"));
    }

    #[test]
    fn missed_runs_start_only_the_most_recent_within_the_deadline() {
        let every_minute = Schedule::parse("*/1 * * * *", None).expect("parse");
        let created = utc("2026-11-29T00:00:10Z");
        type Case = (&'static str, Option<&'static str>, Option<i64>, &'static str, Option<&'static str>, u32, bool);
        let cases: Vec<Case> = vec![
            // (what, last scheduled, deadline, now, run, missed, skipped past the deadline)
            ("before the first tick", None, None, "2026-11-29T00:00:50Z", None, 0, false),
            ("the first tick", None, None, "2026-11-29T00:01:05Z", Some("2026-11-29T00:01:00Z"), 1, false),
            ("already ran this tick", Some("2026-11-29T00:01:00Z"), None, "2026-11-29T00:01:30Z", None, 0, false),
            ("down for an hour: one catch-up", Some("2026-11-29T00:01:00Z"), None, "2026-11-29T01:01:30Z", Some("2026-11-29T01:01:00Z"), 60, false),
            ("down, the latest within the deadline", Some("2026-11-29T00:01:00Z"), Some(45), "2026-11-29T01:01:30Z", Some("2026-11-29T01:01:00Z"), 1, true),
            ("down, all past the deadline", Some("2026-11-29T00:01:00Z"), Some(20), "2026-11-29T01:01:30Z", None, 0, true),
            ("on time with a deadline", Some("2026-11-29T00:01:00Z"), Some(20), "2026-11-29T00:02:05Z", Some("2026-11-29T00:02:00Z"), 1, false),
            ("suspended a day, resumed: no replay past the deadline", Some("2026-11-28T00:00:00Z"), Some(30), "2026-11-29T00:00:40Z", None, 0, true),
        ];
        for (what, last, deadline, now, run, missed, skipped) in cases {
            let d = decide(&every_minute, last.map(utc), created, deadline, utc(now));
            assert_eq!(d.run, run.map(utc), "{what}: run");
            assert_eq!(d.missed, missed, "{what}: missed");
            assert_eq!(d.skipped_past_deadline, skipped, "{what}: skipped");
            assert!(d.next.is_some_and(|n| n > utc(now)), "{what}: next after now");
        }
        // The next check is exactly at the next scheduled time.
        let d = decide(&every_minute, Some(utc("2026-11-29T00:01:00Z")), created, None, utc("2026-11-29T00:01:30Z"));
        assert_eq!(d.next, Some(utc("2026-11-29T00:02:00Z")));
    }
}
