//! The prompt each agent session starts from: built-in templates compiled
//! into the binary (`src/prompts/*.md`), a project's overrides in
//! `.rasen/prompts/<role>.md`, and `{placeholder}` substitution. This module
//! only reads templates and fills them in; it never decides what goes into
//! them (the orchestrator passes the values), never reads an override
//! through a symlink, and never writes a file.
//!
//! A placeholder is `{name}` where `name` is lowercase letters and
//! underscores. Any other brace (JSON such as `{"id": 1}`, `{ }`, `{Name}`)
//! is plain text. Values are inserted as they are and never scanned again,
//! so a diff or a task that contains `{task}` cannot expand.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::BackpressureConfig;
use crate::error::{Error, Result};
use crate::history::{self, Attempt, AttemptHistory, Outcome};
use crate::plan::Subtask;
use crate::project::Project;
use crate::{store, text};

/// Which kind of session a prompt is for; also the template's file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initializer,
    Coder,
    // The reviewer and QA roles come with the review and QA loops, which
    // are not in this version.
}

impl Role {
    /// `initializer` or `coder`: the template's file name
    /// and the agent's `RASEN_ROLE`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Initializer => "initializer",
            Role::Coder => "coder",
        }
    }

    fn built_in_template(self) -> &'static str {
        match self {
            Role::Initializer => include_str!("prompts/initializer.md"),
            Role::Coder => include_str!("prompts/coder.md"),
        }
    }
}

/// Every placeholder a template may use. Any other `{name}` in an override
/// is a mistake (most likely a typo) and is reported, not left in silently.
pub const PLACEHOLDERS: &[&str] = &[
    "task",
    "project_dir",
    "subtask_id",
    "subtask_title",
    "subtask_description",
    "subtask_files",
    "subtask_tests",
    "acceptance_criteria",
    "attempt",
    "memories",
    "failed_approaches",
    "plan_path",
    "plan_schema",
    "plan_error",
    "evidence_required",
    // Values of the review and QA loops, which are not in this version.
    // Known, so that an override copied from an earlier built-in template
    // keeps working; they render empty.
    "diff",
    "review_feedback",
    "qa_issues",
];

/// Where the initializer writes the plan, relative to the project root.
pub const PLAN_PATH: &str = ".rasen/implementation_plan.json";

/// The plan's JSON shape as the initializer must write it (without the
/// timestamps rasen adds itself).
pub const PLAN_SCHEMA: &str = r#"{
  "task_name": "Short name of the whole task",
  "subtasks": [
    {
      "id": "auth-1",
      "title": "User model",
      "description": "What to build, where, and how to tell it works",
      "status": "pending",
      "dependencies": [],
      "files": ["src/models/user.py"],
      "tests": ["tests/test_user.py"],
      "acceptance_criteria": ["`pytest tests/test_user.py` passes", "..."],
      "attempts": 0
    },
    {
      "id": "auth-2",
      "title": "Login endpoint",
      "description": "...",
      "status": "pending",
      "dependencies": ["auth-1"],
      "files": ["src/api/login.py"],
      "tests": ["tests/test_login.py"],
      "acceptance_criteria": ["..."],
      "attempts": 0
    }
  ]
}"#;

/// The values a template is filled with, as `(placeholder, value)`.
pub type Vars = Vec<(&'static str, String)>;

/// The values every session's prompt shares.
pub struct Common<'a> {
    pub task: &'a str,
    pub project: &'a Project,
    /// The tail of memories.md.
    pub memories: String,
}

impl Common<'_> {
    fn vars(&self) -> Vars {
        vec![
            ("task", self.task.to_string()),
            ("project_dir", self.project.root.display().to_string()),
            ("plan_path", self.project.show(&self.project.plan_file())),
            ("memories", self.memories.clone()),
        ]
    }
}

/// The initializer's values; `plan_error` says why the last plan was
/// refused ("" the first time).
pub fn initializer_vars(common: &Common, plan_error: &str) -> Vars {
    let mut vars = common.vars();
    vars.push(("plan_schema", PLAN_SCHEMA.to_string()));
    vars.push(("plan_error", plan_error.to_string()));
    vars
}

/// A coder's values for `attempt` at `subtask`, with the earlier attempts
/// that failed and the evidence its done claim must carry.
pub fn coder_vars(
    common: &Common,
    subtask: &Subtask,
    attempt: u32,
    history: &AttemptHistory,
    evidence: &BackpressureConfig,
) -> Vars {
    let mut vars = common.vars();
    vars.extend([
        ("subtask_id", subtask.id.clone()),
        ("subtask_title", subtask.title_or_id().to_string()),
        ("subtask_description", subtask.description.clone()),
        ("subtask_files", text::bullets(subtask.files())),
        ("subtask_tests", text::bullets(subtask.tests())),
        ("acceptance_criteria", text::bullets(subtask.acceptance_criteria())),
        ("attempt", attempt.to_string()),
        ("failed_approaches", failed_approaches(history, &subtask.id)),
        ("evidence_required", evidence_required(evidence).to_string()),
    ]);
    vars
}

/// What a done claim must say, in the words the claim must use.
fn evidence_required(evidence: &BackpressureConfig) -> &'static str {
    match (evidence.require_tests, evidence.require_lint) {
        (true, true) => "tests: pass, lint: pass",
        (true, false) => "tests: pass",
        (false, true) => "lint: pass",
        (false, false) => "no evidence required",
    }
}

/// The earlier attempts of a subtask the next session is told about (at
/// most 5, the most recent last; see `history::earlier_attempts_to_show`),
/// one line each: what was tried and why it was not accepted, or that it
/// was interrupted, which says nothing against its approach.
fn failed_approaches(history: &AttemptHistory, subtask_id: &str) -> String {
    let lines: Vec<String> = history::earlier_attempts_to_show(history, subtask_id, 5)
        .iter()
        .map(|a| earlier_attempt_line(a))
        .collect();
    if !lines.is_empty() {
        return lines.join("\n");
    }
    if history.attempts.iter().any(|a| a.subtask_id == subtask_id) {
        "(none: no earlier attempt failed)".to_string()
    } else {
        "(none: this is the first attempt)".to_string()
    }
}

fn earlier_attempt_line(attempt: &Attempt) -> String {
    let mut line = format!("- session {} ({}):", attempt.session, attempt.outcome.as_str());
    if attempt.outcome == Outcome::Interrupted {
        line.push_str(" cut short from outside, not a verdict on its approach");
        if let Some(reason) = &attempt.reason {
            line.push_str(&format!(" ({reason})"));
        }
        line.push_str("; its commits, if any, are in `git log`: continue from them");
        return line;
    }
    if let Some(approach) = &attempt.approach {
        line.push_str(&format!(" tried: {approach};"));
    }
    if let Some(reason) = &attempt.reason {
        line.push_str(&format!(" why it was not accepted: {reason}"));
    }
    line
}

/// Where a project overrides the built-in template for `role`.
pub fn override_path(project_dir: &Path, role: Role) -> PathBuf {
    project_dir.join(".rasen").join("prompts").join(format!("{}.md", role.name()))
}

/// The prompt for a `role` session: the project's override if there is one,
/// else the built-in template, with every placeholder replaced by its value
/// in `vars`. A placeholder without a value becomes empty, except
/// `project_dir`, `plan_path` and `plan_schema`, which default to the
/// project directory, `PLAN_PATH` and `PLAN_SCHEMA`.
pub fn render(project_dir: &Path, role: Role, vars: &[(&str, String)]) -> Result<String> {
    debug_assert!(vars.iter().all(|(name, _)| PLACEHOLDERS.contains(name)), "unknown var");
    let path = override_path(project_dir, role);
    let defaults = [
        ("project_dir", project_dir.display().to_string()),
        ("plan_path", PLAN_PATH.to_string()),
        ("plan_schema", PLAN_SCHEMA.to_string()),
    ];
    // Given values first: the first match wins.
    let values: Vec<(&str, &str)> =
        vars.iter().chain(defaults.iter()).map(|(name, value)| (*name, value.as_str())).collect();
    match read_override(&path)? {
        Some(template) => substitute(&template, &path.display().to_string(), &values),
        None => {
            let label = format!("built-in template src/prompts/{}.md", role.name());
            substitute(role.built_in_template(), &label, &values)
        }
    }
}

/// The override's text, or `None` when the project has none. Never read
/// through a symlink, the file's or its directory's: an override is the
/// project's own words, not whatever a link points at. (Unlike a state
/// file, it may be a FIFO that something writes the template into: it is
/// the project's to choose.)
fn read_override(path: &Path) -> Result<Option<String>> {
    if let Some(dir) = path.parent() {
        store::refuse_symlinked_dir(dir)?;
    }
    let opened =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(store::symlink_refused(path))
        }
        Err(e) => return Err(Error::io(path, "cannot open the prompt template", e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "cannot read the prompt template", e))?;
    String::from_utf8(bytes).map(Some).map_err(|_| {
        Error::config(format!(
            "{}: the prompt template is not UTF-8 text; save it as UTF-8 or remove it to use the built-in one",
            path.display()
        ))
    })
}

/// Replaces each `{name}` of a known placeholder with its first value in
/// `values` (empty when it has none), in one pass. `label` names the
/// template in errors.
fn substitute(template: &str, label: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        rendered.push_str(&rest[..open]);
        let after_brace = &rest[open + 1..];
        match placeholder_name(after_brace) {
            Some(name) if PLACEHOLDERS.contains(&name) => {
                let value = values.iter().find(|(var, _)| *var == name);
                rendered.push_str(value.map_or("", |(_, value)| value));
                rest = &after_brace[name.len() + 1..];
            }
            Some(name) => {
                let position = template.len() - rest.len() + open;
                return Err(unknown_placeholder(template, label, position, name));
            }
            None => {
                rendered.push('{');
                rest = after_brace;
            }
        }
    }
    rendered.push_str(rest);
    Ok(rendered)
}

/// The `name` of `name}` at the start of `text`, when it has placeholder
/// form (`[a-z_]+` then `}`).
fn placeholder_name(text: &str) -> Option<&str> {
    let end = text.find(|c: char| !(c.is_ascii_lowercase() || c == '_'))?;
    (end > 0 && text[end..].starts_with('}')).then(|| &text[..end])
}

fn unknown_placeholder(template: &str, label: &str, position: usize, name: &str) -> Error {
    let before = &template[..position];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |text| text.chars().count()) + 1;
    let known: Vec<String> = PLACEHOLDERS.iter().map(|known| format!("{{{known}}}")).collect();
    Error::config(format!(
        "{label}:{line}:{column}: unknown placeholder {{{name}}}; \
         use one of {} or reword the text so it is not a lowercase name in braces",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh project directory for one test, removed when dropped.
    struct Project(PathBuf);

    impl Project {
        fn new(name: &str) -> Project {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let unique = COUNTER.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir()
                .join(format!("rasen-prompts-{}-{unique}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Project(dir)
        }

        fn with_override(self, role: Role, text: &str) -> Project {
            let path = override_path(&self.0, role);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
            self
        }
    }

    impl Drop for Project {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn render_text(template: &str, vars: &[(&str, &str)]) -> Result<String> {
        substitute(template, "test.md", vars)
    }

    /// A distinct value for every placeholder, so a test can tell them apart.
    fn all_vars() -> Vec<(&'static str, String)> {
        PLACEHOLDERS.iter().map(|name| (*name, format!("<value of {name}>"))).collect()
    }

    const ALL_ROLES: [Role; 2] = [Role::Initializer, Role::Coder];

    fn attempt_at_t1(session: u64, outcome: Outcome, approach: &str, reason: &str) -> Attempt {
        let mut attempt = Attempt::running("t1", session, "coder", None, "then".into());
        attempt.outcome = outcome;
        attempt.approach = Some(approach.to_string()).filter(|a| !a.is_empty());
        attempt.reason = Some(reason.to_string()).filter(|r| !r.is_empty());
        attempt
    }

    #[test]
    fn earlier_attempts_show_failures_and_interruptions() {
        let mut history = AttemptHistory::new();
        assert_eq!(failed_approaches(&history, "t1"), "(none: this is the first attempt)");
        history.record(attempt_at_t1(2, Outcome::UsageLimit, "", "limit"));
        assert_eq!(failed_approaches(&history, "t1"), "(none: no earlier attempt failed)");
        history.record(attempt_at_t1(3, Outcome::Refused, "did x", "no commit"));
        history.record(attempt_at_t1(4, Outcome::Interrupted, "", "stopped by a signal"));
        assert_eq!(
            failed_approaches(&history, "t1"),
            "- session 3 (refused): tried: did x; why it was not accepted: no commit\n\
             - session 4 (interrupted): cut short from outside, not a verdict on its approach \
             (stopped by a signal); its commits, if any, are in `git log`: continue from them"
        );
        assert_eq!(failed_approaches(&history, "t2"), "(none: this is the first attempt)");
    }

    #[test]
    fn role_names_are_the_template_file_names() {
        let names: Vec<&str> = ALL_ROLES.iter().map(|role| role.name()).collect();
        assert_eq!(names, ["initializer", "coder"]);
    }

    #[test]
    fn placeholders_are_replaced_by_their_values() {
        let text = render_text(
            "Do {subtask_id}: {subtask_title}, attempt {attempt}.",
            &[("subtask_id", "auth-2"), ("subtask_title", "Login"), ("attempt", "3")],
        );
        assert_eq!(text.unwrap(), "Do auth-2: Login, attempt 3.");
    }

    #[test]
    fn a_placeholder_without_a_value_renders_empty() {
        assert_eq!(render_text("[{plan_error}]", &[]).unwrap(), "[]");
    }

    #[test]
    fn braces_that_are_not_placeholders_are_left_alone() {
        let template = r#"{"id": "a-1", "deps": []} {} { task } {Task} {task-x} {a1} {{ x"#;
        assert_eq!(render_text(template, &[("task", "T")]).unwrap(), template);
        assert_eq!(render_text("{{task}}", &[("task", "T")]).unwrap(), "{T}");
        assert_eq!(render_text("ends with {", &[]).unwrap(), "ends with {");
        assert_eq!(render_text("ends with {task", &[]).unwrap(), "ends with {task");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let text =
            render_text("{memories}|{task}", &[("memories", "+ {task} {unknown}"), ("task", "T")]);
        assert_eq!(text.unwrap(), "+ {task} {unknown}|T");
    }

    #[test]
    fn placeholders_of_the_loops_not_in_this_version_render_empty() {
        let text = render_text("[{review_feedback}{qa_issues}{diff}]", &[]);
        assert_eq!(text.unwrap(), "[]");
    }

    #[test]
    fn values_may_hold_any_text() {
        let text = render_text("é {task} ü", &[("task", "日本 {\"x\": 1}")]);
        assert_eq!(text.unwrap(), "é 日本 {\"x\": 1} ü");
    }

    #[test]
    fn an_unknown_placeholder_is_reported_with_its_line_and_column() {
        let err = render_text("line one\nsee {taks} here\n", &[]).unwrap_err();
        assert_eq!(err.code, crate::error::EXIT_USAGE);
        assert!(
            err.message.starts_with("test.md:2:5: unknown placeholder {taks}"),
            "{}",
            err.message
        );
        assert!(err.message.contains("{task}, {project_dir}"), "{}", err.message);
        assert!(err.message.contains("{evidence_required}"), "{}", err.message);
    }

    #[test]
    fn the_built_in_template_is_used_without_an_override() {
        let project = Project::new("builtin");
        let prompt = render(&project.0, Role::Coder, &all_vars()).unwrap();
        assert!(prompt.contains("<value of subtask_id>"));
        assert!(prompt.contains("build.done"));
    }

    #[test]
    fn an_override_replaces_the_built_in_template() {
        let project = Project::new("override").with_override(Role::Initializer, "Plan {task}.\n");
        let prompt =
            render(&project.0, Role::Initializer, &[("task", "the login".to_string())]).unwrap();
        assert_eq!(prompt, "Plan the login.\n");
        // Other roles keep the built-in template.
        let coder = render(&project.0, Role::Coder, &[]).unwrap();
        assert!(coder.contains("<event topic=\"build.done\">"));
    }

    #[test]
    fn an_unknown_placeholder_in_an_override_names_the_file_and_line() {
        let project = Project::new("badoverride")
            .with_override(Role::Coder, "Code:\n\n{memories}\n{feedback}\n");
        let err = render(&project.0, Role::Coder, &[]).unwrap_err();
        let path = override_path(&project.0, Role::Coder);
        let expected = format!("{}:4:1: unknown placeholder {{feedback}}", path.display());
        assert!(err.message.starts_with(&expected), "{}", err.message);
        assert_eq!(err.code, crate::error::EXIT_USAGE);
    }

    #[test]
    fn an_override_that_is_not_utf8_is_a_config_error() {
        let project = Project::new("notutf8");
        let path = override_path(&project.0, Role::Coder);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"\xff\xfe{task}").unwrap();
        let err = render(&project.0, Role::Coder, &[]).unwrap_err();
        assert!(err.message.contains("not UTF-8"), "{}", err.message);
        assert_eq!(err.code, crate::error::EXIT_USAGE);
    }

    #[test]
    fn project_dir_plan_path_and_schema_have_defaults() {
        let project = Project::new("defaults")
            .with_override(Role::Initializer, "{project_dir}|{plan_path}|{plan_schema}");
        let prompt = render(&project.0, Role::Initializer, &[]).unwrap();
        let expected = format!("{}|{PLAN_PATH}|{PLAN_SCHEMA}", project.0.display());
        assert_eq!(prompt, expected);
        let given = render(&project.0, Role::Initializer, &[("plan_path", "p.json".to_string())]);
        assert!(given.unwrap().contains("|p.json|"));
    }

    #[test]
    fn every_built_in_template_renders_all_its_placeholders() {
        let project = Project::new("allbuiltins");
        for role in ALL_ROLES {
            let prompt = render(&project.0, role, &all_vars())
                .unwrap_or_else(|e| panic!("{}: {}", role.name(), e.message));
            for name in PLACEHOLDERS {
                assert!(
                    !prompt.contains(&format!("{{{name}}}")),
                    "{}: {{{name}}} left",
                    role.name()
                );
            }
            assert!(prompt.contains("<value of task>"), "{} does not show the task", role.name());
            assert!(prompt.contains("<event topic="), "{} does not say how to finish", role.name());
            let lines = prompt.lines().count();
            assert!((30..=120).contains(&lines), "{} has {lines} lines", role.name());
        }
    }

    #[test]
    fn each_built_in_template_asks_for_its_own_events() {
        let expected: [(Role, &[&str]); 2] =
            [(Role::Initializer, &["init.done"]), (Role::Coder, &["build.done", "build.blocked"])];
        for (role, topics) in expected {
            let template = role.built_in_template();
            for topic in topics {
                let tag = format!("<event topic=\"{topic}\">");
                assert!(template.contains(&tag), "{} lacks {tag}", role.name());
            }
        }
    }

    #[test]
    fn the_plan_schema_is_json_in_the_documented_shape() {
        for field in [
            "\"task_name\"",
            "\"subtasks\"",
            "\"id\"",
            "\"title\"",
            "\"description\"",
            "\"status\": \"pending\"",
            "\"dependencies\"",
            "\"files\"",
            "\"tests\"",
            "\"acceptance_criteria\"",
            "\"attempts\": 0",
        ] {
            assert!(PLAN_SCHEMA.contains(field), "{field}");
        }
        let parsed: miniserde::json::Value = miniserde::json::from_str(PLAN_SCHEMA).unwrap();
        assert!(matches!(parsed, miniserde::json::Value::Object(_)));
    }
}
