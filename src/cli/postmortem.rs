//! `metal-guard postmortem DIR`: collect the diagnostic bundle after a panic.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::postmortem;
use metal_guard_core::{env_vars, timefmt};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder to write the bundle into (created 0700).
    pub dir: PathBuf,
    #[command(flatten)]
    pub reports: ReportFolders,
    /// How far back to look for panic reports, hours.
    #[arg(long, default_value_t = 72)]
    pub hours: u32,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    if env_vars::flag(&env_vars::process_env, "METALGUARD_POSTMORTEM_DISABLED") {
        println!("postmortem disabled by METALGUARD_POSTMORTEM_DISABLED; nothing written");
        return Ok(Outcome::Proceed);
    }
    let now = time::OffsetDateTime::now_utc();
    let dirs = args.reports.dirs();
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
            if output.json {
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
            Ok(Outcome::Proceed)
        }
        Err(e) => Err(CommandError::failed(format!(
            "cannot write the postmortem bundle: {e}"
        ))),
    }
}
