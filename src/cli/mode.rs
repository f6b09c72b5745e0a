//! `metal-guard mode`: the guard's mode (`METALGUARD_MODE`). `--json`
//! prints the status document, as the Python tool's does.

use super::outcome::{CommandResult, Outcome};
use super::shared_args::{JsonOutput, ReportFolders};
use metal_guard_core::status::ModeInfo;
use metal_guard_core::warnings::Warnings;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, output: JsonOutput) -> CommandResult {
    if output.json {
        return super::status::print_json(&ReportFolders::default(), 20);
    }
    let mut warnings = Warnings::new();
    let mode = ModeInfo::from_env(&mut warnings);
    warnings.emit();
    println!("metal-guard mode: {}", mode.current);
    println!("  {}", mode.description);
    println!("  env {}", mode.env_var);
    Ok(Outcome::Proceed)
}
