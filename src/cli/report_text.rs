//! Panic reports rendered for a person whose Mac just restarted: short,
//! plain words, what to do next. Shared by `diagnose` and the wizard.

use metal_guard_core::forensics::{explain, PanicReport, PanicSignature, SkippedFile};
use std::fmt::Write as _;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

/// `2026-04-24 13:44 UTC (3 days ago)`, or `time unknown`.
pub fn when(time: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(t) = time else {
        return "time unknown".to_string();
    };
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    );
    format!("{stamp} ({})", ago(now - t))
}

/// `5 minutes ago`, `3 hours ago`, `2 days ago`, `in the future` (clock skew).
fn ago(elapsed: Duration) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    if elapsed.is_negative() {
        "in the future: check the clock".to_string()
    } else if elapsed < Duration::minutes(1) {
        "just now".to_string()
    } else if elapsed < Duration::hours(1) {
        plural(elapsed.whole_minutes(), "minute")
    } else if elapsed < Duration::days(2) {
        plural(elapsed.whole_hours(), "hour")
    } else {
        plural(elapsed.whole_days(), "day")
    }
}

/// The facts line: `IOGPUMemory.cpp:550 · IOGPUFamily 130.13 · macOS build 25E253 · T6041`.
fn facts_line(report: &PanicReport) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(s) = &report.source_line {
        parts.push(s.clone());
    }
    if let Some(v) = &report.iogpu_family {
        parts.push(format!("IOGPUFamily {v}"));
    }
    if let Some(b) = &report.os_build {
        parts.push(format!("macOS build {b}"));
    }
    if let Some(m) = &report.machine {
        parts.push(m.clone());
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn process_line(report: &PanicReport) -> Option<String> {
    match (&report.process, report.pid) {
        (Some(p), Some(pid)) => Some(format!("{p} (pid {pid})")),
        (Some(p), None) => Some(p.clone()),
        (None, Some(pid)) => Some(format!("pid {pid}")),
        (None, None) => None,
    }
}

/// One report as a numbered block. The full explanation is printed for the
/// first report of each signature; later ones point back to it.
pub fn render_report(
    out: &mut String,
    index: usize,
    report: &PanicReport,
    explained: &mut Vec<(PanicSignature, usize)>,
    now: OffsetDateTime,
) {
    let when = when(report.time, now);
    let _ = match report.signature {
        Some(sig) => writeln!(
            out,
            "{index}. {when}: Apple GPU driver panic ({})",
            sig.as_str()
        ),
        None => writeln!(
            out,
            "{index}. {when}: a kernel panic NOT caused by the GPU driver"
        ),
    };
    let _ = writeln!(out, "   File:     {}", report.file.display());
    if let Some(facts) = facts_line(report) {
        let _ = writeln!(out, "   Details:  {facts}");
    }
    if let Some(process) = process_line(report) {
        let _ = writeln!(out, "   Process:  {process}");
    }
    let Some(sig) = report.signature else {
        if let Some(line) = &report.panic_line {
            let _ = writeln!(out, "   Panic:    {line}");
        }
        let _ = writeln!(
            out,
            "   This one is not the MLX/GPU-driver bug metal-guard protects against; it does not start a cooldown."
        );
        return;
    };
    if let Some((_, first)) = explained.iter().find(|(s, _)| *s == sig) {
        let _ = writeln!(
            out,
            "   Same driver bug as #{first}; see the explanation there."
        );
        return;
    }
    explained.push((sig, index));
    let e = explain(sig);
    let _ = writeln!(out);
    let _ = writeln!(out, "   {}", e.headline);
    let _ = writeln!(out, "   What happened: {}", e.what_happened);
    let _ = writeln!(out, "   Likely trigger: {}", e.likely_triggers);
    let _ = writeln!(out, "   What to do now:");
    for (n, step) in e.what_to_do.iter().enumerate() {
        let _ = writeln!(out, "     {}. {step}", n + 1);
    }
    let _ = writeln!(out, "   Tracked upstream: {}", e.upstream.join(", "));
}

/// `skipped PATH: reason`, one line each (for stderr).
pub fn skipped_lines(skipped: &[SkippedFile]) -> String {
    skipped
        .iter()
        .map(|s| format!("metal-guard: skipped {}: {}\n", s.path.display(), s.reason))
        .collect()
}

/// `/a, /b and /c`.
pub fn dir_list(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    match shown.len() {
        0 => "(no folders)".to_string(),
        1 => shown[0].clone(),
        n => format!("{} and {}", shown[..n - 1].join(", "), shown[n - 1]),
    }
}

/// A sentence about skipped files, or nothing when none were skipped.
pub fn skipped_note(skipped: &[SkippedFile]) -> String {
    match skipped.len() {
        0 => String::new(),
        1 => "1 file or folder could not be read; the line above says why.\n".to_string(),
        n => format!("{n} files or folders could not be read; the lines above say why.\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(ago(Duration::seconds(5)), "just now");
        assert_eq!(ago(Duration::minutes(1)), "1 minute ago");
        assert_eq!(ago(Duration::hours(3)), "3 hours ago");
        assert_eq!(ago(Duration::days(9)), "9 days ago");
        assert_eq!(
            ago(Duration::seconds(-60)),
            "in the future: check the clock"
        );
    }
}
