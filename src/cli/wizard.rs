//! `metal-guard` with no arguments: the first-run wizard. Finds the most
//! recent GPU-driver panic, explains it, and offers the shell guard (only
//! when stdin is a terminal; the default answer is No).

use super::diagnose::record_in_ledger;
use super::outcome::{CommandResult, Outcome};
use super::report_text::{dir_list, render_report, skipped_lines, skipped_note};
use clap::CommandFactory;
use metal_guard_core::forensics::{report_dirs, scan_reports, ReportScan};
use metal_guard_core::gates::cooldown;
use std::io::{BufRead, IsTerminal, Write};
use time::OffsetDateTime;

const GUARD_WHAT_IT_DOES: &str = "The shell guard adds one marked block to your ~/.zshrc or ~/.bashrc (a backup is kept). In interactive terminals it sends `python` and `python3` through mlx-safe-python: while a panic cooldown is active, MLX runs pause with an explanation instead of risking another reboot; otherwise they run unchanged. `metal-guard guard uninstall` removes it; METALGUARD_SHELL_GUARD_DISABLED=1 turns it off without uninstalling.";

pub fn run() -> CommandResult {
    let now = OffsetDateTime::now_utc();
    let dirs = report_dirs(&[]);
    let outcome = scan_reports(&ReportScan::all(dirs.clone()));
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(skipped_lines(&outcome.skipped).as_bytes());
    record_in_ledger(&outcome, now, &mut stderr);
    drop(stderr);

    let mut out = String::from("metal-guard: checking this Mac for GPU-driver kernel panics.\n\n");
    let iogpu: Vec<_> = outcome.iogpu_reports().collect();
    let Some(latest) = iogpu.first() else {
        let others = outcome.reports.len();
        out.push_str(&format!(
            "No GPU-driver panic found in {}.\n",
            dir_list(&dirs)
        ));
        out.push_str(&skipped_note(&outcome.skipped));
        if others > 0 {
            out.push_str(&format!(
                "There {} {others} other kernel panic report{} (not caused by the GPU driver); `metal-guard diagnose` lists {}.\n",
                if others == 1 { "is" } else { "are" },
                if others == 1 { "" } else { "s" },
                if others == 1 { "it" } else { "them" },
            ));
        }
        out.push('\n');
        out.push_str(&cooldown_section(&dirs));
        out.push_str("\nIf your Mac ever restarts while MLX runs, run `metal-guard` again.\n");
        let _ = std::io::stdout().write_all(out.as_bytes());
        return Ok(Outcome::Proceed);
    };

    out.push_str("Your Mac's most recent GPU-driver panic:\n\n");
    let mut explained = Vec::new();
    render_report(&mut out, 1, latest, &mut explained, now);
    if iogpu.len() > 1 {
        out.push_str(&format!(
            "\n{} earlier GPU-driver panic{} found; `metal-guard diagnose` lists every report.\n",
            iogpu.len() - 1,
            if iogpu.len() == 2 { " was" } else { "s were" }
        ));
    }
    out.push('\n');
    out.push_str(&cooldown_section(&dirs));
    out.push_str(&format!("\n{GUARD_WHAT_IT_DOES}\n"));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());

    let guard_available = super::Cli::command().find_subcommand("guard").is_some();
    if !guard_available {
        let _ = writeln!(
            stdout,
            "The guard is installed with `metal-guard guard install` (this build does not include it yet)."
        );
        return Ok(Outcome::Proceed);
    }
    if !std::io::stdin().is_terminal() {
        let _ = writeln!(stdout, "To install it: metal-guard guard install");
        return Ok(Outcome::Proceed);
    }
    let _ = write!(stdout, "Install the shell guard now? [y/N] ");
    let _ = stdout.flush();
    drop(stdout);
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        println!("Not installed. You can install it any time with: metal-guard guard install");
        return Ok(Outcome::Proceed);
    }
    install_guard()
}

/// Whether MLX may run now: the same verdict `metal-guard panic-gate` gives
/// (reports, panic history, sentinel, ack, breaker, overrides).
fn cooldown_section(dirs: &[std::path::PathBuf]) -> String {
    match cooldown::current_verdict(dirs) {
        Ok(verdict) => {
            verdict.warnings.emit();
            let mut out = String::from("Can MLX run now?\n");
            out.push_str(&super::panic_gate::human(&verdict));
            if verdict.allows_run() {
                out.push_str("Yes: no cooldown is in force.\n");
            }
            out
        }
        Err(e) => {
            format!("Could not check the cooldown ({e}); `metal-guard panic-gate` retries it.\n")
        }
    }
}

/// Runs `metal-guard guard install` as its own process, so the wizard and the
/// subcommand behave identically.
/// The wizard ends with status 0 whatever the answer: a failed install is
/// explained and the user is told the command to run.
fn install_guard() -> CommandResult {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("metal-guard: cannot locate this program ({e}); run `metal-guard guard install` yourself");
            return Ok(Outcome::Proceed);
        }
    };
    match std::process::Command::new(exe)
        .args(["guard", "install"])
        .status()
    {
        Ok(status) if status.success() => Ok(Outcome::Proceed),
        Ok(status) => {
            eprintln!("metal-guard: the shell guard was not installed (exit {status}); see the message above, then run `metal-guard guard install` again");
            Ok(Outcome::Proceed)
        }
        Err(e) => {
            eprintln!(
                "metal-guard: could not start `metal-guard guard install` ({e}); run it yourself"
            );
            Ok(Outcome::Proceed)
        }
    }
}
