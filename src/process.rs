//! What `/proc` says about processes, and signalling a whole session.
//!
//! An agent session runs in a session of its own (the agent is started
//! with `setsid`), so "every process of the agent" is "every process in
//! that session": a `timeout 300 npm test` that moves itself into a new
//! process group is still in it. Only a process that calls `setsid` itself
//! leaves; nothing short of a cgroup could follow that one.
//!
//! Everything here reads `/proc` (Linux); where it is missing, the
//! functions find nothing and callers fall back to the process group.
//! This module signals only the PIDs and sessions its callers name; it
//! never decides whom to stop, and reads no state file.

use std::path::Path;

use crate::sys;

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessInfo {
    /// 'R', 'S', 'D', … and 'Z' for a zombie.
    pub state: char,
    pub process_group: i32,
    pub session: i32,
}

/// What `/proc/PID/stat` says of `pid`; `None` when there is no such process.
pub fn info(pid: i32) -> Option<ProcessInfo> {
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

/// Every PID in `/proc`, live or zombie; none without `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).collect()
}

/// True while `pid` is a process that is not a zombie.
pub fn is_live(pid: i32) -> bool {
    matches!(info(pid), Some(p) if p.state != 'Z')
}

/// The live (not zombie) processes of session `session`.
pub fn session_members(session: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(info(pid), Some(p) if p.session == session && p.state != 'Z'))
        .collect()
}

/// True when `pid`'s environment (`/proc/PID/environ`, as it was given at
/// exec) holds `entry` (`NAME=value`) as one whole variable. False when it
/// cannot be read: a process of another user, or one that made itself
/// non-dumpable, keeps its environment to itself.
pub fn environment_holds(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|&b| b == 0).any(|variable| variable == entry))
}

/// The real user id of `pid`, from the `Uid:` line of `/proc/PID/status`.
pub fn real_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// True while some live process is in session `session`.
pub fn session_alive(session: i32) -> bool {
    !session_members(session).is_empty()
}

/// Sends `signal` to every process of session `session`: its leader's
/// process group (which also works without `/proc`), then each member
/// found in `/proc`, whatever group it moved to.
pub fn signal_session(session: i32, signal: i32) {
    let _ = sys::kill_process_group(session, signal);
    for pid in session_members(session) {
        let _ = sys::kill(pid, signal);
    }
}

/// True when a live process named `name` (its `comm`) works in `dir` or
/// below it (its cwd). A `git commit -a` waiting for its editor or a hook
/// keeps `.git/index.lock` without holding it open: only this shows it.
pub fn runs_in(name: &str, dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else { return false };
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim_end() == name
        })
        .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
        .any(|cwd| cwd.starts_with(&dir))
}

/// True when some process has `path` open (a scan of `/proc/*/fd`).
pub fn is_open_anywhere(path: &Path) -> bool {
    all_pids()
        .into_iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|fds| fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()))
        .any(|target| target == path)
}

/// The PID holding an exclusive `flock` on the file or directory at
/// `path`, from `/proc/locks`. This is the kernel's own answer to "who has
/// the run lock?", so `stop` never has to trust a PID written in a file.
pub fn flock_holder(path: &Path) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let id =
        format!("{:02x}:{:02x}:{}", libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| holder_in_line(line, &id))
}

/// From a `/proc/locks` line such as
/// `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`, the PID when it is a
/// granted exclusive flock on the file `id` (`MAJOR:MINOR:INODE`).
fn holder_in_line(line: &str, id: &str) -> Option<i32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Waiters are listed as "1: -> FLOCK …": they hold nothing.
    match fields.as_slice() {
        [_, "FLOCK", _, "WRITE", pid, file, ..] if file.eq_ignore_ascii_case(id) => {
            pid.parse().ok()
        }
        _ => None,
    }
}

/// Whether `pid` may be a live rasen (this same program): false only when
/// `/proc` shows it is gone, a zombie, or another program (neither its
/// executable nor its command name is this process's). When `/proc`
/// cannot tell, the answer is true: the caller then leaves its files be.
pub fn may_be_rasen(pid: i32) -> bool {
    let proc_readable = Path::new("/proc/self/stat").exists();
    match info(pid) {
        None => !proc_readable,
        Some(p) if p.state == 'Z' => false,
        Some(_) => {
            let exe = same_as_mine(pid, "exe", |p| {
                use std::os::unix::ffi::OsStringExt;
                Some(std::fs::read_link(p).ok()?.into_os_string().into_vec())
            });
            let comm = same_as_mine(pid, "comm", |p| std::fs::read(p).ok());
            matches!((exe, comm), (Some(true), _) | (_, Some(true)) | (None, None))
        }
    }
}

/// Whether `/proc/PID/WHAT` reads the same as `/proc/self/WHAT`; `None`
/// when either cannot be read.
fn same_as_mine(pid: i32, what: &str, read: impl Fn(String) -> Option<Vec<u8>>) -> Option<bool> {
    let theirs = read(format!("/proc/{pid}/{what}"))?;
    Some(theirs == read(format!("/proc/self/{what}"))?)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn reads_this_process() {
        let me = info(sys::getpid()).expect("/proc/self/stat");
        assert_ne!(me.state, 'Z');
        assert!(session_members(me.session).contains(&sys::getpid()));
        assert_eq!(info(-5), None);
    }

    #[test]
    fn reads_the_environment_and_user_of_a_process() {
        let me = sys::getpid();
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environment_holds(me, format!("PATH={path}").as_bytes()));
        assert!(!environment_holds(me, b"PATH"), "a name alone is not a variable");
        assert!(!environment_holds(me, format!("PATH={path}x").as_bytes()));
        assert!(!environment_holds(-5, b"PATH"));
        // /proc/PID belongs to the effective user, which for the test is
        // also the real one.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(format!("/proc/{me}")).unwrap().uid();
        assert_eq!(real_uid(me), Some(owner));
        assert_eq!(real_uid(-5), None);
    }

    #[test]
    fn finds_the_holder_of_a_flock() {
        let dir = std::env::temp_dir().join(format!("rasen-process-{}", sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        assert_eq!(flock_holder(&dir), None);
        assert!(sys::try_lock_exclusive(file.as_fd()).unwrap());
        assert_eq!(flock_holder(&dir), Some(sys::getpid()));
        drop(file);
        assert_eq!(flock_holder(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tells_a_rasen_from_another_program_and_from_the_dead() {
        assert!(may_be_rasen(sys::getpid()));
        let mut other = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = other.id() as i32;
        let while_alive = may_be_rasen(pid);
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(!while_alive, "sleep is not rasen");
        assert!(!may_be_rasen(pid), "a reaped process is gone");
    }

    #[test]
    fn parses_proc_locks_lines() {
        let id = "fe:00:5678";
        assert_eq!(
            holder_in_line("1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF", id),
            Some(1234)
        );
        assert_eq!(holder_in_line("1: -> FLOCK  ADVISORY  WRITE 99 fe:00:5678 0 EOF", id), None);
        assert_eq!(holder_in_line("2: FLOCK  ADVISORY  READ 1234 fe:00:5678 0 EOF", id), None);
        assert_eq!(holder_in_line("3: POSIX  ADVISORY  WRITE 1234 fe:00:5678 0 EOF", id), None);
        assert_eq!(holder_in_line("4: FLOCK  ADVISORY  WRITE 1234 fe:00:56789 0 EOF", id), None);
    }
}
