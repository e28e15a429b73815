//! `status.json`: the run's real-time progress, rewritten (atomically, via
//! `store`) at every change, and read by `rasen status` and by scripts.
//!
//! This module owns the model, the words it stores, and every change to
//! it: the fields are private, and a writer changes the file only through
//! the named transitions below (`begin_run`, `work_on`, `agent_started`,
//! `end_run`, …), so the rules of a change ("a run that is over has no
//! PID", "a completed run has no current subtask") are written once.
//! Rendering it for people (`rasen status`, text and `--json`) is in
//! `report`.
//!
//! Nothing here decides whether an orchestrator is alive: the run lock
//! does. The `pid` field is a hint for people, never proof.

mod report;

use miniserde::json::Value;
use miniserde::{Deserialize, Serialize};

use crate::identity::{RecordedAgent, SessionToken};
use crate::store::{state_words, Fields, Kind, StateFile};

pub use report::Report;

state_words! {
    /// Where the run stands, as the run last recorded it.
    pub enum RunState {
        Initialized = "initialized",
        Running = "running",
        Stopped = "stopped",
        Completed = "completed",
        Failed = "failed",
    }
}

state_words! {
    /// Why a run ended (`reason` in status.json).
    pub enum EndReason {
        Completed = "completed",
        MaxIterations = "max_iterations",
        MaxRuntime = "max_runtime",
        /// A subtask got `max_no_commit_sessions` sessions in a row
        /// without a commit.
        Stalled = "stalled",
        ConsecutiveFailures = "consecutive_failures",
        /// Nothing left that can run (failed subtasks or their dependants).
        Blocked = "blocked",
        UsageLimit = "usage_limit",
        /// A shutdown signal (SIGTERM, SIGINT).
        Stopped = "stopped",
        /// `rasen stop --force`: SIGKILL, recorded by the stopper.
        Killed = "killed",
        /// An error ended the run (or kept it from starting).
        Error = "error",
    }
}

impl EndReason {
    /// The state a run that ended this way is left in. A usage limit or a
    /// stop is not the task failing: `rasen resume` goes on.
    pub fn run_state(self) -> RunState {
        match self {
            EndReason::Completed => RunState::Completed,
            EndReason::Stopped | EndReason::Killed | EndReason::UsageLimit => RunState::Stopped,
            _ => RunState::Failed,
        }
    }
}

/// What a running orchestrator is doing (`phase` in status.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// An initializer session is writing the plan. Saved from before it
    /// starts until its plan is accepted, so a run that died in between
    /// (kill -9, power loss) leaves it there: whatever plan is on disk
    /// then is the initializer's unfinished draft.
    Planning,
    /// A coder session works on the current subtask.
    Coding,
    /// rasen runs this `backpressure.verify` command on a done claim.
    Verifying(String),
}

impl Phase {
    const PLANNING: &'static str = "Initializer";
    const CODING: &'static str = "Coding";
    const VERIFYING: &'static str = "Verify: ";

    /// The text stored in status.json and shown by `rasen status`.
    pub fn to_text(&self) -> String {
        match self {
            Phase::Planning => Phase::PLANNING.to_string(),
            Phase::Coding => Phase::CODING.to_string(),
            Phase::Verifying(command) => format!("{}{command}", Phase::VERIFYING),
        }
    }

    pub fn from_text(text: &str) -> Option<Phase> {
        match text {
            Phase::PLANNING => Some(Phase::Planning),
            Phase::CODING => Some(Phase::Coding),
            _ => text.strip_prefix(Phase::VERIFYING).map(|c| Phase::Verifying(c.to_string())),
        }
    }
}

/// The file's format. Fields are private: see the module doc.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusFile {
    version: u32,
    status: RunState,
    reason: Option<EndReason>,
    /// The orchestrator's PID while it runs.
    pid: Option<i32>,
    /// Agent sessions so far, for the whole task (survives resume).
    iteration: u64,
    /// `Phase::to_text`.
    phase: Option<String>,
    subtask_id: Option<String>,
    subtask_description: Option<String>,
    completed_subtasks: u64,
    total_subtasks: u64,
    total_commits: u64,
    started_at: Option<String>,
    last_activity: Option<String>,
    last_error: Option<String>,
    tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    /// The running agent (leader of its own session), or none. Only a
    /// hint: see `session_token`.
    agent_pid: Option<i32>,
    /// The token of the session in flight (`identity`), saved before it
    /// starts: what proves a process left behind is its. Absent in files
    /// written before this field existed.
    session_token: Option<String>,
    /// When the usage limit that ended the run resets.
    waiting_until: Option<String>,
    /// HEAD when the task's first run started ("" in a repository without
    /// commits): `total_commits` counts from here, so commits made by a
    /// session that was killed are counted too.
    base_commit: Option<String>,
}

/// Tokens and cost of one session, as its agent reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

impl StatusFile {
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
            session_token: None,
            waiting_until: None,
            base_commit: None,
        }
    }

    // ---- What it says ------------------------------------------------------

    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The session in flight as recorded, for finding what it left behind.
    pub fn recorded_agent(&self) -> RecordedAgent<'_> {
        RecordedAgent { token: self.session_token.as_deref(), pid: self.agent_pid }
    }

    pub fn phase(&self) -> Option<Phase> {
        self.phase.as_deref().and_then(Phase::from_text)
    }

    /// The commit `total_commits` counts from; `None` before the first run
    /// (or in a repository that had no commit then: see `base_commit`).
    pub fn base_commit(&self) -> Option<&str> {
        self.base_commit.as_deref().filter(|b| !b.is_empty())
    }

    pub fn has_base_commit(&self) -> bool {
        self.base_commit.is_some()
    }

    /// Whether the run that last wrote this file was planning when it
    /// ended, so that its plan on disk (if any) was never finished.
    pub fn planning_unfinished(&self) -> bool {
        self.phase() == Some(Phase::Planning)
    }

    /// Why the last run ended, once it has.
    pub fn reason(&self) -> Option<EndReason> {
        self.reason
    }

    /// When the last run started (ISO 8601), if one ever did.
    pub fn started_at(&self) -> Option<&str> {
        self.started_at.as_deref()
    }

    /// Whether the last run was killed: by `stop --force` (recorded), or by
    /// anything else while it ran (the file still says running). Only the
    /// holder of the run lock can tell the second from a live run.
    pub fn ended_by_a_kill(&self) -> bool {
        self.status == RunState::Running || self.reason == Some(EndReason::Killed)
    }

    // ---- Transitions -------------------------------------------------------

    /// A run starts (foreground or daemon, `run` or `resume`): the last
    /// run's ending is cleared; the task's counters are kept.
    pub fn begin_run(&mut self, pid: i32, now: String) {
        self.status = RunState::Running;
        self.reason = None;
        self.last_error = None;
        self.pid = Some(pid);
        self.clear_agent();
        self.waiting_until = None;
        self.phase = None;
        self.started_at = Some(now);
    }

    /// Raises the task's totals to at least what the attempt history
    /// records (status.json is a runtime file; `git clean -fX` removes it),
    /// so limits cannot be bypassed by deleting it.
    pub fn raise_totals_to(&mut self, sessions: u64, tokens: u64, cost_usd: f64) {
        self.iteration = self.iteration.max(sessions);
        if tokens > self.tokens.unwrap_or(0) {
            self.tokens = Some(tokens);
        }
        if cost_usd > self.cost_usd.unwrap_or(0.0) && cost_usd.is_finite() {
            self.cost_usd = Some(cost_usd);
        }
    }

    /// Sets the commit `total_commits` counts from ("" when the repository
    /// has no commit yet), or forgets it (`None`) when it is gone from the
    /// repository, to be set anew.
    pub fn set_base_commit(&mut self, base: Option<String>) {
        self.base_commit = base;
    }

    pub fn set_total_commits(&mut self, commits: u64) {
        self.total_commits = commits;
    }

    pub fn set_progress(&mut self, completed: u64, total: u64) {
        self.completed_subtasks = completed;
        self.total_subtasks = total;
    }

    pub fn enter_phase(&mut self, phase: Phase) {
        self.phase = Some(phase.to_text());
    }

    /// Back to `phase` after a step inside it (a verify command).
    pub fn restore_phase(&mut self, phase: Option<Phase>) {
        self.phase = phase.map(|p| p.to_text());
    }

    /// A coder session is about to work on this subtask.
    pub fn work_on(&mut self, subtask_id: &str, description: &str) {
        self.enter_phase(Phase::Coding);
        self.subtask_id = Some(subtask_id.to_string());
        self.subtask_description = Some(description.to_string());
    }

    /// Counts an agent session about to start; returns its number.
    pub fn count_session(&mut self) -> u64 {
        self.iteration += 1;
        self.iteration
    }

    /// A session (agent or verify command) is about to start with this
    /// token in its environment; saved before it can run, so that even an
    /// agent whose PID was never saved can be found by it.
    pub fn session_starting(&mut self, token: &SessionToken) {
        self.agent_pid = None;
        self.session_token = Some(token.as_str().to_string());
    }

    pub fn agent_started(&mut self, pid: i32) {
        self.agent_pid = Some(pid);
    }

    /// The session is over and its processes are stopped.
    pub fn agent_ended(&mut self) {
        self.clear_agent();
    }

    pub fn add_usage(&mut self, usage: Usage) {
        let (input, output) = (usage.input_tokens, usage.output_tokens);
        self.input_tokens = Some(self.input_tokens.unwrap_or(0) + input);
        self.output_tokens = Some(self.output_tokens.unwrap_or(0) + output);
        self.tokens = Some(self.tokens.unwrap_or(0) + input + output);
        let cost = self.cost_usd.unwrap_or(0.0) + usage.cost_usd;
        self.cost_usd = Some(if cost.is_finite() { cost } else { 0.0 });
    }

    /// What went wrong last (a subtask not completed, a blocked one).
    pub fn note_error(&mut self, error: String) {
        self.last_error = Some(error);
    }

    /// A usage limit was reached; it resets then (an ISO time), if known.
    pub fn limit_reached(&mut self, resets_at: Option<String>) {
        self.waiting_until = resets_at;
    }

    /// Saved now: something happened.
    pub fn touch(&mut self, now: String) {
        self.last_activity = Some(now);
    }

    /// The run ended, for `reason`: no PID, no agent, no phase. The
    /// message becomes `last_error` for endings other than completed and
    /// stopped, unless a more precise error was noted already (an error
    /// always replaces it: it is what ended the run).
    pub fn end_run(&mut self, reason: EndReason, message: &str) {
        self.status = reason.run_state();
        self.reason = Some(reason);
        self.clear_live_fields();
        self.phase = None;
        match reason {
            EndReason::Completed => {
                self.subtask_id = None;
                self.subtask_description = None;
            }
            EndReason::Stopped => {}
            EndReason::Error | EndReason::Killed => self.last_error = Some(message.to_string()),
            _ => {
                self.last_error.get_or_insert_with(|| message.to_string());
            }
        }
    }

    /// A run that failed to start: like `end_run(Error)`, but the phase
    /// stays, since it may mark an unfinished plan (`Phase::Planning`) that
    /// the next run must set aside.
    pub fn start_failed(&mut self, message: &str) {
        self.end_keeping_phase(EndReason::Error, message);
        self.waiting_until = None;
    }

    /// `rasen stop --force` killed the run: recorded by the stopper, so
    /// that `status` does not call it a crash. The phase stays, as the
    /// killed run left it: a `Phase::Planning` there marks its plan as an
    /// unfinished draft, never to be run.
    pub fn killed(&mut self) {
        self.end_keeping_phase(EndReason::Killed, "killed by 'rasen stop --force'");
    }

    fn end_keeping_phase(&mut self, reason: EndReason, message: &str) {
        let phase = self.phase.take();
        self.end_run(reason, message);
        self.phase = phase;
    }

    fn clear_live_fields(&mut self) {
        self.pid = None;
        self.clear_agent();
    }

    fn clear_agent(&mut self) {
        self.agent_pid = None;
        self.session_token = None;
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
        status.optional("reason", Kind::OneOf(EndReason::NAMES))?;
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
        status.optional("session_token", Kind::Text)?;
        status.optional("waiting_until", Kind::Text)?;
        status.optional("base_commit", Kind::Text)
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
  "session_token": null,
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
        status.status = RunState::Stopped;
        status.pid = Some(12345);
        status.iteration = 5;
        status.phase = Some(Phase::Verifying("make test".into()).to_text());
        status.cost_usd = Some(1.25);
        status.agent_pid = Some(-1);
        store::save(&path, &status).unwrap();
        assert_eq!(store::load::<StatusFile>(&path).unwrap(), Some(status));
    }

    #[test]
    fn a_file_from_before_the_session_token_loads() {
        let dir = TempDir::new("status-old");
        let path = dir.join("status.json");
        let old = INITIALIZED.replace("  \"session_token\": null,\n", "");
        let old = old.replace("\"agent_pid\": null", "\"agent_pid\": 4321");
        fs::write(&path, old).unwrap();
        let status = store::load::<StatusFile>(&path).unwrap().unwrap();
        assert_eq!(status.recorded_agent(), RecordedAgent { token: None, pid: Some(4321) });
    }

    #[test]
    fn bad_status_file_is_reported_and_kept() {
        let dir = TempDir::new("status-bad");
        let path = dir.join("status.json");
        let cases = [
            (
                INITIALIZED.replace("\"initialized\"", "\"sleeping\""),
                ": status \"sleeping\" is not one of initialized, running, stopped, completed, \
                 failed",
            ),
            (
                INITIALIZED.replace("\"pid\": null", "\"pid\": \"123\""),
                ": \"pid\" must be a process id (a whole number), found \"123\"",
            ),
            (INITIALIZED.replace("  \"iteration\": 0,\n", ""), ": missing field \"iteration\""),
            (
                INITIALIZED.replace("\"session_token\": null", "\"session_token\": 12"),
                ": \"session_token\" must be a string, found 12",
            ),
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

    fn running() -> StatusFile {
        let mut status = StatusFile::initialized();
        status.begin_run(4242, "2026-01-27T18:00:00Z".into());
        status
    }

    #[test]
    fn begin_run_clears_the_last_ending_and_keeps_the_counters() {
        let mut status = running();
        status.count_session();
        status.note_error("t1: no commit".into());
        status.limit_reached(Some("2026-01-27T20:00:00Z".into()));
        status.end_run(EndReason::UsageLimit, "usage limit reached");
        status.begin_run(4343, "2026-01-27T21:00:00Z".into());
        assert_eq!(status.status, RunState::Running);
        assert_eq!((status.reason, status.last_error.as_deref()), (None, None));
        assert_eq!((status.pid, status.waiting_until.as_deref()), (Some(4343), None));
        assert_eq!(status.iteration(), 1, "sessions count per task");
    }

    #[test]
    fn end_run_maps_each_reason_to_its_state_and_clears_the_live_fields() {
        for (reason, state) in [
            (EndReason::Completed, RunState::Completed),
            (EndReason::Stopped, RunState::Stopped),
            (EndReason::Killed, RunState::Stopped),
            (EndReason::UsageLimit, RunState::Stopped),
            (EndReason::Stalled, RunState::Failed),
            (EndReason::MaxIterations, RunState::Failed),
            (EndReason::Blocked, RunState::Failed),
            (EndReason::Error, RunState::Failed),
        ] {
            let mut status = running();
            status.agent_started(77);
            status.work_on("t1", "first");
            status.end_run(reason, "why");
            assert_eq!((status.status, status.reason), (state, Some(reason)));
            assert_eq!((status.pid, status.agent_pid, status.phase()), (None, None, None));
        }
    }

    #[test]
    fn the_session_token_is_saved_before_the_pid_and_cleared_with_it() {
        let token = SessionToken::generate().unwrap();
        let recorded = |s: &StatusFile| {
            let r = s.recorded_agent();
            (r.token.map(str::to_string), r.pid)
        };
        let mut status = running();
        status.session_starting(&token);
        assert_eq!(recorded(&status), (Some(token.as_str().to_string()), None));
        status.agent_started(77);
        assert_eq!(recorded(&status), (Some(token.as_str().to_string()), Some(77)));
        status.agent_ended();
        assert_eq!(recorded(&status), (None, None));
        for end in [
            |s: &mut StatusFile| s.end_run(EndReason::Killed, "killed"),
            |s: &mut StatusFile| s.begin_run(4343, "2026-01-27T21:00:00Z".into()),
        ] {
            let mut status = running();
            status.session_starting(&token);
            status.agent_started(77);
            end(&mut status);
            assert_eq!(recorded(&status), (None, None));
        }
    }

    #[test]
    fn end_run_keeps_a_precise_error_but_an_error_ending_replaces_it() {
        let mut stalled = running();
        stalled.note_error("t1: claimed done without a commit".into());
        stalled.end_run(EndReason::Stalled, "t1: 3 sessions in a row without a commit");
        assert_eq!(stalled.last_error.as_deref(), Some("t1: claimed done without a commit"));
        let mut failed = running();
        failed.note_error("t1: claimed done without a commit".into());
        failed.end_run(EndReason::Error, "cannot run git");
        assert_eq!(failed.last_error.as_deref(), Some("cannot run git"));
        let mut stopped = running();
        stopped.end_run(EndReason::Stopped, "stopped by SIGTERM");
        assert_eq!(stopped.last_error, None, "a stop is no error");
    }

    #[test]
    fn a_completed_run_has_no_current_subtask_and_a_stopped_one_keeps_it() {
        let mut completed = running();
        completed.work_on("t2", "second");
        completed.end_run(EndReason::Completed, "all 2/2 subtasks completed");
        assert_eq!(
            (completed.subtask_id.as_deref(), completed.last_error.as_deref()),
            (None, None)
        );
        let mut stopped = running();
        stopped.work_on("t2", "second");
        stopped.end_run(EndReason::Stopped, "stopped by SIGINT");
        assert_eq!(stopped.subtask_id.as_deref(), Some("t2"));
    }

    #[test]
    fn a_failed_start_keeps_the_planning_marker() {
        let mut status = running();
        status.enter_phase(Phase::Planning);
        status.limit_reached(Some("2026-01-27T20:00:00Z".into()));
        status.start_failed("cannot read the task");
        assert!(status.planning_unfinished());
        assert_eq!((status.status, status.reason), (RunState::Failed, Some(EndReason::Error)));
        assert_eq!(status.waiting_until, None);
        assert_eq!(status.last_error.as_deref(), Some("cannot read the task"));
    }

    #[test]
    fn a_run_killed_while_planning_keeps_the_planning_marker() {
        let mut status = running();
        status.enter_phase(Phase::Planning);
        status.agent_started(77);
        status.killed();
        assert!(status.planning_unfinished());
        assert_eq!((status.status, status.reason), (RunState::Stopped, Some(EndReason::Killed)));
        assert_eq!((status.pid, status.agent_pid), (None, None));
        assert_eq!(status.last_error.as_deref(), Some("killed by 'rasen stop --force'"));
    }

    #[test]
    fn phases_keep_their_words_in_the_file() {
        for (phase, text) in [
            (Phase::Planning, "Initializer"),
            (Phase::Coding, "Coding"),
            (Phase::Verifying("cargo test".into()), "Verify: cargo test"),
        ] {
            assert_eq!(phase.to_text(), text);
            assert_eq!(Phase::from_text(text), Some(phase));
        }
        assert_eq!(Phase::from_text("Review 2/3"), None);
    }

    #[test]
    fn usage_adds_up_and_never_stores_a_non_finite_cost() {
        let mut status = running();
        status.add_usage(Usage { input_tokens: 10, output_tokens: 5, cost_usd: 0.5 });
        status.add_usage(Usage { input_tokens: 1, output_tokens: 1, cost_usd: f64::INFINITY });
        assert_eq!(
            (status.tokens, status.input_tokens, status.output_tokens),
            (Some(17), Some(11), Some(6))
        );
        assert_eq!(status.cost_usd, Some(0.0));
        status.raise_totals_to(9, 100, 2.0);
        assert_eq!((status.iteration(), status.tokens, status.cost_usd), (9, Some(100), Some(2.0)));
    }
}
