//! Proving that a process belongs to one of rasen's sessions, so that an
//! agent a killed run left behind is stopped, and nothing else ever is.
//!
//! Before each session (an agent's or a verify command's) starts, rasen
//! makes a [`SessionToken`] (128 bits from `/dev/urandom`), records it in
//! status.json, and gives it to the session's process as
//! `RASEN_SESSION_TOKEN`; every descendant inherits it. A process is
//! provably the session's when it runs as rasen's own (real) user and
//!
//! - its `/proc/PID/environ` holds the token (this finds the agent even if
//!   its PID was never saved, and descendants that left its session), or
//! - it is in a session (`setsid`) whose leader carries the token, or in
//!   the session of the recorded `agent_pid` while a token carrier is in
//!   it too (the agent's own session, led by the agent or, once the agent
//!   died, by nobody): this finds descendants that dropped the variable
//!   (`env -i`) but stayed in the agent's session. A session id cannot be
//!   reused while a member lives, so the carrier proves the session.
//!
//! A PID alone proves nothing: after a reboot or PID reuse, or in a
//! status.json someone planted, it may name any process. Such a PID is
//! reported ([`LeftBehind::stranger_note`]) and left alone. The user rule
//! means that even a root `rasen stop` in a project another user controls
//! signals only root's processes that carry the token. No start time is
//! recorded: a PID with its start time names one process within one boot
//! and says nothing of its descendants; the token proves both.
//!
//! This module decides which processes a left-behind agent is made of and
//! stops exactly those; it reads no state file (callers pass what
//! status.json recorded), and `/proc` is scanned only when a token is
//! recorded, i.e. only after a run died with a session in flight.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, ProcessInfo};
use crate::sys;

/// The environment variable that carries a session's token.
pub const TOKEN_VARIABLE: &str = "RASEN_SESSION_TOKEN";

/// How long a left-behind agent gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long SIGKILL is repeated at processes that are still there (new
/// children forked meanwhile, a process in uninterruptible sleep).
const KILL_BOUND: Duration = Duration::from_secs(2);
/// Between looks at `/proc` (each a scan of every process).
const POLL: Duration = Duration::from_millis(50);

/// A session's secret: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    const BYTES: usize = 16;

    /// A new token from `/dev/urandom`.
    pub fn generate() -> Result<SessionToken> {
        let path = Path::new("/dev/urandom");
        let mut bytes = [0u8; SessionToken::BYTES];
        File::open(path)
            .and_then(|mut urandom| urandom.read_exact(&mut bytes))
            .map_err(|e| Error::io(path, "cannot read a session token from it", e))?;
        Ok(SessionToken(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The token written as `text`, if it is one rasen could have made:
    /// anything else (empty, short, a pattern) proves nothing.
    pub fn parse(text: &str) -> Option<SessionToken> {
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        (text.len() == 2 * SessionToken::BYTES && text.chars().all(hex))
            .then(|| SessionToken(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The variable for the session's environment.
    pub fn variable(&self) -> (String, String) {
        (TOKEN_VARIABLE.to_string(), self.0.clone())
    }

    /// `RASEN_SESSION_TOKEN=…`, as it appears in `/proc/PID/environ`.
    fn environ_entry(&self) -> Vec<u8> {
        format!("{TOKEN_VARIABLE}={}", self.0).into_bytes()
    }
}

/// What status.json recorded of the session in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordedAgent<'a> {
    pub token: Option<&'a str>,
    pub pid: Option<i32>,
}

/// What a look for an agent left behind by a killed run found.
#[derive(Debug, Default, PartialEq)]
pub struct LeftBehind {
    /// The processes provably the agent's; the agent itself first when it
    /// is among them (the recorded PID, else the one leading its session).
    pub processes: Vec<i32>,
    /// The recorded `agent_pid`, when a live process has it that is not
    /// provably the agent's: left alone.
    pub stranger: Option<i32>,
}

impl LeftBehind {
    /// The process to name as the agent.
    pub fn agent(&self) -> Option<i32> {
        self.processes.first().copied()
    }

    /// What to tell about a recorded PID that was left alone.
    pub fn stranger_note(&self) -> Option<String> {
        self.stranger.map(|pid| {
            format!("agent_pid {pid} in status.json is not rasen's agent (no session token): left alone")
        })
    }
}

/// The processes the recorded session left behind. Call it only while
/// nobody holds the run lock, or a live run's agent is "left behind" too.
pub fn find_left_behind(recorded: RecordedAgent<'_>) -> LeftBehind {
    let token = recorded.token.and_then(SessionToken::parse);
    let processes = match (token, process::real_uid(sys::getpid())) {
        (Some(token), Some(uid)) => provably_the_sessions(&token, uid, recorded.pid),
        _ => Vec::new(),
    };
    let stranger = recorded.pid.filter(|pid| !processes.contains(pid) && process::is_live(*pid));
    LeftBehind { processes, stranger }
}

/// Stops what the recorded session left behind: SIGTERM (and SIGCONT, for
/// a stopped process), up to two seconds, then SIGKILL. Call it only while
/// holding the run lock. Returns what was found.
pub fn stop_left_behind(recorded: RecordedAgent<'_>) -> LeftBehind {
    let found = find_left_behind(recorded);
    if !found.processes.is_empty() {
        signal_all(&found.processes, libc::SIGTERM);
        signal_all(&found.processes, libc::SIGCONT);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && !find_left_behind(recorded).processes.is_empty() {
            std::thread::sleep(POLL);
        }
        kill_until_gone(recorded);
    }
    found
}

/// SIGKILLs what the recorded session left behind, at once (`stop --force`).
pub fn kill_left_behind(recorded: RecordedAgent<'_>) -> LeftBehind {
    let found = find_left_behind(recorded);
    if !found.processes.is_empty() {
        kill_until_gone(recorded);
    }
    found
}

/// SIGKILL to every provable process, looked for again each round, so a
/// child forked meanwhile is not missed.
fn kill_until_gone(recorded: RecordedAgent<'_>) {
    let deadline = Instant::now() + KILL_BOUND;
    loop {
        let left = find_left_behind(recorded).processes;
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        signal_all(&left, libc::SIGKILL);
        std::thread::sleep(POLL);
    }
}

fn signal_all(pids: &[i32], signal: i32) {
    for &pid in pids {
        let _ = sys::kill(pid, signal);
    }
}

/// The live processes of user `uid` (this one excepted) that provably
/// belong to the session with `token`: see the module doc. The agent
/// comes first.
fn provably_the_sessions(token: &SessionToken, uid: u32, agent_pid: Option<i32>) -> Vec<i32> {
    let me = sys::getpid();
    let users: Vec<(i32, ProcessInfo)> = process::all_pids()
        .into_iter()
        .filter(|&pid| pid != me && process::real_uid(pid) == Some(uid))
        .filter_map(|pid| Some((pid, process::info(pid).filter(|p| p.state != 'Z')?)))
        .collect();
    let entry = token.environ_entry();
    let carriers: Vec<i32> = users
        .iter()
        .map(|&(pid, _)| pid)
        .filter(|&pid| process::environment_holds(pid, &entry))
        .collect();
    let sessions: Vec<i32> = users
        .iter()
        .filter(|(pid, _)| carriers.contains(pid))
        .map(|(pid, p)| (*pid, p.session))
        .filter(|&(pid, session)| session == pid || Some(session) == agent_pid)
        .map(|(_, session)| session)
        .collect();
    let proven: Vec<(i32, ProcessInfo)> = users
        .into_iter()
        .filter(|(pid, p)| carriers.contains(pid) || sessions.contains(&p.session))
        .collect();
    agent_first(proven, agent_pid)
}

/// The PIDs, the agent's first: the recorded one, else the lowest that
/// leads its own session (the agent was started with `setsid`).
fn agent_first(mut proven: Vec<(i32, ProcessInfo)>, agent_pid: Option<i32>) -> Vec<i32> {
    proven.sort_by_key(|&(pid, p)| (Some(pid) != agent_pid, p.session != pid, pid));
    proven.into_iter().map(|(pid, _)| pid).collect()
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, b);
        assert_eq!(SessionToken::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.variable(), ("RASEN_SESSION_TOKEN".to_string(), a.as_str().to_string()));
    }

    #[test]
    fn only_a_token_rasen_could_have_made_is_accepted() {
        for bad in ["", "abc", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33), "*"] {
            assert_eq!(SessionToken::parse(bad), None, "{bad:?}");
        }
        assert!(SessionToken::parse(&"0f".repeat(16)).is_some());
    }

    /// A `sleep` child that is killed and reaped when dropped.
    struct Sleeper(Child);

    impl Sleeper {
        fn start(token: Option<&SessionToken>) -> Sleeper {
            let mut command = Command::new("sleep");
            command.arg("30").stdin(Stdio::null());
            if let Some(token) = token {
                let (name, value) = token.variable();
                command.env(name, value);
            }
            Sleeper(command.spawn().expect("sleep"))
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        /// Waits (bounded) until exec has given it its own environment.
        fn wait_for_exec(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let exe = || std::fs::read_link(format!("/proc/{}/exe", self.pid()));
            while !exe().is_ok_and(|exe| exe.ends_with("sleep")) {
                assert!(Instant::now() < deadline, "sleep did not start");
                std::thread::sleep(POLL);
            }
        }

        /// True once it has exited (reaping it).
        fn exited(&mut self) -> bool {
            matches!(self.0.try_wait(), Ok(Some(_)))
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_process_carrying_the_token_is_found_and_stopped() {
        let token = SessionToken::generate().unwrap();
        let mut agent = Sleeper::start(Some(&token));
        agent.wait_for_exec();
        let recorded = RecordedAgent { token: Some(token.as_str()), pid: None };
        let found = find_left_behind(recorded);
        assert_eq!(found, LeftBehind { processes: vec![agent.pid()], stranger: None });
        assert_eq!(stop_left_behind(recorded).agent(), Some(agent.pid()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.exited() {
            assert!(Instant::now() < deadline, "the token's process survived");
            std::thread::sleep(POLL);
        }
    }

    #[test]
    fn a_recorded_pid_without_the_token_is_a_stranger_and_left_alone() {
        let token = SessionToken::generate().unwrap();
        let other = SessionToken::generate().unwrap();
        let mut stranger = Sleeper::start(Some(&other));
        stranger.wait_for_exec();
        for token in [None, Some(token.as_str()), Some("not a token")] {
            let recorded = RecordedAgent { token, pid: Some(stranger.pid()) };
            let found = kill_left_behind(recorded);
            assert_eq!(found, LeftBehind { processes: vec![], stranger: Some(stranger.pid()) });
            let note = found.stranger_note().unwrap();
            assert!(note.contains("is not rasen's agent (no session token): left alone"), "{note}");
        }
        assert!(!stranger.exited(), "a stranger was signalled");
        assert_eq!(find_left_behind(RecordedAgent::default()), LeftBehind::default());
    }
}
