//! Becoming a daemon. Who is running (the run lock, the PID file) is
//! `lock.rs`'s.
//!
//! **Daemonizing** follows the classic sequence, one step per line in
//! `become_daemon`: fork, setsid, fork again (so the daemon is not a session
//! leader and can never reacquire a terminal), stdin from /dev/null,
//! stdout/stderr appended to the log, umask without group/world write, lock,
//! PID file, signal handlers, the loop's start (state loaded, status.json
//! saying running) — and only then "ready" is written to a pipe on which
//! the original process waits. That process prints `Daemon started
//! with PID N` and exits 0 only after reading it; any failure on the way is
//! sent through the same pipe and printed by it, so errors reach the
//! terminal. No sleep-and-hope anywhere.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::lock::RunLock;
use crate::project::Project;
use crate::{logger, signals, sys};

/// Starts `body` as a daemon and reports in the calling process: returns
/// the exit code for the caller (0 once the daemon said it is ready). In
/// the daemon itself this never returns: it exits with `body`'s code.
pub fn run_in_background(
    project: &Project,
    body: impl FnOnce(RunLock, Ready) -> i32,
) -> Result<i32> {
    say!(
        "Starting daemon... (PID file: {}, log: {})",
        project.show(&project.pid_file()),
        project.show(&project.log_file())
    );
    flush_stdio();
    let (ready_read, ready_write) =
        sys::pipe().map_err(|e| Error::failed(format!("cannot create a pipe: {e}")))?;
    match sys::fork().map_err(|e| Error::failed(format!("cannot fork: {e}")))? {
        sys::Fork::Parent(child) => {
            drop(ready_write);
            let report = read_readiness(ready_read);
            let _ = sys::wait_for_child(child); // the short-lived first child
            match report {
                Readiness::Ready(pid) => {
                    say!("Daemon started with PID {pid}");
                    Ok(0)
                }
                Readiness::Failed(message) => Err(Error::failed(message)),
                Readiness::Silent => Err(Error::failed(format!(
                    "the daemon exited during startup without a word; see {}",
                    project.show(&project.log_file())
                ))),
            }
        }
        sys::Fork::Child => {
            drop(ready_read);
            let code = become_daemon(project, ready_write, body);
            flush_stdio();
            sys::exit_immediately(code)
        }
    }
}

/// The daemon side, from the first child on. Returns the exit code.
fn become_daemon(
    project: &Project,
    ready: OwnedFd,
    body: impl FnOnce(RunLock, Ready) -> i32,
) -> i32 {
    let mut ready = File::from(ready);
    if let Err(e) = sys::setsid() {
        return report_failure(&mut ready, &format!("setsid failed: {e}"));
    }
    match sys::fork() {
        Ok(sys::Fork::Parent(_)) => sys::exit_immediately(0), // the grandchild carries on
        Ok(sys::Fork::Child) => {}
        Err(e) => return report_failure(&mut ready, &format!("second fork failed: {e}")),
    }
    sys::close_inherited_fds(ready.as_raw_fd()); // the caller's files and pipes
    let lock = match prepare_daemon_process(project) {
        Ok(lock) => lock,
        Err(e) => return report_failure(&mut ready, &e.message),
    };
    body(lock, Ready(ready))
}

/// The daemon's word to the process waiting for it: given once the loop
/// has started (its state loaded, status.json saying running), or the
/// error that stopped it first. Dropped unused, the waiting process hears
/// nothing and says so.
pub struct Ready(File);

impl Ready {
    pub fn started(mut self) {
        let _ = writeln!(self.0, "ready {}", sys::getpid());
    }

    pub fn failed(mut self, message: &str) {
        report_failure(&mut self.0, message);
    }
}

/// Everything between the second fork and "ready", in order.
fn prepare_daemon_process(project: &Project) -> Result<RunLock> {
    std::env::set_current_dir(&project.root)
        .map_err(|e| Error::io(&project.root, "cannot chdir", e))?;
    // Keep the caller's umask, minus group and world write.
    let old = sys::set_umask(0o022);
    sys::set_umask(old | 0o022);
    let devnull =
        File::open("/dev/null").map_err(|e| Error::io(Path::new("/dev/null"), "cannot open", e))?;
    let log = logger::open_for_append(&project.log_file())?;
    let redirect = |from: &File, to, name| {
        sys::redirect_fd(from, to)
            .map_err(|e| Error::failed(format!("cannot redirect {name}: {e}")))
    };
    redirect(&devnull, libc::STDIN_FILENO, "stdin")?;
    redirect(&log, libc::STDOUT_FILENO, "stdout")?;
    redirect(&log, libc::STDERR_FILENO, "stderr")?;
    let lock = RunLock::acquire(project)?;
    lock.write_pid_file()?;
    signals::install()
        .map_err(|e| Error::failed(format!("cannot install signal handlers: {e}")))?;
    Ok(lock)
}

fn report_failure(ready: &mut File, message: &str) -> i32 {
    let _ = writeln!(ready, "error {message}");
    crate::error::EXIT_FAILED
}

enum Readiness {
    Ready(i32),
    Failed(String),
    Silent,
}

/// Reads the daemon's one-line report: `ready PID` or `error MESSAGE`.
fn read_readiness(ready: OwnedFd) -> Readiness {
    let mut text = String::new();
    let _ = File::from(ready).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("");
    if let Some(pid) = line.strip_prefix("ready ").and_then(|p| p.trim().parse().ok()) {
        Readiness::Ready(pid)
    } else if let Some(message) = line.strip_prefix("error ") {
        Readiness::Failed(message.to_string())
    } else {
        Readiness::Silent
    }
}

fn flush_stdio() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}
