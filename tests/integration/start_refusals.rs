//! What `run` and `resume` refuse before anything starts, because the
//! run's work would be lost: git missing, a detached HEAD, a rebase,
//! merge, cherry-pick, revert or bisect in progress. Each refusal names
//! what to do, exits 2, and starts no session.

use crate::harness::*;
use crate::run_support::*;

/// The one `rasen: error:` line of a refused command; panics unless the
/// command exited 2 without starting a session.
fn refusal(p: &Project, r: &RunResult) -> String {
    assert_eq!(r.code, 2, "{r}");
    assert!(p.sessions().is_empty(), "a session started\n{r}");
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("rasen: error: ")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    errors[0].to_string()
}

#[test]
fn git_missing_from_path_is_said_as_such() {
    let mut p = project("no-git");
    let empty = p.scripted_dir().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    p.env("PATH", &empty.display().to_string());
    for verb in ["run", "resume"] {
        let r = p.rasen(&[verb]);
        let error = refusal(&p, &r);
        assert!(error.contains("git") && error.contains("PATH"), "{verb}: {error}");
        assert!(!error.contains("not a git repository"), "{verb}: {error}");
    }
}

#[test]
fn a_detached_head_is_refused_naming_what_to_do() {
    let p = project("detached");
    p.git(&["checkout", "-q", "--detach"]);
    for verb in ["run", "resume"] {
        let r = p.rasen(&[verb]);
        let error = refusal(&p, &r);
        assert!(error.contains("HEAD is detached"), "{verb}: {error}");
        assert!(error.contains("git switch"), "{verb}: {error}");
    }
    // Back on a branch, the run goes.
    p.git(&["checkout", "-q", "-"]);
    p.rasen(&["run"]).expect_code(0);
}

/// A project with a conflict ready: README.md changed on `side` and,
/// differently, twice on the current branch (whose name is returned).
fn project_with_a_conflict(name: &str) -> (Project, String) {
    let p = project(name);
    let branch = p.git(&["symbolic-ref", "--short", "HEAD"]).trim().to_string();
    p.git(&["checkout", "-q", "-b", "side"]);
    p.write("README.md", "side\n");
    p.git(&["commit", "-q", "-am", "side"]);
    p.git(&["checkout", "-q", &branch]);
    for text in ["main one", "main two"] {
        p.write("README.md", &format!("{text}\n"));
        p.git(&["commit", "-q", "-am", text]);
    }
    (p, branch)
}

/// Runs git, which is expected to stop half-way (a conflict).
fn git_stopping_half_way(p: &Project, args: &[&str]) {
    let out = p.command("git").args(args).output().unwrap();
    assert!(!out.status.success(), "git {args:?} was expected to stop on a conflict");
}

#[test]
fn an_operation_in_progress_is_refused_naming_how_to_end_it() {
    let cases: [(&str, &[&str], &str, &str); 5] = [
        ("rebase", &["rebase", "side"], "a rebase", "git rebase --abort"),
        ("merge", &["merge", "side"], "a merge", "git merge --abort"),
        ("cherry-pick", &["cherry-pick", "side"], "a cherry-pick", "git cherry-pick --abort"),
        ("revert", &["revert", "--no-edit", "HEAD~1"], "a revert", "git revert --abort"),
        ("bisect", &["bisect", "start"], "a bisect", "git bisect reset"),
    ];
    for (name, args, what, how) in cases {
        let (p, _) = project_with_a_conflict(&format!("op-{name}"));
        if name == "bisect" {
            p.git(args);
        } else {
            git_stopping_half_way(&p, args);
        }
        for verb in ["run", "resume"] {
            let r = p.rasen(&[verb]);
            let error = refusal(&p, &r);
            assert!(error.contains(&format!("{what} is in progress")), "{name} {verb}: {error}");
            assert!(error.contains(how), "{name} {verb}: {error}");
        }
    }
}
