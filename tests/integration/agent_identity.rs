//! Agent identity: a process left behind by a killed run is signalled only
//! when rasen can prove it is its agent's — it carries the session's token
//! (`RASEN_SESSION_TOKEN`) in its environment — never because status.json
//! names its PID. Each test plants what a crash, a reboot or a hostile
//! operator leaves (a status.json, processes with or without the token),
//! runs the real binary, and checks who survived. Every process a test
//! starts is killed by its session or its token when the test ends.

use std::process::Stdio;

use crate::harness::*;

/// How long a test waits for something that takes well under a second.
const SOON: u64 = 20;

/// A token no other test (or other test run) uses: the test's PID, a
/// counter and the clock, as 32 hex digits like rasen's own.
fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:08x}{:08x}{:016x}", std::process::id(), n, nanos)
}

/// `setsid sh -c SCRIPT`, started by the test in a session of its own, with
/// `RASEN_SESSION_TOKEN=token` in its environment when a token is given.
/// Dropping it SIGKILLs its session and every process carrying its token.
struct Planted {
    session: i32,
    token: Option<String>,
    _leader: KillOnDrop,
}

impl Planted {
    /// The repro: `setsid sh -c 'sleep 1001 & sleep 1002'`.
    fn sleepers(p: &Project, token: Option<&str>) -> Planted {
        Planted::start(p, token, "sleep 1001 & exec sleep 1002", &["sleep 1001", "sleep 1002"])
    }

    fn start(p: &Project, token: Option<&str>, script: &str, expect: &[&str]) -> Planted {
        let mut cmd = p.command("setsid");
        cmd.args(["sh", "-c", script]).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(token) = token {
            cmd.env("RASEN_SESSION_TOKEN", token);
        }
        let child = cmd.spawn().expect("cannot start setsid sh");
        let session = child.id() as i32;
        let planted =
            Planted { session, token: token.map(str::to_string), _leader: KillOnDrop(child) };
        wait_until(SOON, &format!("{expect:?} to run"), || {
            let running = planted.commands();
            expect.iter().all(|e| running.iter().any(|c| c == e))
        });
        planted
    }

    /// The command lines of its live processes: those of its session, and
    /// those elsewhere that carry its token.
    fn commands(&self) -> Vec<String> {
        self.pids().iter().filter_map(|&pid| cmdline(pid)).collect()
    }

    fn pids(&self) -> Vec<i32> {
        let mut pids = process_group_members(self.session);
        if let Some(token) = &self.token {
            for pid in processes_carrying(token) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    fn all_gone(&self) -> bool {
        self.pids().is_empty()
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        for pid in self.pids() {
            send_signal(pid, libc::SIGKILL);
        }
    }
}

/// The command line of a live process, its arguments joined by spaces.
fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    Some(words.join(" "))
}

/// Live processes whose environment holds `RASEN_SESSION_TOKEN=token`.
fn processes_carrying(token: &str) -> Vec<i32> {
    let entry = format!("RASEN_SESSION_TOKEN={token}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| !process_gone(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

/// Makes status.json say a run was going on (as a daemon killed with -9
/// leaves it) with this agent PID and session token, each `None` for null.
fn plant_status(p: &Project, agent_pid: Option<i32>, token: Option<&str>) {
    let text = p.file(".rasen/status.json").expect("status.json after init");
    let agent = agent_pid.map_or("null".to_string(), |pid| pid.to_string());
    let token = token.map_or("null".to_string(), |t| format!("\"{t}\""));
    let mut planted = String::new();
    for line in text.lines() {
        if line.starts_with("  \"status\":") {
            planted.push_str("  \"status\": \"running\",\n");
        } else if line.starts_with("  \"agent_pid\":") {
            planted.push_str(&format!("  \"agent_pid\": {agent},\n"));
            planted.push_str(&format!("  \"session_token\": {token},\n"));
        } else if !line.starts_with("  \"session_token\":") {
            planted.push_str(line);
            planted.push('\n');
        }
    }
    assert!(planted.contains("session_token"), "{text}");
    p.write(".rasen/status.json", &planted);
}

fn init(p: &Project) {
    p.rasen(&["init", "--task", "Implement user authentication"]).expect_code(0);
}

fn log_text(p: &Project) -> String {
    p.file(".rasen/rasen.log").unwrap_or_default()
}

/// The repro: an unrelated session whose leader's PID is planted
/// as `agent_pid` (a reboot, a reused PID, a hostile status.json) survives
/// `rasen stop` and `rasen resume`, which say what they found.
#[test]
fn an_agent_pid_without_the_session_token_is_never_signalled() {
    let p = Project::new("identity-planted");
    init(&p);
    let unrelated = Planted::sleepers(&p, None);
    let pid = unrelated.session;
    let note = format!(
        "agent_pid {pid} in status.json is not rasen's agent (no session token): left alone"
    );

    plant_status(&p, Some(pid), None);
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains(&note), "{r}");
    assert!(!r.stdout.contains("Stopped agent"), "{r}");
    assert_eq!(unrelated.commands().len(), 2, "`rasen stop` signalled an unrelated session\n{r}");
    let r = p.rasen(&["status"]);
    assert!(!r.stdout.contains("Orphaned agent"), "{r}");

    // A token in the file, but the PID now belongs to a process without it.
    plant_status(&p, Some(pid), Some(&unique_token()));
    let r = p.rasen(&["stop", "--force"]).expect_code(0);
    assert!(r.stdout.contains(&note), "{r}");
    assert_eq!(unrelated.commands().len(), 2, "`rasen stop --force` signalled it\n{r}");

    plant_status(&p, Some(pid), Some(&unique_token()));
    let r = p.rasen(&["resume"]).expect_code(0);
    assert!(log_text(&p).contains(&note), "{r}\n{}", log_text(&p));
    assert!(!log_text(&p).contains("stopped agent"), "{}", log_text(&p));
    assert_eq!(unrelated.commands().len(), 2, "`rasen resume` signalled an unrelated session");
}

/// A daemon killed with -9 between saving the session token and saving
/// the agent's PID: status.json has the token and no PID, the agent and
/// its children run on (one moved to a session of its own, one dropped
/// the variable but stayed in the agent's session). `status` shows them
/// and `stop` ends every one of them.
#[test]
fn stop_ends_an_orphaned_agent_whose_pid_was_never_saved() {
    let p = Project::new("identity-window");
    init(&p);
    let token = unique_token();
    let bystander = Planted::sleepers(&p, None);
    let orphan = Planted::start(
        &p,
        Some(&token),
        "sleep 1001 & setsid sleep 1003 & env -u RASEN_SESSION_TOKEN sleep 1004 & exec sleep 1002",
        &["sleep 1001", "sleep 1002", "sleep 1003", "sleep 1004"],
    );
    assert_eq!(processes_carrying(&token).len(), 3, "sleep 1004 dropped the token");
    plant_status(&p, None, Some(&token));

    let r = p.rasen(&["status"]);
    let shown =
        format!("Orphaned agent: PID {} and 3 more processes still running", orphan.session);
    assert!(r.stdout.contains(&shown), "{r}");
    let r = p.rasen(&["status", "--json"]);
    let v = parse_json(&r.stdout, "status --json");
    let listed = get_array(&v, "orphaned_agent_pids").expect("orphaned_agent_pids");
    assert_eq!(listed.len(), 4, "{r}");

    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(
        r.stdout.contains(&format!("Stopped agent {} and its processes", orphan.session)),
        "{r}"
    );
    wait_until(SOON, "every process with the token to be gone", || orphan.all_gone());
    assert_eq!(bystander.commands().len(), 2, "a process without the token was signalled\n{r}");
    let r = p.rasen(&["status"]);
    assert!(!r.stdout.contains("Orphaned agent"), "{r}");
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(!r.stdout.contains("Stopped agent"), "nothing left: idempotent\n{r}");
}

/// `resume` finds an orphaned agent by its token too, and stops it before
/// its own first session.
#[test]
fn resume_stops_an_orphaned_agent_whose_pid_was_never_saved() {
    let p = Project::new("identity-window-resume");
    init(&p);
    let token = unique_token();
    let orphan = Planted::sleepers(&p, Some(&token));
    plant_status(&p, None, Some(&token));

    p.rasen(&["resume"]).expect_code(0);
    assert!(orphan.all_gone(), "resume left the orphaned agent running\n{}", log_text(&p));
    let log = log_text(&p);
    let stopped = format!("stopped agent {} and its processes, left behind", orphan.session);
    assert!(log.contains(&stopped), "{log}");
    let stopped_at = log.find(&stopped).unwrap_or(usize::MAX);
    let first_session = log.find("session 1:").unwrap_or(0);
    assert!(stopped_at < first_session, "stopped before the first session\n{log}");
}

/// A real daemon gives its agent the token and records it: after `kill
/// -9` of the daemon, `status` names the agent left behind and `stop`
/// ends it.
#[test]
fn status_shows_the_agent_a_killed_daemon_left_behind() {
    let mut p = Project::new("identity-status");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER", "hang");
    init(&p);
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    let agent = wait_for_hanging_coder(&p);
    let token = wait_for_recorded_token(&p, agent);
    assert!(processes_carrying(&token).contains(&agent), "the agent was not given its token");
    assert!(send_signal(daemon, libc::SIGKILL));
    wait_until(SOON, "the killed daemon to be gone", || process_gone(daemon));

    let r = p.rasen(&["status"]);
    let shown = format!("Orphaned agent: PID {agent} and 1 more process still running");
    assert!(r.stdout.contains(&shown), "{r}");
    let r = p.rasen(&["stop"]).expect_code(0);
    assert!(r.stdout.contains(&format!("Stopped agent {agent} and its processes")), "{r}");
    wait_until(SOON, "the agent's processes to be gone", || processes_carrying(&token).is_empty());
    let r = p.rasen(&["status", "--json"]);
    let v = parse_json(&r.stdout, "status --json");
    assert_eq!(get_array(&v, "orphaned_agent_pids").map(<[_]>::len), Some(0), "{r}");
}

/// `stop --force` kills the agent the token proves, not the PID that
/// status.json names: here a planted one, while the daemon is frozen
/// (SIGSTOP) so that it cannot rewrite the file.
#[test]
fn stop_force_kills_the_agent_by_its_token_not_by_the_recorded_pid() {
    let mut p = Project::new("identity-force");
    p.env("SCRIPTED_SUBTASKS", "2").env("SCRIPTED_CODER", "hang");
    init(&p);
    p.rasen(&["run", "--background"]).expect_code(0);
    let daemon = p.daemon_pid().expect("a PID file");
    let agent = wait_for_hanging_coder(&p);
    let token = wait_for_recorded_token(&p, agent);
    assert!(send_signal(daemon, libc::SIGSTOP));
    let unrelated = Planted::sleepers(&p, None);
    plant_status(&p, Some(unrelated.session), Some(&token));

    let r = p.rasen(&["stop", "--force"]).expect_code(0);
    let note = format!(
        "agent_pid {} in status.json is not rasen's agent (no session token): left alone",
        unrelated.session
    );
    assert!(r.stdout.contains(&note), "{r}");
    wait_until(SOON, "the real agent's processes to be gone", || {
        processes_carrying(&token).is_empty()
    });
    assert_eq!(unrelated.commands().len(), 2, "`stop --force` signalled the planted PID\n{r}");
}

/// Waits until the first coder session, told `hang`, has said so, started
/// its stray child and become `sleep 600`, so that it writes nothing more
/// (it would die of SIGPIPE once its reader is killed); returns its PID.
fn wait_for_hanging_coder(p: &Project) -> i32 {
    let coder = || p.sessions().into_iter().find(|s| s.role == "coder").map(|s| s.pid);
    wait_until(SOON * 2, "a coder session", || coder().is_some());
    let agent = coder().unwrap_or_default();
    wait_until(SOON, "the coder to hang in `sleep 600`", || {
        cmdline(agent).as_deref() == Some("sleep 600")
    });
    agent
}

/// Waits until status.json records `agent` and a session token; returns it.
fn wait_for_recorded_token(p: &Project, agent: i32) -> String {
    let mut token = String::new();
    wait_until(SOON, &format!("status.json to record agent {agent} and its token"), || {
        let Some(v) = p.file(".rasen/status.json").and_then(|t| miniserde::json::from_str(&t).ok())
        else {
            return false;
        };
        token = get_str(&v, "session_token").unwrap_or_default().to_string();
        get_u64(&v, "agent_pid") == Some(agent as u64) && !token.is_empty()
    });
    token
}
