//! Running a command with a deadline: its output is captured while it runs,
//! so that a command that hangs fails the test with what it printed instead
//! of stalling the suite.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::send_signal;

const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every 20 ms; panics with `what` if it is still false after
/// `deadline_secs`.
pub fn wait_until(deadline_secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {deadline_secs} s waiting for: {what}");
        thread::sleep(POLL);
    }
}

/// How a command ended. `code` is 128 + the signal number when it was killed
/// by a signal, as a shell reports it.
#[derive(Debug)]
pub struct RunResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    /// Panics, showing both outputs, unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> RunResult {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A command started by `Project::spawn` (or `Spawned::start`), running or
/// not yet reaped.
pub struct Spawned {
    what: String,
    child: Option<Child>,
    stdout: Capture,
    stderr: Capture,
}

impl Spawned {
    /// Starts any command with its stdout and stderr captured; `what` names
    /// it in failure messages. Used by `Project::spawn`; tests may run other
    /// programs (the scripted agent itself) the same way.
    pub fn start(mut cmd: Command, what: &str) -> Spawned {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Capture::start(child.stdout.take().unwrap());
        let stderr = Capture::start(child.stderr.take().unwrap());
        Spawned { what: what.to_string(), child: Some(child), stdout, stderr }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// What it has printed on stdout so far (it may still be running).
    pub fn stdout_so_far(&self) -> String {
        self.stdout.text()
    }

    /// What it has printed on stderr so far (it may still be running).
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Sends `sig` (libc::SIGTERM…) to this process only, not its group.
    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// Waits for the end and its output, at most `deadline_secs`; past that,
    /// kills it and panics with what it printed.
    pub fn wait(mut self, deadline_secs: u64) -> RunResult {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(deadline_secs);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{}` still ran after {deadline_secs} s; killed it\n{}",
                    self.what,
                    self.output(-1)
                );
            }
            thread::sleep(POLL);
        };
        let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        while !(self.stdout.finished() && self.stderr.finished()) {
            assert!(
                Instant::now() < deadline,
                "`{}` exited, but something still holds its stdout/stderr open (a daemon that kept them?)\n{}",
                self.what,
                self.output(code)
            );
            thread::sleep(POLL);
        }
        self.output(code)
    }

    fn output(&self, code: i32) -> RunResult {
        RunResult { code, stdout: self.stdout.text(), stderr: self.stderr.text() }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child the test drives itself (its pipes read or sent nowhere, unlike
/// `Spawned`'s captured ones), killed and reaped when dropped, so that a
/// failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pipe read to the end by a thread, readable while it fills, so that a
/// timed-out command can still show what it printed.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Capture { buf, reader }
    }

    fn finished(&self) -> bool {
        self.reader.is_finished()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}
