//! `metal-guard ack`: acknowledge a lockout (touches `~/.metal-guard-ack`).

use super::exit;
use metal_guard_core::forensics;
use metal_guard_core::gates::{ack, cooldown};
use metal_guard_core::timefmt;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    let now = time::OffsetDateTime::now_utc();
    let path = ack::ack_path();
    match ack::write_ack(&path, now) {
        Ok(w) => {
            if let Some(w) = w {
                eprintln!("{w}");
            }
        }
        Err(e) => {
            eprintln!("metal-guard: cannot write the acknowledgement {} ({e}); check that your home directory is writable", path.display());
            return ExitCode::from(exit::GATE_FAILED);
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
    ExitCode::from(exit::OK)
}
