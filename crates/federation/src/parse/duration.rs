//! `xs:duration` as used by SAML `cacheDuration` (e.g. `PT6H`, `P1DT12H`, `PT90.5S`).
//! Years count as 365 days and months as 30: a cache hint needs no calendar.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Parses a non-negative ISO 8601 duration. `None` for anything else (including negative
/// durations, which make no sense as a cache lifetime).
pub fn parse_iso8601_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return None,
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs: u64 = 0;
    let mut frac = Duration::ZERO;
    let mut seen_any = false;
    for (part, units) in [(date, &[('Y', 365 * DAY), ('M', 30 * DAY), ('W', 7 * DAY), ('D', DAY)][..])]
        .into_iter()
        .chain(time.map(|t| (t, &[('H', HOUR), ('M', MINUTE), ('S', 1)][..])))
    {
        let mut remaining = part;
        let mut unit_idx = 0;
        while !remaining.is_empty() {
            let end = remaining.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (number, tail) = remaining.split_at(end);
            let designator = tail.chars().next()?;
            // Designators must appear in order, each at most once.
            let pos = units[unit_idx..].iter().position(|(d, _)| *d == designator)? + unit_idx;
            let per_unit = units.get(pos)?.1;
            unit_idx = pos + 1;
            if number.is_empty() {
                return None;
            }
            if let Some((whole, fraction)) = number.split_once('.') {
                // Fractions only on seconds, as xs:duration allows.
                if designator != 'S' || whole.is_empty() || fraction.is_empty() || fraction.contains('.') {
                    return None;
                }
                secs = secs.checked_add(whole.parse::<u64>().ok()?)?;
                let digits = &fraction[..fraction.len().min(9)];
                let nanos: u32 = digits.parse().ok()?;
                let scale = 10u32.checked_pow(9 - u32::try_from(digits.len()).ok()?)?;
                frac = Duration::from_nanos(u64::from(nanos) * u64::from(scale));
            } else {
                secs = secs.checked_add(number.parse::<u64>().ok()?.checked_mul(per_unit)?)?;
            }
            seen_any = true;
            remaining = &tail[designator.len_utf8()..];
        }
    }
    if !seen_any {
        return None;
    }
    Some(Duration::from_secs(secs) + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_cache_durations() {
        assert_eq!(parse_iso8601_duration("PT6H"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_iso8601_duration("P1DT12H"), Some(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_iso8601_duration("PT1H30M"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_iso8601_duration("PT90.5S"), Some(Duration::from_millis(90_500)));
        assert_eq!(parse_iso8601_duration("P1M"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_iso8601_duration("P2W"), Some(Duration::from_secs(14 * 86400)));
    }

    #[test]
    fn rejects_malformed_and_negative() {
        for bad in [
            "",
            "P",
            "PT",
            "6H",
            "-PT6H",
            "PT6",
            "PTH",
            "PT1M1H",
            "P1H",
            "PT1.5H",
            "PT1..5S",
            "P1DT",
            "PT99999999999999999999S",
        ] {
            assert_eq!(parse_iso8601_duration(bad), None, "{bad}");
        }
    }
}
