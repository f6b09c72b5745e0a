//! Lever (c): at process exit, wait (bounded, default 10 s) for command
//! buffers still in flight, then perform the residency removals still
//! queued, before the rest of exit-time teardown frees what the GPU uses.
//!
//! `atexit` handlers run in reverse order of registration, so the drain is
//! registered at the first device and again at the first commit, after the
//! application's own exit-time teardown is registered; it runs once.

use crate::guard::guard;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant};

static DRAINED: AtomicBool = AtomicBool::new(false);

/// Registers the drain with `atexit` (again: the latest registration runs first).
pub fn register() {
    // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds.
    unsafe {
        libc::atexit(at_exit);
    }
}

extern "C" fn at_exit() {
    let _ = catch_unwind(AssertUnwindSafe(drain));
}

fn drain() {
    if DRAINED.swap(true, AcqRel) {
        return;
    }
    let Some(guard) = guard() else {
        return;
    };
    let in_flight = guard.in_flight();
    let pending = guard.pending_removals();
    if let Some(limit) = guard.config().exit_drain {
        if in_flight > 0 || pending > 0 {
            // Observer mode must not change the outcome, and an fsync here
            // would give in-flight work the time to finish: log, no sync.
            let durable = guard.acts();
            guard.sink().write_now(
                metal_guard_core::breadcrumbs::TAG_PRE,
                "exit_drain",
                &[
                    ("in_flight", in_flight.to_string()),
                    ("pending_removals", pending.to_string()),
                    ("limit_ms", limit.as_millis().to_string()),
                    ("mode", guard.mode_name().to_string()),
                ],
                durable,
            );
            let start = Instant::now();
            let mut removed = 0;
            if guard.acts() {
                while guard.in_flight() > 0 && start.elapsed() < limit {
                    std::thread::sleep(Duration::from_micros(500));
                }
                let left = limit.saturating_sub(start.elapsed());
                removed = guard.run_removal_batch(left.max(Duration::from_millis(1)), true);
            }
            let remaining = guard.in_flight();
            if remaining > 0 && guard.acts() {
                eprintln!(
                    "metal-guard: {remaining} GPU command buffer(s) still running after waiting {} ms at exit; continuing teardown (METALGUARD_EXIT_DRAIN_S sets the wait).",
                    limit.as_millis()
                );
            }
            guard.sink().write_now(
                metal_guard_core::breadcrumbs::TAG_POST,
                "exit_drain",
                &[
                    ("waited_ms", start.elapsed().as_millis().to_string()),
                    ("in_flight_left", remaining.to_string()),
                    ("removals_performed", removed.to_string()),
                    (
                        "outcome",
                        if !guard.acts() {
                            "observed_only"
                        } else if remaining == 0 {
                            "drained"
                        } else {
                            "timed_out"
                        }
                        .to_string(),
                    ),
                ],
                durable,
            );
        }
    }
    guard.sink().flush_queued();
    guard.close_sections_at_exit();
    guard.write_summary();
}
