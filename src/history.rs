//! What rasen remembers between sessions: every agent session that
//! started (`attempt_history.json`: recorded `running` before the agent
//! starts, finished with its outcome after), the commits after each
//! completed subtask that are safe to roll back to (`good_commits.json`),
//! and the tail of the agent's own notes (`memories.md`). `reconcile`
//! brings the two JSON files in line with the plan at a run's start.
//!
//! rasen is the only writer of the two JSON files (through `store`); it
//! only ever reads `memories.md`, which belongs to the agent, and reads no
//! more of it than it will use. Nothing here reads the plan or runs git:
//! the caller says what they say.

mod reconcile;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use miniserde::json::Value;
use miniserde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{self, state_words, Fields, Kind, StateFile};

pub use reconcile::{reconcile, PlanAndGit};

state_words! {
    /// How one agent session ended, for its subtask.
    pub enum Outcome {
        Success = "success",
        Failure = "failure",
        /// A "done" claim without the evidence backpressure requires.
        Refused = "refused",
        Blocked = "blocked",
        /// Stopped by a shutdown signal: not the approach's fault.
        Interrupted = "interrupted",
        Timeout = "timeout",
        /// The agent's usage limit: not the approach's fault either.
        UsageLimit = "usage_limit",
        /// The session is under way. Left behind by a run that was killed
        /// (or failed) before it could record the end: the next start
        /// makes it `interrupted` (see `reconcile`).
        Running = "running",
    }
}

impl Outcome {
    /// Whether the attempt tells the next session something about an
    /// approach that did not work. An interruption or a usage limit says
    /// nothing about the approach, so they do not count.
    pub fn is_failed_approach(self) -> bool {
        matches!(self, Outcome::Failure | Outcome::Refused | Outcome::Blocked | Outcome::Timeout)
    }

    /// Whether the next session on the subtask is told about the attempt:
    /// a failed approach, to avoid, or an interruption, whose commits it
    /// may continue from.
    pub fn is_shown_to_next_session(self) -> bool {
        self.is_failed_approach() || self == Outcome::Interrupted
    }
}

/// The role of an initializer session's attempt; its `subtask_id` is "".
pub const INITIALIZER_ROLE: &str = "initializer";
/// The role of a coder session's attempt.
pub const CODER_ROLE: &str = "coder";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Attempt {
    pub subtask_id: String,
    pub session: u64,
    pub role: String,
    pub outcome: Outcome,
    pub approach: Option<String>,
    pub reason: Option<String>,
    /// HEAD when the session started: what its commits are counted from,
    /// also when its run was killed before it could count them.
    pub commit_before: Option<String>,
    /// HEAD when the session's outcome was recorded.
    pub commit: Option<String>,
    pub commits_made: Option<u64>,
    pub started_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
}

impl Attempt {
    /// The record of a session about to start, before anything is known
    /// of how it will end. `subtask_id` is "" for an initializer.
    pub fn running(
        subtask_id: &str,
        session: u64,
        role: &str,
        commit_before: Option<String>,
        started_at: String,
    ) -> Attempt {
        Attempt {
            subtask_id: subtask_id.to_string(),
            session,
            role: role.to_string(),
            outcome: Outcome::Running,
            approach: None,
            reason: None,
            commit_before,
            commit: None,
            commits_made: None,
            started_at: Some(started_at),
            duration_seconds: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AttemptHistory {
    pub version: u32,
    pub attempts: Vec<Attempt>,
}

impl AttemptHistory {
    pub fn new() -> AttemptHistory {
        AttemptHistory { version: 1, attempts: Vec::new() }
    }

    pub fn record(&mut self, attempt: Attempt) {
        self.attempts.push(attempt);
    }

    /// Replaces the `running` record of the same session with `attempt`,
    /// the session's outcome; records it anew when there is none.
    pub fn finish(&mut self, attempt: Attempt) {
        let running = self
            .attempts
            .iter()
            .rposition(|a| a.session == attempt.session && a.outcome == Outcome::Running);
        match running {
            Some(i) => self.attempts[i] = attempt,
            None => self.attempts.push(attempt),
        }
    }

    /// How many agent sessions the history proves were counted: the
    /// highest session number recorded (sessions are numbered from 1 as
    /// they start), and at least the number of sessions recorded. The
    /// floor of `iteration` when status.json is gone.
    pub fn sessions_recorded(&self) -> u64 {
        let sessions = self.attempts.iter().map(|a| a.session).filter(|&s| s > 0);
        let highest = sessions.clone().max().unwrap_or(0);
        highest.max(sessions.count() as u64)
    }

    /// Commits recorded for `subtask_id` by its attempts so far.
    pub fn commits_for(&self, subtask_id: &str) -> u64 {
        let attempts = self.attempts.iter().filter(|a| a.subtask_id == subtask_id);
        attempts.filter_map(|a| a.commits_made).sum()
    }
}

impl Default for AttemptHistory {
    fn default() -> Self {
        AttemptHistory::new()
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GoodCommit {
    pub hash: String,
    pub subtask_id: String,
    pub timestamp: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GoodCommits {
    pub version: u32,
    pub commits: Vec<GoodCommit>,
}

impl GoodCommits {
    pub fn new() -> GoodCommits {
        GoodCommits { version: 1, commits: Vec::new() }
    }

    pub fn record(&mut self, hash: &str, subtask_id: &str, timestamp: &str) {
        self.commits.push(GoodCommit {
            hash: hash.to_string(),
            subtask_id: subtask_id.to_string(),
            timestamp: timestamp.to_string(),
        });
    }
}

impl Default for GoodCommits {
    fn default() -> Self {
        GoodCommits::new()
    }
}

/// The attempts at `subtask_id` the next session is told about (see
/// `Outcome::is_shown_to_next_session`: failed approaches and
/// interruptions), at most the last `limit`, most recent last.
pub fn earlier_attempts_to_show<'a>(
    history: &'a AttemptHistory,
    subtask_id: &str,
    limit: usize,
) -> Vec<&'a Attempt> {
    let shown: Vec<&Attempt> = history
        .attempts
        .iter()
        .filter(|a| a.subtask_id == subtask_id && a.outcome.is_shown_to_next_session())
        .collect();
    shown[shown.len().saturating_sub(limit)..].to_vec()
}

/// The last `max_bytes` of `memories.md` as text, "" when the file does not
/// exist. Only the tail is read, however big the file. The cut falls on a
/// character boundary, and on a line boundary when that loses less than
/// half of the tail.
///
/// Never read through a symlink (the agent writes this file, and may
/// leave a link there): that is an error naming the file.
pub fn memories_tail(path: &Path, max_bytes: u64) -> Result<String> {
    let Some(file) = store::open_to_read(path)? else { return Ok(String::new()) };
    read_tail(file, max_bytes).map_err(|e| Error::io(path, "cannot read the memory file", e))
}

fn read_tail(mut file: File, max_bytes: u64) -> io::Result<String> {
    let len = file.metadata()?.len();
    if max_bytes == 0 {
        return Ok(String::new());
    }
    if len <= max_bytes {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    // Read one byte more, before the tail, to know whether the tail starts
    // at the beginning of a line.
    file.seek(SeekFrom::Start(len - max_bytes - 1))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    let Some((&before, tail)) = bytes.split_first() else { return Ok(String::new()) };
    let start = if before == b'\n' { 0 } else { clean_start(tail) };
    Ok(String::from_utf8_lossy(&tail[start..]).into_owned())
}

/// Where a tail that starts mid-line should start: after the first newline
/// when that keeps at least half of it, else at the first character.
fn clean_start(tail: &[u8]) -> usize {
    match tail.iter().position(|&b| b == b'\n') {
        Some(newline) if newline < tail.len() / 2 => newline + 1,
        // UTF-8 continuation bytes look like 10xxxxxx.
        _ => tail.iter().position(|&b| b & 0xC0 != 0x80).unwrap_or(tail.len()),
    }
}

impl StateFile for AttemptHistory {
    fn check_shape(value: &Value) -> std::result::Result<(), String> {
        let history = Fields::top(value)?;
        history.required("version", Kind::SmallCount)?;
        for (i, item) in history.required_list("attempts")?.iter().enumerate() {
            check_attempt_shape(i + 1, item)?;
        }
        Ok(())
    }

    fn version(&self) -> Option<u32> {
        Some(self.version)
    }
}

fn check_attempt_shape(number: usize, value: &Value) -> std::result::Result<(), String> {
    let attempt = Fields::nested(value, format!("attempt {number}"))?.named_by("subtask_id");
    attempt.required("subtask_id", Kind::Text)?;
    attempt.required("session", Kind::Count)?;
    attempt.required("role", Kind::Text)?;
    attempt.required("outcome", Kind::OneOf(Outcome::NAMES))?;
    for text in ["approach", "reason", "commit_before", "commit"] {
        attempt.optional(text, Kind::Text)?;
    }
    attempt.optional("commits_made", Kind::Count)?;
    attempt.optional("started_at", Kind::Text)?;
    attempt.optional("duration_seconds", Kind::Number)?;
    attempt.optional("input_tokens", Kind::Count)?;
    attempt.optional("output_tokens", Kind::Count)?;
    attempt.optional("cost_usd", Kind::Number)
}

impl StateFile for GoodCommits {
    fn check_shape(value: &Value) -> std::result::Result<(), String> {
        let good = Fields::top(value)?;
        good.required("version", Kind::SmallCount)?;
        for (i, item) in good.required_list("commits")?.iter().enumerate() {
            let commit = Fields::nested(item, format!("commit {}", i + 1))?.named_by("hash");
            commit.required("hash", Kind::Text)?;
            commit.required("subtask_id", Kind::Text)?;
            commit.required("timestamp", Kind::Text)?;
        }
        Ok(())
    }

    fn version(&self) -> Option<u32> {
        Some(self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{self, testing::TempDir};
    use std::fs;

    /// An attempt with only the required fields set.
    fn attempt(subtask_id: &str, session: u64, outcome: Outcome) -> Attempt {
        Attempt {
            subtask_id: subtask_id.to_string(),
            session,
            role: "coder".to_string(),
            outcome,
            approach: None,
            reason: None,
            commit_before: None,
            commit: None,
            commits_made: None,
            started_at: None,
            duration_seconds: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
        }
    }

    #[test]
    fn attempt_history_round_trips_with_stable_field_order() {
        let dir = TempDir::new("history-roundtrip");
        let path = dir.join("attempt_history.json");
        let mut history = AttemptHistory::new();
        let mut first = attempt("auth-2", 5, Outcome::UsageLimit);
        first.approach = Some("tried \"x\"\nthen y".into());
        first.duration_seconds = Some(812.4);
        first.cost_usd = Some(f64::NAN);
        history.record(first);
        store::save(&path, &history).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "version",
                "attempts",
                "subtask_id",
                "session",
                "role",
                "outcome",
                "approach",
                "reason",
                "commit_before",
                "commit",
                "commits_made",
                "started_at",
                "duration_seconds",
                "input_tokens",
                "output_tokens",
                "cost_usd"
            ]
        );
        assert!(text.contains("\"outcome\": \"usage_limit\",\n"), "{text}");
        assert!(text.contains("\"cost_usd\": 0\n"), "NaN must not be written: {text}");
        let back = store::load::<AttemptHistory>(&path).unwrap().unwrap();
        assert_eq!(back.attempts[0].approach, history.attempts[0].approach);
        assert_eq!(back.attempts[0].cost_usd, Some(0.0));
        assert_eq!(back.attempts[0].duration_seconds, Some(812.4));
    }

    #[test]
    fn good_commits_round_trip() {
        let dir = TempDir::new("history-good");
        let path = dir.join("good_commits.json");
        let mut good = GoodCommits::new();
        good.record("abc123", "auth-1", "2026-01-27T18:45:00Z");
        store::save(&path, &good).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\n  \"version\": 1,\n  \"commits\": [\n    {\n      \"hash\": \"abc123\",\n      \
             \"subtask_id\": \"auth-1\",\n      \"timestamp\": \"2026-01-27T18:45:00Z\"\n    }\n  \
             ]\n}\n"
        );
        assert_eq!(store::load::<GoodCommits>(&path).unwrap(), Some(good));
    }

    #[test]
    fn bad_history_files_are_reported_and_kept() {
        let dir = TempDir::new("history-bad");
        let path = dir.join("attempt_history.json");
        let cases = [
            (
                r#"{"version": 1, "attempts": [{"subtask_id": "a", "session": 1, "role": "coder", "outcome": "won"}]}"#,
                "attempt 1 (\"a\"): outcome \"won\" is not one of success, failure, refused, \
                 blocked, interrupted, timeout, usage_limit, running",
            ),
            (
                r#"{"version": 1, "attempts": [{"subtask_id": "a", "session": -1, "role": "coder", "outcome": "success"}]}"#,
                "attempt 1 (\"a\"): \"session\" must be a whole number, 0 or more, found -1",
            ),
            (r#"{"attempts": []}"#, "missing field \"version\""),
            (
                r#"{"version": 1, "attempts": [{"subtask_id": "a", "session": 1, "role": "coder", "outcome": "success", "cost_usd": null, "duration_seconds": "long"}]}"#,
                "attempt 1 (\"a\"): \"duration_seconds\" must be a number, found \"long\"",
            ),
        ];
        for (contents, what) in cases {
            fs::write(&path, contents).unwrap();
            let err = store::load::<AttemptHistory>(&path).unwrap_err();
            assert!(err.message.contains(&format!("attempt_history.json: {what};")), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), contents);
        }
        let good_path = dir.join("good_commits.json");
        fs::write(&good_path, r#"{"version": 1, "commits": [{"hash": "abc", "subtask_id": "a"}]}"#)
            .unwrap();
        let err = store::load::<GoodCommits>(&good_path).unwrap_err();
        assert!(
            err.message.contains(": commit 1 (\"abc\"): missing field \"timestamp\";"),
            "{err}"
        );
    }

    #[test]
    fn the_next_session_sees_the_last_failures_and_interruptions_of_its_subtask() {
        let mut history = AttemptHistory::new();
        for (i, outcome) in [
            Outcome::Failure,
            Outcome::Interrupted,
            Outcome::Refused,
            Outcome::UsageLimit,
            Outcome::Timeout,
            Outcome::Success,
        ]
        .into_iter()
        .enumerate()
        {
            history.record(attempt("a", i as u64, outcome));
            history.record(attempt("b", i as u64, Outcome::Failure));
        }
        let sessions = |limit| -> Vec<u64> {
            earlier_attempts_to_show(&history, "a", limit).iter().map(|a| a.session).collect()
        };
        assert_eq!(sessions(10), [0, 1, 2, 4]);
        assert_eq!(sessions(2), [2, 4]);
        assert_eq!(sessions(0), Vec::<u64>::new());
        assert!(earlier_attempts_to_show(&history, "zz", 5).is_empty());
    }

    #[test]
    fn finishing_a_session_replaces_its_running_record() {
        let mut history = AttemptHistory::new();
        history.record(attempt("a", 1, Outcome::Failure));
        history.record(Attempt::running("a", 2, "coder", Some("abc".into()), "t0".into()));
        history.record(attempt("b", 3, Outcome::Running));
        let mut done = attempt("a", 2, Outcome::Success);
        done.commit = Some("def".into());
        history.finish(done.clone());
        assert_eq!(history.attempts.len(), 3);
        assert_eq!(history.attempts[1], done);
        assert_eq!(history.attempts[2].outcome, Outcome::Running, "another session's record");
        // No running record for the session: it is recorded anyway.
        history.finish(attempt("c", 4, Outcome::Interrupted));
        assert_eq!(history.attempts.len(), 4);
        // A finished session is never finished twice over.
        history.finish(attempt("a", 2, Outcome::Failure));
        assert_eq!(history.attempts[1], done);
        assert_eq!(history.attempts.len(), 5);
    }

    #[test]
    fn sessions_recorded_is_the_highest_session_number() {
        let mut history = AttemptHistory::new();
        assert_eq!(history.sessions_recorded(), 0);
        history.record(attempt("", 1, Outcome::Success));
        history.record(attempt("a", 4, Outcome::Interrupted));
        assert_eq!(history.sessions_recorded(), 4);
        // A record added at start for a subtask completed without one has
        // no session (0): it counts for nothing.
        history.record(attempt("b", 0, Outcome::Success));
        assert_eq!(history.sessions_recorded(), 4);
        // Numbers edited by hand: every session recorded still counts.
        let mut odd = AttemptHistory::new();
        for _ in 0..3 {
            odd.record(attempt("a", 1, Outcome::Failure));
        }
        assert_eq!(odd.sessions_recorded(), 3);
    }

    #[test]
    fn memories_tail_is_empty_when_missing() {
        let dir = TempDir::new("memories-missing");
        assert_eq!(memories_tail(&dir.join("memories.md"), 100).unwrap(), "");
    }

    #[test]
    fn memories_tail_returns_a_small_file_whole() {
        let dir = TempDir::new("memories-small");
        let path = dir.join("memories.md");
        fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(memories_tail(&path, 100).unwrap(), "one\ntwo\n");
        assert_eq!(memories_tail(&path, 0).unwrap(), "");
    }

    #[test]
    fn memories_tail_cuts_at_a_line_boundary() {
        let dir = TempDir::new("memories-lines");
        let path = dir.join("memories.md");
        let text = format!("{}\nline a\nline b\n", "x".repeat(10_000));
        fs::write(&path, &text).unwrap();
        assert_eq!(memories_tail(&path, 16).unwrap(), "line a\nline b\n");
        // Exactly at a line start: the whole first line is kept.
        assert_eq!(memories_tail(&path, 14).unwrap(), "line a\nline b\n");
    }

    #[test]
    fn memories_tail_cuts_at_a_character_boundary() {
        let dir = TempDir::new("memories-utf8");
        let path = dir.join("memories.md");
        // One long line of 3-byte characters: no usable line boundary.
        fs::write(&path, "日本語".repeat(1000)).unwrap();
        for max in [7, 8, 9, 100] {
            let tail = memories_tail(&path, max).unwrap();
            assert!(!tail.contains('\u{fffd}'), "{max}: {tail:?}");
            assert!(tail.len() as u64 <= max && tail.len() as u64 > max - 3, "{max}: {tail:?}");
        }
    }
}
