//! `rasen status`: status.json joined with the run lock's answer, for
//! people (text) and for scripts (`--json`). The lock decides whether
//! anything runs; the file only says what the run was doing, so a file
//! left saying "running" by a killed daemon is shown as a crash, never as
//! running. Only reads; never changes the file. Every text value from the
//! file (an id, a description, an error…) is shown with its control
//! characters escaped; `--json` escapes them as JSON does.

use super::{RunState, StatusFile};
use crate::lock::Liveness;
use crate::text::escape_controls;

/// What `rasen status` shows: the file (if any), the lock's answer, and
/// the time to measure ages against.
pub struct Report {
    file: Option<StatusFile>,
    liveness: Liveness,
    now: i64,
    /// The dead orchestrator's PID now names another live process.
    pid_reused: bool,
    /// Processes provably of an agent a killed run left behind, the agent
    /// first (`identity::find_left_behind`).
    orphaned_agent: Vec<i32>,
}

/// What `rasen status` says of a project: one fixed word each, the
/// `state` (and `status`) of `rasen status --json`: `not_initialized`,
/// `running`, `crashed`, or the state a run that is not running recorded
/// (`initialized`, `stopped`, `completed`, `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No task here (no status.json, no task).
    NotInitialized,
    /// An orchestrator holds the run lock.
    Running,
    /// The last run died without recording an end (`kill -9`, power loss):
    /// its file says running, but nobody holds the run lock.
    Crashed,
    /// Nothing runs, and the file says how the last run left things.
    Recorded(RunState),
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::NotInitialized => "not_initialized",
            State::Running => "running",
            State::Crashed => "crashed",
            State::Recorded(state) => state.as_str(),
        }
    }
}

/// The JSON shape of `rasen status --json` (stable field order). `state`
/// is one of `State`'s words; `status` repeats it, for scripts written
/// when it was the file's own word (which said `running` after a crash).
#[derive(miniserde::Serialize)]
struct JsonReport {
    running: bool,
    state: &'static str,
    stale_pid_file: bool,
    pid_reused: bool,
    status: &'static str,
    reason: Option<&'static str>,
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
    orphaned_agent_pids: Vec<i32>,
}

impl Report {
    pub fn new(file: Option<StatusFile>, liveness: Liveness, now: i64) -> Report {
        Report { file, liveness, now, pid_reused: false, orphaned_agent: Vec::new() }
    }

    /// Says that the PID of a dead orchestrator now belongs to another
    /// live process, so the report does not call that process gone.
    pub fn with_pid_reused(mut self, reused: bool) -> Report {
        self.pid_reused = reused;
        self
    }

    /// Says which processes of an agent a killed run left behind still
    /// run, the agent first.
    pub fn with_orphaned_agent(mut self, processes: Vec<i32>) -> Report {
        self.orphaned_agent = processes;
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

    /// The state, decided by the lock: the file says what the run last
    /// recorded, and a file saying running without the lock held is a
    /// crash.
    fn state(&self) -> State {
        if let Liveness::Running { .. } = self.liveness {
            return State::Running;
        }
        match self.file.as_ref().map(|f| f.status) {
            None => State::NotInitialized,
            Some(RunState::Running) => State::Crashed,
            Some(recorded) => State::Recorded(recorded),
        }
    }

    /// The state for people: the word, and for a crash or a stale PID
    /// file what became of the process.
    fn state_text(&self) -> String {
        let state = self.state();
        let gone = match self.pid() {
            Some(pid) if self.pid_reused => format!("PID {pid} now belongs to another process"),
            Some(pid) => format!("process {pid} is gone"),
            None => "its process is gone".to_string(),
        };
        let stale = matches!(self.liveness, Liveness::Stale { .. });
        match state {
            State::NotInitialized => "not initialized".to_string(),
            State::Crashed if stale => format!("crashed (stale PID file, {gone})"),
            State::Crashed => format!("crashed ({gone})"),
            _ if stale => format!("{} (stale PID file, {gone})", state.as_str()),
            _ => state.as_str().to_string(),
        }
    }

    fn crashed(&self) -> bool {
        self.state() == State::Crashed
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("Status: {}\n", self.state_text());
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
        if let Some(line) = self.orphaned_agent_line() {
            out.push_str(&line);
        }
        out.push_str(&format!("Iteration: {}\n", f.iteration));
        if let Some(phase) = f.phase.as_ref().filter(|_| running) {
            out.push_str(&format!("Phase: {}\n", escape_controls(phase)));
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
            out.push_str(&format!("{label}: {}\n", escape_controls(id)));
            if let Some(description) = &f.subtask_description {
                out.push_str(&format!("  {}\n", first_line(description)));
            }
        }
        if let Some(until) = &f.waiting_until {
            out.push_str(&format!("Usage limit resets: {}\n", escape_controls(until)));
        }
        if let Some(started) = &f.started_at {
            let elapsed = self
                .elapsed(f)
                .map(|s| format!(" ({})", crate::clock::duration(s)))
                .unwrap_or_default();
            let label = if running { "Started" } else { "Last run started" };
            out.push_str(&format!("{label}: {}{elapsed}\n", escape_controls(started)));
        }
        if let Some(activity) = &f.last_activity {
            let ago = crate::clock::parse_iso(activity)
                .map(|t| format!(" ({})", crate::clock::ago(self.now - t)));
            out.push_str(&format!(
                "Last activity: {}{}\n",
                escape_controls(activity),
                ago.unwrap_or_default()
            ));
        }
        if let Some(tokens) = f.tokens {
            let cost = f.cost_usd.map(|c| format!(", cost ${c:.4}")).unwrap_or_default();
            out.push_str(&format!("Tokens: {tokens}{cost}\n"));
        }
        if !running {
            if let Some(reason) = f.reason {
                out.push_str(&format!("Reason: {}\n", reason.as_str()));
            }
        }
        if let Some(error) = &f.last_error {
            out.push_str(&format!("Last error: {}\n", first_line(error)));
        }
        if self.crashed() || matches!(f.status, RunState::Stopped) && !running {
            out.push_str("Hint: run 'rasen resume' (or 'rasen resume --background') to continue\n");
        }
        out
    }

    /// `Orphaned agent: PID N [and K more processes] still running (…)`.
    fn orphaned_agent_line(&self) -> Option<String> {
        let (agent, rest) = self.orphaned_agent.split_first()?;
        let (more, them) = match rest.len() {
            0 => (String::new(), "it"),
            1 => (" and 1 more process".to_string(), "them"),
            n => (format!(" and {n} more processes"), "them"),
        };
        Some(format!(
            "Orphaned agent: PID {agent}{more} still running ('rasen stop' ends {them})\n"
        ))
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
            state: self.state().as_str(),
            stale_pid_file: matches!(self.liveness, Liveness::Stale { .. }),
            pid_reused: self.pid_reused,
            status: self.state().as_str(),
            reason: f.reason.map(|r| r.as_str()),
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
            orphaned_agent_pids: self.orphaned_agent.clone(),
        };
        crate::store::to_pretty_json(&report)
    }
}

/// The first line of a multi-line text (a description, an error), control
/// characters escaped: the rest is in the file and in `--json`.
fn first_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text.lines().next().unwrap_or(""))
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
    use crate::status::EndReason;
    use miniserde::json::Value;

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
    fn an_orphaned_agent_is_shown_with_how_to_end_it() {
        let crashed = || Report::new(Some(running_file()), Liveness::NotRunning, AT_18_48);
        assert!(!crashed().to_text().contains("Orphaned agent"));
        let one = crashed().with_orphaned_agent(vec![777]).to_text();
        assert!(
            one.contains("\nOrphaned agent: PID 777 still running ('rasen stop' ends it)\n"),
            "{one}"
        );
        let three = crashed().with_orphaned_agent(vec![777, 778, 779]);
        assert!(three.to_text().contains(
            "Orphaned agent: PID 777 and 2 more processes still running ('rasen stop' ends them)\n"
        ));
        let value: Value = miniserde::json::from_str(&three.to_json()).unwrap();
        let Value::Object(object) = value else { panic!("not an object") };
        assert!(matches!(object.get("orphaned_agent_pids"), Some(Value::Array(a)) if a.len() == 3));
    }

    #[test]
    fn finished_runs_show_their_reason_and_exit_3() {
        let mut f = running_file();
        f.status = RunState::Failed;
        f.pid = None;
        f.reason = Some(EndReason::Stalled);
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
    fn the_lock_says_running_even_without_a_status_file() {
        let report = Report::new(None, Liveness::Running { pid: Some(4242) }, AT_18_48);
        assert!(report.to_text().starts_with("Status: running\n"), "{}", report.to_text());
        assert!(report.to_json().contains("\"state\": \"running\""), "{}", report.to_json());
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn text_from_the_file_is_shown_with_its_control_characters_escaped() {
        let mut f = running_file();
        f.status = RunState::Failed;
        f.subtask_id = Some("t1\nStatus: completed".into());
        f.subtask_description = Some("\x1b]0;title\x07\x1b[2JWipe\u{9b}\nsecond line".into());
        f.phase = Some("coding\x1b[5m".into());
        f.last_error = Some("t1: \x1b[31mfailed\r\nat the end".into());
        f.last_activity = Some("soon\x1b[A".into());
        let text = Report::new(Some(f), Liveness::Running { pid: Some(4242) }, AT_18_48).to_text();
        for line in [
            "Phase: coding\\e[5m\n",
            "Current subtask: t1\\nStatus: completed\n  \\e]0;title\\x07\\e[2JWipe\\u{9b}\n",
            "Last activity: soon\\e[A\n",
            "Last error: t1: \\e[31mfailed\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
    }

    #[test]
    fn progress_bar_fills_in_proportion() {
        assert_eq!(progress_bar(0, 0), "[--------------------] 0%");
        assert_eq!(progress_bar(5, 5), "[####################] 100%");
        assert_eq!(progress_bar(7, 5), "[####################] 100%");
    }
}
