//! Secrets stay private, and no symlink is followed. `.rasen/` is 0700 and
//! every file rasen writes in it 0600, whatever the umask, because agent
//! output lands in several of them; `.rasen/.gitignore` keeps all of it out
//! of git. No command reads or writes through a symlink in `.rasen/` (nor
//! a `.rasen` that is itself a link), and the `background.*` paths stay
//! inside the project and never replace a file rasen did not create.
//!
//! A planted link points at `secret`, a 0600 file outside the project: no
//! command may ever print, quote or prompt with its contents.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::harness::*;

const SECRET: &str = "TOP-SECRET-TOKEN-4242";
const README: &str = "A project for a rasen test.\n";

fn initialized(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", "Keep secrets"]).expect_code(0);
    p
}

/// A 0600 file outside the project holding SECRET, as a planted link's
/// target.
fn secret_file(p: &Project) -> PathBuf {
    let path = p.scripted_dir().join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Replaces `rel` in the project with a symlink to `target`.
fn plant_link(p: &Project, rel: &str, target: &Path) {
    let path = p.path(rel);
    let _ = std::fs::remove_file(&path);
    symlink(target, &path).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// `rasen ARGS`, started by a shell that first sets `umask`.
fn rasen_with_umask(p: &Project, umask: &str, args: &[&str]) -> RunResult {
    let mut cmd = p.command("sh");
    let script = format!("umask {umask}; exec \"$0\" \"$@\"");
    cmd.args(["-c", &script, env!("CARGO_BIN_EXE_rasen")]).args(args);
    Spawned::start(cmd, &format!("umask {umask}; rasen {}", args.join(" "))).wait(60)
}

/// Every prompt the scripted agent was given, joined.
fn prompts(p: &Project) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(p.scripted_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("prompt-") {
            all.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    all
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

/// A `.rasen` (or a log in it) that belongs to another user stays theirs
/// to read and change whatever its mode: rasen refuses to keep agent
/// output there, and makes a log of its own that others could read
/// private. Needs root to give a file away; elsewhere it only says so.
#[test]
fn a_rasen_dir_or_log_of_another_user_is_refused_and_an_open_log_made_private() {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("not run: needs root to give a file to another user");
        return;
    }
    let p = initialized("privacy-foreign-owner");
    let log = p.path(".rasen/rasen.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, PermissionsExt::from_mode(0o666)).unwrap();
    p.rasen(&["run"]).expect_code(0);
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an existing log is made private");

    std::os::unix::fs::chown(&log, Some(65534), Some(65534)).unwrap();
    let r = p.rasen(&["run"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("belongs to uid 65534"), "{r}");
    std::os::unix::fs::chown(&log, Some(0), Some(0)).unwrap();

    std::os::unix::fs::chown(p.path(".rasen"), Some(65534), Some(65534)).unwrap();
    let r = p.rasen(&["run"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains(".rasen: belongs to uid 65534"), "{r}");
    std::os::unix::fs::chown(p.path(".rasen"), Some(0), Some(0)).unwrap();
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

// --- finding 7: no symlink is followed ------------------------------------------------

#[test]
fn a_symlinked_rasen_dir_is_refused_by_every_command() {
    let p = Project::new("privacy-rasen-link");
    let elsewhere = p.scripted_dir().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("task.txt"), "Someone else's task\n").unwrap();
    symlink(&elsewhere, p.path(".rasen")).unwrap();
    let commands: &[&[&str]] = &[
        &["init", "--task", "Write elsewhere"],
        &["init", "--force", "--task", "Write elsewhere"],
        &["run"],
        &["run", "--background"],
        &["resume"],
        &["status"],
        &["status", "--json"],
        &["logs"],
        &["logs", "--follow"],
        &["stop"],
        &["stop", "--force"],
    ];
    for args in commands {
        let r = p.rasen_with_deadline(args, 20);
        let what = args.join(" ");
        assert_eq!(r.code, 2, "rasen {what}\n{r}");
        assert!(r.stderr.starts_with("rasen: error: "), "rasen {what}\n{r}");
        assert_eq!(r.stderr.lines().count(), 1, "rasen {what}: one line\n{r}");
        assert!(r.stderr.contains(".rasen") && r.stderr.contains("symbolic link"), "{what}\n{r}");
        let names: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(names.len(), 1, "rasen {what} wrote through the link: {names:?}");
    }
    assert!(is_link(&p.path(".rasen")));
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("task.txt")).unwrap(),
        "Someone else's task\n"
    );
    assert!(p.sessions().is_empty());
}

#[test]
fn a_symlinked_state_file_is_refused_and_kept() {
    let p = initialized("privacy-state-link");
    let secret = secret_file(&p);
    plant_link(&p, ".rasen/status.json", &secret);
    for args in [&["status"][..], &["status", "--json"], &["run"], &["resume"]] {
        let r = p.rasen(args);
        assert_refused(&r, 2, &[".rasen/status.json", "symbolic link"]);
    }
    assert!(is_link(&p.path(".rasen/status.json")));

    // A plan that is itself valid, reached through a link, is no plan.
    std::fs::remove_file(p.path(".rasen/status.json")).unwrap();
    let plan = p.scripted_dir().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"task_name": "t", "subtasks": [{"id": "a", "description": "d", "status": "pending"}]}"#,
    )
    .unwrap();
    plant_link(&p, ".rasen/implementation_plan.json", &plan);
    let r = p.rasen(&["run"]);
    assert_refused(&r, 2, &[".rasen/implementation_plan.json", "symbolic link"]);
    assert!(is_link(&p.path(".rasen/implementation_plan.json")));
    assert!(p.sessions().is_empty());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), format!("{SECRET}\n"));
}

#[test]
fn logs_never_prints_a_symlinked_log() {
    let p = initialized("privacy-log-link");
    let secret = secret_file(&p);
    plant_link(&p, ".rasen/rasen.log", &secret);
    let r = p.rasen(&["logs"]);
    assert_refused(&r, 2, &[".rasen/rasen.log", "symbolic link"]);
    let r = p.rasen_with_deadline(&["logs", "--follow"], 20);
    assert_refused(&r, 2, &[".rasen/rasen.log", "symbolic link"]);
}

/// The follower keeps following the file it has while the path is a link
/// (as rasen's own logger keeps writing there), never reads the link, and
/// goes on with a real log once one appears.
#[test]
fn logs_follow_skips_a_link_that_replaces_the_log() {
    let p = initialized("privacy-follow-link");
    let secret = secret_file(&p);
    let (log, old) = (p.path(".rasen/rasen.log"), p.path(".rasen/rasen.log.1"));
    std::fs::write(&log, "line 1\n").unwrap();
    let follower = p.spawn(&["logs", "--follow"]);
    let printed = |expected: &str| {
        wait_until(20, &format!("the follower to print {expected:?}"), || {
            let out = follower.stdout_so_far();
            assert!(!out.contains(SECRET), "the follower printed the link's target");
            assert!(expected.starts_with(&out), "printed {out:?}, expected {expected:?}");
            out == expected
        })
    };
    printed("line 1\n");
    std::fs::rename(&log, &old).unwrap();
    let mut writer = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
    std::io::Write::write_all(&mut writer, b"line 2\n").unwrap();
    symlink(&secret, &log).unwrap();
    wait_until(20, "a warning about the link", || {
        follower.stderr_so_far().contains("symbolic link")
    });
    printed("line 1\nline 2\n");
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, "line 3\n").unwrap();
    printed("line 1\nline 2\nline 3\n");
}

#[test]
fn a_symlinked_prompt_override_is_refused() {
    let p = initialized("privacy-prompt-link");
    let secret = secret_file(&p);
    std::fs::create_dir(p.path(".rasen/prompts")).unwrap();
    plant_link(&p, ".rasen/prompts/coder.md", &secret);
    let r = p.rasen(&["run"]);
    assert_refused(&r, 2, &[".rasen/prompts/coder.md", "symbolic link"]);
    assert!(!prompts(&p).contains(SECRET), "a prompt held the secret");
    assert!(is_link(&p.path(".rasen/prompts/coder.md")));
}

#[test]
fn a_symlinked_prompts_directory_is_refused() {
    let p = initialized("privacy-prompts-dir-link");
    let dir = p.scripted_dir().join("other-prompts");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("initializer.md"), format!("{SECRET} {{task}}\n")).unwrap();
    std::fs::write(dir.join("coder.md"), format!("{SECRET} {{task}}\n")).unwrap();
    symlink(&dir, p.path(".rasen/prompts")).unwrap();
    let r = p.rasen(&["run"]);
    assert_refused(&r, 2, &[".rasen/prompts", "symbolic link"]);
    assert!(!prompts(&p).contains(SECRET), "a prompt held the secret");
}

#[test]
fn a_symlinked_memories_file_is_not_read_into_the_prompt() {
    let p = initialized("privacy-memories-link");
    let secret = secret_file(&p);
    plant_link(&p, ".rasen/memories.md", &secret);
    p.rasen(&["run"]).expect_code(0);
    assert!(!prompts(&p).is_empty(), "no session ran");
    assert!(!prompts(&p).contains(SECRET), "a prompt held the secret");
    let log = p.file(".rasen/rasen.log").unwrap();
    assert!(log.contains("memories.md") && log.contains("symbolic link"), "{log}");
    assert!(is_link(&p.path(".rasen/memories.md")));
}

#[test]
fn a_symlinked_task_file_is_refused() {
    let p = initialized("privacy-task-link");
    let secret = secret_file(&p);
    plant_link(&p, ".rasen/task.txt", &secret);
    for args in [&["run"][..], &["run", "--background"], &["resume"]] {
        let r = p.rasen(args);
        assert_refused(&r, 2, &[".rasen/task.txt", "symbolic link"]);
    }
    assert!(p.sessions().is_empty());
    assert!(!prompts(&p).contains(SECRET));
}

// --- background.* paths ------------------------------------------------------------

#[test]
fn background_paths_outside_the_project_are_refused_at_config_load() {
    let outside = std::env::temp_dir().join(format!("rasen-outside-{}.pid", std::process::id()));
    let cases = [
        ("background.pid_file", format!("{:?}", outside.display().to_string())),
        ("background.log_file", "../outside.log".to_string()),
        ("background.status_file", "state/../../outside.json".to_string()),
    ];
    for (key, value) in cases {
        let mut p = Project::new("privacy-outside");
        p.set_config(key, &value);
        let r = p.rasen(&["init", "--task", "Stay inside"]);
        assert_refused(&r, 2, &["rasen.yml:", key, "inside the project"]);
        p.rasen(&["status"]).expect_code(3); // warns, uses the default paths
        assert!(!outside.exists(), "{key}: {value} was written");
        assert!(!p.dir().parent().unwrap().join("outside.log").exists());
    }
}

/// Every command that would write the file refuses to start: init (which
/// checks what a run will need), run and resume.
const STARTERS: &[&[&str]] = &[
    &["init", "--force", "--task", "Leave README alone"],
    &["run", "--background"],
    &["run"],
    &["resume"],
];

/// `background.pid_file: README.md` used to overwrite README.md with a
/// PID and then delete it.
#[test]
fn a_pid_file_path_naming_a_file_rasen_did_not_create_is_refused() {
    let mut p = initialized("privacy-pid-readme");
    p.set_config("background.pid_file", "README.md");
    for args in STARTERS {
        let r = p.rasen(args);
        assert_refused(&r, 2, &["background.pid_file", "README.md", "not a PID file"]);
    }
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(!r.stdout.contains("stale"), "README.md is no PID file\n{r}");
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(!r.stdout.contains("removed"), "{r}");
    assert_eq!(p.file("README.md").as_deref(), Some(README));
    assert!(p.sessions().is_empty());
}

#[test]
fn a_log_file_path_naming_a_file_rasen_did_not_create_is_refused() {
    let mut p = initialized("privacy-log-readme");
    p.set_config("background.log_file", "README.md");
    for args in STARTERS {
        let r = p.rasen(args);
        assert_refused(&r, 2, &["background.log_file", "README.md", "not a log file"]);
    }
    assert_eq!(p.file("README.md").as_deref(), Some(README));
    assert!(p.sessions().is_empty());
}

#[test]
fn a_status_file_path_naming_a_file_rasen_did_not_create_is_refused() {
    let mut p = initialized("privacy-status-readme");
    p.set_config("background.status_file", "README.md");
    for args in STARTERS {
        let r = p.rasen(args);
        assert_refused(&r, 2, &["background.status_file", "README.md", "not a status file"]);
    }
    let r = p.rasen(&["status"]);
    assert_refused(&r, 2, &["background.status_file", "README.md", "not a status file"]);
    assert_eq!(p.file("README.md").as_deref(), Some(README));
    assert!(p.sessions().is_empty());
}

#[test]
fn background_paths_may_not_name_another_file_of_rasen() {
    for (key, value) in [
        ("background.pid_file", ".rasen/task.txt"),
        ("background.log_file", ".rasen/memories.md"),
        ("background.status_file", ".rasen/implementation_plan.json"),
        ("background.log_file", "rasen.yml"),
        ("background.pid_file", ".git/HEAD"),
    ] {
        let mut p = Project::new("privacy-own-files");
        p.set_config(key, value);
        let r = p.rasen(&["init", "--task", "Keep my files apart"]);
        assert_refused(&r, 2, &["rasen.yml", key]);
    }
}

/// Files rasen did create outside .rasen/ are its own: a second run uses
/// them as the first left them.
#[test]
fn background_files_elsewhere_in_the_project_are_used_when_they_are_rasens() {
    let mut p = Project::new("privacy-elsewhere");
    std::fs::create_dir(p.path("run")).unwrap();
    p.set_config("background.pid_file", "run/rasen.pid")
        .set_config("background.log_file", "logs/rasen.log")
        .set_config("background.status_file", "run/status.json");
    p.rasen(&["init", "--task", "Elsewhere"]).expect_code(0);
    p.rasen(&["run"]).expect_code(0);
    std::fs::write(p.path("run/rasen.pid"), "999999\n").unwrap(); // a stale one
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("removed stale PID file"), "{r}");
    p.rasen(&["init", "--force", "--task", "Elsewhere again"]).expect_code(0);
    p.rasen(&["run"]).expect_code(0);
    assert_eq!(mode(&p.path("run/status.json")), 0o600);
    assert_eq!(mode(&p.path("logs/rasen.log")), 0o600);
    assert_eq!(mode(&p.path("logs")), 0o700);
}

#[test]
fn a_symlinked_directory_on_the_way_to_a_background_file_is_refused() {
    let mut p = Project::new("privacy-dir-link");
    let elsewhere = p.scripted_dir().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, p.path("logs")).unwrap();
    p.rasen(&["init", "--task", "Stay inside"]).expect_code(0);
    p.set_config("background.log_file", "logs/rasen.log");
    for args in STARTERS.iter().chain([&["logs"][..], &["logs", "--follow"]].iter()) {
        let r = p.rasen_with_deadline(args, 20);
        assert_refused(&r, 2, &["background.log_file", "logs", "symbolic link"]);
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "wrote through the link");
}
