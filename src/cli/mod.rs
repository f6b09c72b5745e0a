//! Argument parsing and dispatch: one module per subcommand, each with an
//! `Args` struct and a `run` that returns the process exit code.

mod diagnose;
mod report_text;
mod run;
mod wizard;

use clap::{Parser, Subcommand};

pub mod ack;
pub mod breadcrumb;
pub mod breaker;
pub mod cadence;
pub mod guard;
pub mod lock;
pub mod mode;
pub mod models;
pub mod orphan_scan;
pub mod outcome;
pub mod panic_gate;
pub mod panics;
pub mod postmortem;
pub mod selftest;
pub mod shared_args;
pub mod status;
pub mod status_write;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "metal-guard",
    version,
    about = "Keep Apple's IOGPUFamily driver bug from rebooting your Mac while MLX runs.",
    long_about = None,
    after_help = "Run with no command for the first-run wizard.\n\nExit codes: 0 ok/proceed, 1 finding, 2 blocked (cooldown, lockout, too soon), 3 the gate itself failed, 64 bad usage."
)]
pub struct Cli {
    /// `--json`, before or after the subcommand (the Python tool's form).
    #[command(flatten)]
    pub output: shared_args::JsonOutput,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Find and explain the kernel panics on this Mac (which ones Apple's GPU driver caused).
    Diagnose(diagnose::Args),
    /// Run a command with the GPU guard injected and the cooldown gate checked (`mlx-safe-python` for any program).
    Run(run::Args),
    /// The cooldown verdict: exit 0 proceed, 2 cooldown or lockout, 3 the gate failed.
    PanicGate(panic_gate::Args),
    /// Acknowledge a lockout (valid 24 h; the 2 h cooldown after a panic still applies).
    Ack(ack::Args),
    /// The circuit breaker: status (exit 2 when tripped) or clear.
    Breaker(breaker::Args),
    /// Check-and-mark a model load across processes: exit 0 clear (marked), 2 too soon.
    Cadence(cadence::Args),
    /// The MLX process lock: status, run LABEL -- CMD..., release [--force].
    Lock(lock::Args),
    /// Known panic models and version advisories (exit 2 for a panic-tier model).
    Models(models::Args),
    /// Everything at once; exit code follows the verdict.
    Status(status::Args),
    /// Keep ~/.cache/metal-guard/status.json current (--once, or --interval N as a daemon).
    StatusWrite(status_write::Args),
    /// Unfinished GPU sections in the breadcrumb log (exit 1 when found).
    OrphanScan(orphan_scan::Args),
    /// The reversible shell guard: install, uninstall, status.
    Guard(guard::Args),
    /// Collect the diagnostic bundle after a panic (sets the panic sentinel when it finds one).
    Postmortem(postmortem::Args),
    /// The IOGPU panics of the window (--since-hours, default 72), each once.
    Panics(panics::Args),
    /// The guard's mode (METALGUARD_MODE: defensive or observer).
    Mode(mode::Args),
    /// The end of the breadcrumb logs (-n LINES, default 20).
    Breadcrumb(breadcrumb::Args),
    /// Prove the guard works here: run a tiny MLX program through the launcher and check every hook.
    Selftest(selftest::Args),
}

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(metal_guard_core::exit_status::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let output = cli.output;
    outcome::finish(match cli.command {
        None => wizard::run(),
        Some(Command::Diagnose(args)) => diagnose::run(args, output),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::PanicGate(a)) => panic_gate::run(a, output),
        Some(Command::Ack(a)) => ack::run(a, output),
        Some(Command::Breaker(a)) => breaker::run(a, output),
        Some(Command::Cadence(a)) => cadence::run(a, output),
        Some(Command::Lock(a)) => lock::run(a, output),
        Some(Command::Models(a)) => models::run(a, output),
        Some(Command::Status(a)) => status::run(a, output),
        Some(Command::StatusWrite(a)) => status_write::run(a, output),
        Some(Command::OrphanScan(a)) => orphan_scan::run(a, output),
        Some(Command::Guard(a)) => guard::run(a, output),
        Some(Command::Postmortem(a)) => postmortem::run(a, output),
        Some(Command::Selftest(a)) => selftest::run(a, output),
        Some(Command::Panics(a)) => panics::run(a, output),
        Some(Command::Mode(a)) => mode::run(a, output),
        Some(Command::Breadcrumb(a)) => breadcrumb::run(a, output),
    })
}
