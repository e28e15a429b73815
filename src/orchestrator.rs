//! The loop, exactly as DESIGN.md "The loop" lists it:
//!
//! 1. no plan → an initializer session writes one; it is validated (an
//!    invalid plan goes back to the initializer once, with the error);
//! 2. pick the next subtask, mark it `in_progress`, note HEAD;
//! 3. a coder session; count the commits it made;
//! 4. judge the session: a "done" claim completes the subtask only with
//!    evidence (the required `tests: pass` / `lint: pass`, and every
//!    `backpressure.verify` command exiting 0 when rasen runs it); a refused
//!    claim, a failure or a timeout is recorded with its reason, which the
//!    next attempt's prompt shows; "blocked" marks the subtask failed;
//! 5. stop with a reason (completed, max_iterations, max_runtime, stalled,
//!    consecutive_failures, blocked, usage_limit, stopped, error).
//!
//! Every step is saved with an atomic write before the next begins, so a
//! `kill -9` at any instant leaves state that `resume` continues from, and
//! every decision is one log line. This module decides; the modules it
//! calls do the work (agent sessions, git, files).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent::{self, Progress, ReaderKind, SessionEnd, SessionReport, SessionRequest};
use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::git;
use crate::history::{self, Attempt, AttemptHistory, GoodCommits, Outcome};
use crate::logger::line as log;
use crate::plan::{self, Next, Plan, Subtask, SubtaskStatus};
use crate::project::Project;
use crate::prompts::{self, Role};
use crate::signals;
use crate::status::{RunState, StatusFile, PHASE_PLANNING};
use crate::store::{self, FileLock};
use crate::usage_limit::UsageLimit;

/// Flags of `run` and `resume` that change the loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub skip_review: bool,
    pub skip_qa: bool,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Completed,
    MaxIterations,
    MaxRuntime,
    Stalled,
    ConsecutiveFailures,
    Blocked,
    UsageLimit,
    /// Stopped by this signal (SIGTERM or SIGINT).
    Stopped(i32),
}

impl Reason {
    /// The word stored in status.json's `reason`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Completed => "completed",
            Reason::MaxIterations => "max_iterations",
            Reason::MaxRuntime => "max_runtime",
            Reason::Stalled => "stalled",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::Blocked => "blocked",
            Reason::UsageLimit => "usage_limit",
            Reason::Stopped(_) => "stopped",
        }
    }
}

/// How a run ended: the reason and one sentence about it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub reason: Reason,
    pub message: String,
}

impl Ending {
    fn new(reason: Reason, message: impl Into<String>) -> Ending {
        Ending { reason, message: message.into() }
    }

    /// 0 completed, 128+signal when stopped by one (130 Ctrl-C, 143
    /// SIGTERM), 1 for every other way of ending without completing.
    pub fn exit_code(&self) -> i32 {
        match self.reason {
            Reason::Completed => 0,
            Reason::Stopped(signal) => 128 + signal,
            _ => crate::error::EXIT_FAILED,
        }
    }
}

/// Starts a run: state loaded, an orphaned agent stopped, status.json
/// saying running. A start that fails is recorded in status.json too.
/// A daemon tells its waiting parent it is ready once this returns.
pub fn start(project: &Project, options: RunOptions) -> Result<Run<'_>> {
    Run::start(project, options).map_err(|e| {
        record_start_failure(project, &e);
        e
    })
}

/// A run that failed to start says so in status.json, as `finish` does
/// for one that failed later, instead of leaving the last run's outcome
/// there. Best effort: the error is reported anyway, and a status.json
/// that cannot be read is left as it is (never overwritten unread). The
/// phase stays: it may mark an unfinished plan (`PHASE_PLANNING`).
fn record_start_failure(project: &Project, e: &Error) {
    log(&format!("run ended: error: {e}"));
    let path = project.status_file();
    let Ok(previous) = store::load::<StatusFile>(&path) else { return };
    let mut status = previous.unwrap_or_else(StatusFile::initialized);
    status.status = RunState::Failed;
    status.reason = Some("error".to_string());
    status.last_error = Some(e.message.clone());
    status.pid = None;
    status.agent_pid = None;
    status.waiting_until = None;
    status.last_activity = Some(clock::now_iso());
    let _ = store::save(&path, &status);
}

/// The state of one run: the configuration (reloadable by SIGHUP), the
/// in-memory copy of status.json, and the per-run counters.
pub struct Run<'a> {
    project: &'a Project,
    config: Config,
    options: RunOptions,
    status: StatusFile,
    started: Instant,
    task: String,
    /// Coder sessions in a row that ended without completing (per run:
    /// `resume` after such a stop gives the work a fresh set of tries).
    consecutive_failures: u64,
    /// Sessions in a row without a commit, on the subtask named.
    no_commit_streak: (String, u64),
}

/// What a coder session amounted to.
enum Verdict {
    Completed(String),
    Refused(String),
    Blocked(String),
    Failed(String),
    Timeout(String),
    Interrupted,
    UsageLimit(UsageLimit),
}

impl<'a> Run<'a> {
    fn start(project: &'a Project, options: RunOptions) -> Result<Run<'a>> {
        let task = std::fs::read_to_string(project.task_file())
            .map_err(|e| Error::io(&project.task_file(), "cannot read the task", e))?;
        let previous = store::load::<StatusFile>(&project.status_file())?;
        let history = load_history(project)?;
        let mut status = previous.unwrap_or_else(StatusFile::initialized);
        if let Some(agent) = crate::stop::stop_orphaned_agent(&status) {
            log(&format!(
                "stopped agent {agent} and its processes, left behind by a run that was killed"
            ));
        }
        if status.planning_unfinished() {
            // The last run died while planning (kill -9, power loss): the
            // plan on disk is its initializer's draft, maybe partial, maybe
            // invalid. Never run it; plan again.
            if let Some(draft) = set_aside_draft_plan(project)? {
                log(&format!(
                    "the last run ended while planning: set its unfinished plan aside as {}; planning again",
                    project.show(&draft)
                ));
            }
        }
        status.phase = None;
        // Iterations, tokens and cost are per task: a restart never resets
        // them, so limits cannot be bypassed by resuming.
        status.iteration = status.iteration.max(history.attempts.len() as u64);
        // status.json is a runtime file (git clean -X removes it); the
        // history keeps every coder session's usage, a floor for the totals.
        let (tokens, cost) = history.attempts.iter().fold((0, 0.0), |(t, c), a| {
            let used = a.input_tokens.unwrap_or(0) + a.output_tokens.unwrap_or(0);
            (t + used, c + a.cost_usd.unwrap_or(0.0))
        });
        if tokens > status.tokens.unwrap_or(0) {
            status.tokens = Some(tokens);
        }
        if cost > status.cost_usd.unwrap_or(0.0) && cost.is_finite() {
            status.cost_usd = Some(cost);
        }
        status.status = RunState::Running;
        status.reason = None;
        status.last_error = None;
        status.pid = Some(crate::sys::getpid());
        status.agent_pid = None;
        status.waiting_until = None;
        status.started_at = Some(clock::now_iso());
        if let Some(base) = status.base_commit.clone().filter(|b| !b.is_empty()) {
            if !commit_exists(&project.root, &base)? {
                // History rewritten (and collected), or the project cloned
                // anew: counting from a commit that is gone fails every git
                // query. Count from here instead.
                status.base_commit = None;
                log(&format!(
                    "the task's base commit {base} is no longer in the repository: counting commits from HEAD"
                ));
            }
        }
        if status.base_commit.is_none() {
            status.base_commit = Some(git::head(&project.root)?.unwrap_or_default());
        }
        let mut run = Run {
            project,
            config: project.config.clone(),
            options,
            status,
            started: Instant::now(),
            task: task.trim().to_string(),
            consecutive_failures: 0,
            no_commit_streak: (String::new(), 0),
        };
        log(&format!(
            "rasen {} started (PID {}) in {}",
            env!("CARGO_PKG_VERSION"),
            crate::sys::getpid(),
            project.root.display()
        ));
        run.count_total_commits()?;
        run.save_status()?;
        Ok(run)
    }

    /// Runs the loop until it ends; `status.json` says how it ended.
    pub fn run_to_end(mut self) -> Result<Ending> {
        let result = self.loop_until_end();
        self.finish(&result)?;
        result
    }

    fn loop_until_end(&mut self) -> Result<Ending> {
        let mut plan = match plan::load_valid(&self.project.plan_file())? {
            Some(plan) => plan,
            None => match self.plan_the_task()? {
                Ok(plan) => plan,
                Err(ending) => return Ok(ending),
            },
        };
        self.show_progress(&plan);
        loop {
            if let Some(ending) = self.check_limits() {
                return Ok(ending);
            }
            let index = match plan.next_subtask() {
                Next::Run(index) => index,
                Next::AllCompleted => return Ok(self.all_completed(&plan)),
                Next::Blocked(why) => return Ok(Ending::new(Reason::Blocked, why)),
            };
            if let Some(ending) = self.work_on(&mut plan, index)? {
                return Ok(ending);
            }
            self.pause_between_sessions();
        }
    }

    /// Step 1: the initializer writes the plan; an invalid one is handed
    /// back once with the error, then the run stops with it.
    fn plan_the_task(&mut self) -> Result<std::result::Result<Plan, Ending>> {
        let mut plan_error = String::new();
        for round in 1..=2u32 {
            if let Some(ending) = self.check_limits() {
                return Ok(Err(ending));
            }
            log(&format!("planning: initializer session (round {round})"));
            // Saved with the session's start: see `PHASE_PLANNING`.
            self.status.phase = Some(PHASE_PLANNING.to_string());
            let vars = self.initializer_vars(&plan_error);
            let Some(report) = self.run_agent(Role::Initializer, None, round, &vars)? else {
                return Ok(Err(self.max_runtime_ending()));
            };
            if let Some(ending) = self.interrupted_or_limited(&report)? {
                // The initializer may have written part of a plan and gone
                // on working: that draft is not the plan.
                if let Some(draft) = set_aside_draft_plan(self.project)? {
                    log(&format!(
                        "planning was cut short: set the unfinished plan aside as {}; the next run plans again",
                        self.project.show(&draft)
                    ));
                }
                return Ok(Err(ending));
            }
            if matches!(report.end, SessionEnd::IdleTimeout | SessionEnd::SessionTimeout) {
                // Cut off by a timeout: whatever plan it wrote is a draft too.
                set_aside_draft_plan(self.project)?;
                plan_error = format!(
                    "your previous planning session was ended by a timeout ({}) before it finished; \
                     write the plan early and keep it small",
                    describe_end(&report.end)
                );
                log(&format!("plan rejected: {plan_error}"));
                self.pause_between_sessions();
                continue;
            }
            match self.read_new_plan() {
                Ok(plan) => {
                    log(&format!(
                        "plan accepted: {} subtasks for \"{}\"",
                        plan.subtasks.len(),
                        plan.task_name
                    ));
                    self.status.phase = None;
                    self.save_status()?;
                    return Ok(Ok(plan));
                }
                Err(why) => {
                    log(&format!("plan rejected: {why}"));
                    plan_error = why;
                }
            }
            self.pause_between_sessions();
        }
        Err(Error::state(format!(
            "the initializer did not produce a valid plan in two sessions: {plan_error} (a plan file it wrote is left as it was; fix it or remove it and run again)"
        )))
    }

    /// Loads and validates the plan the initializer just wrote, and saves
    /// it back in rasen's own format (timestamps set).
    fn read_new_plan(&self) -> std::result::Result<Plan, String> {
        let path = self.project.plan_file();
        let mut plan = match store::load::<Plan>(&path) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Err(format!("no plan was written to {}", self.project.show(&path))),
            Err(e) => return Err(e.message),
        };
        plan.validate()?;
        plan.touch();
        self.save_plan(&mut plan).map_err(|e| e.message)?;
        Ok(plan)
    }

    /// Steps 2–4 for one subtask. Returns an ending when the run must stop.
    fn work_on(&mut self, plan: &mut Plan, index: usize) -> Result<Option<Ending>> {
        let before = git::head(&self.project.root)?;
        plan.subtasks[index].status = SubtaskStatus::InProgress;
        let attempt = plan.subtasks[index].bump_attempts();
        let subtask = plan.subtasks[index].clone();
        self.save_plan(plan)?;
        log(&format!(
            "subtask {}: attempt {attempt}: {}",
            subtask.id,
            one_line(&subtask.description)
        ));
        self.status.phase = Some("Coding".to_string());
        self.status.subtask_id = Some(subtask.id.clone());
        self.status.subtask_description = Some(subtask.description.clone());
        let vars = self.coder_vars(&subtask, attempt)?;
        let started_at = clock::now_iso();
        let Some(report) = self.run_agent(Role::Coder, Some(&subtask), attempt, &vars)? else {
            // The subtask stays in_progress and is taken up first next time.
            return Ok(Some(self.max_runtime_ending()));
        };
        let commits = git::commits_since(&self.project.root, before.as_deref())?;
        self.count_total_commits()?;
        let verdict = self.judge(&report, &subtask, commits)?;
        let attempt = self.attempt_of(&subtask, &report, &verdict, commits, &started_at)?;
        // The plan (and good commit) first, the history after: dying in
        // between (kill -9) then loses one line of history, where the other
        // order would leave a completed subtask in_progress, to be redone.
        let ending = self.apply_verdict(plan, index, verdict, commits)?;
        self.record_attempt(attempt)?;
        Ok(ending)
    }

    /// Step 4: what the session's events, exit and commits amount to.
    fn judge(
        &mut self,
        report: &SessionReport,
        subtask: &Subtask,
        commits: u64,
    ) -> Result<Verdict> {
        if matches!(report.end, SessionEnd::Shutdown) {
            return Ok(Verdict::Interrupted);
        }
        if let Some(limit) = &report.usage_limit {
            return Ok(Verdict::UsageLimit(limit.clone()));
        }
        check_root_refusal(report)?;
        match report.end {
            SessionEnd::IdleTimeout => {
                let secs = self.config.orchestrator.idle_timeout_seconds;
                return Ok(Verdict::Timeout(with_tail(
                    format!("no output for {secs}s: the session was ended as hung"),
                    report,
                )));
            }
            SessionEnd::SessionTimeout => {
                return Ok(Verdict::Timeout(with_tail(
                    "the session ran out of time and was ended".to_string(),
                    report,
                )));
            }
            _ => {}
        }
        // An agent may say blocked and then find a way, or claim done and
        // then take it back: its last word on the subtask counts.
        let last_word = report
            .events
            .iter()
            .rev()
            .find(|e| e.topic == "build.blocked" || e.topic == "build.done");
        if let Some(event) = last_word.filter(|e| e.topic == "build.blocked") {
            return Ok(Verdict::Blocked(one_line(&event.payload)));
        }
        // A session that Claude itself reports as failed (error_max_turns,
        // error_during_execution) was cut short: a "done" said before the
        // end is not evidence that the work was finished.
        if report.failure.is_some() {
            return Ok(Verdict::Failed(self.failure_reason(report)));
        }
        if let Some(event) = last_word {
            return self.judge_done_claim(&event.payload, subtask, commits);
        }
        Ok(Verdict::Failed(self.failure_reason(report)))
    }

    /// A "done" claim completes the subtask only with evidence.
    fn judge_done_claim(
        &mut self,
        claim: &str,
        subtask: &Subtask,
        commits: u64,
    ) -> Result<Verdict> {
        let claim_lower = claim.to_lowercase();
        let mut missing = Vec::new();
        if self.config.backpressure.require_tests && !claim_lower.contains("tests: pass") {
            missing.push("\"tests: pass\"");
        }
        if self.config.backpressure.require_lint && !claim_lower.contains("lint: pass") {
            missing.push("\"lint: pass\"");
        }
        if !missing.is_empty() {
            return Ok(Verdict::Refused(format!(
                "claimed done without evidence: the build.done event must carry {}",
                missing.join(" and ")
            )));
        }
        if commits == 0 && self.commits_so_far(&subtask.id)? == 0 {
            return Ok(Verdict::Refused(
                "claimed done but no commit was made for this subtask: commit the work with git"
                    .to_string(),
            ));
        }
        for command in self.config.backpressure.verify.clone() {
            if let Some(verdict) = self.run_verify_command(&command)? {
                return Ok(verdict);
            }
        }
        Ok(Verdict::Completed(one_line(claim)))
    }

    /// Runs one `backpressure.verify` command as the agent would run, with
    /// the same timeouts and shutdown handling. `None` when it passed, else
    /// the refusal (or the interruption, when a shutdown cut it short).
    fn run_verify_command(&mut self, command: &str) -> Result<Option<Verdict>> {
        log(&format!("verify: running `{command}`"));
        let request = SessionRequest {
            argv: vec!["sh".to_string(), "-c".to_string(), command.to_string()],
            reader: ReaderKind::PlainText,
            cwd: self.project.root.clone(),
            env: Vec::new(),
            prompt: String::new(),
            session_timeout: Duration::from_secs(self.config.orchestrator.session_timeout_seconds),
            idle_timeout: Duration::from_secs(self.config.orchestrator.session_timeout_seconds),
            stop_grace: Duration::from_secs(self.config.agent.stop_grace_seconds),
            log_prefix: "verify".to_string(),
        };
        let phase = self.status.phase.replace(format!("Verify: {command}"));
        let report = self.run_watched(&request);
        self.status.phase = phase;
        let report = report?;
        let failed = match report.end {
            SessionEnd::Exited(0) => return Ok(None),
            SessionEnd::Exited(code) => format!("exit {code}"),
            SessionEnd::Signaled(signal) => format!("killed by signal {signal}"),
            SessionEnd::Shutdown => return Ok(Some(Verdict::Interrupted)),
            SessionEnd::IdleTimeout | SessionEnd::SessionTimeout => "timed out".to_string(),
        };
        log(&format!("verify: `{command}` failed ({failed})"));
        Ok(Some(Verdict::Refused(format!(
            "claimed done, but the verify command `{command}` failed ({failed}); the end of its output:\n{}",
            report.tail.trim_end()
        ))))
    }

    /// Commits recorded for `subtask_id` by earlier attempts.
    fn commits_so_far(&self, subtask_id: &str) -> Result<u64> {
        let history = load_history(self.project)?;
        Ok(history
            .attempts
            .iter()
            .filter(|a| a.subtask_id == subtask_id)
            .filter_map(|a| a.commits_made)
            .sum())
    }

    /// Why a session that made no claim failed, with the tail of its output.
    fn failure_reason(&self, report: &SessionReport) -> String {
        let what = match (&report.failure, &report.end) {
            (Some(failure), _) => {
                format!(
                    "the agent reported an error ({}): {}",
                    failure.kind,
                    one_line(&failure.message)
                )
            }
            (_, SessionEnd::Exited(0)) => {
                "the session ended without a build.done or build.blocked event".to_string()
            }
            (_, SessionEnd::Exited(code)) => format!("the agent exited with code {code}"),
            (_, SessionEnd::Signaled(signal)) => format!("the agent was killed by signal {signal}"),
            _ => "the session ended".to_string(),
        };
        with_tail(what, report)
    }

    /// Applies the verdict to the plan and the streaks, and decides
    /// whether the run goes on.
    fn apply_verdict(
        &mut self,
        plan: &mut Plan,
        index: usize,
        verdict: Verdict,
        commits: u64,
    ) -> Result<Option<Ending>> {
        let id = plan.subtasks[index].id.clone();
        let ending = match verdict {
            Verdict::Completed(summary) => {
                plan.subtasks[index].status = SubtaskStatus::Completed;
                self.consecutive_failures = 0;
                self.save_plan(plan)?;
                self.add_good_commit(&id)?;
                log(&format!("subtask {id}: completed: {summary}"));
                self.show_progress(plan);
                None
            }
            Verdict::Blocked(why) => {
                plan.subtasks[index].status = SubtaskStatus::Failed;
                self.save_plan(plan)?;
                log(&format!("subtask {id}: blocked, marked failed: {why}"));
                self.status.last_error = Some(format!("{id} blocked: {why}"));
                None
            }
            Verdict::Interrupted => {
                log(&format!("subtask {id}: interrupted; it stays in_progress and is retried first on resume"));
                return Ok(Some(self.stopped_ending()));
            }
            Verdict::UsageLimit(limit) => return Ok(Some(self.usage_limit_ending(&limit))),
            Verdict::Refused(why) | Verdict::Failed(why) | Verdict::Timeout(why) => {
                self.consecutive_failures += 1;
                log(&format!("subtask {id}: not completed: {}", summary(&why)));
                self.status.last_error = Some(format!("{id}: {}", summary(&why)));
                None
            }
        };
        self.save_status()?;
        Ok(ending.or_else(|| self.streak_ending(&id, commits)))
    }

    /// `stalled` and `consecutive_failures`, counted within this run.
    fn streak_ending(&mut self, id: &str, commits: u64) -> Option<Ending> {
        if commits > 0 || self.no_commit_streak.0 != id {
            self.no_commit_streak = (id.to_string(), 0);
        }
        if commits == 0 {
            self.no_commit_streak.1 += 1;
        }
        let stall = &self.config.stall_detection;
        if self.no_commit_streak.1 >= stall.max_no_commit_sessions {
            return Some(Ending::new(
                Reason::Stalled,
                format!(
                    "subtask {id}: {} sessions in a row without a commit",
                    self.no_commit_streak.1
                ),
            ));
        }
        if self.consecutive_failures >= stall.max_consecutive_failures {
            return Some(Ending::new(
                Reason::ConsecutiveFailures,
                format!(
                    "{} sessions in a row did not complete their subtask",
                    self.consecutive_failures
                ),
            ));
        }
        None
    }

    /// All subtasks are completed: the run completes. Review and QA loops
    /// are not part of this version; say so once rather than pretend.
    fn all_completed(&mut self, plan: &Plan) -> Ending {
        let review = self.config.review.enabled && !self.options.skip_review;
        let qa = self.config.qa.enabled && !self.options.skip_qa;
        if review || qa {
            log("review and QA loops are not available in this version: none was run (review.enabled/qa.enabled are ignored)");
        }
        let (done, total) = plan.progress();
        Ending::new(Reason::Completed, format!("all {done}/{total} subtasks completed"))
    }

    /// The stops checked before every session: a shutdown signal, the
    /// iteration limit (per task) and the runtime limit (per run). A
    /// pending SIGHUP is handled here too: this is the safe point.
    fn check_limits(&mut self) -> Option<Ending> {
        self.reload_config_if_asked();
        if signals::shutdown_signal().is_some() {
            return Some(self.stopped_ending());
        }
        let limits = &self.config.orchestrator;
        if self.status.iteration >= limits.max_iterations {
            return Some(Ending::new(
                Reason::MaxIterations,
                format!("reached max_iterations ({} sessions)", limits.max_iterations),
            ));
        }
        if self.runtime_left().is_none() {
            return Some(self.max_runtime_ending());
        }
        None
    }

    /// What is left of `max_runtime_seconds` for this run; `None` when
    /// nothing is (never zero: a zero session timeout means no limit).
    fn runtime_left(&self) -> Option<Duration> {
        let limit = Duration::from_secs(self.config.orchestrator.max_runtime_seconds);
        Some(limit.saturating_sub(self.started.elapsed())).filter(|left| !left.is_zero())
    }

    fn max_runtime_ending(&self) -> Ending {
        let limit = self.config.orchestrator.max_runtime_seconds;
        Ending::new(Reason::MaxRuntime, format!("reached max_runtime_seconds ({limit}s)"))
    }

    fn stopped_ending(&self) -> Ending {
        let signal = signals::shutdown_signal().unwrap_or(libc::SIGTERM);
        let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        Ending::new(Reason::Stopped(signal), format!("stopped by {name}"))
    }

    /// SIGHUP: re-read rasen.yml; an invalid file, or one whose agent
    /// command cannot be found (it would fail every later session), keeps
    /// the old config. The `background` files cannot move under a running
    /// orchestrator (its log is open, its PID file written, and the paths
    /// come from the project as it started): they stay until a restart,
    /// and the log says so rather than report them reloaded.
    fn reload_config_if_asked(&mut self) {
        if !signals::take_reload_request() {
            return;
        }
        let loaded = Config::load(&self.project.root).and_then(|new| {
            agent::resolve_agent_command(&new.agent.command, &self.project.root).map(|_| new)
        });
        match loaded {
            Ok(mut new) => {
                if new.background != self.config.background {
                    let moved: Vec<String> = new
                        .changes_from(&self.config)
                        .into_iter()
                        .filter(|c| c.starts_with("background."))
                        .collect();
                    log(&format!(
                        "configuration: {} not applied: the files of a running orchestrator move only with a restart (rasen stop, then rasen resume)",
                        moved.join(", ")
                    ));
                    new.background = self.config.background.clone();
                }
                let changes = new.changes_from(&self.config);
                let what =
                    if changes.is_empty() { "no changes".to_string() } else { changes.join(", ") };
                log(&format!("configuration reloaded: {what}"));
                self.config = new;
            }
            Err(e) => {
                log(&format!("configuration not reloaded: {e}; keeping previous configuration"))
            }
        }
    }

    /// The pause between sessions; a shutdown signal cuts it short.
    fn pause_between_sessions(&self) {
        let delay = self.config.orchestrator.session_delay_seconds;
        if delay > 0 {
            signals::sleep_unless_shutdown(Duration::from_secs(delay));
        }
    }

    /// One agent session (one iteration), with status.json saying so.
    /// `None` when the run's time ran out before the session could start
    /// (after the check before it: rendering the prompt takes time too).
    fn run_agent(
        &mut self,
        role: Role,
        subtask: Option<&Subtask>,
        attempt: u32,
        vars: &[(&str, String)],
    ) -> Result<Option<SessionReport>> {
        let prompt = prompts::render(&self.project.root, role, vars)?;
        let Some(runtime_left) = self.runtime_left() else {
            log(&format!("no runtime left to start a {} session", role.name()));
            return Ok(None);
        };
        self.status.iteration += 1;
        let iteration = self.status.iteration;
        let mut request = self.session_request(role, subtask, attempt, iteration, prompt)?;
        request.session_timeout = request.session_timeout.min(runtime_left);
        log(&format!("session {iteration}: {} started", role.name()));
        let report = self.run_watched(&request)?;
        self.add_usage(&report);
        log(&format!(
            "session {iteration}: {} ended ({}) after {}, {} bytes of output",
            role.name(),
            describe_end(&report.end),
            clock::duration(report.duration.as_secs() as i64),
            report.output_bytes
        ));
        for event in report.events.iter().filter(|e| !e.is_known()) {
            log(&format!("ignored event with unknown topic \"{}\"", event.topic));
        }
        self.save_status()?;
        Ok(Some(report))
    }

    /// Runs a session (an agent's, or a verify command's) with status.json
    /// following it: the PID to stop while it runs (`stop --force`, crash
    /// cleanup), and now and then its last activity and commits.
    fn run_watched(&mut self, request: &SessionRequest) -> Result<SessionReport> {
        self.count_total_commits()?;
        self.save_status()?;
        let session_start = std::time::SystemTime::now();
        let project_status_path = self.project.status_file();
        let pid_path = self.project.pid_file();
        let status = &mut self.status;
        let root = &self.project.root;
        let report = agent::run_session(request, &mut |progress| {
            match progress {
                Progress::Started(pid) => status.agent_pid = Some(pid),
                // The agent is alive and working: say so, with its commits.
                Progress::Output => {
                    let base = status.base_commit.as_deref().filter(|b| !b.is_empty());
                    if let Ok(total) = git::commits_since(root, base) {
                        status.total_commits = total;
                    }
                }
            }
            status.last_activity = Some(clock::now_iso());
            restore_pid_file(&pid_path);
            let _ = store::save(&project_status_path, status);
        })?;
        self.status.agent_pid = None;
        if !matches!(report.end, SessionEnd::Exited(_))
            && git::remove_index_lock_since(&self.project.root, session_start)?
        {
            log("removed .git/index.lock left by a git that was killed with its session");
        }
        self.save_status()?;
        Ok(report)
    }

    fn session_request(
        &self,
        role: Role,
        subtask: Option<&Subtask>,
        attempt: u32,
        iteration: u64,
        prompt: String,
    ) -> Result<SessionRequest> {
        let agent = &self.config.agent;
        let program = agent::resolve_agent_command(&agent.command, &self.project.root)?;
        let program = program.to_string_lossy().into_owned();
        let (argv, reader) = agent::argv_for(agent, &program);
        let env = vec![
            ("RASEN_ROLE".to_string(), role.name().to_string()),
            ("RASEN_SUBTASK_ID".to_string(), subtask.map(|s| s.id.clone()).unwrap_or_default()),
            ("RASEN_ATTEMPT".to_string(), attempt.to_string()),
            ("RASEN_ITERATION".to_string(), iteration.to_string()),
            ("RASEN_PROJECT_DIR".to_string(), self.project.root.display().to_string()),
        ];
        let label = match subtask {
            Some(s) => format!("{} {}", role.name(), s.id),
            None => role.name().to_string(),
        };
        Ok(SessionRequest {
            argv,
            reader,
            cwd: self.project.root.clone(),
            env,
            prompt,
            session_timeout: Duration::from_secs(self.config.orchestrator.session_timeout_seconds),
            idle_timeout: Duration::from_secs(self.config.orchestrator.idle_timeout_seconds),
            stop_grace: Duration::from_secs(agent.stop_grace_seconds),
            log_prefix: label,
        })
    }

    /// A usage limit ends the run (waiting it out is not in this version),
    /// with the reset time in status.json when the agent said it.
    fn usage_limit_ending(&mut self, limit: &UsageLimit) -> Ending {
        self.status.waiting_until = limit.resets_at.map(clock::format_iso);
        let until = self.status.waiting_until.clone().unwrap_or_else(|| "an unknown time".into());
        log(&format!("usage limit reached ({}); it resets at {until}", one_line(&limit.message)));
        Ending::new(Reason::UsageLimit, format!("usage limit reached; resets at {until}"))
    }

    /// After an initializer session: a shutdown or usage limit ends the run.
    fn interrupted_or_limited(&mut self, report: &SessionReport) -> Result<Option<Ending>> {
        if matches!(report.end, SessionEnd::Shutdown) {
            return Ok(Some(self.stopped_ending()));
        }
        if let Some(limit) = &report.usage_limit {
            return Ok(Some(self.usage_limit_ending(limit)));
        }
        check_root_refusal(report)?;
        Ok(None)
    }

    fn add_usage(&mut self, report: &SessionReport) {
        if let Some(usage) = &report.usage {
            let s = &mut self.status;
            s.input_tokens = Some(s.input_tokens.unwrap_or(0) + usage.input_tokens);
            s.output_tokens = Some(s.output_tokens.unwrap_or(0) + usage.output_tokens);
            s.tokens = Some(s.tokens.unwrap_or(0) + usage.input_tokens + usage.output_tokens);
            let cost = s.cost_usd.unwrap_or(0.0) + usage.cost_usd;
            s.cost_usd = Some(if cost.is_finite() { cost } else { 0.0 });
        }
    }

    fn initializer_vars(&self, plan_error: &str) -> Vec<(&'static str, String)> {
        vec![
            ("task", self.task.clone()),
            ("project_dir", self.project.root.display().to_string()),
            ("plan_path", self.project.show(&self.project.plan_file())),
            ("plan_schema", prompts::PLAN_SCHEMA.to_string()),
            ("plan_error", plan_error.to_string()),
            ("memories", self.memories()),
        ]
    }

    fn coder_vars(&self, subtask: &Subtask, attempt: u32) -> Result<Vec<(&'static str, String)>> {
        let history = load_history(self.project)?;
        Ok(vec![
            ("task", self.task.clone()),
            ("project_dir", self.project.root.display().to_string()),
            ("plan_path", self.project.show(&self.project.plan_file())),
            ("subtask_id", subtask.id.clone()),
            ("subtask_title", subtask.title_or_id().to_string()),
            ("subtask_description", subtask.description.clone()),
            ("subtask_files", bullets(subtask.files())),
            ("subtask_tests", bullets(subtask.tests())),
            ("acceptance_criteria", bullets(subtask.acceptance_criteria())),
            ("attempt", attempt.to_string()),
            ("memories", self.memories()),
            ("failed_approaches", failed_approaches(&history, &subtask.id)),
            ("evidence_required", self.evidence_required()),
        ])
    }

    fn evidence_required(&self) -> String {
        let b = &self.config.backpressure;
        match (b.require_tests, b.require_lint) {
            (true, true) => "tests: pass, lint: pass",
            (true, false) => "tests: pass",
            (false, true) => "lint: pass",
            (false, false) => "no evidence required",
        }
        .to_string()
    }

    fn memories(&self) -> String {
        history::memories_tail(&self.project.memories_file(), self.config.memory.max_bytes)
            .unwrap_or_default()
    }

    /// The attempt_history.json entry for a coder session.
    fn attempt_of(
        &self,
        subtask: &Subtask,
        report: &SessionReport,
        verdict: &Verdict,
        commits: u64,
        started_at: &str,
    ) -> Result<Attempt> {
        let (outcome, approach, reason) = match verdict {
            Verdict::Completed(summary) => (Outcome::Success, Some(summary.clone()), None),
            Verdict::Refused(why) => (Outcome::Refused, claim_of(report), Some(why.clone())),
            Verdict::Blocked(why) => (Outcome::Blocked, None, Some(why.clone())),
            Verdict::Failed(why) => (Outcome::Failure, None, Some(why.clone())),
            Verdict::Timeout(why) => (Outcome::Timeout, None, Some(why.clone())),
            Verdict::Interrupted => {
                (Outcome::Interrupted, None, Some("stopped by a shutdown signal".to_string()))
            }
            Verdict::UsageLimit(limit) => {
                (Outcome::UsageLimit, None, Some(one_line(&limit.message)))
            }
        };
        let usage = report.usage.as_ref();
        Ok(Attempt {
            subtask_id: subtask.id.clone(),
            session: self.status.iteration,
            role: "coder".to_string(),
            outcome,
            approach,
            reason,
            commit: git::head(&self.project.root)?,
            commits_made: Some(commits),
            started_at: Some(started_at.to_string()),
            duration_seconds: Some(report.duration.as_secs_f64()),
            input_tokens: usage.map(|u| u.input_tokens),
            output_tokens: usage.map(|u| u.output_tokens),
            cost_usd: usage.map(|u| u.cost_usd).filter(|c| c.is_finite()),
        })
    }

    fn record_attempt(&self, attempt: Attempt) -> Result<()> {
        let _lock = FileLock::acquire(&self.project.state_lock_file())?;
        let mut history = load_history(self.project)?;
        history.record(attempt);
        store::save(&self.project.history_file(), &history)
    }

    fn add_good_commit(&self, subtask_id: &str) -> Result<()> {
        let Some(hash) = git::head(&self.project.root)? else { return Ok(()) };
        let _lock = FileLock::acquire(&self.project.state_lock_file())?;
        let path = self.project.good_commits_file();
        let mut commits = store::load::<GoodCommits>(&path)?.unwrap_or_else(GoodCommits::new);
        commits.record(&hash, subtask_id, &clock::now_iso());
        store::save(&path, &commits)
    }

    fn save_plan(&self, plan: &mut Plan) -> Result<()> {
        plan.touch();
        let _lock = FileLock::acquire(&self.project.state_lock_file())?;
        store::save(&self.project.plan_file(), plan)
    }

    /// Commits since the task's first run started (see `base_commit`).
    fn count_total_commits(&mut self) -> Result<()> {
        let base = self.status.base_commit.as_deref().filter(|b| !b.is_empty());
        self.status.total_commits = git::commits_since(&self.project.root, base)?;
        Ok(())
    }

    fn show_progress(&mut self, plan: &Plan) {
        let (done, total) = plan.progress();
        self.status.completed_subtasks = done as u64;
        self.status.total_subtasks = total as u64;
        log(&format!("progress: {done}/{total} subtasks completed"));
    }

    fn save_status(&mut self) -> Result<()> {
        self.status.last_activity = Some(clock::now_iso());
        restore_pid_file(&self.project.pid_file());
        store::save(&self.project.status_file(), &self.status)
    }

    /// Writes the final status and the last log line, however the run ended.
    fn finish(&mut self, result: &Result<Ending>) -> Result<()> {
        self.status.pid = None;
        self.status.agent_pid = None;
        self.status.phase = None;
        match result {
            Ok(ending) => {
                self.status.status = match ending.reason {
                    Reason::Completed => RunState::Completed,
                    // A usage limit is not the task failing: it can go on
                    // after the reset (`rasen resume`).
                    Reason::Stopped(_) | Reason::UsageLimit => RunState::Stopped,
                    _ => RunState::Failed,
                };
                self.status.reason = Some(ending.reason.name().to_string());
                if !matches!(ending.reason, Reason::Completed | Reason::Stopped(_)) {
                    self.status.last_error.get_or_insert_with(|| ending.message.clone());
                }
                if ending.reason == Reason::Completed {
                    self.status.subtask_id = None;
                    self.status.subtask_description = None;
                }
                log(&format!("run ended: {} ({})", ending.reason.name(), ending.message));
            }
            Err(e) => {
                self.status.status = RunState::Failed;
                self.status.reason = Some("error".to_string());
                self.status.last_error = Some(e.message.clone());
                log(&format!("run ended: error: {e}"));
            }
        }
        self.save_status()
    }
}

/// Moves the plan file, when there is one, to
/// `implementation_plan.json.interrupted.TIMESTAMP` (never over another
/// file) and returns where it went: kept for the user to read, out of the
/// way of the next run, which plans again.
fn set_aside_draft_plan(project: &Project) -> Result<Option<std::path::PathBuf>> {
    let _lock = FileLock::acquire(&project.state_lock_file())?;
    let plan = project.plan_file();
    if plan.symlink_metadata().is_err() {
        return Ok(None);
    }
    let stamp = clock::now_compact();
    let name = |n: u32| {
        let suffix = if n == 0 { String::new() } else { format!(".{n}") };
        plan.with_file_name(format!("implementation_plan.json.interrupted.{stamp}{suffix}"))
    };
    let mut draft = name(0);
    let mut n = 0;
    while draft.symlink_metadata().is_ok() {
        n += 1;
        draft = name(n);
    }
    std::fs::rename(&plan, &draft)
        .map_err(|e| Error::io(&plan, "cannot set the unfinished plan aside", e))?;
    Ok(Some(draft))
}

/// Whether `hash` names a commit of the repository at `root`
/// (`git rev-parse --verify --quiet HASH^{commit}`).
fn commit_exists(root: &std::path::Path, hash: &str) -> Result<bool> {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "--quiet", &format!("{hash}^{{commit}}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::config(format!("cannot run git: {e} (rasen needs git on PATH)")))?;
    Ok(status.success())
}

/// Claude's refusal to run bypassPermissions as root ends the run at once
/// with what to do, instead of burning iterations on it.
fn check_root_refusal(report: &SessionReport) -> Result<()> {
    if report.root_refusal {
        return Err(Error::config(
            "claude refuses --permission-mode bypassPermissions when run as root: run rasen as an ordinary user (or in a container as a non-root user)",
        ));
    }
    Ok(())
}

/// The PID file is a label for people and for systemd's `PIDFile=`; if it
/// was deleted under a running orchestrator (`git clean -fX`), write it
/// again. Only the run lock's holder runs the loop that calls this.
fn restore_pid_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        let _ =
            store::write_atomically(path, format!("{}\n", crate::sys::getpid()).as_bytes(), 0o644);
    }
}

fn load_history(project: &Project) -> Result<AttemptHistory> {
    Ok(store::load::<AttemptHistory>(&project.history_file())?.unwrap_or_else(AttemptHistory::new))
}

/// The earlier attempts of a subtask that did not succeed, for its prompt.
fn failed_approaches(history: &AttemptHistory, subtask_id: &str) -> String {
    let lines: Vec<String> = history::failed_approaches(history, subtask_id, 5)
        .iter()
        .map(|a| {
            let mut text = format!("- session {} ({}):", a.session, a.outcome.as_str());
            if let Some(approach) = &a.approach {
                text.push_str(&format!(" tried: {approach};"));
            }
            if let Some(reason) = &a.reason {
                text.push_str(&format!(" why it was not accepted: {reason}"));
            }
            text
        })
        .collect();
    if lines.is_empty() {
        "(none: this is the first attempt)".to_string()
    } else {
        lines.join("\n")
    }
}

fn claim_of(report: &SessionReport) -> Option<String> {
    last_event(&report.events, "build.done").map(|e| one_line(&e.payload))
}

fn last_event<'e>(events: &'e [Event], topic: &str) -> Option<&'e Event> {
    events.iter().rev().find(|e| e.topic == topic)
}

fn describe_end(end: &SessionEnd) -> String {
    match end {
        SessionEnd::Exited(code) => format!("exit {code}"),
        SessionEnd::Signaled(signal) => format!("signal {signal}"),
        SessionEnd::IdleTimeout => "idle timeout".to_string(),
        SessionEnd::SessionTimeout => "session timeout".to_string(),
        SessionEnd::Shutdown => "shutdown".to_string(),
    }
}

fn bullets(items: &[String]) -> String {
    if items.is_empty() {
        return "(none given)".to_string();
    }
    items.iter().map(|i| format!("- {i}")).collect::<Vec<_>>().join("\n")
}

/// The first line of `text`, trimmed and cut to 300 characters.
fn one_line(text: &str) -> String {
    let first = text.trim().lines().next().unwrap_or("").trim();
    match first.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &first[..cut]),
        None => first.to_string(),
    }
}

/// A reason in one line: its first line and, when it goes on (the end of
/// an agent's or a verify command's output), its last non-empty line, which
/// is where the error usually is.
fn summary(text: &str) -> String {
    let first = one_line(text);
    match text.trim().lines().skip(1).filter(|l| !l.trim().is_empty()).last() {
        Some(last) => format!("{first} … {}", one_line(last)),
        None => first,
    }
}

/// `what`, followed by the last lines of the session's output if it had any.
fn with_tail(what: String, report: &SessionReport) -> String {
    let tail = last_lines(&report.tail, 10);
    if tail.is_empty() {
        what
    } else {
        format!("{what}; the end of its output:\n{tail}")
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
    fn exit_codes_follow_the_contract() {
        assert_eq!(Ending::new(Reason::Completed, "").exit_code(), 0);
        assert_eq!(Ending::new(Reason::Stopped(libc::SIGINT), "").exit_code(), 130);
        assert_eq!(Ending::new(Reason::Stopped(libc::SIGTERM), "").exit_code(), 143);
        assert_eq!(Ending::new(Reason::Stalled, "").exit_code(), 1);
    }
}
