//! What rasen accepts from the agent in a foreground `rasen run`: a "done"
//! claim only with evidence and passing verify commands, a plan only when it
//! validates; and every refusal fed back into the next prompt.

use std::os::unix::fs::PermissionsExt;

use crate::harness::*;
use crate::run_support::*;

#[test]
fn done_without_evidence_is_refused_and_the_reason_reaches_the_next_prompt() {
    let mut p = project("no-evidence");
    p.set_config("stall_detection.max_consecutive_failures", "2")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "done-no-evidence");
    p.rasen(&["run"]).expect_code(1);

    // Two claims with commits but without "tests: pass, lint: pass": never completed.
    assert_eq!(get_str(&status(&p), "reason"), Some("consecutive_failures"));
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(good_commits(&p), []);
    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "refused")]);
    let first = &attempts(&p)[0];
    assert_eq!(get_u64(first, "commits_made"), Some(1));
    assert_eq!(get_str(first, "approach"), Some("finished t1"));
    let reason = get_str(first, "reason").expect("a refused attempt has a reason").to_string();
    assert!(reason.contains("tests: pass") && reason.contains("lint: pass"), "{reason}");

    assert!(!prompt(&p, 2).contains(&reason), "the first attempt's prompt already had it");
    let next = prompt(&p, 3);
    assert!(next.contains("attempt 2"), "{next}");
    assert!(next.contains(&reason), "the next prompt lacks the reason {reason:?}:\n{next}");
}

/// Writes an executable verify script into the scripted dir; returns the
/// rasen.yml value that runs it.
fn verify_script(p: &Project, body: &str) -> String {
    let path = p.scripted_dir().join("verify.sh");
    std::fs::write(&path, format!("#!/bin/sh\necho run >>\"$SCRIPTED_DIR/verify-runs\"\n{body}"))
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("[\"{}\"]", path.display())
}

fn verify_runs(p: &Project) -> usize {
    let runs = std::fs::read_to_string(p.scripted_dir().join("verify-runs"));
    runs.unwrap_or_default().lines().count()
}

#[test]
fn failing_verify_command_refuses_the_claim_and_its_output_reaches_the_next_prompt() {
    let mut p = project("verify-fails");
    // Fails until the second attempt's work is in the project (run in its root).
    let verify = verify_script(
        &p,
        "grep -q 'attempt 2' work/t1.txt && exit 0\necho VERIFY-BROKE-42: no second attempt\nexit 1\n",
    );
    p.set_config("backpressure.verify", &verify).env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);

    assert_eq!(verify_runs(&p), 2, "rasen runs verify once per claim");
    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "success")]);
    let reason = get_str(&attempts(&p)[0], "reason").unwrap().to_string();
    assert!(reason.contains("verify.sh"), "the reason names the command: {reason}");
    assert!(reason.contains("VERIFY-BROKE-42"), "the reason has its output: {reason}");
    let next = prompt(&p, 3);
    assert!(next.contains("VERIFY-BROKE-42"), "the next prompt lacks the verify output:\n{next}");

    // The passing verify let the second claim complete the subtask.
    assert_eq!(subtask_status(&p, "t1"), "completed");
    let good = good_commits(&p);
    assert_eq!(good.len(), 1);
    assert_eq!(p.git(&["log", "-1", "--format=%s", &good[0].0]), "t1: attempt 2\n");
}

#[test]
fn always_failing_verify_never_lets_a_claim_complete() {
    let mut p = project("verify-broken");
    p.set_config("backpressure.verify", "[\"sh -c 'echo VERIFY-BROKE-42; exit 1'\"]")
        .set_config("stall_detection.max_consecutive_failures", "2")
        .env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(1);

    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "refused")]);
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(good_commits(&p), []);
    let reason = get_str(&attempts(&p)[1], "reason").unwrap().to_string();
    assert!(reason.contains("exit 1") && reason.contains("VERIFY-BROKE-42"), "{reason}");
    assert!(prompt(&p, 3).contains("VERIFY-BROKE-42"));
}

#[test]
fn invalid_plan_is_handed_back_once_with_the_error_and_the_run_completes() {
    let mut p = project("plan-once");
    p.env("SCRIPTED_PLAN", "invalid-once").env("SCRIPTED_SUBTASKS", "2");
    p.rasen(&["run"]).expect_code(0);

    let messages = log_messages(&p, 120);
    let rejected: Vec<&String> =
        messages.iter().filter(|m| m.starts_with("plan rejected: ")).collect();
    assert_eq!(rejected.len(), 1, "{messages:#?}");
    let error = rejected[0].trim_start_matches("plan rejected: ");
    assert!(error.contains("t1"), "the error names the duplicate id: {error}");
    assert!(!prompt(&p, 1).contains(error));
    let second = prompt(&p, 2);
    assert!(second.contains(error), "the second initializer prompt lacks {error:?}:\n{second}");

    assert_eq!(
        session_list(&p),
        [
            session("initializer", "-", "1"),
            session("initializer", "-", "2"),
            session("coder", "t1", "1"),
            session("coder", "t2", "1"),
        ]
    );
    assert_eq!(get_str(&status(&p), "reason"), Some("completed"));
}

#[test]
fn plan_invalid_twice_stops_the_run_with_the_error_and_keeps_the_file() {
    let mut p = project("plan-twice");
    p.env("SCRIPTED_PLAN", "invalid");
    let r = p.rasen(&["run"]).expect_code(2);

    assert_eq!(r.stderr.lines().count(), 1, "{r}");
    assert!(r.stderr.starts_with("rasen: error: "), "{r}");
    assert!(r.stderr.contains("duplicate") && r.stderr.contains("\"t1\""), "{r}");
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("error"));
    assert!(get_str(&s, "last_error").is_some_and(|e| e.contains("duplicate")), "{s:?}");
    assert_eq!(
        session_list(&p),
        [session("initializer", "-", "1"), session("initializer", "-", "2")]
    );
    // The bad plan is kept as the initializer wrote it.
    let plan = p.json(".rasen/implementation_plan.json");
    let ids: Vec<&str> =
        get_array(&plan, "subtasks").unwrap().iter().filter_map(|s| get_str(s, "id")).collect();
    assert_eq!(ids, ["t1", "t1", "t1"]);
    assert!(get(&plan, "created_at").is_none(), "rasen rewrote the bad plan: {plan:?}");
}

#[test]
fn the_later_of_blocked_and_done_decides_the_session() {
    let mut p = project("blocked-then-done");
    p.env("SCRIPTED_SUBTASKS", "2")
        .env("SCRIPTED_CODER_t1", "blocked-then-done")
        .env("SCRIPTED_CODER_t2", "done-then-blocked");
    p.rasen(&["run"]).expect_code(1);

    // t1 found its way after saying blocked: the done claim stands.
    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_eq!(good_commits(&p).iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), ["t1"]);
    // t2 took its claim back: blocked, and the run with it.
    assert_eq!(subtask_status(&p, "t2"), "failed");
    assert_eq!(outcomes(&p), [pair("t1", "success"), pair("t2", "blocked")]);
    assert_eq!(get_str(&status(&p), "reason"), Some("blocked"));
}
