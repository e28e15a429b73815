//! What a session keeps of its agent's output: each stream split into
//! lines (of each only as much as the reader needs), each line handed to
//! the reader, its readable form logged and kept in a short tail, the
//! agent's own words scanned for events.
//!
//! This module never touches the agent's processes and never interprets a
//! backend's format: the reader does.

use std::fs::File;
use std::time::Duration;

use super::{log_agent_line, log_note, SessionEnd, SessionReport, SessionRequest};
use crate::events::{self, Event, EventScanner};
use crate::reader::{self, Reader, Stream};

/// Kept of each text line (for the log, the tail and the event scan).
pub(super) const LINE_KEEP: usize = reader::MAX_TEXT_LINE;
/// The size of the report's tail.
pub(super) const TAIL_BYTES: usize = 4 * 1024;
/// At most this many distinct events are kept.
const MAX_EVENTS: usize = 100;

/// One of the agent's output streams.
pub(super) struct Pipe {
    /// Open until the stream ends (the session polls and reads it).
    pub(super) file: Option<File>,
    stream: Stream,
    line: LineBuffer,
    /// Each stream has its own scanner: the two interleave arbitrarily.
    events: EventScanner,
}

impl Pipe {
    /// `keep`: how much of each line the reader needs.
    pub(super) fn new(file: File, stream: Stream, keep: usize) -> Pipe {
        Pipe { file: Some(file), stream, line: LineBuffer::new(keep), events: EventScanner::new() }
    }

    /// Bytes read from the stream: counted, and each line they complete
    /// handed on.
    pub(super) fn take_bytes(&mut self, bytes: &[u8], output: &mut Output) {
        output.bytes += bytes.len() as u64;
        let Pipe { line, events, stream, .. } = self;
        line.push(bytes, &mut |text, dropped| output.take_line(*stream, text, dropped, events));
    }

    pub(super) fn finish(&mut self, output: &mut Output) {
        let Pipe { line, events, stream, .. } = self;
        line.finish(&mut |text, dropped| output.take_line(*stream, text, dropped, events));
    }
}

/// Splits a byte stream into lines, keeping at most `keep` bytes of each
/// and counting the rest.
struct LineBuffer {
    kept: Vec<u8>,
    keep: usize,
    dropped: u64,
}

impl LineBuffer {
    fn new(keep: usize) -> LineBuffer {
        LineBuffer { kept: Vec::new(), keep, dropped: 0 }
    }

    /// Calls `on_line(kept bytes, dropped byte count)` for each line that
    /// `bytes` completes.
    fn push(&mut self, mut bytes: &[u8], on_line: &mut dyn FnMut(&[u8], u64)) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.append(&bytes[..newline]);
            self.emit(on_line);
            bytes = &bytes[newline + 1..];
        }
        self.append(bytes);
    }

    /// The stream ended: a last line without a newline is still a line.
    fn finish(&mut self, on_line: &mut dyn FnMut(&[u8], u64)) {
        if !self.kept.is_empty() || self.dropped > 0 {
            self.emit(on_line);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.keep - self.kept.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }

    fn emit(&mut self, on_line: &mut dyn FnMut(&[u8], u64)) {
        let line = match self.kept.strip_suffix(b"\r") {
            Some(line) if self.dropped == 0 => line,
            _ => &self.kept[..],
        };
        on_line(line, self.dropped);
        self.kept.clear();
        self.dropped = 0;
        if self.kept.capacity() > LINE_KEEP {
            self.kept = Vec::new(); // do not hold on to a huge line's buffer
        }
    }
}

/// What the session keeps of its output.
pub(super) struct Output {
    log_prefix: String,
    reader: Box<dyn Reader>,
    events: Events,
    tail: Tail,
    bytes: u64,
}

impl Output {
    pub(super) fn new(req: &SessionRequest, reader: Box<dyn Reader>) -> Output {
        Output {
            log_prefix: req.log_prefix.clone(),
            reader,
            events: Events::default(),
            tail: Tail::default(),
            bytes: 0,
        }
    }

    /// One line of output: read it, log it, remember it, scan it.
    fn take_line(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        dropped: u64,
        scanner: &mut EventScanner,
    ) {
        let text = String::from_utf8_lossy(bytes);
        let reading = self.reader.line(stream, &text, dropped);
        for line in &reading.log_lines {
            log_agent_line(&self.log_prefix, line);
            self.tail.push_line(line);
        }
        for text in &reading.scan_text {
            let mut found = scanner.feed(text);
            found.extend(scanner.feed("\n"));
            for event in found {
                self.events.add(event);
            }
        }
    }

    /// The session's report, once its output has ended.
    pub(super) fn into_report(self, end: SessionEnd, duration: Duration) -> SessionReport {
        let Output { reader, mut events, tail, bytes, .. } = self;
        let told = reader.report();
        if let Some(text) = &told.final_text {
            for event in events::extract_events(text) {
                events.add(event);
            }
        }
        SessionReport {
            end,
            events: events.list,
            tail: tail.into_string(),
            usage: told.usage,
            failure: told.failure,
            usage_limit: told.usage_limit,
            root_refusal: told.root_refusal,
            output_bytes: bytes,
            duration,
        }
    }
}

/// The distinct events found, at most [`MAX_EVENTS`].
#[derive(Default)]
struct Events {
    list: Vec<Event>,
    dropped: bool,
}

impl Events {
    fn add(&mut self, event: Event) {
        if self.list.contains(&event) {
            return;
        }
        if self.list.len() >= MAX_EVENTS {
            if !self.dropped {
                log_note(&format!("agent sent more than {MAX_EVENTS} events: ignoring the rest"));
                self.dropped = true;
            }
            return;
        }
        self.list.push(event);
    }
}

/// The last few KiB of logged text.
#[derive(Default)]
struct Tail {
    text: String,
}

impl Tail {
    fn push_line(&mut self, line: &str) {
        self.text.push_str(reader::clip(line, TAIL_BYTES));
        self.text.push('\n');
        if self.text.len() > 2 * TAIL_BYTES {
            let start = self.keep_from();
            self.text.drain(..start);
        }
    }

    /// Where the last TAIL_BYTES start, on a character boundary.
    fn keep_from(&self) -> usize {
        let mut start = self.text.len().saturating_sub(TAIL_BYTES);
        while !self.text.is_char_boundary(start) {
            start += 1;
        }
        start
    }

    fn into_string(mut self) -> String {
        let start = self.keep_from();
        self.text.drain(..start);
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_keeps_a_bounded_head_of_each_line() {
        let mut lines = Vec::new();
        let mut buffer = LineBuffer::new(4);
        let mut collect = |kept: &[u8], dropped: u64| lines.push((kept.to_vec(), dropped));
        buffer.push(b"ab\r\nabcdefg", &mut collect);
        buffer.push(b"hi\nx", &mut collect);
        buffer.finish(&mut collect);
        assert_eq!(lines, [(b"ab".to_vec(), 0), (b"abcd".to_vec(), 5), (b"x".to_vec(), 0)]);
    }

    #[test]
    fn tail_keeps_the_last_kilobytes_on_a_character_boundary() {
        let mut tail = Tail::default();
        for i in 0..2000 {
            tail.push_line(&format!("ligne numéro {i}"));
        }
        let text = tail.into_string();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with("ligne numéro 1999\n"));
    }
}
