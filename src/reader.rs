//! What a backend's reader makes of an agent's output, in one shape for
//! every backend. A session hands its reader each line of output, tagged
//! with the stream it came from; per line the reader gives back a
//! [`Reading`] (readable lines for the log, the agent's own words to scan
//! for events), and at the end a [`ReaderReport`]: the facts the backend
//! told (tokens and cost, a failure, a usage limit, a refusal to run as
//! root), in words the orchestrator understands whichever agent ran.
//!
//! Here too is the text reader that the other readers build on: each line
//! is logged and scanned, clipped to [`MAX_TEXT_LINE`]; when it watches,
//! it also recognizes the messages an agent CLI prints as text that the
//! run must act on (a usage limit, a refusal to run as root). Adding a
//! backend means a module with a type that implements [`Reader`], and in
//! `agent::backend` a kind that names it and the backend's command line.
//!
//! A reader only interprets the lines it is handed: it never reads a pipe,
//! starts a process or writes the log (`agent` does), and never decides
//! what its report means for the run (the orchestrator does).

use crate::usage_limit::{self, UsageLimit};

/// The most of one text line that is logged and scanned.
pub const MAX_TEXT_LINE: usize = 64 * 1024;

/// Which of the agent's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What one line of output gives the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// Readable lines for the log (not megabytes of JSON).
    pub log_lines: Vec<String>,
    /// The agent's own text, to scan for events.
    pub scan_text: Vec<String>,
}

/// Tokens and cost of a session, as the backend reported them.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// Every input token the model read (cached ones included).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// In US dollars; finite and not negative.
    pub cost_usd: f64,
}

/// The backend itself said the session failed (Claude: a `result` that is
/// an error, such as `error_max_turns`).
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The backend's name for the failure (Claude's `result` subtype).
    pub kind: String,
    /// What it said about it; may be empty.
    pub message: String,
}

/// What a reader learnt from a whole session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReaderReport {
    /// Tokens and cost, when the backend reports them.
    pub usage: Option<Usage>,
    pub failure: Option<Failure>,
    pub usage_limit: Option<UsageLimit>,
    /// The agent refused to run because it runs as root.
    pub root_refusal: bool,
    /// Text to scan for events once more when the session is over (Claude's
    /// `result` repeats the final message; an event found twice counts once).
    pub final_text: Option<String>,
}

/// Reads one session's output, line by line. A new backend implements it.
pub trait Reader {
    /// How many bytes of one line of `stream` the reader needs to see; the
    /// session keeps that much of each line and counts the rest.
    fn line_keep(&self, stream: Stream) -> usize;

    /// Reads one line (without its newline), of which `more_bytes` beyond
    /// `text` were cut off.
    fn line(&mut self, stream: Stream, text: &str, more_bytes: u64) -> Reading;

    /// What the whole session told, once its output has ended.
    fn report(self: Box<Self>) -> ReaderReport;
}

/// Reads text, on both streams. A plain reader only logs and scans it; a
/// watching one also recognizes, on any line, a usage-limit message and
/// an agent's refusal to run as root.
#[derive(Debug)]
pub struct TextReader {
    watch: bool,
    usage_limit: Option<UsageLimit>,
    root_refusal: bool,
    /// The clock used to resolve "resets 1pm".
    now: fn() -> i64,
}

impl TextReader {
    /// Text that is only logged and scanned (a verify command's output).
    pub fn plain() -> TextReader {
        TextReader { watch: false, usage_limit: None, root_refusal: false, now: || 0 }
    }

    /// Text in which an agent may say that it hit its usage limit or
    /// refuses to run as root; `now` resolves a limit's reset time.
    pub fn watching(now: fn() -> i64) -> TextReader {
        TextReader { watch: true, usage_limit: None, root_refusal: false, now }
    }

    /// The first usage-limit message seen.
    pub fn usage_limit(&self) -> Option<&UsageLimit> {
        self.usage_limit.as_ref()
    }

    /// True once the agent refused to run as root.
    pub fn root_refusal(&self) -> bool {
        self.root_refusal
    }

    /// Reads one line of text: its first [`MAX_TEXT_LINE`] bytes are logged
    /// and scanned (and, when watching, checked for a usage-limit message
    /// and a root refusal). `more_bytes` were cut off before it came here;
    /// the log line says how many bytes in all were left out.
    pub fn read_line(&mut self, line: &str, more_bytes: u64) -> Reading {
        let line = line.trim_end();
        let text = clip(line, MAX_TEXT_LINE);
        self.note_limit_message(text);
        self.note_root_refusal(text);
        let left_out = more_bytes + (line.len() - text.len()) as u64;
        let logged = match left_out {
            0 => text.to_string(),
            n => format!("{text} … ({n} more bytes)"),
        };
        Reading { log_lines: vec![logged], scan_text: vec![text.to_string()] }
    }

    /// Keeps the first usage-limit message among the lines of `text`.
    pub fn note_limit_message(&mut self, text: &str) {
        if !self.watch || self.usage_limit.is_some() {
            return;
        }
        self.usage_limit =
            text.lines().find_map(|line| usage_limit::parse_limit_message(line, (self.now)()));
    }

    pub fn note_root_refusal(&mut self, text: &str) {
        if self.watch && text.lines().any(is_root_refusal) {
            self.root_refusal = true;
        }
    }
}

impl Reader for TextReader {
    fn line_keep(&self, _: Stream) -> usize {
        MAX_TEXT_LINE
    }

    fn line(&mut self, _: Stream, text: &str, more_bytes: u64) -> Reading {
        self.read_line(text, more_bytes)
    }

    fn report(self: Box<Self>) -> ReaderReport {
        ReaderReport {
            usage_limit: self.usage_limit,
            root_refusal: self.root_refusal,
            ..ReaderReport::default()
        }
    }
}

/// An agent CLI's refusal to run as root. The one known is Claude's
/// refusal of `bypassPermissions`, as printed on stderr:
/// `--dangerously-skip-permissions cannot be used with root/sudo privileges
/// for security reasons`; it is recognized in any agent's text, since a
/// `command` agent may be a wrapper around claude. Long lines (someone
/// quoting it in a paragraph) do not count.
pub fn is_root_refusal(line: &str) -> bool {
    line.len() < 400 && line.contains("cannot be used with root/sudo privileges")
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_REFUSAL: &str = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons";

    fn now() -> i64 {
        1_769_539_500 // 2026-01-27T18:45:00Z
    }

    #[test]
    fn a_watching_reader_reports_limits_and_root_refusals() {
        let mut reader = TextReader::watching(now);
        let reading = reader.read_line("Claude AI usage limit reached|1753441200\r", 0);
        assert_eq!(reading.log_lines, ["Claude AI usage limit reached|1753441200"]);
        assert_eq!(reading.scan_text, ["Claude AI usage limit reached|1753441200"]);
        reader.read_line("You've hit your limit · resets 1pm (UTC)", 0);
        reader.read_line(ROOT_REFUSAL, 0);
        let report = Box::new(reader).report();
        let limit = report.usage_limit.unwrap();
        assert_eq!(limit.message, "Claude AI usage limit reached|1753441200", "the first one");
        assert_eq!(limit.resets_at, Some(1_753_441_200));
        assert!(report.root_refusal);
        assert_eq!((report.usage, report.failure, report.final_text), (None, None, None));
    }

    #[test]
    fn a_plain_reader_only_logs_and_scans() {
        let mut reader = TextReader::plain();
        for line in ["Claude AI usage limit reached|1753441200", ROOT_REFUSAL] {
            let reading = reader.line(Stream::Stdout, line, 0);
            assert_eq!(reading.log_lines, [line]);
            assert_eq!(reading.scan_text, [line]);
        }
        assert_eq!(Box::new(reader).report(), ReaderReport::default());
    }

    #[test]
    fn clip_keeps_characters_whole() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }
}
