//! `metal-guard breadcrumb [-n LINES]`: the end of each breadcrumb log (ours
//! and the Python tool's places). `--json` prints the status document, as
//! the Python tool's does.

use super::outcome::{CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::warnings::Warnings;
use metal_guard_core::{breadcrumbs, status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many lines from the end.
    #[arg(
        short = 'n',
        long = "lines",
        value_name = "LINES",
        default_value_t = 20
    )]
    pub lines: usize,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    if output.json {
        return super::status::print_json(&ReportFolders::default(), args.lines);
    }
    let mut warnings = Warnings::new();
    let logs: Vec<_> = breadcrumbs::breadcrumb_logs()
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    if logs.is_empty() {
        println!("No breadcrumb log found.");
        println!("  Searched:");
        for p in breadcrumbs::candidate_logs() {
            println!("    - {}", p.display());
        }
    }
    for log in &logs {
        println!("==> {} <==", log.display());
        for line in status::breadcrumb_tail(log, args.lines, &mut warnings) {
            println!("{line}");
        }
    }
    warnings.emit();
    Ok(Outcome::Proceed)
}
