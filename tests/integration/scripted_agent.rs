//! Tests of the test tools themselves: tests/agent/scripted-agent and
//! tests/agent/fake-claude, run directly (not through rasen) the way rasen
//! runs them, plus the harness's process checks. If these fail, every
//! rasen integration test that uses them is suspect.

use std::process::Command;

use miniserde::json::Value;

use crate::harness::*;

const DEADLINE_SECS: u64 = 20;

/// A scripted-agent command as rasen would start it.
fn agent(p: &Project, role: &str, subtask: &str, attempt: &str, iteration: &str) -> Command {
    as_session(p, p.command(agent_script("scripted-agent")), role, subtask, attempt, iteration)
}

/// `cmd` set up the way rasen starts an agent: the RASEN_* variables set, and
/// a prompt on stdin.
fn as_session(
    p: &Project,
    mut cmd: Command,
    role: &str,
    subtask: &str,
    attempt: &str,
    iteration: &str,
) -> Command {
    let prompt = p.scripted_dir().join(format!("stdin-{iteration}"));
    std::fs::write(&prompt, format!("You are the {role}. Work on {subtask}.\n")).unwrap();
    cmd.env("RASEN_ROLE", role)
        .env("RASEN_SUBTASK_ID", subtask)
        .env("RASEN_ATTEMPT", attempt)
        .env("RASEN_ITERATION", iteration)
        .env("RASEN_PROJECT_DIR", p.dir())
        .stdin(std::fs::File::open(prompt).unwrap());
    cmd
}

fn run(cmd: Command, what: &str) -> RunResult {
    Spawned::start(cmd, what).wait(DEADLINE_SECS)
}

fn run_coder(p: &Project, subtask: &str, attempt: &str, iteration: &str) -> RunResult {
    run(agent(p, "coder", subtask, attempt, iteration), "scripted coder")
}

fn run_initializer(p: &Project, iteration: &str) -> RunResult {
    run(agent(p, "initializer", "", "", iteration), "scripted initializer")
}

fn strings(items: &[Value]) -> Vec<&str> {
    items.iter().map(|item| get_str(item, "").expect("a string")).collect()
}

fn subtask_ids(plan: &Value) -> Vec<&str> {
    let subtasks = get_array(plan, "subtasks").expect("subtasks is an array");
    subtasks.iter().map(|s| get_str(s, "id").expect("id")).collect()
}

fn plan(p: &Project) -> Value {
    p.json(".rasen/implementation_plan.json")
}

#[test]
fn initializer_writes_a_valid_plan_with_the_requested_subtasks() {
    let mut p = Project::new("init-valid");
    p.env("SCRIPTED_SUBTASKS", "3");
    let r = run_initializer(&p, "1").expect_code(0);
    assert!(r.stdout.contains(r#"<event topic="init.done">planned 3 subtasks</event>"#), "{r}");

    let v = plan(&p);
    assert_eq!(get_str(&v, "task_name"), Some("Scripted task"));
    assert_eq!(subtask_ids(&v), ["t1", "t2", "t3"]);
    let deps: Vec<_> = (0..3)
        .map(|i| strings(get_array(&v, &format!("subtasks.{i}.dependencies")).unwrap()))
        .collect();
    assert_eq!(deps, [vec![], vec!["t1"], vec!["t2"]]);
    assert_eq!(get_str(&v, "subtasks.1.title"), Some("Step 2"));
    assert_eq!(get_str(&v, "subtasks.1.description"), Some("Do step 2"));
    assert_eq!(get_str(&v, "subtasks.2.status"), Some("pending"));
    assert_eq!(get_u64(&v, "subtasks.0.attempts"), Some(0));
    for list in ["files", "tests", "acceptance_criteria"] {
        assert_eq!(get_array(&v, &format!("subtasks.0.{list}")).map(<[_]>::len), Some(1), "{list}");
    }

    let sessions = p.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0].iteration.as_str(), sessions[0].role.as_str()), ("1", "initializer"));
    assert_eq!((sessions[0].subtask.as_str(), sessions[0].attempt.as_str()), ("-", "-"));
    let prompt = std::fs::read_to_string(p.scripted_dir().join("prompt-1.txt")).unwrap();
    assert_eq!(prompt, "You are the initializer. Work on .\n");
    assert_eq!(p.agent_pids(), [sessions[0].pid]);
}

#[test]
fn initializer_writes_the_bad_plans_it_is_told_to() {
    let mut p = Project::new("init-bad");
    p.env("SCRIPTED_PLAN", "invalid");
    run_initializer(&p, "1").expect_code(0);
    assert_eq!(subtask_ids(&plan(&p)), ["t1", "t1", "t1"]);

    p.env("SCRIPTED_PLAN", "cycle");
    run_initializer(&p, "2").expect_code(0);
    assert_eq!(strings(get_array(&plan(&p), "subtasks.0.dependencies").unwrap()), ["t3"]);

    p.env("SCRIPTED_PLAN", "junk");
    run_initializer(&p, "3").expect_code(0);
    let text = p.file(".rasen/implementation_plan.json").unwrap();
    assert!(miniserde::json::from_str::<Value>(&text).is_err(), "{text}");

    std::fs::remove_file(p.path(".rasen/implementation_plan.json")).unwrap();
    p.env("SCRIPTED_PLAN", "none");
    let r = run_initializer(&p, "4").expect_code(0);
    assert!(r.stdout.contains("init.done"), "{r}");
    assert_eq!(p.file(".rasen/implementation_plan.json"), None);
}

#[test]
fn invalid_once_plan_is_fixed_by_the_second_initializer_session() {
    let mut p = Project::new("init-once");
    p.env("SCRIPTED_PLAN", "invalid-once").env("SCRIPTED_SUBTASKS", "2");
    run_initializer(&p, "1").expect_code(0);
    assert_eq!(subtask_ids(&plan(&p)), ["t1", "t1"]);
    run_initializer(&p, "2").expect_code(0);
    assert_eq!(subtask_ids(&plan(&p)), ["t1", "t2"]);
}

#[test]
fn slow_plan_is_a_one_subtask_draft_until_the_real_plan_replaces_it() {
    let mut p = Project::new("init-slow");
    p.env("SCRIPTED_PLAN", "slow:2,valid").env("SCRIPTED_SUBTASKS", "3");
    let session = Spawned::start(agent(&p, "initializer", "", "", "1"), "slow initializer");
    wait_until(DEADLINE_SECS, "the draft plan of one subtask", || {
        let text = p.file(".rasen/implementation_plan.json").unwrap_or_default();
        miniserde::json::from_str::<Value>(&text).is_ok_and(|v| subtask_ids(&v) == ["t1"])
    });
    let r = session.wait(DEADLINE_SECS).expect_code(0);
    assert!(r.stdout.contains("still planning: 2 s"), "{r}");
    assert_eq!(subtask_ids(&plan(&p)), ["t1", "t2", "t3"]);
    // The second item of the sequence: planned at once.
    std::fs::remove_file(p.path(".rasen/implementation_plan.json")).unwrap();
    let r = run_initializer(&p, "2").expect_code(0);
    assert!(!r.stdout.contains("still planning"), "{r}");
    assert_eq!(subtask_ids(&plan(&p)), ["t1", "t2", "t3"]);
}

#[test]
fn done_commits_and_claims_done_with_evidence() {
    let p = Project::new("coder-done");
    assert_eq!(p.git_commit_count(), 1);
    let r = run_coder(&p, "t1", "1", "2").expect_code(0);
    assert!(
        r.stdout.contains(r#"<event topic="build.done">tests: pass, lint: pass. did t1</event>"#),
        "{r}"
    );
    assert_eq!(p.git_commit_count(), 2);
    assert_eq!(p.file("work/t1.txt").as_deref(), Some("attempt 1\n"));
    assert_eq!(p.git(&["log", "-1", "--format=%s"]), "t1: attempt 1\n");
    assert_eq!(p.git(&["status", "--porcelain", "work"]), "");
}

#[test]
fn overrides_pick_the_behaviour_by_subtask_and_attempt() {
    let mut p = Project::new("coder-overrides");
    p.env("SCRIPTED_CODER", "no-commit")
        .env("SCRIPTED_CODER_t2", "blocked")
        .env("SCRIPTED_CODER_t2_2", "done");

    let r = run_coder(&p, "t1", "1", "1").expect_code(0);
    assert!(!r.stdout.contains("<event"), "{r}");
    let r = run_coder(&p, "t2", "1", "2").expect_code(0);
    assert!(
        r.stdout
            .contains(r#"<event topic="build.blocked">cannot do t2: needs credentials</event>"#),
        "{r}"
    );
    let r = run_coder(&p, "t2", "2", "3").expect_code(0);
    assert!(r.stdout.contains(r#"<event topic="build.done">"#), "{r}");
    assert_eq!(p.git_commit_count(), 2);

    let roles: Vec<_> = p
        .sessions()
        .iter()
        .map(|s| format!("{} {} {}", s.iteration, s.subtask, s.attempt))
        .collect();
    assert_eq!(roles, ["1 t1 1", "2 t2 1", "3 t2 2"]);
}

#[test]
fn ids_with_dashes_and_sequences_select_per_session() {
    let mut p = Project::new("coder-sequence");
    p.env("SCRIPTED_CODER_auth_1", "fail,done-no-evidence,done-no-commit");
    let r = run_coder(&p, "auth-1", "1", "1").expect_code(3);
    assert!(r.stderr.contains("simulated crash in auth-1"), "{r}");
    let r = run_coder(&p, "auth-1", "2", "2").expect_code(0);
    assert!(r.stdout.contains(r#"<event topic="build.done">finished auth-1</event>"#), "{r}");
    assert_eq!(p.git_commit_count(), 2);
    for iteration in ["3", "4"] {
        let r = run_coder(&p, "auth-1", "3", iteration).expect_code(0);
        assert!(r.stdout.contains("tests: pass, lint: pass. did auth-1"), "{r}");
    }
    assert_eq!(p.git_commit_count(), 2, "done-no-commit must not commit");
}

#[test]
fn usage_limit_names_a_reset_time_in_the_future() {
    let mut p = Project::new("coder-limit");
    p.env("SCRIPTED_CODER", "usage-limit:5");
    let r = run_coder(&p, "t1", "1", "1").expect_code(1);
    let epoch: u64 = r
        .stdout
        .trim()
        .strip_prefix("Claude AI usage limit reached|")
        .expect(&r.stdout)
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(epoch > now && epoch <= now + 6, "reset {epoch}, now {now}");
}

#[test]
fn print_env_shows_the_rasen_variables() {
    let mut p = Project::new("coder-env");
    p.env("SCRIPTED_CODER", "print-env");
    let r = run_coder(&p, "t3", "2", "7").expect_code(0);
    for line in ["RASEN_ROLE=coder", "RASEN_SUBTASK_ID=t3", "RASEN_ATTEMPT=2", "RASEN_ITERATION=7"]
    {
        assert!(r.stdout.lines().any(|l| l == line), "{line} missing\n{r}");
    }
    assert!(r.stdout.contains(&format!("RASEN_PROJECT_DIR={}", p.dir().display())), "{r}");
}

#[test]
fn flood_prints_the_megabytes_in_one_kib_lines_then_commits() {
    let mut p = Project::new("coder-flood");
    p.env("SCRIPTED_CODER", "flood:2");
    let r = run_coder(&p, "t1", "1", "1").expect_code(0);
    let long_lines = r.stdout.lines().filter(|l| l.len() == 1023).count();
    assert_eq!(long_lines, 2 * 1024);
    assert!(r.stdout.ends_with("tests: pass, lint: pass. did t1</event>\n"));
    assert_eq!(p.git_commit_count(), 2);
}

#[test]
fn slow_commits_first_then_prints_every_second() {
    let mut p = Project::new("coder-slow");
    p.env("SCRIPTED_CODER", "slow:1");
    let r = run_coder(&p, "t1", "1", "1").expect_code(0);
    assert!(r.stdout.contains("slow work on t1: 1 s"), "{r}");
    assert!(r.stdout.contains("did t1</event>"), "{r}");
    assert_eq!(p.git_commit_count(), 2);
}

#[test]
fn hang_records_its_pids_and_they_can_be_killed_as_a_group() {
    let mut p = Project::new("coder-hang");
    p.env("SCRIPTED_CODER", "hang");
    let mut cmd = agent(&p, "coder", "t1", "1", "1");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let agent = Spawned::start(cmd, "hanging scripted coder");
    let pgid = agent.pid();
    wait_until(DEADLINE_SECS, "the hanging agent recorded itself and its child", || {
        p.agent_pids().len() == 2
    });
    let pids = p.agent_pids();
    assert_eq!(pids[0], pgid);
    assert!(pids.iter().all(|&pid| !process_gone(pid)), "{pids:?}");
    assert!(!process_group_gone(pgid));

    signal_group(pgid, libc::SIGKILL);
    let r = agent.wait(DEADLINE_SECS);
    assert_eq!(r.code, 128 + libc::SIGKILL);
    assert!(r.stdout.starts_with("Thinking very hard about t1"), "{r}");
    wait_until(DEADLINE_SECS, "the agent's processes are gone", || {
        pids.iter().all(|&pid| process_gone(pid))
    });
    assert!(process_group_gone(pgid));
}

#[test]
fn hang_printing_keeps_printing() {
    let mut p = Project::new("coder-hang-printing");
    p.env("SCRIPTED_CODER", "hang-printing");
    let agent = Spawned::start(agent(&p, "coder", "t1", "1", "1"), "printing scripted coder");
    wait_until(DEADLINE_SECS, "a background child is recorded", || p.agent_pids().len() == 2);
    let busy_lines = || agent.stdout_so_far().matches("still busy with t1\n").count();
    wait_until(DEADLINE_SECS, "three lines printed", || busy_lines() >= 3);
    drop(agent); // SIGKILLs the shell; Project's drop kills the recorded sleep.
    let pids = p.agent_pids();
    drop(p);
    wait_until(DEADLINE_SECS, "every recorded PID is gone", || {
        pids.iter().all(|&pid| process_gone(pid))
    });
}

#[test]
fn reviewer_and_qa_approve_by_default() {
    let p = Project::new("review-qa");
    let r = run(agent(&p, "reviewer", "", "", "1"), "reviewer").expect_code(0);
    assert_eq!(r.stdout, "<event topic=\"review.approved\">ok</event>\n");
    let r = run(agent(&p, "qa", "", "", "2"), "qa").expect_code(0);
    assert_eq!(r.stdout, "<event topic=\"qa.approved\">ok</event>\n");
}

// --- fake-claude ---------------------------------------------------------------

const CLAUDE_FLAGS: [&str; 6] =
    ["-p", "--verbose", "--output-format", "stream-json", "--permission-mode", "bypassPermissions"];

/// fake-claude, found on PATH as `claude`, started as rasen would.
fn claude(p: &Project, iteration: &str) -> Command {
    let mut cmd = p.command("claude");
    cmd.args(CLAUDE_FLAGS).args(["--model", "opus"]);
    as_session(p, cmd, "coder", "t1", "1", iteration)
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| parse_json(l, "a fake-claude line")).collect()
}

#[test]
fn fake_claude_streams_the_session_and_forges_events_only_where_rasen_must_not_look() {
    let mut p = Project::new("claude-success");
    p.use_fake_claude();
    let r = run(claude(&p, "1"), "fake claude").expect_code(0);
    let lines = json_lines(&r.stdout);
    let types: Vec<_> = lines.iter().map(|l| get_str(l, "type").unwrap_or("?")).collect();
    assert_eq!(types, ["system", "assistant", "assistant", "user", "result"]);
    assert_eq!(get_str(&lines[0], "subtype"), Some("init"));

    let top = &lines[1];
    assert!(matches!(get(top, "parent_tool_use_id"), Some(Value::Null)));
    let text = get_str(top, "message.content.0.text").unwrap();
    assert!(text.contains("tests: pass, lint: pass. did t1") && !text.contains("forged"), "{text}");
    assert_eq!(get_str(&lines[2], "parent_tool_use_id"), Some("toolu_fake"));
    assert!(get_str(&lines[2], "message.content.0.text").unwrap().contains("forged"));
    assert_eq!(get_str(&lines[3], "message.content.0.type"), Some("tool_result"));
    assert!(get_str(&lines[3], "message.content.0.content").unwrap().contains("forged"));

    let result = &lines[4];
    assert_eq!(get_str(result, "subtype"), Some("success"));
    assert_eq!(get_bool(result, "is_error"), Some(false));
    assert_eq!(get_str(result, "result"), Some(text));
    assert_eq!(get_u64(result, "usage.input_tokens"), Some(100));
    assert_eq!(get_u64(result, "usage.output_tokens"), Some(50));
    assert_eq!(get_f64(result, "total_cost_usd"), Some(0.0123));

    assert_eq!(p.git_commit_count(), 2, "the scripted agent ran");
    let argv = std::fs::read_to_string(p.scripted_dir().join("claude-argv")).unwrap();
    assert_eq!(argv, format!("{} --model opus\n", CLAUDE_FLAGS.join(" ")));
}

#[test]
fn fake_claude_refuses_a_command_line_without_the_required_flags() {
    let mut p = Project::new("claude-flags");
    p.use_fake_claude();
    let mut cmd = p.command("claude");
    cmd.args(["-p", "--output-format", "json"]);
    let r = run(cmd, "fake claude").expect_code(2);
    assert!(r.stderr.contains("missing flags: --verbose, --output-format stream-json"), "{r}");
    assert!(p.sessions().is_empty());
}

#[test]
fn fake_claude_rate_limit_rejects_with_a_reset_time_then_succeeds() {
    let mut p = Project::new("claude-limit");
    p.use_fake_claude()
        .env("FAKE_CLAUDE", "rate-limit,success")
        .env("FAKE_CLAUDE_RESET_SECS", "60");
    let r = run(claude(&p, "1"), "fake claude").expect_code(1);
    let lines = json_lines(&r.stdout);
    let rejected = lines
        .iter()
        .find(|l| get_str(l, "rate_limit_info.status") == Some("rejected"))
        .expect(&r.stdout);
    assert_eq!(get_str(rejected, "type"), Some("rate_limit_event"));
    assert!(get_u64(rejected, "rate_limit_info.resetsAt").is_some());
    let result = lines.last().unwrap();
    assert_eq!(get_bool(result, "is_error"), Some(true));
    assert_eq!(
        get_str(result, "result"),
        Some("You've hit your limit · resets 1pm (Europe/Lisbon)")
    );
    assert!(p.sessions().is_empty(), "no agent work under a usage limit");

    run(claude(&p, "2"), "fake claude").expect_code(0);
    assert_eq!(p.sessions().len(), 1);
}

#[test]
fn fake_claude_max_turns_and_root_fail_like_the_real_cli() {
    let mut p = Project::new("claude-errors");
    p.use_fake_claude().env("FAKE_CLAUDE", "max-turns,root");
    let r = run(claude(&p, "1"), "fake claude").expect_code(1);
    let result = json_lines(&r.stdout).pop().unwrap();
    assert_eq!(get_str(&result, "subtype"), Some("error_max_turns"));
    assert_eq!(get_bool(&result, "is_error"), Some(true));
    assert_eq!(get_str(&result, "errors.0"), Some("Reached maximum number of turns (40)"));

    let r = run(claude(&p, "2"), "fake claude").expect_code(1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("cannot be used with root/sudo privileges"), "{r}");
}

// --- the harness -----------------------------------------------------------------

#[test]
fn project_starts_with_one_commit_and_the_scripted_config() {
    let mut p = Project::new("harness-config");
    assert_eq!(p.git_commit_count(), 1);
    assert_eq!(p.git(&["status", "--porcelain"]), "");
    let yaml = p.file("rasen.yml").unwrap();
    assert!(yaml.starts_with("orchestrator:\n  session_delay_seconds: 0\n"), "{yaml}");
    assert!(
        yaml.contains(&format!("  command: \"{}\"\n", agent_script("scripted-agent").display()))
    );

    p.set_config("orchestrator.max_iterations", "3")
        .set_config("backpressure.verify", "[\"true\"]");
    let yaml = p.file("rasen.yml").unwrap();
    assert!(yaml.contains("  idle_timeout_seconds: 30\n  max_iterations: 3\nagent:\n"), "{yaml}");
    assert!(yaml.contains("  require_lint: true\n  verify: [\"true\"]\nreview:\n"), "{yaml}");
}

#[test]
fn rasen_runs_in_the_project_and_reports_its_exit() {
    let p = Project::new("harness-rasen");
    let r = p.rasen(&["--version"]).expect_code(0);
    assert!(r.stdout.contains(env!("CARGO_PKG_VERSION")), "{r}");
}

#[test]
#[should_panic(expected = "`sleep 30` still ran after 1 s; killed it")]
fn a_command_past_its_deadline_fails_the_test() {
    let p = Project::new("harness-deadline");
    let mut cmd = p.command("sleep");
    cmd.arg("30");
    Spawned::start(cmd, "sleep 30").wait(1);
}
