//! Secrets stay private. `.rasen/` is 0700 and every file rasen writes in
//! it 0600, whatever the umask, because agent output lands in several of
//! them; `.rasen/.gitignore` keeps all of it out of git.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::*;

const SECRET: &str = "TOP-SECRET-TOKEN-4242";

fn initialized(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", "Keep secrets"]).expect_code(0);
    p
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `rasen ARGS`, started by a shell that first sets `umask`.
fn rasen_with_umask(p: &Project, umask: &str, args: &[&str]) -> RunResult {
    let mut cmd = p.command("sh");
    let script = format!("umask {umask}; exec \"$0\" \"$@\"");
    cmd.args(["-c", &script, env!("CARGO_BIN_EXE_rasen")]).args(args);
    Spawned::start(cmd, &format!("umask {umask}; rasen {}", args.join(" "))).wait(60)
}

/// Checks that `r` failed with exit `code` and one error line holding each
/// of `words`, and that nothing of the secret got out.
fn assert_refused(r: &RunResult, code: i32, words: &[&str]) {
    assert_eq!(r.code, code, "unexpected exit code\n{r}");
    let mut lines = r.stderr.lines().filter(|l| !l.starts_with("rasen: warning: "));
    let line = lines.next().unwrap_or_default();
    assert!(line.starts_with("rasen: error: "), "{r}");
    assert!(lines.next().is_none(), "one line of error expected\n{r}");
    for word in words {
        assert!(line.contains(word), "the error should say {word:?}\n{r}");
    }
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET), "the secret got out\n{r}");
}

// --- finding 4: private files ----------------------------------------------------------

/// The files rasen itself writes in `.rasen/` during init and a whole run.
const RASEN_WRITTEN: &[&str] = &[
    ".gitignore",
    "task.txt",
    "status.json",
    "implementation_plan.json",
    "attempt_history.json",
    "good_commits.json",
    "rasen.log",
    "state.lock",
];

#[test]
fn rasen_dir_is_0700_and_every_file_rasen_writes_is_0600_under_umask_000() {
    let mut p = Project::new("privacy-modes");
    rasen_with_umask(&p, "000", &["init", "--task", "Keep secrets"]).expect_code(0);
    assert_eq!(mode(&p.path(".rasen")), 0o700, "after init");
    for name in [".gitignore", "task.txt", "status.json"] {
        assert_eq!(mode(&p.path(&format!(".rasen/{name}"))), 0o600, "{name} after init");
    }
    p.set_config("orchestrator.max_iterations", "20");
    rasen_with_umask(&p, "000", &["run"]).expect_code(0);
    assert_eq!(mode(&p.path(".rasen")), 0o700, "after the run");
    for name in RASEN_WRITTEN {
        assert_eq!(mode(&p.path(&format!(".rasen/{name}"))), 0o600, "{name} after the run");
    }
}

#[test]
fn a_private_umask_only_tightens_the_modes() {
    let p = Project::new("privacy-umask-077");
    rasen_with_umask(&p, "077", &["init", "--task", "Keep secrets"]).expect_code(0);
    rasen_with_umask(&p, "077", &["run"]).expect_code(0);
    assert_eq!(mode(&p.path(".rasen")), 0o700);
    for name in RASEN_WRITTEN {
        assert_eq!(mode(&p.path(&format!(".rasen/{name}"))), 0o600, "{name}");
    }
}

#[test]
fn the_daemon_pid_file_is_private() {
    let mut p = initialized("privacy-pid-file");
    p.env("SCRIPTED_CODER", "hang").set_config("agent.stop_grace_seconds", "0");
    rasen_with_umask(&p, "000", &["run", "--background"]).expect_code(0);
    wait_until(30, "a coder session hangs", || p.sessions().iter().any(|s| s.role == "coder"));
    assert!(p.daemon_pid().is_some(), "the daemon's PID file");
    assert_eq!(mode(&p.path(".rasen/rasen.pid")), 0o600);
    assert_eq!(mode(&p.path(".rasen")), 0o700);
    p.rasen(&["stop"]).expect_code(0);
}

#[test]
fn an_existing_rasen_dir_is_made_private_by_init_and_by_run() {
    let p = initialized("privacy-tighten");
    let open_up = || std::fs::set_permissions(p.path(".rasen"), PermissionsExt::from_mode(0o755));
    open_up().unwrap();
    p.rasen(&["status"]).expect_code(3);
    assert_eq!(mode(&p.path(".rasen")), 0o755, "status only reads: it changes nothing");
    p.rasen(&["init", "--force", "--task", "Keep secrets again"]).expect_code(0);
    assert_eq!(mode(&p.path(".rasen")), 0o700, "init");
    open_up().unwrap();
    p.rasen(&["run"]).expect_code(0);
    assert_eq!(mode(&p.path(".rasen")), 0o700, "run");
}

/// Another user than the one who runs rasen cannot look into `.rasen/`,
/// and `status` says why. Needs root to act as another user (`setpriv`);
/// elsewhere the test only says it did not run.
#[test]
fn another_user_is_told_that_the_state_is_private() {
    let setpriv = Path::new("/usr/bin/setpriv");
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || !setpriv.exists() {
        eprintln!("not run: needs root and {}", setpriv.display());
        return;
    }
    let p = initialized("privacy-other-user");
    std::fs::set_permissions(p.dir(), PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = p.command(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    cmd.arg(env!("CARGO_BIN_EXE_rasen")).arg("status");
    let r = Spawned::start(cmd, "setpriv … rasen status").wait(DEFAULT_DEADLINE_SECS);
    assert_refused(&r, 1, &[".rasen: permission denied", "private to the user who runs rasen"]);
}

#[test]
fn an_old_gitignore_written_by_rasen_is_replaced_by_init_and_one_you_edited_is_kept() {
    let p = Project::new("privacy-old-gitignore");
    let old = "\
# Written by rasen. task.txt, implementation_plan.json, attempt_history.json,
# good_commits.json and memories.md are worth keeping in git.
# Runtime-only files:
rasen.pid
rasen.log
status.json
*.lock
.*.tmp.*
# Kept on disk for you, but not worth committing: the backups of
# 'init --force' and plans set aside from interrupted planning sessions.
*.bak.*
*.interrupted.*
";
    p.write(".rasen/.gitignore", old);
    p.rasen(&["init", "--task", "Keep secrets"]).expect_code(0);
    let new = p.file(".rasen/.gitignore").unwrap();
    assert_ne!(new, old, "the old .gitignore recommended committing agent output");
    let edited = format!("{new}# mine\n");
    p.write(".rasen/.gitignore", &edited);
    p.rasen(&["init", "--force", "--task", "Keep secrets"]).expect_code(0);
    assert_eq!(p.file(".rasen/.gitignore").unwrap(), edited);
}
