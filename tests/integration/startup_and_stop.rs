//! The edges of a run's start and stop as the operating system sees them:
//! a signal that arrives the instant the PID file appears, a daemon
//! stopped with SIGSTOP, the umask a foreground run gives its agent, and
//! the `.git/index.lock` a killed `git commit` leaves behind.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::run_support::*;

/// Spins (no sleep: the window it looks for is short) until the PID file
/// holds a PID, and returns it.
fn pid_file_as_soon_as_it_appears(p: &Project) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = p.daemon_pid() {
            return pid;
        }
        assert!(Instant::now() < deadline, "no PID file after 30 s");
        std::thread::yield_now();
    }
}

/// The PID in `Daemon started with PID N`.
fn started_pid(r: &RunResult) -> i32 {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Daemon started with PID "))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `Daemon started with PID N`\n{r}"))
}

#[test]
fn sighup_the_instant_the_pid_file_appears_never_kills_a_starting_daemon() {
    let mut p = project("sighup-at-start");
    p.env("SCRIPTED_CODER", "hang");
    for round in 1..=5 {
        let verb = if round == 1 { "run" } else { "resume" };
        let start = p.spawn(&[verb, "--background"]);
        let pid = pid_file_as_soon_as_it_appears(&p);
        send_signal(pid, libc::SIGHUP);
        let r = start.wait(60);
        assert_eq!(r.code, 0, "round {round}: SIGHUP at the PID file killed the start\n{r}");
        assert_eq!(started_pid(&r), pid, "round {round}\n{r}");
        assert!(!process_gone(pid), "round {round}: the daemon died after starting\n{r}");
        // (The SIGHUP asks for a reload at the next safe point, which the
        // hanging session may keep from coming: not waited for.)
        p.rasen(&["stop"]).expect_code(0);
    }
}

#[test]
fn sighup_the_instant_the_pid_file_appears_never_kills_a_foreground_start() {
    let mut p = project("sighup-at-start-fg");
    p.env("SCRIPTED_CODER", "hang");
    let run = p.spawn(&["run"]);
    let pid = pid_file_as_soon_as_it_appears(&p);
    assert_eq!(pid, run.pid());
    run.signal(libc::SIGHUP);
    // Still alive and working: it reaches the coder, and stops on SIGTERM
    // like any run (143), not as a process killed by SIGHUP (129).
    wait_for_hang(&p, "t1");
    run.signal(libc::SIGTERM);
    run.wait(30).expect_code(143);
}

/// The state letter of `pid` in /proc/PID/stat ('T' when stopped).
fn process_state(pid: i32) -> String {
    stat_fields(pid)[0].clone()
}

#[test]
fn stop_stops_a_daemon_that_was_sigstopped() {
    let mut p = project("sigstopped");
    p.set_config("agent.stop_grace_seconds", "1").env("SCRIPTED_CODER", "hang");
    let r = p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = started_pid(&r);
    let agent = wait_for_hang(&p, "t1");
    send_signal(daemon, libc::SIGSTOP);
    wait_until(10, "the daemon to be stopped (T)", || process_state(daemon) == "T");

    let r = p.rasen(&["stop", "--timeout", "20"]).expect_code(0);
    assert!(r.stdout.contains("✅ Daemon stopped successfully"), "{r}");
    wait_until(10, "the daemon to exit", || process_gone(daemon));
    assert_eq!(get_str(&status(&p), "reason"), Some("stopped"));
    assert!(process_group_gone(agent), "the agent's group outlived the stop");
}

/// The permission bits of a file in the project.
fn mode_of(p: &Project, rel: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    meta.permissions().mode() & 0o7777
}

#[test]
fn a_foreground_run_under_umask_000_gives_its_agent_no_group_or_world_write() {
    let mut p = project("umask-000");
    p.env("SCRIPTED_SUBTASKS", "1");
    let mut cmd = p.command("sh");
    cmd.args(["-c", "umask 000 && exec \"$RASEN\" run"]).env("RASEN", env!("CARGO_BIN_EXE_rasen"));
    let r = Spawned::start(cmd, "umask 000; rasen run").wait(60);
    assert_eq!(r.code, 0, "{r}");

    // Made by the agent (`echo >>`) and by its git: 0666 minus the umask.
    for file in ["work/t1.txt", ".git/index"] {
        let mode = mode_of(&p, file);
        assert_eq!(mode & 0o022, 0, "{file} is {mode:o}: writable by group or world");
        assert_eq!(mode & 0o444, 0o444, "{file} is {mode:o}: the caller's umask allowed reading");
    }
}

/// Starts a daemon whose first coder session is stuck in `git commit -a`
/// (its pre-commit hook sleeps) with `.git/index.lock` taken, and waits
/// until status.json records that agent. Returns the daemon and the agent.
fn daemon_stuck_in_git_commit(p: &mut Project) -> (i32, i32) {
    p.set_config("agent.stop_grace_seconds", "1")
        .env("SCRIPTED_SUBTASKS", "1")
        .env("SCRIPTED_CODER", "hang-in-commit,done");
    let r = p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = started_pid(&r);
    let agent = wait_for_coder(p, "t1");
    // The hook runs: git commit holds the lock until killed (a lock seen
    // earlier may be `git add`'s, gone a moment later).
    wait_until(30, "the agent's git commit to run its hook", || {
        p.scripted_dir().join("in-commit-hook").exists()
    });
    assert!(p.path(".git/index.lock").exists(), "git commit -a holds .git/index.lock");
    wait_until(30, "status.json to record the agent", || {
        get_u64(&status(p), "agent_pid") == Some(agent as u64)
    });
    (daemon, agent)
}

/// After the lock's git was killed, a resumed run commits as usual: t1
/// completed by its second session, with no `index.lock: File exists`.
fn assert_resume_commits(p: &Project) {
    let r = p.rasen(&["resume"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(subtask_status(p, "t1"), "completed");
    assert_eq!(get_str(&status(p), "status"), Some("completed"));
    assert!(!p.path(".git/index.lock").exists());
}

#[test]
fn stop_force_during_a_git_commit_leaves_no_index_lock() {
    let mut p = project("force-index-lock");
    let (daemon, agent) = daemon_stuck_in_git_commit(&mut p);

    p.rasen(&["stop", "--force"]).expect_code(0);
    assert!(process_gone(daemon));
    assert!(process_group_gone(agent));
    // The stopper killed git holding the lock (SIGKILL: git could not
    // clean up), so the stopper removes it.
    assert!(!p.path(".git/index.lock").exists(), "stop --force left .git/index.lock");
    assert_resume_commits(&p);
}

#[test]
fn a_run_killed_during_a_git_commit_has_its_index_lock_removed_by_the_next_start() {
    let mut p = project("killed-index-lock");
    let (daemon, agent) = daemon_stuck_in_git_commit(&mut p);
    // What `stop --force` does, by a stopper that dies right after its
    // kills (or the OOM killer): nothing is recorded, nothing cleaned.
    send_signal(daemon, libc::SIGKILL);
    wait_until(10, "the daemon to die", || process_gone(daemon));
    signal_group(agent, libc::SIGKILL);
    wait_until(10, "the agent's group to die", || process_group_gone(agent));
    assert!(p.path(".git/index.lock").exists(), "git was killed holding the lock");

    assert_resume_commits(&p);
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains("removed .git/index.lock"), "{log}");
}

#[test]
fn a_git_commit_killed_after_its_agent_exited_leaves_no_index_lock() {
    let mut p = project("leftover-index-lock");
    // The first coder session leaves its `git commit -a` running in the
    // background and exits 0 once git holds the lock (its hook runs): rasen kills what
    // an agent leaves behind, git included.
    let wrapper = p.scripted_dir().join("leaving-agent");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             if [ \"$RASEN_ROLE\" = coder ] && mkdir \"$SCRIPTED_DIR/left-once\" 2>/dev/null; then\n\
             \x20   SCRIPTED_CODER=hang-in-commit '{agent}' &\n\
             \x20   while [ ! -e \"$SCRIPTED_DIR/in-commit-hook\" ]; do sleep 0.1; done\n\
             \x20   exit 0\n\
             fi\n\
             exec '{agent}'\n",
            agent = agent_script("scripted-agent").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    p.set_config("agent.command", &format!("\"{}\"", wrapper.display()))
        .env("SCRIPTED_SUBTASKS", "1");
    let r = p.rasen(&["run"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(outcomes(&p), [pair("t1", "failure"), pair("t1", "success")]);
    assert!(!p.path(".git/index.lock").exists());
    assert!(r.stdout.contains("removed .git/index.lock"), "{r}");
}
