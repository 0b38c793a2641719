//! Five-field cron schedules (`minute hour day-of-month month day-of-week`, UTC) for
//! rotation policies: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`.
//! Day-of-week is 0–7 (0 and 7 are Sunday). As in cron, when both day fields are
//! restricted a day matches if either does.

use std::fmt;
use std::str::FromStr;

use crate::{DomainError, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

fn bad(reason: &'static str) -> DomainError {
    DomainError::InvalidName { name: "cron schedule".into(), reason }
}

/// Parses one field into a bit set over `lo..=hi`.
fn field(s: &str, lo: u32, hi: u32) -> Result<(u64, bool), DomainError> {
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, st.parse::<u32>().map_err(|_| bad("a step must be a number"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad("a step must be at least 1"));
        }
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None if step > 1 => (num(r)?, hi),
                None => (num(r)?, num(r)?),
            },
        };
        if a < lo || b > hi || a > b {
            return Err(bad("a value is out of range for its field"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, s == "*"))
}

fn num(s: &str) -> Result<u32, DomainError> {
    s.parse().map_err(|_| bad("fields hold numbers, ranges, steps or lists"))
}

impl FromStr for Cron {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Cron, DomainError> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return Err(bad("five fields: minute hour day-of-month month day-of-week"));
        }
        let (minutes, _) = field(f[0], 0, 59)?;
        let (hours, _) = field(f[1], 0, 23)?;
        let (days, days_any) = field(f[2], 1, 31)?;
        let (months, _) = field(f[3], 1, 12)?;
        let (mut weekdays, weekdays_any) = field(f[4], 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron { text: f.join(" "), minutes, hours, days, months, weekdays, days_any, weekdays_any })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const MINUTE_US: i64 = 60_000_000;
const DAY_US: i64 = 86_400_000_000;

impl Cron {
    /// The first matching minute strictly after `t`, within five years.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = (t.0.div_euclid(MINUTE_US) + 1) * MINUTE_US;
        let first_day = start.div_euclid(DAY_US);
        let first_minute = (start - first_day * DAY_US) / MINUTE_US;
        for day in first_day..first_day + 5 * 366 {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { first_minute } else { 0 };
            for m in from..1440 {
                let (h, mi) = (m / 60, m % 60);
                if self.hours & (1 << h) != 0 && self.minutes & (1 << mi) != 0 {
                    return Some(Timestamp(day * DAY_US + m * MINUTE_US));
                }
            }
        }
        None
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = civil_from_days(day);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let weekday = (day + 4).rem_euclid(7); // 1970-01-01 was a Thursday
        let dom_ok = self.days & (1 << dom) != 0;
        let dow_ok = self.weekdays & (1 << weekday) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => dom_ok,
            (true, false) => dow_ok,
            (false, false) => dom_ok || dow_ok,
        }
    }
}

/// (year, month 1–12, day 1–31) of a day number since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn next_occurrences() {
        let c: Cron = "30 2 * * *".parse().unwrap();
        assert_eq!(c.next_after(at("2026-12-01T01:00:00Z")), Some(at("2026-12-01T02:30:00Z")));
        assert_eq!(c.next_after(at("2026-12-01T02:30:00Z")), Some(at("2026-12-02T02:30:00Z")), "strictly after");
        let monthly: Cron = "0 3 1 * *".parse().unwrap();
        assert_eq!(monthly.next_after(at("2026-12-15T00:00:00Z")), Some(at("2027-01-01T03:00:00Z")));
        let sundays: Cron = "0 0 * * 7".parse().unwrap();
        assert_eq!(sundays.next_after(at("2026-12-01T00:00:00Z")), Some(at("2026-12-06T00:00:00Z")));
        let every15: Cron = "*/15 * * * *".parse().unwrap();
        assert_eq!(every15.next_after(at("2026-12-01T10:07:59Z")), Some(at("2026-12-01T10:15:00Z")));
        let leap: Cron = "0 0 29 2 *".parse().unwrap();
        assert_eq!(leap.next_after(at("2026-03-01T00:00:00Z")), Some(at("2028-02-29T00:00:00Z")));
        // Both day fields restricted: either matches (the 13th, or any Friday).
        let either: Cron = "0 12 13 * 5".parse().unwrap();
        assert_eq!(either.next_after(at("2026-12-01T00:00:00Z")), Some(at("2026-12-04T12:00:00Z")));
    }

    #[test]
    fn bad_schedules_are_refused() {
        for s in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(s.parse::<Cron>().is_err(), "{s:?}");
        }
        assert!("0 0 31 2 *".parse::<Cron>().unwrap().next_after(at("2026-01-01T00:00:00Z")).is_none(), "never");
    }

    proptest! {
        #[test]
        fn next_is_later_and_matches(min in 0u32..60, hour in 0u32..24, t in 0i64..4_000_000_000) {
            let c: Cron = format!("{min} {hour} * * *").parse().unwrap();
            let from = Timestamp(t * 1_000_000);
            let n = c.next_after(from).unwrap();
            prop_assert!(n > from);
            prop_assert!(n.0 - from.0 <= DAY_US);
            let secs = n.0 / 1_000_000;
            prop_assert_eq!(secs % 60, 0);
            prop_assert_eq!((secs / 60) % 60, i64::from(min));
            prop_assert_eq!((secs / 3600) % 24, i64::from(hour));
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Cron>();
        }
    }
}
