//! The few libc calls rasen needs that std does not offer, each wrapped once,
//! in a safe function wherever it can be. Errors come back as `io::Error`
//! (errno), never as -1. An fd that is borrowed is a `BorrowedFd` (or
//! `impl AsFd`), one whose ownership moves is an `OwnedFd`. A bare `RawFd`
//! is left only where no Rust object owns the number (the leaked self-pipe
//! end a signal handler writes to, the fds listed in `/proc/self/fd`) and
//! in `poll_readable`, which only reads the numbers it is given.
//!
//! The rule for `unsafe`: every `unsafe` block in rasen lives here and
//! says why it is sound, with one exception. Two wrappers cannot be made
//! safe because only their caller knows whether their preconditions hold:
//! [`fork`] and [`close_inherited_fds`] are `unsafe fn`s whose `# Safety`
//! section lists those preconditions, and each call (in `daemon.rs` only)
//! is an `unsafe { }` block with a `// SAFETY:` comment saying why they
//! hold there. This module never decides anything for rasen: each function
//! is one libc call, or a fixed handful of them, and its error handling.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns libc's `-1 + errno` convention into an `io::Result`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries a call that failed with EINTR.
fn cvt_retry(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Takes an exclusive `flock` on `fd` without waiting. `Ok(false)` when
/// another open file description holds it.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: flock only reads the fd number; an invalid fd yields EBADF.
    match cvt_retry(|| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive `flock` on `fd`, waiting for it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: as above; blocking is fine, EINTR is retried.
    cvt_retry(|| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) }).map(drop)
}

/// Takes a shared `flock` on `fd` without waiting. `Ok(false)` when someone
/// holds it exclusively. Used to ask "is the run lock held?".
pub fn try_lock_shared(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: as above.
    match cvt_retry(|| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        // kill(0) and kill(-1) mean "my group" and "everyone": never wanted.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill has no memory effects; pid > 0 names one process.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Sends `signal` to every process in process group `pgid`.
pub fn kill_process_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: killpg has no memory effects; pgid > 1 names one group.
    cvt(unsafe { libc::killpg(pgid, signal) }).map(drop)
}

/// The result of `fork`, seen from each side.
pub enum Fork {
    Parent(i32),
    Child,
}

/// Forks: returns in both processes, saying which one this is.
///
/// # Safety
///
/// - The process must have a single thread. The child is a copy of the
///   calling thread alone: a lock another thread held (the allocator's,
///   stdio's, the logger's) would stay locked in it forever, and data
///   another thread was changing would be left half-changed.
/// - The child must never return past the function that forked: it ends
///   with [`exit_immediately`]. Otherwise destructors and exit handlers
///   run in both processes on what they share (files, lock files,
///   temporary files, the terminal).
/// - Buffered stdio must be flushed before, or both processes write the
///   same bytes.
pub unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: the caller guarantees the preconditions above; fork itself
    // takes no pointer.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Starts a new session; the caller becomes its leader, without a terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no memory effects; fails with EPERM for a group leader.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Leaves the process at once, without running atexit handlers or flushing
/// stdio buffers that the other side of a fork still owns.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes reads and writes on `fd` return EAGAIN instead of blocking.
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: fcntl F_GETFL/F_SETFL only read and set the fd's flags.
    let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Writes one byte to `fd`, ignoring every error. Async-signal-safe: this is
/// what a signal handler calls to wake the main loop. A raw number, as the
/// handler finds it in an atomic (the pipe's end is leaked for the
/// process's life); a bad one only makes write fail with EBADF.
pub fn write_wake_byte(fd: RawFd) {
    let byte = 1u8;
    // SAFETY: write is async-signal-safe; the buffer is one valid byte.
    let _ = unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Reads and discards whatever is buffered in the non-blocking `fd`.
pub fn drain_nonblocking(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: buf is valid for buf.len() bytes; fd is open (borrowed).
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
    }
}

/// Runs `f` and restores `errno` afterwards, as a signal handler must:
/// the code it interrupted may be about to read errno.
pub fn preserving_errno(f: impl FnOnce()) {
    // SAFETY: __errno_location returns this thread's errno slot (glibc and
    // musl alike), valid for the thread's whole life; reading and writing
    // an int there is async-signal-safe.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *slot };
    f();
    // SAFETY: as above.
    unsafe { *slot = saved };
}

/// Waits until one of `fds` is readable (or hung up), a signal arrives, or
/// `timeout_ms` passes (-1: no timeout). Returns, for each fd, whether it is
/// ready. A signal is not an error: it returns with nothing ready.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: pfds is a valid, initialised array of pfds.len() pollfd.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    match cvt(ret) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
        Ok(_) => Ok(pfds.iter().map(|p| p.revents != 0).collect()),
    }
}

/// True when `fd` is the write end of a pipe whose reader has gone (poll
/// reports POLLERR), so `rasen logs -f | head -1` can end when head does
/// rather than at the next log line.
pub fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: pfd is one valid, initialised pollfd; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    ready > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Sets the file mode creation mask, returning the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and has no memory effects.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Makes `to` refer to the same open file as `from` (dup2): `to` stays
/// open, under the same number, on another file (how a standard stream is
/// pointed at /dev/null or the log).
pub fn redirect_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the fd table; both fds are open
    // (borrowed), and whoever owns `to` keeps a valid fd under its number.
    cvt_retry(|| unsafe { libc::dup2(from.as_raw_fd(), to.as_raw_fd()) }).map(drop)
}

/// Installs `handler` for `signal` (with SA_RESTART, nothing blocked).
pub fn install_signal_handler(signal: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid starting point; we set the
    // handler address and flags, and the mask is emptied with sigemptyset.
    // The handler itself must be async-signal-safe (see signals.rs).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        cvt(libc::sigaction(signal, &action, std::ptr::null_mut())).map(drop)
    }
}

/// Restores the default disposition of `signal`.
pub fn default_signal_handler(signal: i32) -> io::Result<()> {
    // SAFETY: SIG_DFL is always a valid disposition.
    if unsafe { libc::signal(signal, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// For a freshly forked child before exec: every signal back to its default
/// disposition and nothing blocked, so the agent does not inherit rasen's
/// handlers' effects or an ignored SIGPIPE. Async-signal-safe only.
pub fn reset_signals_in_child() -> io::Result<()> {
    for signal in
        [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE, libc::SIGQUIT, libc::SIGCHLD]
    {
        default_signal_handler(signal)?;
    }
    // SAFETY: sigemptyset fills a valid local set; sigprocmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        cvt(libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())).map(drop)
    }
}

/// Waits for child `pid` to exit and returns its wait status.
pub fn wait_for_child(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: status is a valid int for waitpid to fill; pid names our child.
    cvt_retry(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(status)
}

/// This process's id.
pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// The user this process acts as (owns the files it creates).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no argument, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The numbers of this process's open fds from 3 up (from /proc/self/fd;
/// empty where there is no /proc). The listing's own fd is left out.
fn inherited_fds() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    // The directory stream's fd was in the listing and is closed by now.
    fds.into_iter().filter(|&fd| is_open(fd)).collect()
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags; a closed fd yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Marks every fd rasen was started with, from 3 up, close-on-exec, so
/// that no agent inherits its caller's files or pipes. Called first thing
/// in `main`, before rasen opens anything of its own.
pub fn close_inherited_fds_on_exec() {
    for fd in inherited_fds() {
        // SAFETY: F_SETFD only changes the fd's close-on-exec flag; no Rust
        // object's state depends on it.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Closes every fd from 3 up except `keep`: a daemon must not hold its
/// caller's files or pipes open for hours.
///
/// # Safety
///
/// No fd from 3 up other than `keep` may be owned or used by anything in
/// this process, now or later: an `OwnedFd` or `File` whose fd is closed
/// here would later read, write or close whichever file next gets its
/// number. That holds where every such fd is a leftover nobody in this
/// process refers to (in rasen: right after the daemon's second fork,
/// before it opens anything of its own).
pub unsafe fn close_inherited_fds(keep: BorrowedFd<'_>) {
    let keep = keep.as_raw_fd();
    for fd in inherited_fds().into_iter().filter(|&fd| fd != keep) {
        // SAFETY: the caller guarantees that nothing owns or uses `fd`.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Makes the child of `command`, between fork and exec, reset its signals
/// ([`reset_signals_in_child`]) and start a session of its own (`setsid`):
/// the agent then begins with default dispositions and an empty mask
/// whatever rasen installed, and every process it starts stays in its
/// session (and can be found and stopped there) even if it moves to
/// another process group, as `timeout` does.
pub fn start_in_own_session(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec. It only
    // calls async-signal-safe functions (signal, sigemptyset, sigprocmask,
    // setsid; no allocation, no lock), as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            reset_signals_in_child()?;
            setsid()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_is_exclusive_between_open_file_descriptions() {
        let dir = std::env::temp_dir().join(format!("rasen-sys-{}", getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        let a = std::fs::File::create(&path).unwrap();
        let b = std::fs::File::open(&path).unwrap();
        assert!(try_lock_exclusive(a.as_fd()).unwrap());
        assert!(!try_lock_exclusive(b.as_fd()).unwrap());
        assert!(!try_lock_shared(b.as_fd()).unwrap());
        drop(a);
        assert!(try_lock_shared(b.as_fd()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_to_signal_everyone() {
        assert!(kill(0, 0).is_err());
        assert!(kill(-1, 0).is_err());
        assert!(kill_process_group(1, 0).is_err());
    }

    #[test]
    fn poll_sees_a_written_pipe() {
        let (r, w) = pipe().unwrap();
        assert_eq!(poll_readable(&[r.as_raw_fd()], 0).unwrap(), vec![false]);
        write_wake_byte(w.as_raw_fd());
        assert_eq!(poll_readable(&[r.as_raw_fd()], 1000).unwrap(), vec![true]);
    }
}
