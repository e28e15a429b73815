//! Finds the agent's `<event topic="…">payload</event>` claims in its text.
//! This is the whole protocol between an agent and rasen: the orchestrator
//! decides what an event means; this module only finds them, in text that
//! arrives in pieces (lines, message blocks), with bounded memory.
//!
//! Accepted shape: `<event`, whitespace, attributes (`topic` is required;
//! values in `"…"`, `'…'` or bare), optional whitespace, `>`, a payload that
//! may span lines, then `</event>` (whitespace allowed inside the tag:
//! `</event >`, `</ event>`). `<event topic="x"/>` is an event with an empty
//! payload. Topic and payload are trimmed. An event that has not closed
//! within [`MAX_EVENT_BYTES`] of its `<event` is dropped, however its text
//! was chunked, so a stray `<event` cannot make rasen buffer without end.
//! A second `<event` before the first one's `</event>` means the first was
//! never closed: scanning restarts at the second.
//!
//! It never interprets topics: unknown ones are returned too (see
//! [`Event::is_known`]) so the orchestrator can log and ignore them.

/// The topics of the agent protocol (ARCHITECTURE.md, "The agent protocol").
pub const KNOWN_TOPICS: [&str; 7] = [
    "build.done",
    "build.blocked",
    "init.done",
    "review.approved",
    "review.changes_requested",
    "qa.approved",
    "qa.rejected",
];

/// The longest event (from `<event` to the end of `</event>`) that is kept.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

const OPEN: &str = "<event";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub topic: String,
    pub payload: String,
}

impl Event {
    /// True for the topics in [`KNOWN_TOPICS`].
    pub fn is_known(&self) -> bool {
        KNOWN_TOPICS.contains(&self.topic.as_str())
    }
}

/// Every event in one complete text.
pub fn extract_events(text: &str) -> Vec<Event> {
    EventScanner::new().feed(text)
}

/// Incremental scanner: feed text as it arrives, get the events that
/// completed. Holds at most one unfinished event (≤ [`MAX_EVENT_BYTES`]).
#[derive(Debug, Default)]
pub struct EventScanner {
    /// Text from the start of a possible event (or a possible `<event`
    /// prefix at the end of the last chunk); everything before is gone.
    pending: String,
    /// Where the search for `</event>` resumes in `pending`, so that a long
    /// payload arriving line by line is not rescanned from its start.
    close_search_from: usize,
}

/// What the text starting at an `<event` turned out to be.
enum Parsed {
    /// A whole event, and the byte length it took.
    Complete(Event, usize),
    /// Not an event (`<eventual`, no topic, unclosed before another
    /// `<event`, too long): skip this `<event` and scan on.
    NotAnEvent,
    /// Needs more text; the search for the closing tag may resume here.
    NeedMore(usize),
}

impl EventScanner {
    pub fn new() -> EventScanner {
        EventScanner::default()
    }

    /// Adds `text` and returns the events it completed, in order.
    pub fn feed(&mut self, text: &str) -> Vec<Event> {
        self.pending.push_str(text);
        let mut events = Vec::new();
        loop {
            let Some(start) = self.pending.find(OPEN) else {
                self.keep_possible_open_prefix();
                return events;
            };
            if start > 0 {
                self.pending.drain(..start);
                self.close_search_from = 0;
            }
            match parse_event(&self.pending, self.close_search_from) {
                Parsed::Complete(event, len) => {
                    events.push(event);
                    self.skip(len);
                }
                Parsed::NotAnEvent => self.skip(OPEN.len()),
                Parsed::NeedMore(_) if self.pending.len() > MAX_EVENT_BYTES => {
                    self.skip(OPEN.len())
                }
                Parsed::NeedMore(resume) => {
                    self.close_search_from = resume;
                    return events;
                }
            }
        }
    }

    fn skip(&mut self, len: usize) {
        self.pending.drain(..len);
        self.close_search_from = 0;
    }

    /// Keeps only a tail that could still grow into `<event` ("<", "<ev"…).
    fn keep_possible_open_prefix(&mut self) {
        let keep_from = self
            .pending
            .char_indices()
            .rev()
            .take(OPEN.len() - 1)
            .filter(|&(i, c)| c == '<' && OPEN.starts_with(&self.pending[i..]))
            .map(|(i, _)| i)
            .last();
        match keep_from {
            Some(i) => drop(self.pending.drain(..i)),
            None => self.pending.clear(),
        }
        self.close_search_from = 0;
    }
}

/// Parses the event at the start of `text` (which starts with `<event`).
fn parse_event(text: &str, close_search_from: usize) -> Parsed {
    let (topic, body_start, self_closing) = match parse_open_tag(text) {
        OpenTag::Done { topic, end, self_closing } => (topic, end, self_closing),
        OpenTag::NotAnEvent => return Parsed::NotAnEvent,
        OpenTag::NeedMore => return Parsed::NeedMore(0),
    };
    if self_closing {
        return complete(topic, "", body_start);
    }
    match find_close_tag(text, body_start.max(close_search_from)) {
        CloseTag::Found { at, end } => complete(topic, &text[body_start..at], end),
        CloseTag::NestedOpen => Parsed::NotAnEvent,
        CloseTag::NeedMore(resume) => Parsed::NeedMore(resume),
    }
}

fn complete(topic: String, payload: &str, len: usize) -> Parsed {
    if len > MAX_EVENT_BYTES {
        return Parsed::NotAnEvent;
    }
    Parsed::Complete(Event { topic, payload: payload.trim().to_string() }, len)
}

enum OpenTag {
    Done { topic: String, end: usize, self_closing: bool },
    NotAnEvent,
    NeedMore,
}

/// Reads `<event attr="v" …>` or `…/>`.
fn parse_open_tag(text: &str) -> OpenTag {
    let b = text.as_bytes();
    let mut i = OPEN.len();
    match b.get(i) {
        None => return OpenTag::NeedMore,
        Some(c) if c.is_ascii_whitespace() => {}
        Some(_) => return OpenTag::NotAnEvent, // `<eventual`, `<event>`
    }
    let mut topic = None;
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        match b.get(i) {
            None => return OpenTag::NeedMore,
            Some(b'>') => return open_tag_done(topic, i + 1, false),
            Some(b'/') => {
                return match b.get(i + 1) {
                    None => OpenTag::NeedMore,
                    Some(b'>') => open_tag_done(topic, i + 2, true),
                    Some(_) => OpenTag::NotAnEvent,
                }
            }
            Some(_) => {}
        }
        let (name, value, next) = match parse_attribute(text, i) {
            Attribute::Done { name, value, next } => (name, value, next),
            Attribute::Malformed => return OpenTag::NotAnEvent,
            Attribute::NeedMore => return OpenTag::NeedMore,
        };
        if name == "topic" {
            topic = Some(value.trim().to_string());
        }
        i = next;
    }
}

fn open_tag_done(topic: Option<String>, end: usize, self_closing: bool) -> OpenTag {
    match topic {
        Some(topic) if !topic.is_empty() => OpenTag::Done { topic, end, self_closing },
        _ => OpenTag::NotAnEvent,
    }
}

enum Attribute<'a> {
    Done { name: &'a str, value: &'a str, next: usize },
    Malformed,
    NeedMore,
}

/// Reads `name = "value"` (or `'value'`, or a bare value) starting at `i`.
fn parse_attribute(text: &str, mut i: usize) -> Attribute<'_> {
    let b = text.as_bytes();
    let name_start = i;
    while b.get(i).is_some_and(|&c| c.is_ascii_alphanumeric() || b"_-.:".contains(&c)) {
        i += 1;
    }
    let name = &text[name_start..i];
    if name.is_empty() {
        return Attribute::Malformed;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    match b.get(i) {
        None => return Attribute::NeedMore,
        Some(b'=') => i += 1,
        Some(_) => return Attribute::Malformed,
    }
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    match b.get(i) {
        None => Attribute::NeedMore,
        Some(&quote) if quote == b'"' || quote == b'\'' => {
            match text[i + 1..].find(quote as char) {
                Some(len) => {
                    let value = &text[i + 1..i + 1 + len];
                    Attribute::Done { name, value, next: i + 2 + len }
                }
                None => Attribute::NeedMore,
            }
        }
        Some(_) => {
            let value_start = i;
            while b.get(i).is_some_and(|&c| !c.is_ascii_whitespace() && c != b'>' && c != b'/') {
                i += 1;
            }
            if i == b.len() {
                return Attribute::NeedMore;
            }
            Attribute::Done { name, value: &text[value_start..i], next: i }
        }
    }
}

enum CloseTag {
    /// `</event>` starts at `at` and ends at `end`.
    Found { at: usize, end: usize },
    /// Another `<event` came first.
    NestedOpen,
    /// Not found yet; nothing before `resume` can start it.
    NeedMore(usize),
}

/// Finds the first `</event>` (or another `<event`) at or after `from`.
fn find_close_tag(text: &str, from: usize) -> CloseTag {
    let b = text.as_bytes();
    let mut i = from;
    while let Some(offset) = text[i..].find('<') {
        let at = i + offset;
        let rest = &text[at..];
        if OPEN.starts_with(rest) {
            return CloseTag::NeedMore(at); // "<", "<ev", "<event" at the very end
        }
        if rest.starts_with(OPEN) && rest.as_bytes()[OPEN.len()].is_ascii_whitespace() {
            return CloseTag::NestedOpen;
        }
        match match_close_tag(b, at) {
            Some(Some(end)) => return CloseTag::Found { at, end },
            Some(None) => i = at + 1,
            None => return CloseTag::NeedMore(at),
        }
    }
    CloseTag::NeedMore(text.len())
}

/// At `at` (a `<`): `Some(Some(end))` for `</ event >`, `Some(None)` for
/// anything else, `None` when the text ends before it can be decided.
fn match_close_tag(b: &[u8], at: usize) -> Option<Option<usize>> {
    let mut i = at + 1;
    let skip_space = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    if *b.get(i)? != b'/' {
        return Some(None);
    }
    i += 1;
    skip_space(&mut i);
    for &expected in b"event" {
        if *b.get(i)? != expected {
            return Some(None);
        }
        i += 1;
    }
    skip_space(&mut i);
    if *b.get(i)? != b'>' {
        return Some(None);
    }
    Some(Some(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(topic: &str, payload: &str) -> Event {
        Event { topic: topic.to_string(), payload: payload.to_string() }
    }

    #[test]
    fn finds_an_event_anywhere_in_text() {
        let text = "Done.\nAll good <event topic=\"build.done\">tests: pass, lint: pass. Added X</event> bye";
        assert_eq!(
            extract_events(text),
            vec![ev("build.done", "tests: pass, lint: pass. Added X")]
        );
    }

    #[test]
    fn payload_may_span_lines_and_is_trimmed() {
        let text = "<event topic=\"qa.rejected\">\n- issue one\n- issue two\n</event>";
        assert_eq!(extract_events(text), vec![ev("qa.rejected", "- issue one\n- issue two")]);
    }

    #[test]
    fn accepts_single_quotes_bare_values_and_whitespace() {
        let text = "<event   topic = 'review.approved' >ok</event >\
                    <event\ntopic=init.done>plan</ event>\
                    <event topic=\"build.blocked\" reason=\"x\">why</event>";
        assert_eq!(
            extract_events(text),
            vec![ev("review.approved", "ok"), ev("init.done", "plan"), ev("build.blocked", "why")]
        );
    }

    #[test]
    fn self_closing_event_has_an_empty_payload() {
        assert_eq!(extract_events("<event topic=\"qa.approved\"/>"), vec![ev("qa.approved", "")]);
        assert_eq!(extract_events("<event topic=\"qa.approved\" />"), vec![ev("qa.approved", "")]);
    }

    #[test]
    fn ignores_lookalikes_and_tags_without_topic() {
        let text =
            "<eventual>x</eventual> <event>no topic</event> <event topic=\"\">empty</event> \
                    <event name=\"x\">no topic</event> <events topic=\"a\">b</events>";
        assert_eq!(extract_events(text), vec![]);
    }

    #[test]
    fn unknown_topics_are_returned_and_marked() {
        let events = extract_events(
            "<event topic=\"build.dance\">x</event><event topic=\"build.done\">y</event>",
        );
        assert_eq!(events.len(), 2);
        assert!(!events[0].is_known());
        assert!(events[1].is_known());
    }

    #[test]
    fn unclosed_event_before_another_is_skipped() {
        let text =
            "<event topic=\"build.done\">never closed <event topic=\"build.blocked\">stuck</event>";
        assert_eq!(extract_events(text), vec![ev("build.blocked", "stuck")]);
    }

    #[test]
    fn events_split_across_chunks_are_found_whatever_the_split() {
        let text = "pre <event topic=\"build.done\">tests: pass\nlint: pass</event> mid \
                    <event topic='qa.rejected'>a</ event > post";
        let expected = extract_events(text);
        assert_eq!(expected.len(), 2);
        for size in 1..12 {
            let mut scanner = EventScanner::new();
            let mut found = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(size) {
                found.extend(scanner.feed(&chunk.iter().collect::<String>()));
            }
            assert_eq!(found, expected, "chunk size {size}");
        }
    }

    #[test]
    fn multibyte_text_around_events_is_fine() {
        let text =
            "✓ réussi <event topic=\"build.done\">tests: pass ∙ lint: pass — 完成</event> ✓<";
        assert_eq!(extract_events(text), vec![ev("build.done", "tests: pass ∙ lint: pass — 完成")]);
    }

    #[test]
    fn unterminated_event_is_dropped_after_the_bound() {
        let mut scanner = EventScanner::new();
        assert!(scanner.feed("<event topic=\"build.done\">").is_empty());
        let line = "x".repeat(1000) + "\n";
        for _ in 0..200 {
            assert!(scanner.feed(&line).is_empty());
            assert!(scanner.pending.len() <= MAX_EVENT_BYTES + line.len());
        }
        assert!(scanner.feed("</event>").is_empty());
        // The scanner recovers: the next event is found.
        let found = scanner.feed("<event topic=\"build.blocked\">b</event>");
        assert_eq!(found, vec![ev("build.blocked", "b")]);
    }

    #[test]
    fn an_event_longer_than_the_bound_is_dropped_even_in_one_piece() {
        let big = format!("<event topic=\"build.done\">{}</event>", "y".repeat(MAX_EVENT_BYTES));
        assert_eq!(extract_events(&big), vec![]);
        let fits = format!("<event topic=\"build.done\">{}</event>", "y".repeat(1000));
        assert_eq!(extract_events(&fits).len(), 1);
    }

    #[test]
    fn plain_text_is_not_buffered() {
        let mut scanner = EventScanner::new();
        for _ in 0..1000 {
            scanner.feed("lots of ordinary output < not a tag\n");
        }
        assert!(scanner.pending.is_empty());
        scanner.feed("ends with <ev");
        assert_eq!(scanner.pending, "<ev");
        assert_eq!(scanner.feed("ent topic=\"init.done\">p</event>"), vec![ev("init.done", "p")]);
    }

    #[test]
    fn long_payload_fed_line_by_line_is_scanned_once() {
        let mut scanner = EventScanner::new();
        scanner.feed("<event topic=\"qa.rejected\">");
        for i in 0..500 {
            scanner.feed(&format!("issue {i}\n"));
        }
        assert!(scanner.close_search_from > scanner.pending.len() - 20);
        let found = scanner.feed("</event>");
        assert_eq!(found.len(), 1);
        assert!(found[0].payload.starts_with("issue 0\nissue 1\n"));
        assert!(found[0].payload.ends_with("issue 499"));
    }
}
