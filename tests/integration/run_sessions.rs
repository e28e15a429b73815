//! How one agent session ends inside a foreground `rasen run`: a silent
//! hung agent (idle timeout), one that prints forever (session timeout),
//! each with its whole process group gone; and a flood of output that must
//! not grow rasen's memory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::run_support::*;

/// Runs a task whose one coder session times out; returns the attempt's
/// reason and duration after checking what every timeout leaves behind.
fn timed_out_session(p: &Project) -> (String, f64) {
    let started = Instant::now();
    p.rasen(&["run"]).expect_code(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the run took {took:?} for a 600 s agent");

    assert_eq!(session_list(p), [session("initializer", "-", "1"), session("coder", "t1", "1")]);
    assert_eq!(outcomes(p), [pair("t1", "timeout")]);
    assert_eq!(subtask_status(p, "t1"), "in_progress");
    // The session's leader and its stray `sleep 600`, and its whole group.
    assert!(p.agent_pids().len() >= 3, "{:?}", p.agent_pids());
    assert_no_agent_process_left(p);
    let attempt = &attempts(p)[0];
    let reason = get_str(attempt, "reason").unwrap().to_string();
    (reason, get_f64(attempt, "duration_seconds").unwrap())
}

#[test]
fn silent_hung_agent_is_killed_by_the_idle_timeout_with_its_group() {
    let mut p = project("idle-timeout");
    p.set_config("orchestrator.max_iterations", "2")
        .set_config("orchestrator.idle_timeout_seconds", "1")
        .set_config("agent.stop_grace_seconds", "1")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "hang");
    let (reason, duration) = timed_out_session(&p);
    assert!(reason.contains("no output for 1s"), "{reason}");
    assert!(duration >= 1.0, "ended after {duration} s, before the idle timeout");
    assert_eq!(get_str(&status(&p), "reason"), Some("max_iterations"));
}

#[test]
fn printing_agent_is_killed_by_the_session_timeout_with_its_group() {
    let mut p = project("session-timeout");
    p.set_config("orchestrator.max_iterations", "2")
        .set_config("orchestrator.session_timeout_seconds", "2")
        .set_config("orchestrator.idle_timeout_seconds", "30")
        .set_config("agent.stop_grace_seconds", "1")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "hang-printing");
    let (reason, duration) = timed_out_session(&p);
    assert!(reason.contains("ran out of time"), "{reason}");
    assert!(duration >= 2.0, "ended after {duration} s, before the session timeout");
    assert!(reason.contains("still busy with t1"), "the tail of its output: {reason}");
}

/// Peak resident memory (VmHWM) in KiB, while the process lives.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn hundred_megabytes_of_agent_output_keep_rasen_under_ten_megabytes() {
    let mut p = project("flood");
    p.env("SCRIPTED_SUBTASKS", "2")
        .env("SCRIPTED_CODER_t1", "flood:100")
        .env("SCRIPTED_CODER_t2", "hang");
    let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
    // Its output goes nowhere: it would be 100 MB.
    cmd.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
    let mut rasen = KillOnDrop(cmd.spawn().unwrap());
    let pid = rasen.0.id();

    // VmHWM only grows: its value once t2 has started covers all of t1.
    let mut peak = 0;
    wait_until(60, "the flood to be read and the next session to start", || {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        p.sessions().iter().any(|s| s.subtask == "t2")
    });
    peak = peak.max(peak_rss_kib(pid).expect("rasen still runs"));
    assert!(peak > 0, "no VmHWM read");
    assert!(peak < 10 * 1024, "rasen's peak RSS was {peak} KiB while reading 100 MiB of output");

    send_signal(pid as i32, libc::SIGTERM);
    let mut code = None;
    wait_until(30, "rasen to stop", || {
        code = rasen.0.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    assert_eq!(code, Some(Some(143)));

    // All of it went through rasen into the log, and the claim after it was seen.
    assert_eq!(outcomes(&p), [pair("t1", "success"), pair("t2", "interrupted")]);
    let log_size = std::fs::metadata(p.path(".rasen/rasen.log")).unwrap().len();
    assert!(log_size > 100 << 20, "the log has only {log_size} bytes");
    assert_no_agent_process_left(&p);
}
