//! `metal-guard panic-gate`: the cooldown verdict as an exit code
//! (0 proceed, 2 cooldown or lockout, 3 the gate itself failed).

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::exit_status;
use metal_guard_core::gates::cooldown::{self, CooldownVerdict, VerdictKind};
use metal_guard_core::timefmt;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub reports: ReportFolders,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    let dirs = args.reports.dirs();
    match cooldown::current_verdict(&dirs) {
        Ok(v) => {
            v.warnings.emit();
            if output.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("verdict serializes")
                );
            } else {
                print!("{}", human(&v));
            }
            Ok(if v.allows_run() {
                Outcome::Proceed
            } else {
                Outcome::Blocked(None)
            })
        }
        Err(e) => {
            let error = CommandError::failed(format!("gate failed: {e}"));
            if output.json {
                let body = serde_json::json!({
                    "exit_code": exit_status::COULD_NOT_ANSWER,
                    "reason": format!("gate failed: {e}"),
                    "recent_panics_24h": null,
                    "recent_panics_72h": null,
                    "cooldown_until": null,
                    "kind": "gate_failed",
                });
                Err(error.json_body(body))
            } else {
                Err(error)
            }
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
