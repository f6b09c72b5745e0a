//! `fork` without `exec`: a `pthread_atfork` child handler, installed by the
//! constructor, puts the child's copy of the guard back in a state a single
//! thread can use. In the child only the forking thread exists: the writer
//! and reaper threads, completion threads and any thread that held one of
//! our locks or gates stayed in the parent.
//!
//! The handler only stores atomics (async-signal-safe, as a child handler
//! of a multithreaded process must be): it resets the library's locks and
//! both gates, forgets the parent's queued breadcrumbs (the parent writes
//! them) and in-flight command buffers (their completions never come here),
//! and marks the writer and reaper threads as absent. The child's first
//! breadcrumb starts its writer, its first deferred removal its reaper; its
//! lines carry its own pid. A child that `exec`s starts afresh from the new
//! image's constructor.

use crate::guard::guard;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Registers the handler (once, from the constructor).
pub fn install() {
    // SAFETY: `in_child` is an `extern "C" fn()` that never unwinds and
    // lives as long as the process (this library is never unloaded).
    unsafe {
        libc::pthread_atfork(None, None, Some(in_child));
    }
}

extern "C" fn in_child() {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        crate::hook_table::reset_after_fork();
        crate::hooks::buffer::reset_after_fork();
        if let Some(g) = guard() {
            g.reset_after_fork();
        }
    }));
}
