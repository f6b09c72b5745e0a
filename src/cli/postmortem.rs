//! `metal-guard postmortem DIR`: collect the diagnostic bundle after a panic.

use super::exit;
use metal_guard_core::{env_vars, timefmt};
use metal_guard_core::{forensics, postmortem};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder to write the bundle into (created 0700).
    pub dir: PathBuf,
    /// Folder of panic reports to read instead of the macOS defaults (repeatable).
    #[arg(long = "reports", value_name = "DIR")]
    pub reports: Vec<PathBuf>,
    /// How far back to look for panic reports, hours.
    #[arg(long, default_value_t = 72)]
    pub hours: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    if env_vars::flag(&env_vars::process_env, "METALGUARD_POSTMORTEM_DISABLED") {
        println!("postmortem disabled by METALGUARD_POSTMORTEM_DISABLED; nothing written");
        return ExitCode::from(exit::OK);
    }
    let now = time::OffsetDateTime::now_utc();
    let dirs = forensics::report_dirs(&args.reports);
    match postmortem::run_postmortem(
        &args.dir,
        &dirs,
        time::Duration::hours(args.hours.into()),
        now,
    ) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("metal-guard: warning: {w}");
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("summary serializes")
                );
            } else {
                println!("Postmortem bundle written to {}", s.dir.display());
                println!(
                    "  IOGPU panics found: {} ({} report(s) copied)",
                    s.iogpu_panics_found,
                    s.reports_copied.len()
                );
                if let Some(u) = s.sentinel_until {
                    println!(
                        "  panic sentinel set: MLX runs pause until {}",
                        timefmt::human(u)
                    );
                }
                println!("  start with {}", s.dir.join("index.md").display());
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("metal-guard: cannot write the postmortem bundle: {e}");
            ExitCode::from(exit::GATE_FAILED)
        }
    }
}
