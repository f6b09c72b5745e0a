//! `metal-guard run [--] CMD ARGS...`: run any command the way
//! `mlx-safe-python` runs Python: gate first, guard injected, scripts and
//! version-manager shims followed to the real interpreter so that nothing
//! SIP-protected sits in the exec chain. See `docs/launcher.md`.

use super::outcome::{CommandError, CommandResult, Outcome};
use metal_guard_core::gates::start_gate::CooldownGate;
use metal_guard_shim::launch_env::LaunchEnv;
use metal_guard_shim::launcher::{launch, LaunchOptions, Target};
use std::ffi::OsString;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: the command's own, or 10 blocked by a cooldown, 125 the guard library is missing, 126 the program would drop the guard (or cannot run), 127 not found. With --check: 0 protected, 1 not, 10 protected but blocked now."
)]
pub struct Args {
    /// Show how the command would be run and probe that the guard reaches it; run nothing.
    #[arg(long)]
    pub check: bool,
    /// Run with the cooldown gate only; do not inject the guard library.
    #[arg(long)]
    pub no_inject: bool,
    /// Run even during a cooldown or lockout (same as MLX_SAFE_PYTHON_FORCE=1).
    #[arg(long)]
    pub force: bool,
    /// The command to run and its arguments (put `--` before it when it has options of its own).
    #[arg(
        required = true,
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

pub fn run(args: Args) -> CommandResult {
    let mut words = args.command.into_iter();
    let Some(command) = words.next() else {
        return Err(CommandError::usage("run: no command given")
            .hint("usage: metal-guard run -- CMD ARGS..."));
    };
    let options = LaunchOptions {
        tool: "metal-guard run".to_owned(),
        inject: !args.no_inject,
        check: args.check,
        force: args.force,
    };
    let target = Target::Command {
        command,
        args: words.collect(),
    };
    let gate = CooldownGate::from_environment();
    Ok(Outcome::External(launch(
        target,
        &options,
        &gate,
        &LaunchEnv::from_process(),
    )))
}
