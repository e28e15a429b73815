//! Where a project's files are: the root (made absolute once, so a daemon
//! that changes directory still finds everything), its configuration, and
//! every path under `.rasen/`. It refuses a project whose `.rasen` is a
//! symlink, and a `background.*` file reached through a symlinked
//! directory: rasen's files are where the project says, nowhere else.
//! Nothing here reads or writes state.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store;

pub struct Project {
    pub root: PathBuf,
    /// The directory as the user named it (`.`, `proj`), for messages.
    given: PathBuf,
    pub config: Config,
}

impl Project {
    /// Opens the project that `dir` is in, the way git finds its
    /// repository: `dir` itself, or the nearest parent with a `.rasen/`
    /// directory, not looking past the top of the git work tree. So
    /// `rasen status` works from `src/` as well.
    pub fn open(dir: &Path) -> Result<Project> {
        Project::open_here(&find_project_dir(dir))
    }

    /// Opens the project in exactly `dir` (what `init` uses: like `git
    /// init`, it makes the directory it is given a project). The directory
    /// must exist; its rasen.yml (if any) and the environment give the
    /// configuration.
    pub fn open_here(dir: &Path) -> Result<Project> {
        let mut project = Project::without_config(dir)?;
        // Loaded through `dir` as given, so that errors name the file the
        // way the user would (`rasen.yml:3:5`, `proj/rasen.yml:3:5`).
        project.config = Config::load(dir)?;
        Ok(project)
    }

    /// Like `open`, but a broken rasen.yml only earns a warning and the
    /// default paths: `status`, `logs` and `stop` must work even after a bad
    /// edit of the file, while the running orchestrator goes on with the
    /// configuration it loaded. `doing` says what the defaults are used for.
    /// A symlinked `.rasen` is refused all the same.
    pub fn open_despite_config(dir: &Path, doing: &str) -> Result<Project> {
        let dir = find_project_dir(dir);
        let mut project = Project::without_config(&dir)?;
        match Config::load(&dir) {
            Ok(config) => project.config = config,
            Err(e) if e.code == crate::error::EXIT_USAGE => {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "rasen: warning: {}; using the default file locations to {doing}",
                    crate::text::escape_controls(&e.message)
                );
            }
            Err(e) => return Err(e),
        }
        Ok(project)
    }

    /// The project in `dir` with the default configuration, once `dir` is
    /// known to exist and its `.rasen` (if any) is no symlink.
    fn without_config(dir: &Path) -> Result<Project> {
        let root = dir.canonicalize().map_err(|e| {
            Error::usage(format!("{}: cannot use as the project directory: {e}", dir.display()))
        })?;
        let project = Project { root, given: dir.to_path_buf(), config: Config::default() };
        store::refuse_symlinked_dir(&project.user_path(&project.rasen_dir()))?;
        Ok(project)
    }

    /// Whether `path` lies in `.rasen/`, rasen's private directory, where
    /// every file at one of its names is rasen's own.
    pub fn in_rasen_dir(&self, path: &Path) -> bool {
        path.starts_with(self.rasen_dir())
    }

    /// The refusal (exit 2) for a `background.*` path where a file rasen
    /// did not write is; `what` names the kind rasen would keep there
    /// ("PID", "log", "status").
    pub fn foreign_file_error(&self, key: &str, path: &Path, what: &str) -> Error {
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let found = if link {
            "is a symbolic link".to_string()
        } else {
            format!("exists and is not a {what} file rasen wrote")
        };
        Error::config(format!(
            "{key}: {} {found}; rasen never replaces or removes a file it did not create \
             (choose another path for {key} in rasen.yml, or move that file away)",
            self.show(path)
        ))
    }

    /// Fails (exit 2, naming `key`) when a directory between the project
    /// root and `path` is a symlink: the file would be read or written
    /// outside the project, wherever the link points.
    pub fn refuse_links_on_the_way(&self, key: &str, path: &Path) -> Result<()> {
        let Ok(inside) = path.strip_prefix(&self.root) else { return Ok(()) };
        let mut here = self.root.clone();
        let mut dirs = inside.components().peekable();
        while let Some(component) = dirs.next() {
            if dirs.peek().is_none() {
                break; // the file itself: opened without following links
            }
            here.push(component);
            if std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::config(format!(
                    "{key}: {} is a symbolic link; rasen does not follow links on the way to \
                     its files (make it a real directory, or choose another path)",
                    self.show(&here)
                )));
            }
        }
        Ok(())
    }

    pub fn rasen_dir(&self) -> PathBuf {
        self.root.join(".rasen")
    }
    pub fn task_file(&self) -> PathBuf {
        self.rasen_dir().join("task.txt")
    }
    pub fn plan_file(&self) -> PathBuf {
        self.rasen_dir().join("implementation_plan.json")
    }
    pub fn history_file(&self) -> PathBuf {
        self.rasen_dir().join("attempt_history.json")
    }
    pub fn good_commits_file(&self) -> PathBuf {
        self.rasen_dir().join("good_commits.json")
    }
    pub fn memories_file(&self) -> PathBuf {
        self.rasen_dir().join("memories.md")
    }
    /// The lock for read-modify-write of the JSON state files.
    pub fn state_lock_file(&self) -> PathBuf {
        self.rasen_dir().join("state.lock")
    }
    /// The disk space a run sets aside to record its end on a full disk
    /// (see `reserve`). Named like a temp file, which `.gitignore` keeps
    /// out of git in every project.
    pub fn disk_reserve_file(&self) -> PathBuf {
        self.rasen_dir().join(".disk-reserve.tmp.rasen")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.config.resolve(&self.root, &self.config.background.pid_file)
    }
    pub fn log_file(&self) -> PathBuf {
        self.config.resolve(&self.root, &self.config.background.log_file)
    }
    pub fn status_file(&self) -> PathBuf {
        self.config.resolve(&self.root, &self.config.background.status_file)
    }

    /// `path` as the user can use it from where they ran rasen
    /// (`.rasen/status.json`, `proj/.rasen/status.json`): what commands
    /// read state through, so that errors name files the user's way.
    pub fn user_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(inside) if self.given == Path::new(".") => inside.to_path_buf(),
            Ok(inside) => self.given.join(inside),
            Err(_) => path.to_path_buf(),
        }
    }

    /// `path` as the user would write it: relative to the project root when
    /// it is inside it (`.rasen/rasen.pid`), absolute otherwise.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }
}

/// `dir`, or the nearest parent holding `.rasen/`, written relative to
/// `dir` (`..`, `../..`) so messages stay in the user's terms. The search
/// stops at the top of a git work tree (a directory with `.git`) and at
/// the root of the file system; without a find, `dir` itself.
fn find_project_dir(dir: &Path) -> PathBuf {
    let Ok(start) = dir.canonicalize() else { return dir.to_path_buf() };
    let mut here = start.as_path();
    let mut found = dir.to_path_buf();
    loop {
        if here.join(".rasen").is_dir() {
            return found;
        }
        if here.join(".git").exists() {
            return dir.to_path_buf();
        }
        match here.parent() {
            Some(parent) => {
                here = parent;
                found =
                    if found == Path::new(".") { PathBuf::from("..") } else { found.join("..") };
            }
            None => return dir.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_places_of_config_are_the_files_named_here() {
        let project = Project {
            root: PathBuf::from("/p"),
            given: PathBuf::from("."),
            config: Config::default(),
        };
        let named = [
            project.root.join("rasen.yml"),
            project.rasen_dir(),
            project.task_file(),
            project.plan_file(),
            project.history_file(),
            project.good_commits_file(),
            project.memories_file(),
            project.state_lock_file(),
            project.rasen_dir().join(".gitignore"),
            project.rasen_dir().join("prompts"),
        ];
        let fixed: Vec<PathBuf> = crate::config::background::FIXED_PLACES
            .iter()
            .map(|(place, _)| project.root.join(place))
            .collect();
        assert_eq!(fixed[..named.len()], named);
        assert_eq!(fixed[named.len()..], [project.root.join(".git")]);
    }

    #[test]
    fn the_project_is_found_from_a_subdirectory_but_not_past_the_repository() {
        let top = std::env::temp_dir().join(format!("rasen-project-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let sub = top.join("repo/src/deep");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(top.join("repo/.git")).unwrap();
        std::fs::create_dir_all(top.join(".rasen")).unwrap(); // outside the repository
        assert_eq!(find_project_dir(&sub), sub, "not found past the top of the work tree");
        std::fs::create_dir_all(top.join("repo/.rasen")).unwrap();
        assert_eq!(find_project_dir(&sub), sub.join("..").join(".."));
        assert_eq!(find_project_dir(&top.join("repo")), top.join("repo"));
        std::fs::remove_dir_all(&top).unwrap();
    }
}
