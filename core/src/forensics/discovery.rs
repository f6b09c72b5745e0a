//! Where panic reports live and which files in those folders are worth
//! reading. Candidates are chosen by name and modification time before a
//! single byte is read, so a folder of thousands of app-crash reports costs
//! little more than listing it; what is read per file is capped.

use super::extract::file_name_time;
use serde::Serialize;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Colon-separated folders that replace the macOS default places.
pub const REPORT_DIRS_ENV: &str = "METALGUARD_PANIC_REPORT_DIRS";
/// Most bytes read from one report. The panic text sits at the start of the
/// file (in `.ips`, `panicString` comes before the stackshot and image
/// lists); a longer file is read this far and the rest ignored.
pub const READ_CAP_BYTES: u64 = 1024 * 1024;
/// Files larger than this are not panic reports (Apple's are well under
/// 10 MB); they are skipped without being read.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;
/// How much of the start of a file is checked for NUL bytes.
const BINARY_PROBE_BYTES: usize = 64;

/// A file or folder that was not read, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub path: PathBuf,
    pub reason: String,
}

/// The macOS places panic reports are written to, for the user `home`.
pub fn default_report_dirs(home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/Library/Logs/DiagnosticReports"),
        PathBuf::from("/Library/Logs/DiagnosticReports/Retired"),
    ];
    if let Some(home) = home {
        dirs.push(home.join("Library/Logs/DiagnosticReports"));
    }
    dirs.push(PathBuf::from("/var/db/PanicReporter"));
    dirs
}

/// The folders to scan: explicit `--reports` folders if any, else
/// `METALGUARD_PANIC_REPORT_DIRS` (colon-separated) if set and non-empty,
/// else the macOS default places.
pub fn report_dirs(explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    if let Some(value) = std::env::var_os(REPORT_DIRS_ENV) {
        let dirs: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !dirs.is_empty() {
            return dirs;
        }
    }
    default_report_dirs(crate::paths::home_dir().as_deref())
}

/// Whether a file name is a panic-report candidate: every `*.panic`, and the
/// `*.ips` files Apple names for kernel panics (`panic-full-*`, `panic-base-*`,
/// `Kernel-*`). App crashes (`Python-2026-...ips`), hangs and spins are never
/// opened.
pub fn is_candidate_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let lower_ends_with = |suffix: &[u8]| {
        bytes.len() >= suffix.len()
            && bytes[bytes.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    let lower_starts_with = |prefix: &[u8]| {
        bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if lower_ends_with(b".panic") {
        return true;
    }
    lower_ends_with(b".ips") && (lower_starts_with(b"panic") || lower_starts_with(b"kernel"))
}

/// A candidate file, with what was learned about it without reading it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub modified: Option<OffsetDateTime>,
    pub len: u64,
}

/// Lists the candidates in `dir` that may fall inside the window starting at
/// `since`. Problems are recorded in `skipped`: an unreadable or missing
/// folder (when `report_missing` is set; the default places often do not
/// exist), a symlink loop, an unreadable entry, a huge or empty file.
pub fn list_candidates(
    dir: &Path,
    since: Option<OffsetDateTime>,
    report_missing: bool,
    skipped: &mut Vec<SkippedFile>,
) -> Vec<Candidate> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !report_missing => return Vec::new(),
        Err(e) => {
            skipped.push(SkippedFile {
                path: dir.to_path_buf(),
                reason: format!("cannot read this folder: {}", describe_io_error(&e)),
            });
            return Vec::new();
        }
    };
    // A file named for a time more than a day before the window cannot be
    // in it, whatever the time zone of its name.
    let name_cutoff = since.map(|s| s - Duration::days(1));
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skipped.push(SkippedFile {
                    path: dir.to_path_buf(),
                    reason: format!("stopped reading this folder: {}", describe_io_error(&e)),
                });
                break;
            }
        };
        let name = entry.file_name();
        if !is_candidate_name(&name) {
            continue;
        }
        if let (Some(cutoff), Some(named)) = (name_cutoff, name.to_str().and_then(file_name_time)) {
            if named < cutoff {
                continue;
            }
        }
        let path = entry.path();
        // Follows symlinks: a loop or dangling link fails here.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                skipped.push(SkippedFile {
                    path,
                    reason: describe_io_error(&e),
                });
                continue;
            }
        };
        if meta.is_dir() {
            continue;
        }
        if !meta.is_file() {
            skipped.push(SkippedFile {
                path,
                reason: "not a regular file (device, socket or pipe)".to_string(),
            });
            continue;
        }
        let modified = meta.modified().ok().map(OffsetDateTime::from);
        // A report cannot have been written before the panic it describes.
        if let (Some(since), Some(modified)) = (since, modified) {
            if modified < since {
                continue;
            }
        }
        if meta.len() == 0 {
            skipped.push(SkippedFile {
                path,
                reason: "empty file (0 bytes)".to_string(),
            });
            continue;
        }
        if meta.len() > MAX_REPORT_BYTES {
            skipped.push(SkippedFile {
                path,
                reason: format!(
                    "too large to be a panic report ({} MB; reports are under {} MB)",
                    meta.len() / (1024 * 1024),
                    MAX_REPORT_BYTES / (1024 * 1024)
                ),
            });
            continue;
        }
        candidates.push(Candidate {
            path,
            modified,
            len: meta.len(),
        });
    }
    candidates
}

/// Reads at most [`READ_CAP_BYTES`] of a candidate as text. Binary content
/// (NUL bytes near the start) is refused with a one-line reason.
pub fn read_report_text(candidate: &Candidate) -> Result<String, String> {
    // If the file was swapped for a pipe or a device since it was listed,
    // opening it must neither wait for a writer nor read without end.
    use crate::state::regular_file::{open_regular, NotReadable};
    let file = match open_regular(&candidate.path) {
        Ok(Some((file, _))) => file,
        Ok(None) => return Err(describe_io_error(&std::io::ErrorKind::NotFound.into())),
        Err(NotReadable::Io(e)) => return Err(describe_io_error(&e)),
        Err(_) => return Err("not a regular file (device, socket or pipe)".to_string()),
    };
    let mut bytes = Vec::with_capacity(candidate.len.min(READ_CAP_BYTES) as usize);
    file.take(READ_CAP_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| describe_io_error(&e))?;
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".to_string());
    }
    if is_binary(&bytes) {
        return Err("binary file, not a text or JSON panic report".to_string());
    }
    // A report the machine died writing: its text, then the zeros of blocks
    // that never reached the disk. Right after a kernel panic that is the
    // report that matters most, so its text is read.
    if let Some(first_nul) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(first_nul);
    }
    // Valid UTF-8 (the usual case) is taken as is, without a copy.
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// NUL bytes never occur in a text or JSON report's opening: a file with
/// one there is binary. (NUL bytes further on are a torn write's tail.)
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_PROBE_BYTES)].contains(&0)
}

/// One line for an I/O error, naming the likely cause.
pub fn describe_io_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) if code == libc::ELOOP => "symlink loop (too many levels of symbolic links)".to_string(),
        Some(code) if code == libc::EACCES || code == libc::EPERM => {
            "permission denied (try `sudo metal-guard diagnose`, or copy the reports somewhere readable and pass --reports DIR)".to_string()
        }
        Some(code) if code == libc::ENOTDIR => "is not a folder".to_string(),
        Some(code) if code == libc::ENOENT => "does not exist (or is a broken symlink)".to_string(),
        _ => format!("cannot be read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names() {
        for yes in [
            "Kernel-2019-01-01-101010.panic",
            "panic-full-2026-11-25-101010.0002.panic",
            "panic-base-2025-07-04-084414.panic",
            "panic-full-2026-11-25-101010.000.ips",
            "Kernel_2020-01-01-000000_host.ips",
            "anything.PANIC",
        ] {
            assert!(is_candidate_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            "Python-2026-11-25-101010.ips",
            "Safari_2026-11-25-101010_host.hang",
            "python3.12_2026-11-25-101010_host.cpu_resource.diag",
            "JetsamEvent-2026-11-25-101010.ips",
            "panic.txt",
            "ips",
        ] {
            assert!(!is_candidate_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn env_dirs_replace_defaults_and_explicit_wins() {
        let explicit = vec![PathBuf::from("/x")];
        assert_eq!(report_dirs(&explicit), explicit);
        let defaults = default_report_dirs(Some(Path::new("/Users/me")));
        assert!(defaults.contains(&PathBuf::from("/Users/me/Library/Logs/DiagnosticReports")));
        assert!(defaults.contains(&PathBuf::from("/var/db/PanicReporter")));
    }
}
