//! The handful of git questions rasen asks: is this a repository, what is
//! HEAD, how many commits since a point. Each
//! runs `git -C ROOT …` and never changes the repository.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

fn git(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::config(format!("cannot run git: {e} (rasen needs git on PATH)")))
}

/// True when `root` is inside a git work tree.
pub fn is_repository(root: &Path) -> bool {
    matches!(git(root, &["rev-parse", "--is-inside-work-tree"]), Ok(out) if out.status.success())
}

/// Fails with what to do when `root` is not a git repository (exit 2).
pub fn require_repository(root: &Path) -> Result<()> {
    if is_repository(root) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{} is not a git repository; rasen counts the agent's commits, so run 'git init' there first",
        root.display()
    )))
}

/// The commit HEAD points to, or `None` in a repository without commits.
pub fn head(root: &Path) -> Result<Option<String>> {
    let out = git(root, &["rev-parse", "--verify", "--quiet", "HEAD"])?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(if out.status.success() && !hash.is_empty() { Some(hash) } else { None })
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
