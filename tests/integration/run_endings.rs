//! How a run ends when two things happen at once or something fails
//! underneath it: the last subtask completed by the last session a limit
//! allows, a stop in the pause after the last subtask, a done claim from
//! an agent that exited non-zero, a plan that cannot be saved, a full disk.

use crate::harness::*;
use crate::run_support::*;

/// status.json's state and reason, and `rasen status --json`'s.
fn assert_completed(p: &Project) {
    let s = status(p);
    assert_eq!(get_str(&s, "status"), Some("completed"), "status.json: {s:?}");
    assert_eq!(get_str(&s, "reason"), Some("completed"), "status.json: {s:?}");
    let r = p.rasen(&["status", "--json"]);
    let report = parse_json(&r.stdout, "rasen status --json");
    assert_eq!(get_str(&report, "state"), Some("completed"), "{r}");
    assert_eq!(get_str(&report, "reason"), Some("completed"), "{r}");
}

#[test]
fn the_last_subtask_done_by_the_last_session_allowed_ends_completed() {
    let mut p = project("last-session-completes");
    // The initializer and one coder session: max_iterations is reached by
    // the session that completes the plan.
    p.set_config("orchestrator.max_iterations", "2").env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);

    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_completed(&p);
    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Task already completed"), "{r}");
}

#[test]
fn no_pause_is_slept_after_the_last_subtask() {
    let mut p = project("no-pause-at-end");
    p.set_config("orchestrator.session_delay_seconds", "600").env("SCRIPTED_SUBTASKS", "1");
    // With the 600 s pause slept after t1, this would hit the deadline
    // (and a `rasen stop` in that pause left the task "stopped").
    p.rasen_with_deadline(&["run"], 30).expect_code(0);
    assert_completed(&p);
}

#[test]
fn resume_of_a_completed_task_records_it_as_completed() {
    let mut p = project("resume-completed");
    p.env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);
    // What an earlier version left: every subtask completed, yet the run
    // recorded as failed by a limit reached at the same moment.
    let text = p.file(".rasen/status.json").unwrap();
    let old = text
        .replace("\"status\": \"completed\"", "\"status\": \"failed\"")
        .replace("\"reason\": \"completed\"", "\"reason\": \"max_iterations\"");
    assert_ne!(old, text);
    p.write(".rasen/status.json", &old);

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Task already completed"), "{r}");
    assert_completed(&p);
    assert_eq!(p.sessions().len(), 2, "no session after the task was completed");
}

#[test]
fn a_done_claim_from_an_agent_that_exited_non_zero_is_refused() {
    let mut p = project("done-then-exit");
    p.env("SCRIPTED_SUBTASKS", "1").env("SCRIPTED_CODER", "done-then-exit:3,done");
    p.rasen(&["run"]).expect_code(0);

    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "success")]);
    let reason = get_str(&attempts(&p)[0], "reason").unwrap().to_string();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("crashed after claiming done"), "the output's tail: {reason}");
}

#[test]
fn a_plan_that_cannot_be_saved_ends_the_run_with_that_error_not_a_rejection() {
    let mut p = project("plan-unsavable");
    p.env("SCRIPTED_PLAN", "unsavable");
    let r = p.rasen(&["run"]);
    assert_eq!(r.code, 1, "{r}");

    assert_eq!(session_list(&p), [session("initializer", "-", "1")], "one initializer session");
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("rasen: error: ")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].contains("state.lock"), "{r}");
    assert!(!r.stdout.contains("plan rejected"), "a save error is not the plan's fault\n{r}");
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("error"), "{s:?}");
    assert!(get_str(&s, "last_error").is_some_and(|e| e.contains("state.lock")), "{s:?}");
}
