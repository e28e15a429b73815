//! The crash test: a long task run as a daemon, `kill -9`ed at many
//! random moments (while it starts, plans, codes, saves), with `rasen
//! resume --background` after each kill, until the task completes; then
//! what no crash may break. `RASEN_CRASH_KILLS` sets the number of kills
//! (default 100; `make soak` asks for more) and `RASEN_CRASH_SEED` the seed
//! of the moments (default: drawn from the clock); both are printed, and
//! the same seed gives the same moments (the machine's timing still
//! decides what runs at each one).
//!
//! Checked after every kill: every state file parses, status.json's
//! iteration never goes back, and no subtask the plan has completed gets
//! another session. At the end: every subtask completed, every session
//! with an iteration of its own, every completed subtask with its records,
//! no temp file left in `.rasen/`, no git lock left by a killed agent's
//! git (rasen removes them itself at the next start), and no agent process
//! alive after `rasen stop`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::*;
use crate::run_support::*;

const DEFAULT_KILLS: u64 = 100;

/// The longest time from starting `resume --background` to the kill.
/// Sessions last up to about 0.25 s, so most kills land in a session or in
/// the saves around it.
const MAX_KILL_DELAY_MS: u64 = 450;

/// One kill in four comes within this time of the start, most of them
/// before the daemon is ready (stopping an orphan, loading the state).
const EARLY_KILL_DELAY_MS: u64 = 80;

/// The coder sessions of subtask tI, by I modulo 5: the first session of
/// a subtask hangs until the daemon is killed (an orphan that the next
/// `resume` must stop), or fails (a failure on record before the success),
/// or the subtask is done at once (so that more kills land in rasen's own
/// bookkeeping), or it works 0.2 s before committing.
const CODER_BEHAVIOURS: [&str; 5] =
    ["hang,work:0.2", "fail,work:0.2", "done", "work:0.2", "work:0.2"];

/// splitmix64, as in the fuzzer (src/fuzz/mod.rs).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?}: not a whole number")))
}

fn seed_from_clock() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Rng(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64() >> 16
}

/// The crash run: the project, the moments, and what was seen.
struct CrashRun {
    p: Project,
    rng: Rng,
    seed: u64,
    subtasks: u64,
    daemon: Option<i32>,
    iteration: u64,
    /// The phase status.json named at each kill ("starting" before the
    /// daemon was ready).
    phases: BTreeMap<String, u64>,
    kills: u64,
    /// Each subtask the plan said was completed after a kill: the first
    /// such kill, and how many sessions had started by then.
    completed_at: BTreeMap<String, (u64, usize)>,
    /// Sessions already checked against `completed_at`.
    sessions_checked: usize,
    completed_when_the_kills_ended: usize,
    started: Instant,
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_redoes_nothing() {
    let kills_wanted = env_number("RASEN_CRASH_KILLS").unwrap_or(DEFAULT_KILLS);
    let seed = env_number("RASEN_CRASH_SEED").unwrap_or_else(seed_from_clock);
    eprintln!("crash test: {kills_wanted} kills, seed {seed} (RASEN_CRASH_SEED={seed} replays it)");
    let mut run = CrashRun::new(kills_wanted, seed);
    let mut resumes = 0;
    while run.kills < kills_wanted {
        resumes += 1;
        assert!(resumes <= 2 * kills_wanted, "{resumes} resumes for {} kills", run.kills);
        if !run.resume_and_kill() {
            break;
        }
        run.check_after_kill();
    }
    run.completed_when_the_kills_ended = run.completed_subtasks().len();
    assert!(
        run.kills >= kills_wanted,
        "seed {seed}: the task completed after only {} kills; the plan is too short",
        run.kills
    );
    run.resume_to_the_end();
    run.check_at_the_end();
    run.print_figures();
}

impl CrashRun {
    /// A project whose initializer plans as many subtasks as there will be
    /// kills (about a third get done under kills here), in a chain
    /// (t2 needs t1…), slowly twice (two planning sessions that each
    /// take a second, so the first kills land in planning), and whose
    /// coders do [`CODER_BEHAVIOURS`].
    fn new(kills: u64, seed: u64) -> CrashRun {
        let subtasks = kills.max(10);
        let mut p = project("crash");
        p.set_config("agent.stop_grace_seconds", "1")
            .set_config("orchestrator.max_iterations", "1000000")
            .env("SCRIPTED_SUBTASKS", &subtasks.to_string())
            .env("SCRIPTED_PLAN", "slow:1,slow:1,valid");
        for i in 1..=subtasks {
            p.env(&format!("SCRIPTED_CODER_t{i}"), CODER_BEHAVIOURS[i as usize % 5]);
        }
        CrashRun {
            p,
            rng: Rng(seed),
            seed,
            subtasks,
            daemon: None,
            iteration: 0,
            phases: BTreeMap::new(),
            kills: 0,
            completed_at: BTreeMap::new(),
            sessions_checked: 0,
            completed_when_the_kills_ended: 0,
            started: Instant::now(),
        }
    }

    /// `resume --background`, then `kill -9` of its daemon at a random
    /// moment; false when there was nothing left to resume.
    fn resume_and_kill(&mut self) -> bool {
        let most = if self.rng.below(4) == 0 { EARLY_KILL_DELAY_MS } else { MAX_KILL_DELAY_MS };
        let delay = Duration::from_millis(self.rng.below(most + 1));
        let launched = Instant::now();
        let launcher = self.p.spawn(&["resume", "--background"]);
        let Some(daemon) = self.wait_for_new_daemon(&launcher) else {
            // Nothing to resume, or a run that ended by itself before its
            // PID could be read (a stalled one): no kill this time.
            let r = launcher.wait(60);
            assert!(r.code == 0, "{}\n{r}", self.context());
            return !r.stdout.contains("Task already completed");
        };
        let until = launched + delay;
        while Instant::now() < until && !process_gone(daemon) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let phase = self.phase_now(&launcher);
        // A daemon that ended its run by itself first is not a kill.
        if !process_gone(daemon) && send_signal(daemon, libc::SIGKILL) {
            *self.phases.entry(phase).or_default() += 1;
            self.kills += 1;
        }
        let r = launcher.wait(60);
        // 0: killed once ready; 1: killed while starting. Never 2: a
        // state file that does not parse.
        assert!(r.code == 0 || r.code == 1, "{}\n{r}", self.context());
        if r.code == 1 {
            assert!(r.stderr.contains("during startup"), "{}\n{r}", self.context());
        } else {
            self.check_iteration("after resume");
        }
        wait_until(30, "the killed daemon to be gone", || process_gone(daemon));
        true
    }

    /// The PID of the daemon this launcher starts, once it is in the PID
    /// file; None when the launcher ends without starting one.
    fn wait_for_new_daemon(&mut self, launcher: &Spawned) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pid = self.p.daemon_pid().filter(|&pid| Some(pid) != self.daemon);
            if let Some(pid) = pid.filter(|&pid| !process_gone(pid)) {
                self.daemon = Some(pid);
                return Some(pid);
            }
            if process_gone(launcher.pid()) {
                return None;
            }
            assert!(Instant::now() < deadline, "no daemon after 60 s\n{}", self.context());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// "starting" while the launcher waits for the daemon to be ready,
    /// else the phase in status.json ("none" between sessions).
    fn phase_now(&self, launcher: &Spawned) -> String {
        if !process_gone(launcher.pid()) {
            return "starting".to_string();
        }
        let status = self.p.file(".rasen/status.json").unwrap_or_default();
        let phase =
            miniserde::json::from_str(&status).ok().and_then(|s: miniserde::json::Value| {
                get_str(&s, "phase").map(|p| p.split(':').next().unwrap_or(p).to_string())
            });
        phase.unwrap_or_else(|| "none".to_string())
    }

    fn check_after_kill(&mut self) {
        self.check_state_files_parse();
        self.check_iteration("after a kill");
        self.check_no_completed_subtask_started_again();
        let sessions = self.p.sessions().len();
        for id in self.completed_subtasks() {
            self.completed_at.entry(id).or_insert((self.kills, sessions));
        }
    }

    /// Each state file there is parses as JSON of the right shape; rasen's
    /// own loader checks them all again at the next resume (exit 2 if not).
    /// While planning is unfinished the plan is the initializer's, which
    /// may be writing it still (the next resume stops it and sets the
    /// draft aside).
    fn check_state_files_parse(&self) {
        let context = self.context();
        let planning = get_str(&status(&self.p), "phase") == Some("Initializer");
        for (file, field) in [
            ("implementation_plan.json", "subtasks"),
            ("attempt_history.json", "attempts"),
            ("good_commits.json", "commits"),
            ("status.json", "iteration"),
        ] {
            let path = format!(".rasen/{file}");
            let Some(text) = self.p.file(&path) else { continue };
            if planning && file == "implementation_plan.json" {
                continue;
            }
            let parsed = miniserde::json::from_str::<miniserde::json::Value>(&text).ok();
            assert!(
                parsed.as_ref().and_then(|v| get(v, field)).is_some(),
                "{file} does not parse (or has no {field}):\n{text}\n{context}"
            );
        }
    }

    /// status.json's iteration is never lower than the last one read.
    fn check_iteration(&mut self, when: &str) {
        let Some(iteration) = get_u64(&status(&self.p), "iteration") else {
            panic!("status.json has no iteration {when}\n{}", self.context());
        };
        assert!(
            iteration >= self.iteration,
            "iteration went back from {} to {iteration} {when}\n{}",
            self.iteration,
            self.context()
        );
        self.iteration = iteration;
    }

    fn completed_subtasks(&self) -> BTreeSet<String> {
        let planning = get_str(&status(&self.p), "phase") == Some("Initializer");
        let Some(text) = self.p.file(".rasen/implementation_plan.json").filter(|_| !planning)
        else {
            return BTreeSet::new();
        };
        let plan = parse_json(&text, "implementation_plan.json");
        let subtasks = get_array(&plan, "subtasks").unwrap_or_default();
        subtasks
            .iter()
            .filter(|s| get_str(s, "status") == Some("completed"))
            .filter_map(|s| get_str(s, "id").map(str::to_string))
            .collect()
    }

    /// No session started after a kill is on a subtask that the plan said
    /// was completed at that kill.
    fn check_no_completed_subtask_started_again(&mut self) {
        let sessions = self.p.sessions();
        for (index, s) in sessions.iter().enumerate().skip(self.sessions_checked) {
            let Some(&(kill, started)) = self.completed_at.get(&s.subtask) else { continue };
            assert!(
                s.role != "coder" || index < started,
                "subtask {} was completed at kill {kill} and got another session: {s:?}\n{}",
                s.subtask,
                self.context()
            );
        }
        self.sessions_checked = sessions.len();
    }

    /// The last resume, with quick sessions (the agent reads its behaviour
    /// when it starts), waited for until the task has completed.
    fn resume_to_the_end(&mut self) {
        for i in 1..=self.subtasks {
            self.p.env(&format!("SCRIPTED_CODER_t{i}"), "done");
        }
        for _ in 0..3 {
            let r = self.p.rasen(&["resume", "--background"]);
            assert!(r.code == 0, "{r}\n{}", self.context());
            let daemon = self.p.daemon_pid();
            wait_until(120, "the run to end after the last resume", || {
                daemon.map_or(true, process_gone)
                    && get_str(&status(&self.p), "status").is_some_and(|s| s != "running")
            });
            if get_str(&status(&self.p), "status") == Some("completed") {
                break;
            }
        }
        let s = status(&self.p);
        assert_eq!(
            get_str(&s, "status"),
            Some("completed"),
            "{}\n{}",
            self.log_tail(),
            self.context()
        );
        self.check_state_files_parse();
        self.check_iteration("at the end");
        self.check_no_completed_subtask_started_again();
    }

    fn check_at_the_end(&self) {
        let all: BTreeSet<String> = (1..=self.subtasks).map(|i| format!("t{i}")).collect();
        assert_eq!(self.completed_subtasks(), all, "{}", self.context());
        self.check_every_session_has_its_own_iteration();
        self.assert_none("records missing", self.missing_records());
        self.assert_none("temp files left", self.temp_files_left());
        self.assert_none("git locks left", self.git_locks_left());
        self.p.rasen(&["stop"]).expect_code(0);
        self.assert_none("agents alive after stop", self.agents_alive_after_stop());
    }

    /// The iterations the agent was given only grow: a session that was
    /// started and killed still counted.
    fn check_every_session_has_its_own_iteration(&self) {
        let iterations: Vec<u64> =
            self.p.sessions().iter().map(|s| s.iteration.parse().unwrap_or(0)).collect();
        for pair in iterations.windows(2) {
            assert!(pair[0] < pair[1], "iterations {iterations:?} do not grow\n{}", self.context());
        }
    }

    fn assert_none(&self, what: &str, problems: Vec<String>) {
        let report = format!("{what}: {}:\n  {}", problems.len(), problems.join("\n  "));
        assert!(problems.is_empty(), "{report}\n{}", self.context());
    }

    /// git's lock files: every later session would fail while one is left.
    fn git_locks_left(&self) -> Vec<String> {
        let locks = git_lock_files(&self.p.path(".git"));
        locks.iter().map(|l| format!("{} left behind", l.display())).collect()
    }

    /// Completed subtasks without a success in attempt_history.json or a
    /// good commit in good_commits.json.
    fn missing_records(&self) -> Vec<String> {
        let succeeded: BTreeSet<String> = if self.p.file(".rasen/attempt_history.json").is_some() {
            outcomes(&self.p).into_iter().filter(|(_, o)| o == "success").map(|(s, _)| s).collect()
        } else {
            BTreeSet::new()
        };
        let good: BTreeSet<String> = good_commits(&self.p).into_iter().map(|(_, s)| s).collect();
        let mut missing = Vec::new();
        for id in self.completed_subtasks() {
            if !succeeded.contains(&id) {
                missing
                    .push(format!("{id} is completed without a success in attempt_history.json"));
            }
            if !good.contains(&id) {
                missing.push(format!("{id} is completed without a good commit"));
            }
        }
        missing
    }

    fn temp_files_left(&self) -> Vec<String> {
        let entries = std::fs::read_dir(self.p.path(".rasen")).unwrap();
        let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        names
            .filter(|n| n.starts_with('.') && n.contains(".tmp."))
            .map(|n| format!("temp file .rasen/{n} left behind"))
            .collect()
    }

    /// Every agent process, after a grace for the ones `stop` signalled.
    fn agents_alive_after_stop(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = || -> Vec<i32> {
            self.p.agent_pids().into_iter().filter(|&pid| !process_gone(pid)).collect()
        };
        while !alive().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        alive()
            .into_iter()
            .map(|pid| format!("agent process {pid} survived `rasen stop`"))
            .collect()
    }

    fn log_tail(&self) -> String {
        let log = self.p.file(".rasen/rasen.log").unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// What a failure message adds: the seed, the kills so far, where.
    fn context(&self) -> String {
        format!(
            "(crash test: seed {}, after {} kills; RASEN_KEEP_TEST_DIRS=1 keeps {})",
            self.seed,
            self.kills,
            self.p.dir().display()
        )
    }

    fn print_figures(&self) {
        let phases: Vec<String> = self.phases.iter().map(|(p, n)| format!("{p} {n}")).collect();
        eprintln!(
            "crash test: {} kills survived ({}), {}/{} subtasks completed under kills, {} \
             sessions, {:.0} s, seed {}",
            self.kills,
            phases.join(", "),
            self.completed_when_the_kills_ended,
            self.subtasks,
            self.p.sessions().len(),
            self.started.elapsed().as_secs_f64(),
            self.seed
        );
    }
}

/// The `*.lock` files in `dir` and below (a git directory: `index.lock`,
/// `HEAD.lock`, `refs/heads/main.lock`…), objects aside.
fn git_lock_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut locks = Vec::new();
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        if path.is_dir() && !path.ends_with("objects") {
            locks.extend(git_lock_files(&path));
        } else if path.extension().is_some_and(|e| e == "lock") {
            locks.push(path);
        }
    }
    locks
}
