//! `metal-guard status [--json]`: the whole picture; the exit code follows
//! the verdict (0 proceed, 2 cooldown or lockout, 3 the gate failed).

use super::outcome::{CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::exit_status;
use metal_guard_core::registry::AdvisoryMatch;
use metal_guard_core::status::{self, StatusSnapshot};
use metal_guard_core::timefmt;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub reports: ReportFolders,
    /// How many breadcrumb lines to show.
    #[arg(long, default_value_t = 20)]
    pub breadcrumbs: usize,
}

/// The status document on stdout (also what the Python tool's `panics`,
/// `mode` and `breadcrumb` print with `--json`).
pub fn print_json(reports: &ReportFolders, breadcrumb_lines: usize) -> CommandResult {
    let snap = status::capture(&reports.dirs(), breadcrumb_lines);
    println!(
        "{}",
        serde_json::to_string_pretty(&snap).expect("the snapshot serializes")
    );
    Ok(verdict_outcome(snap.exit_code))
}

fn verdict_outcome(exit_code: u8) -> Outcome {
    match exit_code {
        exit_status::SUCCESS => Outcome::Proceed,
        exit_status::GATE_BLOCKED => Outcome::Blocked(None),
        other => Outcome::External(other),
    }
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    if output.json {
        return print_json(&args.reports, args.breadcrumbs);
    }
    let snap = status::capture(&args.reports.dirs(), args.breadcrumbs);
    snap.warnings.emit();
    print!("{}", human(&snap));
    // The exit status follows the verdict; a gate that failed is status 3
    // after the snapshot was shown (its error is in the snapshot).
    Ok(verdict_outcome(snap.exit_code))
}

fn gib(bytes: u64) -> String {
    format!("{:.0} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The snapshot for a person.
pub fn human(s: &StatusSnapshot) -> String {
    let mut out = String::new();
    let headline = match (&s.verdict, &s.gate_error) {
        (Some(v), _) => match v.exit_code {
            0 => "OK".to_string(),
            _ => format!("{:?}", v.kind).to_uppercase(),
        },
        (None, _) => "GATE FAILED".to_string(),
    };
    out.push_str(&format!("metal-guard {}  {headline}\n", s.version));
    out.push_str(&format!("  mode         {}\n", s.mode.current));
    match (&s.verdict, &s.gate_error) {
        (Some(v), _) => {
            out.push_str(&format!("  gate         {}\n", v.reason));
            if let Some(u) = v.cooldown_until {
                out.push_str(&format!("  until        {}\n", timefmt::human(u)));
            }
            if let Some(h) = &v.how_to_clear {
                out.push_str(&format!("  to clear     {h}\n"));
            }
            out.push_str(&format!(
                "  breaker      {}\n",
                if v.breaker.tripped {
                    format!(
                        "TRIPPED until {}",
                        v.breaker
                            .cooldown_until
                            .map(timefmt::human)
                            .unwrap_or_default()
                    )
                } else {
                    "closed".to_string()
                }
            ));
            out.push_str(&format!(
                "  panics       {} IOGPU in the last 72 h ({} in 24 h)\n",
                v.recent_panics_72h, v.recent_panics_24h
            ));
            for p in v.panics.iter().take(5) {
                out.push_str(&format!(
                    "               {}  {}  {}\n",
                    timefmt::human(p.time),
                    p.signature,
                    p.source
                ));
            }
        }
        (None, Some(e)) => out.push_str(&format!("  gate         FAILED: {e}\n")),
        (None, None) => {}
    }
    let lock = match (&s.lock.held, &s.lock.record) {
        (true, Some(r)) => format!("held by pid {} ({})", r.pid, r.label),
        (true, None) => "held (no holder record)".to_string(),
        (false, Some(r)) => format!("free (stale record of pid {})", r.pid),
        (false, None) => "free".to_string(),
    };
    out.push_str(&format!("  mlx lock     {lock}\n"));
    let shells: Vec<String> = s
        .shell_guard
        .shells
        .iter()
        .filter(|g| g.installed || g.damaged)
        .map(|g| {
            format!(
                "{}{}",
                g.shell.name(),
                if g.damaged { " (DAMAGED block)" } else { "" }
            )
        })
        .collect();
    out.push_str(&format!(
        "  shell guard  {}{}\n",
        if shells.is_empty() {
            "not installed (metal-guard guard install)".to_string()
        } else {
            format!("installed: {}", shells.join(", "))
        },
        if s.shell_guard.disabled_by_env {
            "; disabled by METALGUARD_SHELL_GUARD_DISABLED"
        } else {
            ""
        }
    ));
    let h = &s.hardware;
    let hw = match (&h.chip, h.memory_bytes) {
        (Some(c), Some(m)) => format!(
            "{c}, {}, {}{}",
            gib(m),
            h.gpu_family.as_deref().unwrap_or("unknown GPU family"),
            h.macos_build
                .as_deref()
                .map(|b| format!(
                    ", macOS {} ({b})",
                    h.macos_version.as_deref().unwrap_or("?")
                ))
                .unwrap_or_default()
        ),
        _ => h
            .unavailable
            .get("chip")
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
    };
    out.push_str(&format!("  hardware     {hw}\n"));
    if let Some(a) = &h.wired_limit_audit {
        if a.flagged {
            out.push_str(&format!("  WIRED LIMIT  {}\n", a.message));
        }
    }
    let affected: Vec<String> = s
        .advisories
        .iter()
        .filter_map(|r| match &r.matched {
            AdvisoryMatch::Affected { installed } => Some(format!(
                "{} {installed} ({}): {}",
                r.advisory.package, r.advisory.issue, r.advisory.summary
            )),
            _ => None,
        })
        .collect();
    if affected.is_empty() {
        out.push_str("  advisories   none apply to the installed versions (metal-guard models)\n");
    } else {
        for a in affected {
            out.push_str(&format!("  ADVISORY     {a}\n"));
        }
    }
    for o in &s.orphans {
        out.push_str(&format!(
            "  ORPHAN       {} started {} s ago and never finished (pid {})\n",
            o.model_id,
            o.age_sec,
            o.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ));
    }
    if !s.breadcrumbs.last.is_empty() {
        out.push_str(&format!(
            "  breadcrumbs  {}\n",
            s.breadcrumbs.path.display()
        ));
        for l in s.breadcrumbs.last.iter().rev().take(5).rev() {
            out.push_str(&format!("               {l}\n"));
        }
    }
    out
}
