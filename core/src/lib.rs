//! metal-guard-core: the platform-neutral core every other crate builds on.
//!
//! Forensics (find, parse, classify and explain macOS panic reports), the
//! gates that stop a panic cascade (the one cooldown verdict and its
//! overrides, circuit breaker, cadence, process lock), the policy engine the
//! injected library runs, the breadcrumb format and the state files they
//! share. It knows no command line: the CLI (`metal-guard`), the launcher
//! (`metal-guard-shim`) and the injected library (`metal-guard-inject`) are
//! layers over it, and it depends on none of them.

pub mod breadcrumbs;
pub mod cadence;
pub mod engine;
pub mod env_vars;
pub mod exit_status;
pub mod forensics;
pub mod gates;
pub mod hardware;
pub mod iogpu_kext;
pub mod orphans;
pub mod paths;
pub mod postmortem;
pub mod process_footprint;
pub mod process_identity;
pub mod registry;
pub mod shell_guard;
pub mod state;
pub mod status;
#[cfg(target_os = "macos")]
pub mod sysctl_macos;
pub mod timefmt;
pub mod warnings;
