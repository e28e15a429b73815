//! The records brought in line with the plan at the start of a run, after
//! a run that was killed (or failed) between two of its writes.
//!
//! The plan is the authority: it is saved first, so it is never behind the
//! records. A subtask it says `completed` gets a success in the history and
//! a good commit when either is missing; a session still recorded `running`
//! becomes what the plan says of its subtask (`success`, `blocked`) or else
//! `interrupted`. A record that says more than the plan (a success for a
//! subtask edited back to `pending`) is kept as it is: it is history.
//!
//! Pure: the caller reads the plan and asks git, and saves what changed.

use super::{Attempt, AttemptHistory, GoodCommits, Outcome, CODER_ROLE, INITIALIZER_ROLE};

/// What the records are reconciled with: the plan's word on its subtasks,
/// and git's.
pub struct PlanAndGit<'a> {
    /// The ids of the subtasks the plan says are `completed`, in plan order.
    pub completed: &'a [&'a str],
    /// The ids of the subtasks the plan says are `failed` (blocked).
    pub failed: &'a [&'a str],
    /// HEAD now, `None` in a repository without a commit.
    pub head: Option<&'a str>,
    /// Commits from a commit to HEAD; `None` when that commit is gone.
    pub commits_since: &'a dyn Fn(&str) -> Option<u64>,
    /// Now, as an ISO time, for the good commits recorded.
    pub now: &'a str,
}

/// Why a `running` record of a coder whose subtask is not finished in the
/// plan, or of an initializer, became `interrupted`.
pub const KILLED_REASON: &str = "cut short: rasen was killed (or failed) before it recorded how \
                                 the session ended; marked interrupted at the next start";

const SUCCESS_FROM_PLAN: &str = "recorded at the next start: the plan says completed, but rasen \
                                 was killed before it recorded the session's end";

const BLOCKED_FROM_PLAN: &str = "recorded at the next start: the plan says failed (blocked), but \
                                 rasen was killed before it recorded the agent's reason";

const SUCCESS_WITHOUT_SESSION: &str = "recorded at start: the plan says completed, but no \
                                       session's success was recorded (a run killed before \
                                       records were kept, or records edited by hand)";

/// Brings `history` and `good` in line with the plan (see the module
/// comment); returns one sentence per change, for the log.
pub fn reconcile(
    history: &mut AttemptHistory,
    good: &mut GoodCommits,
    with: &PlanAndGit,
) -> Vec<String> {
    let mut changes = finish_running_records(history, with);
    changes.extend(add_missing_successes(history, with));
    changes.extend(add_missing_good_commits(history, good, with));
    changes
}

/// Every `running` record gets the outcome the plan implies, the commits
/// its session made and HEAD.
fn finish_running_records(history: &mut AttemptHistory, with: &PlanAndGit) -> Vec<String> {
    let mut changes = Vec::new();
    for i in 0..history.attempts.len() {
        if history.attempts[i].outcome != Outcome::Running {
            continue;
        }
        let (outcome, reason) = outcome_from_plan(history, &history.attempts[i], with);
        let attempt = &mut history.attempts[i];
        attempt.outcome = outcome;
        attempt.reason = Some(reason.to_string());
        attempt.commits_made = attempt.commit_before.as_deref().and_then(with.commits_since);
        attempt.commit = with.head.map(str::to_string);
        changes.push(match outcome {
            Outcome::Interrupted => format!(
                "session {} ({}) was still recorded as running: its run was killed; recorded it as interrupted",
                attempt.session,
                label(attempt)
            ),
            _ => format!(
                "{} is {} in the plan: recorded session {} as {}",
                attempt.subtask_id,
                if outcome == Outcome::Success { "completed" } else { "failed" },
                attempt.session,
                outcome.as_str()
            ),
        });
    }
    changes
}

/// What a `running` record becomes: what the plan says its session did,
/// unless another record already says so.
fn outcome_from_plan(
    history: &AttemptHistory,
    attempt: &Attempt,
    with: &PlanAndGit,
) -> (Outcome, &'static str) {
    let id = attempt.subtask_id.as_str();
    if attempt.role == INITIALIZER_ROLE || id.is_empty() {
        return (Outcome::Interrupted, KILLED_REASON);
    }
    if with.completed.contains(&id) && !has_outcome(history, id, Outcome::Success) {
        return (Outcome::Success, SUCCESS_FROM_PLAN);
    }
    if with.failed.contains(&id) && !has_outcome(history, id, Outcome::Blocked) {
        return (Outcome::Blocked, BLOCKED_FROM_PLAN);
    }
    (Outcome::Interrupted, KILLED_REASON)
}

/// A success record, at HEAD, for every completed subtask that has none.
fn add_missing_successes(history: &mut AttemptHistory, with: &PlanAndGit) -> Vec<String> {
    let mut changes = Vec::new();
    for &id in with.completed {
        if has_outcome(history, id, Outcome::Success) {
            continue;
        }
        let mut attempt = Attempt::running(id, 0, CODER_ROLE, None, with.now.to_string());
        attempt.outcome = Outcome::Success;
        attempt.reason = Some(SUCCESS_WITHOUT_SESSION.to_string());
        attempt.commit = with.head.map(str::to_string);
        history.record(attempt);
        changes.push(format!(
            "{id} is completed in the plan but had no success record: added one (session 0)"
        ));
    }
    changes
}

/// A good commit for every completed subtask that has none: the commit its
/// success recorded, else HEAD.
fn add_missing_good_commits(
    history: &AttemptHistory,
    good: &mut GoodCommits,
    with: &PlanAndGit,
) -> Vec<String> {
    let mut changes = Vec::new();
    for &id in with.completed {
        if good.commits.iter().any(|c| c.subtask_id == id) {
            continue;
        }
        let success = history
            .attempts
            .iter()
            .rev()
            .find(|a| a.subtask_id == id && a.outcome == Outcome::Success);
        let Some(hash) = success.and_then(|a| a.commit.as_deref()).or(with.head) else { continue };
        good.record(hash, id, with.now);
        changes
            .push(format!("{id} is completed in the plan but had no good commit: recorded {hash}"));
    }
    changes
}

fn has_outcome(history: &AttemptHistory, id: &str, outcome: Outcome) -> bool {
    history.attempts.iter().any(|a| a.subtask_id == id && a.outcome == outcome)
}

/// "coder t1", "initializer".
fn label(attempt: &Attempt) -> String {
    if attempt.subtask_id.is_empty() {
        attempt.role.clone()
    } else {
        format!("{} {}", attempt.role, attempt.subtask_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, session: u64, role: &str, outcome: Outcome) -> Attempt {
        let mut attempt = Attempt::running(id, session, role, Some("base".into()), "t".into());
        attempt.outcome = outcome;
        attempt
    }

    fn outcomes(history: &AttemptHistory) -> Vec<(&str, u64, Outcome)> {
        history.attempts.iter().map(|a| (a.subtask_id.as_str(), a.session, a.outcome)).collect()
    }

    fn git_at_head<'a>(completed: &'a [&'a str], failed: &'a [&'a str]) -> PlanAndGit<'a> {
        PlanAndGit {
            completed,
            failed,
            head: Some("head"),
            commits_since: &|commit| (commit == "base").then_some(2),
            now: "2026-01-27T18:45:00Z",
        }
    }

    #[test]
    fn records_in_line_with_the_plan_are_left_alone() {
        let mut history = AttemptHistory::new();
        history.record(record("", 1, "initializer", Outcome::Success));
        history.record(record("t1", 2, "coder", Outcome::Success));
        let mut good = GoodCommits::new();
        good.record("c1", "t1", "then");
        let (before, good_before) = (history.clone(), good.clone());
        let changes = reconcile(&mut history, &mut good, &git_at_head(&["t1"], &[]));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!((history, good), (before, good_before));
    }

    #[test]
    fn a_running_record_of_a_subtask_not_finished_becomes_interrupted() {
        let mut history = AttemptHistory::new();
        history.record(record("", 1, "initializer", Outcome::Running));
        history.record(record("t2", 3, "coder", Outcome::Running));
        let changes = reconcile(&mut history, &mut GoodCommits::new(), &git_at_head(&[], &["t1"]));
        assert_eq!(
            outcomes(&history),
            [("", 1, Outcome::Interrupted), ("t2", 3, Outcome::Interrupted)]
        );
        for attempt in &history.attempts {
            assert_eq!(attempt.reason.as_deref(), Some(KILLED_REASON));
            assert_eq!(attempt.commits_made, Some(2), "counted from commit_before");
            assert_eq!(attempt.commit.as_deref(), Some("head"));
        }
        assert_eq!(
            changes,
            [
                "session 1 (initializer) was still recorded as running: its run was killed; recorded it as interrupted",
                "session 3 (coder t2) was still recorded as running: its run was killed; recorded it as interrupted",
            ]
        );
    }

    #[test]
    fn a_running_record_of_a_completed_subtask_becomes_its_success_and_good_commit() {
        let mut history = AttemptHistory::new();
        history.record(record("t1", 2, "coder", Outcome::Refused));
        history.record(record("t1", 3, "coder", Outcome::Running));
        let mut good = GoodCommits::new();
        let changes = reconcile(&mut history, &mut good, &git_at_head(&["t1"], &[]));
        assert_eq!(outcomes(&history), [("t1", 2, Outcome::Refused), ("t1", 3, Outcome::Success)]);
        assert_eq!(history.attempts[1].reason.as_deref(), Some(SUCCESS_FROM_PLAN));
        assert_eq!(good.commits.len(), 1);
        assert_eq!(
            (good.commits[0].hash.as_str(), good.commits[0].subtask_id.as_str()),
            ("head", "t1")
        );
        assert_eq!(
            changes,
            [
                "t1 is completed in the plan: recorded session 3 as success",
                "t1 is completed in the plan but had no good commit: recorded head",
            ]
        );
    }

    #[test]
    fn a_running_record_of_a_failed_subtask_becomes_blocked() {
        let mut history = AttemptHistory::new();
        history.record(record("t1", 2, "coder", Outcome::Running));
        reconcile(&mut history, &mut GoodCommits::new(), &git_at_head(&[], &["t1"]));
        assert_eq!(outcomes(&history), [("t1", 2, Outcome::Blocked)]);
        assert_eq!(history.attempts[0].reason.as_deref(), Some(BLOCKED_FROM_PLAN));
    }

    #[test]
    fn a_completed_subtask_without_any_record_gets_a_success_and_a_good_commit() {
        let mut history = AttemptHistory::new();
        let mut good = GoodCommits::new();
        good.record("c2", "t2", "then");
        let changes = reconcile(&mut history, &mut good, &git_at_head(&["t1", "t2"], &[]));
        assert_eq!(outcomes(&history), [("t1", 0, Outcome::Success), ("t2", 0, Outcome::Success)]);
        assert_eq!(history.attempts[0].commit.as_deref(), Some("head"));
        assert_eq!(history.attempts[0].reason.as_deref(), Some(SUCCESS_WITHOUT_SESSION));
        let ids: Vec<&str> = good.commits.iter().map(|c| c.subtask_id.as_str()).collect();
        assert_eq!(ids, ["t2", "t1"], "t2's good commit is kept, t1's added");
        assert_eq!(good.commits[1].timestamp, "2026-01-27T18:45:00Z");
        assert_eq!(changes.len(), 3, "{changes:?}");
    }

    #[test]
    fn a_missing_good_commit_is_the_commit_the_success_recorded() {
        let mut history = AttemptHistory::new();
        let mut success = record("t1", 2, "coder", Outcome::Success);
        success.commit = Some("c1".into());
        history.record(success);
        let mut good = GoodCommits::new();
        reconcile(&mut history, &mut good, &git_at_head(&["t1"], &[]));
        assert_eq!(good.commits[0].hash, "c1");
    }

    #[test]
    fn without_a_commit_in_the_repository_no_good_commit_is_made_up() {
        let mut history = AttemptHistory::new();
        let mut good = GoodCommits::new();
        let mut with = git_at_head(&["t1"], &[]);
        with.head = None;
        reconcile(&mut history, &mut good, &with);
        assert!(good.commits.is_empty());
        assert_eq!(outcomes(&history), [("t1", 0, Outcome::Success)]);
    }

    #[test]
    fn commits_since_a_commit_that_is_gone_are_unknown() {
        let mut history = AttemptHistory::new();
        let mut running = record("t1", 2, "coder", Outcome::Running);
        running.commit_before = Some("rewritten".into());
        history.record(running);
        reconcile(&mut history, &mut GoodCommits::new(), &git_at_head(&[], &[]));
        assert_eq!(history.attempts[0].commits_made, None);
    }

    #[test]
    fn a_success_already_recorded_is_not_recorded_twice() {
        let mut history = AttemptHistory::new();
        history.record(record("t1", 2, "coder", Outcome::Success));
        history.record(record("t1", 3, "coder", Outcome::Running));
        reconcile(&mut history, &mut GoodCommits::new(), &git_at_head(&["t1"], &[]));
        assert_eq!(
            outcomes(&history),
            [("t1", 2, Outcome::Success), ("t1", 3, Outcome::Interrupted)]
        );
    }
}
