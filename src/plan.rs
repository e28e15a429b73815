//! The implementation plan (`.rasen/implementation_plan.json`): the model
//! of the file the initializer agent writes, its validation, and the choice
//! of the next subtask to run. Defaults for fields the agent may leave out
//! are applied here and only here (`Subtask::deps()`, `attempts()`…).
//!
//! It never reads or writes the disk itself except through `store`, and it
//! never repairs a bad plan: problems are named, the file is left alone.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use miniserde::json::Value;
use miniserde::{Deserialize, Serialize};

use crate::clock;
use crate::error::Result;
use crate::store::{self, state_words, Fields, Kind, StateFile};

state_words! {
    /// Where a subtask stands.
    pub enum SubtaskStatus {
        Pending = "pending",
        InProgress = "in_progress",
        Completed = "completed",
        Failed = "failed",
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Subtask {
    pub id: String,
    pub title: Option<String>,
    pub description: String,
    pub status: SubtaskStatus,
    pub dependencies: Option<Vec<String>>,
    pub files: Option<Vec<String>>,
    pub tests: Option<Vec<String>>,
    pub acceptance_criteria: Option<Vec<String>>,
    pub attempts: Option<u32>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Plan {
    pub task_name: String,
    pub subtasks: Vec<Subtask>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run the subtask at this index.
    Run(usize),
    /// Every subtask is completed.
    AllCompleted,
    /// Work remains but nothing can run; the message names each stuck
    /// subtask and what holds it.
    Blocked(String),
}

impl Subtask {
    /// The ids this subtask waits for (none when absent).
    pub fn deps(&self) -> &[String] {
        self.dependencies.as_deref().unwrap_or(&[])
    }

    pub fn files(&self) -> &[String] {
        self.files.as_deref().unwrap_or(&[])
    }

    pub fn tests(&self) -> &[String] {
        self.tests.as_deref().unwrap_or(&[])
    }

    pub fn acceptance_criteria(&self) -> &[String] {
        self.acceptance_criteria.as_deref().unwrap_or(&[])
    }

    /// Coder sessions started on this subtask so far (0 when absent).
    pub fn attempts(&self) -> u32 {
        self.attempts.unwrap_or(0)
    }

    /// Counts one more attempt and returns the new count.
    pub fn bump_attempts(&mut self) -> u32 {
        let attempts = self.attempts().saturating_add(1);
        self.attempts = Some(attempts);
        attempts
    }

    /// The title when there is a non-empty one, else the id.
    pub fn title_or_id(&self) -> &str {
        match self.title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() => title,
            _ => &self.id,
        }
    }

    /// What to do, in one text: the description, or the title when the
    /// description is empty.
    pub fn description_or_title(&self) -> &str {
        if self.description.trim().is_empty() {
            self.title.as_deref().unwrap_or("")
        } else {
            &self.description
        }
    }
}

impl Plan {
    /// Checks what the loop relies on: at least one subtask, unique
    /// non-empty ids without control characters, a description (or title) for each, dependencies that
    /// name other known subtasks, and no cycle among them. The first problem
    /// found is returned as one sentence.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.subtasks.is_empty() {
            return Err("the plan has no subtasks".to_string());
        }
        self.check_ids()?;
        self.check_descriptions()?;
        self.check_dependencies()?;
        match self.find_cycle() {
            Some(cycle) => Err(format!("dependency cycle: {}", cycle.join(" -> "))),
            None => Ok(()),
        }
    }

    fn check_ids(&self) -> std::result::Result<(), String> {
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (i, subtask) in self.subtasks.iter().enumerate() {
            let id = subtask.id.trim();
            if id.is_empty() {
                return Err(format!("subtask {} has an empty id", i + 1));
            }
            if has_control_character(&subtask.id) {
                return Err(format!(
                    "subtask {} ({:?}): its id holds a control character; give it an id of printable characters",
                    i + 1,
                    subtask.id
                ));
            }
            if let Some(first) = first_seen.insert(id, i) {
                return Err(format!(
                    "duplicate subtask id {id:?} (subtasks {} and {})",
                    first + 1,
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn check_descriptions(&self) -> std::result::Result<(), String> {
        match self.subtasks.iter().find(|s| s.description_or_title().trim().is_empty()) {
            Some(subtask) => Err(format!("subtask {:?} has no description", subtask.id)),
            None => Ok(()),
        }
    }

    fn check_dependencies(&self) -> std::result::Result<(), String> {
        let ids: HashSet<&str> = self.subtasks.iter().map(|s| s.id.as_str()).collect();
        for subtask in &self.subtasks {
            for dep in subtask.deps() {
                if has_control_character(dep) {
                    return Err(format!(
                        "subtask {:?}: dependency {dep:?} holds a control character; name each dependency by its subtask's id",
                        subtask.id
                    ));
                }
                if *dep == subtask.id {
                    return Err(format!("subtask {:?} depends on itself", subtask.id));
                }
                if !ids.contains(dep.as_str()) {
                    return Err(format!(
                        "subtask {:?} depends on unknown subtask {dep:?}",
                        subtask.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first dependency cycle, as the ids along it with the first one
    /// repeated at the end (`a -> b -> a`). Depth-first search in file
    /// order, so the answer is the same every time; with a stack of its
    /// own, since a plan's chain of dependencies may be any length.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let index: HashMap<&str, usize> =
            self.subtasks.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let mut state = vec![Visit::New; self.subtasks.len()];
        (0..self.subtasks.len()).find_map(|i| self.cycle_from(i, &index, &mut state))
    }

    /// Walks the dependencies from subtask `root`. `path` holds the
    /// subtasks being visited, each with how many of its dependencies have
    /// been followed.
    fn cycle_from(
        &self,
        root: usize,
        index: &HashMap<&str, usize>,
        state: &mut [Visit],
    ) -> Option<Vec<String>> {
        if state[root] != Visit::New {
            return None;
        }
        state[root] = Visit::OnPath;
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((i, followed)) = path.last_mut() {
            let Some(dep) = self.subtasks[*i].deps().get(*followed) else {
                state[*i] = Visit::Done;
                path.pop();
                continue;
            };
            *followed += 1;
            let Some(&d) = index.get(dep.as_str()) else { continue };
            match state[d] {
                Visit::Done => {}
                Visit::OnPath => {
                    let start = path.iter().position(|&(p, _)| p == d).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|&(p, _)| self.subtasks[p].id.clone()).collect();
                    cycle.push(self.subtasks[d].id.clone());
                    return Some(cycle);
                }
                Visit::New => {
                    state[d] = Visit::OnPath;
                    path.push((d, 0));
                }
            }
        }
        None
    }

    /// Whether every subtask is completed: the task is done.
    pub fn is_all_completed(&self) -> bool {
        matches!(self.next_subtask(), Next::AllCompleted)
    }

    /// The subtask to run next: the one `in_progress` (interrupted work),
    /// else the first `pending` one whose dependencies are all `completed`.
    pub fn next_subtask(&self) -> Next {
        if let Some(i) = self.subtasks.iter().position(|s| s.status == SubtaskStatus::InProgress) {
            return Next::Run(i);
        }
        let runnable = self
            .subtasks
            .iter()
            .position(|s| s.status == SubtaskStatus::Pending && self.unfinished_deps(s).is_empty());
        if let Some(i) = runnable {
            return Next::Run(i);
        }
        if self.subtasks.iter().all(|s| s.status == SubtaskStatus::Completed) {
            return Next::AllCompleted;
        }
        Next::Blocked(self.why_blocked())
    }

    /// The dependencies of `subtask` that are not completed, with their
    /// status (`unknown` for an id no subtask has).
    fn unfinished_deps<'a>(&'a self, subtask: &'a Subtask) -> Vec<(&'a str, &'static str)> {
        subtask
            .deps()
            .iter()
            .filter_map(|dep| match self.find(dep).map(|d| d.status) {
                Some(SubtaskStatus::Completed) => None,
                Some(status) => Some((dep.as_str(), status.as_str())),
                None => Some((dep.as_str(), "unknown")),
            })
            .collect()
    }

    /// `no runnable subtask: auth-3 waits for auth-2 (failed); …`, or the
    /// failed subtasks when nothing is pending.
    fn why_blocked(&self) -> String {
        let waiting: Vec<String> = self
            .subtasks
            .iter()
            .filter(|s| s.status == SubtaskStatus::Pending)
            .map(|s| {
                let holders: Vec<String> = self
                    .unfinished_deps(s)
                    .iter()
                    .map(|(id, status)| format!("{id} ({status})"))
                    .collect();
                format!("{} waits for {}", s.id, holders.join(", "))
            })
            .collect();
        if !waiting.is_empty() {
            return format!("no runnable subtask: {}", waiting.join("; "));
        }
        let failed: Vec<&str> = self
            .subtasks
            .iter()
            .filter(|s| s.status == SubtaskStatus::Failed)
            .map(|s| s.id.as_str())
            .collect();
        format!("no runnable subtask: failed: {}", failed.join(", "))
    }

    /// (completed subtasks, all subtasks).
    pub fn progress(&self) -> (usize, usize) {
        let completed =
            self.subtasks.iter().filter(|s| s.status == SubtaskStatus::Completed).count();
        (completed, self.subtasks.len())
    }

    pub fn find(&self, id: &str) -> Option<&Subtask> {
        self.subtasks.iter().find(|s| s.id == id)
    }

    /// Stamps `updated_at` with now (and `created_at` when it has none).
    pub fn touch(&mut self) {
        let now = clock::now_iso();
        self.created_at.get_or_insert_with(|| now.clone());
        self.updated_at = Some(now);
    }
}

/// Ids are names: they go into log lines, the agent's environment
/// (`RASEN_SUBTASK_ID`, where a NUL cannot go at all) and every message
/// about the subtask, so none of them may hold a control character, not
/// even a tab. Titles and descriptions are prose and may: they are
/// escaped wherever they are shown.
fn has_control_character(id: &str) -> bool {
    id.chars().any(char::is_control)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    OnPath,
    Done,
}

impl StateFile for Plan {
    fn check_shape(value: &Value) -> std::result::Result<(), String> {
        let plan = Fields::top(value)?;
        plan.required("task_name", Kind::Text)?;
        for (i, item) in plan.required_list("subtasks")?.iter().enumerate() {
            check_subtask_shape(i + 1, item)?;
        }
        plan.optional("created_at", Kind::Text)?;
        plan.optional("updated_at", Kind::Text)
    }
}

fn check_subtask_shape(number: usize, value: &Value) -> std::result::Result<(), String> {
    let subtask = Fields::nested(value, format!("subtask {number}"))?.named_by("id");
    subtask.required("id", Kind::Text)?;
    subtask.optional("title", Kind::Text)?;
    subtask.required("description", Kind::Text)?;
    subtask.required("status", Kind::OneOf(SubtaskStatus::NAMES))?;
    for list in ["dependencies", "files", "tests", "acceptance_criteria"] {
        subtask.optional(list, Kind::TextList)?;
    }
    subtask.optional("attempts", Kind::SmallCount)
}

/// Loads the plan at `path` and validates it: `Ok(None)` when there is
/// none; a state-file error (exit 2, file kept) when it cannot be read or
/// is not a usable plan.
pub fn load_valid(path: &Path) -> Result<Option<Plan>> {
    let Some(plan) = store::load::<Plan>(path)? else { return Ok(None) };
    match plan.validate() {
        Ok(()) => Ok(Some(plan)),
        Err(problem) => Err(store::state_file_error(format!("{}: {problem}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TempDir;
    use std::fs;

    impl Subtask {
        /// A new pending subtask with nothing optional set.
        pub fn new(id: &str, description: &str) -> Subtask {
            Subtask {
                id: id.to_string(),
                title: None,
                description: description.to_string(),
                status: SubtaskStatus::Pending,
                dependencies: None,
                files: None,
                tests: None,
                acceptance_criteria: None,
                attempts: None,
            }
        }
    }

    impl Plan {
        pub fn find_mut(&mut self, id: &str) -> Option<&mut Subtask> {
            self.subtasks.iter_mut().find(|s| s.id == id)
        }

        pub fn index_of(&self, id: &str) -> Option<usize> {
            self.subtasks.iter().position(|s| s.id == id)
        }

        /// Sets the status of subtask `id`; false when there is no such subtask.
        #[must_use]
        pub fn set_status(&mut self, id: &str, status: SubtaskStatus) -> bool {
            match self.find_mut(id) {
                Some(subtask) => {
                    subtask.status = status;
                    true
                }
                None => false,
            }
        }
    }

    fn subtask(id: &str, status: SubtaskStatus, deps: &[&str]) -> Subtask {
        let mut s = Subtask::new(id, &format!("do {id}"));
        s.status = status;
        s.dependencies = Some(deps.iter().map(|d| d.to_string()).collect());
        s
    }

    fn plan(subtasks: Vec<Subtask>) -> Plan {
        Plan { task_name: "task".into(), subtasks, created_at: None, updated_at: None }
    }

    use SubtaskStatus::{Completed, Failed, InProgress, Pending};

    const SAMPLE: &str = r#"{
  "task_name": "Implement user authentication",
  "subtasks": [
    {
      "id": "auth-1",
      "title": "User model",
      "description": "Add the user model and migrations",
      "status": "completed",
      "dependencies": [],
      "files": ["src/models/user.py"],
      "tests": ["tests/test_user.py"],
      "acceptance_criteria": ["..."],
      "attempts": 1
    },
    {
      "id": "auth-2",
      "title": null,
      "description": "Login endpoint",
      "status": "pending",
      "dependencies": ["auth-1"],
      "files": null,
      "tests": null,
      "acceptance_criteria": null,
      "attempts": null
    }
  ],
  "created_at": "2026-01-27T18:00:00Z",
  "updated_at": "2026-01-27T18:45:00Z"
}
"#;

    #[test]
    fn plan_round_trips_with_stable_field_order() {
        let dir = TempDir::new("plan-roundtrip");
        let path = dir.join("implementation_plan.json");
        fs::write(&path, SAMPLE).unwrap();
        let plan = store::load::<Plan>(&path).unwrap().unwrap();
        assert_eq!(plan.subtasks[0].files(), ["src/models/user.py"]);
        assert_eq!(plan.subtasks[1].deps(), ["auth-1"]);
        store::save(&path, &plan).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), SAMPLE);
    }

    #[test]
    fn plan_written_by_an_agent_may_leave_out_optional_fields() {
        let text = r#"{"task_name": "t", "subtasks": [{"id": "a", "description": "d", "status": "pending", "extra": 1}]}"#;
        let plan: Plan = store::parse_state(text.as_bytes()).unwrap();
        let a = &plan.subtasks[0];
        assert_eq!(
            (a.deps(), a.files(), a.attempts(), a.title_or_id()),
            (&[][..], &[][..], 0, "a")
        );
        assert_eq!(plan.validate(), Ok(()));
    }

    fn load_error(contents: &str) -> String {
        let dir = TempDir::new("plan-bad");
        let path = dir.join("implementation_plan.json");
        fs::write(&path, contents).unwrap();
        let err = load_valid(&path).unwrap_err();
        assert_eq!(err.code, 2);
        assert_eq!(fs::read_to_string(&path).unwrap(), contents, "the file must be kept as it was");
        assert_eq!(dir.entries(), vec!["implementation_plan.json"]);
        let label = path.display().to_string();
        assert!(err.message.starts_with(&label), "{err}");
        assert!(err.message.ends_with("fix or remove the file (rasen left it unchanged)"), "{err}");
        err.message[label.len()..].split("; fix").next().unwrap().to_string()
    }

    #[test]
    fn corrupt_plan_is_reported_and_kept() {
        let truncated = &SAMPLE[..SAMPLE.find("\"files\"").unwrap()];
        assert_eq!(
            load_error(truncated),
            ":10:7: unexpected end of file inside an object (the file looks truncated)"
        );
        let missing_comma = SAMPLE.replace("\"status\": \"pending\",", "\"status\": \"pending\"");
        assert_eq!(
            load_error(&missing_comma),
            ":20:7: expected ',' or '}' after a field, found '\"'"
        );
        assert_eq!(load_error(r#"{"task_name": "t"}"#), ": missing field \"subtasks\"");
        let bad_status = SAMPLE.replace("\"status\": \"pending\"", "\"status\": \"done\"");
        assert_eq!(
            load_error(&bad_status),
            ": subtask 2 (\"auth-2\"): status \"done\" is not one of pending, in_progress, completed, failed"
        );
        let bad_type = SAMPLE.replace("\"attempts\": 1", "\"attempts\": \"one\"");
        assert_eq!(
            load_error(&bad_type),
            ": subtask 1 (\"auth-1\"): \"attempts\" must be a whole number from 0 to 4294967295, found \"one\""
        );
        let no_description = SAMPLE.replace("\"description\": \"Login endpoint\",", "");
        assert_eq!(
            load_error(&no_description),
            ": subtask 2 (\"auth-2\"): missing field \"description\""
        );
    }

    #[test]
    fn invalid_plan_on_disk_is_a_state_file_error() {
        let cycle = SAMPLE.replace("\"dependencies\": [],", "\"dependencies\": [\"auth-2\"],");
        assert_eq!(load_error(&cycle), ": dependency cycle: auth-1 -> auth-2 -> auth-1");
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(plan(vec![]).validate(), Err("the plan has no subtasks".into()));
        assert_eq!(
            plan(vec![subtask("a", Pending, &[]), subtask("a", Pending, &[])]).validate(),
            Err("duplicate subtask id \"a\" (subtasks 1 and 2)".into())
        );
        assert_eq!(
            plan(vec![subtask("a", Pending, &[]), subtask(" ", Pending, &[])]).validate(),
            Err("subtask 2 has an empty id".into())
        );
        assert_eq!(
            plan(vec![subtask("a", Pending, &["zz"])]).validate(),
            Err("subtask \"a\" depends on unknown subtask \"zz\"".into())
        );
        assert_eq!(
            plan(vec![subtask("a", Pending, &["a"])]).validate(),
            Err("subtask \"a\" depends on itself".into())
        );
        let mut empty = subtask("a", Pending, &[]);
        empty.description = " ".into();
        assert_eq!(
            plan(vec![empty.clone()]).validate(),
            Err("subtask \"a\" has no description".into())
        );
        empty.title = Some("A title".into());
        assert_eq!(plan(vec![empty]).validate(), Ok(()));
    }

    #[test]
    fn ids_with_control_characters_are_refused() {
        for id in ["a\0b", "a\nb", "a\tb", "\x1b[2Ja", "a\u{9b}", "a\x7f"] {
            let err = plan(vec![subtask("ok", Pending, &[]), subtask(id, Pending, &[])])
                .validate()
                .unwrap_err();
            assert_eq!(
                err,
                format!("subtask 2 ({id:?}): its id holds a control character; give it an id of printable characters")
            );
        }
        assert_eq!(
            plan(vec![subtask("a", Pending, &[]), subtask("b", Pending, &["a\r"])]).validate(),
            Err("subtask \"b\": dependency \"a\\r\" holds a control character; name each dependency by its subtask's id".into())
        );
        let mut prose = subtask("a", Pending, &[]);
        prose.title = Some("Title\twith a tab".into());
        prose.description = "Two lines,\n\x1b[1mbold\x1b[0m".into();
        assert_eq!(plan(vec![prose]).validate(), Ok(()), "titles and descriptions are prose");
    }

    #[test]
    fn validation_names_the_ids_in_a_cycle() {
        let p = plan(vec![
            subtask("a", Pending, &[]),
            subtask("b", Pending, &["a", "d"]),
            subtask("c", Pending, &["b"]),
            subtask("d", Pending, &["c"]),
        ]);
        assert_eq!(p.validate(), Err("dependency cycle: b -> d -> c -> b".into()));
    }

    /// A plan comes from an agent, so it may be any size: a chain of
    /// 100 000 dependencies (an 8 MB plan) overflowed the stack of the
    /// recursive cycle search and aborted `rasen resume` with no word.
    #[test]
    fn a_very_long_dependency_chain_is_validated_without_deep_recursion() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("t{i}")).collect();
        let chain = |last_depends_on_first: bool| {
            let mut subtasks: Vec<Subtask> = (0..ids.len())
                .map(|i| {
                    subtask(&ids[i], Pending, &ids.get(i + 1).map_or(vec![], |d| vec![&d[..]]))
                })
                .collect();
            if last_depends_on_first {
                subtasks[ids.len() - 1].dependencies = Some(vec![ids[0].clone()]);
            }
            plan(subtasks)
        };
        let (open, closed) = (chain(false), chain(true));
        // A small stack, so that recursion fails here whatever the machine.
        let validated = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || (open.validate(), closed.validate()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(validated.0, Ok(()));
        let cycle = validated.1.unwrap_err();
        assert!(cycle.starts_with("dependency cycle: t0 -> t1 -> t2 -> "), "{}", &cycle[..60]);
        assert!(cycle.ends_with(" -> t19999 -> t0"), "{}", &cycle[cycle.len() - 60..]);
    }

    #[test]
    fn next_is_the_subtask_in_progress_first() {
        let p = plan(vec![subtask("a", Pending, &[]), subtask("b", InProgress, &[])]);
        assert_eq!(p.next_subtask(), Next::Run(1));
    }

    #[test]
    fn next_follows_dependency_order() {
        let mut p = plan(vec![
            subtask("a", Pending, &["b"]),
            subtask("b", Pending, &[]),
            subtask("c", Pending, &[]),
        ]);
        assert_eq!(p.next_subtask(), Next::Run(1));
        assert!(p.set_status("b", Completed));
        assert_eq!(p.next_subtask(), Next::Run(0));
        assert!(p.set_status("a", Completed));
        assert_eq!(p.next_subtask(), Next::Run(2));
        assert!(p.set_status("c", Completed));
        assert_eq!(p.next_subtask(), Next::AllCompleted);
        assert_eq!(p.progress(), (3, 3));
    }

    #[test]
    fn a_failed_dependency_blocks() {
        let p = plan(vec![
            subtask("a", Failed, &[]),
            subtask("b", Pending, &["a"]),
            subtask("c", Pending, &["b", "a"]),
        ]);
        assert_eq!(
            p.next_subtask(),
            Next::Blocked(
                "no runnable subtask: b waits for a (failed); c waits for b (pending), a (failed)"
                    .into()
            )
        );
        let only_failed = plan(vec![subtask("a", Failed, &[]), subtask("b", Completed, &[])]);
        assert_eq!(
            only_failed.next_subtask(),
            Next::Blocked("no runnable subtask: failed: a".into())
        );
        assert_eq!(only_failed.progress(), (1, 2));
    }

    #[test]
    fn helpers_find_mark_and_count() {
        let mut p = plan(vec![subtask("a", Pending, &[])]);
        assert_eq!(p.index_of("a"), Some(0));
        assert!(!p.set_status("zz", Failed));
        let a = p.find_mut("a").unwrap();
        assert_eq!(a.bump_attempts(), 1);
        assert_eq!(a.bump_attempts(), 2);
        assert_eq!(p.find("a").unwrap().attempts, Some(2));
        p.touch();
        assert!(p.updated_at.is_some() && p.created_at.is_some());
    }
}
