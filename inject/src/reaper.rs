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
use metal_guard::engine::watermark::PendingRemovals;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Longest the reaper holds the commit gate waiting for in-flight work.
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

    /// One attempt: if the oldest removal's command buffers have completed,
    /// close the gate, wait for quiescence (bounded by `limit`) and perform
    /// every pending removal. Returns how many were performed.
    pub fn run_batch(&self, guard: &Guard, limit: Duration, require_watermark: bool) -> usize {
        if self.pending() == 0 {
            return 0;
        }
        if require_watermark {
            let through = guard.watermark.completed_through();
            let ready = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .front_tag()
                .is_some_and(|tag| tag <= through);
            if !ready {
                return 0;
            }
        }
        let deadline = Instant::now() + limit;
        let n_before = self.pending();
        guard.sink.write_durable(
            metal_guard::breadcrumbs::TAG_PRE,
            "residency_removal_batch",
            &[
                ("pending", n_before.to_string()),
                ("in_flight", guard.watermark.in_flight().to_string()),
            ],
        );
        if !guard.commit_gate.close(limit) {
            guard.sink.write_durable(
                metal_guard::breadcrumbs::TAG_POST,
                "residency_removal_batch",
                &[
                    ("performed", "0".into()),
                    ("outcome", "commit_in_progress".into()),
                ],
            );
            return 0;
        }
        // Gate closed: nothing new can be committed. Wait for what is in flight.
        while guard.watermark.in_flight() > 0 {
            if Instant::now() >= deadline {
                guard.commit_gate.open();
                guard.sink.write_durable(
                    metal_guard::breadcrumbs::TAG_POST,
                    "residency_removal_batch",
                    &[
                        ("performed", "0".into()),
                        ("outcome", "still_in_flight".into()),
                        ("in_flight", guard.watermark.in_flight().to_string()),
                    ],
                );
                return 0;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Grace after the last completion, for bookkeeping that arrives late.
        let grace = guard.config.residency_grace.as_nanos() as u64;
        loop {
            let since = guard
                .now_ns()
                .saturating_sub(guard.watermark.last_completion_ns());
            if since >= grace || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_nanos(grace - since));
        }
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
        guard.sink.write_durable(
            metal_guard::breadcrumbs::TAG_POST,
            "residency_removal_batch",
            &[
                ("performed", batch.len().to_string()),
                ("outcome", "done".into()),
            ],
        );
        batch.len()
    }
}

fn reaper_loop(guard: &'static Guard) {
    loop {
        if guard.reaper.pending() == 0 {
            std::thread::park();
            continue;
        }
        if guard.reaper.run_batch(guard, QUIESCE_LIMIT, true) == 0 {
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
