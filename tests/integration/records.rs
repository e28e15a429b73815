//! What a run killed midway leaves, repaired at the next start: temp
//! files of dead writers are removed.

use std::process::Command;

use crate::harness::*;
use crate::run_support::*;

/// `.NAME.tmp.PID.N` is what rasen's atomic writes leave when killed.
#[test]
fn stale_temp_files_are_removed_at_start_and_a_live_writers_are_kept() {
    let mut p = project("records-temp-files");
    p.env("SCRIPTED_SUBTASKS", "1");
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let other = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    let live_rasen = p.spawn(&["logs", "-f"]);
    wait_until(20, "`rasen logs -f` to run", || {
        std::fs::read_to_string(format!("/proc/{}/comm", live_rasen.pid()))
            .is_ok_and(|c| c.trim() == "rasen")
    });
    let stale = [
        format!(".status.json.tmp.{dead}.0"),
        format!(".attempt_history.json.tmp.{}.3", other.0.id()),
    ];
    let kept = [
        format!(".implementation_plan.json.tmp.{}.1", live_rasen.pid()),
        ".notes.tmp.txt".to_string(),
        format!("status.json.tmp.{dead}.0"),
        format!(".status.json.tmp.{dead}.x"),
    ];
    for name in stale.iter().chain(&kept) {
        p.write(&format!(".rasen/{name}"), "{\"half\": ");
    }

    p.rasen(&["run"]).expect_code(0);
    for name in &stale {
        assert!(!p.path(&format!(".rasen/{name}")).exists(), "{name} is left");
    }
    for name in &kept {
        assert!(p.path(&format!(".rasen/{name}")).exists(), "{name} was removed");
    }
    let log = p.file(".rasen/rasen.log").unwrap_or_default();
    assert!(log.contains(&stale[0]), "the log names what was removed\n{log}");
}
