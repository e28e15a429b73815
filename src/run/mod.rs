//! The loop. One run, from start to end, in this order:
//!
//! 1. no plan → an initializer session writes one; it is validated (an
//!    invalid plan goes back to the initializer once, with the error)
//!    (`planning`);
//! 2. pick the next subtask, mark it `in_progress`, note HEAD (`coding`);
//! 3. a coder session; count the commits it made (`session`);
//! 4. judge the session: a "done" claim completes the subtask only with
//!    evidence (the required `tests: pass` / `lint: pass`, a commit, the
//!    agent exiting 0, and every `backpressure.verify` command exiting 0
//!    when rasen runs it); a
//!    refused claim, a failure or a timeout is recorded with its reason,
//!    which the next attempt's prompt shows; "blocked" marks the subtask
//!    failed (`verdict`, a pure function, and `coding`, which applies it);
//! 5. stop with a reason (`EndReason`: completed, max_iterations,
//!    max_runtime, stalled, consecutive_failures, blocked, usage_limit,
//!    stopped, error) — checked before every session (`check_limits`) and
//!    after every verdict (`coding::streak_ending`). A plan whose subtasks
//!    are all completed is checked first, every time: it ends the run as
//!    completed whatever limit was reached with it, and with no pause.
//!
//! Every step is saved with an atomic write before the next begins, so a
//! `kill -9` at any instant leaves state that `resume` continues from, and
//! every decision is one log line. Every agent session is recorded in the
//! attempt history before it starts, and each start repairs the records a
//! killed run left (`records`). This module decides; it never runs a
//! process or a git command itself (`agent` and `git` do), and it changes
//! status.json only through `StatusFile`'s transitions.

mod coding;
mod planning;
mod records;
mod session;
mod verdict;

use std::time::{Duration, Instant};

use crate::agent;
use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result, EXIT_FAILED};
use crate::git;
use crate::history::{self, AttemptHistory};
use crate::identity;
use crate::lock;
use crate::logger::line as log;
use crate::plan::{self, Next, Plan};
use crate::project::Project;
use crate::reserve::{self, DiskReserve};
use crate::signals;
use crate::status::{EndReason, StatusFile};
use crate::store::{self, FileLock};

/// Flags of `run` and `resume` that change the loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub skip_review: bool,
    pub skip_qa: bool,
}

/// How a run ended: the reason, one sentence about it, and for a stop the
/// signal that asked for it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub reason: EndReason,
    pub message: String,
    signal: Option<i32>,
}

impl Ending {
    fn new(reason: EndReason, message: impl Into<String>) -> Ending {
        Ending { reason, message: message.into(), signal: None }
    }

    /// Stopped by a shutdown signal (SIGTERM or SIGINT).
    fn stopped(signal: i32) -> Ending {
        let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        Ending {
            signal: Some(signal),
            ..Ending::new(EndReason::Stopped, format!("stopped by {name}"))
        }
    }

    /// 0 completed, 128+signal when stopped by one (130 Ctrl-C, 143
    /// SIGTERM), 1 for every other way of ending without completing.
    pub fn exit_code(&self) -> i32 {
        match (self.reason, self.signal) {
            (EndReason::Completed, _) => 0,
            (EndReason::Stopped, Some(signal)) => 128 + signal,
            _ => EXIT_FAILED,
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
/// that cannot be read is left as it is (never overwritten unread).
fn record_start_failure(project: &Project, e: &Error) {
    log(&format!("run ended: error: {e}"));
    let path = project.status_file();
    let Ok(previous) = store::load::<StatusFile>(&path) else { return };
    let mut status = previous.unwrap_or_else(StatusFile::initialized);
    status.start_failed(&e.message);
    status.touch(clock::now_iso());
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
    /// task.txt as read at the start (written back as it was if deleted;
    /// prompts get it trimmed).
    task: String,
    /// Coder sessions in a row that ended without completing (per run:
    /// `resume` after such a stop gives the work a fresh set of tries).
    consecutive_failures: u64,
    /// Sessions in a row without a commit, on the subtask named.
    no_commit_streak: (String, u64),
    /// Given back when the end of the run cannot be saved (`finish`).
    reserve: DiskReserve,
}

impl<'a> Run<'a> {
    fn start(project: &'a Project, options: RunOptions) -> Result<Run<'a>> {
        let mut status = store::load::<StatusFile>(&project.status_file())?
            .unwrap_or_else(StatusFile::initialized);
        // First, before anything that can fail: a failed start clears the
        // record of the session in flight, and with it the proof.
        clean_up_after_the_last_run(project, &status)?;
        let task = read_task(project)?;
        // Iterations, tokens and cost are per task: a restart never resets
        // them, so limits cannot be bypassed by resuming (or by deleting
        // status.json: the history, which records every session that
        // started, is their floor).
        let history = load_history(project)?;
        let (tokens, cost) = history.attempts.iter().fold((0, 0.0), |(t, c), a| {
            let used = a.input_tokens.unwrap_or(0) + a.output_tokens.unwrap_or(0);
            (t + used, c + a.cost_usd.unwrap_or(0.0))
        });
        status.raise_totals_to(history.sessions_recorded(), tokens, cost);
        status.begin_run(crate::sys::getpid(), clock::now_iso());
        settle_base_commit(project, &mut status)?;
        let reserve = DiskReserve::set_aside(&project.disk_reserve_file())?;
        let mut run = Run {
            project,
            config: project.config.clone(),
            options,
            status,
            started: Instant::now(),
            task,
            consecutive_failures: 0,
            no_commit_streak: (String::new(), 0),
            reserve,
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
            let next = match plan.next_subtask() {
                // Before any limit: a plan whose subtasks are all completed
                // ends the run as completed, whatever limit was reached at
                // the same moment (also by the session that completed it).
                Next::AllCompleted => return Ok(self.all_completed(&plan)),
                Next::Blocked(why) => Err(why),
                Next::Run(index) => Ok(index),
            };
            if let Some(ending) = self.check_limits() {
                return Ok(ending);
            }
            let index = match next {
                Ok(index) => index,
                Err(why) => return Ok(Ending::new(EndReason::Blocked, why)),
            };
            let ending = self.work_on(&mut plan, index)?;
            if plan.is_all_completed() {
                continue; // no pause after the last subtask
            }
            if let Some(ending) = ending {
                return Ok(ending);
            }
            self.pause_between_sessions();
        }
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
        Ending::new(EndReason::Completed, format!("all {done}/{total} subtasks completed"))
    }

    /// The stops checked before every session: a shutdown signal, the
    /// iteration limit (per task) and the runtime limit (per run). A
    /// pending SIGHUP is handled here too: this is the safe point.
    fn check_limits(&mut self) -> Option<Ending> {
        self.reload_config_if_asked();
        if let Some(signal) = signals::shutdown_signal() {
            return Some(Ending::stopped(signal));
        }
        let limits = &self.config.orchestrator;
        if self.status.iteration() >= limits.max_iterations {
            return Some(Ending::new(
                EndReason::MaxIterations,
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
        Ending::new(EndReason::MaxRuntime, format!("reached max_runtime_seconds ({limit}s)"))
    }

    /// The ending for a session cut short by a shutdown signal.
    fn stopped_ending(&self) -> Ending {
        Ending::stopped(signals::shutdown_signal().unwrap_or(libc::SIGTERM))
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
        let mut new = match loaded {
            Ok(new) => new,
            Err(e) => {
                log(&format!("configuration not reloaded: {e}; keeping previous configuration"));
                return;
            }
        };
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
        let what = if changes.is_empty() { "no changes".to_string() } else { changes.join(", ") };
        log(&format!("configuration reloaded: {what}"));
        self.config = new;
    }

    /// The pause between sessions; a shutdown signal cuts it short.
    fn pause_between_sessions(&self) {
        let delay = self.config.orchestrator.session_delay_seconds;
        if delay > 0 {
            signals::sleep_unless_shutdown(Duration::from_secs(delay));
        }
    }

    /// Commits since the task's first run started (see `base_commit`).
    fn count_total_commits(&mut self) -> Result<()> {
        let total = git::commits_since(&self.project.root, self.status.base_commit())?;
        self.status.set_total_commits(total);
        Ok(())
    }

    fn show_progress(&mut self, plan: &Plan) {
        let (done, total) = plan.progress();
        self.status.set_progress(done as u64, total as u64);
        log(&format!("progress: {done}/{total} subtasks completed"));
    }

    /// Saves status.json, and the files a cleaner may have deleted.
    fn save_status(&mut self) -> Result<()> {
        self.status.touch(clock::now_iso());
        restore_deleted_files(self.project, &self.task);
        store::save(&self.project.status_file(), &self.status)
    }

    fn save_plan(&self, plan: &mut Plan) -> Result<()> {
        plan.touch();
        let _lock = FileLock::acquire(&self.project.state_lock_file())?;
        store::save(&self.project.plan_file(), plan)
    }

    /// Writes the final status and the last log line, however the run
    /// ended. When status.json cannot be saved (a full disk, most likely
    /// what ended the run), the disk reserve is given back and the save
    /// tried again, so the reason is recorded; the log line comes after,
    /// in the room the reserve left.
    fn finish(&mut self, result: &Result<Ending>) -> Result<()> {
        let line = match result {
            Ok(ending) => {
                self.status.end_run(ending.reason, &ending.message);
                format!("run ended: {} ({})", ending.reason.as_str(), ending.message)
            }
            Err(e) => {
                self.status.end_run(EndReason::Error, &e.message);
                format!("run ended: error: {e}")
            }
        };
        let saved = match self.save_status() {
            Err(e) if self.reserve.release() => {
                log(&format!(
                    "cannot save the end of the run ({e}): gave back the {} KiB disk reserve to record it",
                    reserve::RESERVE_BYTES / 1024
                ));
                self.save_status()
            }
            saved => saved,
        };
        log(&line);
        saved
    }
}

/// Writes the PID file and task.txt again if they were deleted under the
/// running orchestrator (`git clean -fX` deletes all of `.rasen/`), so
/// that what it holds in memory is not lost: the plan and status.json are
/// rewritten at every step anyway. Best effort; only the run lock's holder
/// calls this.
fn restore_deleted_files(project: &Project, task: &str) {
    lock::restore_pid_file(&project.pid_file());
    let path = project.task_file();
    if std::fs::symlink_metadata(&path).is_err() {
        let _ = store::write_atomically(&path, task.as_bytes(), store::STATE_FILE_MODE);
    }
}

/// The commit `total_commits` counts from: kept from the task's first run,
/// set to HEAD when there is none yet, and set anew when it is gone
/// (history rewritten and collected, or the project cloned anew: counting
/// from a commit that is gone fails every git query).
fn settle_base_commit(project: &Project, status: &mut StatusFile) -> Result<()> {
    if let Some(base) = status.base_commit().map(str::to_string) {
        if !git::commit_exists(&project.root, &base)? {
            status.set_base_commit(None);
            log(&format!(
                "the task's base commit {base} is no longer in the repository: counting commits from HEAD"
            ));
        }
    }
    if !status.has_base_commit() {
        status.set_base_commit(Some(git::head(&project.root)?.unwrap_or_default()));
    }
    Ok(())
}

/// What the last run may have left, cleaned up at every start, and by the
/// commands that find a dead run without starting one (`stop`, `resume`
/// of a completed task), holding the run lock: its agent (only what
/// `identity` proves), the git locks a git killed with it left, a draft
/// plan of a planning session cut short, records not reconciled with the
/// plan, temp files of dead writers, and its disk reserve. The order
/// matters: the agent is gone before its locks are looked at.
pub fn clean_up_after_the_last_run(project: &Project, last: &StatusFile) -> Result<()> {
    stop_agent_left_behind(last);
    match remove_git_locks_of_killed_run(project, last) {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => {
            log(&format!("removed {removed}, left by a git killed with the last run's agent"))
        }
        Err(e) => log(&format!("{e}; the next start tries again")),
    }
    if last.planning_unfinished() {
        // The last run died while planning (kill -9, power loss): the
        // plan on disk is its initializer's draft, maybe partial, maybe
        // invalid. Never run it; plan again.
        if let Some(draft) = planning::set_aside_draft_plan(project)? {
            log(&format!(
                "the last run ended while planning: set its unfinished plan aside as {}; planning again",
                project.show(&draft)
            ));
        }
    }
    crate::reserve::remove_left_behind(&project.disk_reserve_file());
    records::repair_at_start(project)
}

/// A run killed with -9 may have left its agent running: stop what
/// `identity` proves is its (the run lock is ours, so it cannot be a live
/// run's), and say what else was found.
fn stop_agent_left_behind(status: &StatusFile) {
    let found = identity::stop_left_behind(status.recorded_agent());
    if let Some(note) = found.stranger_note() {
        log(&note);
    }
    if let Some(agent) = found.agent() {
        log(&format!(
            "stopped agent {agent} and its processes, left behind by a run that was killed"
        ));
    }
}

/// Removes the git locks (`.git/index.lock`, `HEAD.lock`, a branch's…)
/// left by a git that died with the agent of a killed run (`stop --force`,
/// `kill -9`, the OOM killer: SIGKILL gives git no chance to remove them):
/// those created since that run started, that no process has open, while
/// no git works here. Call it holding the run lock, once that agent's
/// session is gone. Returns the locks removed, for a message.
pub fn remove_git_locks_of_killed_run(project: &Project, last: &StatusFile) -> Result<String> {
    let started = last.started_at().and_then(clock::parse_iso);
    match started {
        Some(secs) if last.ended_by_a_kill() => {
            let since = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
            git::remove_stale_locks_since(&project.root, since)
        }
        _ => Ok(String::new()),
    }
}

/// task.txt, never through a symlink.
fn read_task(project: &Project) -> Result<String> {
    let path = project.task_file();
    let bytes = store::read_bytes(&path)?
        .ok_or_else(|| Error::failed(format!("{}: no such file", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::failed(format!("{}: the task is not UTF-8 text", path.display())))
}

fn load_history(project: &Project) -> Result<AttemptHistory> {
    Ok(store::load::<AttemptHistory>(&project.history_file())?.unwrap_or_else(AttemptHistory::new))
}

/// The tail of memories.md for a prompt: "" when it cannot be read (a
/// symlink is not), and the log says why.
fn memories(project: &Project, config: &Config) -> String {
    history::memories_tail(&project.memories_file(), config.memory.max_bytes).unwrap_or_else(|e| {
        log(&format!("memories not given to the agent: {e}"));
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Ending::new(EndReason::Completed, "").exit_code(), 0);
        assert_eq!(Ending::stopped(libc::SIGINT).exit_code(), 130);
        assert_eq!(Ending::stopped(libc::SIGTERM).exit_code(), 143);
        assert_eq!(Ending::new(EndReason::Stalled, "").exit_code(), 1);
        assert_eq!(Ending::new(EndReason::UsageLimit, "").exit_code(), 1);
    }
}
