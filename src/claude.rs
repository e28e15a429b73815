//! Claude Code's side of the agent protocol: the command line rasen runs
//! (`claude -p --verbose --output-format stream-json …`) and the reader of
//! its output, one line at a time, into what rasen needs: a readable line
//! for the log, the text to scan for events, and in the end the last
//! `result` (tokens, cost, failure), a usage limit with its reset time, and
//! Claude's refusal to run as root, as a neutral `ReaderReport`.
//!
//! Only the agent's own words are handed out for event scanning: the text
//! blocks of top-level `assistant` lines (`parent_tool_use_id` null or
//! absent) and lines that are not JSON. Never tool results or user
//! content, which may quote anything, including `<event …>` tags. The last
//! `result` line's text is the report's `final_text`, scanned by the caller
//! once the session is over (it repeats the final assistant text, so
//! callers de-duplicate). Stderr, and stdout lines that are not JSON, are
//! read as text that may hold a usage-limit message or the root refusal;
//! limit messages are recognized by `usage_limit`.
//!
//! This module never starts processes and never touches the disk except to
//! read a time-zone file (through `usage_limit` and `clock::tz`) when a
//! limit message names a zone.

use miniserde::json::{self, Number, Value};

use crate::clock;
use crate::reader::{self, Failure, Reader, ReaderReport, Reading, Stream, TextReader, Usage};
use crate::usage_limit::{self, UsageLimit};

/// `[command, -p, --verbose, --output-format, stream-json,
/// --permission-mode, bypassPermissions, (--model M), extra…]`. The prompt
/// is not here: it goes to stdin, so that it does not show in `ps`.
pub fn claude_argv(command: &str, model: &str, extra: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        command,
        "-p",
        "--verbose", // stream-json with --print requires it (CLI ≥ 2.1.22)
        "--output-format",
        "stream-json",
        "--permission-mode",
        "bypassPermissions",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !model.trim().is_empty() {
        argv.push("--model".to_string());
        argv.push(model.trim().to_string());
    }
    argv.extend(extra.iter().cloned());
    argv
}

/// The last `result` line of a session.
#[derive(Clone, Debug, PartialEq)]
struct ResultInfo {
    is_error: bool,
    subtype: String,
    /// The `result` text, or when absent the `errors` joined with "; ".
    text: String,
    /// Every input token the model read: fresh input plus cache creation
    /// plus cache reads (all of them fill the context; `cost_usd` is what
    /// prices them).
    input_tokens: u64,
    output_tokens: u64,
    /// `total_cost_usd`; 0 when absent or not a finite non-negative number.
    cost_usd: f64,
}

impl ResultInfo {
    /// `is_error: true`, or a subtype other than "success" (the old
    /// `error_max_turns` shape has `is_error: false`).
    fn failed(&self) -> bool {
        self.is_error || self.subtype != "success"
    }
}

/// Reads one session's output, line by line, and remembers what matters.
#[derive(Debug)]
pub struct StreamReader {
    result: Option<ResultInfo>,
    limit_event: Option<RejectedLimit>,
    /// Reads the text lines, and keeps the usage-limit message and the root
    /// refusal found in them or in Claude's own messages.
    text: TextReader,
}

/// A `rate_limit_event` with status `rejected`.
#[derive(Clone, Debug)]
struct RejectedLimit {
    kind: String,
    resets_at: Option<i64>,
}

/// The longest tool detail, result excerpt… shown on one log line.
const SHORT: usize = 200;
/// The most of one assistant message that goes to the log.
const MAX_LOGGED_TEXT: usize = 64 * 1024;
/// Kept of each stream-json line, to parse it. This covers every line
/// Claude can produce of its own words (a `result` holds one message,
/// bounded by the model's output limit); longer ones are tool output and
/// are only noted.
const JSON_LINE_KEEP: usize = 4 * 1024 * 1024;
/// Shown of a stream-json line too long to parse.
const UNPARSED_HEAD: usize = 200;

impl Default for StreamReader {
    fn default() -> StreamReader {
        StreamReader {
            result: None,
            limit_event: None,
            text: TextReader::watching(clock::now_secs),
        }
    }
}

impl Reader for StreamReader {
    /// Stdout lines are kept whole up to [`JSON_LINE_KEEP`], to be parsed.
    fn line_keep(&self, stream: Stream) -> usize {
        match stream {
            Stream::Stdout => JSON_LINE_KEEP,
            Stream::Stderr => reader::MAX_TEXT_LINE,
        }
    }

    fn line(&mut self, stream: Stream, text: &str, more_bytes: u64) -> Reading {
        match stream {
            Stream::Stdout if more_bytes == 0 => self.read_json_line(text),
            // Too long to parse: tool output (a file read, a subagent's
            // report), never the agent's own message or the result.
            Stream::Stdout if text.trim_start().starts_with('{') => {
                let head = reader::clip(text, UNPARSED_HEAD);
                let more = more_bytes + (text.len() - head.len()) as u64;
                log_only(format!("{head} … ({more} more bytes, too long to read as JSON)"))
            }
            Stream::Stdout | Stream::Stderr => self.read_text_line(text, more_bytes),
        }
    }

    fn report(self: Box<Self>) -> ReaderReport {
        let usage_limit = self.usage_limit();
        let root_refusal = self.root_refusal();
        let result = self.result;
        ReaderReport {
            usage: result.as_ref().map(|r| Usage {
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost_usd: r.cost_usd,
            }),
            failure: result
                .as_ref()
                .filter(|r| r.failed())
                .map(|r| Failure { kind: r.subtype.clone(), message: r.text.clone() }),
            usage_limit,
            root_refusal,
            final_text: result.map(|r| r.text),
        }
    }
}

impl StreamReader {
    pub fn new() -> StreamReader {
        StreamReader::default()
    }

    /// True once Claude refused `bypassPermissions` because it runs as root.
    fn root_refusal(&self) -> bool {
        self.text.root_refusal()
    }

    /// The usage limit, if one was seen: the message Claude printed (or a
    /// description of the `rate_limit_event`), with the exact `resetsAt` of
    /// a rejected `rate_limit_event` preferred over a time read from text.
    fn usage_limit(&self) -> Option<UsageLimit> {
        match (self.text.usage_limit(), &self.limit_event) {
            (Some(text), Some(event)) => Some(UsageLimit {
                message: text.message.clone(),
                resets_at: event.resets_at.or(text.resets_at),
            }),
            (Some(text), None) => Some(text.clone()),
            (None, Some(event)) => Some(UsageLimit {
                message: format!("usage limit reached ({})", event.kind),
                resets_at: event.resets_at,
            }),
            (None, None) => None,
        }
    }

    /// Reads one stdout line of `--output-format stream-json`. A line that
    /// is not a JSON object is text.
    fn read_json_line(&mut self, line: &str) -> Reading {
        let trimmed = line.trim();
        if !trimmed.starts_with('{') {
            return self.read_text_line(line, 0);
        }
        let value: Value = match json::from_str(trimmed) {
            Ok(value @ Value::Object(_)) => value,
            _ => return self.read_text_line(line, 0),
        };
        match str_field(&value, "type").unwrap_or("") {
            "assistant" => self.read_assistant(&value),
            "user" => read_user(&value),
            "result" => self.read_result(&value),
            "system" => read_system(&value),
            "rate_limit_event" => self.read_rate_limit_event(&value),
            other => {
                let kind = if other.is_empty() { "json" } else { other };
                log_only(format!("{kind}: {}", one_line(trimmed, SHORT)))
            }
        }
    }

    /// Reads one line of plain text (stderr, or a non-JSON stdout line): it
    /// is logged and scanned, and checked for a usage-limit message and for
    /// the root refusal. `more_bytes` were cut off before it came here.
    fn read_text_line(&mut self, line: &str, more_bytes: u64) -> Reading {
        self.text.read_line(line, more_bytes)
    }

    fn read_assistant(&mut self, value: &Value) -> Reading {
        let top_level = matches!(field(value, "parent_tool_use_id"), None | Some(Value::Null));
        let who = if top_level { "" } else { "[subagent] " };
        let message = field(value, "message");
        // Claude reports API errors (a usage limit among them) as a
        // synthetic assistant message; only those are checked for limits,
        // so that the agent discussing limits in its own words is not one.
        let api_error = field(value, "error").is_some()
            || bool_field(value, "is_api_error_message") == Some(true)
            || message.and_then(|m| str_field(m, "model")) == Some("<synthetic>");
        let mut reading = Reading::default();
        for block in content_blocks(message) {
            match block {
                Block::Text(text) => {
                    if top_level {
                        reading.scan_text.push(text.to_string());
                        if api_error {
                            self.text.note_limit_message(text);
                        }
                    }
                    push_text_lines(&mut reading.log_lines, who, text);
                }
                Block::Other(block) => match str_field(block, "type").unwrap_or("") {
                    "tool_use" => reading.log_lines.push(format!("{who}{}", tool_use_line(block))),
                    "thinking" | "redacted_thinking" => {} // private reasoning, not logged
                    other => reading.log_lines.push(format!("{who}[{other}]")),
                },
            }
        }
        reading
    }

    fn read_result(&mut self, value: &Value) -> Reading {
        let usage = field(value, "usage");
        let info = ResultInfo {
            is_error: bool_field(value, "is_error").unwrap_or(false),
            subtype: str_field(value, "subtype").unwrap_or("").to_string(),
            text: result_text(value),
            input_tokens: usage.map(input_tokens).unwrap_or(0),
            output_tokens: usage.map(|u| u64_field(u, "output_tokens")).unwrap_or(0),
            cost_usd: f64_field(value, "total_cost_usd")
                .filter(|c| c.is_finite() && *c >= 0.0)
                .unwrap_or(0.0),
        };
        self.text.note_limit_message(&info.text);
        self.text.note_root_refusal(&info.text);
        let line = result_line(value, &info);
        self.result = Some(info);
        log_only(line)
    }

    fn read_rate_limit_event(&mut self, value: &Value) -> Reading {
        let info = field(value, "rate_limit_info");
        let status = info.and_then(|i| str_field(i, "status")).unwrap_or("?");
        let kind = info.and_then(|i| str_field(i, "rateLimitType")).unwrap_or("unknown");
        let resets_at = info.and_then(|i| field(i, "resetsAt")).and_then(epoch_seconds);
        if status == "rejected" {
            self.limit_event = Some(RejectedLimit { kind: kind.to_string(), resets_at });
        }
        let resets = resets_at.map(|t| format!(", resets {}", clock::format_iso(t)));
        log_only(format!("rate limit {status} ({kind}){}", resets.unwrap_or_default()))
    }
}

// --- JSON access -----------------------------------------------------------

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(object) => object.get(key),
        _ => None,
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    match field(value, key)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn bool_field(value: &Value, key: &str) -> Option<bool> {
    match field(value, key)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn f64_field(value: &Value, key: &str) -> Option<f64> {
    match field(value, key)? {
        Value::Number(Number::U64(n)) => Some(*n as f64),
        Value::Number(Number::I64(n)) => Some(*n as f64),
        Value::Number(Number::F64(n)) => Some(*n),
        _ => None,
    }
}

/// A count: 0 when absent, negative or not a number.
fn u64_field(value: &Value, key: &str) -> u64 {
    match field(value, key) {
        Some(Value::Number(Number::U64(n))) => *n,
        Some(Value::Number(Number::I64(n))) => (*n).max(0) as u64,
        Some(Value::Number(Number::F64(n))) if n.is_finite() && *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// `resetsAt`: seconds since the epoch (milliseconds are tolerated).
fn epoch_seconds(value: &Value) -> Option<i64> {
    let n = match value {
        Value::Number(Number::U64(n)) => i64::try_from(*n).ok()?,
        Value::Number(Number::I64(n)) => *n,
        Value::Number(Number::F64(n)) if n.is_finite() => *n as i64,
        _ => return None,
    };
    usage_limit::plausible_epoch(n)
}

fn input_tokens(usage: &Value) -> u64 {
    ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .map(|key| u64_field(usage, key))
        .fold(0u64, u64::saturating_add)
}

fn result_text(value: &Value) -> String {
    if let Some(text) = str_field(value, "result") {
        return text.to_string();
    }
    match field(value, "errors") {
        Some(Value::Array(errors)) => errors
            .iter()
            .filter_map(|e| match e {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

enum Block<'a> {
    Text(&'a str),
    Other(&'a Value),
}

/// The blocks of `message.content` (a string counts as one text block).
fn content_blocks(message: Option<&Value>) -> Vec<Block<'_>> {
    match message.and_then(|m| field(m, "content")) {
        Some(Value::String(text)) => vec![Block::Text(text)],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|block| match (str_field(block, "type"), str_field(block, "text")) {
                (Some("text"), Some(text)) => Block::Text(text),
                _ => Block::Other(block),
            })
            .collect(),
        _ => Vec::new(),
    }
}

// --- log lines -------------------------------------------------------------

fn log_only(line: String) -> Reading {
    Reading { log_lines: vec![line], scan_text: Vec::new() }
}

/// The assistant's text, one log line per line of text, at most
/// [`MAX_LOGGED_TEXT`] bytes of it.
fn push_text_lines(log_lines: &mut Vec<String>, who: &str, text: &str) {
    let shown = reader::clip(text, MAX_LOGGED_TEXT);
    for line in shown.lines().filter(|l| !l.trim().is_empty()) {
        log_lines.push(format!("{who}{line}"));
    }
    if shown.len() < text.len() {
        log_lines.push(format!("{who}… ({} more bytes)", text.len() - shown.len()));
    }
}

/// `tool Bash: ls -la`: the tool's name and the input field that says
/// what it does.
fn tool_use_line(block: &Value) -> String {
    let name = str_field(block, "name").unwrap_or("?");
    let input = field(block, "input");
    let detail =
        ["command", "file_path", "path", "pattern", "url", "query", "description", "prompt"]
            .iter()
            .find_map(|key| input.and_then(|i| str_field(i, key)));
    match detail {
        Some(detail) => format!("tool {name}: {}", one_line(detail, SHORT)),
        None => format!("tool {name}"),
    }
}

fn read_user(value: &Value) -> Reading {
    let top_level = matches!(field(value, "parent_tool_use_id"), None | Some(Value::Null));
    let who = if top_level { "" } else { "[subagent] " };
    let mut reading = Reading::default();
    for block in content_blocks(field(value, "message")) {
        let line = match block {
            Block::Text(text) => format!("{who}user: {}", one_line(text, SHORT)),
            Block::Other(block) if str_field(block, "type") == Some("tool_result") => {
                let outcome =
                    if bool_field(block, "is_error") == Some(true) { "error" } else { "result" };
                format!("{who}tool {outcome}: {}", one_line(&tool_result_text(block), SHORT))
            }
            Block::Other(block) => format!("{who}[{}]", str_field(block, "type").unwrap_or("?")),
        };
        reading.log_lines.push(line);
    }
    reading
}

fn tool_result_text(block: &Value) -> String {
    let blocks = content_blocks(Some(block));
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(text) => Some(*text),
            Block::Other(_) => None,
        })
        .collect();
    texts.join(" ")
}

fn read_system(value: &Value) -> Reading {
    let subtype = str_field(value, "subtype").unwrap_or("?");
    let text = |key| str_field(value, key).unwrap_or("?");
    let line = match subtype {
        "init" => format!(
            "session started: model {}, Claude Code {}, permission mode {}",
            text("model"),
            text("claude_code_version"),
            text("permissionMode")
        ),
        "api_retry" => format!(
            "API retry {}/{}: {} (HTTP {}), next try in {:.1} s",
            u64_field(value, "attempt"),
            u64_field(value, "max_retries"),
            text("error"),
            u64_field(value, "error_status"),
            f64_field(value, "retry_delay_ms").unwrap_or(0.0) / 1000.0
        ),
        _ => {
            let detail = ["summary", "description", "status"]
                .iter()
                .find_map(|key| str_field(value, key))
                .map(|d| format!(": {}", one_line(d, SHORT)));
            format!("system {subtype}{}", detail.unwrap_or_default())
        }
    };
    log_only(line)
}

/// `result: success · 2 turns · 8.7 s · 42339 tokens in / 424 out · $0.2472`,
/// with the text when the session failed.
fn result_line(value: &Value, info: &ResultInfo) -> String {
    let mut line = format!("result: {}", if info.subtype.is_empty() { "?" } else { &info.subtype });
    if info.is_error {
        line.push_str(" (error)");
    }
    if field(value, "num_turns").is_some() {
        line.push_str(&format!(" · {} turns", u64_field(value, "num_turns")));
    }
    if let Some(ms) = f64_field(value, "duration_ms") {
        line.push_str(&format!(" · {:.1} s", ms / 1000.0));
    }
    line.push_str(&format!(
        " · {} tokens in / {} out · ${:.4}",
        info.input_tokens, info.output_tokens, info.cost_usd
    ));
    if info.failed() && !info.text.is_empty() {
        line.push_str(&format!(": {}", one_line(&info.text, SHORT)));
    }
    line
}

/// The first non-blank line of `text`, at most `max` bytes, with `…` when
/// something was left out.
fn one_line(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    let first = trimmed.lines().next().unwrap_or("");
    let shown = reader::clip(first, max);
    if shown.len() < trimmed.len() {
        format!("{shown} …")
    } else {
        shown.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::tz::tests::has_zone;
    use crate::reader::MAX_TEXT_LINE;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/claude/");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
    }

    /// A pretty-printed sample as the one stream-json line Claude writes.
    fn as_one_line(pretty: &str) -> String {
        pretty.lines().map(str::trim).collect::<Vec<_>>().join(" ")
    }

    /// 2026-01-27T18:45:00Z, a fixed "now" for reset times.
    const NOW: i64 = 1_769_539_500;

    fn fixed_now() -> i64 {
        NOW
    }

    /// Replays stream-json lines; returns the reader and every reading.
    fn replay(text: &str) -> (StreamReader, Reading) {
        let mut reader =
            StreamReader { text: TextReader::watching(fixed_now), ..StreamReader::new() };
        let mut all = Reading::default();
        for line in text.lines() {
            let reading = reader.read_json_line(line);
            all.log_lines.extend(reading.log_lines);
            all.scan_text.extend(reading.scan_text);
        }
        (reader, all)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_runs_claude_non_interactively_with_stream_json() {
        assert_eq!(
            claude_argv("claude", "", &[]),
            strings(&[
                "claude",
                "-p",
                "--verbose",
                "--output-format",
                "stream-json",
                "--permission-mode",
                "bypassPermissions"
            ])
        );
        let argv = claude_argv("/opt/claude", "opus", &strings(&["--max-turns", "40"]));
        assert_eq!(argv[0], "/opt/claude");
        assert_eq!(argv[7..], strings(&["--model", "opus", "--max-turns", "40"]));
    }

    #[test]
    fn argv_uses_only_flags_the_real_cli_documents() {
        let help = fixture("claude-help-2.1.x.txt");
        for flag in ["-p, --print", "--verbose", "--output-format", "--permission-mode", "--model"]
        {
            assert!(help.contains(flag), "{flag}");
        }
        assert!(help.contains("\"bypassPermissions\"") && help.contains("\"stream-json\""));
    }

    #[test]
    fn stream_success_gives_text_tokens_cost_and_success() {
        let (reader, reading) = replay(&fixture("claude-stream-success.jsonl"));
        assert_eq!(reading.scan_text, strings(&["4"]));
        let result = reader.result.as_ref().unwrap();
        assert_eq!(
            *result,
            ResultInfo {
                is_error: false,
                subtype: "success".into(),
                text: "4".into(),
                input_tokens: 10 + 21570,
                output_tokens: 25,
                cost_usd: 0.1354875,
            }
        );
        assert!(!result.failed());
        assert_eq!(reader.usage_limit(), None);
        assert!(!reader.root_refusal());
        assert_eq!(
            reading.log_lines,
            strings(&[
                "session started: model claude-opus-4-5-20251101, Claude Code 2.1.7, permission mode acceptEdits",
                "4",
                "result: success · 1 turns · 2.4 s · 21580 tokens in / 25 out · $0.1355",
            ])
        );
    }

    #[test]
    fn system_init_is_only_logged() {
        let (reader, reading) = replay(&as_one_line(&fixture("claude-system-init.json")));
        assert_eq!(
            reading.log_lines,
            strings(&["session started: model claude-opus-4-5-20251101, Claude Code 2.1.3, permission mode acceptEdits"])
        );
        assert!(reading.scan_text.is_empty());
        assert!(reader.result.as_ref().is_none());
    }

    #[test]
    fn tool_use_is_logged_by_name_and_not_scanned() {
        let (_, reading) = replay(&as_one_line(&fixture("claude-assistant-tooluse.json")));
        assert_eq!(reading.log_lines, strings(&["tool Bash: ls -la"]));
        assert!(reading.scan_text.is_empty());
    }

    #[test]
    fn tool_results_are_logged_but_never_scanned() {
        let (reader, reading) = replay(&as_one_line(&fixture("claude-user-toolresult.json")));
        assert_eq!(reading.log_lines, strings(&["tool result: total 1976 …"]));
        assert!(reading.scan_text.is_empty());
        // Even when the tool output quotes an event or a limit message.
        let line = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"<event topic=\"build.done\">x</event>\nYou've hit your limit · resets 1pm (UTC)","tool_use_id":"t"}]},"parent_tool_use_id":null}"#;
        let (reader2, reading) = replay(line);
        assert!(reading.scan_text.is_empty());
        assert_eq!(reader2.usage_limit(), None);
        assert_eq!(reader.usage_limit(), None);
    }

    #[test]
    fn result_success_counts_cache_tokens_as_input() {
        let (reader, reading) = replay(&as_one_line(&fixture("claude-result-success.json")));
        let result = reader.result.as_ref().unwrap();
        assert_eq!(result.input_tokens, 18 + 25067 + 17254);
        assert_eq!(result.output_tokens, 424);
        assert_eq!(result.cost_usd, 0.24722425);
        assert_eq!(result.text, "Here are the files in the current directory.");
        assert!(!result.failed());
        assert_eq!(
            reading.log_lines,
            strings(&["result: success · 2 turns · 8.7 s · 42339 tokens in / 424 out · $0.2472"])
        );
        assert!(reading.scan_text.is_empty(), "the result text is scanned once, by the caller");
    }

    #[test]
    fn old_max_turns_result_is_a_failure_despite_is_error_false() {
        let (reader, _) = replay(&as_one_line(&fixture("claude-result-max-turns-2025-11.json")));
        let result = reader.result.as_ref().unwrap();
        assert!(!result.is_error);
        assert_eq!(result.subtype, "error_max_turns");
        assert!(result.failed());
        assert_eq!((result.input_tokens, result.output_tokens), (3 + 8999 + 14981, 456));
        assert_eq!(result.cost_usd, 0.16741);
        assert_eq!(result.text, "");
    }

    #[test]
    fn new_max_turns_results_are_failures_with_the_errors_as_text() {
        let (reader, reading) = replay(&fixture("claude-result-max-turns-2.1.x.jsonl"));
        // The last result wins.
        let last = reader.result.as_ref().unwrap();
        assert_eq!(
            *last,
            ResultInfo {
                is_error: true,
                subtype: "error_max_turns".into(),
                text: "Reached maximum number of turns (1)".into(),
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: 0.0,
            }
        );
        assert_eq!(
            reading.log_lines,
            strings(&[
                "result: error_max_turns (error) · 41 turns · 284.0 s · 1649314 tokens in / 15946 out · $1.4021: Reached maximum number of turns (40)",
                "result: error_max_turns (error) · 2 turns · 0 tokens in / 0 out · $0.0000: Reached maximum number of turns (1)",
            ])
        );
        let (first, _) =
            replay(fixture("claude-result-max-turns-2.1.x.jsonl").lines().next().unwrap());
        let first = first.result.as_ref().unwrap().clone();
        assert_eq!((first.input_tokens, first.output_tokens), (2409 + 29104 + 1617801, 15946));
        // miniserde does not round every float exactly: compare closely, not bit for bit.
        assert!((first.cost_usd - 1.4020935000000005).abs() < 1e-12);
    }

    #[test]
    fn rejected_rate_limit_event_is_a_limit_with_its_exact_reset() {
        let (reader, reading) = replay(&fixture("claude-rate-limit-stream.jsonl"));
        assert_eq!(
            reader.usage_limit(),
            Some(UsageLimit {
                message: "You've hit your session limit · resets 6:30pm (UTC)".into(),
                resets_at: Some(1_784_399_400),
            })
        );
        let result = reader.result.as_ref().unwrap();
        assert!(result.is_error && result.failed());
        assert_eq!(result.subtype, "success");
        assert_eq!(result.text, "You've hit your session limit · resets 6:30pm (UTC)");
        assert_eq!(
            reading.log_lines[0],
            "rate limit allowed_warning (five_hour), resets 2026-07-18T18:30:00Z"
        );
        assert_eq!(
            reading.log_lines[1],
            "rate limit rejected (five_hour), resets 2026-07-18T18:30:00Z"
        );
        // The synthetic assistant message is top-level text like any other.
        assert_eq!(
            reading.scan_text,
            strings(&["You've hit your session limit · resets 6:30pm (UTC)"])
        );
    }

    #[test]
    fn allowed_warning_alone_is_not_a_limit() {
        let first = fixture("claude-rate-limit-stream.jsonl").lines().next().unwrap().to_string();
        let (reader, _) = replay(&first);
        assert_eq!(reader.usage_limit(), None);
        let (reader, _) = replay(&fixture("claude-stream-2.1.284-excerpt.jsonl"));
        assert_eq!(reader.usage_limit(), None, "status allowed with overage rejected");
    }

    #[test]
    fn rate_limit_event_without_text_still_reports_the_limit() {
        let second = fixture("claude-rate-limit-stream.jsonl").lines().nth(1).unwrap().to_string();
        let (reader, _) = replay(&second);
        assert_eq!(
            reader.usage_limit(),
            Some(UsageLimit {
                message: "usage limit reached (five_hour)".into(),
                resets_at: Some(1_784_399_400)
            })
        );
    }

    #[test]
    fn limit_hit_mid_run_is_found_in_the_result_and_synthetic_message() {
        let (reader, reading) = replay(&fixture("claude-rate-limit-midrun.jsonl"));
        let limit = reader.usage_limit().unwrap();
        assert_eq!(limit.message, "You've hit your session limit · resets 11:10pm (UTC)");
        // NOW is 18:45 UTC: the same day at 23:10.
        assert_eq!(limit.resets_at, Some(NOW - (18 * 3600 + 45 * 60) + 23 * 3600 + 10 * 60));
        let result = reader.result.as_ref().unwrap();
        assert_eq!(
            *result,
            ResultInfo {
                is_error: true,
                subtype: "success".into(),
                text: "You've hit your session limit · resets 11:10pm (UTC)".into(),
                input_tokens: 132 + 122537 + 6694041,
                output_tokens: 52972,
                cost_usd: 6.753610549999998,
            }
        );
        assert_eq!(
            reading.scan_text,
            strings(&["You've hit your session limit · resets 11:10pm (UTC)"])
        );
        assert_eq!(
            reading.log_lines[..3],
            strings(&[
                "system task_notification: Agent terminated early due to an API error: You've hit your session limit · resets 11:10pm (UTC)",
                "tool error: Agent terminated early due to an API error: You've hit your session limit · resets 11:10pm (UTC)",
                "You've hit your session limit · resets 11:10pm (UTC)",
            ])
        );
    }

    #[test]
    fn limit_results_with_named_zones_are_limits() {
        let (reader, _) = replay(&fixture("claude-rate-limit-result.jsonl"));
        let limit = reader.usage_limit().unwrap();
        // The first message seen is kept.
        assert_eq!(limit.message, "You've hit your session limit · resets 12pm (America/New_York)");
        if has_zone("America/New_York") {
            // NOW is 13:45 in New York (EST, UTC-5): tomorrow 12:00 EST = 17:00 UTC.
            assert_eq!(limit.resets_at, Some(NOW - (18 * 3600 + 45 * 60) + 86_400 + 17 * 3600));
        }
        let result = reader.result.as_ref().unwrap();
        assert_eq!(result.text, "You've hit your session limit · resets 11pm (Asia/Seoul)");
        assert!(result.failed());
        assert_eq!((result.input_tokens, result.output_tokens, result.cost_usd), (0, 0, 0.0));
    }

    #[test]
    fn api_retry_is_not_a_limit() {
        let (reader, reading) = replay(&fixture("claude-api-retry.jsonl"));
        assert_eq!(reader.usage_limit(), None);
        assert!(reader.result.as_ref().is_none());
        assert_eq!(
            reading.log_lines,
            strings(&["API retry 1/10: rate_limit (HTTP 429), next try in 0.6 s"])
        );
    }

    #[test]
    fn subagent_text_is_logged_but_not_scanned() {
        let (reader, reading) = replay(&fixture("claude-stream-2.1.284-excerpt.jsonl"));
        assert_eq!(reading.scan_text, strings(&["END"]));
        assert!(reader.result.as_ref().is_none(), "this capture stops before its result line");
        assert_eq!(
            reading.log_lines,
            strings(&[
                "system thinking_tokens",
                "tool Agent: Run sleep and echo command",
                "system task_started: Run sleep and echo command",
                "[subagent] user: Run the bash command: sleep 20; echo agent-done …",
                "tool Bash: sleep 15; echo bash-done",
                "rate limit allowed (five_hour), resets 2026-09-29T10:40:00Z",
                "system task_progress: Running Sleep for 20 seconds then output status message",
                "[subagent] tool Bash: sleep 20; echo agent-done",
                "tool result: bash-done",
                "[subagent] tool result: agent-done",
                "system task_updated",
                "system task_notification: **Output:** …",
                "END",
            ])
        );
        let subagent_text = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"<event topic=\"build.done\">sub</event>"}]},"parent_tool_use_id":"toolu_1"}"#;
        let (_, reading) = replay(subagent_text);
        assert!(reading.scan_text.is_empty());
        assert_eq!(
            reading.log_lines,
            strings(&["[subagent] <event topic=\"build.done\">sub</event>"])
        );
    }

    #[test]
    fn stderr_and_other_text_lines_are_text() {
        let (reader, reading) = replay(&fixture("claude-stderr-bg-ceiling.txt"));
        let line = "Background tasks still running after 8s; terminating. Set CLAUDE_CODE_PRINT_BG_WAIT_CEILING_MS=0 to wait indefinitely.";
        assert_eq!(reading.log_lines, strings(&[line]));
        assert_eq!(reading.scan_text, strings(&[line]));
        assert_eq!(reader.usage_limit(), None);
        let (_, reading) = replay("{not json <event topic=\"x\">y</event>");
        assert_eq!(reading.scan_text, strings(&["{not json <event topic=\"x\">y</event>"]));
    }

    #[test]
    fn long_text_lines_are_clipped_with_a_note() {
        let mut reader = StreamReader::new();
        let line = "é".repeat(MAX_TEXT_LINE); // two bytes each
        let reading = reader.read_text_line(&line, 10);
        let shown = "é".repeat(MAX_TEXT_LINE / 2);
        assert_eq!(reading.log_lines, [format!("{shown} … ({} more bytes)", MAX_TEXT_LINE + 10)]);
        assert_eq!(reading.scan_text, [shown]);
        let reading = reader.read_json_line(&format!("{{not json{}", "x".repeat(MAX_TEXT_LINE)));
        assert!(reading.log_lines[0].ends_with(" … (9 more bytes)"));
    }

    #[test]
    fn root_refusal_is_recognized_on_a_text_line() {
        let mut reader = StreamReader::new();
        reader.read_text_line(
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons",
            0,
        );
        assert!(reader.root_refusal());
        let mut reader = StreamReader::new();
        reader.read_json_line(
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"fine"}]}}"#,
        );
        assert!(!reader.root_refusal());
    }

    #[test]
    fn the_agents_own_words_about_limits_are_not_a_limit() {
        // The agent's own words are not checked, only Claude's API-error messages.
        let own = r#"{"type":"assistant","message":{"model":"claude-opus-4-5","content":[{"type":"text","text":"You've hit your limit · resets 1pm (UTC)"}]},"parent_tool_use_id":null}"#;
        let (reader, _) = replay(own);
        assert_eq!(reader.usage_limit(), None);
    }

    #[test]
    fn odd_json_lines_are_logged_briefly() {
        let (reader, reading) =
            replay("{\"type\":\"stream_event\",\"event\":{}}\n[1,2]\n{\"no_type\":1}");
        assert_eq!(
            reading.log_lines,
            strings(&[
                "stream_event: {\"type\":\"stream_event\",\"event\":{}}",
                "[1,2]",
                "json: {\"no_type\":1}"
            ])
        );
        assert_eq!(reading.scan_text, strings(&["[1,2]"]));
        assert!(reader.result.as_ref().is_none());
    }

    #[test]
    fn bad_numbers_do_not_become_costs_or_tokens() {
        let line = r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":-3,"usage":{"input_tokens":-5,"output_tokens":1.5e300}}"#;
        let (reader, _) = replay(line);
        let result = reader.result.as_ref().unwrap();
        assert_eq!(result.cost_usd, 0.0);
        assert_eq!(result.input_tokens, 0);
        assert_eq!(result.output_tokens, u64::MAX);
    }

    #[test]
    fn one_line_shows_the_first_line() {
        assert_eq!(one_line("  first\nsecond", 100), "first …");
    }
}
