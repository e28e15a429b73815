//! Step 1 of the loop: the initializer writes the plan, rasen validates it
//! and owns it from then on. A plan from a session that was cut short
//! (stop, usage limit, timeout, `kill -9`) is a draft: it is set aside,
//! never run. Each initializer session is recorded in the attempt history
//! (role `initializer`, subtask id ""), like a coder's.

use std::path::PathBuf;

use super::records::Ended;
use super::session::Ran;
use super::verdict::{self, Verdict};
use super::{memories, Ending, Run};
use crate::agent::SessionReport;
use crate::clock;
use crate::error::{Error, Result};
use crate::fault::{self, Point};
use crate::git;
use crate::history::{Attempt, Outcome};
use crate::logger::line as log;
use crate::plan::Plan;
use crate::project::Project;
use crate::prompts::{self, Role};
use crate::status::Phase;
use crate::store::{self, FileLock};

impl Run<'_> {
    /// The initializer writes the plan; an invalid one is handed back once
    /// with the error, then the run stops with it.
    pub(super) fn plan_the_task(&mut self) -> Result<std::result::Result<Plan, Ending>> {
        let mut plan_error = String::new();
        for round in 1..=2u32 {
            if let Some(ending) = self.check_limits() {
                return Ok(Err(ending));
            }
            log(&format!("planning: initializer session (round {round})"));
            // Saved with the session's start: see `Phase::Planning`.
            self.status.enter_phase(Phase::Planning);
            let common = prompts::Common {
                task: self.task.trim(),
                project: self.project,
                memories: memories(self.project, &self.config),
            };
            let vars = prompts::initializer_vars(&common, &plan_error);
            let Some(Ran { report, record }) =
                self.run_agent(Role::Initializer, None, round, &vars)?
            else {
                return Ok(Err(self.max_runtime_ending()));
            };
            let facts = self.facts_of(&report, 0, 0);
            let cut = verdict::cut_short(&facts, &self.rules())?;
            if let Some(cut) = &cut {
                self.finish_initializer_record(&record, &report, cut.outcome(), None)?;
            }
            match cut {
                Some(Verdict::Timeout(_)) => {
                    // Cut off by a timeout: whatever plan it wrote is a draft.
                    set_aside_draft_plan(self.project)?;
                    plan_error = format!(
                        "your previous planning session was ended by a timeout ({}) before it finished; \
                         write the plan early and keep it small",
                        verdict::describe_end(&report.end)
                    );
                    log(&format!("plan rejected: {plan_error}"));
                    self.pause_between_sessions();
                    continue;
                }
                Some(cut) => {
                    // Stopped or out of usage: the initializer may have
                    // written part of a plan and gone on working. That
                    // draft is not the plan.
                    let ending = self.ending_for_cut_short(&cut);
                    if let Some(draft) = set_aside_draft_plan(self.project)? {
                        log(&format!(
                            "planning was cut short: set the unfinished plan aside as {}; the next run plans again",
                            self.project.show(&draft)
                        ));
                    }
                    return Ok(Err(ending));
                }
                None => {}
            }
            match self.read_new_plan()? {
                Ok(plan) => {
                    fault::point(Point::PlanAccepted);
                    let accepted =
                        format!("{} subtasks for \"{}\"", plan.subtasks.len(), plan.task_name);
                    log(&format!("plan accepted: {accepted}"));
                    let success = (Outcome::Success, None);
                    self.finish_initializer_record(&record, &report, success, Some(accepted))?;
                    self.status.restore_phase(None);
                    self.save_status()?;
                    return Ok(Ok(plan));
                }
                Err(why) => {
                    log(&format!("plan rejected: {why}"));
                    let failure = (Outcome::Failure, Some(format!("plan rejected: {why}")));
                    self.finish_initializer_record(&record, &report, failure, None)?;
                    plan_error = why;
                }
            }
            self.pause_between_sessions();
        }
        Err(Error::state(format!(
            "the initializer did not produce a valid plan in two sessions: {plan_error} (a plan file it wrote is left as it was; fix it or remove it and run again)"
        )))
    }

    /// Finishes an initializer session's record: the outcome and its
    /// reason, what it planned, the commits it made (it should make none).
    fn finish_initializer_record(
        &self,
        record: &Attempt,
        report: &SessionReport,
        (outcome, reason): (Outcome, Option<String>),
        approach: Option<String>,
    ) -> Result<()> {
        let since = record.commit_before.as_deref();
        let commits = git::commits_since(&self.project.root, since)?;
        let ended = Ended { outcome, reason, approach, commits };
        self.finish_record(record.clone(), report, ended)
    }

    /// Loads and validates the plan the initializer just wrote, and saves
    /// it back in rasen's own format (timestamps set). The inner error is
    /// the plan's fault, handed back to the initializer; the outer one is
    /// rasen failing to save a good plan (disk full, the state lock), which
    /// no initializer session can fix: it ends the run.
    fn read_new_plan(&self) -> Result<std::result::Result<Plan, String>> {
        let path = self.project.plan_file();
        let mut plan = match store::load::<Plan>(&path) {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                return Ok(Err(format!("no plan was written to {}", self.project.show(&path))))
            }
            Err(e) => return Ok(Err(e.message)),
        };
        if let Err(why) = plan.validate() {
            return Ok(Err(why));
        }
        self.save_plan(&mut plan)?;
        Ok(Ok(plan))
    }
}

/// Moves the plan file, when there is one, to
/// `implementation_plan.json.interrupted.TIMESTAMP` (never over another
/// file) and returns where it went: kept for the user to read, out of the
/// way of the next run, which plans again.
pub(super) fn set_aside_draft_plan(project: &Project) -> Result<Option<PathBuf>> {
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
