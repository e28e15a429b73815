//! The integration-test harness, in the spirit of ripgrep's tests/util.rs:
//! each test builds a throwaway git project, runs the real `rasen` binary in
//! it (with tests/agent/scripted-agent as the agent), and reads the files left
//! behind, so a test reads like a shell session.
//!
//! It never sleeps a fixed time: it polls with deadlines, so a hang fails the
//! test with what was seen instead of stalling the suite. It never kills a
//! process it cannot tie to the test (checked through /proc/PID/cmdline), and
//! it cleans up on drop, also when the test panics. Each project's
//! directories are named for the test process and a counter, so the tests
//! of every module can run side by side in the one test binary.

mod clock;
mod json;
mod process;
mod run;

pub use clock::*;
pub use json::*;
pub use process::*;
pub use run::*;

use process::kill_if_cmdline_mentions;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use miniserde::json::Value;

/// How long `Project::rasen` lets a command run before failing the test.
pub const DEFAULT_DEADLINE_SECS: u64 = 60;

/// The path of a script in tests/agent/ ("scripted-agent", "fake-claude").
pub fn agent_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent").join(name)
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
    /// Every rasen process the project started, and every daemon PID it
    /// read from the PID file: killed on drop even if the PID file is gone
    /// by then (`git clean`, a test that removes it).
    rasen_pids: RefCell<Vec<i32>>,
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
            rasen_pids: RefCell::default(),
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
        self.rasen_pids.borrow_mut().push(spawned.pid());
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
        let pid = self.file(".rasen/rasen.pid")?.trim().parse().ok()?;
        let mut seen = self.rasen_pids.borrow_mut();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
        Some(pid)
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
        for &pid in self.rasen_pids.borrow().iter() {
            kill_if_cmdline_mentions(pid, &["rasen"]);
        }
        if std::env::var_os("RASEN_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {} and {}", self.dir.display(), self.scripted_dir.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!("(set RASEN_KEEP_TEST_DIRS=1 to keep {})", self.dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.scripted_dir);
    }
}
