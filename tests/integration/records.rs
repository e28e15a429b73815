//! A record for every session that started: the attempt is written to
//! attempt_history.json as `running` before the agent starts and finished
//! after it; a run killed in between leaves it `running`, and the next
//! start makes it `interrupted` (visible in the next prompt). At every
//! start the plan, the history and the good commits are reconciled (the
//! plan wins), iterations never go back, and temp files of dead writers
//! are removed.

use std::process::Command;

use crate::harness::*;
use crate::run_support::*;

/// Every attempt in attempt_history.json, initializer sessions included:
/// (session, role, subtask_id, outcome).
fn all_records(p: &Project) -> Vec<(u64, String, String, String)> {
    let history = p.json(".rasen/attempt_history.json");
    let attempts = get_array(&history, "attempts").expect("attempts is an array");
    attempts
        .iter()
        .map(|a| {
            let text = |k: &str| get_str(a, k).unwrap_or_else(|| panic!("no {k} in {a:?}"));
            let session = get_u64(a, "session").expect("session");
            (session, text("role").into(), text("subtask_id").into(), text("outcome").into())
        })
        .collect()
}

fn record(session: u64, role: &str, subtask: &str, outcome: &str) -> (u64, String, String, String) {
    (session, role.into(), subtask.into(), outcome.into())
}

/// The attempts of `subtask` that say `outcome`.
fn attempts_with(p: &Project, subtask: &str, outcome: &str) -> Vec<miniserde::json::Value> {
    let history = p.json(".rasen/attempt_history.json");
    let attempts = get_array(&history, "attempts").expect("attempts is an array");
    attempts
        .iter()
        .filter(|a| get_str(a, "subtask_id") == Some(subtask))
        .filter(|a| get_str(a, "outcome") == Some(outcome))
        .cloned()
        .collect()
}

/// `rasen ARGS` with RASEN_FAULT set for this command only.
fn rasen_with_fault(p: &Project, fault: &str, args: &[&str]) -> RunResult {
    let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
    cmd.args(args).env("RASEN_FAULT", fault);
    Spawned::start(cmd, &format!("RASEN_FAULT={fault} rasen {}", args.join(" ")))
        .wait(DEFAULT_DEADLINE_SECS)
}

/// The hash of the one commit whose subject starts with `prefix`.
fn commit_of(p: &Project, prefix: &str) -> String {
    let hashes = p.git(&["log", "--format=%H", "--grep", &format!("^{prefix}")]);
    let hashes: Vec<&str> = hashes.lines().collect();
    assert_eq!(hashes.len(), 1, "commits for {prefix:?}: {hashes:?}");
    hashes[0].to_string()
}

/// The last subtask completed, then the kill: `resume` starts no run
/// (nothing is left to do), but still repairs what the killed run left.
#[test]
fn resume_of_a_task_completed_just_before_a_kill_still_completes_the_records() {
    let mut p = project("records-completed-killed");
    p.env("SCRIPTED_SUBTASKS", "1");
    let r = rasen_with_fault(&p, "after-plan-save", &["run"]);
    assert_eq!(r.code, 128 + libc::SIGKILL, "the run must die at the fault point\n{r}");
    assert!(good_commits(&p).is_empty(), "the good commit comes after the plan");

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("already completed"), "{r}");
    assert_eq!(session_list(&p).len(), 2, "no session is started\n{r}");
    assert_eq!(
        all_records(&p),
        [record(1, "initializer", "", "success"), record(2, "coder", "t1", "success")]
    );
    assert_eq!(good_commits(&p), [(commit_of(&p, "t1: "), "t1".to_string())]);
    assert!(!p.path(".rasen/.disk-reserve.tmp.rasen").exists(), "the killed run's reserve stays");
    assert_eq!(get_str(&status(&p), "reason"), Some("completed"));
}

#[test]
fn killed_between_plan_save_and_history_save_resume_completes_the_records() {
    let mut p = project("records-plan-saved");
    p.env("SCRIPTED_SUBTASKS", "2");
    let r = rasen_with_fault(&p, "after-plan-save", &["run"]);
    assert_eq!(r.code, 128 + libc::SIGKILL, "the run must die at the fault point\n{r}");
    assert_eq!(subtask_status(&p, "t1"), "completed", "the plan was saved first");
    assert!(good_commits(&p).is_empty(), "the good commit comes after the plan");
    assert_eq!(
        all_records(&p),
        [record(1, "initializer", "", "success"), record(2, "coder", "t1", "running")]
    );

    let r = p.rasen(&["resume"]).expect_code(0);
    assert_eq!(
        session_list(&p),
        [
            session("initializer", "-", "1"),
            session("coder", "t1", "1"),
            session("coder", "t2", "1")
        ],
        "t1 must not be redone\n{r}"
    );
    assert_eq!(
        all_records(&p),
        [
            record(1, "initializer", "", "success"),
            record(2, "coder", "t1", "success"),
            record(3, "coder", "t2", "success"),
        ]
    );
    let t1 = commit_of(&p, "t1: ");
    let success = &attempts_with(&p, "t1", "success")[0];
    assert_eq!(get_str(success, "commit"), Some(t1.as_str()));
    assert_eq!(get_u64(success, "commits_made"), Some(1));
    assert!(get_str(success, "reason").is_some_and(|r| r.contains("plan")), "{success:?}");
    let good = good_commits(&p);
    assert_eq!(good, [(t1, "t1".to_string()), (commit_of(&p, "t2: "), "t2".to_string())]);
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains("t1 is completed in the plan"), "the log says what was repaired\n{log}");
}

#[test]
fn killed_after_the_good_commit_resume_records_only_the_attempt() {
    let mut p = project("records-good-saved");
    p.env("SCRIPTED_SUBTASKS", "2");
    let r = rasen_with_fault(&p, "after-good-commit", &["run"]);
    assert_eq!(r.code, 128 + libc::SIGKILL, "{r}");
    assert_eq!(good_commits(&p).len(), 1);

    p.rasen(&["resume"]).expect_code(0);
    assert_eq!(session_list(&p).len(), 3, "t1 is not redone");
    let ids: Vec<String> = good_commits(&p).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["t1", "t2"], "no second good commit for t1");
    assert_eq!(outcomes(&p), [pair("t1", "success"), pair("t2", "success")]);
}

/// A plan that says completed wins over records that say nothing (a run
/// killed by an older rasen, a history edited or restored by hand).
#[test]
fn completed_subtask_without_any_record_gets_them_at_start() {
    let mut p = project("records-missing");
    p.env("SCRIPTED_SUBTASKS", "2").set_config("orchestrator.max_iterations", "2");
    p.rasen(&["run"]).expect_code(1); // planned, t1 completed
    let t1 = commit_of(&p, "t1: ");
    p.write(".rasen/attempt_history.json", "{\"version\": 1, \"attempts\": []}\n");
    p.write(".rasen/good_commits.json", "{\"version\": 1, \"commits\": []}\n");

    p.set_config("orchestrator.max_iterations", "10");
    p.rasen(&["resume"]).expect_code(0);
    assert_eq!(session_list(&p).len(), 3, "t1 is not redone");
    let success = attempts_with(&p, "t1", "success");
    assert_eq!(success.len(), 1, "{success:?}");
    assert_eq!(get_str(&success[0], "commit"), Some(t1.as_str()), "HEAD when it was recorded");
    let ids: Vec<String> = good_commits(&p).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["t1", "t2"]);
    assert_eq!(good_commits(&p)[0].0, t1);
}

#[test]
fn session_killed_mid_flight_is_interrupted_in_the_history_and_the_next_prompt() {
    let mut p = project("records-mid-flight");
    p.env("SCRIPTED_SUBTASKS", "1").env("SCRIPTED_CODER_t1", "hang,done");
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    let agent = wait_for_hang(&p, "t1");
    // Recorded before the agent started.
    assert_eq!(
        all_records(&p),
        [record(1, "initializer", "", "success"), record(2, "coder", "t1", "running")]
    );
    assert!(send_signal(daemon, libc::SIGKILL));
    wait_until(30, "the killed daemon to be gone", || process_gone(daemon));

    p.rasen(&["resume"]).expect_code(0);
    assert!(process_gone(agent), "resume stops the orphaned agent");
    assert_eq!(
        all_records(&p),
        [
            record(1, "initializer", "", "success"),
            record(2, "coder", "t1", "interrupted"),
            record(3, "coder", "t1", "success"),
        ]
    );
    let interrupted = &attempts_with(&p, "t1", "interrupted")[0];
    let reason = get_str(interrupted, "reason").unwrap_or_default().to_string();
    assert!(reason.contains("killed"), "{reason}");
    let next = prompt(&p, 3);
    assert!(next.contains("session 2 (interrupted)"), "{next}");
    assert!(!next.contains("first attempt"), "{next}");
    assert_no_agent_process_left(&p);
}

#[test]
fn iterations_never_go_back_when_status_json_is_removed() {
    let mut p = project("records-iterations");
    p.env("SCRIPTED_SUBTASKS", "3").set_config("orchestrator.max_iterations", "2");
    p.rasen(&["run"]).expect_code(1); // the initializer, then t1
    assert_eq!(get_u64(&status(&p), "iteration"), Some(2));
    std::fs::remove_file(p.path(".rasen/status.json")).unwrap();

    p.set_config("orchestrator.max_iterations", "10");
    p.rasen(&["resume"]).expect_code(0);
    let iterations: Vec<String> = p.sessions().into_iter().map(|s| s.iteration).collect();
    assert_eq!(iterations, ["1", "2", "3", "4"], "no session number is used twice");
    assert_eq!(get_u64(&status(&p), "iteration"), Some(4));
    let sessions: Vec<u64> = all_records(&p).into_iter().map(|r| r.0).collect();
    assert_eq!(sessions, [1, 2, 3, 4]);
}

/// `.NAME.tmp.PID.N` is what rasen's atomic writes leave when killed.
#[test]
fn stale_temp_files_are_removed_at_start_and_a_live_writers_are_kept() {
    let mut p = project("records-temp-files");
    p.env("SCRIPTED_SUBTASKS", "1");
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let other = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    let live_rasen = p.spawn(&["logs", "-f"]);
    wait_until(20, "`rasen logs -f` to run", || {
        std::fs::read_to_string(format!("/proc/{}/comm", live_rasen.pid()))
            .is_ok_and(|c| c.trim() == "rasen")
    });
    let stale = [
        format!(".status.json.tmp.{dead}.0"),
        format!(".attempt_history.json.tmp.{}.3", other.0.id()),
    ];
    let kept = [
        format!(".implementation_plan.json.tmp.{}.1", live_rasen.pid()),
        ".notes.tmp.txt".to_string(),
        format!("status.json.tmp.{dead}.0"),
        format!(".status.json.tmp.{dead}.x"),
    ];
    for name in stale.iter().chain(&kept) {
        p.write(&format!(".rasen/{name}"), "{\"half\": ");
    }

    p.rasen(&["run"]).expect_code(0);
    for name in &stale {
        assert!(!p.path(&format!(".rasen/{name}")).exists(), "{name} is left");
    }
    for name in &kept {
        assert!(p.path(&format!(".rasen/{name}")).exists(), "{name} was removed");
    }
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains(&stale[0]), "the log names what was removed\n{log}");
}

/// The commits of a session whose run was killed count for its subtask:
/// the next session's "done" needs no new commit of its own.
#[test]
fn commits_of_a_session_killed_mid_flight_count_for_the_next_done_claim() {
    let mut p = project("records-killed-commits");
    p.env("SCRIPTED_SUBTASKS", "1").env("SCRIPTED_CODER_t1", "slow:600,done-no-commit");
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    wait_for_log(&p, "slow work on t1: 1 s"); // it has committed
    assert!(send_signal(daemon, libc::SIGKILL));
    wait_until(30, "the killed daemon to be gone", || process_gone(daemon));

    p.rasen(&["resume"]).expect_code(0);
    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_eq!(outcomes(&p), [pair("t1", "interrupted"), pair("t1", "success")]);
    let interrupted = &attempts_with(&p, "t1", "interrupted")[0];
    assert_eq!(get_u64(interrupted, "commits_made"), Some(1), "{interrupted:?}");
    assert_no_agent_process_left(&p);
}

/// Initializer sessions are in the history too, with no subtask: `resume`
/// does not name one as the last subtask worked on.
#[test]
fn resume_after_planning_alone_names_no_subtask_as_last_worked_on() {
    let mut p = project("records-planning-only");
    p.set_config("orchestrator.max_iterations", "1");
    p.rasen(&["run"]).expect_code(1);
    assert_eq!(all_records(&p), [record(1, "initializer", "", "success")]);
    let plan = attempts_with(&p, "", "success");
    assert!(get_str(&plan[0], "approach").is_some_and(|a| a.contains("3 subtasks")), "{plan:?}");

    let r = p.rasen(&["resume"]).expect_code(1);
    assert!(r.stdout.contains("Progress: 0/3"), "{r}");
    assert!(!r.stdout.contains("Last working on"), "{r}");
}

/// Killed after the plan was accepted but before planning was recorded as
/// over: the plan counts as a draft (status.json still says planning), and
/// the initializer's record says it was interrupted.
#[test]
fn killed_after_the_plan_was_accepted_the_planning_is_interrupted_and_redone() {
    let mut p = project("records-plan-accepted");
    p.env("SCRIPTED_SUBTASKS", "1");
    let r = rasen_with_fault(&p, "after-plan-accepted", &["run"]);
    assert_eq!(r.code, 128 + libc::SIGKILL, "{r}");
    assert_eq!(all_records(&p), [record(1, "initializer", "", "running")]);

    p.rasen(&["resume"]).expect_code(0);
    assert_eq!(
        all_records(&p),
        [
            record(1, "initializer", "", "interrupted"),
            record(2, "initializer", "", "success"),
            record(3, "coder", "t1", "success"),
        ]
    );
}
