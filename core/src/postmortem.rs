//! The postmortem bundle: after a panic and reboot, everything needed to
//! understand it and report it upstream, in one folder with an `index.md`
//! that says what to look at. When it finds an IOGPU panic it also writes
//! the panic sentinel, so the cooldown holds even after the reports rotate.

use crate::forensics::{self, explain, PanicReport, ReportScan};
use crate::gates::sentinel;
use crate::warnings::Warnings;
use crate::{env_vars, timefmt};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Reports copied at most.
pub const MAX_REPORTS: usize = 10;
/// Each copied report is cut at this size.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;
/// Breadcrumb lines copied.
pub const BREADCRUMB_TAIL_LINES: usize = 500;
/// Default sentinel length, hours (`METALGUARD_POSTMORTEM_SENTINEL_H`).
pub const DEFAULT_SENTINEL_H: f64 = 2.0;

/// What the bundle holds.
#[derive(Debug, Clone, Serialize)]
pub struct PostmortemSummary {
    #[serde(serialize_with = "crate::paths::lossy::path")]
    pub dir: PathBuf,
    pub iogpu_panics_found: usize,
    #[serde(serialize_with = "crate::paths::lossy::list")]
    pub reports_copied: Vec<PathBuf>,
    #[serde(serialize_with = "crate::paths::lossy::list")]
    pub truncated: Vec<PathBuf>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sentinel_until: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::paths::lossy::list")]
    pub files: Vec<PathBuf>,
    pub warnings: Warnings,
}

fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    files: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let p = dir.join(name);
    crate::state::atomic_file::write_atomic(&p, bytes)?;
    files.push(p);
    Ok(())
}

/// Builds the bundle in `dir` from reports in `report_dirs` newer than `window`.
pub fn run_postmortem(
    dir: &Path,
    report_dirs: &[PathBuf],
    window: Duration,
    now: OffsetDateTime,
) -> std::io::Result<PostmortemSummary> {
    if dir.exists() && !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a folder; pick another place",
                dir.display()
            ),
        ));
    }
    crate::state::atomic_file::ensure_private_dir(dir)?;
    let mut warnings = Warnings::new();
    let mut files = Vec::new();

    let scan = forensics::scan_reports(&ReportScan {
        dirs: report_dirs.to_vec(),
        since: Some(now - window),
    });
    let iogpu: Vec<&PanicReport> = scan.iogpu_reports().collect();
    let reports_dir = dir.join("reports");
    let mut copied = Vec::new();
    let mut truncated = Vec::new();
    for r in iogpu.iter().take(MAX_REPORTS) {
        let Ok(bytes) = std::fs::read(&r.file) else {
            warnings.push(format!("could not read {}", r.file.display()));
            continue;
        };
        let name = r
            .file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut out = bytes.clone();
        if out.len() > MAX_REPORT_BYTES {
            out.truncate(MAX_REPORT_BYTES);
            out.extend_from_slice(
                format!("\n\n[metal-guard: cut at {MAX_REPORT_BYTES} bytes of {}; the original is {}]\n", bytes.len(), r.file.display())
                    .as_bytes(),
            );
            truncated.push(reports_dir.join(&name));
        }
        crate::state::atomic_file::ensure_private_dir(&reports_dir)?;
        write_file(&reports_dir, &name, &out, &mut files)?;
        copied.push(reports_dir.join(&name));
    }
    write_file(
        dir,
        "reports.json",
        &serde_json::to_vec_pretty(&scan).expect("scan serializes"),
        &mut files,
    )?;

    let bc_path = crate::breadcrumbs::breadcrumb_path();
    let bc = crate::status::breadcrumb_tail(&bc_path, BREADCRUMB_TAIL_LINES, &mut warnings);
    write_file(
        dir,
        "breadcrumbs-tail.log",
        (bc.join("\n") + "\n").as_bytes(),
        &mut files,
    )?;
    let ledger = crate::forensics::panic_ledger::ledger_path();
    let ledger_text = crate::orphans::read_tail_text(&ledger, 1024 * 1024).unwrap_or_default();
    write_file(dir, "panics.jsonl", ledger_text.as_bytes(), &mut files)?;

    let mut sentinel_until = None;
    if let Some(latest) = iogpu.first() {
        let hours = env_vars::positive_hours(
            &env_vars::process_env,
            "METALGUARD_POSTMORTEM_SENTINEL_H",
            DEFAULT_SENTINEL_H,
            &mut warnings,
        );
        let until = now + Duration::seconds_f64(hours * 3600.0);
        let reason = format!(
            "postmortem found {} IOGPU panic(s), latest {} at {}",
            iogpu.len(),
            latest.signature.map(|s| s.as_str()).unwrap_or("iogpu"),
            latest
                .time
                .map(timefmt::human)
                .unwrap_or_else(|| "an unknown time".into())
        );
        match sentinel::write_sentinel(&sentinel::sentinel_path(), until, now, &reason) {
            Ok(w) => {
                warnings.extend(w);
                sentinel_until = Some(until);
            }
            Err(e) => warnings.push(format!("could not write the panic sentinel ({e})")),
        }
    }

    // Status after the sentinel, so it shows the cooldown in force.
    let snap = crate::status::capture(report_dirs, 50);
    write_file(
        dir,
        "status.json",
        &serde_json::to_vec_pretty(&snap).expect("snapshot serializes"),
        &mut files,
    )?;
    write_file(
        dir,
        "hardware.json",
        &serde_json::to_vec_pretty(&snap.hardware).expect("hardware serializes"),
        &mut files,
    )?;
    write_file(
        dir,
        "orphans.json",
        &serde_json::to_vec_pretty(&snap.orphans).expect("orphans serialize"),
        &mut files,
    )?;

    let index = index_markdown(&iogpu, &snap, &copied, &truncated, sentinel_until, now);
    write_file(dir, "index.md", index.as_bytes(), &mut files)?;
    Ok(PostmortemSummary {
        dir: dir.to_path_buf(),
        iogpu_panics_found: iogpu.len(),
        reports_copied: copied,
        truncated,
        sentinel_until,
        files,
        warnings,
    })
}

fn index_markdown(
    iogpu: &[&PanicReport],
    snap: &crate::status::StatusSnapshot,
    copied: &[PathBuf],
    truncated: &[PathBuf],
    sentinel_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# metal-guard postmortem, {}\n", timefmt::human(now));
    if iogpu.is_empty() {
        let _ = writeln!(
            md,
            "No IOGPUFamily kernel panic was found in the report folders for this window."
        );
        let _ = writeln!(md, "If the Mac rebooted anyway, look at `reports.json` (every report found, with why others were skipped) and `breadcrumbs-tail.log` (what MLX was doing last).\n");
    } else {
        let _ = writeln!(md, "**{} IOGPUFamily kernel panic(s) found.** This is the Apple GPU driver bug metal-guard exists for.\n", iogpu.len());
        for r in iogpu {
            let sig = r.signature.expect("IOGPU reports have a signature");
            let e = explain(sig);
            let _ = writeln!(
                md,
                "## {} ({})\n",
                timefmt::human(r.time.unwrap_or(now)),
                sig.as_str()
            );
            let _ = writeln!(md, "- report: `{}`", r.file.display());
            if let Some(l) = &r.panic_line {
                let _ = writeln!(md, "- panic: `{l}`");
            }
            for (k, v) in [
                ("source line", &r.source_line),
                ("process", &r.process),
                ("macOS build", &r.os_build),
                ("IOGPUFamily", &r.iogpu_family),
                ("machine", &r.machine),
            ] {
                if let Some(v) = v {
                    let _ = writeln!(md, "- {k}: {v}");
                }
            }
            let _ = writeln!(md, "\n{} {}\n", e.headline, e.what_happened);
            let _ = writeln!(md, "Likely trigger: {}\n", e.likely_triggers);
        }
    }
    let _ = writeln!(md, "## What to look at\n");
    let _ = writeln!(
        md,
        "1. `reports/`: the IOGPU panic reports ({} copied{}).",
        copied.len(),
        if truncated.is_empty() {
            String::new()
        } else {
            format!(
                ", {} cut at {} KiB",
                truncated.len(),
                MAX_REPORT_BYTES / 1024
            )
        }
    );
    let _ = writeln!(md, "2. `breadcrumbs-tail.log`: the last {BREADCRUMB_TAIL_LINES} breadcrumbs; the last `SUBPROC_PRE` without a `SUBPROC_POST` is what the GPU was doing when the Mac went down (`orphans.json` lists them).");
    let _ = writeln!(md, "3. `status.json`: the gate verdict, lock, shell guard, installed MLX versions and advisories; `hardware.json`: chip, memory, wired limit.");
    let _ = writeln!(
        md,
        "4. `panics.jsonl`: every IOGPU panic metal-guard has recorded on this Mac.\n"
    );
    let _ = writeln!(md, "## Gate\n");
    match &snap.verdict {
        Some(v) => {
            let _ = writeln!(md, "{}", v.reason);
            if let Some(u) = v.cooldown_until {
                let _ = writeln!(md, "\nMLX runs are paused until {}.", timefmt::human(u));
            }
            if let Some(h) = &v.how_to_clear {
                let _ = writeln!(md, "To clear: {h}");
            }
        }
        None => {
            let _ = writeln!(
                md,
                "The gate could not decide: {}",
                snap.gate_error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    if let Some(u) = sentinel_until {
        let _ = writeln!(md, "\nThis postmortem set the panic sentinel: a cooldown until {} that holds even if the reports rotate away.", timefmt::human(u));
    }
    let _ = writeln!(md, "\n## Reporting it upstream\n");
    let _ = writeln!(md, "The bug is in Apple's driver; only Apple can fix it, and MLX can work around it. Before sharing anything, read the files: reports contain your Mac's serial-free identifiers, process names and paths.\n");
    let _ = writeln!(md, "- **Apple**: Feedback Assistant (`feedbackassistant.apple.com`), area *macOS > Graphics*. Attach the `.ips`/`.panic` file from `reports/`, say which MLX workload ran (from `breadcrumbs-tail.log`), and include the macOS build and IOGPUFamily version above.");
    let _ = writeln!(md, "- **MLX**: an issue at `github.com/ml-explore/mlx/issues` (or mlx-lm / mlx-vlm for model-specific runs) with the panic line, the signature name, chip and memory (`hardware.json`), MLX versions (`status.json` > installed), and the model id. Search for the signature name first: many are already tracked.");
    let upstream: Vec<&str> = iogpu
        .iter()
        .filter_map(|r| r.signature)
        .flat_map(|s| explain(s).upstream.iter().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !upstream.is_empty() {
        let _ = writeln!(
            md,
            "- Known upstream threads for these signatures: {}",
            upstream.join(", ")
        );
    }
    md
}
