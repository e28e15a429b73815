//! Becoming a daemon: `run_in_background` is the whole sequence, one step
//! per line, in the order it happens. In the calling process: print
//! `Starting daemon…`, make the readiness pipe, fork, and wait on the pipe.
//! In the child: setsid, fork again (so the daemon is not a session leader
//! and can never reacquire a terminal), close the files it inherited,
//! install the signal handlers (before anything can name the daemon: a
//! signal sent the instant the lock or the PID file appears is handled,
//! not fatal), chdir to the project, umask without group/world write,
//! stdin from /dev/null, stdout/stderr appended to the log, take the run
//! lock, write the PID file, start the loop (state loaded, status.json
//! saying running) — and only then write "ready" to the pipe.
//! The waiting process prints `Daemon started with PID N` and exits 0 only
//! after reading it; any failure on the way is sent through the same pipe
//! and printed by it, so errors reach the terminal. No sleep-and-hope.
//!
//! Layering: this module sits above the loop. It starts the run itself
//! (`run::start`, then `Run::run_to_end`) so that "ready" is said
//! between the two, and below it the loop never knows whether it runs in a
//! daemon. Only `commands` calls in here (also for the umask rule, which
//! a foreground run applies as well). Who is running (the run lock,
//! the PID file) is `lock`'s; this module never decides anything about the
//! run and never writes a state file itself.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::lock::RunLock;
use crate::project::Project;
use crate::run::{self, RunOptions};
use crate::text::escape_controls;
use crate::{logger, signals, sys};

/// `run --background`, top to bottom. In the calling process, returns the
/// exit code (0 once the daemon said it is ready). In the daemon, never
/// returns: the process exits with the run's exit code.
pub fn run_in_background(project: &Project, options: RunOptions) -> Result<i32> {
    say!(
        "Starting daemon... (PID file: {}, log: {})",
        project.show(&project.pid_file()),
        project.show(&project.log_file())
    );
    flush_stdio();
    let (ready_read, ready_write) =
        sys::pipe().map_err(|e| Error::failed(format!("cannot create a pipe: {e}")))?;
    // SAFETY: rasen has started no thread (git and the agent are child
    // processes, waits are polls), stdio is flushed just above, and no
    // child returns from this function: each ends in exit_immediately.
    let first_fork =
        unsafe { sys::fork() }.map_err(|e| Error::failed(format!("cannot fork: {e}")))?;
    if let sys::Fork::Parent(child) = first_fork {
        // The calling process: wait for the daemon's word, then say it.
        drop(ready_write);
        let readiness = read_readiness(ready_read);
        let _ = sys::wait_for_child(child); // the short-lived first child
        return match readiness {
            Readiness::Ready(pid) => {
                say!("Daemon started with PID {pid}");
                Ok(0)
            }
            Readiness::Failed(message) => Err(Error::failed(message)),
            Readiness::Silent => Err(Error::failed(format!(
                "the daemon exited during startup without a word; see {}",
                project.show(&project.log_file())
            ))),
        };
    }

    // The first child: from here on, a failure goes through the pipe.
    drop(ready_read);
    let mut ready = Ready(File::from(ready_write));
    ready.or_exit(sys::setsid().map_err(|e| Error::failed(format!("setsid failed: {e}"))));
    // SAFETY: still the one thread, nothing printed since the flush, and
    // neither process returns from this function.
    let second_fork =
        unsafe { sys::fork() }.map_err(|e| Error::failed(format!("second fork failed: {e}")));
    if let sys::Fork::Parent(_) = ready.or_exit(second_fork) {
        sys::exit_immediately(0); // the grandchild carries on
    }

    // The daemon.
    // SAFETY: the daemon has just been forked and has opened nothing: the
    // only fd from 3 up that a Rust object owns is the pipe's write end,
    // kept; the others are the caller's files and pipes, which nothing
    // here refers to (the logger and the signal pipe are opened later).
    unsafe { sys::close_inherited_fds(ready.0.as_fd()) };
    // Handlers before anything can name this process (the run lock in
    // /proc/locks, the PID file): a SIGHUP or SIGTERM sent the instant it
    // can be found must be handled, never kill the start by default action.
    ready.or_exit(signals::install());
    ready.or_exit(
        std::env::set_current_dir(&project.root)
            .map_err(|e| Error::io(&project.root, "cannot chdir", e)),
    );
    apply_umask_rule();
    let devnull = ready.or_exit(
        File::open("/dev/null").map_err(|e| Error::io(Path::new("/dev/null"), "cannot open", e)),
    );
    let log = ready.or_exit(logger::open_for_append(&project.log_file()));
    ready.or_exit(redirect(&devnull, io::stdin().as_fd(), "stdin"));
    ready.or_exit(redirect(&log, io::stdout().as_fd(), "stdout"));
    ready.or_exit(redirect(&log, io::stderr().as_fd(), "stderr"));
    drop((devnull, log)); // fds 0, 1 and 2 keep the files open
    let lock = ready.or_exit(RunLock::acquire(project));
    ready.or_exit(lock.write_pid_file());
    // The loop's start: state loaded, an orphaned agent stopped, status.json
    // saying running. Only then is the daemon ready.
    let started =
        logger::open(&project.log_file(), false).and_then(|()| run::start(project, options));
    let code = match started {
        Ok(run) => {
            ready.started();
            // From here on, the loop's log says how the run ended.
            run.run_to_end().map_or_else(|e| e.code, |ending| ending.exit_code())
        }
        Err(e) => {
            ready.failed(&e.message);
            e.code
        }
    };
    lock.release();
    flush_stdio();
    sys::exit_immediately(code)
}

/// The umask of every run, daemon or foreground, set before any agent
/// starts: the caller's, with group and world write cleared too (`umask |
/// 0o022`). The agent's files and git's index must not become writable by
/// others because rasen was started under `umask 000`: whoever can write
/// them can change the code the agent commits and the tests it runs.
pub fn apply_umask_rule() {
    let caller_umask = sys::set_umask(0o022);
    sys::set_umask(caller_umask | 0o022);
}

/// The write end of the readiness pipe: the daemon's one line to the
/// process waiting for it, `ready PID` or `error MESSAGE` (control
/// characters escaped, so a newline in it does not cut it short). Closed unused
/// (the daemon died), the waiting process hears nothing and says so.
struct Ready(File);

impl Ready {
    /// The value of a startup step that worked. For one that failed: sends
    /// its error to the waiting process and leaves, as an intermediate
    /// process must, without running anything the parent still owns.
    fn or_exit<T>(&mut self, step: Result<T>) -> T {
        match step {
            Ok(value) => value,
            Err(e) => {
                let _ = writeln!(self.0, "error {}", escape_controls(&e.message));
                flush_stdio();
                sys::exit_immediately(e.code)
            }
        }
    }

    /// The loop has started: its state loaded, status.json saying running.
    fn started(mut self) {
        let _ = writeln!(self.0, "ready {}", sys::getpid());
    }

    fn failed(mut self, message: &str) {
        let _ = writeln!(self.0, "error {}", escape_controls(message));
    }
}

/// Points standard stream `to` (named `name` in errors) at `from`'s file.
fn redirect(from: &File, to: BorrowedFd<'_>, name: &str) -> Result<()> {
    sys::redirect_fd(from.as_fd(), to)
        .map_err(|e| Error::failed(format!("cannot redirect {name}: {e}")))
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
