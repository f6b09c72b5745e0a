//! `metal-guard ack`: acknowledge a lockout (touches `~/.metal-guard-ack`).

use super::outcome::{CommandError, CommandResult, Outcome};
use metal_guard_core::forensics;
use metal_guard_core::gates::{ack, cooldown};
use metal_guard_core::timefmt;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> CommandResult {
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
    println!(
        "Lockout acknowledged at {} (valid 24 h, for the panics seen so far).",
        timefmt::human(now)
    );
    match cooldown::current_verdict(&forensics::report_dirs(&[])) {
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
