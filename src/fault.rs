//! Fault injection for tests: with `RASEN_FAULT=POINT` (or `POINT:N`) a
//! debug build of rasen kills itself with SIGKILL — exactly what `kill -9`
//! does: no destructor, no handler, no last write — the first (or N-th)
//! time it passes the named point. The points sit between the writes
//! whose order matters, so a test can prove that a kill at that very
//! instant loses nothing.
//!
//! In release builds `point` is empty and the variable is never read.
//! This module never writes a file and never changes what rasen does,
//! except to die where it is told to.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The environment variable that names the fault point.
pub const ENV: &str = "RASEN_FAULT";

/// A place where a test may have rasen killed, in the order a run passes
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// An agent session's attempt is recorded as `running`; the agent has
    /// not been started yet.
    SessionRecorded,
    /// The agent (or a verify command) runs and status.json names its PID.
    AgentStarted,
    /// The agent session ended; nothing about it is saved yet.
    SessionEnded,
    /// The initializer's plan is accepted and saved; its attempt is not
    /// finished and status.json still says planning.
    PlanAccepted,
    /// A coder verdict's plan is saved; its good commit and attempt are not.
    PlanSaved,
    /// The good commit of a completed subtask is saved; its attempt is not
    /// finished yet.
    GoodCommitSaved,
    /// A coder session's record is finished in the history: the last
    /// write of its step (the plan, good commit and status.json are saved).
    HistorySaved,
}

impl Point {
    /// Every point, in the order a run passes them.
    pub const ALL: [Point; 7] = [
        Point::SessionRecorded,
        Point::AgentStarted,
        Point::SessionEnded,
        Point::PlanAccepted,
        Point::PlanSaved,
        Point::GoodCommitSaved,
        Point::HistorySaved,
    ];

    /// The name `RASEN_FAULT` uses.
    pub fn name(self) -> &'static str {
        match self {
            Point::SessionRecorded => "after-session-recorded",
            Point::AgentStarted => "after-agent-started",
            Point::SessionEnded => "after-session-ended",
            Point::PlanAccepted => "after-plan-accepted",
            Point::PlanSaved => "after-plan-save",
            Point::GoodCommitSaved => "after-good-commit",
            Point::HistorySaved => "after-history-save",
        }
    }
}

/// Kills rasen here if `RASEN_FAULT` names this point and this is the
/// N-th time the process passes it. Does nothing in release builds.
pub fn point(at: Point) {
    if cfg!(debug_assertions) {
        kill_if_named(at);
    }
}

/// How many times this process has passed the point `RASEN_FAULT` names.
static PASSED: AtomicU32 = AtomicU32::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

fn kill_if_named(at: Point) {
    let Some(spec) = std::env::var_os(ENV) else { return };
    match parse(&spec.to_string_lossy()) {
        Ok((point, nth)) if point == at => {
            if PASSED.fetch_add(1, Ordering::Relaxed) + 1 == nth {
                die_at(at);
            }
        }
        Ok(_) => {}
        Err(why) if !WARNED.swap(true, Ordering::Relaxed) => {
            eprintln!("{} {ENV}: {why}; no fault is injected", crate::clock::now_iso());
        }
        Err(_) => {}
    }
}

/// SIGKILL to itself, as `kill -9` from outside would do.
fn die_at(at: Point) -> ! {
    eprintln!("{} {ENV}: killed with SIGKILL at {}", crate::clock::now_iso(), at.name());
    let _ = crate::sys::kill(crate::sys::getpid(), libc::SIGKILL);
    // Not reached: SIGKILL cannot be caught. Should it be, leave as abruptly.
    crate::sys::exit_immediately(128 + libc::SIGKILL)
}

/// `POINT` or `POINT:N` (N ≥ 1, the N-th pass) → the point and N.
fn parse(spec: &str) -> Result<(Point, u32), String> {
    let (name, nth) = match spec.split_once(':') {
        Some((name, n)) => match n.parse::<u32>() {
            Ok(n) if n >= 1 => (name, n),
            _ => return Err(format!("{spec:?}: the count after ':' must be 1 or more")),
        },
        None => (spec, 1),
    };
    let point = Point::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
        let known: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
        format!("{name:?} is not a fault point (known: {})", known.join(", "))
    })?;
    Ok((point, nth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_a_point_and_which_pass() {
        assert_eq!(parse("after-plan-save"), Ok((Point::PlanSaved, 1)));
        assert_eq!(parse("after-history-save:3"), Ok((Point::HistorySaved, 3)));
        for point in Point::ALL {
            assert_eq!(parse(point.name()), Ok((point, 1)));
        }
    }

    #[test]
    fn a_bad_spec_says_what_is_wrong() {
        let err = parse("after-plan-saved").unwrap_err();
        assert!(err.contains("\"after-plan-saved\" is not a fault point"), "{err}");
        assert!(err.contains("after-plan-save,"), "{err}");
        for bad in ["after-plan-save:0", "after-plan-save:x", "after-plan-save:"] {
            assert!(parse(bad).unwrap_err().contains("1 or more"), "{bad}");
        }
    }
}
