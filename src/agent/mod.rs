//! One agent session: start the agent in its own process group with the
//! prompt on its stdin, stream its stdout and stderr into the log line by
//! line, find its events, and end it on exit, timeout or shutdown, so that
//! no process of the group outlives the session.
//!
//! Each line goes to a reader that the backend chose ([`ReaderKind`]): it
//! says what to log and what to scan for events, and in the end what the
//! backend told (tokens, cost, a failure, a usage limit, a refusal to run
//! as root). The session itself knows no backend's format: `backend` maps
//! a backend to its command line and reader, `output` keeps what the
//! session needs of the output, the readers (`claude`, `reader`) read it.
//!
//! Memory stays bounded whatever the agent prints: of each line only as
//! much as the reader needs is kept (64 KiB of text; more of a line the
//! reader parses whole, such as Claude's stream-json), the rest is counted
//! and logged as `… (N more bytes)`. The report keeps the events, the
//! reader's report, the last 4 KiB of text and counters, never the whole
//! output.
//!
//! How a session ends:
//! - the main process exits: the rest of its group (a build server, a
//!   stray `sleep` holding stdout) gets at most [`EXIT_DRAIN`] to finish
//!   writing, then SIGKILL;
//! - `session_timeout`, `idle_timeout` (no output at all) or a shutdown
//!   signal: SIGTERM to the group, up to `stop_grace` while output is still
//!   read (a second shutdown signal cuts it short), then SIGKILL.
//!
//! A zero timeout means "no limit". The one thing this module cannot stop
//! is a process that leaves the group itself (`setsid`); it is then no
//! longer read after [`REAP_BOUND`].
//!
//! This module never decides what the session means (success, retry, …):
//! it reports, and the orchestrator decides.

mod backend;
mod output;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::events::Event;
use crate::reader::{Failure, Stream, Usage};
use crate::usage_limit::UsageLimit;
use crate::{process, signals, sys};
use backend::FIX_COMMAND;
use output::{Output, Pipe};

pub use backend::{argv_for, resolve_agent_command, ReaderKind};

#[derive(Clone, Debug)]
pub struct SessionRequest {
    pub argv: Vec<String>,
    pub reader: ReaderKind,
    pub cwd: PathBuf,
    /// Added to rasen's own environment.
    pub env: Vec<(String, String)>,
    /// Written to the agent's stdin, which is then closed.
    pub prompt: String,
    pub session_timeout: Duration,
    pub idle_timeout: Duration,
    pub stop_grace: Duration,
    /// Log lines are `[log_prefix] text`.
    pub log_prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The main process exited with this code.
    Exited(i32),
    /// The main process was killed by this signal (not by rasen).
    Signaled(i32),
    IdleTimeout,
    SessionTimeout,
    Shutdown,
}

#[derive(Clone, Debug)]
pub struct SessionReport {
    pub end: SessionEnd,
    /// In order of appearance; an event identical to an earlier one (the
    /// `result` repeats the final message) is listed once.
    pub events: Vec<Event>,
    /// The last ~4 KiB of what was logged, for error reports.
    pub tail: String,
    /// Tokens and cost, when the backend reports them.
    pub usage: Option<Usage>,
    /// The backend said the session failed.
    pub failure: Option<Failure>,
    pub usage_limit: Option<UsageLimit>,
    /// The agent refused to run because it runs as root.
    pub root_refusal: bool,
    /// Bytes read from stdout and stderr together.
    pub output_bytes: u64,
    pub duration: Duration,
}

/// The longest wait between looks at the clock and at the main process.
const TICK: Duration = Duration::from_millis(100);
/// The wait while part of the prompt is still to be written.
const PROMPT_TICK: Duration = Duration::from_millis(10);
/// After the main process exits: how long the rest of its group may still
/// write before it is killed.
pub const EXIT_DRAIN: Duration = Duration::from_secs(1);
/// After SIGKILL: how long to wait for the main process and the pipes.
const REAP_BOUND: Duration = Duration::from_secs(2);

/// What a running session tells its caller, so that `status` can show a
/// live agent as live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The agent runs, with this PID (also its process group id).
    Started(i32),
    /// The agent printed something since the last report (at most one
    /// report per `PROGRESS_EVERY`).
    Output,
}

/// How often at most `Progress::Output` is reported.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs one session to its end, telling `observe` when the agent started
/// and, now and then, that it is still printing. An agent that cannot be
/// started is a configuration error naming it.
pub fn run_session(
    req: &SessionRequest,
    observe: &mut dyn FnMut(Progress),
) -> Result<SessionReport> {
    let started = Instant::now();
    let mut child = spawn(req)?;
    let pgid = child.id() as i32;
    observe(Progress::Started(pgid));
    let (stdin, stdout, stderr) = match take_pipes(&mut child) {
        Ok(pipes) => pipes,
        Err(e) => {
            process::signal_session(pgid, libc::SIGKILL);
            let _ = child.wait();
            return Err(Error::failed(format!("cannot read the agent's output: {e}")));
        }
    };
    let reader = req.reader.reader();
    let pipes = [
        Pipe::new(stdout, Stream::Stdout, reader.line_keep(Stream::Stdout)),
        Pipe::new(stderr, Stream::Stderr, reader.line_keep(Stream::Stderr)),
    ];
    let mut session = Session {
        req,
        child,
        pgid,
        started,
        last_output: started,
        stdin: Some(stdin),
        written: 0,
        pipes,
        output: Output::new(req, reader),
        leader: None,
        buf: vec![0; 64 * 1024],
        observe,
        last_reported: started,
    };
    let end = session.run();
    Ok(session.into_report(end))
}

fn spawn(req: &SessionRequest) -> Result<Child> {
    let name = req.argv.first().map(String::as_str).unwrap_or("");
    if !req.cwd.is_dir() {
        return Err(Error::failed(format!(
            "{}: the agent's working directory does not exist",
            req.cwd.display()
        )));
    }
    // The agent's PATH is the one to search when the request sets it.
    let inherited = std::env::var_os("PATH");
    let path = match req.env.iter().rev().find(|(key, _)| key == "PATH") {
        Some((_, value)) => Some(OsStr::new(value)),
        None => inherited.as_deref(),
    };
    let program = backend::resolve_program(name, &req.cwd, path)?;
    let mut command = Command::new(&program);
    command
        .arg0(name)
        .args(&req.argv[1..])
        .current_dir(&req.cwd)
        .envs(req.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::start_in_own_session(&mut command);
    command.spawn().map_err(|e| {
        Error::config(format!(
            "cannot start agent command \"{name}\" ({}): {e} ({FIX_COMMAND})",
            program.display()
        ))
    })
}

/// The child's three pipes, all non-blocking on rasen's side.
fn take_pipes(child: &mut Child) -> io::Result<(ChildStdin, File, File)> {
    let missing = || io::Error::other("pipe missing");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = File::from(OwnedFd::from(child.stdout.take().ok_or_else(missing)?));
    let stderr = File::from(OwnedFd::from(child.stderr.take().ok_or_else(missing)?));
    sys::set_nonblocking(&stdin)?;
    sys::set_nonblocking(&stdout)?;
    sys::set_nonblocking(&stderr)?;
    Ok((stdin, stdout, stderr))
}

struct Session<'a> {
    req: &'a SessionRequest,
    child: Child,
    pgid: i32,
    started: Instant,
    last_output: Instant,
    /// Open until the whole prompt is written.
    stdin: Option<ChildStdin>,
    written: usize,
    /// stdout, stderr.
    pipes: [Pipe; 2],
    output: Output,
    /// How the main process ended, once it is reaped.
    leader: Option<SessionEnd>,
    buf: Vec<u8>,
    observe: &'a mut dyn FnMut(Progress),
    last_reported: Instant,
}

impl Session<'_> {
    fn run(&mut self) -> SessionEnd {
        loop {
            self.write_prompt();
            if let Some(end) = self.stop_reason() {
                self.stop_group();
                return end;
            }
            if let Some(end) = self.reap_leader() {
                self.finish_after_exit();
                return end;
            }
            let wait = self.next_wait();
            self.wait_for_output(wait);
            self.report_output();
        }
    }

    /// Tells the caller the agent is printing, at most every PROGRESS_EVERY.
    fn report_output(&mut self) {
        if self.last_output > self.last_reported && self.last_reported.elapsed() >= PROGRESS_EVERY {
            self.last_reported = Instant::now();
            (self.observe)(Progress::Output);
        }
    }

    fn stop_reason(&self) -> Option<SessionEnd> {
        if signals::shutdown_signal().is_some() {
            Some(SessionEnd::Shutdown)
        } else if time_left(self.req.session_timeout, self.started) == Some(Duration::ZERO) {
            Some(SessionEnd::SessionTimeout)
        } else if time_left(self.req.idle_timeout, self.last_output) == Some(Duration::ZERO) {
            Some(SessionEnd::IdleTimeout)
        } else {
            None
        }
    }

    fn next_wait(&self) -> Duration {
        let tick = if self.stdin.is_some() { PROMPT_TICK } else { TICK };
        [
            time_left(self.req.session_timeout, self.started),
            time_left(self.req.idle_timeout, self.last_output),
        ]
        .into_iter()
        .flatten()
        .fold(tick, Duration::min)
    }

    /// Writes as much of the prompt as the pipe takes without blocking, and
    /// closes stdin once all of it is written (or the agent closed its end).
    fn write_prompt(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else { return };
        let prompt = self.req.prompt.as_bytes();
        while self.written < prompt.len() {
            match stdin.write(&prompt[self.written..]) {
                Ok(0) => break,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // EPIPE: the agent stopped reading; nothing to add
            }
        }
        self.stdin = None;
    }

    /// Timeout or shutdown: SIGTERM to the group, the grace period (still
    /// reading output), then SIGKILL.
    fn stop_group(&mut self) {
        self.stdin = None;
        process::signal_session(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + self.req.stop_grace;
        loop {
            // Done when the main process is gone and nothing else can write;
            // zombies of the group (reaped late by PID 1) are not waited for.
            if self.reap_leader().is_some() && (self.pipes_closed() || self.group_gone()) {
                break;
            }
            if signals::shutdown_count() >= 2 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log_note(&format!(
                    "agent process group {} still running {} s after SIGTERM: sending SIGKILL",
                    self.pgid,
                    self.req.stop_grace.as_secs_f64()
                ));
                break;
            }
            self.wait_for_output(left.min(TICK));
        }
        self.kill_group_and_reap();
    }

    /// The main process exited by itself: let the rest of the group finish
    /// writing for at most EXIT_DRAIN, then kill whatever is left.
    fn finish_after_exit(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + EXIT_DRAIN;
        while !self.pipes_closed() && signals::shutdown_signal().is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log_note(&format!(
                    "agent exited but processes of its group still hold its output after {} s: killing them",
                    EXIT_DRAIN.as_secs_f64()
                ));
                break;
            }
            self.wait_for_output(left.min(TICK));
        }
        self.kill_group_and_reap();
    }

    /// SIGKILL to the group (unless it is already gone), then reap the main
    /// process and read the last output, within REAP_BOUND.
    fn kill_group_and_reap(&mut self) {
        self.stdin = None;
        if !self.group_gone() {
            process::signal_session(self.pgid, libc::SIGKILL);
        }
        let deadline = Instant::now() + REAP_BOUND;
        loop {
            let reaped = self.reap_leader().is_some();
            if reaped && self.pipes_closed() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log_note(&if reaped {
                    "agent output is still held open by a process outside its group: no longer reading it"
                        .to_string()
                } else {
                    format!("agent process {} has not exited after SIGKILL", self.pgid)
                });
                break;
            }
            self.wait_for_output(left.min(TICK));
        }
        for i in 0..self.pipes.len() {
            self.close_pipe(i);
        }
    }

    /// How the main process ended, reaping it if it has.
    fn reap_leader(&mut self) -> Option<SessionEnd> {
        if self.leader.is_none() {
            self.leader = match self.child.try_wait() {
                Ok(Some(status)) => Some(end_of(status)),
                Ok(None) => None,
                Err(_) => Some(SessionEnd::Exited(-1)), // reaped by someone else: unknown
            };
        }
        self.leader
    }

    /// No process is left in the group (zombies count as present).
    fn group_gone(&self) -> bool {
        !process::session_alive(self.pgid)
            && matches!(sys::kill_process_group(self.pgid, 0), Err(e) if e.raw_os_error() == Some(libc::ESRCH))
    }

    fn pipes_closed(&self) -> bool {
        self.pipes.iter().all(|p| p.file.is_none())
    }

    /// Waits up to `timeout` for output (or a signal) and reads what came.
    fn wait_for_output(&mut self, timeout: Duration) {
        let mut fds: Vec<RawFd> = Vec::with_capacity(3);
        let mut sources: Vec<Option<usize>> = Vec::with_capacity(3);
        for (i, pipe) in self.pipes.iter().enumerate() {
            if let Some(file) = &pipe.file {
                fds.push(file.as_raw_fd());
                sources.push(Some(i));
            }
        }
        if let Some(fd) = signals::wake_fd() {
            fds.push(fd);
            sources.push(None);
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // Rounded up, so that a deadline is not missed by a fraction.
        let timeout_ms = (timeout.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32;
        match sys::poll_readable(&fds, timeout_ms) {
            Ok(ready) => {
                for (source, _) in sources.iter().zip(ready).filter(|(_, ready)| *ready) {
                    match source {
                        Some(i) => self.read_pipe(*i),
                        None => signals::drain_wake_pipe(),
                    }
                }
            }
            // poll itself failed (ENOMEM): do not spin, try again shortly.
            Err(_) => std::thread::sleep(timeout.min(PROMPT_TICK)),
        }
    }

    /// Reads what the pipe has (a bounded number of chunks, so the clock is
    /// looked at again soon even under a flood of output).
    fn read_pipe(&mut self, i: usize) {
        for _ in 0..16 {
            let Some(file) = self.pipes[i].file.as_mut() else { return };
            match file.read(&mut self.buf) {
                Ok(0) => return self.close_pipe(i),
                Ok(n) => {
                    self.last_output = Instant::now();
                    let Session { pipes, output, buf, .. } = self;
                    pipes[i].take_bytes(&buf[..n], output);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close_pipe(i),
            }
        }
    }

    /// Ends a stream: its unfinished last line is a line too.
    fn close_pipe(&mut self, i: usize) {
        let Session { pipes, output, .. } = self;
        if pipes[i].file.take().is_some() {
            pipes[i].finish(output);
        }
    }

    fn into_report(self, end: SessionEnd) -> SessionReport {
        self.output.into_report(end, self.started.elapsed())
    }
}

fn end_of(status: ExitStatus) -> SessionEnd {
    match (status.code(), status.signal()) {
        (Some(code), _) => SessionEnd::Exited(code),
        (None, Some(signal)) => SessionEnd::Signaled(signal),
        (None, None) => SessionEnd::Exited(-1),
    }
}

/// What is left of `limit` counted from `since`; None for no limit (0).
fn time_left(limit: Duration, since: Instant) -> Option<Duration> {
    if limit.is_zero() {
        return None;
    }
    Some(limit.saturating_sub(since.elapsed()))
}

/// Copies one line of agent output to the log. Unit tests read what would
/// be logged instead (and keep their output quiet).
fn log_agent_line(prefix: &str, text: &str) {
    #[cfg(not(test))]
    crate::logger::agent_line(prefix, text);
    #[cfg(test)]
    tests::capture_log(format!("[{prefix}] {text}"));
}

/// Logs what rasen did to the agent's processes.
fn log_note(message: &str) {
    #[cfg(not(test))]
    crate::logger::line(message);
    #[cfg(test)]
    tests::capture_log(format!("rasen: {message}"));
}

#[cfg(test)]
mod tests {
    use super::output::{LINE_KEEP, TAIL_BYTES};
    use super::*;
    use std::cell::RefCell;
    use std::path::Path;

    thread_local! {
        static LOGGED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn capture_log(line: String) {
        LOGGED.with(|logged| logged.borrow_mut().push(line));
    }

    /// What this test's sessions logged so far, emptied.
    fn take_log() -> Vec<String> {
        LOGGED.with(|logged| std::mem::take(&mut *logged.borrow_mut()))
    }

    fn agent_lines(prefix: &str) -> Vec<String> {
        let start = format!("[{prefix}] ");
        take_log().into_iter().filter_map(|l| l.strip_prefix(&start).map(str::to_string)).collect()
    }

    fn script(text: &str) -> SessionRequest {
        SessionRequest {
            argv: vec!["sh".into(), "-c".into(), text.into()],
            reader: ReaderKind::AgentText,
            cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            env: Vec::new(),
            prompt: String::new(),
            session_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(1),
            log_prefix: "agent".into(),
        }
    }

    fn run(req: &SessionRequest) -> SessionReport {
        run_session(req, &mut |_| {}).unwrap()
    }

    /// True when `pid` has exited (gone, or a zombie waiting for PID 1).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => {
                stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            }
        }
    }

    fn becomes_true_within(limit: Duration, check: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        check()
    }

    fn pid_logged_first(lines: &[String]) -> i32 {
        lines[0].trim().parse().unwrap()
    }

    #[test]
    fn prompt_arrives_on_stdin_and_env_is_passed() {
        let mut req =
            script("cat; echo \"role=$RASEN_ROLE subtask=$RASEN_SUBTASK_ID\"; echo oops >&2");
        req.prompt = "first line\nsecond line\n".into();
        req.env = vec![
            ("RASEN_ROLE".into(), "coder".into()),
            ("RASEN_SUBTASK_ID".into(), "auth-2".into()),
        ];
        req.log_prefix = "coder".into();
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::Exited(0));
        let lines = agent_lines("coder");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[..3], ["first line", "second line", "role=coder subtask=auth-2"]);
        assert_eq!(lines[3], "oops");
        assert!(report.tail.contains("role=coder subtask=auth-2\n"));
        assert_eq!(
            report.output_bytes,
            "first line\nsecond line\nrole=coder subtask=auth-2\noops\n".len() as u64
        );
    }

    #[test]
    fn a_printing_agent_is_reported_alive_now_and_then() {
        // Prints every 0.5 s for 6 s: at least one report after PROGRESS_EVERY.
        let req = script("i=0; while [ $i -lt 12 ]; do echo tick; sleep 0.5; i=$((i+1)); done");
        let mut seen = Vec::new();
        let report = run_session(&req, &mut |p| seen.push(p)).unwrap();
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert!(matches!(seen.first(), Some(Progress::Started(_))), "{seen:?}");
        let outputs = seen.iter().filter(|p| **p == Progress::Output).count();
        assert!((1..=2).contains(&outputs), "one report per {PROGRESS_EVERY:?} at most: {seen:?}");
    }

    #[test]
    fn a_large_prompt_does_not_deadlock_an_agent_that_writes_first() {
        // The agent fills its stdout pipe before reading a byte of stdin.
        let mut req = script("head -c 300000 /dev/zero | tr '\\0' x; echo; wc -c");
        req.prompt = "p".repeat(1 << 20);
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::Exited(0));
        let lines = agent_lines("agent");
        assert_eq!(lines.last().unwrap().trim(), "1048576");
        assert!(lines[0].ends_with(&format!(" … ({} more bytes)", 300_000 - LINE_KEEP)));
    }

    #[test]
    fn on_spawn_gets_the_process_group_leader() {
        let mut spawned = 0;
        let report = run_session(&script("echo $$; ps -o pgid= -p $$"), &mut |p| {
            if let Progress::Started(pid) = p {
                spawned = pid;
            }
        })
        .unwrap();
        assert_eq!(report.end, SessionEnd::Exited(0));
        let lines = agent_lines("agent");
        assert_eq!(pid_logged_first(&lines), spawned);
        if lines.len() > 1 {
            // `ps` may be missing in a minimal container; when present:
            assert_eq!(lines[1].trim(), spawned.to_string(), "its own process group");
        }
    }

    #[test]
    fn exit_code_and_signal_are_reported() {
        assert_eq!(run(&script("exit 3")).end, SessionEnd::Exited(3));
        assert_eq!(run(&script("kill -9 $$")).end, SessionEnd::Signaled(9));
        take_log();
    }

    #[test]
    fn the_agent_does_not_inherit_an_ignored_sigpipe() {
        // The Rust runtime ignores SIGPIPE in rasen; an agent must not
        // inherit that (`yes | head` would never end).
        let report = run(&script("grep -q SigIgn /proc/$$/status && grep SigIgn /proc/$$/status"));
        assert_eq!(report.end, SessionEnd::Exited(0));
        let lines = agent_lines("agent");
        let mask = u64::from_str_radix(lines[0].trim_start_matches("SigIgn:").trim(), 16).unwrap();
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored: {}", lines[0]);
    }

    #[test]
    fn idle_timeout_kills_a_silent_agent_and_its_children() {
        let mut req = script("sleep 60 & echo $!; sleep 60");
        req.idle_timeout = Duration::from_secs(1);
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::IdleTimeout);
        assert!(report.duration < Duration::from_secs(5), "{:?}", report.duration);
        let grandchild = pid_logged_first(&agent_lines("agent"));
        assert!(becomes_true_within(Duration::from_secs(5), || is_dead(grandchild)));
    }

    #[test]
    fn an_agent_ignoring_sigterm_is_killed_after_the_grace() {
        let mut req = script("trap '' TERM; sleep 60 & echo $!; wait");
        req.idle_timeout = Duration::from_secs(1);
        req.stop_grace = Duration::from_millis(500);
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::IdleTimeout);
        assert!(report.duration >= Duration::from_millis(1500), "{:?}", report.duration);
        assert!(report.duration < Duration::from_secs(6), "{:?}", report.duration);
        let lines = take_log();
        let grandchild: i32 = lines[0].trim_start_matches("[agent] ").trim().parse().unwrap();
        assert!(becomes_true_within(Duration::from_secs(5), || is_dead(grandchild)));
        assert!(lines.iter().any(|l| l.contains("after SIGTERM: sending SIGKILL")), "{lines:?}");
    }

    #[test]
    fn session_timeout_stops_an_agent_that_keeps_talking() {
        let mut req = script("while :; do echo tick; sleep 0.1; done");
        req.session_timeout = Duration::from_secs(1);
        req.idle_timeout = Duration::from_millis(500);
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::SessionTimeout);
        assert!(report.duration >= Duration::from_secs(1));
        assert!(report.duration < Duration::from_secs(5), "{:?}", report.duration);
        assert!(report.tail.ends_with("tick\n"));
        take_log();
    }

    #[test]
    fn a_stray_child_holding_stdout_is_killed_soon_after_the_agent_exits() {
        let report = run(&script("sleep 60 & echo $!; echo bye"));
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert!(report.duration < Duration::from_millis(2500), "{:?}", report.duration);
        let lines = take_log();
        let stray: i32 = lines[0].trim_start_matches("[agent] ").parse().unwrap();
        assert!(becomes_true_within(Duration::from_secs(5), || is_dead(stray)));
        assert!(lines.iter().any(|l| l.contains("still hold its output")), "{lines:?}");
    }

    #[test]
    fn a_leftover_process_without_output_is_killed_at_once() {
        let report = run(&script("(exec >/dev/null 2>&1; sleep 60) & echo $!"));
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert!(report.duration < Duration::from_millis(900), "{:?}", report.duration);
        let stray = pid_logged_first(&agent_lines("agent"));
        assert!(becomes_true_within(Duration::from_secs(5), || is_dead(stray)));
    }

    #[test]
    fn twenty_megabytes_on_one_line_stay_small() {
        for kind in [ReaderKind::AgentText, ReaderKind::ClaudeStreamJson] {
            let mut req = script("head -c 20000000 /dev/zero | tr '\\0' a");
            req.reader = kind;
            let report = run(&req);
            assert_eq!(report.end, SessionEnd::Exited(0));
            assert_eq!(report.output_bytes, 20_000_000);
            assert!(report.tail.len() <= TAIL_BYTES, "{}", report.tail.len());
            let lines = agent_lines("agent");
            assert_eq!(lines.len(), 1);
            assert!(lines[0].len() < LINE_KEEP + 100);
            assert!(lines[0].ends_with(&format!(" … ({} more bytes)", 20_000_000 - LINE_KEEP)));
        }
    }

    #[test]
    fn a_huge_json_line_is_noted_and_the_result_is_still_read() {
        let mut req = script(
            "printf '{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"content\":\"'; \
             head -c 5000000 /dev/zero | tr '\\0' a; printf '\"}]}}\\n'; \
             printf '%s\\n' '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\"}'",
        );
        req.reader = ReaderKind::ClaudeStreamJson;
        let report = run(&req);
        assert!(report.usage.is_some() && report.failure.is_none(), "{report:?}");
        let lines = agent_lines("agent");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("{\"type\":\"user\""));
        assert!(
            lines[0].ends_with("more bytes, too long to read as JSON)"),
            "{}",
            &lines[0][180..]
        );
        assert!(lines[1].starts_with("result: success"));
    }

    #[test]
    fn non_utf8_output_and_a_missing_final_newline_are_fine() {
        let report = run(&script("printf 'caf\\351 \\377\\r\\nlast'"));
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert_eq!(agent_lines("agent"), ["caf\u{FFFD} \u{FFFD}", "last"]);
        assert_eq!(report.tail, "caf\u{FFFD} \u{FFFD}\nlast\n");
    }

    #[test]
    fn events_in_text_output_are_found_across_lines() {
        let report = run(&script(
            "printf '%s\\n' 'working' '<event topic=\"build.done\">' 'tests: pass' 'lint: pass</event>'; \
             echo '<event topic=\"build.blocked\">on stderr</event>' >&2",
        ));
        assert_eq!(
            report.events,
            [
                Event { topic: "build.done".into(), payload: "tests: pass\nlint: pass".into() },
                Event { topic: "build.blocked".into(), payload: "on stderr".into() },
            ]
        );
        take_log();
    }

    #[test]
    fn claude_stream_gives_result_and_events_from_agent_text_only() {
        let mut req = script(
            r#"cat tests/fixtures/claude/claude-stream-success.jsonl
printf '%s\n' '{"type":"user","message":{"content":[{"type":"tool_result","content":"<event topic=\"qa.approved\">quoted</event>"}]},"parent_tool_use_id":null}'
printf '%s\n' '{"type":"assistant","message":{"content":[{"type":"text","text":"Done <event topic=\"build.done\">tests: pass</event>"}]},"parent_tool_use_id":null}'
printf '%s\n' '{"type":"result","subtype":"success","is_error":false,"result":"Done <event topic=\"build.done\">tests: pass</event>","total_cost_usd":0.5,"usage":{"input_tokens":7,"output_tokens":3}}'
echo 'some stderr' >&2"#,
        );
        req.reader = ReaderKind::ClaudeStreamJson;
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert_eq!(
            report.events,
            [Event { topic: "build.done".into(), payload: "tests: pass".into() }]
        );
        let usage = report.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.cost_usd), (7, 3, 0.5));
        assert_eq!(report.failure, None);
        assert_eq!(report.usage_limit, None);
        assert!(!report.root_refusal);
        let lines = agent_lines("agent");
        assert!(lines.contains(&"some stderr".to_string()));
        assert!(
            lines.contains(&"tool result: <event topic=\"qa.approved\">quoted</event>".to_string())
        );
    }

    #[test]
    fn claude_usage_limit_and_root_refusal_reach_the_report() {
        let mut req = script("cat tests/fixtures/claude/claude-rate-limit-stream.jsonl; exit 1");
        req.reader = ReaderKind::ClaudeStreamJson;
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::Exited(1));
        let limit = report.usage_limit.unwrap();
        assert_eq!(limit.resets_at, Some(1_784_399_400));
        assert!(report.failure.is_some());

        let mut req = script(
            "echo '--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons' >&2; exit 1",
        );
        req.reader = ReaderKind::ClaudeStreamJson;
        let report = run(&req);
        assert!(report.root_refusal);
        assert!(report.usage.is_none() && report.failure.is_none());
        assert!(report.tail.contains("root/sudo"));
        take_log();
    }

    #[test]
    fn every_claude_sample_replays_through_a_session() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if !name.ends_with(".jsonl") {
                continue;
            }
            let mut req = script(&format!("cat 'tests/fixtures/claude/{name}'"));
            req.reader = ReaderKind::ClaudeStreamJson;
            let report = run(&req);
            assert_eq!(report.end, SessionEnd::Exited(0), "{name}");
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            assert!(
                agent_lines("agent").len() >= lines,
                "{name}: one log line per JSON line at least"
            );
            let expect_result = !name.contains("api-retry") && !name.contains("2.1.284");
            assert_eq!(report.usage.is_some(), expect_result, "{name}");
            assert_eq!(report.usage_limit.is_some(), name.contains("rate-limit"), "{name}");
            assert!(report.events.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_missing_agent_is_one_clear_configuration_error() {
        let mut req = script("");
        req.argv = vec!["clau".into()];
        req.env = vec![("PATH".into(), "/nonexistent".into())];
        let err = run_session(&req, &mut |_| panic!("nothing was spawned")).unwrap_err();
        assert_eq!(err.code, 2);
        assert_eq!(
            err.message,
            "agent command \"clau\" not found in PATH (set agent.command in rasen.yml or RASEN_AGENT_COMMAND)"
        );
        req.argv = vec!["./no-such-agent.sh".into()];
        let err = run_session(&req, &mut |_| {}).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(err
            .message
            .starts_with("agent command \"./no-such-agent.sh\" is not an executable file"));
        req.argv = vec![];
        assert_eq!(run_session(&req, &mut |_| {}).unwrap_err().code, 2);
    }

    #[test]
    fn the_agent_runs_in_the_requested_directory_with_a_relative_command() {
        let dir = std::env::temp_dir().join(format!("rasen-agent-cwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A link to sh, not a script written here: a file just written can
        // be "busy" for exec while a parallel test forks.
        let _ = std::fs::remove_file(dir.join("agent"));
        let sh = resolve_agent_command("sh", Path::new("/")).unwrap();
        std::os::unix::fs::symlink(sh, dir.join("agent")).unwrap();
        let mut req = script("");
        req.argv = vec!["./agent".into(), "-c".into(), "pwd".into()];
        req.cwd = dir.clone();
        let report = run(&req);
        assert_eq!(report.end, SessionEnd::Exited(0));
        assert_eq!(agent_lines("agent"), [dir.canonicalize().unwrap().display().to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
