//! The daemon as the operating system sees it: its own session without a
//! terminal, stdin from /dev/null and output into the log, surviving the
//! shell that started it; one daemon per project however many start at
//! once; a PID file that names somebody else is never trusted; SIGHUP,
//! SIGTERM and SIGINT sent straight to it (`kill -TERM PID`); and `status`
//! readable at every instant of a run.

use std::fs::OpenOptions;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use miniserde::json::Value;

use crate::harness::*;

const DEADLINE_SECS: u64 = 30;

// --- helpers ---------------------------------------------------------------------

/// A daemon started by a test, SIGKILLed on drop if it still runs as
/// rasen: the project's own cleanup goes by the PID file, which a daemon
/// that misbehaves may have removed.
struct Daemon(i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if !process_gone(self.0) && String::from_utf8_lossy(&cmdline).contains("rasen") {
            send_signal(self.0, libc::SIGKILL);
        }
    }
}

/// The PID in `Daemon started with PID N`.
fn started_pid(r: &RunResult) -> i32 {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Daemon started with PID "))
        .unwrap_or_else(|| panic!("no `Daemon started with PID N`\n{r}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a PID\n{r}"))
}

/// `rasen init` then `rasen run --background`; returns the daemon, whose
/// PID is the one in the PID file.
fn init_and_start(p: &Project) -> Daemon {
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    let r = p.rasen(&["run", "--background"]).expect_code(0);
    assert!(
        r.stdout.contains("Starting daemon... (PID file: .rasen/rasen.pid, log: .rasen/rasen.log)"),
        "{r}"
    );
    let pid = started_pid(&r);
    let daemon = Daemon(pid);
    // Once `Daemon started` is printed the daemon is ready and labelled.
    assert_eq!(p.daemon_pid(), Some(pid), "{r}");
    daemon
}

fn log_text(p: &Project) -> String {
    p.file(".rasen/rasen.log").unwrap_or_default()
}

/// Waits for the daemon to end; on timeout shows its log, its only voice.
fn wait_for_exit(p: &Project, pid: i32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !process_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "daemon {pid} still runs after {secs} s\n--- log ---\n{}",
            log_text(p)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_coder_session(p: &Project, subtask: &str) {
    let what = format!("a coder session on {subtask} started");
    wait_until(DEADLINE_SECS, &what, || {
        p.sessions().iter().any(|s| s.role == "coder" && s.subtask == subtask)
    });
}

fn status_json(p: &Project) -> Value {
    p.json(".rasen/status.json")
}

fn subtask_statuses(p: &Project) -> Vec<String> {
    let plan = p.json(".rasen/implementation_plan.json");
    let subtasks = get_array(&plan, "subtasks").expect("subtasks");
    subtasks.iter().map(|s| get_str(s, "status").unwrap_or("?").to_string()).collect()
}

/// `sh -c 'kill -SIG PID'`, as a user sends a signal from a shell.
fn shell_kill(p: &Project, signal: &str, pid: i32) {
    let r = Spawned::start(
        {
            let mut cmd = p.command("sh");
            cmd.args(["-c", &format!("kill -{signal} {pid}")]);
            cmd
        },
        &format!("kill -{signal} {pid}"),
    )
    .wait(DEADLINE_SECS);
    assert_eq!(r.code, 0, "{r}");
}

/// A pseudo-terminal: the master end (the "terminal window") and the path
/// of the slave end (what a login shell has as its terminal).
struct Pty {
    /// Held open for the pty's life: dropping it hangs up the terminal.
    _master: OwnedFd,
    slave: PathBuf,
}

fn open_pty() -> Pty {
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r take the fd we just
    // got and a buffer of the length we pass; the fd is owned at once.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0, "grantpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt: {}", std::io::Error::last_os_error());
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
        let slave = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        Pty { _master: master, slave: PathBuf::from(slave) }
    }
}

/// `sh -c SCRIPT` as a login shell on a terminal: the leader of a new
/// session whose controlling terminal is `pty` (stdin), with $RASEN set to
/// the binary. stdout and stderr are captured.
fn shell_on_terminal(p: &Project, pty: &Pty, script: &str) -> Spawned {
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&pty.slave)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", pty.slave.display()));
    let mut cmd = p.command("sh");
    cmd.args(["-c", script]).env("RASEN", env!("CARGO_BIN_EXE_rasen")).stdin(Stdio::from(slave));
    // SAFETY: between fork and exec the closure only makes async-signal-safe
    // system calls (setsid, ioctl) and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Spawned::start(cmd, &format!("sh -c '{script}' on {}", pty.slave.display()))
}

/// What the shell printed about itself: "shell SESSION TTY_NR".
fn shell_session_and_tty(r: &RunResult) -> (i64, i64) {
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("shell "))
        .unwrap_or_else(|| panic!("the shell did not describe itself\n{r}"));
    let mut it = line.split_whitespace().map(|n| n.parse::<i64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Prints "shell SESSION TTY_NR" (fields 6 and 7 of /proc/$$/stat: the
/// command name "sh" holds no space).
const DESCRIBE_SHELL: &str = "set -- $(cat /proc/$$/stat); echo \"shell $6 $7\"";

// --- the process ------------------------------------------------------------------

#[test]
fn daemon_runs_in_its_own_session_without_a_terminal_and_writes_only_to_the_log() {
    let mut p = Project::new("detached");
    p.env("SCRIPTED_CODER", "hang");
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    let pty = open_pty();
    let script = format!("{DESCRIBE_SHELL}; \"$RASEN\" run --background; exit");
    let shell = shell_on_terminal(&p, &pty, &script);
    let shell_pid = shell.pid();
    let r = shell.wait(DEADLINE_SECS);
    assert_eq!(r.code, 0, "{r}");
    let daemon = Daemon(started_pid(&r));
    let pid = daemon.0;
    assert_eq!(p.daemon_pid(), Some(pid));

    let (shell_session, shell_tty) = shell_session_and_tty(&r);
    assert_ne!(shell_tty, 0, "the shell must have had a terminal for this test to mean anything");
    let fields = stat_fields(pid);
    let session: i64 = fields[3].parse().unwrap();
    let tty: i64 = fields[4].parse().unwrap();
    // SAFETY: getsid(0) only reads this process's session id.
    let test_session = i64::from(unsafe { libc::getsid(0) });
    assert_ne!(session, shell_session, "the daemon stayed in its shell's session\n{fields:?}");
    assert_ne!(session, test_session, "the daemon is in the test's session\n{fields:?}");
    assert_ne!(session, i64::from(pid), "after the second fork it must not lead its session");
    assert_eq!(tty, 0, "the daemon has a controlling terminal\n{fields:?}");
    // Orphaned (to init or a subreaper): neither the shell nor the rasen
    // that started it is waiting for it.
    let parent: i32 = fields[1].parse().unwrap();
    assert_ne!(parent, shell_pid, "{fields:?}");
    let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    assert_ne!(parent_name.trim(), "rasen", "the daemon's parent is a rasen process\n{fields:?}");

    assert_eq!(fd_target(pid, 0), Path::new("/dev/null"));
    let log = p.path(".rasen/rasen.log").canonicalize().unwrap();
    assert_eq!(fd_target(pid, 1), log);
    assert_eq!(fd_target(pid, 2), log);
    // Nothing else of the starting terminal is kept open.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    for entry in fds {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        assert_ne!(target, pty.slave, "the daemon keeps the terminal open");
    }

    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("Daemon stopped successfully"), "{r}");
    wait_for_exit(&p, pid, DEADLINE_SECS);
}

#[test]
fn daemon_survives_its_shell_and_terminal_going_away_and_finishes_the_task() {
    let mut p = Project::new("survives");
    p.env("SCRIPTED_SUBTASKS", "3").env("SCRIPTED_CODER", "slow:1");
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    let pty = open_pty();
    let shell = shell_on_terminal(&p, &pty, "\"$RASEN\" run --background; exit");
    let shell_pid = shell.pid();
    let r = shell.wait(DEADLINE_SECS);
    assert_eq!(r.code, 0, "{r}");
    let daemon = Daemon(started_pid(&r));
    let pid = daemon.0;
    assert!(process_gone(shell_pid));
    // The terminal window is closed too: a hang-up for whatever is left on it.
    drop(pty);

    assert!(!process_gone(pid), "the daemon died with its shell\n{}", log_text(&p));
    wait_for_exit(&p, pid, DEADLINE_SECS);
    let status = status_json(&p);
    assert_eq!(get_str(&status, "status"), Some("completed"), "{}", log_text(&p));
    assert_eq!(subtask_statuses(&p), ["completed"; 3]);
    let roles: Vec<_> = p.sessions().iter().map(|s| format!("{} {}", s.role, s.subtask)).collect();
    assert_eq!(roles, ["initializer -", "coder t1", "coder t2", "coder t3"]);
    assert_eq!(p.daemon_pid(), None, "the PID file is removed at the end");
}

// --- who runs ---------------------------------------------------------------------

/// Makes status.json say a run is going on with `pid`, and writes `pid`
/// into the PID file, as a daemon that died (or a reused PID) leaves them.
fn fake_running_state(p: &Project, pid: i32) {
    let text = p.file(".rasen/status.json").expect("status.json after init");
    let faked = text
        .replace("\"status\": \"initialized\"", "\"status\": \"running\"")
        .replace("\"pid\": null", &format!("\"pid\": {pid}"))
        .replace("\"agent_pid\": null", &format!("\"agent_pid\": {pid}"));
    assert!(faked.contains("\"running\"") && faked.contains(&format!("\"pid\": {pid}")), "{text}");
    p.write(".rasen/status.json", &faked);
    p.write(".rasen/rasen.pid", &format!("{pid}\n"));
}

#[test]
fn pid_file_naming_an_unrelated_live_process_is_stale_and_that_process_is_never_signalled() {
    let p = Project::new("stale-unrelated");
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    let mut cmd = p.command("sleep");
    cmd.arg("300");
    let sleeper = Spawned::start(cmd, "sleep 300"); // SIGKILLed when dropped
    let pid = sleeper.pid();

    for (lock_file_exists, stop_args) in [
        (false, vec!["stop"]),
        (false, vec!["stop", "--force"]),
        (true, vec!["stop"]),
        (true, vec!["stop", "--force"]),
    ] {
        if lock_file_exists {
            // As after an earlier run: the lock file is there, nobody holds it.
            p.write(".rasen/run.lock", "");
        }
        fake_running_state(&p, pid);
        let r = p.rasen(&["status"]).expect_code(1);
        assert!(r.stdout.contains("stale PID file"), "{r}");
        assert!(r.stdout.contains(&format!("PID {pid} now belongs to another process")), "{r}");
        assert!(!r.stdout.contains("Status: running"), "{r}");
        let r = p.rasen(&["status", "--json"]).expect_code(1);
        let v = parse_json(&r.stdout, "status --json");
        assert_eq!(get_bool(&v, "running"), Some(false), "{r}");
        assert_eq!(get_bool(&v, "stale_pid_file"), Some(true), "{r}");

        let r = p.rasen(&stop_args).expect_code(0);
        assert!(r.stdout.contains("stale PID file"), "{r}");
        assert!(
            !process_gone(pid),
            "`rasen {}` signalled an unrelated process",
            stop_args.join(" ")
        );
        assert!(!p.path(".rasen/rasen.pid").exists(), "the stale PID file is removed\n{r}");
        p.rasen(&["status"]).expect_code(3);
    }
    assert!(!process_gone(pid));
}

#[test]
fn pid_file_naming_another_rasen_process_does_not_get_it_stopped() {
    let p = Project::new("stale-rasen");
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    p.write(".rasen/rasen.log", "an old run\n");
    // A rasen process that is not the orchestrator: a log follower.
    let follower = p.spawn(&["logs", "--follow"]);
    let pid = follower.pid();
    wait_until(DEADLINE_SECS, "the follower printed the log", || {
        follower.stdout_so_far().contains("an old run")
    });
    fake_running_state(&p, pid);
    p.rasen(&["status"]).expect_code(1);
    p.rasen(&["stop", "--force"]).expect_code(0);
    p.rasen(&["status"]).expect_code(3);
    fake_running_state(&p, pid);
    p.rasen(&["stop"]).expect_code(0);
    assert!(!process_gone(pid), "rasen stop signalled a rasen process that was not the daemon");
}

#[test]
fn two_concurrent_background_runs_start_exactly_one_daemon() {
    let mut p = Project::new("concurrent");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER", "slow:1");
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    let first = p.spawn(&["run", "--background"]);
    let second = p.spawn(&["run", "--background"]);
    let results = [first.wait(DEADLINE_SECS), second.wait(DEADLINE_SECS)];

    let winners: Vec<_> = results.iter().filter(|r| r.code == 0).collect();
    let losers: Vec<_> = results.iter().filter(|r| r.code != 0).collect();
    assert_eq!((winners.len(), losers.len()), (1, 1), "{}\n{}", results[0], results[1]);
    let daemon = Daemon(started_pid(winners[0]));
    let loser = losers[0];
    assert_eq!(loser.code, 1, "{loser}");
    assert!(
        loser.stderr.contains(&format!("already running with PID {}", daemon.0)),
        "the refusal must name the daemon that won ({})\n{loser}",
        daemon.0
    );
    assert!(!loser.stdout.contains("Daemon started"), "{loser}");

    wait_for_exit(&p, daemon.0, DEADLINE_SECS);
    assert_eq!(get_str(&status_json(&p), "status"), Some("completed"), "{}", log_text(&p));
    let sessions: Vec<_> =
        p.sessions().iter().map(|s| format!("{} {} {}", s.iteration, s.role, s.subtask)).collect();
    assert_eq!(sessions, ["1 initializer -", "2 coder t1", "3 coder t2"], "{}", log_text(&p));
    assert_eq!(log_text(&p).matches(" started (PID ").count(), 1, "{}", log_text(&p));
}

// --- signals ----------------------------------------------------------------------

#[test]
fn sighup_reloads_a_changed_configuration_which_then_takes_effect() {
    let mut p = Project::new("sighup-valid");
    p.env("SCRIPTED_SUBTASKS", "5").env("SCRIPTED_CODER", "slow:2");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    // Session 2 runs for about 2 s: the reload comes before session 3.
    p.set_config("orchestrator.max_iterations", "3");
    assert!(send_signal(daemon.0, libc::SIGHUP));
    wait_until(DEADLINE_SECS, "the log says the configuration was reloaded", || {
        log_text(&p).contains("configuration reloaded")
    });
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);

    let log = log_text(&p);
    assert!(log.contains("configuration reloaded: orchestrator.max_iterations: 100 -> 3"), "{log}");
    let status = status_json(&p);
    assert_eq!(get_str(&status, "reason"), Some("max_iterations"), "{log}");
    assert_eq!(get_u64(&status, "iteration"), Some(3), "{log}");
    assert_eq!(subtask_statuses(&p), ["completed", "completed", "pending", "pending", "pending"]);
    assert!(!log.contains("interrupted"), "SIGHUP must not cut the session short\n{log}");
}

#[test]
fn sighup_with_an_invalid_configuration_keeps_the_previous_one_and_runs_on() {
    let mut p = Project::new("sighup-invalid");
    p.env("SCRIPTED_SUBTASKS", "3").env("SCRIPTED_CODER", "slow:1");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    // Were any of it applied, max_iterations 2 would end the run early.
    p.config("orchestrator:\n  max_iterations: 2\n  max_iteratoins: 5\n");
    assert!(send_signal(daemon.0, libc::SIGHUP));
    wait_until(DEADLINE_SECS, "the log says the configuration was kept", || {
        log_text(&p).contains("keeping previous configuration")
    });
    assert!(!process_gone(daemon.0), "the daemon died of a bad reload\n{}", log_text(&p));
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);

    let log = log_text(&p);
    let line = log.lines().find(|l| l.contains("keeping previous configuration")).unwrap();
    assert!(line.contains("rasen.yml") && line.contains("max_iteratoins"), "{line}");
    let status = status_json(&p);
    assert_eq!(get_str(&status, "status"), Some("completed"), "{log}");
    assert_eq!(get_u64(&status, "iteration"), Some(4), "{log}");
    assert_eq!(subtask_statuses(&p), ["completed"; 3]);
}

#[test]
fn sighup_to_an_agent_command_that_cannot_be_found_keeps_the_previous_configuration() {
    let mut p = Project::new("sighup-no-agent");
    p.env("SCRIPTED_SUBTASKS", "3").env("SCRIPTED_CODER", "slow:1");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    // Valid YAML, but no such agent: applied, it would fail the next
    // session (and max_iterations 2 would end the run early).
    p.set_config("agent.command", "\"/nonexistent/agent\"")
        .set_config("orchestrator.max_iterations", "2");
    assert!(send_signal(daemon.0, libc::SIGHUP));
    wait_until(DEADLINE_SECS, "the log says the configuration was kept", || {
        log_text(&p).contains("keeping previous configuration")
    });
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);

    let log = log_text(&p);
    let line = log.lines().find(|l| l.contains("keeping previous configuration")).unwrap();
    assert!(line.contains("/nonexistent/agent"), "{line}");
    let status = status_json(&p);
    assert_eq!(get_str(&status, "status"), Some("completed"), "{log}");
    assert_eq!(get_u64(&status, "iteration"), Some(4), "{log}");
    assert_eq!(subtask_statuses(&p), ["completed"; 3]);
}

#[test]
fn sighup_applies_the_rest_but_keeps_the_background_files_until_a_restart() {
    let mut p = Project::new("sighup-background");
    p.env("SCRIPTED_SUBTASKS", "5").env("SCRIPTED_CODER", "slow:2");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    p.set_config("background.log_file", "\".rasen/elsewhere.log\"")
        .set_config("orchestrator.max_iterations", "3");
    assert!(send_signal(daemon.0, libc::SIGHUP));
    wait_until(DEADLINE_SECS, "the log says the configuration was reloaded", || {
        log_text(&p).contains("configuration reloaded")
    });
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);

    let log = log_text(&p);
    let reloaded = log.lines().find(|l| l.contains("configuration reloaded")).unwrap();
    assert!(reloaded.contains("orchestrator.max_iterations: 100 -> 3"), "{reloaded}");
    assert!(!reloaded.contains("background.log_file"), "it did not change: {reloaded}");
    let kept = log.lines().find(|l| l.contains("background.log_file")).unwrap_or_default();
    assert!(kept.contains("restart"), "the log must say a restart is needed\n{log}");
    assert_eq!(get_str(&status_json(&p), "reason"), Some("max_iterations"), "{log}");
    assert!(log.contains("run ended: max_iterations"), "the old log got the rest\n{log}");
    assert!(!p.path(".rasen/elsewhere.log").exists());
}

/// `kill -SIG PID` on a daemon whose agent is mid-session.
fn signal_stops_the_daemon_gracefully(name: &str, signal: &str) {
    let mut p = Project::new(name);
    p.env("SCRIPTED_CODER", "hang").set_config("agent.stop_grace_seconds", "1");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    wait_until(DEADLINE_SECS, "status.json names the agent", || {
        get(&status_json(&p), "agent_pid").is_some_and(|v| !matches!(v, Value::Null))
    });
    shell_kill(&p, signal, daemon.0);
    wait_for_exit(&p, daemon.0, 15);

    let log = log_text(&p);
    let status = status_json(&p);
    assert_eq!(get_str(&status, "status"), Some("stopped"), "{log}");
    assert_eq!(get_str(&status, "reason"), Some("stopped"), "{log}");
    assert!(log.contains(&format!("stopped by SIG{signal}")), "{log}");
    assert!(!p.path(".rasen/rasen.pid").exists(), "the PID file must be removed\n{log}");
    assert_eq!(subtask_statuses(&p)[0], "in_progress", "{log}");
    let history = p.json(".rasen/attempt_history.json");
    let attempts = get_array(&history, "attempts").expect("attempts");
    let last = attempts.last().expect("the interrupted attempt is recorded");
    assert_eq!(get_str(last, "subtask_id"), Some("t1"));
    assert_eq!(get_str(last, "outcome"), Some("interrupted"), "{log}");
    let agents = p.agent_pids();
    wait_until(DEADLINE_SECS, "the agent's processes are gone", || {
        agents.iter().all(|&pid| process_gone(pid))
    });
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: stopped"), "{r}");
}

#[test]
fn sigterm_to_the_daemon_stops_it_gracefully() {
    signal_stops_the_daemon_gracefully("sigterm", "TERM");
}

#[test]
fn sigint_to_the_daemon_stops_it_gracefully() {
    signal_stops_the_daemon_gracefully("sigint", "INT");
}

// --- status -----------------------------------------------------------------------

#[test]
fn status_exits_0_while_running_and_3_after_completion() {
    let mut p = Project::new("status-codes");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER", "slow:1");
    let daemon = init_and_start(&p);
    let r = p.rasen(&["status"]).expect_code(0);
    assert!(r.stdout.contains("Status: running"), "{r}");
    assert!(r.stdout.contains(&format!("PID: {}", daemon.0)), "{r}");
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("Status: completed"), "{r}");
}

#[test]
fn status_exits_1_for_a_daemon_killed_with_sigkill_until_stop_cleans_up() {
    let mut p = Project::new("status-killed");
    p.env("SCRIPTED_CODER", "hang");
    let daemon = init_and_start(&p);
    wait_for_coder_session(&p, "t1");
    assert!(send_signal(daemon.0, libc::SIGKILL));
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);
    let r = p.rasen(&["status"]).expect_code(1);
    assert!(
        r.stdout.contains(&format!("crashed (stale PID file, process {} is gone)", daemon.0)),
        "{r}"
    );
    p.rasen(&["stop"]).expect_code(0);
    assert_eq!(p.daemon_pid(), None);
    p.rasen(&["status"]).expect_code(3);
}

#[test]
fn status_is_always_whole_json_while_a_fast_run_rewrites_it() {
    let mut p = Project::new("status-torn");
    p.env("SCRIPTED_SUBTASKS", "10");
    let daemon = init_and_start(&p);
    let status_path = p.path(".rasen/status.json");

    // One thread reads status.json as fast as it can; the test polls
    // `rasen status --json` meanwhile.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut versions = std::collections::HashSet::new();
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) || reads < 300 {
                let text = std::fs::read_to_string(&status_path)
                    .unwrap_or_else(|e| panic!("read {reads}: status.json is missing: {e}"));
                let v = parse_json(&text, "status.json read during the run");
                assert!(get_str(&v, "status").is_some(), "{text}");
                versions.insert(text);
                reads += 1;
            }
            (reads, versions.len())
        })
    };
    let mut running_seen = 0;
    for i in 0..300 {
        let r = p.rasen(&["status", "--json"]);
        assert!(r.code == 0 || r.code == 3, "poll {i}: exit code {}\n{r}", r.code);
        let v: Value = miniserde::json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("poll {i}: not JSON\n{r}"));
        let running = get_bool(&v, "running")
            .unwrap_or_else(|| panic!("poll {i}: `running` is not a bool\n{r}"));
        assert_eq!(running, r.code == 0, "poll {i}: `running` disagrees with the exit code\n{r}");
        running_seen += usize::from(running);
    }
    wait_for_exit(&p, daemon.0, DEADLINE_SECS);
    done.store(true, Ordering::SeqCst);
    let (reads, versions) = reader.join().expect("the status.json reader panicked");

    assert!(running_seen > 0, "no poll saw the run going: the test proved nothing");
    assert!(versions > 10, "only {versions} versions of status.json in {reads} reads");
    let status = status_json(&p);
    assert_eq!(get_str(&status, "status"), Some("completed"), "{}", log_text(&p));
    assert_eq!(get_u64(&status, "completed_subtasks"), Some(10));
    let r = p.rasen(&["status", "--json"]).expect_code(3);
    assert_eq!(get_bool(&parse_json(&r.stdout, "status --json"), "running"), Some(false));
}
