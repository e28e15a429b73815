//! How a run ends when two things happen at once or something fails
//! underneath it: the last subtask completed by the last session a limit
//! allows, a stop in the pause after the last subtask, a done claim from
//! an agent that exited non-zero, a plan that cannot be saved, a full disk.

use crate::harness::*;
use crate::run_support::*;

/// status.json's state and reason, and `rasen status --json`'s.
fn assert_completed(p: &Project) {
    let s = status(p);
    assert_eq!(get_str(&s, "status"), Some("completed"), "status.json: {s:?}");
    assert_eq!(get_str(&s, "reason"), Some("completed"), "status.json: {s:?}");
    let r = p.rasen(&["status", "--json"]);
    let report = parse_json(&r.stdout, "rasen status --json");
    assert_eq!(get_str(&report, "state"), Some("completed"), "{r}");
    assert_eq!(get_str(&report, "reason"), Some("completed"), "{r}");
    assert!(
        !p.path(".rasen/.disk-reserve.tmp.rasen").exists(),
        "the disk reserve outlived the run"
    );
}

#[test]
fn the_last_subtask_done_by_the_last_session_allowed_ends_completed() {
    let mut p = project("last-session-completes");
    // The initializer and one coder session: max_iterations is reached by
    // the session that completes the plan.
    p.set_config("orchestrator.max_iterations", "2").env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);

    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_completed(&p);
    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Task already completed"), "{r}");
}

#[test]
fn no_pause_is_slept_after_the_last_subtask() {
    let mut p = project("no-pause-at-end");
    p.set_config("orchestrator.session_delay_seconds", "600").env("SCRIPTED_SUBTASKS", "1");
    // With the 600 s pause slept after t1, this would hit the deadline
    // (and a `rasen stop` in that pause left the task "stopped").
    p.rasen_with_deadline(&["run"], 30).expect_code(0);
    assert_completed(&p);
}

#[test]
fn resume_of_a_completed_task_records_it_as_completed() {
    let mut p = project("resume-completed");
    p.env("SCRIPTED_SUBTASKS", "1");
    p.rasen(&["run"]).expect_code(0);
    // What an earlier version left: every subtask completed, yet the run
    // recorded as failed by a limit reached at the same moment.
    let text = p.file(".rasen/status.json").unwrap();
    let old = text
        .replace("\"status\": \"completed\"", "\"status\": \"failed\"")
        .replace("\"reason\": \"completed\"", "\"reason\": \"max_iterations\"");
    assert_ne!(old, text);
    p.write(".rasen/status.json", &old);

    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(r.stdout.contains("Task already completed"), "{r}");
    assert_completed(&p);
    assert_eq!(p.sessions().len(), 2, "no session after the task was completed");
}

#[test]
fn a_done_claim_from_an_agent_that_exited_non_zero_is_refused() {
    let mut p = project("done-then-exit");
    p.env("SCRIPTED_SUBTASKS", "1").env("SCRIPTED_CODER", "done-then-exit:3,done");
    p.rasen(&["run"]).expect_code(0);

    assert_eq!(outcomes(&p), [pair("t1", "refused"), pair("t1", "success")]);
    let reason = get_str(&attempts(&p)[0], "reason").unwrap().to_string();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("crashed after claiming done"), "the output's tail: {reason}");
}

#[test]
fn a_plan_that_cannot_be_saved_ends_the_run_with_that_error_not_a_rejection() {
    let mut p = project("plan-unsavable");
    p.env("SCRIPTED_PLAN", "unsavable");
    let r = p.rasen(&["run"]);
    assert_eq!(r.code, 1, "{r}");

    assert_eq!(session_list(&p), [session("initializer", "-", "1")], "one initializer session");
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("rasen: error: ")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].contains("state.lock"), "{r}");
    assert!(!r.stdout.contains("plan rejected"), "a save error is not the plan's fault\n{r}");
    let s = status(&p);
    assert_eq!(get_str(&s, "reason"), Some("error"), "{s:?}");
    assert!(get_str(&s, "last_error").is_some_and(|e| e.contains("state.lock")), "{s:?}");
}

/// Whether this machine lets a test mount a tmpfs of its own (`unshare
/// -rm`: a user and mount namespace, open to any user where user
/// namespaces are enabled, and to root).
fn private_tmpfs_available() -> bool {
    // Mounted over the temp directory, seen only by the probe's namespace.
    std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=64k rasen-probe \"$1\"", "probe"])
        .arg(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A real full disk: the project is copied onto a 2 MiB tmpfs mounted in a
/// private mount namespace, and the coder fills it before claiming done.
#[test]
fn a_full_disk_still_gets_the_reason_the_run_ended_recorded() {
    if !private_tmpfs_available() {
        eprintln!("SKIPPED: `unshare -rm` cannot mount a tmpfs here (user namespaces disabled)");
        return;
    }
    let mut p = project("disk-full");
    p.env("SCRIPTED_SUBTASKS", "1").env("SCRIPTED_CODER", "done-filling-disk");
    let mount = p.scripted_dir().join("small-disk");
    std::fs::create_dir_all(&mount).unwrap();
    let script = "set -e\n\
        mount -t tmpfs -o size=2m rasen-test \"$MNT\"\n\
        cp -a \"$PROJECT/.\" \"$MNT/\"\n\
        cd \"$MNT\"\n\
        code=0; \"$RASEN\" run || code=$?\n\
        echo \"=== exit $code\"\n\
        echo '=== status.json'; cat .rasen/status.json\n\
        echo '=== rasen.log'; cat .rasen/rasen.log\n";
    let mut cmd = p.command("unshare");
    cmd.args(["-rm", "sh", "-c", script])
        .env("MNT", &mount)
        .env("PROJECT", p.dir())
        .env("RASEN", env!("CARGO_BIN_EXE_rasen"));
    let r = Spawned::start(cmd, "rasen run on a small tmpfs").wait(60);
    assert_eq!(r.code, 0, "{r}");
    let section = |name: &str| {
        let start = r.stdout.find(&format!("=== {name}\n")).unwrap_or_else(|| panic!("{r}"));
        let rest = &r.stdout[start + name.len() + 5..];
        rest[..rest.find("\n=== ").unwrap_or(rest.len())].to_string()
    };

    assert!(r.stdout.contains("=== exit 1"), "{r}");
    let s = parse_json(&section("status.json"), "status.json");
    assert_eq!(get_str(&s, "status"), Some("failed"), "{s:?}\n{r}");
    assert_eq!(get_str(&s, "reason"), Some("error"), "{s:?}\n{r}");
    let error = get_str(&s, "last_error").unwrap_or_default();
    assert!(error.contains("No space left on device"), "{error}\n{r}");
    let log = section("rasen.log");
    assert!(log.contains("run ended: error"), "{log}\n{r}");
    assert!(log.contains("No space left on device"), "{log}\n{r}");
    assert!(log.contains("gave back the 64 KiB disk reserve"), "{log}\n{r}");
    assert!(!section("status.json").is_empty());
}
