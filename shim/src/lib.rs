//! The launcher behind `mlx-safe-python` and `metal-guard run`: resolve the
//! real interpreter, check that the injection will survive the exec chain,
//! set up `DYLD_INSERT_LIBRARIES` / `LD_PRELOAD`, and exec. The verdict comes
//! from a `metal_guard_core::gates::start_gate::VerdictSource` the caller
//! passes in (the cooldown gate, or a test double); the override rule and
//! the exit codes are the core's. Mach-O files are read with
//! `metal-guard-macho`.
//!
//! Entry points: [`launcher::mlx_safe_python_main`] and [`launcher::launch`].

pub mod binary_inspection;
pub mod elf;
pub mod exec_plan;
pub mod gate_exemption;
pub mod handshake;
pub mod injection_rules;
pub mod launch_env;
pub mod launcher;
pub mod library_locator;
pub mod preload_env;
pub mod process_exec;
pub mod script;
pub mod version_manager;
