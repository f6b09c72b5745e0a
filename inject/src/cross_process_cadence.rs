//! Cross-process cadence: the previous load of the same model by any
//! process, through `~/.cache/metal-guard/cadence.json` and its lock (the
//! file the Python tool and `metal-guard cadence` share). The rule and the
//! locking live in `metal_guard_core::gates::cadence`; this is the interposer's
//! one call into it.

use metal_guard_core::engine::cadence::CadencePolicy;
use metal_guard_core::env_vars::process_env;
use metal_guard_core::gates::cadence::{self as gate_cadence, CadenceDecision};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

static REPORTED_FAILURE: AtomicBool = AtomicBool::new(false);

/// Checks whether `model_id` (or, with `METALGUARD_CROSS_MODEL_INTERVAL`,
/// any model) was loaded by any process too recently, and marks this load
/// when it was not. Returns the time still to wait; `None` when clear or
/// when the check could not run (said once on stderr: a broken state file
/// never blocks a run).
pub fn check_and_mark(model_id: &str, policy: &CadencePolicy) -> Option<Duration> {
    let mut warnings = Vec::new();
    let mut gate_policy = gate_cadence::CadencePolicy::from_env(&process_env, &mut warnings);
    gate_policy.min_interval =
        time::Duration::nanoseconds(policy.same_model_interval_ns.min(i64::MAX as u64) as i64);
    match gate_cadence::check_and_mark(model_id, &gate_policy, time::OffsetDateTime::now_utc()) {
        Ok(CadenceDecision::Clear { .. }) => None,
        Ok(CadenceDecision::TooSoon { wait_sec, .. }) => {
            Some(Duration::from_secs_f64(wait_sec.max(0.0)))
        }
        Err(e) => {
            if !REPORTED_FAILURE.swap(true, Relaxed) {
                eprintln!("metal-guard: cross-process cadence check skipped ({e}); in-process checks still apply.");
            }
            None
        }
    }
}
