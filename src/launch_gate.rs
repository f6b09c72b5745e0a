//! The cooldown verdict in the shape the launcher (`metal_guard_shim`) asks
//! for: `mlx-safe-python` and `metal-guard run` consult the same verdict as
//! `metal-guard panic-gate` and `status`.

use metal_guard_core::gates::cooldown::{current_verdict, VerdictKind};
use metal_guard_shim::gate::{GateVerdict, LaunchGate};
use std::path::PathBuf;

/// The shared cooldown verdict over the panic-report folders
/// (`METALGUARD_PANIC_REPORT_DIRS`, else the macOS defaults).
pub struct CooldownLaunchGate {
    report_dirs: Vec<PathBuf>,
}

impl CooldownLaunchGate {
    /// The gate over the default report folders.
    pub fn from_environment() -> Self {
        CooldownLaunchGate {
            report_dirs: metal_guard_core::forensics::report_dirs(&[]),
        }
    }
}

impl LaunchGate for CooldownLaunchGate {
    fn verdict(&self) -> GateVerdict {
        match current_verdict(&self.report_dirs) {
            Ok(verdict) => match verdict.kind {
                // Warnings (a state file reset, a setting ignored) are complete lines.
                VerdictKind::Proceed | VerdictKind::Disabled => GateVerdict::Proceed {
                    notices: verdict.warnings,
                },
                VerdictKind::Cooldown | VerdictKind::Lockout => GateVerdict::Blocked {
                    reason: verdict.reason,
                    how_to_clear: verdict.how_to_clear,
                    notices: verdict.warnings,
                },
            },
            Err(error) => GateVerdict::Failed {
                error: error.to_string(),
            },
        }
    }
}
