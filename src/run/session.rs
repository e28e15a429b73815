//! Step 3 of the loop: one agent session (or one verify command), with
//! status.json following it — the session counted, its token saved before
//! it starts and its PID while it runs (so that `stop --force` and crash
//! cleanup can prove what is its: see `identity`), its last activity and
//! commits now and then, its tokens and cost after it.

use std::time::Duration;

use super::verdict::{Facts, Rules, Verdict};
use super::{Ending, Run};
use crate::agent::{self, Progress, ReaderKind, SessionReport, SessionRequest};
use crate::clock;
use crate::error::Result;
use crate::fault::{self, Point};
use crate::git;
use crate::history::Attempt;
use crate::identity::SessionToken;
use crate::logger::line as log;
use crate::plan::Subtask;
use crate::prompts::{self, Role, Vars};
use crate::status::{EndReason, Phase, Usage};
use crate::store;
use crate::text::one_line;
use crate::usage_limit::UsageLimit;

/// A session that ran: its report, and its record in the history, still
/// `running` until the caller finishes it with the verdict.
pub(super) struct Ran {
    pub report: SessionReport,
    pub record: Attempt,
}

impl Run<'_> {
    /// One agent session (one iteration), with status.json saying so and
    /// the attempt recorded as running before the agent starts.
    /// `None` when the run's time ran out before the session could start
    /// (after the check before it: rendering the prompt takes time too).
    pub(super) fn run_agent(
        &mut self,
        role: Role,
        subtask: Option<&Subtask>,
        attempt: u32,
        vars: &Vars,
    ) -> Result<Option<Ran>> {
        let prompt = prompts::render(&self.project.root, role, vars)?;
        let Some(runtime_left) = self.runtime_left() else {
            log(&format!("no runtime left to start a {} session", role.name()));
            return Ok(None);
        };
        let iteration = self.status.count_session();
        let mut request = self.session_request(role, subtask, attempt, iteration, prompt)?;
        request.session_timeout = request.session_timeout.min(runtime_left);
        let record = self.record_session_start(role, subtask, iteration)?;
        fault::point(Point::SessionRecorded);
        log(&format!("session {iteration}: {} started", role.name()));
        // An error from here on leaves the record `running`: the next
        // start settles it from the plan (`records`).
        let report = self.run_watched(request)?;
        fault::point(Point::SessionEnded);
        if let Some(usage) = usage_of(&report) {
            self.status.add_usage(usage);
        }
        log(&format!(
            "session {iteration}: {} ended ({}) after {}, {} bytes of output",
            role.name(),
            super::verdict::describe_end(&report.end),
            clock::duration(report.duration.as_secs() as i64),
            report.output_bytes
        ));
        for event in report.events.iter().filter(|e| !e.is_known()) {
            log(&format!("ignored event with unknown topic \"{}\"", event.topic));
        }
        self.save_status()?;
        Ok(Some(Ran { report, record }))
    }

    /// Runs one `backpressure.verify` command as the agent would run, with
    /// the same timeouts and shutdown handling, and returns its verdict:
    /// `None` when it passed.
    pub(super) fn run_verify_command(&mut self, command: &str) -> Result<Option<Verdict>> {
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
        let phase = self.status.phase();
        self.status.enter_phase(Phase::Verifying(command.to_string()));
        let report = self.run_watched(request);
        self.status.restore_phase(phase);
        let report = report?;
        let verdict = super::verdict::judge_verify(command, report.end, &report.tail);
        if matches!(verdict, Some(Verdict::Refused(_))) {
            log(&format!(
                "verify: `{command}` failed ({})",
                super::verdict::verify_failure(report.end)
            ));
        }
        Ok(verdict)
    }

    /// Runs a session (an agent's, or a verify command's) with status.json
    /// following it: its token, saved before it starts and given to it in
    /// its environment, and its PID, which prove what to stop while it runs
    /// (`stop --force`) or after a crash; now and then its last activity and
    /// commits.
    fn run_watched(&mut self, mut request: SessionRequest) -> Result<SessionReport> {
        self.count_total_commits()?;
        let token = SessionToken::generate()?;
        request.env.push(token.variable());
        self.status.session_starting(&token);
        self.save_status()?;
        let session_start = std::time::SystemTime::now();
        let status_path = self.project.status_file();
        let (project, task) = (self.project, &self.task);
        let status = &mut self.status;
        let root = &self.project.root;
        let report = agent::run_session(&request, &mut |progress| {
            let started = matches!(progress, Progress::Started(_));
            match progress {
                Progress::Started(pid) => status.agent_started(pid),
                // The agent is alive and working: say so, with its commits.
                Progress::Output => {
                    if let Ok(total) = git::commits_since(root, status.base_commit()) {
                        status.set_total_commits(total);
                    }
                }
            }
            status.touch(clock::now_iso());
            super::restore_deleted_files(project, task);
            let _ = store::save(&status_path, status);
            if started {
                fault::point(Point::AgentStarted);
            }
        })?;
        self.status.agent_ended();
        // However the session ended, none of its processes is left: rasen
        // killed them (a timeout, a stop, or what the agent left running
        // when it exited), and a git among them may have held the lock.
        // A lock that cannot be removed is said, not fatal: the session's
        // report (and its work) is judged all the same.
        match git::remove_stale_locks_since(&self.project.root, session_start) {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => {
                log(&format!("removed {removed}, left by a git that was killed with its session"))
            }
            Err(e) => log(&format!("{e}; the next session's git may refuse to run")),
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

    /// What the verdict needs of a session's report.
    pub(super) fn facts_of<'r>(
        &self,
        report: &'r SessionReport,
        commits: u64,
        earlier_commits: u64,
    ) -> Facts<'r> {
        let agent_error = report
            .failure
            .as_ref()
            .map(|f| format!("the agent reported an error ({}): {}", f.kind, one_line(&f.message)));
        Facts {
            end: report.end,
            events: &report.events,
            agent_error,
            usage_limit: report.usage_limit.as_ref(),
            root_refusal: report.root_refusal,
            tail: &report.tail,
            commits,
            earlier_commits,
        }
    }

    /// The evidence rules of the configuration as it is now.
    pub(super) fn rules(&self) -> Rules {
        Rules {
            require_tests: self.config.backpressure.require_tests,
            require_lint: self.config.backpressure.require_lint,
            idle_timeout_seconds: self.config.orchestrator.idle_timeout_seconds,
        }
    }

    /// The run's ending for a session stopped by a signal or a usage limit.
    pub(super) fn ending_for_cut_short(&mut self, cut: &Verdict) -> Ending {
        match cut {
            Verdict::UsageLimit(limit) => self.usage_limit_ending(limit),
            _ => self.stopped_ending(),
        }
    }

    /// A usage limit ends the run (waiting it out is not in this version),
    /// with the reset time in status.json when the agent said it.
    fn usage_limit_ending(&mut self, limit: &UsageLimit) -> Ending {
        let until = limit.resets_at.map(clock::format_iso);
        self.status.limit_reached(until.clone());
        let until = until.unwrap_or_else(|| "an unknown time".into());
        log(&format!("usage limit reached ({}); it resets at {until}", one_line(&limit.message)));
        Ending::new(EndReason::UsageLimit, format!("usage limit reached; resets at {until}"))
    }
}

/// The tokens and cost an agent reported for its session.
pub(super) fn usage_of(report: &SessionReport) -> Option<Usage> {
    report.usage.as_ref().map(|u| Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cost_usd: u.cost_usd,
    })
}
