//! Who is running: the run lock, the liveness it answers, and the PID file.
//!
//! An orchestrator, foreground or background, holds an exclusive `flock`
//! on the `.rasen` directory itself for its whole life. A directory is not
//! renamed or cleaned away by `git clean -fX` or an `rm .rasen/*`, so every
//! process that opens it locks the same inode. "Is it running?" is answered
//! by that lock alone: the kernel drops it the instant the process dies
//! (even by `kill -9`, even while it is still an unreaped zombie), so a
//! stale PID file is always recognised and a reused PID is never mistaken
//! for the daemon. Who holds it is asked of the kernel too (`/proc/locks`).
//!
//! The PID file is only a label for people and for systemd's `PIDFile=`:
//! written after the lock is taken, removed before it is let go, rewritten
//! by the holder if deleted under it, never trusted alone. It is 0600 like
//! everything in `.rasen/` (systemd reads it as root). rasen replaces or
//! removes only a PID file of its own (see `PidFile`): `background.pid_file:
//! README.md` must not cost anyone their README. This module never signals
//! a process and never forks: it only answers and records who runs.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::project::Project;
use crate::{process, store, sys};

/// The exclusive lock of a running orchestrator, on the `.rasen`
/// directory itself. Dropping it (or the process dying) releases it;
/// `release` also removes the PID file first.
pub struct RunLock {
    _dir: File,
    pid_file: PathBuf,
    /// Whether the PID file lies in `.rasen/` (see `PidFile::at`).
    pid_file_in_rasen_dir: bool,
}

/// What is at the PID file's path, as far as rasen may touch it.
#[derive(Debug, PartialEq)]
pub enum PidFile {
    Absent,
    /// rasen's own: a regular file holding a PID (the PID given), or any
    /// regular file at that name in `.rasen/`, where only rasen writes (a
    /// PID file with garbage in it there is still a stale PID file).
    Ours(Option<i32>),
    /// A file rasen did not write (README.md, a symlink, a directory):
    /// never replaced, never removed. `run` refuses to start over it.
    NotOurs,
}

impl PidFile {
    /// What is at `path`; `in_rasen_dir` says whether it lies in `.rasen/`.
    pub fn at(path: &Path, in_rasen_dir: bool) -> PidFile {
        match std::fs::symlink_metadata(path) {
            Err(_) => PidFile::Absent,
            Ok(meta) if !meta.is_file() => PidFile::NotOurs,
            Ok(_) => match read_pid_file(path) {
                Some(pid) => PidFile::Ours(Some(pid)),
                None if in_rasen_dir => PidFile::Ours(None),
                None => PidFile::NotOurs,
            },
        }
    }

    /// What is at the project's PID file path.
    pub fn of(project: &Project) -> PidFile {
        let path = project.pid_file();
        PidFile::at(&path, project.in_rasen_dir(&path))
    }
}

/// Fails (exit 2, naming `background.pid_file`) when the PID file path
/// reaches through a symlinked directory or holds a file rasen did not
/// write: what `run` and `resume` check before anything starts.
pub fn check_pid_file(project: &Project) -> Result<()> {
    let path = project.pid_file();
    project.refuse_links_on_the_way("background.pid_file", &path)?;
    match PidFile::of(project) {
        PidFile::NotOurs => Err(project.foreign_file_error("background.pid_file", &path, "PID")),
        _ => Ok(()),
    }
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
        if sys::try_lock_exclusive(dir.as_fd()).map_err(|e| Error::io(&path, "cannot lock", e))? {
            let pid_file = project.pid_file();
            let pid_file_in_rasen_dir = project.in_rasen_dir(&pid_file);
            return Ok(Some(RunLock { _dir: dir, pid_file, pid_file_in_rasen_dir }));
        }
        Ok(None)
    }

    /// Writes this process's PID into the PID file (atomically, 0600),
    /// unless a file rasen did not write is there.
    pub fn write_pid_file(&self) -> Result<()> {
        if PidFile::at(&self.pid_file, self.pid_file_in_rasen_dir) == PidFile::NotOurs {
            return Err(Error::config(format!(
                "{}: exists and is not a PID file rasen wrote; rasen never replaces it \
                 (choose another path for background.pid_file in rasen.yml)",
                self.pid_file.display()
            )));
        }
        write_pid_file(&self.pid_file)
    }

    /// Removes the PID file (when it is rasen's), then lets the lock go.
    pub fn release(self) {
        if matches!(PidFile::at(&self.pid_file, self.pid_file_in_rasen_dir), PidFile::Ours(_)) {
            let _ = std::fs::remove_file(&self.pid_file);
        }
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
    let deadline = Instant::now() + timeout;
    loop {
        let pid = read_pid_file(&project.pid_file());
        if pid.is_some() || Instant::now() >= deadline {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the run lock whether an orchestrator runs, without disturbing it.
pub fn liveness(project: &Project) -> Result<Liveness> {
    // A PID file of rasen's that nobody holds the lock for is stale, even
    // one with garbage in it in `.rasen/`: `stop` must still clean it up.
    // A file rasen did not write is no PID file at all.
    let (pid, left_behind) = match PidFile::of(project) {
        PidFile::Ours(pid) => (pid, true),
        PidFile::Absent | PidFile::NotOurs => (None, false),
    };
    let path = project.rasen_dir();
    let dir = match File::open(&path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if left_behind { Liveness::Stale { pid } } else { Liveness::NotRunning });
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(not_the_owner(project, &path))
        }
        Err(e) => return Err(Error::io(&path, "cannot open", e)),
    };
    // A shared lock succeeds unless someone holds the exclusive one; it is
    // released again when `dir` is dropped at the end of this function.
    let free = sys::try_lock_shared(dir.as_fd())
        .map_err(|e| Error::io(&path, "cannot query the lock", e))?;
    Ok(match (free, left_behind) {
        (false, _) => Liveness::Running { pid: process::flock_holder(&path).or(pid) },
        (true, true) => Liveness::Stale { pid },
        (true, false) => Liveness::NotRunning,
    })
}

/// `.rasen/` is private to its owner (0700): another user, root aside,
/// cannot even ask whether a run is going on.
fn not_the_owner(project: &Project, dir: &Path) -> Error {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir).map(|m| format!(" (uid {})", m.uid())).unwrap_or_default();
    Error::failed(format!(
        "{}: permission denied: a project's rasen state is private to the user who runs \
         rasen there{owner}; run this as that user, or as root",
        project.show(dir)
    ))
}

/// The PID in a PID file, if the file exists, is a regular file (not a
/// symlink) and holds a positive number. Reads a few bytes at most: a PID
/// file is short, and whatever else is there is not one.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    let file = store::open_to_read(path).ok()??;
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// If the PID file was deleted under a running orchestrator (`git clean
/// -fX`), writes it again. Only the run lock's holder runs the loop that
/// calls this.
pub fn restore_pid_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        let _ = write_pid_file(path);
    }
}

fn write_pid_file(path: &Path) -> Result<()> {
    let text = format!("{}\n", sys::getpid());
    store::write_atomically(path, text.as_bytes(), store::STATE_FILE_MODE)
}

/// Opens `.rasen/` for locking, creating it 0700 or making an existing one
/// private (never through a symlink). The lock is on the directory rather
/// than on a file inside it, so nothing that cleans files (`git clean
/// -fX`, a careless `rm .rasen/*.lock`) can make a running orchestrator
/// invisible and let a second one start.
fn open_rasen_dir(project: &Project) -> Result<File> {
    store::open_private_dir(&project.user_path(&project.rasen_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_read_only_when_it_holds_a_positive_number() {
        let dir = std::env::temp_dir().join(format!("rasen-lock-{}", sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rasen.pid");
        assert_eq!(read_pid_file(&path), None);
        for (text, pid) in [("42\n", Some(42)), ("0\n", None), ("-7", None), ("garbage", None)] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_pid_file(&path), pid, "{text:?}");
        }
        std::fs::remove_file(&path).unwrap();
        restore_pid_file(&path);
        assert_eq!(read_pid_file(&path), Some(sys::getpid()));
        std::fs::write(&path, "7\n").unwrap();
        restore_pid_file(&path); // present: left as it is
        assert_eq!(read_pid_file(&path), Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_pid_file_of_rasens_is_ours() {
        let dir = std::env::temp_dir().join(format!("rasen-pid-kinds-{}", sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rasen.pid");
        assert_eq!(PidFile::at(&path, false), PidFile::Absent);
        std::fs::write(&path, "42\n").unwrap();
        assert_eq!(PidFile::at(&path, false), PidFile::Ours(Some(42)));
        std::fs::write(&path, "A project for a rasen test.\n").unwrap();
        assert_eq!(PidFile::at(&path, false), PidFile::NotOurs, "README.md is not ours");
        assert_eq!(PidFile::at(&path, true), PidFile::Ours(None), "garbage in .rasen/ is");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), &path).unwrap();
        std::fs::write(dir.join("target"), "42\n").unwrap();
        assert_eq!(PidFile::at(&path, true), PidFile::NotOurs, "a link is never ours");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
