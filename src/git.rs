//! The handful of git questions rasen asks: is this a repository, is HEAD
//! on a branch with no operation (rebase, merge…) in progress, what is
//! HEAD, does a commit exist, how many commits since a point. Every git
//! command rasen runs is run here. Each runs `git -C ROOT …` and never
//! changes the repository — with one exception, `remove_stale_locks_since`,
//! which clears the lock a killed agent's git left behind.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

fn git(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        // Its own group: a Ctrl-C at the terminal is rasen's to handle, and
        // must not kill a git query half-way and be read as "no commits".
        .process_group(0)
        .output()
        .map_err(cannot_run_git)
}

fn cannot_run_git(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return Error::config(
            "git is not on PATH: rasen needs git to count the agent's commits; install git or add its directory to PATH",
        );
    }
    Error::config(format!("cannot run git: {e} (rasen needs git on PATH)"))
}

/// Whether `root` is inside a git work tree; an error when git itself
/// cannot be run (not on PATH), which is not the same answer.
pub fn is_repository(root: &Path) -> Result<bool> {
    Ok(git(root, &["rev-parse", "--is-inside-work-tree"])?.status.success())
}

/// Fails with what to do when `root` is not a git repository, or git
/// cannot be run (exit 2).
pub fn require_repository(root: &Path) -> Result<()> {
    if is_repository(root)? {
        return Ok(());
    }
    Err(Error::config(format!(
        "{} is not a git repository; rasen counts the agent's commits, so run 'git init' there first",
        root.display()
    )))
}

/// What git leaves in its directory while an operation is half-way, what
/// to call it, and how to end it; the first one present is reported
/// (`rebase-apply` is `git am` when it holds `applying`).
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("rebase-merge", "a rebase", "'git rebase --continue' or 'git rebase --abort'"),
    ("rebase-apply/applying", "a 'git am'", "'git am --continue' or 'git am --abort'"),
    ("rebase-apply", "a rebase", "'git rebase --continue' or 'git rebase --abort'"),
    ("MERGE_HEAD", "a merge", "'git commit' or 'git merge --abort'"),
    (
        "CHERRY_PICK_HEAD",
        "a cherry-pick",
        "'git cherry-pick --continue' or 'git cherry-pick --abort'",
    ),
    ("REVERT_HEAD", "a revert", "'git revert --continue' or 'git revert --abort'"),
    ("sequencer", "a cherry-pick or revert", "'git cherry-pick --abort' or 'git revert --abort'"),
    ("BISECT_LOG", "a bisect", "'git bisect reset'"),
];

/// Fails with what to do when the agent's commits would be lost: an
/// operation in progress (rebase, merge, cherry-pick, revert, bisect, am),
/// whose end rewrites or drops what was committed meanwhile, or a detached
/// HEAD, where commits land on no branch (exit 2).
pub fn require_work_on_a_branch(root: &Path) -> Result<()> {
    let git_dir = absolute_git_dir(root)?;
    if let Some((file, what, how)) = OPERATIONS.iter().find(|(f, ..)| git_dir.join(f).exists()) {
        return Err(Error::config(format!(
            "{}: {what} is in progress (.git/{file}): the agent's commits would be made in the middle of it and lost when it ends; end it first with {how}",
            root.display()
        )));
    }
    let out = git(root, &["symbolic-ref", "--quiet", "HEAD"])?;
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => {
            let at = head(root)?.map(|h| format!(" at {}", &h[..h.len().min(12)]));
            Err(Error::config(format!(
                "{}: HEAD is detached{}: the agent's commits would land on no branch; check out a branch first ('git switch BRANCH', or 'git switch -c NEW-BRANCH' to start one here)",
                root.display(),
                at.unwrap_or_default()
            )))
        }
        _ => Err(Error::failed(format!(
            "git symbolic-ref HEAD failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The repository's git directory (`.git`, or a linked worktree's own).
fn absolute_git_dir(root: &Path) -> Result<std::path::PathBuf> {
    let out = git(root, &["rev-parse", "--absolute-git-dir"])?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "git rev-parse --absolute-git-dir failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The commit HEAD points to, or `None` in a repository without commits.
pub fn head(root: &Path) -> Result<Option<String>> {
    let out = git(root, &["rev-parse", "--verify", "--quiet", "HEAD"])?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) if !hash.is_empty() => Ok(Some(hash)),
        // --quiet: exit 1 and nothing printed is "HEAD does not exist yet".
        Some(1) if hash.is_empty() => Ok(None),
        _ => Err(Error::failed(format!(
            "git rev-parse HEAD failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Whether `hash` names a commit of the repository at `root`.
pub fn commit_exists(root: &Path, hash: &str) -> Result<bool> {
    let out = git(root, &["rev-parse", "--verify", "--quiet", &format!("{hash}^{{commit}}")])?;
    Ok(out.status.success())
}

/// How many commits HEAD has that `base` has not (all of them when `base`
/// is `None`, i.e. the repository had no commit before).
pub fn commits_since(root: &Path, base: Option<&str>) -> Result<u64> {
    if head(root)?.is_none() {
        return Ok(0);
    }
    let range = match base {
        Some(base) => format!("{base}..HEAD"),
        None => "HEAD".to_string(),
    };
    let out = git(root, &["rev-list", "--count", &range])?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::failed(format!("git rev-list --count {range} failed: {why}")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| Error::failed(format!("git rev-list printed \"{}\"", text.trim())))
}

/// Removes the lock files a git killed with the agent left in the git
/// directory (`index.lock`, `HEAD.lock`, a branch's `refs/heads/NAME.lock`,
/// `ORIG_HEAD.lock`, `AUTO_MERGE.lock`, `packed-refs.lock`): those created
/// at or after `since` that no process has open, and only while no git
/// works in the repository. A `git commit` killed with the agent (a
/// timeout, a stop, `stop --force`) dies holding them, and every later
/// session would then fail with "Another git process seems to be
/// running". Only called once the agent's whole session is gone, so no git
/// of the agent can still own them; the other checks leave a user's own
/// git alone. Returns the locks removed, as `.git/index.lock`, for a log
/// line (none: an empty string).
pub fn remove_stale_locks_since(root: &Path, since: std::time::SystemTime) -> Result<String> {
    let out = git(root, &["rev-parse", "--git-dir"])?;
    // A git working here may own a lock without holding it open (a user's
    // `git commit -a` in its editor keeps index.lock closed): theirs.
    if !out.status.success() || crate::process::runs_in("git", root) {
        return Ok(String::new());
    }
    let git_dir = root.join(String::from_utf8_lossy(&out.stdout).trim());
    let mut removed = Vec::new();
    for lock in lock_files(&git_dir) {
        let Ok(created) = std::fs::symlink_metadata(&lock).and_then(|m| m.modified()) else {
            continue;
        };
        // A second of slack: file times may be coarser than the clock.
        if created + std::time::Duration::from_secs(1) < since
            || crate::process::is_open_anywhere(&lock)
        {
            continue;
        }
        std::fs::remove_file(&lock)
            .map_err(|e| Error::io(&lock, "cannot remove the stale git lock", e))?;
        removed.push(lock.strip_prefix(root).unwrap_or(&lock).display().to_string());
    }
    Ok(removed.join(", "))
}

/// Where git keeps the locks a killed commit can leave: the fixed ones,
/// and every `*.lock` under `refs/`.
fn lock_files(git_dir: &Path) -> Vec<std::path::PathBuf> {
    let fixed = ["index", "HEAD", "ORIG_HEAD", "AUTO_MERGE", "packed-refs"];
    let mut locks: Vec<_> = fixed.iter().map(|n| git_dir.join(format!("{n}.lock"))).collect();
    collect_locks_under(&git_dir.join("refs"), &mut locks);
    locks
}

fn collect_locks_under(dir: &Path, locks: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => collect_locks_under(&path, locks),
            Ok(kind) if kind.is_file() && path.extension().is_some_and(|e| e == "lock") => {
                locks.push(path)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn repo() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rasen-git-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("git")
            .args(["init", "-q"])
            .current_dir(&dir)
            .status()
            .unwrap()
            .success());
        dir
    }

    #[test]
    fn a_lock_from_the_session_is_removed_an_older_one_is_kept() {
        let dir = repo();
        let lock = dir.join(".git/index.lock");
        std::fs::write(&lock, "").unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(
            remove_stale_locks_since(&dir, later).unwrap().is_empty(),
            "a lock older than the session stays"
        );
        assert!(lock.exists());
        let before = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(remove_stale_locks_since(&dir, before).unwrap(), ".git/index.lock");
        assert!(!lock.exists());
        assert_eq!(remove_stale_locks_since(&dir, before).unwrap(), "", "nothing to remove");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn head_and_branch_locks_of_a_killed_commit_are_removed_too() {
        let dir = repo();
        let locks = [".git/HEAD.lock", ".git/refs/heads/feature/x.lock", ".git/AUTO_MERGE.lock"];
        std::fs::create_dir_all(dir.join(".git/refs/heads/feature")).unwrap();
        for lock in locks {
            std::fs::write(dir.join(lock), "").unwrap();
        }
        std::fs::write(dir.join(".git/refs/heads/feature/x"), "not a lock").unwrap();
        let before = SystemTime::now() - Duration::from_secs(60);
        let removed = remove_stale_locks_since(&dir, before).unwrap();
        assert_eq!(removed, ".git/HEAD.lock, .git/AUTO_MERGE.lock, .git/refs/heads/feature/x.lock");
        for lock in locks {
            assert!(!dir.join(lock).exists(), "{lock} stayed");
        }
        assert!(dir.join(".git/refs/heads/feature/x").exists(), "only locks are removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_kept_by_a_live_git_is_left_alone() {
        let dir = repo();
        let run = |args: &[&str]| {
            let ok = Command::new("git").args(args).current_dir(&dir).status().unwrap();
            assert!(ok.success(), "git {args:?}");
        };
        run(&["config", "user.name", "t"]);
        run(&["config", "user.email", "t@t"]);
        std::fs::write(dir.join("f"), "one\n").unwrap();
        run(&["add", "f"]);
        run(&["commit", "-q", "-m", "one"]);
        // `git commit -a` keeps .git/index.lock, closed, while its
        // pre-commit hook runs (as while its editor is open).
        let hooks = dir.join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(
            hooks.join("pre-commit"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.join("f"), "two\n").unwrap();
        let hooks_path = format!("core.hooksPath={}", hooks.display());
        let mut git = Command::new("git")
            .args(["-c", &hooks_path, "commit", "-q", "-a", "-m", "two"])
            .current_dir(&dir)
            .process_group(0)
            .spawn()
            .unwrap();
        let lock = dir.join(".git/index.lock");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lock.exists() {
            assert!(std::time::Instant::now() < deadline, "no index.lock from git commit -a");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = SystemTime::now() - Duration::from_secs(60);
        let removed = remove_stale_locks_since(&dir, before);
        let _ = crate::sys::kill_process_group(git.id() as i32, libc::SIGKILL);
        let _ = git.wait();
        assert_eq!(removed.unwrap(), "", "the lock of a live git was removed");
        assert!(lock.exists());
        // Killed, git could not clean up: now it is stale.
        assert_eq!(remove_stale_locks_since(&dir, before).unwrap(), ".git/index.lock");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn commits_are_counted_from_a_base() {
        let dir = repo();
        let commit = |m: &str| {
            let ok = Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    m,
                ])
                .current_dir(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        assert_eq!(head(&dir).unwrap(), None);
        assert_eq!(commits_since(&dir, None).unwrap(), 0);
        commit("one");
        let base = head(&dir).unwrap().unwrap();
        commit("two");
        commit("three");
        assert_eq!(commits_since(&dir, Some(&base)).unwrap(), 2);
        assert_eq!(commits_since(&dir, None).unwrap(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
