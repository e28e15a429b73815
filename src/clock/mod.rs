//! Wall-clock time as rasen shows and stores it: seconds since the Unix epoch,
//! printed as ISO 8601 UTC (`2026-01-27T18:45:00Z`), and the civil calendar
//! behind it (epoch ↔ date and time of day, days ↔ date; Howard Hinnant's
//! `days_from_civil`). [`tz`] gives a zone's offset from UTC, so that a wall
//! time an agent names ("resets 1pm (Europe/Lisbon)") can become an instant.
//!
//! rasen never shows or stores local time, and has no locale: zones are
//! only read, to turn someone else's wall time into UTC.

pub mod tz;

use std::time::{SystemTime, UNIX_EPOCH};

/// A moment as a calendar and a clock show it: in UTC, or in a zone's
/// local time when the seconds it came from had the zone's offset added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
    /// 1 to 31.
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl CivilTime {
    /// The date and time of day `secs` after the epoch.
    pub fn from_epoch(secs: i64) -> CivilTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        CivilTime { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60 }
    }

    /// Seconds since the epoch (a valid date; the time of day may overflow
    /// into the next day).
    pub fn to_epoch(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_iso() -> String {
    format_iso(now_secs())
}

/// Now as `YYYYMMDDTHHMMSSZ`, for backup file names.
pub fn now_compact() -> String {
    now_iso().replace(['-', ':'], "")
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_iso(secs: i64) -> String {
    let CivilTime { year, month, day, hour, minute, second } = CivilTime::from_epoch(secs);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` back into seconds since the epoch.
pub fn parse_iso(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let time = CivilTime {
        year: num(0..4)?,
        month: num(5..7)?,
        day: num(8..10)?,
        hour: num(11..13)?,
        minute: num(14..16)?,
        second: num(17..19)?,
    };
    if !(1..=12).contains(&time.month)
        || !(1..=31).contains(&time.day)
        || time.hour > 23
        || time.minute > 59
        || time.second > 60
    {
        return None;
    }
    Some(time.to_epoch())
}

/// "5 minutes ago", "just now", "2 hours ago" for a duration in seconds.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..=4 => return "just now".to_string(),
        5..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A duration as `1h 02m 03s`, `4m 05s` or `7s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

/// Days from 1970-01-01 to the date `y-m-d` (proleptic Gregorian; negative
/// before 1970).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` that is `z` days after 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_iso(1_753_441_200), "2025-07-25T11:00:00Z");
        assert_eq!(format_iso(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_753_441_200, 4_102_444_799] {
            assert_eq!(parse_iso(&format_iso(t)), Some(t));
        }
        assert_eq!(parse_iso("2026-01-27T18:45:00.123Z"), parse_iso("2026-01-27T18:45:00Z"));
        assert_eq!(parse_iso("2026-13-27T18:45:00Z"), None);
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn civil_time_and_epoch_convert_both_ways() {
        let t = CivilTime { year: 2000, month: 2, day: 29, hour: 23, minute: 59, second: 58 };
        assert_eq!(CivilTime::from_epoch(t.to_epoch()), t);
        assert_eq!(t.to_epoch(), 951_868_798);
        assert_eq!(CivilTime::from_epoch(-1).year, 1969);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2026, 1, 27)), (2026, 1, 27));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn speaks_durations_like_a_person() {
        assert_eq!(ago(2), "just now");
        assert_eq!(ago(61), "1 minute ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(duration(3723), "1h 02m 03s");
        assert_eq!(duration(245), "4m 05s");
    }
}
