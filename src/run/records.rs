//! A record for every session that started: its attempt is written to
//! attempt_history.json as `running` before the agent starts and finished
//! with its outcome after it ends; a completed subtask's good commit. And
//! at a run's start, the repair of what a killed run left: temp files of
//! dead writers removed from `.rasen/`, and the history and good commits
//! reconciled with the plan, which wins (`history::reconcile`).
//!
//! Every write here is a read-modify-write under the state lock. Nothing
//! here decides a verdict; it records the one it is given.

use super::session::usage_of;
use super::Run;
use crate::agent::SessionReport;
use crate::clock;
use crate::error::Result;
use crate::git;
use crate::history::{self, Attempt, AttemptHistory, GoodCommits, Outcome, PlanAndGit};
use crate::logger::line as log;
use crate::plan::{Plan, Subtask, SubtaskStatus};
use crate::process;
use crate::project::Project;
use crate::prompts::Role;
use crate::store::{self, FileLock};

/// How a session ended, as its record says it.
pub(super) struct Ended {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// What the agent says it did (a done claim's summary).
    pub approach: Option<String>,
    /// Commits the session made.
    pub commits: u64,
}

impl Run<'_> {
    /// Records session `session` as `running`, before its agent starts,
    /// and returns the record, to be finished with `finish_record`.
    pub(super) fn record_session_start(
        &self,
        role: Role,
        subtask: Option<&Subtask>,
        session: u64,
    ) -> Result<Attempt> {
        let id = subtask.map_or("", |s| s.id.as_str());
        let head = git::head(&self.project.root)?;
        let record = Attempt::running(id, session, role.name(), head, clock::now_iso());
        update_history(self.project, |history| history.record(record.clone()))?;
        Ok(record)
    }

    /// Finishes a session's record with how it ended and what it cost.
    pub(super) fn finish_record(
        &self,
        mut record: Attempt,
        report: &SessionReport,
        ended: Ended,
    ) -> Result<()> {
        let usage = usage_of(report);
        record.outcome = ended.outcome;
        record.reason = ended.reason;
        record.approach = ended.approach;
        record.commit = git::head(&self.project.root)?;
        record.commits_made = Some(ended.commits);
        record.duration_seconds = Some(report.duration.as_secs_f64());
        record.input_tokens = usage.map(|u| u.input_tokens);
        record.output_tokens = usage.map(|u| u.output_tokens);
        record.cost_usd = usage.map(|u| u.cost_usd).filter(|c| c.is_finite());
        update_history(self.project, |history| history.finish(record))
    }

    /// Records HEAD as the good commit of completed subtask `subtask_id`.
    pub(super) fn add_good_commit(&self, subtask_id: &str) -> Result<()> {
        let Some(hash) = git::head(&self.project.root)? else { return Ok(()) };
        let _lock = FileLock::acquire(&self.project.state_lock_file())?;
        let path = self.project.good_commits_file();
        let mut commits = store::load::<GoodCommits>(&path)?.unwrap_or_else(GoodCommits::new);
        commits.record(&hash, subtask_id, &clock::now_iso());
        store::save(&path, &commits)
    }
}

/// At a run's start, with the run lock held and any orphaned agent
/// stopped: the temp files of dead writers removed, and the records
/// reconciled with the plan. Each repair is one log line.
pub(super) fn repair_at_start(project: &Project) -> Result<()> {
    for name in store::remove_stale_temp_files(&project.rasen_dir(), process::may_be_rasen)? {
        log(&format!("removed {name}, left in .rasen/ by a writer that was killed"));
    }
    reconcile_with_plan(project)
}

/// `history::reconcile` on the files: saved only when something changed.
fn reconcile_with_plan(project: &Project) -> Result<()> {
    let _lock = FileLock::acquire(&project.state_lock_file())?;
    let plan = store::load::<Plan>(&project.plan_file())?;
    let (history_path, good_path) = (project.history_file(), project.good_commits_file());
    let mut history = store::load::<AttemptHistory>(&history_path)?.unwrap_or_default();
    let mut good = store::load::<GoodCommits>(&good_path)?.unwrap_or_default();
    let with_status = |status| -> Vec<&str> {
        let subtasks = plan.iter().flat_map(|p| &p.subtasks);
        subtasks.filter(|s| s.status == status).map(|s| s.id.as_str()).collect()
    };
    let (completed, failed) =
        (with_status(SubtaskStatus::Completed), with_status(SubtaskStatus::Failed));
    let head = git::head(&project.root)?;
    let commits_since = |commit: &str| -> Option<u64> {
        let exists = git::commit_exists(&project.root, commit).ok()?;
        exists.then(|| git::commits_since(&project.root, Some(commit)).ok()).flatten()
    };
    let now = clock::now_iso();
    let with = PlanAndGit {
        completed: &completed,
        failed: &failed,
        head: head.as_deref(),
        commits_since: &commits_since,
        now: &now,
    };
    let (history_before, good_before) = (history.clone(), good.clone());
    let changes = history::reconcile(&mut history, &mut good, &with);
    if history != history_before {
        store::save(&history_path, &history)?;
    }
    if good != good_before {
        store::save(&good_path, &good)?;
    }
    for change in changes {
        log(&format!("records: {change}"));
    }
    Ok(())
}

/// Loads the history, changes it, saves it, under the state lock.
fn update_history(project: &Project, change: impl FnOnce(&mut AttemptHistory)) -> Result<()> {
    let _lock = FileLock::acquire(&project.state_lock_file())?;
    let path = project.history_file();
    let mut history = store::load::<AttemptHistory>(&path)?.unwrap_or_default();
    change(&mut history);
    store::save(&path, &history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_recorded_in_the_words_history_knows() {
        assert_eq!(Role::Initializer.name(), history::INITIALIZER_ROLE);
        assert_eq!(Role::Coder.name(), history::CODER_ROLE);
    }
}
