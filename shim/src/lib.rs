//! The launcher behind `mlx-safe-python` and `metal-guard run`: resolve the
//! real interpreter, check that the injection will survive the exec chain,
//! set up `DYLD_INSERT_LIBRARIES` / `LD_PRELOAD`, and exec. The gate check is
//! passed in by the caller ([`gate::LaunchGate`]) so this crate does not
//! depend on the core library.
//!
//! Entry points: [`launcher::mlx_safe_python_main`] and [`launcher::launch`].

pub mod binary_inspection;
pub mod elf;
pub mod exec_plan;
pub mod gate;
pub mod handshake;
pub mod injection_rules;
pub mod launch_env;
pub mod launcher;
pub mod library_locator;
pub mod macho;
pub mod macho_check;
pub mod preload_env;
pub mod process_exec;
pub mod script;
pub mod version_manager;
