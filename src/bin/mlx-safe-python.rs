//! `mlx-safe-python ARGS...`: run Python exactly as `python ARGS...` would,
//! with the metal-guard library injected and the cooldown gate checked first.
//! See `docs/launcher.md`.

use metal_guard_core::gates::start_gate::CooldownGate;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let gate = CooldownGate::from_environment();
    ExitCode::from(metal_guard_shim::launcher::mlx_safe_python_main(
        args, &gate,
    ))
}
