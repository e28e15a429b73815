//! `rasen run` in the foreground with the scripted agent: a task run to the
//! end, what the agent receives, a missing agent, and resume after SIGTERM.
//! The stop reasons are in run_stops.rs, session ends (timeouts, floods) in
//! run_sessions.rs, claims and plans in run_claims.rs, the claude backend
//! in run_claude.rs.

use std::os::unix::fs::PermissionsExt;

use miniserde::json::Value;

use crate::harness::*;
use crate::run_support::*;

#[test]
fn three_subtasks_run_to_completed_with_one_coder_session_each() {
    let p = project("complete");
    let started = now_epoch();
    let r = p.rasen(&["run"]).expect_code(0);

    // One initializer session, then exactly one coder session per subtask.
    assert_eq!(
        session_list(&p),
        [
            session("initializer", "-", "1"),
            session("coder", "t1", "1"),
            session("coder", "t2", "1"),
            session("coder", "t3", "1"),
        ]
    );
    let iterations: Vec<String> = p.sessions().into_iter().map(|s| s.iteration).collect();
    assert_eq!(iterations, ["1", "2", "3", "4"]);

    // Three good commits, each a real commit made for its subtask, the last one HEAD.
    let good = good_commits(&p);
    let ids: Vec<&str> = good.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t3"], "{good:?}");
    for (hash, id) in &good {
        assert_eq!(p.git(&["cat-file", "-t", hash]), "commit\n", "{hash}");
        assert_eq!(p.git(&["log", "-1", "--format=%s", hash]), format!("{id}: attempt 1\n"));
    }
    assert_eq!(p.git(&["rev-parse", "HEAD"]).trim(), good[2].0);
    assert_eq!(p.git_commit_count(), 4);

    // Three successful attempts, each naming its commit.
    let attempts = attempts(&p);
    assert_eq!(outcomes(&p), [pair("t1", "success"), pair("t2", "success"), pair("t3", "success")]);
    for (attempt, (hash, _)) in attempts.iter().zip(&good) {
        assert_eq!(get_str(attempt, "role"), Some("coder"));
        assert_eq!(get_str(attempt, "commit"), Some(hash.as_str()));
        assert_eq!(get_u64(attempt, "commits_made"), Some(1));
    }
    for id in ["t1", "t2", "t3"] {
        assert_eq!(subtask_status(&p, id), "completed");
    }

    let s = status(&p);
    assert_eq!(get_str(&s, "status"), Some("completed"));
    assert_eq!(get_str(&s, "reason"), Some("completed"));
    assert_eq!(get_u64(&s, "completed_subtasks"), Some(3));
    assert_eq!(get_u64(&s, "total_subtasks"), Some(3));
    assert_eq!(get_u64(&s, "total_commits"), Some(3));
    assert_eq!(get_u64(&s, "iteration"), Some(4));
    assert!(matches!(get(&s, "pid"), Some(Value::Null)), "pid after the run: {:?}", get(&s, "pid"));
    assert!(matches!(get(&s, "last_error"), Some(Value::Null)));
    assert_eq!(p.daemon_pid(), None, "the PID file is removed at the end");

    // The log: every line stamped in UTC, one line per decision; a
    // foreground run echoes exactly the log to the terminal.
    let messages = log_messages(&p, now_epoch() - started + 2);
    let count = |prefix: &str| messages.iter().filter(|m| m.starts_with(prefix)).count();
    assert_eq!(count("plan accepted: 3 subtasks"), 1, "{messages:#?}");
    for id in ["t1", "t2", "t3"] {
        assert_eq!(count(&format!("subtask {id}: attempt 1")), 1, "{messages:#?}");
        assert_eq!(count(&format!("subtask {id}: completed")), 1, "{messages:#?}");
    }
    assert_eq!(count("run ended: "), 1, "{messages:#?}");
    assert!(messages.last().unwrap().starts_with("run ended: completed"), "{messages:#?}");
    assert_eq!(r.stdout, p.file(".rasen/rasen.log").unwrap());
}

#[test]
fn agent_gets_its_rasen_variables_and_the_prompt_on_stdin_only() {
    let mut p = project("env");
    // A wrapper records the agent's argv, then becomes the scripted agent.
    let wrapper = p.scripted_dir().join("agent-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >\"$SCRIPTED_DIR/argv-$RASEN_ITERATION\"\nexec '{}'\n",
            agent_script("scripted-agent").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.set_config("agent.command", &format!("\"{}\"", wrapper.display()))
        .set_config("agent.args", "[--extra, \"two words\"]")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "print-env");
    p.rasen(&["run"]).expect_code(0);

    let dir = std::fs::canonicalize(p.dir()).unwrap();
    let log = p.file(".rasen/rasen.log").unwrap();
    for expected in [
        "RASEN_ROLE=coder".to_string(),
        "RASEN_SUBTASK_ID=t1".to_string(),
        "RASEN_ATTEMPT=1".to_string(),
        "RASEN_ITERATION=2".to_string(),
        format!("RASEN_PROJECT_DIR={}", dir.display()),
    ] {
        let line = format!("[coder t1] {expected}\n");
        assert!(log.contains(&line), "the log lacks {line:?}:\n{log}");
    }
    let sessions = p.sessions();
    assert_eq!((sessions[0].iteration.as_str(), sessions[0].role.as_str()), ("1", "initializer"));

    // The prompt came on stdin; the command line holds only the configured args.
    for iteration in [1, 2] {
        let argv = std::fs::read_to_string(p.scripted_dir().join(format!("argv-{iteration}")));
        assert_eq!(argv.unwrap(), "--extra\ntwo words\n", "argv of session {iteration}");
    }
    let initializer = prompt(&p, 1);
    assert!(initializer.contains(TASK), "{initializer}");
    let coder = prompt(&p, 2);
    for expected in [TASK, "t1", "Do step 1", "attempt 1", "work/t1.txt exists"] {
        assert!(coder.contains(expected), "the coder prompt lacks {expected:?}:\n{coder}");
    }
}

#[test]
fn missing_agent_binary_is_reported_once_before_any_session() {
    let mut p = project("no-agent");
    p.set_config("agent.command", "no-such-agent-xyz-42");
    let r = p.rasen(&["run"]).expect_code(2);

    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r}");
    assert!(lines[0].starts_with("rasen: error: "), "{r}");
    assert!(lines[0].contains("no-such-agent-xyz-42") && lines[0].contains("agent.command"), "{r}");
    assert_eq!(r.stdout, "", "{r}");
    assert!(p.sessions().is_empty());
    assert_eq!(get_str(&status(&p), "status"), Some("initialized"));
    assert_eq!(p.file(".rasen/implementation_plan.json"), None);
    assert_eq!(p.daemon_pid(), None);
}

#[test]
fn resume_after_sigterm_finishes_without_redoing_completed_subtasks() {
    let mut p = project("resume");
    p.env("SCRIPTED_CODER_t2", "hang,done");
    let run = p.spawn(&["run"]);
    let hung = wait_for_hang(&p, "t2");
    run.signal(libc::SIGTERM);
    run.wait(30).expect_code(143);
    assert!(process_group_gone(hung));
    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_eq!(subtask_status(&p, "t2"), "in_progress");

    let r = p.rasen(&["resume"]).expect_code(0);
    for expected in
        ["Resuming task: Scripted task", "Progress: 1/3 subtasks completed", "Last working on: t2"]
    {
        assert!(r.stdout.contains(expected), "resume does not say {expected:?}\n{r}");
    }
    assert_eq!(
        session_list(&p),
        [
            session("initializer", "-", "1"),
            session("coder", "t1", "1"),
            session("coder", "t2", "1"),
            session("coder", "t2", "2"),
            session("coder", "t3", "1"),
        ]
    );
    // The iteration count goes on across the restart.
    let iterations: Vec<String> = p.sessions().into_iter().map(|s| s.iteration).collect();
    assert_eq!(iterations, ["1", "2", "3", "4", "5"]);
    assert_eq!(
        outcomes(&p),
        [
            pair("t1", "success"),
            pair("t2", "interrupted"),
            pair("t2", "success"),
            pair("t3", "success")
        ]
    );
    let good: Vec<String> = good_commits(&p).into_iter().map(|(_, id)| id).collect();
    assert_eq!(good, ["t1", "t2", "t3"]);
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("completed"));
    assert_eq!(get_u64(&s, "completed_subtasks"), Some(3));
    assert_eq!(get_u64(&s, "iteration"), Some(5));
    assert_no_agent_process_left(&p);
}

#[test]
fn iso_to_epoch_reads_utc_timestamps() {
    assert_eq!(iso_to_epoch("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(iso_to_epoch("2025-07-25T11:00:00Z"), Some(1753441200));
    assert_eq!(iso_to_epoch("2024-02-29T23:59:59Z"), Some(1709251199));
    assert_eq!(iso_to_epoch("2024-02-29 23:59:59"), None);
    assert_eq!(iso_to_epoch("[coder"), None);
}
