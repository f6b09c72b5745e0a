//! Where the verdict's panics come from: the panic reports on disk (through
//! `forensics`, every IOGPU signature, `.panic` and `.ips` alike) and the
//! de-duplicated ledger `~/.cache/metal-guard/panics.jsonl`, which keeps a
//! panic after its report has rotated away.

use crate::forensics::{panic_ledger, scan_reports, ReportScan};
use crate::timefmt;
use crate::warnings::Warnings;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// One IOGPU panic as the verdict counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PanicEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Signature name (`prepare_count_underflow`, ...).
    pub signature: String,
    /// Where it was seen: a report file or the ledger.
    pub source: String,
}

/// Why the gate could not decide.
#[derive(Debug)]
pub enum GateError {
    /// A report directory exists but cannot be listed: a panic may be hiding there.
    ReportsUnreadable { dir: PathBuf, cause: std::io::Error },
}

impl std::fmt::Display for GateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateError::ReportsUnreadable { dir, cause } => write!(
                f,
                "cannot list panic reports in {} ({cause}); fix its permissions or pass readable folders with `metal-guard panic-gate --reports DIR`",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for GateError {}

/// Whether `path` (a report directory) exists but cannot be listed.
pub fn check_listable(path: &Path) -> Result<(), GateError> {
    match std::fs::read_dir(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(()),
        Err(cause) => Err(GateError::ReportsUnreadable {
            dir: path.to_path_buf(),
            cause,
        }),
    }
}

/// IOGPU panics in `dirs` newer than `since`. A report without a time of its
/// own is placed at its file's modification time. A directory that exists
/// but cannot be listed is an error: a panic could be hiding in it. IOGPU
/// reports found are recorded in the ledger at `ledger` (de-duplicated), so
/// they keep counting after the report files rotate away.
pub fn reports_since(
    dirs: &[PathBuf],
    since: OffsetDateTime,
    now: OffsetDateTime,
    ledger: &Path,
    warnings: &mut Warnings,
) -> Result<Vec<PanicEvent>, GateError> {
    for d in dirs {
        check_listable(d)?;
    }
    let outcome = scan_reports(&ReportScan {
        dirs: dirs.to_vec(),
        since: Some(since),
    });
    // A folder that is missing or unusable (a typo in --reports) must not
    // pass silently as "no panics".
    for skipped in outcome.skipped.iter().filter(|s| dirs.contains(&s.path)) {
        warnings.push(format!(
            "metal-guard: warning: report folder {}: {}",
            skipped.path.display(),
            skipped.reason
        ));
    }
    let iogpu: Vec<_> = outcome.iogpu_reports().cloned().collect();
    if !iogpu.is_empty() {
        match panic_ledger::ingest(ledger, &iogpu, now) {
            Ok(o) => warnings.extend(o.warnings),
            Err(e) => warnings.push(format!(
                "metal-guard: warning: could not record panics in {} ({e})",
                ledger.display()
            )),
        }
    }
    let mut events = Vec::new();
    for report in &outcome.reports {
        let Some(signature) = report.signature else {
            continue;
        };
        let time = report.time.or_else(|| {
            std::fs::metadata(&report.file)
                .ok()
                .and_then(|m| timefmt::mtime(&m))
        });
        let Some(time) = time else {
            warnings.push(format!(
                "metal-guard: warning: {} is an IOGPU panic with no readable time; it is not counted",
                report.file.display()
            ));
            continue;
        };
        if time < since {
            continue;
        }
        events.push(PanicEvent {
            time,
            signature: signature.as_str().to_string(),
            source: report.file.display().to_string(),
        });
    }
    Ok(events)
}

/// Panics recorded in the ledger newer than `since` (a missing ledger is
/// simply empty; damaged lines are warnings).
pub fn ledger_since(
    path: &Path,
    since: OffsetDateTime,
    warnings: &mut Warnings,
) -> Vec<PanicEvent> {
    let (recorded, w) = panic_ledger::recorded_panics(path);
    warnings.extend(w);
    recorded
        .into_iter()
        .filter(|p| p.time >= since)
        .map(|p| PanicEvent {
            time: p.time,
            signature: p.signature.unwrap_or_else(|| "iogpu_other".to_string()),
            source: p
                .source_file
                .map(|f| format!("{f} (ledger)"))
                .unwrap_or_else(|| format!("{} (ledger)", path.display())),
        })
        .collect()
}

/// The same panic seen twice (its report and its ledger record, or a report
/// Apple moved into `Retired/`): same signature within 2 s. Sorts oldest
/// first and keeps one of each.
pub fn dedup_panics(events: &mut Vec<PanicEvent>) {
    events.sort_by(|a, b| a.time.cmp(&b.time).then(a.signature.cmp(&b.signature)));
    events.dedup_by(|b, a| {
        (b.time - a.time).abs() <= time::Duration::seconds(2) && a.signature == b.signature
    });
}

/// Every IOGPU panic since `since`: reports and ledger merged, each once,
/// oldest first (what `metal-guard panics` lists).
pub fn panics_since(
    dirs: &[PathBuf],
    since: OffsetDateTime,
    now: OffsetDateTime,
    ledger: &Path,
    warnings: &mut Warnings,
) -> Result<Vec<PanicEvent>, GateError> {
    let mut events = reports_since(dirs, since, now, ledger, warnings)?;
    events.extend(ledger_since(ledger, since, warnings));
    dedup_panics(&mut events);
    Ok(events)
}
