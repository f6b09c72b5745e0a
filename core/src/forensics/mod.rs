//! Panic-report forensics: find macOS panic reports, parse both layouts
//! (`.panic` text and `.ips` JSON), classify the IOGPUFamily signature and
//! explain it in plain words.
//!
//! - [`discovery`]: which folders, which files (by name and mtime), read caps
//!   and skip reasons.
//! - [`report_format`]: `.panic` text vs `.ips` JSON header + body.
//! - [`signature`]: the IOGPUFamily signature of a panic text.
//! - [`extract`]: time, OS build, kernel, machine, driver version, process.
//! - [`explanation`]: plain-words explanation per signature.
//! - [`panic_ledger`]: de-duplicated history in `~/.cache/metal-guard/panics.jsonl`.

pub mod discovery;
pub mod explanation;
pub mod extract;
pub mod panic_ledger;
pub mod report_format;
pub mod signature;

pub use discovery::{report_dirs, SkippedFile};
pub use explanation::{explain, Explanation};
pub use signature::PanicSignature;

use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// One panic report, IOGPU or not, with what could be extracted from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PanicReport {
    /// The path as found (non-UTF-8 bytes shown as U+FFFD in JSON).
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub file: PathBuf,
    /// The IOGPUFamily signature; `None` for panics that are not IOGPU panics.
    pub signature: Option<PanicSignature>,
    /// When the panic happened, in UTC (header, then panic text, then the
    /// file name, then the file's modification time).
    #[serde(with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
    /// macOS build, e.g. `25F84`.
    pub os_build: Option<String>,
    pub kernel_version: Option<String>,
    /// Model (`Mac14,9`) or SoC (`T6041`).
    pub machine: Option<String>,
    /// IOGPUFamily kext version, e.g. `130.13`.
    pub iogpu_family: Option<String>,
    pub process: Option<String>,
    pub pid: Option<u32>,
    /// `IOGPUMemory.cpp:550`.
    pub source_line: Option<String>,
    /// The panic message on one line.
    pub panic_line: Option<String>,
}

impl PanicReport {
    /// Whether this is an IOGPUFamily driver panic.
    pub fn is_iogpu(&self) -> bool {
        self.signature.is_some()
    }

    /// The plain-words explanation, for IOGPU panics.
    pub fn explanation(&self) -> Option<Explanation> {
        self.signature.map(explain)
    }
}

/// Why a readable file is not a panic report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAPanicReport {
    pub bug_type: String,
}

impl fmt::Display for NotAPanicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.bug_type.as_str() {
            "309" | "109" => "an app crash report",
            "288" | "409" => "a hang or spin report",
            "298" => "a memory-pressure (jetsam) report",
            _ => "not a kernel panic report",
        };
        write!(f, "{kind} (bug_type {}), not a kernel panic", self.bug_type)
    }
}

/// Parses one report's text. `fallback_time` (the file's modification time)
/// is used only when neither the report nor its name carries a time.
pub fn parse_report(
    file: &Path,
    text: &str,
    fallback_time: Option<OffsetDateTime>,
) -> Result<PanicReport, NotAPanicReport> {
    let decoded = report_format::decode(text);
    if !decoded.is_kernel_panic() {
        return Err(NotAPanicReport {
            bug_type: decoded.bug_type().unwrap_or_default().to_string(),
        });
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let facts = extract::extract(&decoded, name, fallback_time);
    Ok(PanicReport {
        file: file.to_path_buf(),
        signature: signature::classify(&decoded.panic_text),
        time: facts.time,
        os_build: facts.os_build,
        kernel_version: facts.kernel_version,
        machine: facts.machine,
        iogpu_family: facts.iogpu_family,
        process: facts.process,
        pid: facts.pid,
        source_line: facts.source_line,
        panic_line: facts.panic_line,
    })
}

/// What to scan.
#[derive(Debug, Clone, Default)]
pub struct ReportScan {
    /// Folders to scan (see [`report_dirs`]); not recursive.
    pub dirs: Vec<PathBuf>,
    /// Only reports from this time on.
    pub since: Option<OffsetDateTime>,
}

impl ReportScan {
    /// Scan `dirs` with no time window.
    pub fn all(dirs: Vec<PathBuf>) -> ReportScan {
        ReportScan { dirs, since: None }
    }
}

/// What a scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanOutcome {
    /// Every panic report in the window, newest first (reports without a
    /// time last).
    pub reports: Vec<PanicReport>,
    /// Files and folders that could not be used, each with a one-line reason.
    pub skipped: Vec<SkippedFile>,
}

impl ScanOutcome {
    /// The IOGPU panics only, newest first.
    pub fn iogpu_reports(&self) -> impl Iterator<Item = &PanicReport> {
        self.reports.iter().filter(|r| r.is_iogpu())
    }
}

/// Scans the folders for panic reports. Never fails: every problem becomes a
/// [`SkippedFile`]. A folder that does not exist is reported only when it is
/// not one of the macOS default places (which often do not all exist).
pub fn scan_reports(scan: &ReportScan) -> ScanOutcome {
    let defaults: HashSet<PathBuf> =
        discovery::default_report_dirs(crate::paths::home_dir().as_deref())
            .into_iter()
            .collect();
    let mut seen_dirs = HashSet::new();
    let mut outcome = ScanOutcome::default();
    for dir in &scan.dirs {
        if !seen_dirs.insert(dir.clone()) {
            continue;
        }
        let report_missing = !defaults.contains(dir);
        let candidates =
            discovery::list_candidates(dir, scan.since, report_missing, &mut outcome.skipped);
        for candidate in candidates {
            let text = match discovery::read_report_text(&candidate) {
                Ok(text) => text,
                Err(reason) => {
                    outcome.skipped.push(SkippedFile {
                        path: candidate.path,
                        reason,
                    });
                    continue;
                }
            };
            match parse_report(&candidate.path, &text, candidate.modified) {
                Ok(report) => {
                    let in_window = match (scan.since, report.time) {
                        (Some(since), Some(t)) => t >= since,
                        _ => true,
                    };
                    if in_window {
                        outcome.reports.push(report);
                    }
                }
                Err(not_panic) => outcome.skipped.push(SkippedFile {
                    path: candidate.path,
                    reason: not_panic.to_string(),
                }),
            }
        }
    }
    sort_newest_first(&mut outcome.reports);
    outcome
}

/// Newest first; reports without a time after all timed ones, by path.
pub fn sort_newest_first(reports: &mut [PanicReport]) {
    reports.sort_by(|a, b| match (a.time, b.time) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.file.cmp(&b.file)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.file.cmp(&b.file),
    });
}
