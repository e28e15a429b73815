//! Usage limits: recognizing an agent's message that its account's usage
//! limit is reached, and working out when the limit resets, from an epoch
//! (`…|1753441200`) or a wall-clock time in a named zone (`resets 1pm
//! (Europe/Lisbon)`, resolved with `clock::tz`). Every reader of agent
//! output asks this module, so that a limit is recognized the same way
//! whichever backend printed it: today Claude's messages (samples in
//! `tests/fixtures/claude/claude-rate-limit.txt`); other agents' messages
//! belong here too.
//!
//! This module only reads text: it never reads an agent's output stream,
//! never decides what a limit means for the run (stop or wait), and never
//! touches the disk except to read a zone file through `clock::tz`.

use crate::clock;

/// The agent said its account's usage limit is reached.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageLimit {
    pub message: String,
    /// Seconds since the epoch when the limit resets, when that is known:
    /// from Claude's `resetsAt`, from `…|1753441200`, or from a wall-clock
    /// time such as `resets 1pm (Europe/Lisbon)` resolved with the system's
    /// zone files.
    pub resets_at: Option<i64>,
}

/// Recognizes one line of a Claude usage-limit message (see
/// `tests/fixtures/claude/claude-rate-limit.txt`) and works out when the
/// limit resets, relative to `now`. The line must start with the message
/// (after an optional `Error:`/`API Error:`), and be short, so that text
/// merely mentioning limits is not taken for one.
pub fn parse_limit_message(line: &str, now: i64) -> Option<UsageLimit> {
    let message = strip_error_prefix(line.trim());
    if !is_limit_message(message) {
        return None;
    }
    let resets_at = epoch_after_pipe(message).or_else(|| reset_wall_time(message, now));
    Some(UsageLimit { message: message.to_string(), resets_at })
}

fn strip_error_prefix(mut text: &str) -> &str {
    for prefix in ["api error:", "error:"] {
        if text.len() >= prefix.len()
            && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            text = text[prefix.len()..].trim_start();
        }
    }
    text
}

fn is_limit_message(message: &str) -> bool {
    if message.len() > 300 {
        return false;
    }
    let lower = message.to_lowercase().replace('\u{2019}', "'");
    if ["claude ai usage limit reached", "claude usage limit reached", "you're out of extra usage"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return true;
    }
    // "You've hit your limit", "… your session limit", "… your weekly limit"
    if let Some(rest) = lower.strip_prefix("you've hit your ") {
        return rest.split_whitespace().take(3).any(|w| w.starts_with("limit"));
    }
    // "5-hour limit reached ∙ resets 3am", "Weekly limit reached ∙ resets 5am"
    match lower.find("limit reached") {
        Some(at) => {
            at <= 24
                && lower[..at].chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-')
                && lower.contains("reset")
        }
        None => false,
    }
}

/// `Claude AI usage limit reached|1753441200` → 1753441200.
fn epoch_after_pipe(message: &str) -> Option<i64> {
    let digits: String =
        message.split_once('|')?.1.trim().chars().take_while(char::is_ascii_digit).collect();
    plausible_epoch(digits.parse().ok()?)
}

/// A reset time written as a wall-clock time: `resets 1pm (Europe/Lisbon)`,
/// `resets 11:10pm (UTC)`, `resets Feb 7, 11am (Asia/Seoul)`, `resets 3am`
/// (the machine's zone), `will reset at 3pm (America/Bogota)`.
fn reset_wall_time(message: &str, now: i64) -> Option<i64> {
    let lower = message.to_ascii_lowercase(); // same byte offsets as `message`
    let start = ["resets ", "reset at "]
        .iter()
        .find_map(|word| lower.find(word).map(|at| at + word.len()))?;
    let spec = parse_reset_spec(&message[start..])?;
    resolve_reset(&spec, now)
}

#[derive(Debug, PartialEq)]
struct ResetSpec {
    month_day: Option<(i64, i64)>,
    hour: i64,
    minute: i64,
    zone: Option<String>,
}

/// Parses `[at] [Mon D,] H[:MM][am|pm] [(Zone)]`.
fn parse_reset_spec(text: &str) -> Option<ResetSpec> {
    let mut cursor = Cursor { text, pos: 0 };
    cursor.skip_spaces();
    cursor.eat_word("at");
    let month_day = cursor.month_day();
    let mut hour = cursor.number()?;
    let minute = if cursor.eat(":") { cursor.number()? } else { 0 };
    cursor.skip_spaces();
    if cursor.eat_word("am") || cursor.eat_word("a.m.") {
        hour = if (1..=12).contains(&hour) { hour % 12 } else { return None };
    } else if cursor.eat_word("pm") || cursor.eat_word("p.m.") {
        hour = if (1..=12).contains(&hour) { hour % 12 + 12 } else { return None };
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    cursor.skip_spaces();
    let zone = cursor.parenthesized().map(str::to_string);
    Some(ResetSpec { month_day, hour, minute, zone })
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, literal: &str) -> bool {
        let found = self.rest().starts_with(literal);
        if found {
            self.pos += literal.len();
        }
        found
    }

    /// Eats `word` (any case) when it is not the start of a longer word.
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest().as_bytes();
        let matches = rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && !rest.get(word.len()).is_some_and(u8::is_ascii_alphabetic);
        if matches {
            self.pos += word.len();
            self.skip_spaces();
        }
        matches
    }

    fn number(&mut self) -> Option<i64> {
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 4 {
            return None;
        }
        let n = self.rest()[..digits].parse().ok()?;
        self.pos += digits;
        Some(n)
    }

    /// `Feb 7,` → (2, 7); nothing eaten when the text is not a date.
    fn month_day(&mut self) -> Option<(i64, i64)> {
        const MONTHS: [&str; 12] =
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
        let start = self.pos;
        let word_len = self.rest().bytes().take_while(u8::is_ascii_alphabetic).count();
        let word = self.rest()[..word_len].to_ascii_lowercase();
        let month = MONTHS.iter().position(|m| word_len >= 3 && word.starts_with(m))? as i64 + 1;
        self.pos += word_len;
        self.eat(".");
        self.skip_spaces();
        match self.number() {
            Some(day) if (1..=31).contains(&day) => {
                self.eat(",");
                self.skip_spaces();
                Some((month, day))
            }
            _ => {
                self.pos = start;
                None
            }
        }
    }

    fn parenthesized(&mut self) -> Option<&str> {
        let inner = self.rest().strip_prefix('(')?;
        let end = inner.find(')')?;
        Some(inner[..end].trim())
    }
}

/// How long after a wall-clock reset time the message may be seen and the
/// time still be taken as today's (the message can lag, clocks can drift).
const RESET_SLACK: i64 = 15 * 60;

/// The next moment at or after `now` (less a little slack) that shows the
/// spec's wall-clock time in its zone. `None` when the zone is unknown.
fn resolve_reset(spec: &ResetSpec, now: i64) -> Option<i64> {
    let zone = spec.zone.as_deref();
    let offset_now = clock::tz::utc_offset(zone, now)?;
    let local_now = now + offset_now;
    let today = clock::CivilTime::from_epoch(local_now);
    let wall_time = |year, month, day| {
        clock::CivilTime { year, month, day, hour: spec.hour, minute: spec.minute, second: 0 }
            .to_epoch()
    };
    let local_reset = match spec.month_day {
        Some((month, day)) => {
            let this_year = wall_time(today.year, month, day);
            if this_year >= local_now - RESET_SLACK {
                this_year
            } else {
                wall_time(today.year + 1, month, day)
            }
        }
        None => {
            let today = wall_time(today.year, today.month, today.day);
            if today >= local_now - RESET_SLACK {
                today
            } else {
                today + 86_400
            }
        }
    };
    // The offset may differ at the reset time (a DST change in between).
    let offset_then = clock::tz::utc_offset(zone, local_reset - offset_now).unwrap_or(offset_now);
    Some(local_reset - offset_then)
}

/// `n` as seconds since the epoch when it plausibly is one (2001 to
/// 5138), or as milliseconds when it plausibly is those.
pub fn plausible_epoch(n: i64) -> Option<i64> {
    match n {
        1_000_000_000..=99_999_999_999 => Some(n),
        1_000_000_000_000..=99_999_999_999_999 => Some(n / 1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::tz::tests::has_zone;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claude/");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
    }

    /// 2026-01-27T18:45:00Z, a fixed "now" for reset times.
    const NOW: i64 = 1_769_539_500;

    #[test]
    fn every_limit_message_in_the_samples_is_recognized() {
        let expected: [(&str, Option<i64>); 9] = [
            ("You've hit your limit · resets 1pm (Europe/Lisbon)", None),
            ("Claude AI usage limit reached|1753441200", Some(1_753_441_200)),
            ("Claude AI usage limit reached|1750708800", Some(1_750_708_800)),
            ("Claude usage limit reached. Your limit will reset at 3pm (America/Bogota).", None),
            ("Weekly limit reached ∙ resets 5am", None),
            ("You've hit your limit - resets Feb 7, 11am (Asia/Seoul)/login to switch to an API usage-billed account.", None),
            ("You've hit your session limit · resets 11pm (America/New_York)", None),
            ("You're out of extra usage · resets 9pm", None),
            ("5-hour limit reached ∙ resets 3am", None),
        ];
        let text = fixture("claude-rate-limit.txt");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), expected.len());
        for (line, (message, epoch)) in lines.iter().zip(expected) {
            let limit =
                parse_limit_message(line, NOW).unwrap_or_else(|| panic!("not a limit: {line}"));
            assert_eq!(limit.message, message);
            if epoch.is_some() {
                assert_eq!(limit.resets_at, epoch, "{line}");
            }
        }
    }

    #[test]
    fn wall_clock_reset_times_are_parsed() {
        let spec = |s| parse_reset_spec(s).unwrap();
        let at = |month_day, hour, minute, zone: Option<&str>| ResetSpec {
            month_day,
            hour,
            minute,
            zone: zone.map(str::to_string),
        };
        assert_eq!(spec("1pm (Europe/Lisbon)"), at(None, 13, 0, Some("Europe/Lisbon")));
        assert_eq!(spec("11:10pm (UTC)"), at(None, 23, 10, Some("UTC")));
        assert_eq!(spec("12am"), at(None, 0, 0, None));
        assert_eq!(spec("12pm (America/New_York)"), at(None, 12, 0, Some("America/New_York")));
        assert_eq!(
            spec("Feb 7, 11am (Asia/Seoul)/login"),
            at(Some((2, 7)), 11, 0, Some("Asia/Seoul"))
        );
        assert_eq!(spec("at 3pm (America/Bogota)."), at(None, 15, 0, Some("America/Bogota")));
        assert_eq!(spec("17:30"), at(None, 17, 30, None));
        assert_eq!(parse_reset_spec("soon"), None);
        assert_eq!(parse_reset_spec("13pm"), None);
    }

    #[test]
    fn wall_clock_resets_resolve_to_the_next_such_moment() {
        let midnight = NOW - (18 * 3600 + 45 * 60); // 2026-01-27T00:00:00Z
        let utc = |text| parse_limit_message(text, NOW).unwrap().resets_at;
        assert_eq!(
            utc("You've hit your limit · resets 11:10pm (UTC)"),
            Some(midnight + 23 * 3600 + 600)
        );
        assert_eq!(
            utc("You've hit your limit · resets 1pm (UTC)"),
            Some(midnight + 86_400 + 13 * 3600)
        );
        // Seen a few minutes after the reset time: that time, not tomorrow.
        assert_eq!(
            utc("You've hit your limit · resets 6:40pm (UTC)"),
            Some(midnight + 18 * 3600 + 2400)
        );
        assert_eq!(
            utc("You've hit your limit - resets Feb 7, 11am (UTC)"),
            Some(midnight + 11 * 86_400 + 11 * 3600)
        );
        assert_eq!(
            utc("You've hit your limit - resets Jan 7, 11am (Etc/UTC)"),
            clock::parse_iso("2027-01-07T11:00:00Z")
        );
        // An unknown or unsafe zone leaves the time unknown, not wrong.
        assert_eq!(utc("You've hit your limit · resets 1pm (Nowhere/Atlantis)"), None);
        assert_eq!(utc("You've hit your limit · resets 1pm (../../etc/passwd)"), None);
    }

    #[test]
    fn resets_in_named_zones_use_the_system_zone_files() {
        if !has_zone("Europe/Lisbon") {
            return; // no tzdata on this machine: only UTC is known
        }
        let winter = NOW; // Lisbon is on UTC in January
        let summer = clock::parse_iso("2026-07-01T10:00:00Z").unwrap(); // UTC+1
        let text = "You've hit your limit · resets 1pm (Europe/Lisbon)";
        assert_eq!(
            parse_limit_message(text, summer).unwrap().resets_at,
            clock::parse_iso("2026-07-01T12:00:00Z")
        );
        assert_eq!(
            parse_limit_message(text, winter).unwrap().resets_at,
            clock::parse_iso("2026-01-28T13:00:00Z")
        );
        let seoul = "You've hit your session limit · resets 11pm (Asia/Seoul)";
        assert_eq!(
            parse_limit_message(seoul, NOW).unwrap().resets_at,
            clock::parse_iso("2026-01-28T14:00:00Z")
        );
    }

    #[test]
    fn limits_without_a_zone_use_the_machine_zone() {
        let limit = parse_limit_message("5-hour limit reached ∙ resets 3am", NOW).unwrap();
        if let Some(at) = limit.resets_at {
            assert!(at > NOW - RESET_SLACK && at <= NOW + 2 * 86_400, "{at}");
        }
    }

    #[test]
    fn text_about_limits_is_not_a_limit() {
        for line in [
            "The API says: You've hit your limit · resets 1pm (UTC)",
            "Rate limit reached while downloading; retrying",
            "I will add handling for 'usage limit reached' messages.",
            "You've hit your stride, nice",
            "",
        ] {
            assert_eq!(parse_limit_message(line, NOW), None, "{line}");
        }
        assert!(
            parse_limit_message("Error: Claude AI usage limit reached|1753441200", NOW).is_some()
        );
        assert!(parse_limit_message("API Error: You’ve hit your limit · resets 1pm (UTC)", NOW)
            .is_some());
    }
}
