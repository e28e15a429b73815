//! Process checks and signals for tests, read from /proc. A zombie counts
//! as gone everywhere here: PID 1 reaps orphans late on these machines.

use std::path::PathBuf;

/// State letter and process group from /proc/PID/stat; None if it is gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// True when the process no longer runs. A zombie counts as gone: PID 1
/// reaps orphans late on these machines.
pub fn process_gone(pid: i32) -> bool {
    !matches!(proc_stat(pid), Some((state, _)) if state != 'Z')
}

/// True when no live (non-zombie) process is in process group `pgid`.
pub fn process_group_gone(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    let pids = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    !pids.filter_map(proc_stat).any(|(state, pgrp)| pgrp == pgid && state != 'Z')
}

/// The live (non-zombie) processes of process group `pgid`.
pub fn process_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(
        |&pid| matches!(proc_stat(pid), Some((state, pgrp)) if pgrp == pgid && state != 'Z'),
    )
    .collect()
}

/// Sends `sig` to `pid`; false if that failed (no such process…).
pub fn send_signal(pid: i32, sig: i32) -> bool {
    assert!(pid > 0, "refusing to signal PID {pid}");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // pid > 0 so it targets one process, never a group or everyone.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Sends `sig` to every process in group `pgid`; false if that failed.
pub fn signal_group(pgid: i32, sig: i32) -> bool {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: as in send_signal; -pgid with pgid > 1 names exactly that group.
    unsafe { libc::kill(-pgid, sig) == 0 }
}

/// The fields of /proc/PID/stat after the command name: [0] state,
/// [1] ppid, [2] pgrp, [3] session, [4] tty_nr, …
pub fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    let rest = &stat[stat.rfind(')').expect("a command name in parentheses") + 1..];
    rest.split_whitespace().map(str::to_string).collect()
}

/// Where /proc/PID/fd/FD points.
pub fn fd_target(pid: i32, fd: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd/{fd}: {e}"))
}

/// SIGKILLs `pid` if it is alive and its command line contains one of
/// `needles`, so that a recycled PID of an unrelated process is never hit.
pub(super) fn kill_if_cmdline_mentions(pid: i32, needles: &[&str]) {
    if pid <= 0 || process_gone(pid) {
        return;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return };
    let cmdline = String::from_utf8_lossy(&cmdline);
    if needles.iter().any(|n| cmdline.contains(n)) {
        send_signal(pid, libc::SIGKILL);
    }
}
