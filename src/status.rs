//! `status.json`: the run's real-time progress, rewritten (atomically, via
//! `store`) at every change, and read by `rasen status` and by scripts.
//! This file owns the model and its defaults; rendering it for people
//! (text and `--json`) lives below the model.
//!
//! Nothing here decides whether an orchestrator is alive: the run lock
//! does. The `pid` field is a hint for people, never proof.

use miniserde::json::Value;
use miniserde::{Deserialize, Serialize};

use crate::lock::Liveness;
use crate::store::{Fields, Kind, StateFile};

/// Where the run stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    #[serde(rename = "initialized")]
    Initialized,
    #[serde(rename = "running")]
    Running,
    /// Sleeping until an agent usage limit resets (`waiting_until`).
    #[serde(rename = "waiting")]
    Waiting,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "completed")]
    Completed,
    #[serde(rename = "failed")]
    Failed,
}

impl RunState {
    pub const NAMES: &'static [&'static str] =
        &["initialized", "running", "waiting", "stopped", "completed", "failed"];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Initialized => "initialized",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Stopped => "stopped",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run is over (it ended one way or another).
    #[cfg(test)]
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Completed | RunState::Failed)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusFile {
    pub version: u32,
    pub status: RunState,
    /// Why the run ended: completed, max_iterations, stalled, blocked…
    pub reason: Option<String>,
    /// The orchestrator's PID while it runs.
    pub pid: Option<i32>,
    /// Agent sessions so far, for the whole task (survives resume).
    pub iteration: u64,
    /// `Coding`, `Initializer`, `Review 2/3`, `QA 5/50`.
    pub phase: Option<String>,
    pub subtask_id: Option<String>,
    pub subtask_description: Option<String>,
    pub completed_subtasks: u64,
    pub total_subtasks: u64,
    pub total_commits: u64,
    pub started_at: Option<String>,
    pub last_activity: Option<String>,
    pub last_error: Option<String>,
    pub tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// The running agent (leader of its process group), or none.
    pub agent_pid: Option<i32>,
    /// With `waiting`: when the usage limit resets.
    pub waiting_until: Option<String>,
    /// HEAD when the task's first run started ("" in a repository without
    /// commits): `total_commits` counts from here, so commits made by a
    /// session that was killed are counted too.
    pub base_commit: Option<String>,
}

/// The phase of a planning session. status.json says it from before the
/// initializer starts until its plan is accepted, so a run that died in
/// between (kill -9, power loss) leaves it there: whatever plan is on disk
/// then is the initializer's unfinished draft.
pub const PHASE_PLANNING: &str = "Initializer";

impl StatusFile {
    /// Whether the run that last wrote this file was planning when it
    /// ended, so that its plan on disk (if any) was never finished.
    pub fn planning_unfinished(&self) -> bool {
        self.phase.as_deref() == Some(PHASE_PLANNING)
    }

    /// The status `rasen init` writes: nothing has run yet.
    pub fn initialized() -> StatusFile {
        StatusFile {
            version: 1,
            status: RunState::Initialized,
            reason: None,
            pid: None,
            iteration: 0,
            phase: None,
            subtask_id: None,
            subtask_description: None,
            completed_subtasks: 0,
            total_subtasks: 0,
            total_commits: 0,
            started_at: None,
            last_activity: None,
            last_error: None,
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            agent_pid: None,
            waiting_until: None,
            base_commit: None,
        }
    }
}

impl Default for StatusFile {
    fn default() -> Self {
        StatusFile::initialized()
    }
}

impl StateFile for StatusFile {
    fn check_shape(value: &Value) -> std::result::Result<(), String> {
        let status = Fields::top(value)?;
        status.required("version", Kind::SmallCount)?;
        status.required("status", Kind::OneOf(RunState::NAMES))?;
        status.optional("reason", Kind::Text)?;
        status.optional("pid", Kind::Pid)?;
        status.required("iteration", Kind::Count)?;
        for text in ["phase", "subtask_id", "subtask_description"] {
            status.optional(text, Kind::Text)?;
        }
        for count in ["completed_subtasks", "total_subtasks", "total_commits"] {
            status.required(count, Kind::Count)?;
        }
        for text in ["started_at", "last_activity", "last_error"] {
            status.optional(text, Kind::Text)?;
        }
        for count in ["tokens", "input_tokens", "output_tokens"] {
            status.optional(count, Kind::Count)?;
        }
        status.optional("cost_usd", Kind::Number)?;
        status.optional("agent_pid", Kind::Pid)?;
        status.optional("waiting_until", Kind::Text)?;
        status.optional("base_commit", Kind::Text)
    }

    fn version(&self) -> Option<u32> {
        Some(self.version)
    }
}

// ---- Rendering: what `rasen status` shows ----------------------------------

/// `rasen status`: the status file joined with the run lock's answer. The
/// lock decides whether anything runs; the file only says what the run was
/// doing, so a file left saying "running" by a killed daemon is shown as a
/// crash, never as running.
pub struct Report {
    file: Option<StatusFile>,
    liveness: Liveness,
    now: i64,
    /// The dead orchestrator's PID now names another live process.
    pid_reused: bool,
}

/// The JSON shape of `rasen status --json` (stable field order).
#[derive(miniserde::Serialize)]
struct JsonReport {
    running: bool,
    state: String,
    stale_pid_file: bool,
    status: Option<String>,
    reason: Option<String>,
    pid: Option<i32>,
    iteration: u64,
    phase: Option<String>,
    subtask_id: Option<String>,
    subtask_description: Option<String>,
    completed_subtasks: u64,
    total_subtasks: u64,
    total_commits: u64,
    started_at: Option<String>,
    last_activity: Option<String>,
    elapsed_seconds: Option<i64>,
    waiting_until: Option<String>,
    last_error: Option<String>,
    tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    agent_pid: Option<i32>,
}

impl Report {
    pub fn new(file: Option<StatusFile>, liveness: Liveness, now: i64) -> Report {
        Report { file, liveness, now, pid_reused: false }
    }

    /// Says that the PID of a dead orchestrator now belongs to another
    /// live process, so the report does not call that process gone.
    pub fn with_pid_reused(mut self, reused: bool) -> Report {
        self.pid_reused = reused;
        self
    }

    /// The PID a stale or crashed run left behind, if any.
    pub fn stale_pid(&self) -> Option<i32> {
        match self.liveness {
            Liveness::Running { .. } => None,
            _ => self.pid(),
        }
    }

    /// 0 running, 1 a stale PID file was found, 3 not running (LSB).
    pub fn exit_code(&self) -> i32 {
        match self.liveness {
            Liveness::Running { .. } => 0,
            Liveness::Stale { .. } => 1,
            Liveness::NotRunning => 3,
        }
    }

    fn pid(&self) -> Option<i32> {
        match self.liveness {
            Liveness::Running { pid } | Liveness::Stale { pid } => pid.or(self.file.as_ref()?.pid),
            Liveness::NotRunning => self.file.as_ref()?.pid,
        }
    }

    /// The one word (or phrase) for the state, decided by the lock.
    fn state(&self) -> String {
        let file_state = self.file.as_ref().map(|f| f.status);
        let claims_running = matches!(file_state, Some(RunState::Running | RunState::Waiting));
        let gone = match self.pid() {
            Some(pid) if self.pid_reused => format!("PID {pid} now belongs to another process"),
            Some(pid) => format!("process {pid} is gone"),
            None => "its process is gone".to_string(),
        };
        match (&self.liveness, file_state) {
            (Liveness::Running { .. }, Some(RunState::Waiting)) => "waiting".to_string(),
            (Liveness::Running { .. }, _) => "running".to_string(),
            (Liveness::Stale { .. }, Some(_)) if claims_running => {
                format!("crashed (stale PID file, {gone})")
            }
            (Liveness::NotRunning, Some(_)) if claims_running => format!("crashed ({gone})"),
            (Liveness::Stale { .. }, Some(state)) => {
                format!("{} (stale PID file, {gone})", state.as_str())
            }
            (Liveness::NotRunning, Some(state)) => state.as_str().to_string(),
            (_, None) => "not initialized".to_string(),
        }
    }

    fn crashed(&self) -> bool {
        self.state().starts_with("crashed")
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("Status: {}\n", self.state());
        let Some(f) = &self.file else {
            if matches!(self.liveness, Liveness::NotRunning) {
                out.push_str("No task here yet: start with 'rasen init --task \"…\"'\n");
            }
            return out;
        };
        let running = matches!(self.liveness, Liveness::Running { .. });
        if let Some(pid) = self.pid().filter(|_| running || self.crashed()) {
            out.push_str(&format!("PID: {pid}\n"));
        }
        out.push_str(&format!("Iteration: {}\n", f.iteration));
        if let Some(phase) = f.phase.as_ref().filter(|_| running) {
            out.push_str(&format!("Phase: {phase}\n"));
        }
        out.push_str(&format!(
            "Progress: {}/{} subtasks {}\n",
            f.completed_subtasks,
            f.total_subtasks,
            progress_bar(f.completed_subtasks, f.total_subtasks)
        ));
        out.push_str(&format!("Total commits: {}\n", f.total_commits));
        if let Some(id) = &f.subtask_id {
            let label = if running { "Current subtask" } else { "Last subtask" };
            out.push_str(&format!("{label}: {id}\n"));
            if let Some(description) = &f.subtask_description {
                out.push_str(&format!("  {}\n", description.lines().next().unwrap_or("")));
            }
        }
        if let Some(until) = &f.waiting_until {
            out.push_str(&format!("Usage limit resets: {until}\n"));
        }
        if let Some(started) = &f.started_at {
            let elapsed = self
                .elapsed(f)
                .map(|s| format!(" ({})", crate::clock::duration(s)))
                .unwrap_or_default();
            let label = if running { "Started" } else { "Last run started" };
            out.push_str(&format!("{label}: {started}{elapsed}\n"));
        }
        if let Some(activity) = &f.last_activity {
            let ago = crate::clock::parse_iso(activity)
                .map(|t| format!(" ({})", crate::clock::ago(self.now - t)));
            out.push_str(&format!("Last activity: {activity}{}\n", ago.unwrap_or_default()));
        }
        if let Some(tokens) = f.tokens {
            let cost = f.cost_usd.map(|c| format!(", cost ${c:.4}")).unwrap_or_default();
            out.push_str(&format!("Tokens: {tokens}{cost}\n"));
        }
        if !running {
            if let Some(reason) = &f.reason {
                out.push_str(&format!("Reason: {reason}\n"));
            }
        }
        if let Some(error) = &f.last_error {
            out.push_str(&format!("Last error: {}\n", error.lines().next().unwrap_or("")));
        }
        if self.crashed() || matches!(f.status, RunState::Stopped) && !running {
            out.push_str("Hint: run 'rasen resume' (or 'rasen resume --background') to continue\n");
        }
        out
    }

    /// Seconds the run has been going (running) or went on (finished).
    fn elapsed(&self, f: &StatusFile) -> Option<i64> {
        let started = crate::clock::parse_iso(f.started_at.as_deref()?)?;
        let end = match self.liveness {
            Liveness::Running { .. } => self.now,
            _ => crate::clock::parse_iso(f.last_activity.as_deref()?)?,
        };
        Some((end - started).max(0))
    }

    pub fn to_json(&self) -> String {
        let f = self.file.clone().unwrap_or_else(StatusFile::initialized);
        let report = JsonReport {
            running: matches!(self.liveness, Liveness::Running { .. }),
            state: self.state(),
            stale_pid_file: matches!(self.liveness, Liveness::Stale { .. }),
            status: self.file.as_ref().map(|f| f.status.as_str().to_string()),
            reason: f.reason.clone(),
            pid: self.pid(),
            iteration: f.iteration,
            phase: f.phase.clone(),
            subtask_id: f.subtask_id.clone(),
            subtask_description: f.subtask_description.clone(),
            completed_subtasks: f.completed_subtasks,
            total_subtasks: f.total_subtasks,
            total_commits: f.total_commits,
            started_at: f.started_at.clone(),
            last_activity: f.last_activity.clone(),
            elapsed_seconds: self.elapsed(&f),
            waiting_until: f.waiting_until.clone(),
            last_error: f.last_error.clone(),
            tokens: f.tokens,
            input_tokens: f.input_tokens,
            output_tokens: f.output_tokens,
            cost_usd: f.cost_usd,
            agent_pid: f.agent_pid,
        };
        crate::store::to_pretty_json(&report)
    }
}

/// `[########------------] 40%`
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0);
    let percent = (done * 100).checked_div(total).unwrap_or(0);
    format!("[{}{}] {percent}%", "#".repeat(filled as usize), "-".repeat((WIDTH - filled) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, testing::TempDir};
    use std::fs;

    const INITIALIZED: &str = r#"{
  "version": 1,
  "status": "initialized",
  "reason": null,
  "pid": null,
  "iteration": 0,
  "phase": null,
  "subtask_id": null,
  "subtask_description": null,
  "completed_subtasks": 0,
  "total_subtasks": 0,
  "total_commits": 0,
  "started_at": null,
  "last_activity": null,
  "last_error": null,
  "tokens": null,
  "input_tokens": null,
  "output_tokens": null,
  "cost_usd": null,
  "agent_pid": null,
  "waiting_until": null,
  "base_commit": null
}
"#;

    #[test]
    fn initialized_status_is_written_in_field_order() {
        assert_eq!(store::to_pretty_json(&StatusFile::initialized()), INITIALIZED);
    }

    #[test]
    fn status_round_trips() {
        let dir = TempDir::new("status-roundtrip");
        let path = dir.join("status.json");
        let mut status = StatusFile::initialized();
        status.status = RunState::Waiting;
        status.pid = Some(12345);
        status.iteration = 5;
        status.phase = Some("Review 2/3".into());
        status.cost_usd = Some(1.25);
        status.agent_pid = Some(-1);
        store::save(&path, &status).unwrap();
        assert_eq!(store::load::<StatusFile>(&path).unwrap(), Some(status));
    }

    #[test]
    fn bad_status_file_is_reported_and_kept() {
        let dir = TempDir::new("status-bad");
        let path = dir.join("status.json");
        let cases = [
            (
                INITIALIZED.replace("\"initialized\"", "\"sleeping\""),
                ": status \"sleeping\" is not one of initialized, running, waiting, stopped, \
                 completed, failed",
            ),
            (
                INITIALIZED.replace("\"pid\": null", "\"pid\": \"123\""),
                ": \"pid\" must be a process id (a whole number), found \"123\"",
            ),
            (INITIALIZED.replace("  \"iteration\": 0,\n", ""), ": missing field \"iteration\""),
            (
                INITIALIZED.replace("\"tokens\": null,", "\"tokens\": null"),
                ":17:3: expected ',' or '}' after a field, found '\"'",
            ),
        ];
        for (contents, what) in cases {
            fs::write(&path, &contents).unwrap();
            let err = store::load::<StatusFile>(&path).unwrap_err();
            let expected = format!("{}{what};", path.display());
            assert!(err.message.starts_with(&expected), "{err}\nexpected: {expected}");
            assert_eq!(fs::read_to_string(&path).unwrap(), contents);
        }
    }

    #[test]
    fn run_states_know_when_the_run_is_over() {
        assert!(!RunState::Running.is_final());
        assert!(!RunState::Waiting.is_final());
        assert!(RunState::Stopped.is_final() && RunState::Completed.is_final());
    }

    fn running_file() -> StatusFile {
        let mut f = StatusFile::initialized();
        f.status = RunState::Running;
        f.pid = Some(4242);
        f.iteration = 5;
        f.completed_subtasks = 2;
        f.total_subtasks = 5;
        f.total_commits = 8;
        f.subtask_id = Some("auth-2".into());
        f.subtask_description = Some("Implement password hashing".into());
        f.started_at = Some("2026-01-27T18:00:00Z".into());
        f.last_activity = Some("2026-01-27T18:45:00Z".into());
        f
    }

    const AT_18_48: i64 = 1_769_539_680; // 2026-01-27T18:48:00Z

    #[test]
    fn running_status_shows_the_spec_lines() {
        let report =
            Report::new(Some(running_file()), Liveness::Running { pid: Some(4242) }, AT_18_48);
        let text = report.to_text();
        for line in [
            "Status: running\n",
            "PID: 4242\n",
            "Iteration: 5\n",
            "Progress: 2/5 subtasks [########------------] 40%\n",
            "Total commits: 8\n",
            "Current subtask: auth-2\n  Implement password hashing\n",
            "Last activity: 2026-01-27T18:45:00Z (3 minutes ago)\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn a_file_saying_running_without_the_lock_is_a_crash() {
        let stale =
            Report::new(Some(running_file()), Liveness::Stale { pid: Some(4242) }, AT_18_48);
        assert!(stale
            .to_text()
            .starts_with("Status: crashed (stale PID file, process 4242 is gone)\n"));
        assert!(stale.to_text().contains("rasen resume"));
        assert_eq!(stale.exit_code(), 1);
        let reused =
            Report::new(Some(running_file()), Liveness::Stale { pid: Some(4242) }, AT_18_48)
                .with_pid_reused(true);
        assert!(reused.to_text().starts_with(
            "Status: crashed (stale PID file, PID 4242 now belongs to another process)\n"
        ));
        let gone = Report::new(Some(running_file()), Liveness::NotRunning, AT_18_48);
        assert!(gone.to_text().starts_with("Status: crashed (process 4242 is gone)\n"));
        assert_eq!(gone.exit_code(), 3);
    }

    #[test]
    fn finished_runs_show_their_reason_and_exit_3() {
        let mut f = running_file();
        f.status = RunState::Failed;
        f.pid = None;
        f.reason = Some("stalled".into());
        f.last_error = Some("auth-2: no commit".into());
        let report = Report::new(Some(f), Liveness::NotRunning, AT_18_48);
        let text = report.to_text();
        assert!(text.starts_with("Status: failed\n"), "{text}");
        assert!(
            text.contains("Reason: stalled\n") && text.contains("Last error: auth-2: no commit\n")
        );
        assert!(!text.contains("PID:"), "a finished run has no PID to show:\n{text}");
        assert_eq!(report.exit_code(), 3);
        let nothing = Report::new(None, Liveness::NotRunning, AT_18_48);
        assert!(nothing.to_text().starts_with("Status: not initialized\n"));
    }

    #[test]
    fn json_report_parses_and_says_whether_it_runs() {
        let report =
            Report::new(Some(running_file()), Liveness::Running { pid: Some(4242) }, AT_18_48);
        let value: Value = miniserde::json::from_str(&report.to_json()).unwrap();
        let Value::Object(object) = value else { panic!("not an object") };
        assert!(matches!(object.get("running"), Some(Value::Bool(true))));
        assert!(matches!(object.get("state"), Some(Value::String(s)) if s == "running"));
        assert!(matches!(object.get("elapsed_seconds"), Some(Value::Number(_))));
    }

    #[test]
    fn progress_bar_fills_in_proportion() {
        assert_eq!(progress_bar(0, 0), "[--------------------] 0%");
        assert_eq!(progress_bar(5, 5), "[####################] 100%");
        assert_eq!(progress_bar(7, 5), "[####################] 100%");
    }
}
