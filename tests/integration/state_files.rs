//! rasen's JSON state files through the binary: a file that does not parse,
//! lacks a field, holds a bad word, or (the plan) is not a usable plan stops
//! `run`, `resume` and `status` with exit 2, the file's name, the line and
//! column or the field, and the file kept byte for byte. And the modes of
//! everything rasen creates, under the most permissive umask.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::*;

const PLAN_FILE: &str = ".rasen/implementation_plan.json";
const HISTORY_FILE: &str = ".rasen/attempt_history.json";
const GOOD_COMMITS_FILE: &str = ".rasen/good_commits.json";
const STATUS_FILE: &str = ".rasen/status.json";

/// An initialized project (task stored, status `initialized`).
fn initialized(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", "Exercise the state files"]).expect_code(0);
    p
}

/// A plan with one subtask per JSON object given, pretty-printed the way
/// rasen writes it, so that line numbers are easy to count.
fn plan_with(subtasks: &[&str]) -> String {
    let items: Vec<String> = subtasks.iter().map(|s| format!("    {s}")).collect();
    format!(
        "{{\n  \"task_name\": \"Stored task\",\n  \"subtasks\": [\n{}\n  ]\n}}\n",
        items.join(",\n")
    )
}

fn subtask(id: &str, deps: &[&str]) -> String {
    let deps: Vec<String> = deps.iter().map(|d| format!("{d:?}")).collect();
    format!(
        r#"{{"id": "{id}", "title": "Step {id}", "description": "Do {id}", "status": "pending", "dependencies": [{}]}}"#,
        deps.join(", ")
    )
}

/// Every file under .rasen/ (name → bytes).
fn rasen_files(p: &Project) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(p.path(".rasen"))
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Runs `rasen ARGS` in `p` and checks that it stops with exit 2 and one
/// error line holding `located` (`.rasen/FILE:LINE:COL: what` or
/// `.rasen/FILE: what`); that no agent session ran and no daemon started;
/// and that .rasen/ is as it was, the bad file byte for byte (a lock file
/// may have appeared: it holds nothing).
fn assert_state_error(p: &Project, args: &[&str], located: &str) {
    let before = rasen_files(p);
    let r = p.rasen(args).expect_code(2);
    let what = format!("rasen {}", args.join(" "));
    let mut lines = r.stderr.lines();
    let line = lines.next().unwrap_or_default();
    assert!(lines.next().is_none(), "{what}: one line of error expected\n{r}");
    assert!(line.starts_with("rasen: error: "), "{what}\n{r}");
    assert!(line.contains(located), "{what}: expected {located:?}\n{r}");
    assert!(line.contains("unchanged"), "{what}: should say the file was kept\n{r}");
    assert!(p.sessions().is_empty(), "{what}: an agent session ran\n{r}");
    assert_eq!(p.daemon_pid(), None, "{what}: a daemon started\n{r}");
    let mut after = rasen_files(p);
    after.retain(|name, _| before.contains_key(name) || !name.ends_with(".lock"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: files appeared or went\n{r}"
    );
    for (name, bytes) in &before {
        assert!(after[name] == *bytes, "{what}: .rasen/{name} was changed\n{r}");
    }
}

/// The same check for every command that loads the state files.
fn assert_run_and_resume_refuse(p: &Project, located: &str) {
    for args in [&["run"][..], &["run", "--background"], &["resume"], &["resume", "--background"]] {
        assert_state_error(p, args, located);
    }
}

// --- implementation_plan.json ----------------------------------------------------------

#[test]
fn corrupt_plan_is_reported_with_its_position_and_kept() {
    let p = initialized("state-plan-syntax");
    // Line 4, column 16: the `"` where a `,` should come after `"id": "a"`.
    let text = "{\n  \"task_name\": \"x\",\n  \"subtasks\": [\n    {\"id\": \"a\" \"description\": \"d\", \"status\": \"pending\"}\n  ]\n}\n";
    p.write(PLAN_FILE, text);
    assert_run_and_resume_refuse(&p, ".rasen/implementation_plan.json:4:16: ");
    assert_eq!(p.file(PLAN_FILE).as_deref(), Some(text));
}

#[test]
fn truncated_plan_is_reported_at_its_end() {
    let p = initialized("state-plan-truncated");
    let whole = plan_with(&[&subtask("a", &[])]);
    let text = &whole[..whole.find("\"title\"").unwrap()]; // cut inside subtask "a"
    p.write(PLAN_FILE, text);
    assert_eq!(text.lines().count(), 4);
    let col = text.lines().last().unwrap().chars().count() + 1;
    assert_run_and_resume_refuse(&p, &format!(".rasen/implementation_plan.json:4:{col}: "));
}

#[test]
fn plan_with_a_missing_field_is_reported_and_kept() {
    let p = initialized("state-plan-field");
    p.write(PLAN_FILE, &plan_with(&[r#"{"id": "a", "status": "pending"}"#]));
    assert_run_and_resume_refuse(
        &p,
        ".rasen/implementation_plan.json: subtask 1 (\"a\"): missing field \"description\"",
    );
}

#[test]
fn plan_with_a_bad_status_is_reported_and_kept() {
    let p = initialized("state-plan-enum");
    let second = r#"{"id": "b", "description": "d", "status": "done"}"#;
    p.write(PLAN_FILE, &plan_with(&[&subtask("a", &[]), second]));
    assert_run_and_resume_refuse(
        &p,
        "subtask 2 (\"b\"): status \"done\" is not one of pending, in_progress, completed, failed",
    );
}

#[test]
fn plan_with_a_duplicate_id_is_refused_and_kept() {
    let p = initialized("state-plan-duplicate");
    p.write(PLAN_FILE, &plan_with(&[&subtask("a", &[]), &subtask("b", &[]), &subtask("a", &[])]));
    assert_run_and_resume_refuse(
        &p,
        ".rasen/implementation_plan.json: duplicate subtask id \"a\" (subtasks 1 and 3)",
    );
}

#[test]
fn plan_with_an_unknown_dependency_is_refused_and_kept() {
    let p = initialized("state-plan-unknown-dep");
    p.write(PLAN_FILE, &plan_with(&[&subtask("a", &[]), &subtask("b", &["a", "zz"])]));
    assert_run_and_resume_refuse(
        &p,
        ".rasen/implementation_plan.json: subtask \"b\" depends on unknown subtask \"zz\"",
    );
}

#[test]
fn plan_with_a_dependency_cycle_is_refused_and_kept() {
    let p = initialized("state-plan-cycle");
    let plan = plan_with(&[&subtask("a", &["c"]), &subtask("b", &["a"]), &subtask("c", &["b"])]);
    p.write(PLAN_FILE, &plan);
    assert_run_and_resume_refuse(&p, ".rasen/implementation_plan.json: dependency cycle: ");
    let r = p.rasen(&["run"]).expect_code(2);
    for id in ["a", "b", "c"] {
        assert!(r.stderr.contains(id), "the cycle should name {id}\n{r}");
    }
}

#[test]
fn plan_without_subtasks_is_refused_and_kept() {
    let p = initialized("state-plan-empty");
    p.write(PLAN_FILE, "{\"task_name\": \"x\", \"subtasks\": []}\n");
    assert_run_and_resume_refuse(&p, ".rasen/implementation_plan.json: the plan has no subtasks");
}

// --- attempt_history.json and good_commits.json ----------------------------------------

/// A valid plan, so that the history is what stops the command.
fn with_valid_plan(name: &str) -> Project {
    let p = initialized(name);
    p.write(PLAN_FILE, &plan_with(&[&subtask("t1", &[])]));
    p
}

#[test]
fn corrupt_attempt_history_is_reported_with_its_position_and_kept() {
    let p = with_valid_plan("state-history-syntax");
    // Line 3, column 16: a `}` where an attempt or the `]` must come.
    p.write(HISTORY_FILE, "{\n  \"version\": 1,\n  \"attempts\": [}\n}\n");
    assert_run_and_resume_refuse(&p, ".rasen/attempt_history.json:3:16: ");
}

#[test]
fn attempt_history_with_a_missing_field_is_reported_and_kept() {
    let p = with_valid_plan("state-history-field");
    let attempt = r#"{"subtask_id": "t1", "role": "coder", "outcome": "failure"}"#;
    p.write(HISTORY_FILE, &format!("{{\"version\": 1, \"attempts\": [{attempt}]}}\n"));
    assert_run_and_resume_refuse(
        &p,
        ".rasen/attempt_history.json: attempt 1 (\"t1\"): missing field \"session\"",
    );
}

#[test]
fn attempt_history_with_a_bad_outcome_is_reported_and_kept() {
    let p = with_valid_plan("state-history-enum");
    let good = r#"{"subtask_id": "t1", "session": 1, "role": "coder", "outcome": "failure"}"#;
    let bad = r#"{"subtask_id": "t1", "session": 2, "role": "coder", "outcome": "won"}"#;
    p.write(HISTORY_FILE, &format!("{{\"version\": 1, \"attempts\": [{good}, {bad}]}}\n"));
    assert_run_and_resume_refuse(&p, "attempt 2 (\"t1\"): outcome \"won\" is not one of success, failure, refused, blocked, interrupted, timeout, usage_limit");
}

#[test]
fn corrupt_good_commits_is_reported_and_kept() {
    let p = with_valid_plan("state-good-commits");
    p.write(GOOD_COMMITS_FILE, "{\"version\": 1, \"commits\": [{\"subtask_id\": \"t1\"}]}\n");
    assert_run_and_resume_refuse(&p, ".rasen/good_commits.json: commit 1: missing field \"hash\"");
    p.write(GOOD_COMMITS_FILE, "{\"version\": 1,\n\"commits\": [\n");
    assert_run_and_resume_refuse(&p, ".rasen/good_commits.json:3:1: ");
}

// --- status.json -------------------------------------------------------------------

#[test]
fn corrupt_status_file_is_reported_by_every_command_and_kept() {
    let p = initialized("state-status-syntax");
    // Line 4, column 3: `"iteration"` where a `,` should come.
    let text = "{\n  \"version\": 1,\n  \"status\": \"running\"\n  \"iteration\": 3\n}\n";
    p.write(STATUS_FILE, text);
    for args in [&["status"][..], &["status", "--json"]] {
        assert_state_error(&p, args, ".rasen/status.json:4:3: ");
    }
    assert_run_and_resume_refuse(&p, ".rasen/status.json:4:3: ");
    assert_eq!(p.file(STATUS_FILE).as_deref(), Some(text));
}

#[test]
fn status_file_with_a_bad_state_or_missing_field_is_reported_and_kept() {
    let p = initialized("state-status-shape");
    let good = p.file(STATUS_FILE).unwrap();
    assert!(good.contains("\"status\": \"initialized\""), "{good}");

    p.write(STATUS_FILE, &good.replace("\"initialized\"", "\"sleeping\""));
    let expected = ".rasen/status.json: status \"sleeping\" is not one of initialized, running, stopped, completed, failed";
    assert_state_error(&p, &["status"], expected);
    assert_run_and_resume_refuse(&p, expected);

    let without_iteration: String =
        good.lines().filter(|l| !l.contains("\"iteration\"")).map(|l| format!("{l}\n")).collect();
    p.write(STATUS_FILE, &without_iteration);
    assert_state_error(&p, &["status"], ".rasen/status.json: missing field \"iteration\"");
}

#[test]
fn status_file_from_a_newer_rasen_is_reported_and_kept() {
    let p = initialized("state-status-version");
    let good = p.file(STATUS_FILE).unwrap();
    p.write(STATUS_FILE, &good.replace("\"version\": 1", "\"version\": 2"));
    assert_state_error(&p, &["status"], ".rasen/status.json: format version 2");
    assert_run_and_resume_refuse(&p, ".rasen/status.json: format version 2");
}

// --- modes -------------------------------------------------------------------------

/// Every file and directory under `root` with a group- or world-write bit.
fn writable_by_others(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            continue;
        }
        if mode & 0o022 != 0 {
            found.push(format!("{} {:o}", path.display(), mode & 0o7777));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

/// `rasen ARGS`, started by a shell that first sets umask 000.
fn rasen_with_umask_000(p: &Project, args: &[&str]) -> RunResult {
    let mut cmd = p.command("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_rasen")]).args(args);
    Spawned::start(cmd, &format!("umask 000; rasen {}", args.join(" "))).wait(60)
}

/// Checks the project's rasen.yml and everything under .rasen/.
fn assert_nothing_writable_by_others(p: &Project, when: &str) {
    let mut bad = writable_by_others(&p.path(".rasen"));
    bad.extend(writable_by_others(&p.path("rasen.yml")));
    assert!(bad.is_empty(), "{when}: group- or world-writable: {bad:?}");
}

#[test]
fn init_and_a_run_under_umask_000_create_nothing_writable_by_others() {
    let mut p = Project::new("state-modes");
    std::fs::remove_file(p.path("rasen.yml")).unwrap();
    rasen_with_umask_000(&p, &["init", "--task", "Mind the modes"]).expect_code(0);
    assert!(p.path("rasen.yml").exists());
    assert_nothing_writable_by_others(&p, "after init");

    p.set_config("orchestrator.max_iterations", "20"); // the scripted agent, keeping the mode
    rasen_with_umask_000(&p, &["run"]).expect_code(0);
    assert_eq!(get_str(&p.json(STATUS_FILE), "status"), Some("completed"));
    for file in [HISTORY_FILE, GOOD_COMMITS_FILE, ".rasen/rasen.log", ".rasen/state.lock"] {
        assert!(p.path(file).exists(), "{file} was not written");
    }
    assert_nothing_writable_by_others(&p, "after the run");
}

#[test]
fn a_daemon_under_umask_000_creates_nothing_writable_by_others() {
    let mut p = Project::new("state-modes-daemon");
    p.env("SCRIPTED_CODER", "hang").set_config("agent.stop_grace_seconds", "0");
    rasen_with_umask_000(&p, &["init", "--task", "Mind the modes"]).expect_code(0);
    let r = rasen_with_umask_000(&p, &["run", "--background"]).expect_code(0);
    assert!(r.stdout.contains("Daemon started"), "{r}");
    wait_until(30, "a coder session hangs", || p.sessions().iter().any(|s| s.role == "coder"));
    let daemon = p.daemon_pid().expect("the daemon's PID file");
    assert_nothing_writable_by_others(&p, "while the daemon runs");

    p.rasen(&["stop"]).expect_code(0);
    assert!(process_gone(daemon), "stop returned while the daemon still ran");
    assert_eq!(get_str(&p.json(STATUS_FILE), "status"), Some("stopped"));
    assert_nothing_writable_by_others(&p, "after the daemon stopped");
}
