//! `rasen stop`, and stopping what a killed orchestrator left behind.
//!
//! Who runs is the run lock's answer (see lock.rs), and whom to signal is
//! the kernel's: the PID holding that lock, from `/proc/locks`, else the
//! PID file its holder wrote. A PID written in status.json is never
//! signalled for what it says: an agent left behind is stopped only as far
//! as `identity` proves its processes are the agent's. Without a holder,
//! the PID file is stale: it is removed and nothing is signalled, whoever
//! has that PID now. Cleanup of a stale state is done while holding the
//! run lock, so it cannot race a run that is just starting.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::identity::{self, LeftBehind};
use crate::lock::{self, Liveness, RunLock};
use crate::project::Project;
use crate::status::StatusFile;
use crate::{run, store, sys};

/// `rasen stop`: SIGTERM and wait for the lock to be let go (graceful), or
/// SIGKILL the orchestrator and its agent (`force`).
pub fn stop(project: &Project, force: bool, timeout: Duration) -> Result<i32> {
    let pid = match lock::liveness(project)? {
        Liveness::Running { pid } => pid,
        Liveness::Stale { .. } | Liveness::NotRunning => return clean_up_after_a_dead_run(project),
    };
    let pid = pid.ok_or_else(|| {
        Error::failed(format!(
            "an orchestrator holds the run lock on {} but its PID is unknown; find it with 'fuser -v {}'",
            project.show(&project.rasen_dir()),
            project.show(&project.rasen_dir())
        ))
    })?;
    if force {
        kill_now(project, pid)
    } else {
        stop_gracefully(project, pid, timeout)
    }
}

/// Nothing holds the run lock: take it, remove a stale PID file, and stop
/// an agent the dead orchestrator left behind ("stop" means nothing of
/// this project keeps running). If the lock cannot be had, a run has just
/// started: say so rather than clean up under it.
fn clean_up_after_a_dead_run(project: &Project) -> Result<i32> {
    let Some(lock) = RunLock::try_acquire(project)? else {
        return Err(Error::failed("an orchestrator has just started; run 'rasen stop' again"));
    };
    // Only a PID file of rasen's is stale; a file rasen did not write at
    // that path (`background.pid_file: README.md`) is left alone.
    if let lock::PidFile::Ours(stale) = lock::PidFile::of(project) {
        let who =
            stale.map(|p| format!(" (process {p} is gone or is not rasen)")).unwrap_or_default();
        say!(
            "No daemon running; removed stale PID file {}{who}",
            project.show(&project.pid_file())
        );
    } else {
        say!("No daemon running");
    }
    if let Ok(Some(status)) = store::load::<StatusFile>(&project.status_file()) {
        let found = identity::stop_left_behind(status.recorded_agent());
        say_what_was_left_behind(&found);
        remove_git_locks(project, &status);
    }
    crate::reserve::remove_left_behind(&project.disk_reserve_file());
    lock.release(); // removes the stale PID file
    Ok(0)
}

fn say_what_was_left_behind(found: &LeftBehind) {
    if let Some(note) = found.stranger_note() {
        say!("{note}");
    }
    if let Some(agent) = found.agent() {
        say!("Stopped agent {agent} and its processes, left behind by an orchestrator that was killed");
    }
}

/// The stopper's share of "nothing is left behind": the `.git/index.lock` (and other git locks)
/// of a git that died with the killed run's agent. A lock that cannot be
/// removed is said, not fatal: the run is stopped, which is what was asked,
/// and the next start tries again.
fn remove_git_locks(project: &Project, status: &StatusFile) {
    match run::remove_git_locks_of_killed_run(project, status) {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => say!("Removed {removed}, left by a git that was killed with the agent"),
        Err(e) => eprintln!("rasen: warning: {e}; the next 'rasen resume' tries again"),
    }
}

/// SIGTERM, then SIGCONT (as systemd does): a daemon stopped with SIGSTOP
/// (or Ctrl-Z on a foreground run) would otherwise keep the SIGTERM
/// pending forever. Continued, it finds the SIGTERM already there and
/// stops at once; a daemon that was not stopped ignores SIGCONT.
fn stop_gracefully(project: &Project, pid: i32, timeout: Duration) -> Result<i32> {
    sys::kill(pid, libc::SIGTERM)
        .map_err(|e| Error::failed(format!("cannot signal PID {pid}: {e}")))?;
    let _ = sys::kill(pid, libc::SIGCONT);
    say!("Stopping daemon (PID {pid}), waiting up to {}s...", timeout.as_secs());
    if wait_until_stopped(project, timeout)? {
        say!("✅ Daemon stopped successfully");
        return Ok(0);
    }
    Err(Error::failed(format!(
        "the daemon (PID {pid}) is still running after {}s; use 'rasen stop --force' to kill it",
        timeout.as_secs()
    )))
}

/// SIGKILL the orchestrator first (so it cannot start another agent), then
/// its agent's whole session. State is left as the last atomic write made
/// it, for `resume`.
fn kill_now(project: &Project, pid: i32) -> Result<i32> {
    sys::kill(pid, libc::SIGKILL)
        .map_err(|e| Error::failed(format!("cannot kill PID {pid}: {e}")))?;
    if !wait_until_stopped(project, Duration::from_secs(10))? {
        return Err(Error::failed(format!("PID {pid} still holds the run lock after SIGKILL")));
    }
    let lock = RunLock::acquire(project)?;
    let path = project.status_file();
    if let Some(mut status) = store::load::<StatusFile>(&path)? {
        let found = identity::kill_left_behind(status.recorded_agent());
        if let Some(note) = found.stranger_note() {
            say!("{note}");
        }
        // Recorded, so that `status` does not call it a crash; the plan
        // keeps its in_progress subtask for `resume`.
        status.killed();
        store::save(&path, &status)?;
        remove_git_locks(project, &status);
    }
    // A SIGKILL runs no `Drop`: the killed run's disk reserve is its last
    // file left behind.
    crate::reserve::remove_left_behind(&project.disk_reserve_file());
    lock.release();
    say!("Daemon killed (PID {pid}); its state is kept: 'rasen resume' continues the task");
    Ok(0)
}

/// Polls the run lock until it is free or `timeout` passes.
fn wait_until_stopped(project: &Project, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if !matches!(lock::liveness(project)?, Liveness::Running { .. }) {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
