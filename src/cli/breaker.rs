//! `metal-guard breaker [status|clear]`: the circuit breaker
//! (2 panics within 3600 s trip a 3600 s cooldown).

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::gates::breaker::{self, BreakerPolicy};
use metal_guard_core::gates::cooldown;
use metal_guard_core::timefmt;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Action {
    /// Show whether the breaker is tripped (default). Exit 2 when tripped.
    Status,
    /// Reset the breaker: panics up to now no longer trip it.
    Clear,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
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
                    Ok(Outcome::Proceed)
                }
                Err(e) => Err(CommandError::failed(format!(
                    "cannot clear the breaker: {e}"
                ))),
            }
        }
        Action::Status => match cooldown::current_verdict(&ReportFolders::default().dirs()) {
            Ok(v) => {
                v.warnings.emit();
                let b = &v.breaker;
                if output.json {
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
                Ok(if b.tripped {
                    Outcome::Blocked(None)
                } else {
                    Outcome::Proceed
                })
            }
            Err(e) => Err(CommandError::failed(format!("gate failed: {e}"))),
        },
    }
}
