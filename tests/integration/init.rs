//! `rasen init` through the binary: where the task comes from, what is
//! created, what is refused, and what `--force` keeps.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;

/// Every file under `dir` (relative name → bytes), to show that a refused
/// command changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, files);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// The project's files, less git's own.
fn project_snapshot(p: &Project) -> BTreeMap<String, Vec<u8>> {
    let mut files = snapshot(p.dir());
    files.retain(|name, _| !name.starts_with(".git/"));
    files
}

/// The names in .rasen/ that start with `prefix`, sorted.
fn rasen_files_starting_with(p: &Project, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path(".rasen"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// `YYYYMMDDTHHMMSSZ`, as in `task.txt.bak.20260127T180000Z`, with an
/// optional `.N` after it.
fn is_backup_stamp(stamp: &str) -> bool {
    let stamp = stamp.split('.').next().unwrap();
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && stamp.starts_with("20")
}

const PLAN: &str = r#"{
  "task_name": "Old task",
  "subtasks": [
    {
      "id": "old-1",
      "title": "Old step",
      "description": "Something from before",
      "status": "completed",
      "dependencies": [],
      "files": [],
      "tests": [],
      "acceptance_criteria": [],
      "attempts": 1
    }
  ]
}
"#;

#[test]
fn init_stores_the_task_text() {
    let p = Project::new("init-text");
    let r = p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
    assert!(r.stdout.contains("Initialized"), "{r}");
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("Implement user authentication\n"));
    let status = p.json(".rasen/status.json");
    assert_eq!(get_str(&status, "status"), Some("initialized"));
    assert_eq!(get_u64(&status, "iteration"), Some(0));
    assert_eq!(get_u64(&status, "version"), Some(1));

    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.contains("initialized"), "{r}");
    let r = p.rasen(&["status", "--json"]).expect_code(3);
    assert_eq!(get_str(&parse_json(&r.stdout, "status --json"), "status"), Some("initialized"));
}

#[test]
fn init_reads_the_task_from_a_file() {
    let p = Project::new("init-file");
    let spec =
        "# Authentication\n\nAdd login and logout.\n\n- hash passwords\n- rate-limit logins\n";
    p.write("spec.md", spec);
    p.rasen(&["init", "--task", "spec.md"]).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some(spec));

    let abs = p.path("spec.md");
    p.rasen(&["init", "--force", "-t", abs.to_str().unwrap()]).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some(spec));
}

#[test]
fn init_reads_a_task_file_relative_to_where_it_is_run_not_to_the_project() {
    // `-C` names the project; other paths are the shell's, as typed.
    let p = Project::new("init-file-elsewhere");
    let elsewhere = p.scripted_dir();
    std::fs::write(elsewhere.join("spec.md"), "The spec from here.\n").unwrap();
    let mut cmd = p.command(env!("CARGO_BIN_EXE_rasen"));
    cmd.current_dir(elsewhere).args(["-C", p.dir().to_str().unwrap()]);
    cmd.args(["init", "--task", "spec.md"]);
    Spawned::start(cmd, "rasen -C DIR init --task spec.md").wait(30).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("The spec from here.\n"));
}

#[test]
fn init_refuses_to_replace_a_task_without_force() {
    let p = Project::new("init-refuse-task");
    p.rasen(&["init", "--task", "First task"]).expect_code(0);
    let before = project_snapshot(&p);
    let r = p.rasen(&["init", "--task", "Second task"]).expect_code(1);
    assert!(r.stderr.contains(".rasen/task.txt"), "must name what exists\n{r}");
    assert!(r.stderr.contains("--force"), "must say the way out\n{r}");
    assert_eq!(project_snapshot(&p), before, "a refused init changed files");
}

#[test]
fn init_refuses_to_replace_a_plan_without_force() {
    let p = Project::new("init-refuse-plan");
    p.write(".rasen/implementation_plan.json", PLAN);
    let before = project_snapshot(&p);
    let r = p.rasen(&["init", "--task", "New task"]).expect_code(1);
    assert!(r.stderr.contains(".rasen/implementation_plan.json"), "{r}");
    assert!(!r.stderr.contains("task.txt"), "there is no task to name\n{r}");
    assert_eq!(project_snapshot(&p), before, "a refused init changed files");
}

#[test]
fn init_force_keeps_timestamped_backups() {
    let p = Project::new("init-force");
    p.rasen(&["init", "--task", "Old task"]).expect_code(0);
    p.write(".rasen/implementation_plan.json", PLAN);
    let history = "{\n  \"version\": 1,\n  \"attempts\": []\n}\n";
    p.write(".rasen/attempt_history.json", history);
    p.write(".rasen/memories.md", "The tests need a database.\n");

    let r = p.rasen(&["init", "--force", "--task", "New task"]).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("New task\n"));
    assert!(!p.path(".rasen/implementation_plan.json").exists(), "the old plan is still in use");
    assert!(!p.path(".rasen/attempt_history.json").exists());
    assert_eq!(p.file(".rasen/memories.md").as_deref(), Some("The tests need a database.\n"));
    assert_eq!(get_str(&p.json(".rasen/status.json"), "status"), Some("initialized"));

    for (name, old) in [
        ("task.txt", "Old task\n"),
        ("implementation_plan.json", PLAN),
        ("attempt_history.json", history),
    ] {
        let backups = rasen_files_starting_with(&p, &format!("{name}.bak."));
        assert_eq!(backups.len(), 1, "one backup of {name}: {backups:?}\n{r}");
        let stamp = &backups[0][name.len() + 5..];
        assert!(is_backup_stamp(stamp), "{} has no UTC timestamp", backups[0]);
        assert_eq!(p.file(&format!(".rasen/{}", backups[0])).as_deref(), Some(old));
        assert!(r.stdout.contains(&backups[0]), "init should say where {name} went\n{r}");
    }
    assert!(rasen_files_starting_with(&p, "memories.md.bak").is_empty());
}

#[test]
fn init_force_twice_keeps_every_backup() {
    let p = Project::new("init-force-twice");
    p.rasen(&["init", "--task", "One"]).expect_code(0);
    p.rasen(&["init", "--force", "--task", "Two"]).expect_code(0);
    p.rasen(&["init", "--force", "--task", "Three"]).expect_code(0);
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("Three\n"));
    let backups = rasen_files_starting_with(&p, "task.txt.bak.");
    let mut contents: Vec<String> =
        backups.iter().map(|b| p.file(&format!(".rasen/{b}")).unwrap()).collect();
    contents.sort();
    assert_eq!(contents, ["One\n", "Two\n"], "a backup was overwritten: {backups:?}");
    assert!(backups.iter().all(|b| is_backup_stamp(&b["task.txt.bak.".len()..])), "{backups:?}");
}

#[test]
fn init_refuses_an_empty_task() {
    let p = Project::new("init-empty");
    p.write("empty.md", "  \n\n");
    let before = project_snapshot(&p);
    for task in ["", "   ", "\n\t\n", "empty.md"] {
        let r = p.rasen(&["init", "--task", task]).expect_code(2);
        assert!(r.stderr.starts_with("rasen: error: "), "{task:?}\n{r}");
        assert!(r.stderr.contains("empty"), "{task:?}\n{r}");
    }
    assert_eq!(project_snapshot(&p), before, "an empty task created files");
}

/// Everything in .rasen/ is rasen's private state (agent output lands in
/// several files): none of it belongs in git, as the coder prompt says.
/// Only the .gitignore itself is not ignored, so that `git clean -fX`
/// leaves the directory (and the run lock on it) in place.
#[test]
fn gitignore_keeps_everything_in_rasen_out_of_git() {
    let p = Project::new("init-gitignore");
    p.rasen(&["init", "--task", "Keep git clean"]).expect_code(0);
    assert!(p.file(".rasen/.gitignore").is_some(), ".rasen/.gitignore");

    // What git itself makes of it, after a whole run has written every file.
    p.rasen(&["run"]).expect_code(0);
    p.write(".rasen/rasen.pid", "12345\n"); // only exists while a run is alive
    p.write(".rasen/memories.md", "- a lesson\n");
    let ignored = |rel: &str| {
        let out = p.command("git").args(["check-ignore", "-q", rel]).status().unwrap();
        out.success()
    };
    let every_file = [
        "task.txt",
        "implementation_plan.json",
        "attempt_history.json",
        "good_commits.json",
        "memories.md",
        "prompts/coder.md",
        "rasen.pid",
        "rasen.log",
        "status.json",
        "state.lock",
        ".status.json.tmp.123.0",
        "task.txt.bak.20260127T180000Z",
        "implementation_plan.json.interrupted.20260127T180000Z",
    ];
    for name in every_file {
        assert!(ignored(&format!(".rasen/{name}")), ".rasen/{name} is not ignored");
    }
    assert!(!ignored(".rasen/.gitignore"), ".rasen/.gitignore is ignored");
    let status = p.git(&["status", "--porcelain", "--untracked-files=all", ".rasen"]);
    assert_eq!(status, "?? .rasen/.gitignore\n");
    let coder_prompt = include_str!("../../src/prompts/coder.md");
    assert!(coder_prompt.contains("Never commit anything under `.rasen/`"));

    p.git(&["clean", "-fqX"]);
    assert!(p.path(".rasen/.gitignore").exists(), "git clean -fX removed .rasen/");
}

#[test]
fn init_writes_the_documented_rasen_yml_when_there_is_none() {
    let p = Project::new("init-yml");
    std::fs::remove_file(p.path("rasen.yml")).unwrap();
    let r = p.rasen(&["init", "--task", "Configure me"]).expect_code(0);
    assert!(r.stdout.contains("rasen.yml"), "init should say it wrote rasen.yml\n{r}");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rasen.yml")).unwrap();
    assert_eq!(p.file("rasen.yml").as_deref(), Some(shipped.as_str()));
    assert!(shipped.lines().filter(|l| l.trim_start().starts_with('#')).count() > 10);
    p.rasen(&["status"]).expect_code(3); // the written file is valid
}

#[test]
fn init_leaves_an_existing_rasen_yml_untouched() {
    let p = Project::new("init-yml-kept");
    p.config("# mine, with my comments\nreview:\n  enabled: false\n");
    let before = std::fs::read(p.path("rasen.yml")).unwrap();
    let r = p.rasen(&["init", "--task", "Keep my config"]).expect_code(0);
    assert_eq!(std::fs::read(p.path("rasen.yml")).unwrap(), before);
    assert!(!r.stdout.contains("Wrote rasen.yml"), "{r}");
    p.rasen(&["init", "--force", "--task", "Again"]).expect_code(0);
    assert_eq!(std::fs::read(p.path("rasen.yml")).unwrap(), before);
}

#[test]
fn init_refuses_while_a_run_is_in_progress() {
    let mut p = Project::new("init-running");
    p.env("SCRIPTED_CODER", "hang").set_config("agent.stop_grace_seconds", "0");
    p.rasen(&["init", "--task", "Busy"]).expect_code(0);
    let run = p.spawn(&["run"]);
    wait_until(30, "a coder session hangs", || p.sessions().iter().any(|s| s.role == "coder"));
    let plan = p.file(".rasen/implementation_plan.json");
    let r = p.rasen(&["init", "--force", "--task", "Replace it"]).expect_code(1);
    assert!(r.stderr.contains(&run.pid().to_string()), "should name the running PID\n{r}");
    assert_eq!(p.file(".rasen/task.txt").as_deref(), Some("Busy\n"));
    assert_eq!(p.file(".rasen/implementation_plan.json"), plan);
    assert!(rasen_files_starting_with(&p, "task.txt.bak").is_empty(), "a backup was made");
    run.signal(libc::SIGTERM);
    run.wait(30).expect_code(143);
    let agent = p.sessions().iter().find(|s| s.role == "coder").unwrap().pid;
    wait_until(30, "the hung agent's group is gone", || process_group_gone(agent));
}

/// A task argument that is plainly meant as a file (`spec.md`,
/// `docs/task`) but names none is an error, not the task "spec.md".
#[test]
fn init_refuses_a_task_file_that_does_not_exist() {
    let p = Project::new("init-missing-file");
    std::fs::create_dir_all(p.path("docs")).unwrap();
    let before = project_snapshot(&p);
    for task in ["spec.md", "docs/task"] {
        let r = p.rasen(&["init", "--task", task]).expect_code(2);
        assert!(r.stderr.contains(&format!("--task {task}: no such file")), "{task:?}\n{r}");
    }
    let r = p.rasen(&["init", "--task", "docs/"]).expect_code(2);
    assert!(r.stderr.contains("is a directory"), "{r}");
    assert_eq!(project_snapshot(&p), before, "a refused init created files");
    p.rasen(&["init", "--task", "Write the docs"]).expect_code(0);
}
