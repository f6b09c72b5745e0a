//! `metal-guard panic-gate`: the cooldown verdict as an exit code
//! (0 proceed, 2 cooldown or lockout, 3 the gate itself failed).

use super::exit;
use metal_guard_core::forensics;
use metal_guard_core::gates::cooldown::{self, CooldownVerdict, VerdictKind};
use metal_guard_core::timefmt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the verdict as JSON (keys: exit_code, reason, recent_panics_24h,
    /// recent_panics_72h, cooldown_until, and more).
    #[arg(long)]
    pub json: bool,
    /// Folder of panic reports to read instead of the macOS defaults (repeatable).
    #[arg(long = "reports", value_name = "DIR")]
    pub reports: Vec<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let dirs = forensics::report_dirs(&args.reports);
    match cooldown::current_verdict(&dirs) {
        Ok(v) => {
            for w in &v.warnings {
                eprintln!("{w}");
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("verdict serializes")
                );
            } else {
                print!("{}", human(&v));
            }
            ExitCode::from(v.exit_code)
        }
        Err(e) => {
            if args.json {
                let body = serde_json::json!({
                    "exit_code": exit::GATE_FAILED,
                    "reason": format!("gate failed: {e}"),
                    "recent_panics_24h": null,
                    "recent_panics_72h": null,
                    "cooldown_until": null,
                    "kind": "gate_failed",
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).expect("JSON serializes")
                );
            } else {
                eprintln!("metal-guard: gate failed: {e}");
            }
            ExitCode::from(exit::GATE_FAILED)
        }
    }
}

/// The verdict for a person: what, why, until when, how to clear.
pub fn human(v: &CooldownVerdict) -> String {
    let head = match v.kind {
        VerdictKind::Proceed => "PROCEED",
        VerdictKind::Cooldown => "COOLDOWN: MLX runs are paused",
        VerdictKind::Lockout => "LOCKOUT: MLX runs are paused",
        VerdictKind::Disabled => "PROCEED (gate disabled)",
    };
    let mut out = format!("metal-guard panic-gate: {head}\n  why: {}\n", v.reason);
    if let Some(until) = v.cooldown_until {
        out.push_str(&format!(
            "  until: {} (in {})\n",
            timefmt::human(until),
            timefmt::human_duration(until - v.evaluated_at)
        ));
    }
    if let Some(how) = &v.how_to_clear {
        out.push_str(&format!("  to clear: {how}\n"));
    }
    out.push_str(&format!(
        "  IOGPU panics: {} in 24 h, {} in 72 h\n",
        v.recent_panics_24h, v.recent_panics_72h
    ));
    out
}
