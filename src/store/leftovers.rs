//! The temp files of atomic writes: their name, `.NAME.tmp.PID.N` (the
//! writer's PID, then its count), and the removal of those whose writer
//! was killed between creating one and renaming it into place.
//!
//! Only files with exactly that name are ever removed, only regular
//! files, and only when the caller says their writer cannot be alive.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// The temp file that writer `pid` uses, the `n`-th time, to replace `name`.
pub fn temp_name(name: &str, pid: i32, n: u64) -> String {
    format!(".{name}.tmp.{pid}.{n}")
}

/// The writer's PID when `file_name` is a temp file's name, `None` for any
/// other name.
pub fn writer_of(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix('.')?;
    let mut parts = rest.rsplitn(3, '.');
    let (n, pid, target) = (parts.next()?, parts.next()?, parts.next()?);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let target = target.strip_suffix(".tmp")?;
    if target.is_empty() || !all_digits(n) || !all_digits(pid) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// Removes from `dir` the temp files whose writer `writer_may_live` says
/// is gone; returns their names. A file that cannot be removed is left
/// and skipped; a directory that cannot be read is an error.
pub fn remove_stale_temp_files(
    dir: &Path,
    writer_may_live: impl Fn(i32) -> bool,
) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list the directory", e))?;
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = writer_of(&name) else { continue };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !writer_may_live(pid) && fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TempDir;

    #[test]
    fn a_temp_name_gives_back_its_writer() {
        assert_eq!(writer_of(&temp_name("status.json", 4242, 7)), Some(4242));
        assert_eq!(writer_of(".implementation_plan.json.tmp.1.0"), Some(1));
        assert_eq!(writer_of(".a.tmp.b.tmp.12.3"), Some(12));
    }

    #[test]
    fn other_names_are_not_temp_files() {
        for name in [
            "status.json",
            "status.json.tmp.12.3",
            "..tmp.12.3",
            ".tmp.12.3",
            ".status.json.tmp.12",
            ".status.json.tmp.x.3",
            ".status.json.tmp.12.x",
            ".status.json.tmp..3",
            ".status.json.tmp.12.",
            ".status.json.tmp.0.3",
            ".status.json.tmp.99999999999.3",
            ".status.json.bak.12.3",
            ".notes.tmp",
        ] {
            assert_eq!(writer_of(name), None, "{name}");
        }
    }

    #[test]
    fn only_temp_files_of_writers_gone_are_removed() {
        let dir = TempDir::new("store-leftovers");
        for name in [".a.json.tmp.10.0", ".b.json.tmp.20.1", ".c.json.tmp.10.2", "a.json"] {
            fs::write(dir.join(name), "x").unwrap();
        }
        fs::create_dir(dir.join(".d.json.tmp.10.3")).unwrap();
        std::os::unix::fs::symlink("a.json", dir.join(".e.json.tmp.10.4")).unwrap();
        let removed = remove_stale_temp_files(dir.path(), |pid| pid == 20).unwrap();
        assert_eq!(removed, [".a.json.tmp.10.0", ".c.json.tmp.10.2"]);
        assert_eq!(
            dir.entries(),
            [".b.json.tmp.20.1", ".d.json.tmp.10.3", ".e.json.tmp.10.4", "a.json"]
        );
    }
}
