//! Time zones, read from the system's TZif files (RFC 8536): the offset
//! from UTC of a named zone ("Europe/Lisbon") or of the machine's zone at a
//! given instant. Files come from /usr/share/zoneinfo (or `$TZDIR`), and
//! the machine's zone from `$TZ` or /etc/localtime, read directly: no
//! dependency, no setenv, no libc time functions.
//!
//! A time after a file's last transition (a "slim" file's future) takes the
//! last transition's offset, which is right for zones without daylight
//! saving and at most an hour off otherwise. Without zone files only UTC is
//! known. A POSIX rule string in `$TZ` ("CET-1CEST") is not read.
//!
//! This module only reads: it never writes a file, never changes the
//! process's zone, and opens only `Area/City` names under the zone
//! directory (no absolute path, no `..`) unless `$TZ` names a file.

use std::path::{Path, PathBuf};

/// Seconds east of UTC in `zone` (None: the machine's zone) at `at`.
pub fn utc_offset(zone: Option<&str>, at: i64) -> Option<i64> {
    match zone {
        Some(name) if is_utc_name(name) => Some(0),
        Some(name) if is_safe_zone_name(name) => tzif_offset_at(&zoneinfo_dir().join(name), at),
        Some(_) => None,
        None => local_offset(at),
    }
}

fn is_utc_name(name: &str) -> bool {
    let name = name.strip_prefix("Etc/").unwrap_or(name);
    ["UTC", "GMT", "UCT", "Z", "Zulu", "Universal", "UTC0", "GMT0", "Greenwich"]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(name))
}

/// `Area/City` names only: no absolute paths, no `..`.
fn is_safe_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('/')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_+-/".contains(&c))
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

fn zoneinfo_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .filter(|d| !d.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| "/usr/share/zoneinfo".into())
}

/// The machine's zone: `$TZ` when it names a zone (or a file), else
/// `/etc/localtime`.
fn local_offset(at: i64) -> Option<i64> {
    match std::env::var("TZ") {
        Ok(tz) => {
            let tz = tz.strip_prefix(':').unwrap_or(&tz);
            if tz.is_empty() || is_utc_name(tz) {
                Some(0)
            } else if tz.starts_with('/') {
                tzif_offset_at(Path::new(tz), at)
            } else if is_safe_zone_name(tz) {
                tzif_offset_at(&zoneinfo_dir().join(tz), at)
            } else {
                None // a POSIX rule string such as "CET-1CEST": not read here
            }
        }
        Err(_) => tzif_offset_at(Path::new("/etc/localtime"), at),
    }
}

/// The UTC offset in force at `at` according to a TZif file (RFC 8536),
/// using the 64-bit data of version 2+ files.
fn tzif_offset_at(path: &Path, at: i64) -> Option<i64> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    let data = std::fs::read(path).ok()?;
    let v1 = TzifHeader::read(&data, 0)?;
    let (header, block, time_size) = if v1.version >= b'2' {
        let start = 44 + v1.block_len(4);
        (TzifHeader::read(&data, start)?, start + 44, 8)
    } else {
        (v1, 44, 4)
    };
    let times = block;
    let indices = times + header.time_count * time_size;
    let types = indices + header.time_count;
    let mut kind = 0usize; // before the first transition: the first type
    for i in 0..header.time_count {
        let time = match time_size {
            8 => i64::from_be_bytes(data.get(times + 8 * i..times + 8 * i + 8)?.try_into().ok()?),
            _ => i64::from(i32::from_be_bytes(
                data.get(times + 4 * i..times + 4 * i + 4)?.try_into().ok()?,
            )),
        };
        if time > at {
            break;
        }
        kind = usize::from(*data.get(indices + i)?);
    }
    if kind >= header.type_count {
        return None;
    }
    let offset = data.get(types + 6 * kind..types + 6 * kind + 4)?;
    Some(i64::from(i32::from_be_bytes(offset.try_into().ok()?)))
}

struct TzifHeader {
    version: u8,
    ut_count: usize,
    std_count: usize,
    leap_count: usize,
    time_count: usize,
    type_count: usize,
    char_count: usize,
}

impl TzifHeader {
    fn read(data: &[u8], at: usize) -> Option<TzifHeader> {
        let header = data.get(at..at + 44)?;
        if &header[..4] != b"TZif" {
            return None;
        }
        let count = |i: usize| -> Option<usize> {
            let bytes: [u8; 4] = header.get(20 + 4 * i..24 + 4 * i)?.try_into().ok()?;
            usize::try_from(u32::from_be_bytes(bytes)).ok()
        };
        Some(TzifHeader {
            version: header[4],
            ut_count: count(0)?,
            std_count: count(1)?,
            leap_count: count(2)?,
            time_count: count(3)?,
            type_count: count(4)?,
            char_count: count(5)?,
        })
    }

    /// The length of the data block that follows this header.
    fn block_len(&self, time_size: usize) -> usize {
        self.time_count * (time_size + 1)
            + self.type_count * 6
            + self.char_count
            + self.leap_count * (time_size + 4)
            + self.std_count
            + self.ut_count
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::parse_iso;

    /// This machine has the zone file for `name` (tests that need one skip
    /// without it: only UTC is known then).
    pub(crate) fn has_zone(name: &str) -> bool {
        zoneinfo_dir().join(name).exists()
    }

    #[test]
    fn named_zones_use_the_system_zone_files() {
        if !has_zone("Europe/Lisbon") {
            return;
        }
        let lisbon = &zoneinfo_dir().join("Europe/Lisbon");
        let winter = parse_iso("2026-01-27T18:45:00Z").unwrap(); // Lisbon is on UTC
        let summer = parse_iso("2026-07-01T10:00:00Z").unwrap(); // UTC+1
        assert_eq!(tzif_offset_at(lisbon, winter), Some(0));
        assert_eq!(tzif_offset_at(lisbon, summer), Some(3600));
        assert_eq!(utc_offset(Some("Europe/Lisbon"), summer), Some(3600));
    }

    #[test]
    fn utc_is_known_without_zone_files_and_unsafe_names_are_not_opened() {
        for name in ["UTC", "Etc/UTC", "gmt", "Zulu", "Etc/GMT0"] {
            assert_eq!(utc_offset(Some(name), 0), Some(0), "{name}");
        }
        for name in ["Nowhere/Atlantis", "../../etc/passwd", "/etc/localtime", "Europe//Lisbon", ""]
        {
            assert_eq!(utc_offset(Some(name), 0), None, "{name}");
        }
    }
}
