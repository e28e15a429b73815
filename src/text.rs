//! Short forms of long text for log lines, reasons and prompts: the first
//! line of a description, the first and last line of an agent's output.
//! Pure functions; nothing here reads or writes anything.

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
}
