//! The configuration: every key of rasen.yml with its default, read in
//! layers (defaults < PROJECT/rasen.yml < RASEN_* environment variables;
//! command-line flags are applied on top by the caller). It owns what each
//! key means and which values make sense, and turns every mistake into one
//! error naming the file, line, column and key path, or the variable. It
//! never reads any other file, never prints, and never returns a half-applied
//! configuration: a load gives a whole valid `Config` or an error.

pub mod background;

use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::yaml::{self, Entry, Node, Value};
use background::plain_path;

/// The documented default configuration; `init` writes it into projects.
/// A test checks that it reads back as exactly `Config::default()`.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../rasen.yml");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Claude Code in stream-json mode.
    Claude,
    /// Any command; all its output is text.
    Command,
}

const BACKENDS: &[(&str, Backend)] = &[("claude", Backend::Claude), ("command", Backend::Command)];

/// What to do when the agent reports that its usage limit is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageLimitPolicy {
    /// Sleep until the reset time, then retry the session. Accepted so that
    /// existing files keep loading; this version stops either way.
    Wait,
    /// End the run.
    Stop,
}

const USAGE_LIMIT_POLICIES: &[(&str, UsageLimitPolicy)] =
    &[("wait", UsageLimitPolicy::Wait), ("stop", UsageLimitPolicy::Stop)];

impl Backend {
    pub fn name(self) -> &'static str {
        name_of(BACKENDS, self)
    }
}

impl UsageLimitPolicy {
    pub fn name(self) -> &'static str {
        name_of(USAGE_LIMIT_POLICIES, self)
    }
}

fn name_of<T: PartialEq>(choices: &[(&'static str, T)], value: T) -> &'static str {
    choices.iter().find(|(_, v)| *v == value).map_or("?", |(name, _)| name)
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    pub orchestrator: OrchestratorConfig,
    pub agent: AgentConfig,
    pub backpressure: BackpressureConfig,
    pub stall_detection: StallConfig,
    pub review: ReviewConfig,
    pub qa: QaConfig,
    pub memory: MemoryConfig,
    pub background: BackgroundConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrchestratorConfig {
    pub max_iterations: u64,
    pub max_runtime_seconds: u64,
    pub session_delay_seconds: u64,
    pub session_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub backend: Backend,
    pub command: String,
    pub args: Vec<String>,
    /// Empty: the agent's own default.
    pub model: String,
    pub stop_grace_seconds: u64,
    pub usage_limit: UsageLimitPolicy,
    pub max_limit_wait_seconds: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackpressureConfig {
    pub require_tests: bool,
    pub require_lint: bool,
    /// Shell commands rasen runs itself after a "done" claim.
    pub verify: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StallConfig {
    pub max_no_commit_sessions: u64,
    pub max_consecutive_failures: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReviewConfig {
    pub enabled: bool,
    pub max_loops: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QaConfig {
    pub enabled: bool,
    pub max_iterations: u64,
    pub recurring_issue_threshold: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryConfig {
    pub max_bytes: u64,
}

/// Paths relative to the project directory (see `Config::resolve`), checked
/// at load to stay inside the project (`Reader::file_in_project`) and kept
/// in their plain form (`logs/./a/../rasen.log` is `logs/rasen.log`).
#[derive(Clone, Debug, PartialEq)]
pub struct BackgroundConfig {
    pub status_file: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

// The defaults, exactly as rasen.yml states them (a test checks it).

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            max_iterations: 100,
            max_runtime_seconds: 14400,
            session_delay_seconds: 3,
            session_timeout_seconds: 1800,
            idle_timeout_seconds: 300,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            backend: Backend::Claude,
            command: "claude".to_string(),
            args: Vec::new(),
            model: String::new(),
            stop_grace_seconds: 10,
            usage_limit: UsageLimitPolicy::Stop,
            max_limit_wait_seconds: 21600,
        }
    }
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        BackpressureConfig { require_tests: true, require_lint: true, verify: Vec::new() }
    }
}

impl Default for StallConfig {
    fn default() -> Self {
        StallConfig { max_no_commit_sessions: 3, max_consecutive_failures: 5 }
    }
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig { enabled: false, max_loops: 3 }
    }
}

impl Default for QaConfig {
    fn default() -> Self {
        QaConfig { enabled: false, max_iterations: 50, recurring_issue_threshold: 3 }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { max_bytes: 8000 }
    }
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig {
            status_file: PathBuf::from(".rasen/status.json"),
            pid_file: PathBuf::from(".rasen/rasen.pid"),
            log_file: PathBuf::from(".rasen/rasen.log"),
        }
    }
}

impl Config {
    /// Defaults < PROJECT/rasen.yml (absent: defaults) < process environment.
    pub fn load(project_dir: &Path) -> Result<Config> {
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        Config::load_with_env(project_dir, &env)
    }

    /// `load` with the environment given as a lookup function (for tests).
    pub fn load_with_env(
        project_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let path = project_dir.join("rasen.yml");
        let label = file_label(project_dir);
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_yaml(&text, &label)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Error::config(format!("{label}: cannot read it: {e}"))),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    /// Defaults < `text`; `file_label` starts every error message.
    pub fn from_yaml(text: &str, file_label: &str) -> Result<Config> {
        let root = yaml::parse(text, file_label)?;
        let reader = Reader { file: file_label };
        let Value::Map(sections) = &root.value else {
            let what =
                format!("expected sections such as `orchestrator:`, got {}", root.describe());
            return Err(reader.error_at(root.line, root.col, what));
        };
        let mut config = Config::default();
        for section in sections {
            for entry in reader.section_entries(section)? {
                let path = format!("{}.{}", section.key, entry.key);
                if !config.set(&path, &entry.value, &reader)? {
                    return Err(reader.unknown_key(entry, &section.key));
                }
            }
        }
        config.background.check_distinct(file_label)?;
        Ok(config)
    }

    /// Sets the key at `path` from `node`; false when no such key exists.
    fn set(&mut self, path: &str, node: &Node, r: &Reader) -> Result<bool> {
        let (o, a, p) = (&mut self.orchestrator, &mut self.agent, &mut self.backpressure);
        let (s, q, b) = (&mut self.stall_detection, &mut self.qa, &mut self.background);
        match path {
            "orchestrator.max_iterations" => o.max_iterations = r.positive(node, path)?,
            "orchestrator.max_runtime_seconds" => o.max_runtime_seconds = r.positive(node, path)?,
            "orchestrator.session_delay_seconds" => {
                o.session_delay_seconds = r.non_negative(node, path)?
            }
            "orchestrator.session_timeout_seconds" => {
                o.session_timeout_seconds = r.positive(node, path)?
            }
            "orchestrator.idle_timeout_seconds" => {
                o.idle_timeout_seconds = r.positive(node, path)?
            }
            "agent.backend" => a.backend = r.one_of(node, path, BACKENDS)?,
            "agent.command" => a.command = r.non_empty_text(node, path)?,
            "agent.args" => a.args = r.texts(node, path)?,
            "agent.model" => a.model = r.text(node, path)?,
            "agent.stop_grace_seconds" => a.stop_grace_seconds = r.non_negative(node, path)?,
            "agent.usage_limit" => a.usage_limit = r.one_of(node, path, USAGE_LIMIT_POLICIES)?,
            "agent.max_limit_wait_seconds" => {
                a.max_limit_wait_seconds = r.non_negative(node, path)?
            }
            "backpressure.require_tests" => p.require_tests = r.flag(node, path)?,
            "backpressure.require_lint" => p.require_lint = r.flag(node, path)?,
            "backpressure.verify" => p.verify = r.commands(node, path)?,
            "stall_detection.max_no_commit_sessions" => {
                s.max_no_commit_sessions = r.positive(node, path)?
            }
            "stall_detection.max_consecutive_failures" => {
                s.max_consecutive_failures = r.positive(node, path)?
            }
            "review.enabled" => self.review.enabled = r.flag(node, path)?,
            "review.max_loops" => self.review.max_loops = r.positive(node, path)?,
            "qa.enabled" => q.enabled = r.flag(node, path)?,
            "qa.max_iterations" => q.max_iterations = r.positive(node, path)?,
            "qa.recurring_issue_threshold" => {
                q.recurring_issue_threshold = r.positive(node, path)?
            }
            "memory.max_bytes" => self.memory.max_bytes = r.non_negative(node, path)?,
            "background.status_file" => b.status_file = r.file_in_project(node, path)?,
            "background.pid_file" => b.pid_file = r.file_in_project(node, path)?,
            "background.log_file" => b.log_file = r.file_in_project(node, path)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every key path with its value as rasen.yml would show it, in the order
    /// of rasen.yml. This is also the list of known keys.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let (o, a, p) = (&self.orchestrator, &self.agent, &self.backpressure);
        let (s, r, q, b) = (&self.stall_detection, &self.review, &self.qa, &self.background);
        vec![
            ("orchestrator.max_iterations", o.max_iterations.to_string()),
            ("orchestrator.max_runtime_seconds", o.max_runtime_seconds.to_string()),
            ("orchestrator.session_delay_seconds", o.session_delay_seconds.to_string()),
            ("orchestrator.session_timeout_seconds", o.session_timeout_seconds.to_string()),
            ("orchestrator.idle_timeout_seconds", o.idle_timeout_seconds.to_string()),
            ("agent.backend", a.backend.name().to_string()),
            ("agent.command", format!("{:?}", a.command)),
            ("agent.args", format!("{:?}", a.args)),
            ("agent.model", format!("{:?}", a.model)),
            ("agent.stop_grace_seconds", a.stop_grace_seconds.to_string()),
            ("agent.usage_limit", a.usage_limit.name().to_string()),
            ("agent.max_limit_wait_seconds", a.max_limit_wait_seconds.to_string()),
            ("backpressure.require_tests", p.require_tests.to_string()),
            ("backpressure.require_lint", p.require_lint.to_string()),
            ("backpressure.verify", format!("{:?}", p.verify)),
            ("stall_detection.max_no_commit_sessions", s.max_no_commit_sessions.to_string()),
            ("stall_detection.max_consecutive_failures", s.max_consecutive_failures.to_string()),
            ("review.enabled", r.enabled.to_string()),
            ("review.max_loops", r.max_loops.to_string()),
            ("qa.enabled", q.enabled.to_string()),
            ("qa.max_iterations", q.max_iterations.to_string()),
            ("qa.recurring_issue_threshold", q.recurring_issue_threshold.to_string()),
            ("memory.max_bytes", self.memory.max_bytes.to_string()),
            ("background.status_file", format!("{:?}", b.status_file.display().to_string())),
            ("background.pid_file", format!("{:?}", b.pid_file.display().to_string())),
            ("background.log_file", format!("{:?}", b.log_file.display().to_string())),
        ]
    }

    /// The keys that differ, as `key.path: old -> new` (for the SIGHUP log line).
    pub fn changes_from(&self, old: &Config) -> Vec<String> {
        old.settings()
            .into_iter()
            .zip(self.settings())
            .filter(|((_, before), (_, after))| before != after)
            .map(|((key, before), (_, after))| format!("{key}: {before} -> {after}"))
            .collect()
    }

    /// `p` (a `background.*` path: relative, inside the project) under
    /// `project_dir`.
    pub fn resolve(&self, project_dir: &Path, p: &Path) -> PathBuf {
        project_dir.join(p)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let count = |name: &str, min: u64| env(name).map(|v| env_count(name, &v, min)).transpose();
        if let Some(n) = count("RASEN_MAX_ITERATIONS", 1)? {
            self.orchestrator.max_iterations = n;
        }
        if let Some(n) = count("RASEN_MAX_RUNTIME", 1)? {
            self.orchestrator.max_runtime_seconds = n;
        }
        if let Some(n) = count("RASEN_SESSION_TIMEOUT", 1)? {
            self.orchestrator.session_timeout_seconds = n;
        }
        if let Some(n) = count("RASEN_IDLE_TIMEOUT", 1)? {
            self.orchestrator.idle_timeout_seconds = n;
        }
        if let Some(n) = count("RASEN_SESSION_DELAY", 0)? {
            self.orchestrator.session_delay_seconds = n;
        }
        if let Some(model) = env("RASEN_AGENT_MODEL") {
            self.agent.model = model;
        }
        if let Some(command) = env("RASEN_AGENT_COMMAND") {
            if command.trim().is_empty() {
                return Err(env_error("RASEN_AGENT_COMMAND", "must not be empty"));
            }
            self.agent.command = command;
        }
        if let Some(name) = env("RASEN_AGENT_BACKEND") {
            self.agent.backend = choice(BACKENDS, &name).ok_or_else(|| {
                env_error(
                    "RASEN_AGENT_BACKEND",
                    format!("expected {}, got {name:?}", one_of(BACKENDS)),
                )
            })?;
        }
        Ok(())
    }
}

/// How the file is named in messages: the path as given, or just `rasen.yml`
/// for the current directory.
fn file_label(project_dir: &Path) -> String {
    if project_dir == Path::new(".") {
        "rasen.yml".to_string()
    } else {
        project_dir.join("rasen.yml").display().to_string()
    }
}

/// The largest number any key takes: about 31 years in seconds. Far beyond
/// any real setting, and small enough that no deadline computed from it
/// can overflow the clock.
pub const MAX_NUMBER: u64 = 1_000_000_000;

fn env_count(name: &str, value: &str, min: u64) -> Result<u64> {
    match value.parse::<u64>() {
        Ok(n) if n > MAX_NUMBER => {
            Err(env_error(name, format!("must be at most {MAX_NUMBER}, got {n}")))
        }
        Ok(n) if n >= min => Ok(n),
        _ => {
            let kind = if min == 0 { "a non-negative integer" } else { "a positive integer" };
            Err(env_error(name, format!("expected {kind}, got {value:?}")))
        }
    }
}

fn env_error(name: &str, what: impl Display) -> Error {
    Error::config(format!("environment variable {name}: {what}"))
}

fn choice<T: Copy>(choices: &[(&str, T)], name: &str) -> Option<T> {
    choices.iter().find(|(n, _)| *n == name).map(|(_, value)| *value)
}

/// "one of claude, command"
fn one_of<T>(choices: &[(&str, T)]) -> String {
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    format!("one of {}", names.join(", "))
}

/// Reads typed values out of the YAML tree. Every error names the file, the
/// position and the key path.
struct Reader<'a> {
    file: &'a str,
}

impl Reader<'_> {
    fn error_at(&self, line: usize, col: usize, what: impl Display) -> Error {
        Error::config(format!("{}:{line}:{col}: {what}", self.file))
    }

    fn error(&self, node: &Node, path: &str, what: impl Display) -> Error {
        self.error_at(node.line, node.col, format!("{path}: {what}"))
    }

    fn expected(&self, node: &Node, path: &str, what: &str) -> Error {
        self.error(node, path, format!("expected {what}, got {}", node.describe()))
    }

    /// The entries of a known section; an empty section (`review:`) has none.
    fn section_entries<'n>(&self, section: &'n Entry) -> Result<&'n [Entry]> {
        let known = known_sections();
        if !known.contains(&section.key.as_str()) {
            let hint = did_you_mean(&section.key, &known, "sections");
            let what = format!("unknown section \"{}\"{hint}", section.key);
            return Err(self.error_at(section.line, section.col, what));
        }
        match &section.value.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.expected(&section.value, &section.key, "a mapping of keys")),
        }
    }

    fn unknown_key(&self, entry: &Entry, section: &str) -> Error {
        let prefix = format!("{section}.");
        let defaults = Config::default().settings();
        let known: Vec<&str> =
            defaults.iter().filter_map(|(path, _)| path.strip_prefix(&prefix)).collect();
        let hint = did_you_mean(&entry.key, &known, "keys");
        let what = format!("unknown key \"{}\" in {section}{hint}", entry.key);
        self.error_at(entry.line, entry.col, what)
    }

    /// A whole number, 1 or more: a count or a duration that 0 would break.
    fn positive(&self, node: &Node, path: &str) -> Result<u64> {
        self.count(node, path, 1)
    }

    /// A whole number, 0 or more: 0 means "none" or "at once".
    fn non_negative(&self, node: &Node, path: &str) -> Result<u64> {
        self.count(node, path, 0)
    }

    fn count(&self, node: &Node, path: &str, min: u64) -> Result<u64> {
        let Some(n) = node.as_int() else { return Err(self.expected(node, path, "an integer")) };
        match u64::try_from(n) {
            Ok(n) if n > MAX_NUMBER => {
                Err(self.error(node, path, format!("must be at most {MAX_NUMBER}, got {n}")))
            }
            Ok(n) if n >= min => Ok(n),
            _ if min == 0 => Err(self.error(node, path, format!("must not be negative, got {n}"))),
            _ => Err(self.error(node, path, format!("must be at least {min}, got {n}"))),
        }
    }

    fn flag(&self, node: &Node, path: &str) -> Result<bool> {
        node.as_bool().ok_or_else(|| self.expected(node, path, "true or false"))
    }

    /// Any scalar, as text; an empty value is the empty string.
    fn text(&self, node: &Node, path: &str) -> Result<String> {
        match &node.value {
            Value::Scalar { text, .. } => Ok(text.clone()),
            Value::Null => Ok(String::new()),
            _ => Err(self.expected(node, path, "a string")),
        }
    }

    fn non_empty_text(&self, node: &Node, path: &str) -> Result<String> {
        let text = self.text(node, path)?;
        if text.trim().is_empty() {
            return Err(self.error(node, path, "must not be empty"));
        }
        Ok(text)
    }

    /// A file of rasen's that may live anywhere in the project: a relative
    /// path that stays inside it, in its plain form (see `plain_path`).
    fn file_in_project(&self, node: &Node, path: &str) -> Result<PathBuf> {
        let text = self.non_empty_text(node, path)?;
        plain_path(Path::new(&text)).map_err(|why| self.error(node, path, why))
    }

    /// A list of strings; an empty value is the empty list.
    fn texts(&self, node: &Node, path: &str) -> Result<Vec<String>> {
        match &node.value {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.text(item, &format!("{path}[{i}]")))
                .collect(),
            Value::Null => Ok(Vec::new()),
            Value::Scalar { text, .. } => {
                Err(self.expected(node, path, &format!("a list (write [{text:?}])")))
            }
            Value::Map(_) => Err(self.expected(node, path, "a list")),
        }
    }

    /// A list of shell commands, none of them empty.
    fn commands(&self, node: &Node, path: &str) -> Result<Vec<String>> {
        let commands = self.texts(node, path)?;
        if let Value::List(items) = &node.value {
            if let Some(i) = commands.iter().position(|c| c.trim().is_empty()) {
                return Err(self.error(&items[i], &format!("{path}[{i}]"), "empty command"));
            }
        }
        Ok(commands)
    }

    fn one_of<T: Copy>(&self, node: &Node, path: &str, choices: &[(&str, T)]) -> Result<T> {
        let text = match &node.value {
            Value::Scalar { text, .. } => Some(text.as_str()),
            _ => None,
        };
        text.and_then(|t| choice(choices, t))
            .ok_or_else(|| self.expected(node, path, &one_of(choices)))
    }
}

/// The section names, in rasen.yml order.
fn known_sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = Vec::new();
    for (path, _) in Config::default().settings() {
        let section = path.split('.').next().unwrap_or(path);
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    sections
}

/// ` (did you mean "x"?)` for a near spelling, else the list of known names.
fn did_you_mean(word: &str, known: &[&str], what: &str) -> String {
    match crate::spelling::closest(word, known) {
        Some(name) => format!(" (did you mean \"{name}\"?)"),
        None => format!(" (known {what}: {})", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        match Config::from_yaml(text, "rasen.yml") {
            Ok(config) => config,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn error_of(text: &str) -> String {
        match Config::from_yaml(text, "rasen.yml") {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => {
                assert_eq!(e.code, crate::error::EXIT_USAGE);
                e.message
            }
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn numbers_past_the_maximum_are_refused() {
        let err = error_of("agent:\n  stop_grace_seconds: 9223372036854775807\n");
        assert!(err.contains("agent.stop_grace_seconds: must be at most 1000000000"), "{err}");
        let env = |name: &str| (name == "RASEN_SESSION_TIMEOUT").then(|| "99999999999".to_string());
        let err = Config::load_with_env(Path::new("/nonexistent"), &env).unwrap_err();
        assert!(err.message.contains("must be at most"), "{err}");
    }

    #[test]
    fn the_shipped_rasen_yml_is_exactly_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG_YAML), Config::default());
    }

    #[test]
    fn the_shipped_rasen_yml_documents_every_key_in_order() {
        let root = match yaml::parse(DEFAULT_CONFIG_YAML, "rasen.yml") {
            Ok(root) => root,
            Err(e) => panic!("{e}"),
        };
        let Value::Map(sections) = root.value else { panic!("not a mapping") };
        let mut written = Vec::new();
        for section in sections {
            let Value::Map(entries) = section.value.value else {
                panic!("{} is empty", section.key)
            };
            written.extend(entries.iter().map(|e| format!("{}.{}", section.key, e.key)));
        }
        let known: Vec<String> =
            Config::default().settings().iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(written, known);
    }

    fn unusual() -> Config {
        Config {
            orchestrator: OrchestratorConfig {
                max_iterations: 11,
                max_runtime_seconds: 12,
                session_delay_seconds: 13,
                session_timeout_seconds: 14,
                idle_timeout_seconds: 15,
            },
            agent: AgentConfig {
                backend: Backend::Command,
                command: "./agent.sh".to_string(),
                args: vec!["--fast".to_string(), "two words".to_string()],
                model: "opus".to_string(),
                stop_grace_seconds: 16,
                usage_limit: UsageLimitPolicy::Wait,
                max_limit_wait_seconds: 17,
            },
            backpressure: BackpressureConfig {
                require_tests: false,
                require_lint: false,
                verify: vec!["make test".to_string()],
            },
            stall_detection: StallConfig {
                max_no_commit_sessions: 18,
                max_consecutive_failures: 19,
            },
            review: ReviewConfig { enabled: true, max_loops: 20 },
            qa: QaConfig { enabled: true, max_iterations: 21, recurring_issue_threshold: 22 },
            memory: MemoryConfig { max_bytes: 23 },
            background: BackgroundConfig {
                status_file: PathBuf::from("s.json"),
                pid_file: PathBuf::from("run/r.pid"),
                log_file: PathBuf::from("l.log"),
            },
        }
    }

    /// Writes `config` as rasen.yml text, from its settings.
    fn to_yaml(config: &Config) -> String {
        let mut text = String::new();
        let mut current = "";
        for (path, value) in config.settings() {
            let (section, key) = path.split_once('.').unwrap_or(("", path));
            if section != current {
                text.push_str(&format!("{section}:\n"));
                current = section;
            }
            text.push_str(&format!("  {key}: {value}\n"));
        }
        text
    }

    #[test]
    fn every_key_is_read_into_its_own_field() {
        let config = unusual();
        assert_eq!(parse(&to_yaml(&config)), config);
        assert_eq!(parse(&to_yaml(&Config::default())), Config::default());
    }

    #[test]
    fn missing_keys_and_sections_keep_their_defaults() {
        let config = parse("orchestrator:\n  max_iterations: 7\nreview:\nqa:\n  enabled: true\n");
        let mut expected = Config::default();
        expected.orchestrator.max_iterations = 7;
        expected.qa.enabled = true;
        assert_eq!(config, expected);
        assert_eq!(parse(""), Config::default());
        assert_eq!(parse("# only a comment\n"), Config::default());
    }

    #[test]
    fn lists_can_be_flow_or_block() {
        let config = parse(
            "agent:\n  args: [--verbose, \"a b\"]\nbackpressure:\n  verify:\n    - make test\n    - 'make lint'\n",
        );
        assert_eq!(config.agent.args, ["--verbose", "a b"]);
        assert_eq!(config.backpressure.verify, ["make test", "make lint"]);
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_known_one() {
        let text = "# limits\norchestrator:\n  max_iterations: 5\n  max_iteration: 6\n";
        assert_eq!(
            error_of(text),
            "rasen.yml:4:3: unknown key \"max_iteration\" in orchestrator (did you mean \"max_iterations\"?)"
        );
        assert_eq!(
            error_of("orchestrater:\n  max_iterations: 5\n"),
            "rasen.yml:1:1: unknown section \"orchestrater\" (did you mean \"orchestrator\"?)"
        );
        let far = error_of("review:\n  colour: red\n");
        assert_eq!(
            far,
            "rasen.yml:2:3: unknown key \"colour\" in review (known keys: enabled, max_loops)"
        );
    }

    #[test]
    fn wrong_types_name_the_key_path() {
        assert_eq!(
            error_of("orchestrator:\n  max_iterations: lots\n"),
            "rasen.yml:2:19: orchestrator.max_iterations: expected an integer, got \"lots\""
        );
        let cases = [
            (
                "orchestrator:\n  max_iterations: \"5\"\n",
                "2:19: orchestrator.max_iterations: expected an integer, got a quoted string \"5\"",
            ),
            (
                "orchestrator:\n  max_iterations: 2.5\n",
                "2:19: orchestrator.max_iterations: expected an integer, got \"2.5\"",
            ),
            (
                "orchestrator:\n  max_iterations:\n",
                "2:18: orchestrator.max_iterations: expected an integer, got nothing",
            ),
            (
                "review:\n  enabled: yes\n",
                "2:12: review.enabled: expected true or false, got \"yes\"",
            ),
            ("agent:\n  model: [a]\n", "2:10: agent.model: expected a string, got a list"),
            (
                "agent:\n  args: --fast\n",
                "2:9: agent.args: expected a list (write [\"--fast\"]), got \"--fast\"",
            ),
            (
                "agent:\n  args: [x, y]\n  command:\n    a: b\n",
                "4:5: agent.command: expected a string, got a mapping",
            ),
            (
                "agent:\n  backend: gpt\n",
                "2:12: agent.backend: expected one of claude, command, got \"gpt\"",
            ),
            (
                "agent:\n  usage_limit: retry\n",
                "2:16: agent.usage_limit: expected one of wait, stop, got \"retry\"",
            ),
            ("qa: 5\n", "1:5: qa: expected a mapping of keys, got \"5\""),
            ("memory:\n  - 1\n", "2:3: memory: expected a mapping of keys, got a list"),
            ("- a\n", "1:1: expected sections such as `orchestrator:`, got a list"),
        ];
        for (text, expected) in cases {
            assert_eq!(error_of(text), format!("rasen.yml:{expected}"), "{text:?}");
        }
    }

    #[test]
    fn quoted_enum_values_and_plain_strings_are_accepted() {
        let config = parse("agent:\n  backend: \"command\"\n  command: 42\n  model: 'opus'\n");
        assert_eq!(config.agent.backend, Backend::Command);
        assert_eq!(config.agent.command, "42");
        assert_eq!(config.agent.model, "opus");
    }

    #[test]
    fn zero_is_rejected_where_it_makes_no_sense() {
        let at_least_one = [
            "orchestrator.max_iterations",
            "orchestrator.max_runtime_seconds",
            "orchestrator.session_timeout_seconds",
            "orchestrator.idle_timeout_seconds",
            "stall_detection.max_no_commit_sessions",
            "stall_detection.max_consecutive_failures",
            "review.max_loops",
            "qa.max_iterations",
            "qa.recurring_issue_threshold",
        ];
        for path in at_least_one {
            let (section, key) = path.split_once('.').unwrap_or_default();
            let text = format!("{section}:\n  {key}: 0\n");
            let col = key.len() + 5;
            assert_eq!(
                error_of(&text),
                format!("rasen.yml:2:{col}: {path}: must be at least 1, got 0")
            );
            let text = format!("{section}:\n  {key}: -2\n");
            assert!(error_of(&text).ends_with("must be at least 1, got -2"), "{path}");
        }
    }

    #[test]
    fn zero_is_accepted_where_it_means_none_but_negatives_are_not() {
        let config = parse(
            "orchestrator:\n  session_delay_seconds: 0\nagent:\n  stop_grace_seconds: 0\n  max_limit_wait_seconds: 0\nmemory:\n  max_bytes: 0\n",
        );
        assert_eq!(config.orchestrator.session_delay_seconds, 0);
        assert_eq!(config.agent.stop_grace_seconds, 0);
        assert_eq!(config.agent.max_limit_wait_seconds, 0);
        assert_eq!(config.memory.max_bytes, 0);
        assert_eq!(
            error_of("memory:\n  max_bytes: -1\n"),
            "rasen.yml:2:14: memory.max_bytes: must not be negative, got -1"
        );
    }

    #[test]
    fn empty_commands_and_paths_are_rejected() {
        let cases = [
            ("agent:\n  command: \"\"\n", "2:12: agent.command: must not be empty"),
            ("agent:\n  command:\n", "2:11: agent.command: must not be empty"),
            ("background:\n  pid_file: ''\n", "2:13: background.pid_file: must not be empty"),
            ("background:\n  log_file: \" \"\n", "2:13: background.log_file: must not be empty"),
            (
                "backpressure:\n  verify: [make, \"\"]\n",
                "2:18: backpressure.verify[1]: empty command",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_of(text), format!("rasen.yml:{expected}"), "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_come_through_with_the_file_label() {
        assert_eq!(
            error_of("agent:\n\tmodel: x\n"),
            "rasen.yml:2:1: tab in indentation; indent with spaces"
        );
    }

    fn temp_project(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rasen-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        dir
    }

    fn write(path: &Path, text: &str) {
        if let Err(e) = std::fs::write(path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = temp_project("env");
        write(&dir.join("rasen.yml"), "orchestrator:\n  max_iterations: 5\n  session_delay_seconds: 9\nagent:\n  model: sonnet\n");
        let env = |name: &str| match name {
            "RASEN_MAX_ITERATIONS" => Some("42".to_string()),
            "RASEN_MAX_RUNTIME" => Some("60".to_string()),
            "RASEN_SESSION_TIMEOUT" => Some("61".to_string()),
            "RASEN_IDLE_TIMEOUT" => Some("62".to_string()),
            "RASEN_SESSION_DELAY" => Some("0".to_string()),
            "RASEN_AGENT_MODEL" => Some("opus".to_string()),
            "RASEN_AGENT_COMMAND" => Some("/bin/agent".to_string()),
            "RASEN_AGENT_BACKEND" => Some("command".to_string()),
            _ => None,
        };
        let from_file = Config::load_with_env(&dir, &no_env);
        let layered = Config::load_with_env(&dir, &env);
        let _ = std::fs::remove_dir_all(&dir);
        let from_file = from_file.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_file.orchestrator.max_iterations, 5);
        assert_eq!(from_file.orchestrator.session_delay_seconds, 9);
        assert_eq!(from_file.agent.model, "sonnet");
        let mut expected = from_file.clone();
        expected.orchestrator.max_iterations = 42;
        expected.orchestrator.max_runtime_seconds = 60;
        expected.orchestrator.session_timeout_seconds = 61;
        expected.orchestrator.idle_timeout_seconds = 62;
        expected.orchestrator.session_delay_seconds = 0;
        expected.agent.model = "opus".to_string();
        expected.agent.command = "/bin/agent".to_string();
        expected.agent.backend = Backend::Command;
        assert_eq!(layered.unwrap_or_else(|e| panic!("{e}")), expected);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let cases = [
            ("RASEN_MAX_ITERATIONS", "x", "expected a positive integer, got \"x\""),
            ("RASEN_MAX_ITERATIONS", "0", "expected a positive integer, got \"0\""),
            ("RASEN_MAX_RUNTIME", "-5", "expected a positive integer, got \"-5\""),
            ("RASEN_SESSION_TIMEOUT", "", "expected a positive integer, got \"\""),
            ("RASEN_IDLE_TIMEOUT", "1.5", "expected a positive integer, got \"1.5\""),
            ("RASEN_SESSION_DELAY", "soon", "expected a non-negative integer, got \"soon\""),
            ("RASEN_AGENT_COMMAND", "", "must not be empty"),
            ("RASEN_AGENT_BACKEND", "gpt", "expected one of claude, command, got \"gpt\""),
        ];
        let dir = temp_project("bad-env");
        for (variable, value, what) in cases {
            let env = |name: &str| (name == variable).then(|| value.to_string());
            match Config::load_with_env(&dir, &env) {
                Ok(_) => panic!("{variable}={value:?} was accepted"),
                Err(e) => assert_eq!(e.message, format!("environment variable {variable}: {what}")),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_means_defaults_and_errors_name_the_file_path() {
        let dir = temp_project("load");
        let missing = Config::load_with_env(&dir, &no_env);
        write(&dir.join("rasen.yml"), "review:\n  max_loops: 0\n");
        let bad = Config::load_with_env(&dir, &no_env);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(missing, Ok(Config::default()));
        let expected = format!(
            "{}:2:14: review.max_loops: must be at least 1, got 0",
            dir.join("rasen.yml").display()
        );
        assert_eq!(bad.map_err(|e| e.message), Err(expected));
    }

    #[test]
    fn the_current_directory_is_labelled_just_rasen_yml() {
        assert_eq!(file_label(Path::new(".")), "rasen.yml");
        assert_eq!(file_label(Path::new("proj")), "proj/rasen.yml");
        assert_eq!(file_label(Path::new("/srv/proj/")), "/srv/proj/rasen.yml");
    }

    #[test]
    fn changes_list_each_changed_key_with_old_and_new_values() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(new.changes_from(&old).is_empty());
        new.orchestrator.max_iterations = 5;
        new.agent.model = "opus".to_string();
        new.backpressure.verify = vec!["make test".to_string()];
        new.review.enabled = true;
        assert_eq!(
            new.changes_from(&old),
            [
                "orchestrator.max_iterations: 100 -> 5",
                "agent.model: \"\" -> \"opus\"",
                "backpressure.verify: [] -> [\"make test\"]",
                "review.enabled: false -> true",
            ]
        );
    }

    #[test]
    fn relative_paths_resolve_inside_the_project() {
        let config = Config::default();
        let project = Path::new("/srv/proj");
        assert_eq!(
            config.resolve(project, &config.background.pid_file),
            Path::new("/srv/proj/.rasen/rasen.pid")
        );
    }

    #[test]
    fn background_paths_stay_inside_the_project_in_their_plain_form() {
        let config = parse("background:\n  log_file: ./logs/old/../rasen.log\n  pid_file: run/\n");
        assert_eq!(config.background.log_file, Path::new("logs/rasen.log"));
        assert_eq!(config.background.pid_file, Path::new("run"));
        let cases = [
            ("pid_file: /run/rasen.pid", "2:13: background.pid_file: must stay inside the project, written relative to it (like .rasen/rasen.pid), not as the absolute path /run/rasen.pid"),
            ("log_file: ../rasen.log", "2:13: background.log_file: must stay inside the project, but ../rasen.log climbs out of it with '..'"),
            ("status_file: a/../../b.json", "2:16: background.status_file: must stay inside the project, but a/../../b.json climbs out of it with '..'"),
            ("pid_file: a/..", "2:13: background.pid_file: must name a file inside the project, not \"a/..\""),
            ("pid_file: .rasen/task.txt", "2:13: background.pid_file: .rasen/task.txt is the task; choose a path of its own for this file"),
            ("log_file: ./rasen.yml", "2:13: background.log_file: ./rasen.yml is the configuration; choose a path of its own for this file"),
            ("log_file: .git/hooks/pre-commit", "2:13: background.log_file: .git/hooks/pre-commit is git's directory; choose a path of its own for this file"),
            ("log_file: .rasen/prompts/coder.md", "2:13: background.log_file: .rasen/prompts/coder.md is the prompt overrides; choose a path of its own for this file"),
            ("status_file: .rasen", "2:16: background.status_file: .rasen is rasen's directory; choose a path of its own for this file"),
        ];
        for (line, expected) in cases {
            let text = format!("background:\n  {line}\n");
            assert_eq!(error_of(&text), format!("rasen.yml:{expected}"), "{line}");
        }
    }

    #[test]
    fn two_background_keys_may_not_name_the_same_file() {
        assert_eq!(
            error_of("background:\n  pid_file: .rasen/./rasen.log\n"),
            "rasen.yml: background.pid_file and background.log_file are both .rasen/rasen.log; give each a file of its own"
        );
    }
}
