//! Edges a careful user runs into: a start that fails half-way, a PID file
//! with garbage in it, a runtime file deleted by hand.

#[allow(dead_code)]
mod common;
use common::*;

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
