//! Steps 2–4 of the loop for one subtask: mark it in progress, run a coder
//! session (recorded as running before it starts), judge it (`verdict`),
//! run the verify commands on a done claim, and apply the verdict — the
//! plan, the good commit, then the attempt's record finished — then the
//! streaks that stop a run going nowhere.

use super::records::Ended;
use super::verdict::{self, Judgement, Verdict};
use super::{load_history, memories, Ending, Run};
use crate::agent::SessionReport;
use crate::error::Result;
use crate::fault::{self, Point};
use crate::git;
use crate::logger::line as log;
use crate::plan::{Plan, SubtaskStatus};
use crate::prompts::{self, Role};
use crate::status::EndReason;
use crate::text::{one_line, summary};

impl Run<'_> {
    /// Steps 2–4 for one subtask. Returns an ending when the run must stop.
    pub(super) fn work_on(&mut self, plan: &mut Plan, index: usize) -> Result<Option<Ending>> {
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
        self.status.work_on(&subtask.id, &subtask.description);
        let history = load_history(self.project)?;
        let common = prompts::Common {
            task: self.task.trim(),
            project: self.project,
            memories: memories(self.project, &self.config),
        };
        let vars =
            prompts::coder_vars(&common, &subtask, attempt, &history, &self.config.backpressure);
        let Some(ran) = self.run_agent(Role::Coder, Some(&subtask), attempt, &vars)? else {
            // The subtask stays in_progress and is taken up first next time.
            return Ok(Some(self.max_runtime_ending()));
        };
        let report = &ran.report;
        let commits = git::commits_since(&self.project.root, before.as_deref())?;
        self.count_total_commits()?;
        let earlier_commits = history.commits_for(&subtask.id);
        let verdict = self.judge(report, commits, earlier_commits)?;
        let ended = ended_by(&verdict, report, commits);
        // The plan (and good commit) first, the record after: dying in
        // between (kill -9) leaves the record `running`, which the next
        // start completes from the plan (`records`), where the other order
        // would leave a completed subtask in_progress, to be redone.
        let ending = self.apply_verdict(plan, index, verdict, commits)?;
        self.finish_record(ran.record, report, ended)?;
        fault::point(Point::HistorySaved);
        Ok(ending)
    }

    /// Step 4: the verdict on the session, with the verify commands run
    /// when its done claim has the evidence so far.
    fn judge(
        &mut self,
        report: &SessionReport,
        commits: u64,
        earlier_commits: u64,
    ) -> Result<Verdict> {
        let facts = self.facts_of(report, commits, earlier_commits);
        let summary = match verdict::judge(&facts, &self.rules())? {
            Judgement::Final(verdict) => return Ok(verdict),
            Judgement::VerifyThenComplete(summary) => summary,
        };
        for command in self.config.backpressure.verify.clone() {
            if let Some(verdict) = self.run_verify_command(&command)? {
                return Ok(verdict);
            }
        }
        Ok(Verdict::Completed(summary))
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
        match verdict {
            Verdict::Completed(summary) => {
                plan.subtasks[index].status = SubtaskStatus::Completed;
                self.consecutive_failures = 0;
                self.save_plan(plan)?;
                fault::point(Point::PlanSaved);
                self.add_good_commit(&id)?;
                fault::point(Point::GoodCommitSaved);
                log(&format!("subtask {id}: completed: {summary}"));
                self.show_progress(plan);
            }
            Verdict::Blocked(why) => {
                plan.subtasks[index].status = SubtaskStatus::Failed;
                self.save_plan(plan)?;
                fault::point(Point::PlanSaved);
                log(&format!("subtask {id}: blocked, marked failed: {why}"));
                self.status.note_error(format!("{id} blocked: {why}"));
            }
            Verdict::Interrupted | Verdict::UsageLimit(_) => {
                if verdict == Verdict::Interrupted {
                    log(&format!("subtask {id}: interrupted; it stays in_progress and is retried first on resume"));
                }
                // Saved again as the run ends: a `git clean -fX` during the
                // session may have deleted it, and it is all resume has.
                self.save_plan(plan)?;
                return Ok(Some(self.ending_for_cut_short(&verdict)));
            }
            Verdict::Refused(why) | Verdict::Failed(why) | Verdict::Timeout(why) => {
                self.consecutive_failures += 1;
                log(&format!("subtask {id}: not completed: {}", summary(&why)));
                self.status.note_error(format!("{id}: {}", summary(&why)));
            }
        }
        self.save_status()?;
        Ok(self.streak_ending(&id, commits))
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
                EndReason::Stalled,
                format!(
                    "subtask {id}: {} sessions in a row without a commit",
                    self.no_commit_streak.1
                ),
            ));
        }
        if self.consecutive_failures >= stall.max_consecutive_failures {
            return Some(Ending::new(
                EndReason::ConsecutiveFailures,
                format!(
                    "{} sessions in a row did not complete their subtask",
                    self.consecutive_failures
                ),
            ));
        }
        None
    }
}

/// How a coder session ended, for its record.
fn ended_by(verdict: &Verdict, report: &SessionReport, commits: u64) -> Ended {
    let (outcome, reason) = verdict.outcome();
    let approach = match verdict {
        Verdict::Completed(summary) => Some(summary.clone()),
        Verdict::Refused(_) => verdict::claim_of(&report.events),
        _ => None,
    };
    Ended { outcome, reason, approach, commits }
}
