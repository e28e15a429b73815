//! The readers of text rasen does not control, fuzzed, each with what it
//! must do whatever the input: rasen.yml (`yaml::parse`, `Config::from_yaml`:
//! the operator's), the JSON state files (`store::parse_state`: edited by
//! hand, left by a crash, planted), the event scanner and the stream-json
//! reader (the agent's output). For every one: no panic, no hang, and a
//! rejection that says where (file, line and column, or the field). Cases
//! start from real inputs: the shipped rasen.yml, state files from a real
//! run (tests/fixtures/state/), Claude captures (tests/fixtures/claude/).

use miniserde::json;

use super::{Rng, Target, Verdict};
use crate::claude::StreamReader;
use crate::config::Config;
use crate::events::{self, EventScanner, MAX_EVENT_BYTES};
use crate::history::{AttemptHistory, GoodCommits};
use crate::lock::Liveness;
use crate::plan::Plan;
use crate::reader::{Reader, Stream};
use crate::status::{Report, StatusFile};
use crate::store::{self, StateFile};
use crate::yaml::{self, Node, Value};

/// The label errors start with, as `Config::load` gives the file's name.
const YAML_LABEL: &str = "rasen.yml";

const YAML_TOKENS: &[&str] = &[
    ": ",
    ":",
    "- ",
    "-",
    "#",
    " #",
    "'",
    "''",
    "\"",
    "\\\"",
    "\\u00e9",
    "\\x",
    "[",
    "]",
    ", ",
    "{",
    "}",
    "\n",
    "\n  ",
    "    ",
    "\t",
    "---\n",
    "...",
    "&a ",
    "*a",
    "!!str ",
    "|",
    ">",
    "? ",
    "%YAML",
    "@",
    "`",
    "~",
    "null",
    "true",
    "False",
    "yes",
    "-5",
    "+3",
    "0x10",
    "1e3",
    "orchestrator:",
    "agent:",
    "  max_iterations: ",
    "  args: ",
    "  verify:\n    - ",
    "background:\n  pid_file: ",
    "\u{feff}",
];

#[test]
fn rasen_yml_reader_never_panics_and_every_error_names_file_line_and_column() {
    let seeds = [
        include_str!("../../rasen.yml"),
        "agent:\n  backend: command\n  command: \"./agent\"\n  args: [--fast, 'two words', \"a\\tb\"]\n",
        "orchestrator:\n  max_iterations: 5 # few\nbackpressure:\n  verify:\n  - make test\n  - 'cargo clippy'\n",
        "---\nreview:\nqa:\n  enabled: false\nmemory:\n  max_bytes: 0\n",
    ];
    super::run(Target {
        name: "yaml",
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        tokens: YAML_TOKENS,
        max_len: 16 * 1024,
        check: check_yaml,
    });
}

fn check_yaml(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
    let text = String::from_utf8_lossy(input);
    if let Ok(node) = yaml::parse(&text, YAML_LABEL) {
        node_points_into(&node, &text)?;
    }
    match Config::from_yaml(&text, YAML_LABEL) {
        Ok(config) => {
            let _ = config.settings(); // what `run` logs at its start
            Ok(Verdict::Accepted)
        }
        Err(e) => {
            names_a_place_in(&e.message, YAML_LABEL, &text)?;
            Ok(Verdict::Rejected)
        }
    }
}

/// `LABEL:LINE:COL: what`, with LINE and COL inside `text` and a `what`.
fn names_a_place_in(message: &str, label: &str, text: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{why}: {message:?}"));
    let Some(rest) = message.strip_prefix(label).and_then(|r| r.strip_prefix(':')) else {
        return bad("the error does not start with the file's name");
    };
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().and_then(|n| n.parse::<usize>().ok());
    let col = parts.next().and_then(|n| n.parse::<usize>().ok());
    let what = parts.next().unwrap_or("").trim();
    let (Some(line), Some(col)) = (line, col) else {
        return bad("the error has no LINE:COL");
    };
    if what.is_empty() {
        return bad("the error says nothing after its position");
    }
    position_is_in(line, col, text).or_else(|why| bad(&why))
}

/// True positions only: a line of the text (or the one after its end), a
/// column within that line (or just after it).
fn position_is_in(line: usize, col: usize, text: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || col == 0 || line > lines.len() + 1 {
        return Err(format!("position {line}:{col} is not in the text"));
    }
    let width = lines.get(line - 1).map_or(0, |l| l.chars().count());
    if col > width + 1 {
        return Err(format!("column {col} is past the end of line {line} ({width} characters)"));
    }
    Ok(())
}

fn node_points_into(node: &Node, text: &str) -> Result<(), String> {
    position_is_in(node.line, node.col, text)?;
    match &node.value {
        Value::List(items) => items.iter().try_for_each(|item| node_points_into(item, text)),
        Value::Map(entries) => entries.iter().try_for_each(|entry| {
            position_is_in(entry.line, entry.col, text)?;
            node_points_into(&entry.value, text)
        }),
        Value::Null | Value::Scalar { .. } => Ok(()),
    }
}

// --- state files ---------------------------------------------------------------

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\",
    "\\u",
    "\\ud83d",
    "\\ud83d\\ude00",
    "\\udc00",
    "\\u0000",
    "\\n",
    "null",
    "true",
    "false",
    "\"\"",
    "{}",
    "[]",
    " ",
    "\n",
    "\"status\"",
    "\"version\"",
    "\"id\"",
    "\"subtasks\"",
    "\"attempts\"",
    "\"commits\"",
    "\"dependencies\"",
    "\"pending\"",
    "\"in_progress\"",
    "\"completed\"",
    "\"failed\"",
    "\"running\"",
    "\"success\"",
    "\"interrupted\"",
    "\"cost_usd\": ",
    "\"iteration\": ",
    "\"agent_pid\": ",
    "\"duration_seconds\": ",
    "\"t1\"",
];

/// What the test of one state file checks: any bytes are read, or
/// rejected with the file's name and a position or the field; what is read
/// is written back in a form that reads back the same.
fn check_state<T: StateFile>(input: &[u8], label: &str) -> Result<Verdict, String> {
    match store::parse_state::<T>(input) {
        Ok(value) => {
            reads_back_what_it_writes(&value, label)?;
            Ok(Verdict::Accepted)
        }
        Err(problem) => {
            let message = problem.located(label);
            if problem.what.trim().is_empty() || !message.starts_with(label) {
                return Err(format!("an unclear rejection: {message:?}"));
            }
            match problem.position {
                Some((line, col)) => {
                    position_is_in(line, col, &String::from_utf8_lossy(input))?;
                }
                None if names_no_field(&problem.what) => {
                    return Err(format!(
                        "the rejection names no position and no field: {message:?}"
                    ))
                }
                None => {}
            }
            Ok(Verdict::Rejected)
        }
    }
}

/// The messages `parse_state` falls back to when it cannot tell what is
/// wrong: every case that reaches them is a gap in a `check_shape`.
fn names_no_field(what: &str) -> bool {
    what == "a value does not have the type rasen expects" || what == "cannot be read as JSON"
}

/// Saving what was loaded and loading it again gives the same file: a
/// value rasen accepts never becomes one that the next `resume` refuses.
/// (Floats may move by a rounding step: miniserde does not always read
/// back the nearest double of what Rust wrote.)
fn reads_back_what_it_writes<T: StateFile>(value: &T, label: &str) -> Result<(), String> {
    let written = store::to_pretty_json(value);
    match store::parse_state::<T>(written.as_bytes()) {
        Ok(again) if same_json(&written, &store::to_pretty_json(&again)) => Ok(()),
        Ok(again) => Err(format!(
            "{label} changes when written and read again:\n{written}\nbecame\n{}",
            store::to_pretty_json(&again)
        )),
        Err(problem) => Err(format!(
            "rasen cannot read back the {label} it writes: {}\n{written}",
            problem.located(label)
        )),
    }
}

/// Equal JSON texts, but for floats that differ by a rounding step.
fn same_json(a: &str, b: &str) -> bool {
    match (json::from_str::<json::Value>(a), json::from_str::<json::Value>(b)) {
        (Ok(a), Ok(b)) => same_value(&a, &b),
        _ => false,
    }
}

fn same_value(a: &json::Value, b: &json::Value) -> bool {
    use json::{Number, Value as J};
    match (a, b) {
        (J::Number(Number::F64(x)), J::Number(Number::F64(y))) => {
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| same_value(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter().zip(y.iter()).all(|((kx, x), (ky, y))| kx == ky && same_value(x, y))
        }
        (J::Number(Number::U64(x)), J::Number(Number::U64(y))) => x == y,
        (J::Number(Number::I64(x)), J::Number(Number::I64(y))) => x == y,
        (J::String(x), J::String(y)) => x == y,
        (J::Bool(x), J::Bool(y)) => x == y,
        (J::Null, J::Null) => true,
        _ => false,
    }
}

fn state_target(
    name: &'static str,
    seed: &str,
    check: fn(&[u8], &mut Rng) -> Result<Verdict, String>,
) -> Target {
    let one_line: String = seed.lines().map(str::trim).collect();
    Target {
        name,
        seeds: vec![seed.as_bytes().to_vec(), one_line.into_bytes()],
        tokens: JSON_TOKENS,
        max_len: 16 * 1024,
        check,
    }
}

#[test]
fn plan_loader_never_panics_and_every_rejection_names_a_position_or_field() {
    fn check(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
        let verdict = check_state::<Plan>(input, "implementation_plan.json")?;
        if let Ok(plan) = store::parse_state::<Plan>(input) {
            // What the loop asks of any plan it loaded.
            if let Err(why) = plan.validate() {
                if why.trim().is_empty() {
                    return Err("validate rejected the plan without a word".to_string());
                }
            }
            let _ = (plan.next_subtask(), plan.progress());
        }
        Ok(verdict)
    }
    let seed = include_str!("../../tests/fixtures/state/implementation_plan.json");
    super::run(state_target("plan", seed, check));
}

#[test]
fn attempt_history_loader_never_panics_and_every_rejection_names_a_position_or_field() {
    fn check(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
        check_state::<AttemptHistory>(input, "attempt_history.json")
    }
    let seed = include_str!("../../tests/fixtures/state/attempt_history.json");
    super::run(state_target("attempt_history", seed, check));
}

#[test]
fn good_commits_loader_never_panics_and_every_rejection_names_a_position_or_field() {
    fn check(input: &[u8], _: &mut Rng) -> Result<Verdict, String> {
        check_state::<GoodCommits>(input, "good_commits.json")
    }
    let seed = include_str!("../../tests/fixtures/state/good_commits.json");
    super::run(state_target("good_commits", seed, check));
}

#[test]
fn status_file_loader_never_panics_and_every_rejection_names_a_position_or_field() {
    fn check(input: &[u8], rng: &mut Rng) -> Result<Verdict, String> {
        let verdict = check_state::<StatusFile>(input, "status.json")?;
        if let Ok(file) = store::parse_state::<StatusFile>(input) {
            shows_any_status_file(file, rng)?;
        }
        Ok(verdict)
    }
    let seed = include_str!("../../tests/fixtures/state/status.json");
    super::run(state_target("status", seed, check));
}

/// `rasen status` renders any status.json it accepted, whatever the run
/// lock says, and `--json` is JSON.
fn shows_any_status_file(file: StatusFile, rng: &mut Rng) -> Result<(), String> {
    let pid = Some(rng.below(100_000) as i32);
    let liveness = match rng.below(3) {
        0 => Liveness::Running { pid },
        1 => Liveness::Stale { pid },
        _ => Liveness::NotRunning,
    };
    let now = rng.next_u64() as i64 >> rng.below(64);
    let report = Report::new(Some(file), liveness, now);
    if report.to_text().trim().is_empty() {
        return Err("`rasen status` printed nothing".to_string());
    }
    let shown = report.to_json();
    match json::from_str::<json::Value>(&shown) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("`rasen status --json` is not JSON:\n{shown}")),
    }
}

// --- the agent's output --------------------------------------------------------

const CLAUDE_FIXTURES: [&str; 12] = [
    include_str!("../../tests/fixtures/claude/claude-stream-success.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-stream-2.1.284-excerpt.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-rate-limit-midrun.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-rate-limit-result.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-rate-limit-stream.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-result-max-turns-2.1.x.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-api-retry.jsonl"),
    include_str!("../../tests/fixtures/claude/claude-rate-limit.txt"),
    include_str!("../../tests/fixtures/claude/claude-stderr-bg-ceiling.txt"),
    include_str!("../../tests/fixtures/claude/claude-assistant-tooluse.json"),
    include_str!("../../tests/fixtures/claude/claude-result-success.json"),
    include_str!("../../tests/fixtures/claude/claude-user-toolresult.json"),
];

/// The captures as Claude prints them: one JSON value per line (the
/// `.json` ones are pretty-printed by whoever kept them).
fn claude_seeds() -> Vec<Vec<u8>> {
    CLAUDE_FIXTURES
        .iter()
        .map(|text| match text.trim_start().starts_with('{') && !text.contains("}\n{") {
            true => text.lines().map(str::trim).collect::<String>().into_bytes(),
            false => text.as_bytes().to_vec(),
        })
        .collect()
}

const EVENT_TOKENS: &[&str] = &[
    "<event",
    "<event ",
    "<event topic=\"build.done\">",
    "<event topic='init.done'>",
    "<event topic=build.blocked>",
    "topic=",
    "topic = \"",
    "\"",
    "'",
    ">",
    "/>",
    "</event>",
    "</ event >",
    "</event",
    "</",
    "<",
    "<ev",
    "\n",
    " ",
    "tests: pass, lint: pass.",
    "build.done",
    "\u{0}",
    "é",
];

#[test]
fn event_scanner_finds_the_same_events_however_the_text_is_chunked() {
    let mut seeds = claude_seeds();
    for text in [
        "Working on t1.\n<event topic=\"build.done\">tests: pass, lint: pass. did t1</event>\n",
        "<event topic='build.blocked'>needs\ncredentials</event ><event topic=x/>",
        "<event topic=\"a\">never closed <event topic=\"b\">x</ event>",
    ] {
        seeds.push(text.as_bytes().to_vec());
    }
    // An event just within MAX_EVENT_BYTES, which mutations push past it.
    let open = "<event topic=\"build.done\">";
    let payload = "x".repeat(MAX_EVENT_BYTES - open.len() - "</event>".len() - 8);
    seeds.push(format!("{open}{payload}</event>\n").into_bytes());
    super::run(Target {
        name: "events",
        seeds,
        tokens: EVENT_TOKENS,
        max_len: 160 * 1024, // past MAX_EVENT_BYTES, where events are dropped
        check: check_events,
    });
}

fn check_events(input: &[u8], rng: &mut Rng) -> Result<Verdict, String> {
    let text = String::from_utf8_lossy(input);
    let whole = events::extract_events(&text);
    let mut scanner = EventScanner::new();
    let mut chunked = Vec::new();
    for chunk in random_chunks(&text, rng) {
        chunked.extend(scanner.feed(chunk));
    }
    if chunked != whole {
        return Err(format!("chunks found {chunked:?}, the whole text {whole:?}"));
    }
    if let Some(e) = whole.iter().find(|e| e.topic.len() + e.payload.len() > MAX_EVENT_BYTES) {
        return Err(format!("an event longer than MAX_EVENT_BYTES: {:?}", e.topic));
    }
    Ok(if whole.is_empty() { Verdict::Rejected } else { Verdict::Accepted })
}

/// `text` cut at random character boundaries: pieces of 0 to 64 bytes
/// mostly, now and then a long one.
fn random_chunks<'a>(text: &'a str, rng: &mut Rng) -> Vec<&'a str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let want = if rng.one_in(10) { rng.below(4096) } else { rng.below(65) };
        let mut end = (start + want).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        chunks.push(&text[start..end]);
        start = end;
    }
    chunks
}

const STREAM_TOKENS: &[&str] = &[
    "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"",
    "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"",
    "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":",
    "{\"type\":\"system\",\"subtype\":\"api_retry\",\"retry_delay_ms\":",
    "\"total_cost_usd\":",
    "\"usage\":{\"input_tokens\":",
    "\"parent_tool_use_id\":null",
    "\"model\":\"<synthetic>\"",
    "\"error\":\"rate_limit\"",
    "\"is_error\":true",
    "\"errors\":[",
    "Claude AI usage limit reached|",
    "You've hit your limit · resets 1pm (Europe/Lisbon)",
    "resets 3:30am (America/New_York)",
    "resets Jan 5, 2am (UTC)",
    "(../../etc/passwd)",
    "--dangerously-skip-permissions cannot be used with root/sudo privileges",
    "<event topic=\"build.done\">tests: pass, lint: pass.</event>",
    "\\n",
    "\\\"",
    "\"}]}}",
    "\"}",
    "}",
    "\n",
    "1e999",
    "-1",
];

#[test]
fn stream_json_reader_never_panics_and_keeps_its_output_bounded() {
    super::run(Target {
        name: "stream-json",
        seeds: claude_seeds(),
        tokens: STREAM_TOKENS,
        max_len: 64 * 1024,
        check: check_stream_json,
    });
}

/// How many bytes of log a line of output may turn into: a log line per
/// line of text, each with a short prefix, and a constant for the fixed
/// words (`result: … tokens in / … out`).
fn log_bound(line_len: usize) -> usize {
    8 * line_len + 1024
}

/// Feeds the input to a `StreamReader` line by line, as a session does
/// (now and then on stderr, now and then a line cut short), scans what it
/// hands out for events, and checks what it reports.
fn check_stream_json(input: &[u8], rng: &mut Rng) -> Result<Verdict, String> {
    let mut reader: Box<dyn Reader> = Box::new(StreamReader::new());
    let mut scanner = EventScanner::new();
    for line in input.split(|&b| b == b'\n') {
        let stream = if rng.one_in(8) { Stream::Stderr } else { Stream::Stdout };
        let keep = if rng.one_in(16) { rng.below(line.len() + 1) } else { line.len() };
        let keep = keep.min(reader.line_keep(stream));
        let text = String::from_utf8_lossy(&line[..keep]);
        let reading = reader.line(stream, &text, (line.len() - keep) as u64);
        let logged: usize = reading.log_lines.iter().map(String::len).sum();
        if logged > log_bound(text.len()) {
            return Err(format!("a line of {} bytes made {logged} bytes of log", text.len()));
        }
        for scanned in &reading.scan_text {
            if scanned.len() > text.len() {
                let (n, len) = (scanned.len(), text.len());
                return Err(format!("{n} bytes to scan from a {len}-byte line"));
            }
            scanner.feed(scanned);
        }
    }
    let report = reader.report();
    if let Some(usage) = &report.usage {
        if !usage.cost_usd.is_finite() || usage.cost_usd < 0.0 {
            return Err(format!("a cost of {} would be stored", usage.cost_usd));
        }
    }
    let output_len = String::from_utf8_lossy(input).len();
    match report.final_text.as_ref().map_or(0, String::len) > output_len {
        true => Err("the final text is longer than the whole output".to_string()),
        false => Ok(if report.usage.is_some() { Verdict::Accepted } else { Verdict::Rejected }),
    }
}
