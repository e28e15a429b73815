//! The daemon story from a user's side, one test per scene, against the real
//! binary with real fork, signals and git: start in the background, monitor,
//! stop, resume; a short task run to the end and an interrupted one finished
//! by a new daemon; the troubleshooting cases (a stale PID file, a daemon
//! killed with -9, a PID file removed by hand); and the edges of `resume`.
//! Each test reads like the shell session a user would type; the output
//! lines it quotes are the ones README.md promises ("Commands", "Daemon
//! mode"), checked as facts (the wording may be richer).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

const STARTING: &str = "Starting daemon... (PID file: .rasen/rasen.pid, log: .rasen/rasen.log)";
/// How long a test waits for something the scripted agent does in well
/// under a second.
const SOON: u64 = 20;
/// How long a short task may take to run to the end.
const FINISH: u64 = 45;
/// The generous bound for an "at once" behaviour (stop, stop --force).
const AT_ONCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A project with fast settings (no delay between sessions, a short grace
/// for the agent's group after SIGTERM) whose initializer plans `subtasks`
/// subtasks t1→t2→…; `agents` sets the coder behaviours (SCRIPTED_CODER…).
fn project(name: &str, subtasks: usize, agents: &[(&str, &str)]) -> Project {
    let mut p = Project::new(name);
    p.set_config("agent.stop_grace_seconds", "1");
    p.env("SCRIPTED_SUBTASKS", &subtasks.to_string());
    for (key, value) in agents {
        p.env(key, value);
    }
    p
}

fn init(p: &Project, task: &str) {
    let r = p.rasen(&["init", "--task", task]).expect_code(0);
    assert!(r.stdout.contains("Initialized task"), "{r}");
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn line_starting<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

/// The PID in `Daemon started with PID N`; panics unless the output ends
/// with the two lines of a daemon start (`Starting daemon… (PID file: …,
/// log: …)`, then `Daemon started with PID N`), in order, after whatever
/// came before them.
fn daemon_started(r: &RunResult) -> i32 {
    let lines: Vec<&str> = r.stdout.lines().collect();
    let at =
        lines.iter().position(|l| *l == STARTING).unwrap_or_else(|| panic!("no {STARTING:?}\n{r}"));
    let started = lines.get(at + 1).unwrap_or_else(|| panic!("nothing after {STARTING:?}\n{r}"));
    let pid = started
        .strip_prefix("Daemon started with PID ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected `Daemon started with PID N`\n{r}"));
    assert_eq!(lines.len(), at + 2, "nothing may follow the PID line\n{r}");
    pid
}

/// `rasen ARGS` that must start a daemon: exit 0, those two lines, a PID
/// that is the PID file's and a live process. Returns the PID.
fn start_daemon(p: &Project, args: &[&str]) -> (i32, RunResult) {
    let r = p.rasen(args).expect_code(0);
    let pid = daemon_started(&r);
    assert_eq!(p.daemon_pid(), Some(pid), "the PID file must hold the daemon's PID\n{r}");
    assert!(!process_gone(pid), "daemon {pid} is not running\n{r}");
    (pid, r)
}

/// The subtask of every coder session so far, in order.
fn coder_sessions(p: &Project) -> Vec<String> {
    p.sessions().into_iter().filter(|s| s.role == "coder").map(|s| s.subtask).collect()
}

/// The PID of the last coder session of `subtask`.
fn last_coder(p: &Project, subtask: &str) -> i32 {
    let sessions = p.sessions();
    let last = sessions.iter().rev().find(|s| s.role == "coder" && s.subtask == subtask);
    last.unwrap_or_else(|| panic!("no coder session of {subtask}")).pid
}

/// Waits until the first coder session of `subtask`, told `slow:SECS`, is
/// a second into its work, and returns its PID. Its commit is made by then:
/// stopping it in the middle of `git commit` could leave a
/// `.git/index.lock` that fails every later session (git's own race).
fn slow_session_under_way(p: &Project, subtask: &str) -> i32 {
    wait_for_log(p, &format!("slow work on {subtask}: 1 s"));
    last_coder(p, subtask)
}

/// Waits until the first coder session of `subtask`, told `hang`, has
/// started its stray child and is asleep; returns the session's PID.
fn hanging_session_under_way(p: &Project, subtask: &str) -> i32 {
    wait_for_log(p, &format!("Thinking very hard about {subtask}"));
    let agent = last_coder(p, subtask);
    wait_until(SOON, "the hanging agent to record its stray child", || {
        let pids = p.agent_pids();
        pids.contains(&agent) && pids.last() != Some(&agent)
    });
    agent
}

/// Waits until the log holds `text`.
fn wait_for_log(p: &Project, text: &str) {
    wait_until(SOON, &format!("the log to show {text:?}"), || {
        p.file(".rasen/rasen.log").unwrap_or_default().contains(text)
    });
}

/// Waits until status.json records `agent` as the running agent, so that
/// a `stop --force` now knows which process group to kill.
fn wait_for_agent_recorded(p: &Project, agent: i32) {
    wait_until(SOON, &format!("status.json to record agent {agent}"), || {
        p.file(".rasen/status.json")
            .and_then(|t| miniserde::json::from_str(&t).ok())
            .and_then(|v| get_u64(&v, "agent_pid"))
            == Some(agent as u64)
    });
}

/// Waits until the daemon `pid` has exited and status.json says completed.
fn wait_for_completion(p: &Project, pid: i32) {
    wait_until(FINISH, &format!("daemon {pid} to finish the task"), || {
        process_gone(pid) && get_str(&p.json(".rasen/status.json"), "status") == Some("completed")
    });
}

fn subtask_status(p: &Project, id: &str) -> String {
    let plan = p.json(".rasen/implementation_plan.json");
    let subtasks = get_array(&plan, "subtasks").expect("subtasks");
    let s =
        subtasks.iter().find(|s| get_str(s, "id") == Some(id)).unwrap_or_else(|| panic!("{id}"));
    get_str(s, "status").unwrap().to_string()
}

fn assert_agents_gone(p: &Project, within: u64) {
    let pids = p.agent_pids();
    assert!(!pids.is_empty(), "the agent recorded no PIDs");
    wait_until(within, &format!("agent processes {pids:?} to be gone"), || {
        pids.iter().all(|&pid| process_gone(pid))
    });
}

/// Runs `rasen stop` (graceful) and checks it said so, in time.
fn stop(p: &Project, daemon: i32) -> RunResult {
    let began = Instant::now();
    let r = p.rasen(&["stop"]).expect_code(0);
    let took = began.elapsed();
    assert!(took < AT_ONCE, "stop took {took:?}\n{r}");
    assert!(has_line(&r.stdout, "✅ Daemon stopped successfully"), "{r}");
    assert!(process_gone(daemon), "daemon {daemon} still runs after stop\n{r}");
    assert_eq!(p.file(".rasen/rasen.pid"), None, "stop must leave no PID file\n{r}");
    r
}

/// The three lines `resume` prints before it goes on.
fn assert_resuming(r: &RunResult, done: u64, total: u64, last: &str) {
    for line in [
        "Resuming task: Scripted task".to_string(),
        format!("Progress: {done}/{total} subtasks completed"),
        format!("Last working on: {last}"),
    ] {
        assert!(has_line(&r.stdout, &line), "missing {line:?}\n{r}");
    }
}

/// Live rasen processes whose working directory is `dir`.
fn rasen_processes_in(dir: &Path) -> Vec<i32> {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_rasen")).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let link = |pid: i32, what: &str| std::fs::read_link(format!("/proc/{pid}/{what}")).ok();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            link(pid, "exe").as_ref() == Some(&exe)
                && link(pid, "cwd").as_ref() == Some(&dir)
                && !process_gone(pid)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

/// Starting in the background: rasen returns at once, and the daemon it
/// leaves is detached and at work.
#[test]
fn run_background_starts_a_detached_daemon_and_returns_at_once() {
    let p = project("start-bg", 2, &[("SCRIPTED_CODER", "slow:600")]);
    init(&p, "Implement user authentication");

    let began = Instant::now();
    // p.rasen fails the test if anything still holds the caller's pipes.
    let (pid, r) = start_daemon(&p, &["run", "--background"]);
    assert!(began.elapsed() < AT_ONCE, "run --background took {:?}\n{r}", began.elapsed());
    assert_eq!(r.stderr, "", "{r}");

    // Detached: in a session of its own but not its leader, no terminal,
    // stdin from /dev/null, stdout and stderr into the log.
    let stat = stat_fields(pid);
    assert_ne!(stat[3], pid.to_string(), "the daemon must not be a session leader");
    assert_ne!(stat[3], std::process::id().to_string(), "the daemon must have left our session");
    assert_eq!(stat[4], "0", "the daemon must have no controlling terminal");
    assert_eq!(fd_target(pid, 0), Path::new("/dev/null"));
    let log = std::fs::canonicalize(p.path(".rasen/rasen.log")).unwrap();
    assert_eq!(fd_target(pid, 1), log);
    assert_eq!(fd_target(pid, 2), log);

    // It keeps working with nobody attached: the agent gets to t1.
    slow_session_under_way(&p, "t1");
    stop(&p, pid);
}

/// Monitoring progress: status, logs -n 100 and logs --follow of a daemon at
/// work.
#[test]
fn status_and_logs_show_the_daemon_at_work() {
    // t1 floods the log with 1024 lines, t2 works slowly, printing each second.
    let agents = [("SCRIPTED_CODER_t1", "flood:1"), ("SCRIPTED_CODER_t2", "slow:600")];
    let p = project("monitor", 3, &agents);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t2");

    let r = p.rasen(&["status"]).expect_code(0);
    let json = p.json(".rasen/status.json");
    let s = &r.stdout;
    assert!(has_line(s, "Status: running"), "{r}");
    assert!(has_line(s, &format!("PID: {pid}")), "{r}");
    let iteration = get_u64(&json, "iteration").unwrap();
    assert_eq!(iteration, p.sessions().len() as u64, "one iteration per session");
    assert!(has_line(s, &format!("Iteration: {iteration}")), "{r}");
    assert!(line_starting(s, "Progress: 1/3 subtasks").is_some(), "{r}");
    let commits = get_u64(&json, "total_commits").unwrap();
    assert!((1..p.git_commit_count()).contains(&commits), "t1's commit at least: {commits}");
    assert!(has_line(s, &format!("Total commits: {commits}")), "{r}");
    let lines: Vec<&str> = s.lines().collect();
    let at =
        lines.iter().position(|l| *l == "Current subtask: t2").unwrap_or_else(|| panic!("{r}"));
    assert_eq!(lines.get(at + 1).map(|l| l.trim_end()), Some("  Do step 2"), "{r}");
    let activity = line_starting(s, "Last activity: ").unwrap_or_else(|| panic!("{r}"));
    let stamp = &activity["Last activity: ".len()..][..20];
    let when = iso_to_epoch(stamp).unwrap_or_else(|| panic!("not an ISO UTC time: {activity}"));
    assert!((now_epoch() - when).abs() < 120, "last activity {stamp} is not now in UTC");

    // logs -n 100: the last 100 lines of a log that has more.
    let r = p.rasen(&["logs", "-n", "100"]).expect_code(0);
    let shown: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(shown.len(), 100, "logs -n 100 printed {} lines", shown.len());
    let log = p.file(".rasen/rasen.log").unwrap();
    let all: Vec<&str> = log.lines().collect();
    assert!(all.len() > 1000, "the flood should have made a long log");
    assert!(all.windows(100).any(|w| w == shown.as_slice()), "not 100 consecutive log lines");
    assert!(shown.iter().any(|l| l.contains("slow work on t2")), "not the end of the log");

    // logs --follow: the last lines, then new ones as they are written.
    let follower = p.spawn(&["logs", "--follow"]);
    wait_until(SOON, "logs --follow to print the last lines", || {
        follower.stdout_so_far().contains("slow work on t2")
    });
    let seconds_logged = |text: &str| {
        text.lines()
            .filter_map(|l| l.split("slow work on t2: ").nth(1)?.strip_suffix(" s")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let next =
        format!("slow work on t2: {} s", seconds_logged(&p.file(".rasen/rasen.log").unwrap()) + 1);
    wait_until(SOON, &format!("logs --follow to print {next:?}"), || {
        follower.stdout_so_far().contains(&next)
    });
    let seen = follower.stdout_so_far();
    assert_eq!(seen.matches(&next).count(), 1, "a followed line was printed twice:\n{seen}");
    follower.signal(libc::SIGINT);
    let r = follower.wait(SOON);
    assert!([0, 130].contains(&r.code), "logs --follow should end on Ctrl-C\n{r}");

    stop(&p, pid);
}

/// Stopping the daemon: `rasen stop` mid-session returns at once although
/// the agent would sleep ten minutes, leaves no agent process behind and
/// keeps the state for resume.
#[test]
fn stop_ends_the_daemon_and_its_agent_at_once_and_keeps_the_state() {
    // hang: sleep 600, plus a stray child in its group.
    let p = project("stop", 2, &[("SCRIPTED_CODER_t1", "hang,done")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    let agent = hanging_session_under_way(&p, "t1");
    wait_for_agent_recorded(&p, agent);

    let r = stop(&p, pid);
    assert!(r.stdout.contains(&pid.to_string()), "stop should name the PID\n{r}");
    assert_agents_gone(&p, 5);
    assert!(process_group_gone(agent), "agent group {agent} survived the stop");

    let r = p.rasen(&["status"]).expect_code(3);
    assert!(has_line(&r.stdout, "Status: stopped"), "{r}");
    assert_eq!(subtask_status(&p, "t1"), "in_progress", "the interrupted subtask is kept");

    // Nothing left to stop: says so, exit 0.
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("No daemon running"), "{r}");

    // resume finishes the task, starting with the interrupted subtask.
    let r = p.rasen(&["resume"]).expect_code(0);
    assert_resuming(&r, 0, 2, "t1");
    assert_eq!(coder_sessions(&p), ["t1", "t1", "t2"]);
    assert_eq!(subtask_status(&p, "t2"), "completed");
}

/// Stopping the daemon with `rasen stop --force`: SIGKILL to the daemon and
/// its agent's whole group, state kept, and resume carries on.
#[test]
fn stop_force_kills_the_daemon_and_its_agent_group_and_resume_finishes() {
    // hang: sleep 600, plus a stray child in its group.
    let p = project("stop-force", 3, &[("SCRIPTED_CODER_t2", "hang,done")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    let agent = hanging_session_under_way(&p, "t2");
    wait_for_agent_recorded(&p, agent);

    let began = Instant::now();
    let r = p.rasen(&["stop", "--force"]).expect_code(0);
    assert!(began.elapsed() < AT_ONCE, "stop --force took {:?}\n{r}", began.elapsed());
    assert!(process_gone(pid), "daemon {pid} survived stop --force\n{r}");
    assert_agents_gone(&p, 5);
    assert!(process_group_gone(agent), "agent group {agent} survived stop --force");
    assert_eq!(p.file(".rasen/rasen.pid"), None, "{r}");

    // The state is what the last atomic write left: t1 done, t2 in flight.
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.starts_with("Status: stopped"), "{r}");
    assert_eq!(subtask_status(&p, "t1"), "completed");
    assert_eq!(subtask_status(&p, "t2"), "in_progress");

    let r = p.rasen(&["resume"]).expect_code(0);
    assert_resuming(&r, 1, 3, "t2");
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t2", "t3"], "t1 must not be redone");
}

/// Resuming after an interruption: `rasen resume` in the foreground and
/// `rasen resume --background` both continue; completed subtasks are not
/// redone, the interrupted one is retried first, and the plan, commits,
/// attempt history and iteration count are preserved.
#[test]
fn resume_in_foreground_and_background_continues_where_it_stopped() {
    let p = project(
        "auto-resume",
        4,
        &[("SCRIPTED_CODER_t2", "slow:600,done"), ("SCRIPTED_CODER_t3", "slow:600,done")],
    );
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t2");
    stop(&p, pid);
    let t1_commit = p.git(&["log", "--format=%H", "--grep", "^t1: "]);
    assert!(!t1_commit.is_empty(), "t1 committed");

    // Make t3 runnable too: the in-progress t2 must still come first, not
    // the first pending subtask.
    let plan = p.file(".rasen/implementation_plan.json").unwrap();
    assert_eq!(plan.matches(r#""dependencies": ["t2"]"#).count(), 1, "{plan}");
    p.write(
        ".rasen/implementation_plan.json",
        &plan.replace(r#""dependencies": ["t2"]"#, r#""dependencies": []"#),
    );

    // Foreground resume: stopped in turn by `rasen stop` once t3 is under way.
    let fg = p.spawn(&["resume"]);
    let fg_agent = slow_session_under_way(&p, "t3");
    wait_for_agent_recorded(&p, fg_agent);
    let fg_pid = p.daemon_pid().expect("a foreground run writes the PID file too");
    assert_eq!(fg_pid, fg.pid());
    stop(&p, fg_pid);
    let r = fg.wait(SOON);
    assert_eq!(r.code, 143, "a foreground run ended by SIGTERM\n{r}");
    assert_resuming(&r, 1, 4, "t2");
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t2", "t3"]);
    assert_eq!(subtask_status(&p, "t3"), "in_progress");

    // Background resume.
    let (pid2, r) = start_daemon(&p, &["resume", "--background"]);
    assert_resuming(&r, 2, 4, "t3");
    wait_for_completion(&p, pid2);
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t2", "t3", "t3", "t4"]);

    // What gets preserved.
    assert_eq!(p.git(&["log", "--format=%H", "--grep", "^t1: "]), t1_commit);
    let history = p.json(".rasen/attempt_history.json");
    let attempts = get_array(&history, "attempts").unwrap();
    let interrupted: Vec<_> = attempts
        .iter()
        .filter(|a| get_str(a, "outcome") == Some("interrupted"))
        .map(|a| get_str(a, "subtask_id").unwrap())
        .collect();
    assert_eq!(interrupted, ["t2", "t3"], "both interruptions are in the attempt history");
    let status = p.json(".rasen/status.json");
    assert_eq!(get_u64(&status, "iteration"), Some(p.sessions().len() as u64));
    assert_eq!(get_u64(&status, "completed_subtasks"), Some(4));
}

// ---------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------

/// A multi-hour task, in seconds: start, check in while it runs, let it
/// finish, check again.
#[test]
fn short_task_in_the_background_runs_to_completed() {
    let p = project("multi-hour", 3, &[("SCRIPTED_CODER", "slow:1")]);
    init(&p, "Refactor entire authentication system");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);

    // Check in while it works: t2 and t3 still have a second each to go.
    slow_session_under_way(&p, "t1");
    let r = p.rasen(&["status"]).expect_code(0);
    assert!(has_line(&r.stdout, "Status: running"), "{r}");
    for prefix in ["Progress: ", "Total commits: ", "Current subtask: t", "Last activity: "] {
        assert!(line_starting(&r.stdout, prefix).is_some(), "no {prefix:?} line\n{r}");
    }

    let mut last = None;
    wait_until(FINISH, "rasen status to say the task completed", || {
        let r = p.rasen(&["status"]);
        let done = has_line(&r.stdout, "Status: completed");
        last = Some(r);
        done
    });
    let r = last.unwrap().expect_code(3); // LSB: not running
    assert!(process_gone(pid), "the daemon must have exited\n{r}");
    assert!(line_starting(&r.stdout, "Progress: 3/3 subtasks").is_some(), "{r}");
    assert!(has_line(&r.stdout, "Total commits: 3"), "{r}");
    assert_eq!(p.git_commit_count(), 4);
    assert!(!has_line(&r.stdout, &format!("PID: {pid}")), "a finished run shows no PID\n{r}");
    assert_eq!(p.file(".rasen/rasen.pid"), None, "the daemon removes its PID file on exit");
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t3"]);
}

/// An interrupted task: stop before a reboot, resume in a new daemon after.
#[test]
fn interrupted_task_resumes_in_a_new_daemon_and_finishes() {
    let p = project("interrupted", 3, &[("SCRIPTED_CODER_t2", "slow:600,done")]);
    init(&p, "Refactor authentication system");
    let (first, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t2");
    stop(&p, first);

    let (second, r) = start_daemon(&p, &["resume", "--background"]);
    assert_ne!(second, first);
    assert_resuming(&r, 1, 3, "t2");
    let at = |line: &str| r.stdout.lines().position(|l| l.starts_with(line)).unwrap();
    assert!(at("Last working on") < at("Daemon started with PID"), "{r}");
    wait_for_completion(&p, second);
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t2", "t3"], "t1 must not be redone");
}

// ---------------------------------------------------------------------------
// Troubleshooting
// ---------------------------------------------------------------------------

/// A daemon that won't start: one killed with -9 leaves a stale PID file;
/// status says so, stop cleans it up, logs still work.
#[test]
fn stale_pid_file_of_a_killed_daemon_is_reported_and_cleaned_up_by_stop() {
    let p = project("stale", 2, &[("SCRIPTED_CODER_t1", "slow:600")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t1");
    assert!(send_signal(pid, libc::SIGKILL));
    wait_until(SOON, "the killed daemon to be gone", || process_gone(pid));
    assert_eq!(p.daemon_pid(), Some(pid), "kill -9 leaves the PID file behind");

    let r = p.rasen(&["status"]).expect_code(1);
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("Status: crashed"), "{r}");
    assert!(first.contains("stale PID file"), "{r}");
    assert!(first.contains(&format!("process {pid} is gone")), "{r}");

    let r = p.rasen(&["logs", "-n", "50"]).expect_code(0);
    let n = r.stdout.lines().count();
    assert!((1..=50).contains(&n), "{n} lines\n{r}");
    assert!(r.stdout.contains("slow work on t1"), "the last lines of the log\n{r}");

    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains("No daemon running"), "{r}");
    assert!(r.stdout.contains("stale PID file"), "{r}");
    assert_eq!(p.file(".rasen/rasen.pid"), None, "stop removes the stale PID file\n{r}");

    let r = p.rasen(&["status"]).expect_code(3);
    assert!(r.stdout.starts_with("Status: crashed"), "{r}");
    assert!(!r.stdout.contains("stale PID file"), "{r}");

    // And the daemon starts again.
    let (again, _) = start_daemon(&p, &["run", "--background"]);
    assert_ne!(again, pid);
    wait_until(SOON, "the new daemon to start a session", || p.sessions().len() >= 3);
    stop(&p, again);
}

/// A daemon that stopped unexpectedly: after kill -9, the log's tail shows
/// what happened and `resume --background` finishes without redoing
/// anything.
#[test]
fn daemon_killed_with_sigkill_is_resumed_without_redoing_completed_subtasks() {
    let p = project("sigkill", 3, &[("SCRIPTED_CODER_t2", "slow:600,done")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t2");
    assert!(send_signal(pid, libc::SIGKILL));
    wait_until(SOON, "the killed daemon to be gone", || process_gone(pid));

    let r = p.rasen(&["logs"]).expect_code(0); // `rasen logs | tail -50`
    let tail: Vec<&str> = r.stdout.lines().rev().take(50).collect();
    assert!(tail.iter().any(|l| l.contains("coder started")), "{r}");

    // Straight to resume, stale PID file and all.
    let (second, r) = start_daemon(&p, &["resume", "--background"]);
    assert_ne!(second, pid);
    assert_resuming(&r, 1, 3, "t2");
    wait_for_completion(&p, second);
    assert_eq!(coder_sessions(&p), ["t1", "t2", "t2", "t3"], "t1 must not be redone");
    assert_eq!(subtask_status(&p, "t3"), "completed");
}

/// A daemon that seems impossible to stop: the PID file removed by hand
/// while the daemon runs does not make it invisible: the run lock still
/// says it runs, status shows it, another start is refused, and stop still
/// stops it.
#[test]
fn pid_file_removed_by_hand_does_not_hide_the_running_daemon() {
    let p = project("rm-pid", 2, &[("SCRIPTED_CODER_t1", "slow:600")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    let agent = slow_session_under_way(&p, "t1");
    wait_for_agent_recorded(&p, agent);
    std::fs::remove_file(p.path(".rasen/rasen.pid")).unwrap();

    let r = p.rasen(&["status"]).expect_code(0);
    assert!(has_line(&r.stdout, "Status: running"), "{r}");
    assert!(has_line(&r.stdout, &format!("PID: {pid}")), "{r}");

    let r = p.rasen(&["run", "--background"]).expect_code(1);
    assert!(r.stderr.contains(&format!("already running with PID {pid}")), "{r}");
    assert_eq!(rasen_processes_in(p.dir()), [pid], "no second daemon");

    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(has_line(&r.stdout, "✅ Daemon stopped successfully"), "{r}");
    assert!(process_gone(pid), "{r}");
    assert_agents_gone(&p, 5);
    let r = p.rasen(&["status"]).expect_code(3);
    assert!(has_line(&r.stdout, "Status: stopped"), "{r}");
}

// ---------------------------------------------------------------------------
// Edges of resume and run
// ---------------------------------------------------------------------------

#[test]
fn resume_of_a_completed_task_says_so_and_runs_nothing() {
    let p = project("resume-done", 2, &[]);
    init(&p, "Implement user authentication");
    p.rasen(&["run"]).expect_code(0);
    let sessions = p.sessions().len();

    for args in [&["resume"][..], &["resume", "--background"]] {
        let r = p.rasen(args).expect_code(0);
        assert!(r.stdout.contains("already completed"), "{r}");
        assert!(r.stdout.contains("2/2"), "{r}");
        assert!(!r.stdout.contains("Daemon started"), "{r}");
    }
    assert_eq!(p.sessions().len(), sessions, "no session may run");
    assert_eq!(p.file(".rasen/rasen.pid"), None);
}

#[test]
fn resume_without_a_task_says_there_is_nothing_to_resume() {
    let p = project("resume-nothing", 2, &[]);
    for args in [&["resume"][..], &["resume", "--background"]] {
        let r = p.rasen(args).expect_code(1);
        assert_eq!(
            r.stderr.trim_end(),
            "rasen: error: No task to resume. Use 'rasen init' to start a new task.",
            "{r}"
        );
        assert_eq!(r.stdout, "", "{r}");
    }
    assert!(p.sessions().is_empty());
    assert!(!p.path(".rasen/rasen.pid").exists());
}

#[test]
fn resume_before_any_plan_runs_the_initializer_first() {
    let p = project("resume-no-plan", 2, &[]);
    init(&p, "Implement user authentication");
    let (pid, r) = start_daemon(&p, &["resume", "--background"]);
    assert!(r.stdout.contains("plan was never created"), "{r}");
    assert!(!r.stdout.contains("Resuming task"), "{r}");
    wait_for_completion(&p, pid);
    let roles: Vec<String> = p.sessions().into_iter().map(|s| s.role).collect();
    assert_eq!(roles, ["initializer", "coder", "coder"]);
}

#[test]
fn second_start_is_refused_while_a_daemon_runs() {
    let p = project("refuse", 2, &[("SCRIPTED_CODER_t1", "slow:600")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    slow_session_under_way(&p, "t1");

    for args in [&["run", "--background"][..], &["resume", "--background"], &["run"], &["resume"]] {
        let r = p.rasen(args).expect_code(1);
        assert!(r.stderr.contains(&format!("already running with PID {pid}")), "{args:?}\n{r}");
        assert!(!r.stdout.contains("Daemon started"), "{args:?}\n{r}");
        assert_eq!(p.daemon_pid(), Some(pid), "the PID file must be left alone");
        assert_eq!(rasen_processes_in(p.dir()), [pid], "no second orchestrator");
    }
    assert_eq!(p.sessions().len(), 2, "only the first daemon runs sessions");
    stop(&p, pid);
}

// ---------------------------------------------------------------------------
// An agent left behind by a daemon killed with -9
// ---------------------------------------------------------------------------

/// `kill -9` of the daemon orphans its agent (it is in its own process
/// group); `rasen stop` then stops that agent too, since "stop" means
/// nothing of this project keeps running.
#[test]
fn stop_after_kill_9_also_stops_the_agent_left_behind() {
    let p = project("orphan-stop", 2, &[("SCRIPTED_CODER_t1", "slow:600")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    let agent = slow_session_under_way(&p, "t1");
    wait_for_agent_recorded(&p, agent);
    assert!(send_signal(pid, libc::SIGKILL));
    wait_until(SOON, "the killed daemon to be gone", || process_gone(pid));
    assert!(!process_gone(agent), "the agent should outlive a kill -9 of the daemon");

    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains(&format!("Stopped agent {agent} and its processes")), "{r}");
    assert_agents_gone(&p, 5);
    p.rasen(&["stop"]).expect_code(0); // nothing left: idempotent
}

/// `resume` after a `kill -9` stops the orphaned agent before starting its
/// own, so two agents never work in the same project at once.
#[test]
fn resume_after_kill_9_stops_the_agent_left_behind_first() {
    let p = project("orphan-resume", 2, &[("SCRIPTED_CODER_t1", "slow:600,done")]);
    init(&p, "Implement user authentication");
    let (pid, _) = start_daemon(&p, &["run", "--background"]);
    let agent = slow_session_under_way(&p, "t1");
    wait_for_agent_recorded(&p, agent);
    assert!(send_signal(pid, libc::SIGKILL));
    wait_until(SOON, "the killed daemon to be gone", || process_gone(pid));

    let (second, _) = start_daemon(&p, &["resume", "--background"]);
    wait_until(SOON, "the orphaned agent to be stopped", || process_gone(agent));
    wait_for_completion(&p, second);
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(
        log.contains(&format!("stopped agent {agent} and its processes, left behind")),
        "{log}"
    );
    assert_eq!(coder_sessions(&p), ["t1", "t1", "t2"]);
}
