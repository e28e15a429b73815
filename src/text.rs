//! Short forms of long text for log lines, reasons and prompts: the first
//! line of a description, the first and last line of an agent's output;
//! and the one way rasen makes control characters visible before text from
//! a plan, a task, a configuration file, a log or an agent reaches a
//! terminal or a log line (`escape_controls`, `LogEscaper`).
//! Pure functions; nothing here reads or writes anything.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest line kept by `one_line`, in characters.
const ONE_LINE_CHARS: usize = 300;

/// The first line of `text`, trimmed and cut to 300 characters.
pub fn one_line(text: &str) -> String {
    let first = text.trim().lines().next().unwrap_or("").trim();
    match first.char_indices().nth(ONE_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &first[..cut]),
        None => first.to_string(),
    }
}

/// A reason in one line: its first line and, when it goes on (the end of
/// an agent's or a verify command's output), its last non-empty line, which
/// is where the error usually is.
pub fn summary(text: &str) -> String {
    let first = one_line(text);
    match text.trim().lines().skip(1).filter(|l| !l.trim().is_empty()).last() {
        Some(last) => format!("{first} … {}", one_line(last)),
        None => first,
    }
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `- item` lines, or `(none given)`.
pub fn bullets(items: &[String]) -> String {
    if items.is_empty() {
        return "(none given)".to_string();
    }
    items.iter().map(|i| format!("- {i}")).collect::<Vec<_>>().join("\n")
}

/// `text` with every control character a terminal would act on shown as a
/// visible escape: ESC `\e`, CR `\r`, LF `\n`, the other C0 controls and
/// DEL as `\xNN` (NUL is `\x00`), the C1 controls (U+0080..U+009F, which
/// some terminals take as 8-bit escape sequences) as `\u{NN}`. A tab is
/// kept: it only moves the cursor forward. A backslash is kept too, so the
/// result reads like the text but is not a lossless encoding of it; that
/// also makes escaping twice the same as escaping once. For text shown in
/// one line: a log line, an error, a value in `rasen status`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, Newline::Escape)
}

/// Whether a newline is shown as `\n` or kept as the end of a line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Newline {
    Escape,
    Keep,
}

fn escape(text: &str, newline: Newline) -> Cow<'_, str> {
    if !may_need_escape(text.as_bytes(), newline) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    push_escaped(text, newline, &mut out);
    Cow::Owned(out)
}

/// The fast path for the usual clean line (every line of agent output
/// passes here): a byte scan, no character decoding. In UTF-8 a C0
/// control or DEL is one byte below 0x20 or 0x7F, and a C1 control
/// (U+0080..U+009F) starts with 0xC2; false means nothing to escape.
fn may_need_escape(bytes: &[u8], newline: Newline) -> bool {
    bytes.iter().any(|&b| {
        (b < 0x20 && b != b'\t' && !(b == b'\n' && newline == Newline::Keep))
            || b == 0x7F
            || b == 0xC2
    })
}

fn needs_escape(c: char, newline: Newline) -> bool {
    c.is_control() && c != '\t' && !(c == '\n' && newline == Newline::Keep)
}

fn push_escaped(text: &str, newline: Newline, out: &mut String) {
    for c in text.chars() {
        match c {
            c if !needs_escape(c, newline) => out.push(c),
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
}

/// Escapes a log read as bytes, in pieces of any size (`rasen logs`): like
/// `escape_controls`, but newlines stay line ends, and bytes that are not
/// UTF-8 (a log written by something else, or cut mid-character) are
/// shown as `\xNN`. A character split between two pieces is held back
/// until the next piece completes it.
#[derive(Default)]
pub struct LogEscaper {
    /// The start of a character the last piece ended in (at most 3 bytes).
    unfinished: Vec<u8>,
}

impl LogEscaper {
    /// The printable form of the next piece of the log.
    pub fn escape(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut rest = if self.unfinished.is_empty() {
            bytes
        } else {
            self.unfinished.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.unfinished);
            &joined[..]
        };
        let mut out = String::with_capacity(rest.len());
        loop {
            let error = match std::str::from_utf8(rest) {
                Ok(text) => {
                    push_escaped(text, Newline::Keep, &mut out);
                    return out;
                }
                Err(error) => error,
            };
            let (valid, after) = rest.split_at(error.valid_up_to());
            push_escaped(&String::from_utf8_lossy(valid), Newline::Keep, &mut out);
            match error.error_len() {
                Some(bad) => {
                    push_bytes_escaped(&after[..bad], &mut out);
                    rest = &after[bad..];
                }
                None => {
                    self.unfinished = after.to_vec();
                    return out;
                }
            }
        }
    }

    /// The end of the log: a character left unfinished is shown as bytes.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        push_bytes_escaped(&std::mem::take(&mut self.unfinished), &mut out);
        out
    }
}

fn push_bytes_escaped(bytes: &[u8], out: &mut String) {
    for byte in bytes {
        let _ = write!(out, "\\x{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_the_first_and_the_last_line() {
        let reason = "the agent exited with code 64; the end of its output:\nbuilding\nerror: cannot compile\n\n";
        assert_eq!(
            summary(reason),
            "the agent exited with code 64; the end of its output: … error: cannot compile"
        );
        assert_eq!(summary("just one line"), "just one line");
    }

    #[test]
    fn one_line_cuts_long_lines_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = one_line(&format!("  {long}\nsecond"));
        assert_eq!(cut.chars().count(), ONE_LINE_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn last_lines_and_bullets() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(bullets(&[]), "(none given)");
        assert_eq!(bullets(&["x".into(), "y".into()]), "- x\n- y");
    }

    #[test]
    fn escape_controls_shows_every_control_character() {
        assert_eq!(escape_controls("plain text, é 😀\ttab"), "plain text, é 😀\ttab");
        assert!(matches!(escape_controls("clean"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("\x1b[2J\r\n\0\x07\x7f\u{9b}\u{85}\u{a0}"),
            "\\e[2J\\r\\n\\x00\\x07\\x7f\\u{9b}\\u{85}\u{a0}"
        );
    }

    #[test]
    fn escaping_twice_is_escaping_once() {
        let once = escape_controls("a\nb\x1b[0m c\\e").into_owned();
        assert_eq!(once, "a\\nb\\e[0m c\\e");
        assert_eq!(escape_controls(&once), once);
    }

    #[test]
    fn log_escaper_keeps_lines_and_shows_bad_bytes() {
        let mut escaper = LogEscaper::default();
        assert_eq!(escaper.escape(b"one\ttab\n\x1b[31mred\r\n"), "one\ttab\n\\e[31mred\\r\n");
        assert_eq!(escaper.escape(b"bad \xff\x9b \xc2\x9b\n"), "bad \\xff\\x9b \\u{9b}\n");
        assert_eq!(escaper.finish(), "");
    }

    #[test]
    fn log_escaper_joins_a_character_split_between_pieces() {
        let mut escaper = LogEscaper::default();
        let text = "é😀\u{9b}".as_bytes();
        let mut out = String::new();
        for byte in text {
            out.push_str(&escaper.escape(&[*byte]));
        }
        assert_eq!(out, "é😀\\u{9b}");
        assert_eq!(escaper.escape(b"\xf0\x9f"), "");
        assert_eq!(escaper.finish(), "\\xf0\\x9f");
        assert_eq!(escaper.escape(b"\xf0\x9fx"), "\\xf0\\x9fx");
    }
}
