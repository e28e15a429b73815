//! Edges a careful user runs into: a start that fails half-way, a PID file
//! with garbage in it, a runtime file deleted by hand.

use crate::harness::*;

fn initialized(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", "Anything"]).expect_code(0);
    p
}

/// A foreground run that cannot open its log fails at once and leaves no
/// PID file behind to make the next `status` report a crash.
#[test]
fn a_run_that_fails_to_start_leaves_no_pid_file() {
    let p = initialized("edge-failed-start");
    std::fs::create_dir(p.path(".rasen/rasen.log")).unwrap();
    let r = p.rasen(&["run"]).expect_code(1);
    assert!(r.stderr.contains("rasen.log"), "{r}");
    assert_eq!(p.file(".rasen/rasen.pid"), None, "{r}");
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: initialized"), "{r}");
    assert!(p.sessions().is_empty());
}

/// A PID file that holds no number is still a stale PID file: status says
/// so (exit 1) and stop removes it.
#[test]
fn a_garbage_pid_file_is_stale_and_stop_removes_it() {
    let p = initialized("edge-garbage-pid");
    p.write(".rasen/rasen.pid", "garbage\n");
    let r = p.rasen(&["status"]).expect_code(1);
    assert!(r.stdout.contains("stale PID file"), "{r}");
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("removed stale PID file"), "{r}");
    assert_eq!(p.file(".rasen/rasen.pid"), None);
    p.rasen(&["status"]).expect_code(3);
}

/// status.json is a runtime file: without it, a project with a task is
/// initialized, not "not initialized" (whose hint, `rasen init`, would be
/// refused).
#[test]
fn a_deleted_status_file_does_not_hide_the_task() {
    let p = initialized("edge-no-status");
    std::fs::remove_file(p.path(".rasen/status.json")).unwrap();
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: initialized"), "{r}");
    p.rasen(&["run"]).expect_code(0);
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: completed"), "{r}");
}

/// Output into a closed pipe never aborts a command half-way: `rasen stop`
/// whose reader is already gone still stops the daemon, exit 0.
#[test]
fn stop_into_a_closed_pipe_still_stops_the_daemon() {
    let mut p = initialized("edge-stop-pipe");
    p.env("SCRIPTED_CODER", "slow:600");
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    let mut cmd = p.command("sh");
    // The reader (`true`) is gone before rasen prints a word.
    cmd.args(["-c", "exec 3>&1; { sleep 0.2; \"$RASEN\" stop; echo \"rc=$?\" >&3; } | true"]);
    cmd.env("RASEN", env!("CARGO_BIN_EXE_rasen"));
    let r = Spawned::start(cmd, "rasen stop | true").wait(DEFAULT_DEADLINE_SECS);
    assert!(r.stdout.contains("rc=0"), "{r}");
    assert!(!r.stderr.contains("panicked"), "{r}");
    wait_until(20, "the daemon to be gone", || process_gone(daemon));
    assert_eq!(p.file(".rasen/rasen.pid"), None);
}

/// `git clean -fX` deletes every ignored file under .rasen/ (all but its
/// .gitignore: PID file, status.json, lock files, the task) while a daemon
/// runs. The run lock is on the directory, so rasen still sees the daemon:
/// status names it, a second start is refused, stop stops it.
#[test]
fn git_clean_does_not_make_a_running_daemon_invisible() {
    let mut p = initialized("edge-git-clean");
    p.env("SCRIPTED_CODER", "slow:600");
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    wait_until(20, "the coder session to start", || p.sessions().iter().any(|s| s.role == "coder"));
    p.git(&["clean", "-fqX"]);
    assert_eq!(p.file(".rasen/rasen.pid"), None, "git clean removed the PID file");

    let r = p.rasen(&["status"]).expect_code(0);
    assert!(r.stdout.contains("Status: running"), "{r}");
    assert!(r.stdout.contains(&format!("PID: {daemon}")), "{r}");
    let r = p.rasen(&["run", "--background"]).expect_code(1);
    assert!(r.stderr.contains(&format!("already running with PID {daemon}")), "{r}");
    // The daemon notices: it writes its PID file again, and its log lines
    // go to a new log file instead of the deleted one.
    wait_until(20, "the PID file to be written again", || p.daemon_pid() == Some(daemon));
    wait_until(20, "the log to be written again", || {
        p.file(".rasen/rasen.log").is_some_and(|log| log.contains("slow work on t1"))
    });
    // What it holds in memory comes back too: the task, and the plan it
    // rewrites at its next step; so `resume` finds the task after a stop.
    wait_until(20, "task.txt to be written again", || p.file(".rasen/task.txt").is_some());
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("Daemon stopped successfully"), "{r}");
    assert!(process_gone(daemon));
    assert!(p.file(".rasen/implementation_plan.json").is_some(), "the plan is saved at the stop");
    p.rasen(&["resume", "--background"]).expect_code(0);
    p.rasen(&["stop"]).expect_code(0);
}

/// A process of the agent that moves to a process group of its own (GNU
/// `timeout` does, for `timeout 300 npm test`) is still in the agent's
/// session, and is stopped with it when the session ends.
#[test]
fn agent_processes_in_another_process_group_do_not_outlive_the_session() {
    let mut p = initialized("edge-timeout-child");
    let agent = p.scripted_dir().join("agent-with-timeout");
    std::fs::write(
        &agent,
        "#!/bin/sh\n\
         cat >/dev/null\n\
         echo $$ >> \"$SCRIPTED_DIR/pids\"\n\
         timeout 120 sh -c 'echo $$ >> \"$SCRIPTED_DIR/pids\"; exec sleep 100' &\n\
         while [ \"$(wc -l < \"$SCRIPTED_DIR/pids\")\" -lt 2 ]; do sleep 0.05; done\n\
         echo started a test runner\n\
         exit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.set_config("agent.command", &format!("\"{}\"", agent.display()));
    p.set_config("stall_detection.max_consecutive_failures", "1");
    p.write(
        ".rasen/implementation_plan.json",
        r#"{"task_name": "t", "subtasks": [{"id": "a", "description": "do a", "status": "pending"}]}"#,
    );
    p.rasen(&["run"]).expect_code(1);
    let pids = p.agent_pids();
    assert_eq!(pids.len(), 2, "the agent and the process under timeout: {pids:?}");
    for pid in pids {
        assert!(process_gone(pid), "process {pid} outlived the session");
    }
}

/// Files the caller left open (fd 3 and up) reach neither the agent nor,
/// for a daemon, the daemon itself.
#[test]
fn inherited_descriptors_reach_neither_the_daemon_nor_the_agent() {
    let mut p = initialized("edge-fds");
    p.env("SCRIPTED_CODER", "slow:600");
    let leak = p.scripted_dir().join("leak");
    let mut cmd = p.command("sh");
    cmd.args(["-c", "exec 7>\"$LEAK\"; exec \"$RASEN\" run --background"]);
    cmd.env("RASEN", env!("CARGO_BIN_EXE_rasen")).env("LEAK", &leak);
    Spawned::start(cmd, "rasen run --background with fd 7 open")
        .wait(DEFAULT_DEADLINE_SECS)
        .expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    wait_until(20, "the coder session to start", || p.sessions().iter().any(|s| s.role == "coder"));
    let agent = p.sessions().iter().rev().find(|s| s.role == "coder").map(|s| s.pid).unwrap();
    for pid in [daemon, agent] {
        let holds_leak = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|target| target == leak);
        assert!(!holds_leak, "process {pid} holds the caller's fd 7");
    }
    p.rasen(&["stop"]).expect_code(0);
}

/// A verify command rasen runs after a "done" claim is watched like an
/// agent: status shows it (phase, PID), and `stop --force` kills it too.
#[test]
fn stop_force_kills_a_running_verify_command() {
    let mut p = initialized("edge-verify-force");
    // Recorded in SCRIPTED_DIR/pids too, with the agents' own, so that the
    // project's cleanup kills it should the test fail before `stop --force`.
    let command = r#"echo $$ >> "$SCRIPTED_DIR/verify-pid"; echo $$ >> "$SCRIPTED_DIR/pids""#;
    p.set_config("backpressure.verify", &format!("['{command}; exec sleep 300']"));
    p.rasen(&["run", "--background"]).expect_code(0);
    let pid_file = p.scripted_dir().join("verify-pid");
    wait_until(20, "the verify command to start", || pid_file.exists());
    let verify: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    wait_until(20, "status.json to show the verify command", || {
        let s = p.json(".rasen/status.json");
        get_str(&s, "phase").is_some_and(|ph| ph.starts_with("Verify: "))
            && get_u64(&s, "agent_pid") == Some(verify as u64)
    });
    p.rasen(&["stop", "--force"]).expect_code(0);
    wait_until(10, "the verify command to be gone", || process_gone(verify));
}

/// Command-line flags are the last layer of configuration: with review and
/// QA enabled in rasen.yml the log says once that this version has no such
/// loops; `--skip-review --skip-qa` turn them off, and the note with them.
#[test]
fn skip_flags_override_the_configuration() {
    const NOTE: &str = "review and QA loops are not available in this version";
    let mut p = initialized("edge-skip-flags");
    p.set_config("review.enabled", "true").set_config("qa.enabled", "true");
    p.rasen(&["run"]).expect_code(0);
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert_eq!(log.matches(NOTE).count(), 1, "{log}");

    let mut p = initialized("edge-skip-flags-2");
    p.set_config("review.enabled", "true").set_config("qa.enabled", "true");
    p.rasen(&["run", "--skip-review", "--skip-qa"]).expect_code(0);
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(!log.contains(NOTE), "{log}");
    assert!(log.contains("run ended: completed"), "{log}");
}
