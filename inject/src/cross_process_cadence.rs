//! Cross-process cadence: the loads any process marked in
//! `~/.cache/metal-guard/cadence.json` (the file the Python tool and
//! `metal-guard cadence` share), judged by the same rule and policy as the
//! loads this process saw (`metal_guard_core::cadence`). This is the
//! interposer's one call into it.

use metal_guard_core::cadence::load_file;
use metal_guard_core::cadence::rule::{CadenceDecision, CadencePolicy};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static REPORTED_FAILURE: AtomicBool = AtomicBool::new(false);

/// Checks `model_id`'s load against every process's recent loads and marks
/// it when clear. `None` when the check could not run (said once on stderr:
/// a broken state file never blocks a run).
pub fn check_and_mark(model_id: &str, policy: &CadencePolicy) -> Option<CadenceDecision> {
    match load_file::check_and_mark(model_id, policy, time::OffsetDateTime::now_utc()) {
        Ok(check) => Some(check.decision),
        Err(e) => {
            if !REPORTED_FAILURE.swap(true, Relaxed) {
                eprintln!("metal-guard: cross-process cadence check skipped ({e}); in-process checks still apply.");
            }
            None
        }
    }
}
