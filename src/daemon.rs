//! Who is running, and becoming a daemon.
//!
//! **The run lock.** An orchestrator, foreground or background, holds an
//! exclusive `flock` on `.rasen/run.lock` for its whole life. That file is
//! never renamed or removed, so every process that opens it locks the same
//! inode. "Is it running?" is answered by that lock alone: the kernel drops
//! it the instant the process dies (even by `kill -9`, even while it is
//! still an unreaped zombie), so a stale PID file is always recognised and
//! a reused PID is never mistaken for the daemon. The PID file beside it is
//! only a label: written after the lock is taken, removed before it is let
//! go, and never trusted without the lock.
//!
//! **Daemonizing** follows the classic sequence, one step per line in
//! `become_daemon`: fork, setsid, fork again (so the daemon is not a session
//! leader and can never reacquire a terminal), stdin from /dev/null,
//! stdout/stderr appended to the log, umask without group/world write, lock,
//! PID file, signal handlers — and only then "ready" is written to a pipe on
//! which the original process waits. That process prints `Daemon started
//! with PID N` and exits 0 only after reading it; any failure on the way is
//! sent through the same pipe and printed by it, so errors reach the
//! terminal. No sleep-and-hope anywhere.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::project::Project;
use crate::status::{RunState, StatusFile};
use crate::{logger, signals, store, sys};

/// The exclusive lock of a running orchestrator. Dropping it (or the
/// process dying) releases it; `release` also removes the PID file first.
pub struct RunLock {
    _file: File,
    pid_file: std::path::PathBuf,
}

/// What the run lock and PID file say about a project.
#[derive(Debug, PartialEq)]
pub enum Liveness {
    /// The lock is held; `pid` is from the PID file when it is readable.
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
        let path = project.run_lock_file();
        let file = open_lock_file(&path)?;
        for attempt in 0..10 {
            if sys::try_lock_exclusive(&file).map_err(|e| Error::io(&path, "cannot lock", e))? {
                return Ok(RunLock { _file: file, pid_file: project.pid_file() });
            }
            if attempt < 9 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(already_running(project, read_pid_file(&project.pid_file())))
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

/// The refusal given when an orchestrator already runs on the project.
/// The holder writes the PID file just after taking the lock; when the
/// file is not there yet, give it a moment so the refusal names the PID.
/// Without a PID file (removed by hand) the PID comes from status.json, as
/// `status` and `stop` take it.
pub fn already_running(project: &Project, pid: Option<i32>) -> Error {
    let pid = pid
        .or_else(|| wait_for_pid_file(project, Duration::from_secs(1)))
        .or_else(|| status_file_pid(project));
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
    let path = project.run_lock_file();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if left_behind { Liveness::Stale { pid } } else { Liveness::NotRunning });
        }
        Err(e) => return Err(Error::io(&path, "cannot open", e)),
    };
    // A shared lock succeeds unless someone holds the exclusive one; it is
    // released again when `file` is dropped at the end of this function.
    let free =
        sys::try_lock_shared(&file).map_err(|e| Error::io(&path, "cannot query the lock", e))?;
    Ok(match (free, left_behind) {
        (false, _) => Liveness::Running { pid },
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

/// Starts `body` as a daemon and reports in the calling process: returns
/// the exit code for the caller (0 once the daemon said it is ready). In
/// the daemon itself this never returns: it exits with `body`'s code.
pub fn run_in_background(project: &Project, body: impl FnOnce(RunLock) -> i32) -> Result<i32> {
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
fn become_daemon(project: &Project, ready: OwnedFd, body: impl FnOnce(RunLock) -> i32) -> i32 {
    let mut ready = File::from(ready);
    if let Err(e) = sys::setsid() {
        return report_failure(&mut ready, &format!("setsid failed: {e}"));
    }
    match sys::fork() {
        Ok(sys::Fork::Parent(_)) => sys::exit_immediately(0), // the grandchild carries on
        Ok(sys::Fork::Child) => {}
        Err(e) => return report_failure(&mut ready, &format!("second fork failed: {e}")),
    }
    let lock = match prepare_daemon_process(project) {
        Ok(lock) => lock,
        Err(e) => return report_failure(&mut ready, &e.message),
    };
    let _ = writeln!(ready, "ready {}", sys::getpid());
    drop(ready); // EOF for the waiting parent
    body(lock)
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

fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::io(dir, "cannot create", e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, "cannot open the run lock", e))
}

fn flush_stdio() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessInfo {
    /// 'R', 'S', 'D', … and 'Z' for a zombie.
    pub state: char,
    pub process_group: i32,
    pub session: i32,
}

/// What `/proc/PID/stat` says of `pid`; `None` when there is no such process.
pub fn process_info(pid: i32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcessInfo {
        state: fields.first()?.chars().next()?,
        process_group: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
    })
}

/// After a crash (`kill -9` of the orchestrator, a reboot of nothing but
/// rasen), its agent may still run: stop that process group — SIGTERM,
/// a short grace, SIGKILL — if it still lives in the recorded session.
/// Returns the group's id when there was one to stop.
pub fn stop_orphaned_agent(status: &StatusFile) -> Option<i32> {
    let (group, session) = (status.agent_pid?, status.session_id?);
    if !group_alive_in_session(group, session) {
        return None;
    }
    let _ = sys::kill_process_group(group, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while group_alive_in_session(group, session) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive_in_session(group, session) {
        let _ = sys::kill_process_group(group, libc::SIGKILL);
    }
    Some(group)
}

/// True when some live process is in process group `pgid` and in session
/// `session`: the check that a recorded agent group still belongs to the
/// orchestrator before `stop --force` signals it.
pub fn group_alive_in_session(pgid: i32, session: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process_info)
        .any(|p| p.process_group == pgid && p.session == session && p.state != 'Z')
}

/// `rasen stop`: SIGTERM and wait for the lock to be let go (graceful), or
/// SIGKILL the orchestrator and its agent's process group (`force`). A
/// PID file nobody holds the lock for is stale: it is removed and nothing is
/// signalled, whoever has that PID now.
pub fn stop(project: &Project, force: bool, timeout: Duration) -> Result<i32> {
    let pid = match liveness(project)? {
        Liveness::NotRunning => {
            say!("No daemon running");
            stop_agent_left_behind(project);
            return Ok(0);
        }
        Liveness::Stale { pid } => {
            remove_stale_pid_file(project, pid);
            stop_agent_left_behind(project);
            return Ok(0);
        }
        Liveness::Running { pid } => pid.or_else(|| status_file_pid(project)),
    };
    let pid = pid.ok_or_else(|| {
        Error::failed(format!(
            "an orchestrator holds {} but its PID is unknown (PID file missing); stop it with kill",
            project.show(&project.run_lock_file())
        ))
    })?;
    if force {
        kill_now(project, pid)
    } else {
        stop_gracefully(project, pid, timeout)
    }
}

/// `stop` with no orchestrator alive: an agent it left behind is stopped
/// too, since "stop" means nothing of this project keeps running.
fn stop_agent_left_behind(project: &Project) {
    let Ok(Some(status)) = store::load::<StatusFile>(&project.status_file()) else { return };
    if let Some(group) = stop_orphaned_agent(&status) {
        say!("Stopped agent process group {group}, left behind by an orchestrator that was killed");
    }
}

fn remove_stale_pid_file(project: &Project, pid: Option<i32>) {
    let _ = std::fs::remove_file(project.pid_file());
    let who = pid.map(|p| format!(" (process {p} is gone or is not rasen)")).unwrap_or_default();
    say!("No daemon running; removed stale PID file {}{who}", project.show(&project.pid_file()));
}

fn stop_gracefully(project: &Project, pid: i32, timeout: Duration) -> Result<i32> {
    say!("Stopping daemon (PID {pid}), waiting up to {}s...", timeout.as_secs());
    sys::kill(pid, libc::SIGTERM)
        .map_err(|e| Error::failed(format!("cannot signal PID {pid}: {e}")))?;
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
/// its agent's group if that group still lives in the orchestrator's
/// session. State is left as the last atomic write made it, for `resume`.
fn kill_now(project: &Project, pid: i32) -> Result<i32> {
    let session = process_info(pid).map(|p| p.session);
    let agent_group = status_file_agent_pid(project);
    sys::kill(pid, libc::SIGKILL)
        .map_err(|e| Error::failed(format!("cannot kill PID {pid}: {e}")))?;
    if let (Some(group), Some(session)) = (agent_group, session) {
        if group_alive_in_session(group, session) {
            let _ = sys::kill_process_group(group, libc::SIGKILL);
        }
    }
    if !wait_until_stopped(project, Duration::from_secs(10))? {
        return Err(Error::failed(format!("PID {pid} still holds the run lock after SIGKILL")));
    }
    mark_killed(project)?;
    say!("Daemon killed (PID {pid}); its state is kept: 'rasen resume' continues the task");
    Ok(0)
}

/// Polls the run lock until it is free or `timeout` passes.
fn wait_until_stopped(project: &Project, timeout: Duration) -> Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !matches!(liveness(project)?, Liveness::Running { .. }) {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After `stop --force`: take the (now free) run lock and record in
/// status.json that the run was killed, so `status` does not call it a
/// crash. The plan keeps its in_progress subtask for `resume`.
fn mark_killed(project: &Project) -> Result<()> {
    let lock = RunLock::acquire(project)?;
    let path = project.status_file();
    if let Some(mut status) = store::load::<StatusFile>(&path)? {
        status.status = RunState::Stopped;
        status.reason = Some("killed".to_string());
        status.last_error = Some("killed by 'rasen stop --force'".to_string());
        status.pid = None;
        status.agent_pid = None;
        store::save(&path, &status)?;
    }
    lock.release();
    Ok(())
}

fn status_file_pid(project: &Project) -> Option<i32> {
    store::load::<StatusFile>(&project.status_file()).ok().flatten().and_then(|s| s.pid)
}

fn status_file_agent_pid(project: &Project) -> Option<i32> {
    store::load::<StatusFile>(&project.status_file()).ok().flatten().and_then(|s| s.agent_pid)
}
