//! Where a project's files are: the root (made absolute once, so a daemon
//! that changes directory still finds everything), its configuration, and
//! every path under `.rasen/`. Nothing here reads or writes state.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};

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
        let root = dir.canonicalize().map_err(|e| {
            Error::usage(format!("{}: cannot use as the project directory: {e}", dir.display()))
        })?;
        // Loaded through `dir` as given, so that errors name the file the
        // way the user would (`rasen.yml:3:5`, `proj/rasen.yml:3:5`).
        let config = Config::load(dir)?;
        Ok(Project { root, given: dir.to_path_buf(), config })
    }

    /// Like `open`, but a broken rasen.yml only earns a warning and the
    /// default paths: `status`, `logs` and `stop` must work even after a bad
    /// edit of the file, while the running orchestrator goes on with the
    /// configuration it loaded. `doing` says what the defaults are used for.
    pub fn open_despite_config(dir: &Path, doing: &str) -> Result<Project> {
        match Project::open(dir) {
            Ok(project) => Ok(project),
            Err(e) if e.code == crate::error::EXIT_USAGE => {
                let root = dir.canonicalize().map_err(|_| e.clone())?;
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "rasen: warning: {}; using the default file locations to {doing}",
                    crate::text::escape_controls(&e.message)
                );
                Ok(Project { root, given: dir.to_path_buf(), config: Config::default() })
            }
            Err(e) => Err(e),
        }
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
