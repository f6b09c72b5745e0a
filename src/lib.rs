//! metal-guard: the platform-neutral core.
//!
//! Forensics (find, parse, classify and explain macOS panic reports), the
//! gates that stop a panic cascade (cooldown staircase, circuit breaker,
//! cadence, process lock), the policy engine the injected library runs, and
//! the state files they share. The CLI in `main.rs` and the interposer in
//! `inject/` are thin layers over this crate.

pub mod breadcrumbs;
pub mod engine;
pub mod forensics;
pub mod gates;
pub mod hardware;
pub mod iogpu_kext;
pub mod launch_gate;
pub mod orphans;
pub mod paths;
pub mod postmortem;
pub mod process_footprint;
pub mod registry;
pub mod selftest;
pub mod state;
pub mod status;
#[cfg(target_os = "macos")]
pub mod sysctl_macos;
