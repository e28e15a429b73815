//! Signals become plain facts the loop can look at. The handlers do only
//! async-signal-safe work: store into an atomic, then write one byte to a
//! non-blocking, close-on-exec self-pipe. Anything that waits (the agent's
//! output, the pause between sessions, a usage-limit wait) polls that pipe's
//! read end too, so SIGTERM takes effect at once instead of after a sleep.
//!
//! SIGTERM and SIGINT ask for a graceful shutdown; each further one is
//! counted so a second Ctrl-C can skip the grace period. SIGHUP asks for the
//! configuration to be re-read at the next safe point.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

static SHUTDOWN_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SHUTDOWN_COUNT: AtomicU32 = AtomicU32::new(0);
static RELOAD_REQUESTED: AtomicBool = AtomicBool::new(false);
static WAKE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static WAKE_READ: OnceLock<OwnedFd> = OnceLock::new();

extern "C" fn on_shutdown_signal(signal: libc::c_int) {
    sys::preserving_errno(|| {
        // Keep the first signal: it decides the exit code (130 or 143).
        let _ = SHUTDOWN_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        SHUTDOWN_COUNT.fetch_add(1, Ordering::SeqCst);
        sys::write_wake_byte(WAKE_WRITE_FD.load(Ordering::SeqCst));
    });
}

extern "C" fn on_reload_signal(_signal: libc::c_int) {
    sys::preserving_errno(|| {
        RELOAD_REQUESTED.store(true, Ordering::SeqCst);
        sys::write_wake_byte(WAKE_WRITE_FD.load(Ordering::SeqCst));
    });
}

/// Creates the self-pipe, then installs the handlers (in that order, so a
/// handler never sees a missing pipe). Call once, before the loop starts.
pub fn install() -> Result<()> {
    install_handlers().map_err(|e| Error::failed(format!("cannot install signal handlers: {e}")))
}

fn install_handlers() -> io::Result<()> {
    if WAKE_READ.get().is_none() {
        let (read, write) = sys::pipe()?;
        sys::set_nonblocking(&read)?;
        sys::set_nonblocking(&write)?;
        WAKE_WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(write); // lives as long as the process: handlers use it
        let _ = WAKE_READ.set(read);
    }
    sys::install_signal_handler(libc::SIGTERM, on_shutdown_signal)?;
    sys::install_signal_handler(libc::SIGINT, on_shutdown_signal)?;
    sys::install_signal_handler(libc::SIGHUP, on_reload_signal)?;
    Ok(())
}

/// The signal that asked for shutdown (SIGTERM or SIGINT), if any did.
pub fn shutdown_signal() -> Option<i32> {
    match SHUTDOWN_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// How many shutdown signals have arrived (a second one means "now").
pub fn shutdown_count() -> u32 {
    SHUTDOWN_COUNT.load(Ordering::SeqCst)
}

/// True once after each SIGHUP.
pub fn take_reload_request() -> bool {
    RELOAD_REQUESTED.swap(false, Ordering::SeqCst)
}

/// The self-pipe's read end, for callers that poll other fds as well.
/// `None` before `install`.
pub fn wake_fd() -> Option<RawFd> {
    WAKE_READ.get().map(|fd| fd.as_raw_fd())
}

/// Empties the self-pipe after a wake-up (the facts stay in the atomics).
pub fn drain_wake_pipe() {
    if let Some(fd) = WAKE_READ.get() {
        sys::drain_nonblocking(fd.as_fd());
    }
}

/// Sleeps for `duration`, returning early (true) when shutdown is asked
/// for. Also wakes on SIGHUP but keeps sleeping; the caller reloads later.
pub fn sleep_unless_shutdown(duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if shutdown_signal().is_some() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout_ms = left.as_millis().min(60_000) as i32 + 1;
        match wake_fd() {
            Some(fd) => {
                let _ = sys::poll_readable(&[fd], timeout_ms);
                drain_wake_pipe();
            }
            None => std::thread::sleep(left.min(Duration::from_millis(100))),
        }
    }
}
