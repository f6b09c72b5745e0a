//! `metal-guard panics [--since-hours H]`: the IOGPU panics of the window
//! (reports and the panic ledger, each once), as the Python tool lists them.
//! `--json` prints the status document, as the Python tool's does.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::gates::cooldown::GatePaths;
use metal_guard_core::gates::panic_sources;
use metal_guard_core::timefmt;
use metal_guard_core::warnings::Warnings;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The window, hours back from now.
    #[arg(long, value_name = "H", default_value_t = 72.0, value_parser = hours)]
    pub since_hours: f64,
    #[command(flatten)]
    pub reports: ReportFolders,
}

fn hours(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(h) if h.is_finite() && h > 0.0 && h <= 24.0 * 3653.0 => Ok(h),
        _ => Err(format!(
            "`{v}` is not a number of hours between 0 and 87672 (ten years)"
        )),
    }
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    if output.json {
        return super::status::print_json(&args.reports, 20);
    }
    let now = time::OffsetDateTime::now_utc();
    let since = now - time::Duration::seconds_f64(args.since_hours * 3600.0);
    let mut warnings = Warnings::new();
    let panics = panic_sources::panics_since(
        &args.reports.dirs(),
        since,
        now,
        &GatePaths::from_home().ledger,
        &mut warnings,
    )
    .map_err(|e| CommandError::failed(e.to_string()))?;
    warnings.emit();
    let window = format!("{} h", args.since_hours);
    if panics.is_empty() {
        println!("No IOGPU kernel panics in the last {window}.");
    } else {
        println!(
            "{} IOGPU kernel panic(s) in the last {window}:",
            panics.len()
        );
        for p in panics.iter().rev() {
            println!(
                "  {}  {}  ({})",
                timefmt::human(p.time),
                p.signature,
                p.source
            );
        }
        println!("`metal-guard diagnose` explains each; `metal-guard panic-gate` says whether MLX may run.");
    }
    Ok(Outcome::Proceed)
}
