//! The integration-test harness, in the spirit of ripgrep's tests/util.rs:
//! each test builds a throwaway git project, runs the real `rasen` binary in
//! it (with tests/agent/scripted-agent as the agent), and reads the files left
//! behind, so a test reads like a shell session.
//!
//! It never sleeps a fixed time: it polls with deadlines, so a hang fails the
//! test with what was seen instead of stalling the suite. It never kills a
//! process it cannot tie to the test (checked through /proc/PID/cmdline), and
//! it cleans up on drop, also when the test panics.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use miniserde::json::{Number, Value};

/// How long `Project::rasen` lets a command run before failing the test.
pub const DEFAULT_DEADLINE_SECS: u64 = 60;
const POLL: Duration = Duration::from_millis(20);

/// The path of a script in tests/agent/ ("scripted-agent", "fake-claude").
pub fn agent_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent").join(name)
}

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

/// One line of $SCRIPTED_DIR/sessions, written by every scripted-agent
/// session. A value rasen did not set reads "-".
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub iteration: String,
    pub role: String,
    pub subtask: String,
    pub attempt: String,
    pub pid: i32,
}

/// A throwaway git repository with a rasen.yml that drives the scripted
/// agent, and a SCRIPTED_DIR beside it for what the agent records.
pub struct Project {
    dir: PathBuf,
    scripted_dir: PathBuf,
    env: Vec<(String, String)>,
    settings: Vec<(String, String)>,
    spawned: RefCell<Vec<i32>>,
}

impl Project {
    pub fn new(name: &str) -> Project {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = format!("rasen-test-{name}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&base);
        let scripted_dir = std::env::temp_dir().join(format!("{base}-scripted"));
        for d in [&dir, &scripted_dir] {
            let _ = std::fs::remove_dir_all(d); // left over from an earlier run with this PID
            std::fs::create_dir_all(d).unwrap();
        }
        let project = Project {
            dir,
            scripted_dir,
            env: Vec::new(),
            settings: default_settings(),
            spawned: RefCell::default(),
        };
        project.git(&["init", "-q"]);
        for (key, value) in [("user.name", "Rasen Test"), ("user.email", "test@rasen.invalid")] {
            project.git(&["config", key, value]);
        }
        project.git(&["config", "commit.gpgsign", "false"]);
        project.write("README.md", "A project for a rasen test.\n");
        project.write_settings();
        project.git(&["add", "README.md", "rasen.yml"]);
        project.git(&["commit", "-q", "-m", "Initial commit"]);
        project
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn scripted_dir(&self) -> &Path {
        &self.scripted_dir
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Overwrites rasen.yml with `yaml` as given.
    pub fn config(&self, yaml: &str) {
        self.write("rasen.yml", yaml);
    }

    /// Sets one key of the default configuration ("orchestrator.max_iterations",
    /// "3") and rewrites rasen.yml from the defaults plus every key set so far.
    /// The value is YAML as written: `"quoted"`, `[a, b]`, `true`.
    pub fn set_config(&mut self, key: &str, value: &str) -> &mut Project {
        let section = key.split('.').next().unwrap_or_default();
        let same_section = |k: &str| k.split('.').next() == Some(section);
        match self.settings.iter().position(|(k, _)| k == key) {
            Some(i) => self.settings[i].1 = value.to_string(),
            None => {
                // After the last key of its section, so each section is written once.
                let at = self
                    .settings
                    .iter()
                    .rposition(|(k, _)| same_section(k))
                    .map_or(self.settings.len(), |i| i + 1);
                self.settings.insert(at, (key.to_string(), value.to_string()));
            }
        }
        self.write_settings();
        self
    }

    /// Adds an environment variable to every command run in the project.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Project {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Makes `claude` on PATH be tests/agent/fake-claude and switches the
    /// configuration to `backend: claude`.
    pub fn use_fake_claude(&mut self) -> &mut Project {
        let bin = self.scripted_dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(agent_script("fake-claude"), bin.join("claude")).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        self.env("PATH", &path)
            .set_config("agent.backend", "claude")
            .set_config("agent.command", "claude")
    }

    /// A command with cwd = the project, stdin null, and the project's
    /// environment: the caller's, less any RASEN_*/SCRIPTED_*/FAKE_CLAUDE*
    /// variable, plus SCRIPTED_DIR and whatever `env` added. GIT_* goes too:
    /// run from a git hook, GIT_DIR would point every git command at the
    /// outer repository.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if ["RASEN_", "SCRIPTED_", "FAKE_CLAUDE", "GIT_"].iter().any(|p| key.starts_with(p)) {
                cmd.env_remove(&*key);
            }
        }
        cmd.env("SCRIPTED_DIR", &self.scripted_dir);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `rasen ARGS` to the end, at most DEFAULT_DEADLINE_SECS.
    pub fn rasen(&self, args: &[&str]) -> RunResult {
        self.rasen_with_deadline(args, DEFAULT_DEADLINE_SECS)
    }

    pub fn rasen_with_deadline(&self, args: &[&str], deadline_secs: u64) -> RunResult {
        self.spawn(args).wait(deadline_secs)
    }

    /// Starts `rasen ARGS` and returns at once (e.g. a foreground `run` to
    /// signal). The child is SIGKILLed if the Spawned is dropped unwaited.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_rasen"));
        cmd.args(args);
        let spawned = Spawned::start(cmd, &format!("rasen {}", args.join(" ")));
        self.spawned.borrow_mut().push(spawned.pid());
        spawned
    }

    pub fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The parsed JSON file; panics with its text if it is missing or bad.
    pub fn json(&self, rel: &str) -> Value {
        let text = self.file(rel).unwrap_or_else(|| panic!("{rel} does not exist"));
        parse_json(&text, rel)
    }

    pub fn sessions(&self) -> Vec<Session> {
        let text = std::fs::read_to_string(self.scripted_dir.join("sessions")).unwrap_or_default();
        text.lines().map(parse_session).collect()
    }

    /// Every PID the scripted agents recorded: their own and their children's.
    pub fn agent_pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.scripted_dir.join("pids")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// The PID in .rasen/rasen.pid, if the file exists and holds one.
    pub fn daemon_pid(&self) -> Option<i32> {
        self.file(".rasen/rasen.pid")?.trim().parse().ok()
    }

    /// Commits on HEAD, the initial commit included (1 in a new project).
    pub fn git_commit_count(&self) -> u64 {
        let out = self.git(&["rev-list", "--count", "HEAD"]);
        out.trim().parse().unwrap_or_else(|_| panic!("git rev-list said {out:?}"))
    }

    /// Runs git in the project; panics with its output unless it succeeds.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.command("git").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "git {} failed: {stderr}", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write_settings(&self) {
        let mut yaml = String::new();
        let mut section = "";
        for (key, value) in &self.settings {
            let (head, tail) = key
                .split_once('.')
                .unwrap_or_else(|| panic!("config key {key} is not SECTION.KEY"));
            if head != section {
                yaml.push_str(&format!("{head}:\n"));
                section = head;
            }
            yaml.push_str(&format!("  {tail}: {value}\n"));
        }
        self.config(&yaml);
    }
}

/// The defaults a test project starts from: fast sessions, the scripted
/// agent, no review or QA. Keys of one section stay together.
fn default_settings() -> Vec<(String, String)> {
    let agent = format!("\"{}\"", agent_script("scripted-agent").display());
    [
        ("orchestrator.session_delay_seconds", "0"),
        ("orchestrator.session_timeout_seconds", "60"),
        ("orchestrator.idle_timeout_seconds", "30"),
        ("agent.backend", "command"),
        ("agent.command", agent.as_str()),
        ("agent.stop_grace_seconds", "2"),
        ("backpressure.require_tests", "true"),
        ("backpressure.require_lint", "true"),
        ("review.enabled", "false"),
        ("qa.enabled", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn parse_session(line: &str) -> Session {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [iteration, role, subtask, attempt, pid] = fields[..] else {
        panic!("bad line in SCRIPTED_DIR/sessions: {line:?}");
    };
    let pid = pid.parse().unwrap_or_else(|_| panic!("bad PID in sessions line {line:?}"));
    let s = |v: &str| v.to_string();
    Session {
        iteration: s(iteration),
        role: s(role),
        subtask: s(subtask),
        attempt: s(attempt),
        pid,
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            kill_if_cmdline_mentions(pid, &["rasen"]);
        }
        for pid in self.agent_pids() {
            kill_if_cmdline_mentions(pid, &["sleep", "scripted-agent", "claude"]);
        }
        for &pid in self.spawned.borrow().iter() {
            kill_if_cmdline_mentions(pid, &["rasen"]);
        }
        if std::env::var_os("RASEN_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {} and {}", self.dir.display(), self.scripted_dir.display());
            return;
        }
        if thread::panicking() {
            eprintln!("(set RASEN_KEEP_TEST_DIRS=1 to keep {})", self.dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.scripted_dir);
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

// --- JSON ------------------------------------------------------------------

/// Parses `text`; panics naming `what` and showing the text if it is not JSON.
pub fn parse_json(text: &str, what: &str) -> Value {
    miniserde::json::from_str(text).unwrap_or_else(|_| panic!("{what} is not valid JSON:\n{text}"))
}

/// The value at a dotted path: "status", "subtasks.0.id" (numbers index
/// arrays); "" is `v` itself.
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

pub fn get_str<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    match get(v, path)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

pub fn get_u64(v: &Value, path: &str) -> Option<u64> {
    match get(v, path)? {
        Value::Number(Number::U64(n)) => Some(*n),
        Value::Number(Number::I64(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

pub fn get_f64(v: &Value, path: &str) -> Option<f64> {
    match get(v, path)? {
        Value::Number(Number::U64(n)) => Some(*n as f64),
        Value::Number(Number::I64(n)) => Some(*n as f64),
        Value::Number(Number::F64(n)) => Some(*n),
        _ => None,
    }
}

pub fn get_bool(v: &Value, path: &str) -> Option<bool> {
    match get(v, path)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

pub fn get_array<'a>(v: &'a Value, path: &str) -> Option<&'a [Value]> {
    match get(v, path)? {
        Value::Array(items) => Some(&items[..]),
        _ => None,
    }
}

// --- processes ---------------------------------------------------------------

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

/// SIGKILLs `pid` if it is alive and its command line contains one of
/// `needles`, so that a recycled PID of an unrelated process is never hit.
fn kill_if_cmdline_mentions(pid: i32, needles: &[&str]) {
    if pid <= 0 || process_gone(pid) {
        return;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return };
    let cmdline = String::from_utf8_lossy(&cmdline);
    if needles.iter().any(|n| cmdline.contains(n)) {
        send_signal(pid, libc::SIGKILL);
    }
}
