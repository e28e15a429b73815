//! What a later run recovers from: a planning session cut short (by stop,
//! by `kill -9`), whose draft plan must never be taken for the plan, while
//! a plan written by hand is run as it is.

use crate::harness::*;
use crate::run_support::*;

const PLAN_FILE: &str = ".rasen/implementation_plan.json";
const DRAFT_PREFIX: &str = "implementation_plan.json.interrupted.";

/// A project whose first initializer session writes a one-subtask draft
/// and then plans for ten minutes; the next one plans three subtasks at once.
fn slow_planning_project(name: &str) -> Project {
    let mut p = project(name);
    p.set_config("agent.stop_grace_seconds", "1")
        .env("SCRIPTED_SUBTASKS", "3")
        .env("SCRIPTED_PLAN", "slow:600,valid");
    p
}

/// The PID in `Daemon started with PID N`.
fn start_daemon(p: &Project, args: &[&str]) -> i32 {
    let r = p.rasen(args).expect_code(0);
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Daemon started with PID "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `Daemon started with PID N`\n{r}"))
}

/// Waits until the initializer has written its draft and is planning on,
/// and status.json names it as the running agent.
fn wait_for_planning_under_way(p: &Project) {
    wait_for_log(p, "still planning: 1 s");
    wait_until(30, "status.json to name the initializer as the agent", || {
        let pid = p.sessions().first().map(|s| s.pid as u64);
        p.file(".rasen/status.json")
            .and_then(|t| miniserde::json::from_str::<miniserde::json::Value>(&t).ok())
            .is_some_and(|s| pid.is_some() && get_u64(&s, "agent_pid") == pid)
    });
}

/// The names of the drafts set aside in .rasen/.
fn drafts(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path(".rasen"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(DRAFT_PREFIX))
        .collect();
    names.sort();
    names
}

fn subtask_ids(plan: &miniserde::json::Value) -> Vec<String> {
    let subtasks = get_array(plan, "subtasks").expect("subtasks");
    subtasks.iter().map(|s| get_str(s, "id").unwrap().to_string()).collect()
}

/// The planning was redone and its plan, not the draft, was run to the end.
fn assert_planned_again_and_completed(p: &Project) {
    assert_eq!(
        session_list(p),
        [
            session("initializer", "-", "1"),
            session("initializer", "-", "1"),
            session("coder", "t1", "1"),
            session("coder", "t2", "1"),
            session("coder", "t3", "1"),
        ]
    );
    for id in ["t1", "t2", "t3"] {
        assert_eq!(subtask_status(p, id), "completed");
    }
    assert_eq!(get_str(&status(p), "status"), Some("completed"));
}

#[test]
fn stop_during_planning_sets_the_draft_aside_and_resume_plans_again() {
    let p = slow_planning_project("plan-stop");
    let pid = start_daemon(&p, &["run", "--background"]);
    wait_for_planning_under_way(&p);
    p.rasen(&["stop"]).expect_code(0);
    assert!(process_gone(pid));

    assert_eq!(p.file(PLAN_FILE), None, "the draft must not stay as the plan");
    let set_aside = drafts(&p);
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    let draft = p.json(&format!(".rasen/{}", set_aside[0]));
    assert_eq!(subtask_ids(&draft), ["t1"], "the draft is kept as it was");
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains(&set_aside[0]), "the log names where the draft went\n{log}");

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(!r.stdout.contains("Resuming task"), "{r}");
    assert_planned_again_and_completed(&p);
}

#[test]
fn kill_9_during_planning_makes_resume_set_the_draft_aside_and_plan_again() {
    let p = slow_planning_project("plan-kill");
    let pid = start_daemon(&p, &["run", "--background"]);
    wait_for_planning_under_way(&p);
    assert!(send_signal(pid, libc::SIGKILL));
    wait_until(30, "the killed daemon to be gone", || process_gone(pid));
    assert_eq!(get_str(&status(&p), "phase"), Some("Initializer"));
    assert_eq!(subtask_ids(&p.json(PLAN_FILE)), ["t1"], "kill -9 left the draft in place");

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("never finished"), "{r}");
    assert!(!r.stdout.contains("Resuming task"), "{r}");
    assert_planned_again_and_completed(&p);
    let set_aside = drafts(&p);
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(subtask_ids(&p.json(&format!(".rasen/{}", set_aside[0]))), ["t1"]);
    assert_no_agent_process_left(&p);
}

#[test]
fn stop_force_during_planning_makes_resume_set_the_draft_aside_and_plan_again() {
    let p = slow_planning_project("plan-force");
    let pid = start_daemon(&p, &["run", "--background"]);
    wait_for_planning_under_way(&p);
    p.rasen(&["stop", "--force"]).expect_code(0);
    assert!(process_gone(pid));
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("killed"), "{s:?}");
    assert_eq!(get_str(&s, "phase"), Some("Initializer"), "the planning marker stays: {s:?}");

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("never finished"), "{r}");
    assert_planned_again_and_completed(&p);
    assert_eq!(drafts(&p).len(), 1, "{:?}", drafts(&p));
    assert_no_agent_process_left(&p);
}

/// Marks status.json the way a run killed while planning leaves it.
fn mark_planning_in_progress(p: &Project) {
    let text = p.file(".rasen/status.json").unwrap();
    let marked = text.replace("\"phase\": null", "\"phase\": \"Initializer\"");
    assert_ne!(marked, text, "{text}");
    p.write(".rasen/status.json", &marked);
}

#[test]
fn unparsable_draft_of_an_interrupted_planning_is_set_aside_not_reported() {
    let mut p = project("plan-junk-draft");
    p.env("SCRIPTED_SUBTASKS", "3");
    mark_planning_in_progress(&p);
    p.write(PLAN_FILE, "{\"task_name\": \"half-writ");
    p.rasen(&["run"]).expect_code(0);

    let roles: Vec<String> = p.sessions().into_iter().map(|s| s.role).collect();
    assert_eq!(roles, ["initializer", "coder", "coder", "coder"]);
    let set_aside = drafts(&p);
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(
        p.file(&format!(".rasen/{}", set_aside[0])).as_deref(),
        Some("{\"task_name\": \"half-writ")
    );
}

#[test]
fn plan_written_by_hand_is_run_without_planning() {
    let p = project("plan-by-hand");
    p.write(
        PLAN_FILE,
        r#"{"task_name": "By hand", "subtasks": [
            {"id": "h1", "description": "Do h1", "status": "pending"}]}"#,
    );
    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Resuming task: By hand"), "{r}");
    assert_eq!(session_list(&p), [session("coder", "h1", "1")]);
    assert!(drafts(&p).is_empty());
}

#[test]
fn usage_limit_during_planning_sets_the_draft_aside() {
    let mut p = project("plan-limit");
    p.env("SCRIPTED_SUBTASKS", "3").env("SCRIPTED_PLAN", "usage-limit,valid");
    p.rasen(&["run"]).expect_code(1);
    assert_eq!(get_str(&status(&p), "reason"), Some("usage_limit"));
    assert_eq!(p.file(PLAN_FILE), None, "the draft must not stay as the plan");
    assert_eq!(drafts(&p).len(), 1);

    p.rasen(&["resume"]).expect_code(0);
    let roles: Vec<String> = p.sessions().into_iter().map(|s| s.role).collect();
    assert_eq!(roles, ["initializer", "initializer", "coder", "coder", "coder"]);
}

/// A rasen that dies between saving the plan and recording the attempt
/// (kill -9, disk full) must not have the subtask's work redone: the plan
/// says completed before the history says success. Here the agent breaks
/// attempt_history.json (a directory in its place) as it leaves, so the
/// run fails at exactly that point. (records.rs kills rasen there.)
#[test]
fn completed_subtask_is_saved_before_its_attempt_is_recorded() {
    let mut p = project("plan-before-history");
    let wrapper = p.scripted_dir().join("history-breaking-agent");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{}'\ncode=$?\n[ \"$RASEN_ROLE\" = coder ] && rm .rasen/attempt_history.json && mkdir .rasen/attempt_history.json\nexit $code\n",
            agent_script("scripted-agent").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    p.set_config("agent.command", &format!("\"{}\"", wrapper.display()))
        .env("SCRIPTED_SUBTASKS", "2");
    let r = p.rasen(&["run"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("attempt_history.json"), "{r}");

    assert_eq!(session_list(&p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(subtask_status(&p, "t1"), "completed", "t1's work would be redone");
    assert_eq!(good_commits(&p).len(), 1);
    assert_eq!(get_str(&status(&p), "reason"), Some("error"));
}

/// Sets status.json's base_commit to a commit the repository does not
/// have, as after history was rewritten and garbage-collected, or the
/// project re-cloned.
fn lose_base_commit(p: &Project) {
    let text = p.file(".rasen/status.json").unwrap();
    let base = get_str(&status(p), "base_commit").expect("a base commit after a run").to_string();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    p.write(".rasen/status.json", &text.replace(&base, missing));
}

#[test]
fn base_commit_gone_from_the_repository_is_reset_to_head_on_resume() {
    let mut p = project("base-gone");
    p.env("SCRIPTED_SUBTASKS", "3").set_config("orchestrator.max_iterations", "2");
    p.rasen(&["run"]).expect_code(1); // planned, t1 done
    lose_base_commit(&p);
    let head = p.git(&["rev-parse", "HEAD"]).trim().to_string();

    p.set_config("orchestrator.max_iterations", "10");
    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Resuming task"), "{r}");
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains("0123456789abcdef0123456789abcdef01234567"), "the log says why\n{log}");
    let s = status(&p);
    assert_eq!(get_str(&s, "status"), Some("completed"), "{r}");
    assert_eq!(get_str(&s, "base_commit"), Some(head.as_str()));
    assert_eq!(get_u64(&s, "total_commits"), Some(2), "t2 and t3, counted from the new base");
}

#[test]
fn run_that_fails_to_start_says_so_in_status() {
    let mut p = project("start-fails");
    p.env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);
    assert_eq!(get_str(&status(&p), "status"), Some("completed"));
    // The task file can no longer be read: the next run fails at its start.
    std::fs::remove_file(p.path(".rasen/task.txt")).unwrap();
    std::fs::create_dir(p.path(".rasen/task.txt")).unwrap();

    let r = p.rasen(&["run"]).expect_code(1);
    assert!(r.stderr.contains("task"), "{r}");
    let s = status(&p);
    assert_eq!(get_str(&s, "status"), Some("failed"), "not the last run's outcome: {s:?}");
    assert_eq!(get_str(&s, "reason"), Some("error"), "{s:?}");
    assert!(get_str(&s, "last_error").is_some_and(|e| e.contains("task")), "{s:?}");
    assert_eq!(p.daemon_pid(), None);

    // In the background the error reaches the terminal too: the daemon
    // reports ready only once its loop has started.
    let r = p.rasen(&["run", "--background"]).expect_code(1);
    assert!(r.stderr.contains("task"), "{r}");
    assert!(!r.stdout.contains("Daemon started"), "{r}");
    assert_eq!(p.daemon_pid(), None);
}

/// A planning session cut off by its session timeout wrote, at most, a
/// draft: it is set aside, and the next initializer session is told why
/// and plans again within the same run.
#[test]
fn planning_cut_off_by_a_timeout_is_a_draft_and_planning_goes_on() {
    let mut p = slow_planning_project("plan-timeout");
    p.set_config("orchestrator.session_timeout_seconds", "2");
    p.rasen(&["run"]).expect_code(0);
    assert_eq!(drafts(&p).len(), 1, "the timed-out draft is kept aside");
    let sessions = session_list(&p);
    assert_eq!(sessions[0], session("initializer", "-", "1"));
    assert_eq!(sessions[1], session("initializer", "-", "2"));
    let second_prompt = std::fs::read_to_string(p.scripted_dir().join("prompt-2.txt")).unwrap();
    assert!(second_prompt.contains("ended by a timeout"), "{second_prompt}");
    assert_eq!(subtask_ids(&p.json(".rasen/implementation_plan.json")), ["t1", "t2", "t3"]);
}
