//! `metal-guard diagnose`: every panic report in the window, newest first,
//! with its signature and a plain-words explanation.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::report_text::{dir_list, render_report, skipped_lines, skipped_note};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::forensics::{
    panic_ledger, scan_reports, PanicReport, ReportScan, ScanOutcome, SkippedFile,
};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

const EXIT_CODES: &str = "Exit codes:\n  0   the scan ran (whether or not panics were found; unreadable files are listed as skipped)\n  3   internal error: the JSON output could not be produced (the message says why)\n  64  bad usage (unknown flag, --since not a positive number of hours)";

/// Find and explain the kernel panics on this Mac.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Find macOS kernel panic reports (.panic and .ips), tell which ones were caused by Apple's GPU driver (IOGPUFamily) and explain each in plain words.\n\nWithout --reports it reads /Library/Logs/DiagnosticReports (and Retired/), ~/Library/Logs/DiagnosticReports and /var/db/PanicReporter, or the colon-separated folders in METALGUARD_PANIC_REPORT_DIRS. GPU-driver panics found in those places are recorded once in ~/.cache/metal-guard/panics.jsonl.",
    after_help = EXIT_CODES
)]
pub struct Args {
    #[command(flatten)]
    pub reports: ReportFolders,
    /// Only panics from the last HOURS hours (fractions allowed).
    #[arg(long, value_name = "HOURS", value_parser = parse_hours)]
    pub since: Option<f64>,
}

fn parse_hours(value: &str) -> Result<f64, String> {
    let hours: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of hours (try --since 24)"))?;
    if !hours.is_finite() || hours <= 0.0 || hours > 24.0 * 365.0 * 100.0 {
        return Err(format!(
            "`{value}` must be a positive number of hours (try --since 24)"
        ));
    }
    Ok(hours)
}

/// One report in `--json` output: the report's fields plus its explanation.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a PanicReport,
    /// Plain-words explanation; null for panics that are not IOGPU panics.
    explanation: Option<String>,
    /// Upstream issues for this signature (empty for non-IOGPU panics).
    upstream: &'a [&'a str],
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    reports: Vec<JsonReport<'a>>,
    skipped: &'a [SkippedFile],
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    let now = OffsetDateTime::now_utc();
    let dirs = args.reports.dirs();
    let since = args.since.map(|h| now - Duration::seconds_f64(h * 3600.0));
    let outcome = scan_reports(&ReportScan {
        dirs: dirs.clone(),
        since,
    });

    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(skipped_lines(&outcome.skipped).as_bytes());
    // The history is kept for the Mac's own reports, never for example or
    // copied folders passed with --reports.
    if args.reports.are_the_macs_own() {
        record_in_ledger(&outcome, now, &mut stderr);
    }
    drop(stderr);

    let text = if output.json {
        json_output(&outcome).map_err(|e| {
            CommandError::failed(format!("cannot produce the JSON output ({e})"))
                .hint("run without --json to see the reports")
        })?
    } else {
        human_output(&outcome, &dirs, args.since, now)
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
    Ok(Outcome::Proceed)
}

/// Adds the IOGPU panics to `panics.jsonl`; problems become one warning line.
pub fn record_in_ledger(outcome: &ScanOutcome, now: OffsetDateTime, stderr: &mut impl Write) {
    let path = panic_ledger::ledger_path();
    match panic_ledger::ingest(&path, &outcome.reports, now) {
        Ok(result) => {
            for warning in result.warnings {
                let _ = writeln!(stderr, "{warning}");
            }
        }
        Err(e) => {
            let _ = writeln!(
                stderr,
                "metal-guard: warning: could not record panics in {} ({e}); the listing below is unaffected",
                path.display()
            );
        }
    }
}

fn json_output(outcome: &ScanOutcome) -> Result<String, serde_json::Error> {
    let reports = outcome
        .reports
        .iter()
        .map(|report| {
            let explanation = report.explanation();
            JsonReport {
                report,
                explanation: explanation.as_ref().map(|e| e.plain_text()),
                upstream: explanation.map(|e| e.upstream).unwrap_or(&[]),
            }
        })
        .collect();
    let output = JsonDocument {
        reports,
        skipped: &outcome.skipped,
    };
    serde_json::to_string_pretty(&output).map(|mut s| {
        s.push('\n');
        s
    })
}

fn human_output(
    outcome: &ScanOutcome,
    dirs: &[PathBuf],
    since_hours: Option<f64>,
    now: OffsetDateTime,
) -> String {
    let window = match since_hours {
        Some(h) => format!(" from the last {h} hours"),
        None => String::new(),
    };
    let mut out = String::new();
    if outcome.reports.is_empty() {
        out.push_str(&format!(
            "No kernel panic reports{window} found in {}.\n",
            dir_list(dirs)
        ));
        out.push_str(&skipped_note(&outcome.skipped));
        out.push_str("Nothing here points at the GPU driver bug. If your Mac did restart on its own, macOS may not have written a report yet (it does so a minute or two after login), or the report is in a folder only an administrator can read: try `sudo metal-guard diagnose`.\n");
        return out;
    }
    let iogpu = outcome.iogpu_reports().count();
    let total = outcome.reports.len();
    out.push_str(&format!(
        "Found {total} kernel panic report{}{window} in {}: {iogpu} caused by Apple's GPU driver (IOGPUFamily), {} by something else. Newest first.\n\n",
        if total == 1 { "" } else { "s" },
        dir_list(dirs),
        total - iogpu
    ));
    out.push_str(&skipped_note(&outcome.skipped));
    if !outcome.skipped.is_empty() {
        out.push('\n');
    }
    let mut explained = Vec::new();
    for (i, report) in outcome.reports.iter().enumerate() {
        render_report(&mut out, i + 1, report, &mut explained, now);
        out.push('\n');
    }
    if iogpu > 0 {
        out.push_str("Your data is fine: a kernel panic stops the machine, it does not damage files that were already saved.\n");
        out.push_str("Next: `metal-guard panic-gate` tells you whether it is safe to start MLX again, and `metal-guard guard install` keeps interactive python runs paused during a cooldown.\n");
    } else {
        out.push_str(
            "None of these came from the GPU driver bug that metal-guard protects against.\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_must_be_positive_numbers() {
        assert_eq!(parse_hours("24"), Ok(24.0));
        assert_eq!(parse_hours("0.5"), Ok(0.5));
        for bad in ["0", "-3", "abc", "NaN", "inf", ""] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
    }
}
