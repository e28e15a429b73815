//! Helpers shared by the `rasen run` tests (the `run*` and `recovery`
//! modules): a project with a task, the state files as values, the sessions
//! the agent recorded, and the checks that every one of those tests makes in
//! the same way.

use miniserde::json::Value;

use crate::harness::*;

/// The task every run test starts from; unique enough to find in a prompt.
pub const TASK: &str = "Build the frobnicator XYZZY-7 in small steps";

/// A project with rasen.yml for the scripted agent and `rasen init` done.
pub fn project(name: &str) -> Project {
    let p = Project::new(name);
    p.rasen(&["init", "--task", TASK]).expect_code(0);
    p
}

pub fn status(p: &Project) -> Value {
    p.json(".rasen/status.json")
}

/// attempt_history.json's coder attempts, in order (the initializer
/// sessions, recorded with role "initializer", are left out).
pub fn attempts(p: &Project) -> Vec<Value> {
    let history = p.json(".rasen/attempt_history.json");
    assert_eq!(get_u64(&history, "version"), Some(1), "attempt_history.json version");
    let all = get_array(&history, "attempts").expect("attempts is an array");
    all.iter().filter(|a| get_str(a, "role") != Some("initializer")).cloned().collect()
}

/// (subtask_id, outcome) of every coder attempt, in order.
pub fn outcomes(p: &Project) -> Vec<(String, String)> {
    attempts(p)
        .iter()
        .map(|a| {
            let field = |k: &str| get_str(a, k).unwrap_or_else(|| panic!("attempt without {k}"));
            (field("subtask_id").to_string(), field("outcome").to_string())
        })
        .collect()
}

/// An owned (subtask_id, outcome) pair, for comparing with `outcomes`.
pub fn pair(subtask: &str, outcome: &str) -> (String, String) {
    (subtask.to_string(), outcome.to_string())
}

/// The `status` of subtask `id` in the plan.
pub fn subtask_status(p: &Project, id: &str) -> String {
    let plan = p.json(".rasen/implementation_plan.json");
    let subtasks = get_array(&plan, "subtasks").expect("subtasks is an array");
    let subtask = subtasks
        .iter()
        .find(|s| get_str(s, "id") == Some(id))
        .unwrap_or_else(|| panic!("no subtask {id} in the plan"));
    get_str(subtask, "status").expect("subtask status").to_string()
}

/// The hashes and subtask ids in good_commits.json (empty when there is
/// no such file).
pub fn good_commits(p: &Project) -> Vec<(String, String)> {
    if p.file(".rasen/good_commits.json").is_none() {
        return Vec::new();
    }
    let v = p.json(".rasen/good_commits.json");
    let commits = get_array(&v, "commits").expect("commits is an array");
    commits
        .iter()
        .map(|c| {
            let hash = get_str(c, "hash").expect("hash").to_string();
            (hash, get_str(c, "subtask_id").expect("subtask_id").to_string())
        })
        .collect()
}

/// The prompt the scripted agent read on stdin in session `iteration`.
pub fn prompt(p: &Project, iteration: u64) -> String {
    let path = p.scripted_dir().join(format!("prompt-{iteration}.txt"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no prompt for session {iteration} ({}): {e}", path.display()))
}

/// (role, subtask, attempt) of every session the agent recorded, in order.
pub fn session_list(p: &Project) -> Vec<(String, String, String)> {
    p.sessions().into_iter().map(|s| (s.role, s.subtask, s.attempt)).collect()
}

/// An owned (role, subtask, attempt) triple, for comparing with `session_list`.
pub fn session(role: &str, subtask: &str, attempt: &str) -> (String, String, String) {
    (role.to_string(), subtask.to_string(), attempt.to_string())
}

/// Waits until a coder session on `subtask` has started; returns its PID
/// (also its process group id: rasen starts each agent in its own group).
pub fn wait_for_coder(p: &Project, subtask: &str) -> i32 {
    let mut pid = 0;
    wait_until(30, &format!("a coder session on {subtask}"), || {
        let found = p.sessions().into_iter().find(|s| s.role == "coder" && s.subtask == subtask);
        pid = found.map_or(0, |s| s.pid);
        pid != 0
    });
    pid
}

/// Waits until the log has a line containing `text`.
pub fn wait_for_log(p: &Project, text: &str) {
    wait_until(30, &format!("a log line with {text:?}"), || {
        p.file(".rasen/rasen.log").is_some_and(|log| log.contains(text))
    });
}

/// Waits until the coder session on `subtask` runs the `hang` behaviour
/// (it has said so), so that a signal cannot cut it before it chose;
/// returns its PID, also its process group id.
pub fn wait_for_hang(p: &Project, subtask: &str) -> i32 {
    let pid = wait_for_coder(p, subtask);
    wait_for_log(p, &format!("[coder {subtask}] Thinking very hard about {subtask}..."));
    pid
}

/// Every process the agents recorded is gone, and so is every process
/// group of every session: nothing outlives a session.
pub fn assert_no_agent_process_left(p: &Project) {
    let pids = p.agent_pids();
    assert!(!pids.is_empty(), "the agents recorded no PID");
    for pid in pids {
        assert!(process_gone(pid), "agent process {pid} is still running");
    }
    for s in p.sessions() {
        assert!(process_group_gone(s.pid), "process group {} of session {s:?} is alive", s.pid);
    }
}

/// Every line of the log starts with a UTC timestamp within the last
/// `within_secs` seconds; returns the lines without their timestamps.
pub fn log_messages(p: &Project, within_secs: i64) -> Vec<String> {
    let log = p.file(".rasen/rasen.log").expect("the run wrote .rasen/rasen.log");
    let now = now_epoch();
    log.lines()
        .map(|line| {
            let (stamp, message) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("log line without a timestamp: {line:?}"));
            let at = iso_to_epoch(stamp)
                .unwrap_or_else(|| panic!("log line without a UTC timestamp: {line:?}"));
            assert!(now - within_secs <= at && at <= now, "log time {stamp} is off: {line:?}");
            message.to_string()
        })
        .collect()
}

/// The run ended with reason usage_limit and status.json's waiting_until
/// is `reset_secs` after the run (which lasted from `before` to `after`):
/// the reset time the agent reported, not a guess.
pub fn assert_usage_limit_resets_after(p: &Project, reset_secs: i64, before: i64, after: i64) {
    let s = status(p);
    assert_eq!(get_str(&s, "reason"), Some("usage_limit"));
    let until = get_str(&s, "waiting_until").expect("waiting_until in status.json");
    let until = iso_to_epoch(until).unwrap_or_else(|| panic!("waiting_until {until:?}"));
    assert!(
        before + reset_secs <= until && until <= after + reset_secs,
        "reset at {until}, ran {before}..{after}"
    );
}
