//! The one exit drain of both backends (lever (c)): at process exit, wait
//! (bounded, default 10 s) for GPU work still in flight, perform the
//! residency removals still queued (Metal), close the load/unload sections
//! still open, write the rest of the breadcrumbs and the one summary.
//!
//! Metal registers it at the first device and again at the first commit
//! (`atexit` handlers run in reverse order of registration, so the drain
//! runs before the application's own exit-time teardown registered before
//! it); the CUDA backend registers it when its chain activates, with a
//! [`Backend`] that says how much of its work is in flight and writes its
//! own counters after the summary. It runs once.
//!
//! Observer mode must not change the outcome: it waits for nothing and
//! syncs nothing (an fsync would give in-flight work the time to finish).

use crate::guard::{guard, Guard};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};
use std::time::{Duration, Instant};

static DRAINED: AtomicBool = AtomicBool::new(false);

/// What the drain found and did, for a backend's own summary.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)] // used by the CUDA backend
pub struct DrainReport {
    /// GPU work in flight when the drain began.
    pub in_flight_at_exit: u64,
    /// `none` (nothing in flight, or the drain is off), `drained`,
    /// `timed_out` or `observed_only`.
    pub outcome: &'static str,
}

/// A backend other than Metal (whose state the guard itself holds).
pub struct Backend {
    /// Its `backend=` field on the drain's lines.
    pub name: &'static str,
    /// Its GPU work in flight now.
    pub in_flight: fn() -> u64,
    /// Writes its own summary line after the guard's.
    pub summary: fn(&Guard, &DrainReport),
}

static BACKEND: AtomicPtr<Backend> = AtomicPtr::new(std::ptr::null_mut());

/// Registers the drain with `atexit` (again: the latest registration runs
/// first). `false`: `atexit` refused it.
pub fn register() -> bool {
    // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds and lives
    // as long as the process (this library is never unloaded).
    unsafe { libc::atexit(at_exit) == 0 }
}

/// Registers `backend` (its work counts as in flight) and the drain.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)] // used by the CUDA backend
pub fn register_backend(backend: &'static Backend) -> bool {
    BACKEND.store(backend as *const Backend as *mut Backend, Release);
    register()
}

fn backend() -> Option<&'static Backend> {
    let p = BACKEND.load(Acquire);
    // SAFETY: only ever a `&'static Backend` (see `register_backend`).
    (!p.is_null()).then(|| unsafe { &*p })
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
    let backend = backend();
    let in_flight_now = || guard.in_flight() + backend.map_or(0, |b| (b.in_flight)());
    let backend_field = || backend.map(|b| ("backend", b.name.to_string()));
    let sink = guard.sink();
    sink.begin_exit();
    let in_flight = in_flight_now();
    let pending = guard.pending_removals();
    let mut outcome = "none";
    if let Some(limit) = guard.config().exit_drain {
        if in_flight > 0 || pending > 0 {
            let durable = guard.acts();
            let mut fields: Vec<(&str, String)> = backend_field().into_iter().collect();
            fields.extend([
                ("in_flight", in_flight.to_string()),
                ("pending_removals", pending.to_string()),
                ("limit_ms", limit.as_millis().to_string()),
                ("mode", guard.mode_name().to_string()),
            ]);
            sink.write_now(
                metal_guard_core::breadcrumbs::TAG_PRE,
                "exit_drain",
                &fields,
                durable,
            );
            let start = Instant::now();
            let mut removed = 0;
            if guard.acts() {
                while in_flight_now() > 0 && start.elapsed() < limit {
                    std::thread::sleep(Duration::from_micros(500));
                }
                if guard.pending_removals() > 0 {
                    let left = limit.saturating_sub(start.elapsed());
                    removed = guard.run_removal_batch(left.max(Duration::from_millis(1)), true);
                }
            }
            let remaining = in_flight_now();
            if remaining > 0 && guard.acts() {
                eprintln!(
                    "metal-guard: {remaining} GPU {} still running after waiting {} ms at exit; continuing teardown (METALGUARD_EXIT_DRAIN_S sets the wait).",
                    if backend.is_some() { "completion(s)" } else { "command buffer(s)" },
                    limit.as_millis()
                );
            }
            outcome = if !guard.acts() {
                "observed_only"
            } else if remaining == 0 {
                "drained"
            } else {
                "timed_out"
            };
            let mut fields: Vec<(&str, String)> = backend_field().into_iter().collect();
            fields.extend([
                ("waited_ms", start.elapsed().as_millis().to_string()),
                ("in_flight_left", remaining.to_string()),
                ("removals_performed", removed.to_string()),
                ("outcome", outcome.to_string()),
            ]);
            sink.write_now(
                metal_guard_core::breadcrumbs::TAG_POST,
                "exit_drain",
                &fields,
                durable,
            );
        }
    }
    sink.flush_queued();
    guard.close_sections_at_exit();
    guard.write_summary();
    if let Some(b) = backend {
        (b.summary)(
            guard,
            &DrainReport {
                in_flight_at_exit: in_flight,
                outcome,
            },
        );
    }
}
