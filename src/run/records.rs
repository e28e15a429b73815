//! The repair, at a run's start, of what a killed run left: temp files of
//! dead writers removed from `.rasen/`.

use crate::error::Result;
use crate::logger::line as log;
use crate::process;
use crate::project::Project;
use crate::store;

/// At a run's start, with the run lock held and any orphaned agent
/// stopped: the temp files of dead writers removed. Each repair is one
/// log line.
pub(super) fn repair_at_start(project: &Project) -> Result<()> {
    for name in store::remove_stale_temp_files(&project.rasen_dir(), process::may_be_rasen)? {
        log(&format!("removed {name}, left in .rasen/ by a writer that was killed"));
    }
    Ok(())
}
