//! Every way a foreground `rasen run` stops, each by its own scenario: the
//! reason in status.json, the exit code, and what is left behind.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::run_support::*;

/// Asserts how the run ended in status.json: its state and reason.
fn assert_ended(p: &Project, state: &str, reason: &str) {
    let s = status(p);
    assert_eq!(get_str(&s, "status"), Some(state), "status.json: {s:?}");
    assert_eq!(get_str(&s, "reason"), Some(reason), "status.json: {s:?}");
    assert_eq!(p.daemon_pid(), None, "the PID file is removed when the run ends");
}

/// The messages of the log that say how the run ended.
fn run_ended_lines(p: &Project) -> Vec<String> {
    log_messages(p, 120).into_iter().filter(|m| m.starts_with("run ended: ")).collect()
}

#[test]
fn max_iterations_stops_the_run_with_exit_1() {
    let mut p = project("max-iterations");
    p.set_config("orchestrator.max_iterations", "2");
    p.rasen(&["run"]).expect_code(1);

    assert_ended(&p, "failed", "max_iterations");
    assert_eq!(session_list(&p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(get_u64(&status(&p), "iteration"), Some(2));
    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_eq!(subtask_status(&p, "t2"), "pending");
    assert_eq!(run_ended_lines(&p).len(), 1);
    assert!(run_ended_lines(&p)[0].starts_with("run ended: max_iterations"));
}

#[test]
fn max_runtime_cuts_a_slow_session_and_stops_with_exit_1() {
    let mut p = project("max-runtime");
    p.set_config("orchestrator.max_runtime_seconds", "2")
        .set_config("agent.stop_grace_seconds", "1")
        .env("SCRIPTED_CODER", "slow:120");
    let started = Instant::now();
    p.rasen(&["run"]).expect_code(1);
    let took = started.elapsed();

    assert!(took < Duration::from_secs(20), "the 2 s runtime limit took {took:?}");
    assert_ended(&p, "failed", "max_runtime");
    assert_eq!(session_list(&p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(outcomes(&p), [pair("t1", "timeout")]);
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_no_agent_process_left(&p);
}

#[test]
fn sessions_without_commits_stop_the_run_as_stalled() {
    let mut p = project("stalled");
    p.set_config("stall_detection.max_no_commit_sessions", "3")
        .set_config("stall_detection.max_consecutive_failures", "10")
        .env("SCRIPTED_CODER", "no-commit");
    p.rasen(&["run"]).expect_code(1);

    assert_ended(&p, "failed", "stalled");
    let coders: Vec<_> = session_list(&p).into_iter().filter(|s| s.0 == "coder").collect();
    assert_eq!(
        coders,
        [session("coder", "t1", "1"), session("coder", "t1", "2"), session("coder", "t1", "3")]
    );
    assert_eq!(outcomes(&p), [pair("t1", "failure"), pair("t1", "failure"), pair("t1", "failure")]);
    for attempt in attempts(&p) {
        assert_eq!(get_u64(&attempt, "commits_made"), Some(0));
        let reason = get_str(&attempt, "reason").unwrap();
        assert!(reason.contains("Looked around, changed nothing."), "{reason}");
    }
    assert_eq!(p.git_commit_count(), 1);
}

#[test]
fn failing_sessions_stop_the_run_as_consecutive_failures() {
    let mut p = project("failures");
    p.set_config("stall_detection.max_no_commit_sessions", "10")
        .set_config("stall_detection.max_consecutive_failures", "2")
        .env("SCRIPTED_CODER", "fail");
    p.rasen(&["run"]).expect_code(1);

    assert_ended(&p, "failed", "consecutive_failures");
    assert_eq!(outcomes(&p), [pair("t1", "failure"), pair("t1", "failure")]);
    let reason = get_str(&attempts(&p)[0], "reason").unwrap().to_string();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("simulated crash in t1"), "the agent's stderr tail: {reason}");
    assert!(get_str(&status(&p), "last_error").is_some_and(|e| e.contains("t1")));
}

#[test]
fn blocked_subtask_is_failed_and_its_dependent_leaves_the_run_blocked() {
    let mut p = project("blocked");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER_t1", "blocked");
    p.rasen(&["run"]).expect_code(1);

    assert_ended(&p, "failed", "blocked");
    assert_eq!(subtask_status(&p, "t1"), "failed");
    assert_eq!(subtask_status(&p, "t2"), "pending");
    assert_eq!(session_list(&p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(outcomes(&p), [pair("t1", "blocked")]);
    let reason = get_str(&attempts(&p)[0], "reason").unwrap().to_string();
    assert!(reason.contains("needs credentials"), "{reason}");
}

#[test]
fn usage_limit_ends_the_run_with_the_reset_time_in_status() {
    let mut p = project("usage-limit");
    p.env("SCRIPTED_CODER", "usage-limit:7200");
    let before = now_epoch();
    p.rasen(&["run"]).expect_code(1);
    let after = now_epoch();

    assert_usage_limit_resets_after(&p, 7200, before, after);
    assert_eq!(outcomes(&p), [pair("t1", "usage_limit")]);
    // Not the subtask's fault: it is neither failed nor counted as done.
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(p.sessions().len(), 2, "no session after the limit");
    assert!(run_ended_lines(&p)[0].starts_with("run ended: usage_limit"));
}

/// A foreground run stopped by `signal` while its agent hangs in a session.
fn stop_by_signal(name: &str, signal: i32, code: i32) {
    let mut p = project(name);
    p.set_config("agent.stop_grace_seconds", "1").env("SCRIPTED_CODER", "hang");
    let run = p.spawn(&["run"]);
    let agent = wait_for_hang(&p, "t1");
    wait_until(10, "the PID file", || p.daemon_pid() == Some(run.pid()));
    // While it runs, status.json names the orchestrator and its agent.
    let s = status(&p);
    assert_eq!(get_str(&s, "status"), Some("running"), "{s:?}");
    assert_eq!(get_u64(&s, "pid"), Some(run.pid() as u64), "{s:?}");
    assert_eq!(get_u64(&s, "agent_pid"), Some(agent as u64), "{s:?}");
    assert_eq!(get_str(&s, "subtask_id"), Some("t1"), "{s:?}");
    let started = Instant::now();
    run.signal(signal);
    run.wait(30).expect_code(code);
    assert!(started.elapsed() < Duration::from_secs(15), "stopping took {:?}", started.elapsed());

    assert_ended(&p, "stopped", "stopped");
    assert_eq!(subtask_status(&p, "t1"), "in_progress");
    assert_eq!(outcomes(&p), [pair("t1", "interrupted")]);
    assert!(process_group_gone(agent));
    assert_no_agent_process_left(&p);
}

#[test]
fn ctrl_c_stops_a_foreground_run_with_exit_130() {
    stop_by_signal("sigint", libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_a_foreground_run_with_exit_143() {
    stop_by_signal("sigterm", libc::SIGTERM, 143);
}

#[test]
fn initializer_writing_junk_twice_ends_the_run_with_an_error() {
    let mut p = project("junk-plan");
    p.env("SCRIPTED_PLAN", "junk");
    let r = p.rasen(&["run"]).expect_code(2);

    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("rasen: error: ")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].contains("implementation_plan.json"), "{r}");
    assert_ended(&p, "failed", "error");
    assert!(get_str(&status(&p), "last_error").is_some_and(|e| e.contains("plan")));
    assert_eq!(
        session_list(&p),
        [session("initializer", "-", "1"), session("initializer", "-", "2")]
    );
    assert_eq!(p.file(".rasen/implementation_plan.json").as_deref(), Some("this is { not JSON\n"));
}

#[test]
fn sigterm_during_the_pause_between_sessions_stops_at_once() {
    let mut p = project("sigterm-pause");
    p.set_config("orchestrator.session_delay_seconds", "600").env("SCRIPTED_SUBTASKS", "2");
    let run = p.spawn(&["run"]);
    wait_for_log(&p, "subtask t1: completed");
    let started = Instant::now();
    run.signal(libc::SIGTERM);
    run.wait(30).expect_code(143);
    assert!(started.elapsed() < Duration::from_secs(15), "stopping took {:?}", started.elapsed());

    assert_ended(&p, "stopped", "stopped");
    assert_eq!(session_list(&p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(outcomes(&p), [pair("t1", "success")]);
    assert_eq!(subtask_status(&p, "t2"), "pending");
}

/// True once no `signal` is pending for `pid`: its handler has run.
fn signal_delivered(pid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return true };
    let pending = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_default();
        u64::from_str_radix(line[key.len()..].trim(), 16).unwrap_or(0)
    };
    let bit = 1u64 << (signal - 1);
    (pending("ShdPnd:") | pending("SigPnd:")) & bit == 0
}

#[test]
fn second_ctrl_c_skips_the_grace_for_an_agent_that_ignores_sigterm() {
    let mut p = project("second-ctrl-c");
    // A coder that ignores SIGTERM, and its children with it.
    let wrapper = p.scripted_dir().join("stubborn-agent");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$RASEN_ROLE\" = coder ] && trap '' TERM\nexec '{}'\n",
            agent_script("scripted-agent").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    p.set_config("agent.command", &format!("\"{}\"", wrapper.display()))
        .set_config("agent.stop_grace_seconds", "120")
        .env("SCRIPTED_CODER", "hang");
    let run = p.spawn(&["run"]);
    let agent = wait_for_hang(&p, "t1");
    let started = Instant::now();
    run.signal(libc::SIGINT);
    wait_until(10, "the first SIGINT to be handled", || signal_delivered(run.pid(), libc::SIGINT));
    assert!(!process_group_gone(agent), "the agent ignores SIGTERM: it should still run");
    run.signal(libc::SIGINT);
    run.wait(30).expect_code(130);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "the second Ctrl-C waited out the grace: {took:?}");

    assert_ended(&p, "stopped", "stopped");
    assert_eq!(outcomes(&p), [pair("t1", "interrupted")]);
    assert_no_agent_process_left(&p);
}

/// max_runtime running out between the check before a session and its
/// start (here: the coder's prompt template is a FIFO that rasen blocks
/// on) ends the run then, instead of starting a session with no time
/// left, which the agent module would take for "no time limit".
#[test]
fn max_runtime_running_out_just_before_a_session_ends_the_run_without_it() {
    let mut p = project("max-runtime-at-start");
    p.set_config("orchestrator.max_runtime_seconds", "2")
        .set_config("orchestrator.idle_timeout_seconds", "600")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "hang");
    std::fs::create_dir_all(p.path(".rasen/prompts")).unwrap();
    let fifo = p.path(".rasen/prompts/coder.md");
    let r = p.command("mkfifo").arg(&fifo).output().unwrap();
    assert!(r.status.success(), "mkfifo: {r:?}");
    let began = Instant::now();
    let run = p.spawn(&["run"]);
    wait_for_log(&p, "subtask t1: attempt 1");
    // The run started after `began`: once 4 s have passed since then, its
    // 2 s are over while it waits for the template.
    wait_until(10, "the run's 2 s of runtime to be over", || {
        began.elapsed() > Duration::from_secs(4)
    });
    std::fs::write(&fifo, "Work on {subtask_id}.\n").unwrap();
    run.wait(20).expect_code(1);

    assert_ended(&p, "failed", "max_runtime");
    assert_eq!(session_list(&p), [session("initializer", "-", "1")], "no coder session");
    assert_eq!(get_u64(&status(&p), "iteration"), Some(1));
}
