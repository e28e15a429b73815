//! The disk space reserve: a small file a run sets aside when it starts
//! and gives back when it can no longer save its state (the disk is full),
//! so that there is room left to record why the run ended. Without it, a
//! full disk ends a run with nothing written anywhere: status.json still
//! says running, and the log cannot take the line either.
//!
//! The file is filled with bytes that do not compress, so that a file
//! system compressing data cannot make it take no blocks. This module only
//! owns that file; it never decides when to give it back (the loop does,
//! in `run::finish`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The size set aside: room for status.json and a few log lines many
/// times over, whatever the file system's block size.
pub const RESERVE_BYTES: usize = 64 * 1024;

/// The reserve file, while it is set aside.
#[derive(Debug)]
pub struct DiskReserve {
    path: Option<PathBuf>,
}

impl DiskReserve {
    /// Writes `path` (replacing a reserve a killed run left) with
    /// RESERVE_BYTES of incompressible bytes, mode 0600, and syncs it, so
    /// its blocks are really taken. Fails when the disk cannot spare them.
    pub fn set_aside(path: &Path) -> Result<DiskReserve> {
        let fail = |e| {
            Error::io(
                path,
                &format!(
                    "cannot set aside {} KiB for the run's last record (is the disk full?)",
                    RESERVE_BYTES / 1024
                ),
                e,
            )
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(fail)?;
        let written =
            file.write_all(&incompressible_bytes(RESERVE_BYTES)).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(fail(e));
        }
        Ok(DiskReserve { path: Some(path.to_path_buf()) })
    }

    /// Gives the space back (removes the file). True the first time, when
    /// there was something to give back.
    pub fn release(&mut self) -> bool {
        match self.path.take() {
            Some(path) => std::fs::remove_file(path).is_ok(),
            None => false,
        }
    }
}

impl Drop for DiskReserve {
    /// A run that ends normally leaves no reserve behind.
    fn drop(&mut self) {
        self.release();
    }
}

/// Removes a reserve a killed run left (SIGKILL runs no `Drop`); for the
/// commands that clean up after a dead run without starting one.
pub fn remove_left_behind(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(path);
    }
}

/// `len` bytes from xorshift64: no run or pattern a compressor could use.
fn incompressible_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_takes_its_size_and_gives_it_back_once() {
        let dir = std::env::temp_dir().join(format!("rasen-reserve-{}", crate::sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".disk-reserve.tmp.rasen");
        std::fs::write(&path, "left by a killed run").unwrap();
        let mut reserve = DiskReserve::set_aside(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RESERVE_BYTES as u64);
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.release(), "given back once");
        let reserve = DiskReserve::set_aside(&path).unwrap();
        drop(reserve);
        assert!(!path.exists(), "dropped: given back");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bytes_do_not_repeat() {
        let bytes = incompressible_bytes(RESERVE_BYTES);
        assert_eq!(bytes.len(), RESERVE_BYTES);
        let distinct: std::collections::HashSet<_> = bytes.chunks(8).collect();
        assert_eq!(distinct.len(), RESERVE_BYTES / 8);
    }
}
