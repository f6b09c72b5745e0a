//! `metal-guard ack`: acknowledge a lockout (touches `~/.metal-guard-ack`).

use super::outcome::{CommandError, CommandResult, Outcome};
use metal_guard_core::forensics;
use metal_guard_core::gates::{ack, cooldown};
use metal_guard_core::timefmt;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, output: super::shared_args::JsonOutput) -> CommandResult {
    let now = time::OffsetDateTime::now_utc();
    let path = ack::ack_path();
    match ack::write_ack(&path, now) {
        Ok(w) => {
            if let Some(w) = w {
                eprintln!("{w}");
            }
        }
        Err(e) => {
            return Err(CommandError::failed(format!(
                "cannot write the acknowledgement {} ({e})",
                path.display()
            ))
            .hint("check that your home directory is writable"));
        }
    }
    let verdict = cooldown::current_verdict(&forensics::report_dirs(&[]));
    if output.json {
        // The Python tool's keys (`ack_path`, `status`), then ours.
        let gate = match &verdict {
            Ok(v) => serde_json::json!({"exit_code": v.exit_code, "reason": v.reason}),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        let body = serde_json::json!({
            "ack_path": path.to_string_lossy(),
            "status": "touched",
            "acknowledged_at": timefmt::iso(now),
            "gate": gate,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("JSON serializes")
        );
        return Ok(Outcome::Proceed);
    }
    println!(
        "Lockout acknowledged at {} (valid 24 h, for the panics seen so far).",
        timefmt::human(now)
    );
    match verdict {
        Ok(v) if v.allows_run() => println!("The gate now says: proceed."),
        Ok(v) => println!(
            "The gate still says: {}{}",
            v.reason,
            v.cooldown_until
                .map(|u| format!(" (until {})", timefmt::human(u)))
                .unwrap_or_default()
        ),
        Err(e) => eprintln!("metal-guard: warning: could not re-check the gate: {e}"),
    }
    Ok(Outcome::Proceed)
}
