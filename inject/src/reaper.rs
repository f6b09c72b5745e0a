//! Lever (b): residency-set removals deferred until every command buffer
//! committed before them has completed, performed on a reaper thread.
//!
//! A removal is tagged with the sequence number of the last command buffer
//! committed when it was requested. Once the watermark reaches the oldest
//! tag, the reaper closes the commit gate (no new command buffer can prepare
//! the set's allocations meanwhile), waits until nothing is in flight and
//! the grace delay after the last completion has passed, then performs
//! every pending `removeAllocation:` and one `commit` per set, and reopens
//! the gate. Committing threads wait only while the gate is closed, a
//! bounded time; completion threads never wait for anything here.

use crate::guard::Guard;
use crate::objc_runtime::{Id, Imp, ObjcRuntime, Sel};
use metal_guard_core::engine::watermark::PendingRemovals;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Longest the reaper holds the commit gate waiting for in-flight work
/// (only when removals are overdue, or at exit).
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(5);
/// Pause between attempts while work stays in flight.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// The reaper wakes at least this often while removals are pending.
const IDLE_WAKE: Duration = Duration::from_millis(20);

/// One deferred removal: the set, the allocation (both retained by us), and
/// the original IMPs to call.
#[derive(Debug, Clone, Copy)]
pub struct Removal {
    pub set: usize,
    pub allocation: usize,
    pub remove_imp: usize,
    pub commit_imp: usize,
    /// When it was deferred (the guard's monotonic clock).
    pub queued_ns: u64,
}

type VoidObjMethod = unsafe extern "C-unwind" fn(Id, Sel, Id);
type VoidMethod = unsafe extern "C-unwind" fn(Id, Sel);

pub struct Reaper {
    pending: Mutex<PendingRemovals<Removal>>,
    pending_count: AtomicU64,
    thread: OnceLock<Thread>,
    /// Serialises our calls into residency sets with the application's
    /// (held around original residency calls in `defer` mode only).
    pub residency_calls: Mutex<()>,
}

impl Default for Reaper {
    fn default() -> Self {
        Self::new()
    }
}

impl Reaper {
    pub fn new() -> Self {
        Reaper {
            pending: Mutex::new(PendingRemovals::default()),
            pending_count: AtomicU64::new(0),
            thread: OnceLock::new(),
            residency_calls: Mutex::new(()),
        }
    }

    /// Removals waiting.
    #[inline]
    pub fn pending(&self) -> u64 {
        self.pending_count.load(Acquire)
    }

    /// Queues a removal tagged `tag` and wakes the reaper.
    pub fn defer(&self, guard: &'static Guard, tag: u64, removal: Removal) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tag, removal);
        self.pending_count.fetch_add(1, Release);
        self.wake(guard);
    }

    /// Cancels a pending removal of `allocation` from `set` (the application
    /// added it back before we removed it). Returns it so the caller can
    /// drop our references; `None` when none was pending.
    pub fn cancel(&self, set: usize, allocation: usize) -> Option<Removal> {
        if self.pending() == 0 {
            return None;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let found = pending.remove_first(|r| r.set == set && r.allocation == allocation);
        if found.is_some() {
            self.pending_count.fetch_sub(1, Release);
        }
        found
    }

    /// Wakes the reaper (completion path calls this only when removals wait).
    #[inline]
    pub fn wake(&self, guard: &'static Guard) {
        if let Some(t) = self.thread.get() {
            t.unpark();
            return;
        }
        self.start(guard);
    }

    fn start(&self, guard: &'static Guard) {
        let _ = self.thread.get_or_init(|| {
            match std::thread::Builder::new()
                .name("metal-guard-reaper".into())
                .spawn(move || reaper_loop(guard))
            {
                Ok(h) => h.thread().clone(),
                // No thread: removals are performed at exit (drain) instead.
                Err(_) => std::thread::current(),
            }
        });
    }

    /// The tag and queue time of the oldest pending removal.
    fn oldest(&self) -> Option<(u64, u64)> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let tag = pending.front_tag()?;
        let queued = pending.front().map_or(0, |r| r.queued_ns);
        Some((tag, queued))
    }

    /// One attempt at performing the pending removals; returns how many ran.
    ///
    /// The watermark must have reached the oldest removal's tag (every
    /// command buffer committed before it has completed). Then, normally,
    /// the reaper waits for a moment when nothing is in flight and the grace
    /// period after the last completion has passed, closes the commit gate
    /// only to confirm no commit slipped in, and performs the removals: the
    /// gate is held for the removals alone, so GPU submission never waits on
    /// a command buffer's run time. When removals have waited longer than
    /// `METALGUARD_RESIDENCY_MAX_DEFER_MS` under continuous GPU work (or at
    /// exit, `force`), it closes the gate first and waits for quiescence,
    /// bounded by `limit`.
    pub fn run_batch(&self, guard: &Guard, limit: Duration, force: bool) -> usize {
        let Some((tag, queued_ns)) = self.oldest() else {
            return 0;
        };
        let now = guard.now_ns();
        let overdue =
            now.saturating_sub(queued_ns) >= guard.config.residency_max_defer.as_nanos() as u64;
        let forced = force || overdue;
        if !forced && guard.watermark.completed_through() < tag {
            return 0;
        }
        let grace = guard.config.residency_grace.as_nanos() as u64;
        let quiet = |g: &Guard| {
            g.watermark.in_flight() == 0
                && g.now_ns().saturating_sub(g.watermark.last_completion_ns()) >= grace
        };
        if !forced && !quiet(guard) {
            return 0;
        }
        let committed = guard.watermark.last_committed();
        guard.sink.write_durable(
            metal_guard_core::breadcrumbs::TAG_PRE,
            "residency_removal_batch",
            &[
                ("pending", self.pending().to_string()),
                ("in_flight", guard.watermark.in_flight().to_string()),
                ("forced", forced.to_string()),
            ],
        );
        let post = |performed: usize, outcome: &str, in_flight: u64| {
            guard.sink.write_durable(
                metal_guard_core::breadcrumbs::TAG_POST,
                "residency_removal_batch",
                &[
                    ("performed", performed.to_string()),
                    ("outcome", outcome.to_string()),
                    ("in_flight", in_flight.to_string()),
                ],
            );
        };
        let deadline = Instant::now() + limit;
        if !guard.commit_gate.close(limit) {
            post(0, "commit_in_progress", guard.watermark.in_flight());
            return 0;
        }
        if forced {
            // Gate closed: nothing new is committed. Wait for what is in
            // flight, then the grace period.
            while !quiet(guard) {
                if Instant::now() >= deadline {
                    guard.commit_gate.open();
                    post(0, "still_in_flight", guard.watermark.in_flight());
                    return 0;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else if guard.watermark.last_committed() != committed || !quiet(guard) {
            // A commit slipped in between the check and the gate: next time.
            guard.commit_gate.open();
            post(0, "new_commit", guard.watermark.in_flight());
            return 0;
        }
        // With the gate closed this is exact: what was in flight as the
        // removals ran (zero).
        let in_flight_at_removal = guard.watermark.in_flight();
        let batch = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let all = pending.take_all();
            self.pending_count.fetch_sub(all.len() as u64, Release);
            all
        };
        {
            let _calls = self
                .residency_calls
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            perform(&batch);
        }
        guard.commit_gate.open();
        release_all(&batch);
        guard.stats.removal_batches.fetch_add(1, Relaxed);
        post(batch.len(), "done", in_flight_at_removal);
        batch.len()
    }
}

fn reaper_loop(guard: &'static Guard) {
    loop {
        if guard.reaper.pending() == 0 {
            std::thread::park();
            continue;
        }
        if guard.reaper.run_batch(guard, QUIESCE_LIMIT, false) == 0 {
            // Not ready yet: completions wake us; the timeout covers a
            // wake-up that raced with the check.
            std::thread::park_timeout(if guard.reaper.pending() > 0 {
                RETRY_PAUSE
            } else {
                IDLE_WAKE
            });
        }
    }
}

fn perform(batch: &[Removal]) {
    let Some(rt) = ObjcRuntime::resolved() else {
        return;
    };
    let remove_sel = rt.sel(c"removeAllocation:");
    let commit_sel = rt.sel(c"commit");
    let mut committed: Vec<usize> = Vec::new();
    for r in batch {
        // SAFETY: `remove_imp` is the original IMP of `removeAllocation:` for
        // the set's class (recorded when we hooked it), whose C signature is
        // `void (id, SEL, id)`; set and allocation are alive because we
        // retained both when the removal was deferred.
        unsafe {
            let f: VoidObjMethod = std::mem::transmute::<Imp, VoidObjMethod>(r.remove_imp as Imp);
            f(r.set as Id, remove_sel, r.allocation as Id);
        }
    }
    for r in batch {
        if committed.contains(&r.set) {
            continue;
        }
        committed.push(r.set);
        // SAFETY: `commit_imp` is the original `commit` IMP of the set's
        // class (`void (id, SEL)`); the set is retained by us.
        unsafe {
            let f: VoidMethod = std::mem::transmute::<Imp, VoidMethod>(r.commit_imp as Imp);
            f(r.set as Id, commit_sel);
        }
    }
}

fn release_all(batch: &[Removal]) {
    let Some(rt) = ObjcRuntime::resolved() else {
        return;
    };
    for r in batch {
        crate::hooks::object_release(rt, r.allocation as Id);
        crate::hooks::object_release(rt, r.set as Id);
    }
}
