//! `libmetal_guard_inject`: loaded into an MLX process with
//! `DYLD_INSERT_LIBRARIES` (macOS) or `LD_PRELOAD` (Linux). Hooks only post
//! events; the policy lives in `metal_guard_core::engine`.
//!
//! Load: the constructor reads the configuration from the environment,
//! answers the launcher's handshake, and starts nothing else; it never
//! touches Metal. Hooks are installed when the process first gets a device
//! (`device_entry`). See `docs/interposer.md` for every setting.

pub mod breadcrumb_sink;
pub mod command_buffer_table;
mod completion_block;
mod cross_process_cadence;
pub mod depth;
mod device_entry;
#[cfg(target_os = "macos")]
mod dyld_interpose;
mod event_queue;
mod exit_drain;
mod fork_handling;
pub mod fork_safe_lock;
mod guard;
mod hook_table;
mod hooks;
#[cfg(test)]
mod hot_path_allocations;
#[cfg(target_os = "linux")]
mod ld_preload;
mod objc_messages;
mod objc_runtime;
mod reaper;
mod removal_ring;
mod symbol_lookup;
mod typed_imp;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod cuda;

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// This library's version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
static VERSION_C: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// The library's version as a C string: the symbol the launcher and Python
/// code look up (`dlsym`) to confirm the guard is loaded.
#[no_mangle]
pub extern "C" fn metal_guard_inject_version() -> *const c_char {
    VERSION_C.as_ptr() as *const c_char
}

/// What the constructor writes to `METALGUARD_HANDSHAKE_PATH`.
#[derive(Debug, serde::Serialize)]
struct Handshake<'a> {
    library: &'a str,
    version: &'a str,
    pid: u32,
    mode: &'a str,
    disabled: bool,
}

fn constructor() {
    let config = metal_guard_core::engine::config::GuardConfig::from_env();
    if let Some(path) = &config.handshake_path {
        let h = Handshake {
            library: "metal_guard_inject",
            version: VERSION,
            pid: std::process::id(),
            mode: match config.mode {
                metal_guard_core::engine::config::Mode::Defensive => "defensive",
                metal_guard_core::engine::config::Mode::Observer => "observer",
            },
            disabled: config.disabled,
        };
        if let Ok(mut bytes) = serde_json::to_vec(&h) {
            bytes.push(b'\n');
            if let Err(e) = append_line(path, &bytes) {
                eprintln!(
                    "metal-guard: could not write the handshake to {} ({e}); check METALGUARD_HANDSHAKE_PATH.",
                    path.display()
                );
            }
        }
    }
    if config.disabled {
        return;
    }
    guard::init(config);
    fork_handling::install();
}

/// Appends one line with a single `write` on an `O_APPEND` descriptor: every
/// process that inherits the variable (an interpreter stub and the
/// interpreter it execs, the program's children) adds its own record without
/// tearing or replacing another's.
fn append_line(path: &std::path::Path, line: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(line)
}

extern "C" fn run_constructor() {
    // Nothing may unwind out of a constructor (it runs under the loader).
    let _ = catch_unwind(AssertUnwindSafe(constructor));
}

#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array")]
#[cfg_attr(target_os = "macos", link_section = "__DATA,__mod_init_func")]
static CONSTRUCTOR: extern "C" fn() = run_constructor;
