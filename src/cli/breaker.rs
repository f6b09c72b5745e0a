//! `metal-guard breaker [status|clear]`: the circuit breaker
//! (2 panics within 3600 s trip a 3600 s cooldown).

use super::exit;
use metal_guard_core::forensics;
use metal_guard_core::gates::breaker::{self, BreakerPolicy};
use metal_guard_core::gates::cooldown;
use metal_guard_core::timefmt;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Print the breaker state as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Action {
    /// Show whether the breaker is tripped (default). Exit 2 when tripped.
    Status,
    /// Reset the breaker: panics up to now no longer trip it.
    Clear,
}

pub fn run(args: Args) -> ExitCode {
    let path = breaker::breaker_path();
    match args.action.unwrap_or(Action::Status) {
        Action::Clear => {
            let now = time::OffsetDateTime::now_utc();
            match breaker::clear_breaker(&path, &BreakerPolicy::default(), now) {
                Ok(w) => {
                    if let Some(w) = w {
                        eprintln!("{w}");
                    }
                    println!("Circuit breaker cleared at {}.", timefmt::human(now));
                    ExitCode::from(exit::OK)
                }
                Err(e) => {
                    eprintln!("metal-guard: cannot clear the breaker: {e}");
                    ExitCode::from(exit::GATE_FAILED)
                }
            }
        }
        Action::Status => match cooldown::current_verdict(&forensics::report_dirs(&[])) {
            Ok(v) => {
                for w in &v.warnings {
                    eprintln!("{w}");
                }
                let b = &v.breaker;
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(b).expect("breaker serializes")
                    );
                } else if b.tripped {
                    println!(
                        "Circuit breaker TRIPPED: {} panics within {} s; cooling down until {}.\n  to clear: wait, or run `metal-guard breaker clear`",
                        b.panic_count,
                        b.window_sec,
                        b.cooldown_until.map(timefmt::human).unwrap_or_default()
                    );
                } else {
                    println!(
                        "Circuit breaker closed ({} panics within {} s trip a {} s cooldown).",
                        b.threshold, b.window_sec, b.cooldown_sec
                    );
                }
                ExitCode::from(if b.tripped { exit::BLOCKED } else { exit::OK })
            }
            Err(e) => {
                eprintln!("metal-guard: gate failed: {e}");
                ExitCode::from(exit::GATE_FAILED)
            }
        },
    }
}
