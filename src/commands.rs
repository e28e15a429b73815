//! One function per command: each checks what it needs, does its one
//! thing by calling the module that owns it, and returns the exit code.
//! Output for people goes to stdout here; errors are returned, never
//! printed, so `main` prints each once.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::agent;
use crate::clock;
use crate::config::DEFAULT_CONFIG_YAML;
use crate::daemon;
use crate::error::{Error, Result};
use crate::git;
use crate::history::{AttemptHistory, GoodCommits};
use crate::lock::{self, Liveness, RunLock};
use crate::logger;
use crate::logs;
use crate::plan::{self, Plan};
use crate::project::Project;
use crate::run::{self, Run, RunOptions};
use crate::signals;
use crate::status::{self, EndReason, StatusFile};
use crate::store;
use crate::{identity, process, stop};

/// `.rasen/.gitignore`: everything in `.rasen/` is rasen's private state
/// (it may quote agent output, which may hold secrets), and none of it
/// belongs in git, as the coder prompt says. The file itself is not
/// ignored, so that `git clean -fX` keeps the directory, and the run lock
/// on it.
const RASEN_GITIGNORE: &str = "\
# Written by rasen. Everything in .rasen/ is rasen's private state: it may
# quote agent output, which may hold secrets. None of it belongs in git;
# to keep the plan, copy it out of .rasen/. This file itself is not
# ignored, so that 'git clean -fX' leaves the directory in place.
/*
!/.gitignore
";

/// What `init` wrote into `.rasen/.gitignore` before `.rasen/` was private:
/// it recommended committing the plan and the attempt history (which
/// quotes agent output). Found unchanged, it is replaced.
const RASEN_GITIGNORE_BEFORE_PRIVACY: &str = "\
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

/// `rasen init --task TEXT [--force]`.
pub fn init(dir: &Path, task_arg: &str, force: bool) -> Result<i32> {
    let project = Project::open_here(dir)?;
    let task = read_task_argument(task_arg)?;
    if let Liveness::Running { pid } = lock::liveness(&project)? {
        return Err(lock::already_running(&project, pid));
    }
    let replaced: Vec<_> =
        [project.task_file(), project.plan_file()].into_iter().filter(|p| p.exists()).collect();
    if !replaced.is_empty() && !force {
        let names: Vec<_> = replaced.iter().map(|p| project.show(p)).collect();
        return Err(Error::failed(format!(
            "{} already exist{}; use 'rasen resume' to continue, or 'rasen init --force' to start over (backups are kept)",
            names.join(" and "),
            if names.len() == 1 { "s" } else { "" }
        )));
    }
    check_background_files(&project)?;
    create_rasen_dir(&project)?;
    if force {
        back_up_previous_task(&project)?;
    }
    store::write_atomically(
        &project.task_file(),
        format!("{}\n", task.trim_end()).as_bytes(),
        store::STATE_FILE_MODE,
    )?;
    let config_path = project.root.join("rasen.yml");
    if std::fs::symlink_metadata(&config_path).is_err() {
        store::write_atomically(&config_path, DEFAULT_CONFIG_YAML.as_bytes(), 0o644)?;
        say!("Wrote rasen.yml with the default configuration (every key documented)");
    }
    store::save(&project.status_file(), &StatusFile::initialized())?;
    say!("Initialized task in {}", project.show(&project.rasen_dir()));
    match git::is_repository(&project.root) {
        Ok(true) => {}
        Ok(false) => {
            say!("Note: this is not a git repository yet; 'rasen run' needs one ('git init')")
        }
        Err(e) => say!("Note: {e}"),
    }
    say!("Next: 'rasen run' (foreground) or 'rasen run --background' (daemon)");
    Ok(0)
}

/// The task text: the contents of the file `arg` names, or `arg` itself.
fn read_task_argument(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    let text = if !arg.contains('\n') && path.is_file() {
        std::fs::read_to_string(path)
            .map_err(|e| Error::io(path, "cannot read the task file", e))?
    } else if looks_like_a_file_name(arg) {
        // `--task spec.md` with a typo must not become the task "spec.md".
        let what = if path.is_dir() { "is a directory" } else { "no such file" };
        return Err(Error::usage(format!(
            "init: --task {arg}: {what}; give the task file's path, or a description of the task"
        )));
    } else {
        arg.to_string()
    };
    if text.trim().is_empty() {
        return Err(Error::usage(
            "init: the task is empty; give --task a description or a file that holds one",
        ));
    }
    Ok(text)
}

/// One word with a `/` or a document extension: meant as a file.
fn looks_like_a_file_name(arg: &str) -> bool {
    let word = !arg.trim().is_empty() && !arg.trim().contains(char::is_whitespace);
    let extension = [".md", ".txt", ".rst", ".org", ".adoc"].iter().any(|e| arg.ends_with(e));
    word && (arg.contains('/') || extension)
}

/// `.rasen/`, private (0700; an existing one is made so), with its
/// .gitignore: written when there is none, or replaced when it is the one
/// an older rasen wrote. One you edited is kept.
fn create_rasen_dir(project: &Project) -> Result<()> {
    let dir = project.rasen_dir();
    drop(store::open_private_dir(&project.user_path(&dir))?);
    let gitignore = dir.join(".gitignore");
    let current = store::read_bytes(&gitignore)?;
    let outdated =
        current.as_deref().map_or(true, |c| c == RASEN_GITIGNORE_BEFORE_PRIVACY.as_bytes());
    if outdated {
        store::write_atomically(&gitignore, RASEN_GITIGNORE.as_bytes(), store::STATE_FILE_MODE)?;
    }
    Ok(())
}

/// `init --force`: every file of the previous task is renamed to
/// `NAME.bak.TIMESTAMP` (memories.md stays: it is about the project).
fn back_up_previous_task(project: &Project) -> Result<()> {
    let stamp = clock::now_compact();
    for path in [
        project.task_file(),
        project.plan_file(),
        project.history_file(),
        project.good_commits_file(),
    ] {
        if path.exists() {
            let backup = unused_backup_path(&path, &stamp);
            std::fs::rename(&path, &backup).map_err(|e| Error::io(&path, "cannot back up", e))?;
            say!("Kept {} as {}", project.show(&path), project.show(&backup));
        }
    }
    Ok(())
}

/// `NAME.bak.STAMP`, or `NAME.bak.STAMP.N` when that exists already (two
/// `init --force` within a second): a backup never replaces another.
fn unused_backup_path(path: &Path, stamp: &str) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let mut backup = path.with_file_name(format!("{name}.bak.{stamp}"));
    let mut n = 0;
    while backup.symlink_metadata().is_ok() {
        n += 1;
        backup = path.with_file_name(format!("{name}.bak.{stamp}.{n}"));
    }
    backup
}

/// `rasen run [--background]`.
pub fn run(dir: &Path, background: bool, options: RunOptions) -> Result<i32> {
    let project = Project::open(dir)?;
    check_before_run(&project)?;
    start(project, background, options)
}

/// `rasen resume [--background]`.
pub fn resume(dir: &Path, background: bool, options: RunOptions) -> Result<i32> {
    let project = Project::open(dir)?;
    if let Liveness::Running { pid } = lock::liveness(&project)? {
        return Err(lock::already_running(&project, pid));
    }
    // A draft left by a planning session that was cut short is no plan
    // to resume (and may not even parse): the run sets it aside.
    let draft = planning_was_cut_short(&project)? && project.plan_file().exists();
    let plan =
        if draft { None } else { store::load::<Plan>(&project.user_path(&project.plan_file()))? };
    if plan.is_none() && !project.task_file().exists() {
        return Err(Error::failed("No task to resume. Use 'rasen init' to start a new task."));
    }
    // A valid plan with every subtask completed needs no check before a
    // run: there is none. (An invalid one is refused below, as ever.)
    let completed = plan.as_ref().filter(|p| p.validate().is_ok() && p.is_all_completed());
    if let Some(plan) = completed {
        record_completion(&project, plan)?;
        let (done, total) = plan.progress();
        say!("Task already completed: {} ({done}/{total} subtasks)", plan.task_name);
        return Ok(0);
    }
    check_before_run(&project)?;
    match plan {
        Some(plan) => {
            let (done, total) = plan.progress();
            say!("Resuming task: {}", plan.task_name);
            say!("Progress: {done}/{total} subtasks completed");
            if let Some(id) = last_worked_on(&project, &plan)? {
                say!("Last working on: {id}");
            }
        }
        None if draft => say!(
            "The plan was never finished (its planning session was cut short): the draft is set aside and the initializer will plan the task again."
        ),
        None => say!("The plan was never created; the initializer will plan the task first."),
    }
    start(project, background, options)
}

/// `resume` of a task whose subtasks are all completed: status.json says
/// completed too, whatever an earlier run recorded (a limit it reached at
/// the same moment, a stop in the pause after the last subtask, a kill
/// before it could record the end), and what that run left is cleaned
/// up as at a start (`run::clean_up_after_the_last_run`). Done holding
/// the run lock.
fn record_completion(project: &Project, plan: &Plan) -> Result<()> {
    let lock = RunLock::acquire(project)?;
    let path = project.status_file();
    let mut status = store::load::<StatusFile>(&path)?.unwrap_or_else(StatusFile::initialized);
    // No run starts, so what the last one left is cleaned up here.
    run::clean_up_after_the_last_run(project, &status)?;
    if status.reason() != Some(EndReason::Completed) {
        let (done, total) = plan.progress();
        status.set_progress(done as u64, total as u64);
        status.end_run(EndReason::Completed, &format!("all {done}/{total} subtasks completed"));
        status.touch(clock::now_iso());
        store::save(&path, &status)?;
    }
    lock.release();
    Ok(())
}

/// The subtask in progress, else the one the last coder attempt was about.
fn last_worked_on(project: &Project, plan: &Plan) -> Result<Option<String>> {
    if let Some(s) =
        plan.subtasks.iter().find(|s| s.status == crate::plan::SubtaskStatus::InProgress)
    {
        return Ok(Some(s.id.clone()));
    }
    let history = store::load::<AttemptHistory>(&project.user_path(&project.history_file()))?;
    // Initializer sessions are recorded too, with no subtask.
    let last =
        history.and_then(|h| h.attempts.into_iter().rev().find(|a| !a.subtask_id.is_empty()));
    Ok(last.map(|a| a.subtask_id))
}

/// Everything that can be checked before starting, so that errors reach
/// the terminal instead of a daemon's log: task, git (a repository, HEAD
/// on a branch, no rebase or merge half-way), agent, state files, and
/// nobody else running.
fn check_before_run(project: &Project) -> Result<()> {
    // While another orchestrator runs, the state files are its own (`git
    // clean -fX` may even have removed them under it), and its agent may
    // be halfway through writing the plan: say who runs rather than report
    // a file missing or caught mid-write.
    refuse_if_running(project)?;
    check_task_file(project)?;
    check_background_files(project)?;
    git::require_repository(&project.root)?;
    git::require_work_on_a_branch(&project.root)?;
    check_agent_command(project)?;
    if let Err(e) = check_state_files(project) {
        refuse_if_running(project)?; // one may have started meanwhile
        return Err(e);
    }
    refuse_if_running(project)
}

/// The `background.*` files may lie anywhere in the project, where a file
/// rasen did not create may already be (`background.pid_file: README.md`):
/// such a file is never replaced, appended to or removed. In `.rasen/`,
/// every file at one of rasen's names is rasen's; elsewhere, only one
/// whose content is what rasen writes there is (a PID, a log whose lines
/// start with a timestamp, a status file that loads). And no file is
/// reached through a symlinked directory, nor is a symlink itself.
fn check_background_files(project: &Project) -> Result<()> {
    lock::check_pid_file(project)?;
    let log = project.log_file();
    project.refuse_links_on_the_way("background.log_file", &log)?;
    let ours =
        if project.in_rasen_dir(&log) { !is_symlink(&log) } else { logger::is_a_rasen_log(&log) };
    if !ours {
        return Err(project.foreign_file_error("background.log_file", &log, "log"));
    }
    let status = project.status_file();
    project.refuse_links_on_the_way("background.status_file", &status)?;
    if !project.in_rasen_dir(&status) {
        load_status_file(project)?;
    }
    Ok(())
}

/// status.json. Outside `.rasen/`, a file that does not load is not
/// rasen's (README.md), and the error says so rather than "fix or remove
/// the file".
fn load_status_file(project: &Project) -> Result<Option<StatusFile>> {
    let path = project.status_file();
    let loaded = store::load::<StatusFile>(&project.user_path(&path));
    if loaded.is_err() && !project.in_rasen_dir(&path) {
        return Err(project.foreign_file_error("background.status_file", &path, "status"));
    }
    loaded
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// There is a task, and no symlink in its place: refused here, where the
/// error reaches the terminal, rather than in the daemon. (A task that
/// cannot be read otherwise fails the run's start, which status records.)
fn check_task_file(project: &Project) -> Result<()> {
    let path = project.user_path(&project.task_file());
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(store::symlink_refused(&path)),
        Ok(_) => Ok(()),
        Err(_) => Err(Error::usage(format!(
            "no task in {}: start with 'rasen init --task \"…\"'",
            project.show(&project.rasen_dir())
        ))),
    }
}

fn refuse_if_running(project: &Project) -> Result<()> {
    if let Liveness::Running { pid } = lock::liveness(project)? {
        return Err(lock::already_running(project, pid));
    }
    Ok(())
}

/// Every state file parses, and the plan (when there is one) is valid,
/// unless it is the draft of a planning session that was cut short,
/// which the run sets aside unread.
fn check_state_files(project: &Project) -> Result<()> {
    if !planning_was_cut_short(project)? {
        plan::load_valid(&project.user_path(&project.plan_file()))?;
    }
    store::load::<AttemptHistory>(&project.user_path(&project.history_file()))?;
    store::load::<GoodCommits>(&project.user_path(&project.good_commits_file()))?;
    Ok(())
}

/// Whether status.json says the last run died while planning (see
/// `status::Phase::Planning`); only meaningful while nobody runs.
fn planning_was_cut_short(project: &Project) -> Result<bool> {
    let status = load_status_file(project)?;
    Ok(status.is_some_and(|s| s.planning_unfinished()))
}

fn check_agent_command(project: &Project) -> Result<()> {
    agent::resolve_agent_command(&project.config.agent.command, &project.root).map(drop)
}

/// Runs the loop here or as a daemon, with the run lock held throughout.
fn start(project: Project, background: bool, options: RunOptions) -> Result<i32> {
    if background {
        return daemon::run_in_background(&project, options);
    }
    run_in_foreground(&project, options)
}

/// The loop in this process, top to bottom: the signal handlers (before
/// anything can name this process: the lock in /proc/locks, the PID file),
/// the daemon's umask rule, the run lock, the log (echoed to the terminal), the PID file, the
/// loop's start and its run to the end. The lock is let go however it
/// ended, so no PID file is left behind by a start that failed either.
fn run_in_foreground(project: &Project, options: RunOptions) -> Result<i32> {
    signals::install()?;
    daemon::apply_umask_rule();
    let lock = RunLock::acquire(project)?;
    let ending = logger::open(&project.log_file(), true)
        .and_then(|()| lock.write_pid_file())
        .and_then(|()| run::start(project, options))
        .and_then(Run::run_to_end);
    lock.release();
    ending.map(|ending| ending.exit_code())
}

/// `rasen status [--json]`.
pub fn status(dir: &Path, json: bool) -> Result<i32> {
    let project = Project::open_despite_config(dir, "show the status")?;
    let liveness = lock::liveness(&project)?;
    let mut file = load_status_file(&project)?;
    let running = matches!(liveness, Liveness::Running { .. });
    if file.is_none() && (running || project.task_file().exists()) {
        // status.json may be gone (`git clean -fX` removes everything in
        // .rasen/ but its .gitignore): the lock, the task and the plan
        // still say what they can.
        let mut initialized = StatusFile::initialized();
        if let Ok(Some(plan)) = store::load::<Plan>(&project.plan_file()) {
            let (done, total) = plan.progress();
            initialized.set_progress(done as u64, total as u64);
        }
        file = Some(initialized);
    }
    let orphaned = orphaned_agent(&file, &liveness);
    let report = status::Report::new(file, liveness, clock::now_secs());
    let reused = report.stale_pid().and_then(process::info).is_some_and(|p| p.state != 'Z');
    let report = report.with_pid_reused(reused).with_orphaned_agent(orphaned);
    let text = if json { report.to_json() } else { report.to_text() };
    print_stdout(&text)?;
    Ok(report.exit_code())
}

/// The processes of an agent a killed run left behind, when nothing runs
/// (a live run's agent is no orphan). `/proc` is scanned only when the file
/// records a session in flight, i.e. after a crash.
fn orphaned_agent(file: &Option<StatusFile>, liveness: &Liveness) -> Vec<i32> {
    match (file, liveness) {
        (Some(file), Liveness::Stale { .. } | Liveness::NotRunning) => {
            identity::find_left_behind(file.recorded_agent()).processes
        }
        _ => Vec::new(),
    }
}

/// `rasen logs [-n N] [-f]`.
pub fn logs(dir: &Path, lines: usize, follow: bool) -> Result<i32> {
    let project = Project::open_despite_config(dir, "show the log")?;
    let path = project.log_file();
    project.refuse_links_on_the_way("background.log_file", &path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if follow {
        // Ctrl-C ends the follower quietly (exit 0), whatever disposition
        // of SIGINT rasen inherited.
        signals::install()?;
        logs::follow(&path, lines, &mut out)?;
    } else {
        logs::print_last_lines(&path, lines, &mut out)?;
    }
    Ok(0)
}

/// `rasen stop [--force] [--timeout SECS]`.
pub fn stop(dir: &Path, force: bool, timeout_seconds: u64) -> Result<i32> {
    let project = Project::open_despite_config(dir, "stop")?;
    stop::stop(&project, force, Duration::from_secs(timeout_seconds))
}

/// Prints to stdout; a closed pipe (`rasen status | head -1`) is not an
/// error.
pub fn print_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
