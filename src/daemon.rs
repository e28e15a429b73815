//! Who is running, and becoming a daemon.
//!
//! **The run lock.** An orchestrator, foreground or background, holds an
//! exclusive `flock` on the `.rasen` directory itself for its whole life.
//! A directory is not renamed or cleaned away by `git clean -fX` or an
//! `rm .rasen/*`, so every process that opens it locks the same inode.
//! "Is it running?" is answered by that lock alone: the kernel drops it the
//! instant the process dies (even by `kill -9`, even while it is still an
//! unreaped zombie), so a stale PID file is always recognised and a reused
//! PID is never mistaken for the daemon. Who holds it is asked of the
//! kernel too (`/proc/locks`); the PID file is only a label: written after
//! the lock is taken, removed before it is let go, never trusted alone.
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

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::project::Project;
use crate::{logger, process, signals, store, sys};

/// The exclusive lock of a running orchestrator, on the `.rasen`
/// directory itself. Dropping it (or the process dying) releases it;
/// `release` also removes the PID file first.
pub struct RunLock {
    _dir: File,
    pid_file: std::path::PathBuf,
}

/// What the run lock and PID file say about a project.
#[derive(Debug, PartialEq)]
pub enum Liveness {
    /// The lock is held, by `pid` when the kernel (`/proc/locks`) or else
    /// the PID file can say who.
    Running { pid: Option<i32> },
    /// Nobody holds the lock, but a PID file was left behind.
    Stale { pid: Option<i32> },
    /// Nobody holds the lock and there is no PID file.
    NotRunning,
}

impl RunLock {
    /// Takes the run lock, or says who has it. A `status` probing with a
    /// shared lock at the same instant can make one attempt fail, so a
    /// failed attempt is retried briefly before refusing.
    pub fn acquire(project: &Project) -> Result<RunLock> {
        for attempt in 0..10 {
            if let Some(lock) = RunLock::try_acquire(project)? {
                return Ok(lock);
            }
            if attempt < 9 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(already_running(project, None))
    }

    /// Takes the run lock if nobody holds it.
    pub fn try_acquire(project: &Project) -> Result<Option<RunLock>> {
        let dir = open_rasen_dir(project)?;
        let path = project.rasen_dir();
        if sys::try_lock_exclusive(&dir).map_err(|e| Error::io(&path, "cannot lock", e))? {
            return Ok(Some(RunLock { _dir: dir, pid_file: project.pid_file() }));
        }
        Ok(None)
    }

    /// Writes this process's PID into the PID file (atomically, 0644).
    pub fn write_pid_file(&self) -> Result<()> {
        let text = format!("{}\n", sys::getpid());
        store::write_atomically(&self.pid_file, text.as_bytes(), 0o644)
    }

    /// Removes the PID file, then lets the lock go.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// The refusal given when an orchestrator already runs on the project,
/// naming its PID: the kernel's lock holder, else the PID file (which the
/// holder writes just after taking the lock: give it a moment).
pub fn already_running(project: &Project, known: Option<i32>) -> Error {
    let pid = known
        .or_else(|| process::flock_holder(&project.rasen_dir()))
        .or_else(|| wait_for_pid_file(project, Duration::from_secs(1)));
    let who = pid.map(|p| format!(" with PID {p}")).unwrap_or_default();
    Error::failed(format!(
        "already running{who} on {} (see 'rasen status'; stop it with 'rasen stop')",
        project.root.display()
    ))
}

/// The PID in the PID file, polled for at most `timeout`.
fn wait_for_pid_file(project: &Project, timeout: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let pid = read_pid_file(&project.pid_file());
        if pid.is_some() || std::time::Instant::now() >= deadline {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the run lock whether an orchestrator runs, without disturbing it.
pub fn liveness(project: &Project) -> Result<Liveness> {
    let pid_file = project.pid_file();
    let pid = read_pid_file(&pid_file);
    // A PID file nobody holds the lock for is stale, even one whose
    // content is garbage: `stop` must still clean it up.
    let left_behind = pid.is_some() || std::fs::symlink_metadata(&pid_file).is_ok();
    let path = project.rasen_dir();
    let dir = match File::open(&path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if left_behind { Liveness::Stale { pid } } else { Liveness::NotRunning });
        }
        Err(e) => return Err(Error::io(&path, "cannot open", e)),
    };
    // A shared lock succeeds unless someone holds the exclusive one; it is
    // released again when `dir` is dropped at the end of this function.
    let free =
        sys::try_lock_shared(&dir).map_err(|e| Error::io(&path, "cannot query the lock", e))?;
    Ok(match (free, left_behind) {
        (false, _) => Liveness::Running { pid: process::flock_holder(&path).or(pid) },
        (true, true) => Liveness::Stale { pid },
        (true, false) => Liveness::NotRunning,
    })
}

/// The PID in a PID file, if the file exists, is a regular file (not a
/// symlink) and holds a positive number.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// The PID file is a label for people and for systemd's `PIDFile=`; if it
/// was deleted under a running orchestrator (`git clean -fX`), write it
/// again. Only the run lock's holder runs the loop that calls this.
pub fn restore_pid_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        let _ = store::write_atomically(path, format!("{}\n", sys::getpid()).as_bytes(), 0o644);
    }
}

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

/// Opens `.rasen/` (creating it, 0755 at most) for locking. The lock is on
/// the directory rather than on a file inside it, so nothing that cleans
/// files (`git clean -fX`, a careless `rm .rasen/*.lock`) can make a running
/// orchestrator invisible and let a second one start.
fn open_rasen_dir(project: &Project) -> Result<File> {
    let dir = project.rasen_dir();
    store::create_dir(&dir)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&dir)
        .map_err(|e| Error::io(&dir, "cannot open for the run lock", e))
}

fn flush_stdio() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}
