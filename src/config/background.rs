//! The `background.*` paths (status file, PID file, log): where they may
//! point. Purely lexical rules, checked when the configuration is read:
//! relative to the project and inside it, none of rasen's fixed files,
//! never inside `.git/` or `.rasen/prompts/`, and each key a file of its
//! own. Whether a directory on the way is a symlink, and whether a file
//! found there is rasen's, is checked where the file is used.

use std::path::{Path, PathBuf};

use super::BackgroundConfig;
use crate::error::{Error, Result};

/// rasen's files whose place is fixed (project.rs names the same ones; a
/// test there checks that they agree), and `.git/`: no `background.*`
/// path may name one of them, or lie inside `.rasen/prompts/` or `.git/`.
pub const FIXED_PLACES: &[(&str, &str)] = &[
    ("rasen.yml", "the configuration"),
    (".rasen", "rasen's directory"),
    (".rasen/task.txt", "the task"),
    (".rasen/implementation_plan.json", "the plan"),
    (".rasen/attempt_history.json", "the attempt history"),
    (".rasen/good_commits.json", "the good commits"),
    (".rasen/memories.md", "the agent's memories"),
    (".rasen/state.lock", "the state lock"),
    (".rasen/.gitignore", "rasen's .gitignore"),
    (".rasen/prompts", "the prompt overrides"),
    (".git", "git's directory"),
];

/// `p` in its plain form (no `.`, each `..` applied), when it names a file
/// inside the project that is none of `FIXED_PLACES`; else why not. Purely
/// lexical: whether a directory on the way is a symlink is checked where
/// the file is used (`Project::refuse_links_on_the_way`).
pub(super) fn plain_path(p: &Path) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let shown = p.display();
    let mut plain = PathBuf::new();
    for component in p.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) => plain.push(name),
            Component::ParentDir if plain.pop() => {}
            Component::ParentDir => {
                return Err(format!(
                    "must stay inside the project, but {shown} climbs out of it with '..'"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "must stay inside the project, written relative to it (like \
                     .rasen/rasen.pid), not as the absolute path {shown}"
                ))
            }
        }
    }
    if plain.as_os_str().is_empty() {
        return Err(format!("must name a file inside the project, not {shown:?}"));
    }
    for (place, what) in FIXED_PLACES {
        let is_dir = matches!(*place, ".git" | ".rasen/prompts");
        if plain == Path::new(place) || (is_dir && plain.starts_with(place)) {
            return Err(format!("{shown} is {what}; choose a path of its own for this file"));
        }
    }
    Ok(plain)
}

impl BackgroundConfig {
    /// No two `background.*` keys may name the same file: the PID file
    /// would overwrite the log, or the other way round.
    pub(super) fn check_distinct(&self, file_label: &str) -> Result<()> {
        let keys = [
            ("background.status_file", &self.status_file),
            ("background.pid_file", &self.pid_file),
            ("background.log_file", &self.log_file),
        ];
        for (i, (first, path)) in keys.iter().enumerate() {
            if let Some((second, _)) = keys[i + 1..].iter().find(|(_, other)| other == path) {
                return Err(Error::config(format!(
                    "{file_label}: {first} and {second} are both {}; give each a file of its own",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}
