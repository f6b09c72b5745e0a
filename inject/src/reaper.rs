//! Lever (b): residency-set removals deferred until every command buffer
//! committed before them has completed, performed on a reaper thread.
//!
//! A removal is tagged with the sequence number of the last command buffer
//! committed when it was requested and queued in the lock-free
//! [`RemovalRing`]. Once the watermark reaches the oldest tag, the reaper
//! closes the commit gate (no new command buffer can prepare the set's
//! allocations meanwhile), waits until nothing is in flight and the grace
//! delay after the last completion has passed, then closes the residency
//! gate (waits for the application's residency calls in progress to
//! return; new ones wait, bounded, while it is closed), performs every
//! queued `removeAllocation:` and one `commit` per set, and reopens both
//! gates. No lock is held across anyone's call into Metal: the gates are
//! atomic counters (`metal_guard_core::engine::commit_gate`).
//!
//! This module knows neither the guard nor the hooks: the guard hands it a
//! [`RemovalContext`] and each queued removal carries the original IMPs it
//! calls.

use crate::breadcrumb_sink::BreadcrumbSink;
use crate::objc_messages::{object_release, CachedSel};
use crate::objc_runtime::{Id, Imp, ObjcRuntime, Sel};
pub use crate::removal_ring::Removal;
use crate::removal_ring::RemovalRing;
use metal_guard_core::breadcrumbs::{TAG_POST, TAG_PRE};
use metal_guard_core::engine::commit_gate::CommitGate;
use metal_guard_core::engine::watermark::CommandBufferWatermark;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering::*};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Longest the reaper holds the commit gate waiting for in-flight work
/// (only when removals are overdue, or at exit).
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(5);
/// Pause between attempts while work stays in flight.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// The reaper wakes at least this often while removals are pending.
const IDLE_WAKE: Duration = Duration::from_millis(20);

static REMOVE_ALLOCATION: CachedSel = CachedSel::new(c"removeAllocation:");
static COMMIT: CachedSel = CachedSel::new(c"commit");

type VoidObjMethod = unsafe extern "C-unwind" fn(Id, Sel, Id);
type VoidMethod = unsafe extern "C-unwind" fn(Id, Sel);

/// What the reaper needs from the guard.
#[derive(Clone, Copy)]
pub struct RemovalContext<'a> {
    pub watermark: &'a CommandBufferWatermark,
    pub commit_gate: &'a CommitGate,
    pub residency_gate: &'a CommitGate,
    pub sink: &'a BreadcrumbSink,
    pub removal_batches: &'a AtomicU64,
    pub grace_ns: u64,
    pub max_defer_ns: u64,
    pub epoch: Instant,
}

impl RemovalContext<'_> {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn quiet(&self) -> bool {
        self.watermark.in_flight() == 0
            && self
                .now_ns()
                .saturating_sub(self.watermark.last_completion_ns())
                >= self.grace_ns
    }
}

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
/// Spawning failed: removals wait for the exit drain.
const NO_THREAD: u8 = 3;

pub struct Reaper {
    ring: RemovalRing,
    thread_state: AtomicU8,
    /// The running reaper's handle (leaked, one per start), for `unpark`.
    thread: AtomicPtr<Thread>,
    /// A batch is being performed (the thread's or the exit drain's).
    batch_running: AtomicBool,
}

impl Default for Reaper {
    fn default() -> Self {
        Self::new()
    }
}

struct BatchRunning<'a>(&'a AtomicBool);

impl Drop for BatchRunning<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

impl Reaper {
    pub fn new() -> Self {
        Reaper {
            ring: RemovalRing::new(),
            thread_state: AtomicU8::new(NOT_STARTED),
            thread: AtomicPtr::new(std::ptr::null_mut()),
            batch_running: AtomicBool::new(false),
        }
    }

    /// Removals waiting.
    #[inline]
    pub fn pending(&self) -> u64 {
        self.ring.len()
    }

    /// Queues a removal (lock-free, no allocation); `Ok(true)`: the first
    /// one since the ring was empty (wake the reaper); `Err` hands it back
    /// when the ring has no room for it.
    #[inline]
    pub fn defer(&self, removal: Removal) -> Result<bool, Removal> {
        self.ring.push(removal)
    }

    /// Cancels a pending removal of `allocation` from `set` (the application
    /// added it back before we removed it). Returns it so the caller can
    /// drop our references; `None` when none was pending.
    #[inline]
    pub fn cancel(&self, set: usize, allocation: usize) -> Option<Removal> {
        self.ring.cancel(set, allocation)
    }

    /// Wakes the reaper, starting it the first time (and again in a forked
    /// child, lazily).
    #[inline]
    pub fn wake(&'static self, ctx: RemovalContext<'static>) {
        let t = self.thread.load(Acquire);
        if !t.is_null() {
            // SAFETY: a leaked `Box<Thread>` published by `start`, never freed.
            unsafe { &*t }.unpark();
            return;
        }
        if self.thread_state.load(Acquire) == NOT_STARTED {
            self.start(ctx);
        }
    }

    #[cold]
    fn start(&'static self, ctx: RemovalContext<'static>) {
        if self
            .thread_state
            .compare_exchange(NOT_STARTED, STARTING, AcqRel, Relaxed)
            .is_err()
        {
            return;
        }
        match std::thread::Builder::new()
            .name("metal-guard-reaper".into())
            .spawn(move || reaper_loop(self, ctx))
        {
            Ok(h) => {
                let handle = Box::into_raw(Box::new(h.thread().clone()));
                self.thread.store(handle, Release);
                self.thread_state.store(RUNNING, Release);
            }
            // No thread: removals are performed at exit (drain) instead.
            Err(_) => self.thread_state.store(NO_THREAD, Release),
        }
    }

    /// In a child process after `fork`: the reaper thread stayed in the
    /// parent; the next wake starts a new one. Queued removals stay queued.
    pub fn reset_after_fork(&self) {
        self.thread.store(std::ptr::null_mut(), Release);
        self.thread_state.store(NOT_STARTED, Release);
        self.batch_running.store(false, Release);
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
    pub fn run_batch(&self, ctx: &RemovalContext, limit: Duration, force: bool) -> usize {
        let deadline = Instant::now() + limit;
        while self.batch_running.swap(true, Acquire) {
            // Another batch (the thread's, at exit): wait for it, bounded.
            if !force || Instant::now() >= deadline {
                return 0;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _running = BatchRunning(&self.batch_running);
        let Some((tag, queued_ns)) = self.ring.oldest() else {
            return 0;
        };
        let overdue = ctx.now_ns().saturating_sub(queued_ns) >= ctx.max_defer_ns;
        let forced = force || overdue;
        if !forced && ctx.watermark.completed_through() < tag {
            return 0;
        }
        if !forced && !ctx.quiet() {
            return 0;
        }
        let committed = ctx.watermark.last_committed();
        ctx.sink.write_durable(
            TAG_PRE,
            "residency_removal_batch",
            &[
                ("pending", self.pending().to_string()),
                ("in_flight", ctx.watermark.in_flight().to_string()),
                ("forced", forced.to_string()),
            ],
        );
        let post = |performed: usize, outcome: &str, in_flight: u64| {
            ctx.sink.write_durable(
                TAG_POST,
                "residency_removal_batch",
                &[
                    ("performed", performed.to_string()),
                    ("outcome", outcome.to_string()),
                    ("in_flight", in_flight.to_string()),
                ],
            );
        };
        let left = || deadline.saturating_duration_since(Instant::now());
        if !ctx.commit_gate.close(left()) {
            post(0, "commit_in_progress", ctx.watermark.in_flight());
            return 0;
        }
        if forced {
            // Gate closed: nothing new is committed. Wait for what is in
            // flight, then the grace period.
            while !ctx.quiet() {
                if Instant::now() >= deadline {
                    ctx.commit_gate.open();
                    post(0, "still_in_flight", ctx.watermark.in_flight());
                    return 0;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else if ctx.watermark.last_committed() != committed || !ctx.quiet() {
            // A commit slipped in between the check and the gate: next time.
            ctx.commit_gate.open();
            post(0, "new_commit", ctx.watermark.in_flight());
            return 0;
        }
        // With the gate closed this is exact: what was in flight as the
        // removals ran (zero).
        let in_flight_at_removal = ctx.watermark.in_flight();
        // The application's residency calls in progress return first; new
        // ones wait (bounded) until the removals are done.
        if !ctx
            .residency_gate
            .close(left().max(Duration::from_millis(1)))
        {
            ctx.commit_gate.open();
            post(0, "residency_call_in_progress", in_flight_at_removal);
            return 0;
        }
        let mut batch = Vec::with_capacity(self.pending() as usize);
        self.ring.take_all(&mut batch);
        perform(&batch);
        ctx.residency_gate.open();
        ctx.commit_gate.open();
        release_all(&batch);
        ctx.removal_batches.fetch_add(1, Relaxed);
        post(batch.len(), "done", in_flight_at_removal);
        batch.len()
    }
}

fn reaper_loop(reaper: &'static Reaper, ctx: RemovalContext<'static>) {
    loop {
        if reaper.pending() == 0 {
            std::thread::park();
            continue;
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reaper.run_batch(&ctx, QUIESCE_LIMIT, false)
        }))
        .unwrap_or(0);
        if ran == 0 {
            // Not ready yet: completions wake us; the timeout covers a
            // wake-up that raced with the check.
            std::thread::park_timeout(if reaper.pending() > 0 {
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
    let remove_sel = REMOVE_ALLOCATION.get(rt);
    let commit_sel = COMMIT.get(rt);
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
        object_release(rt, r.allocation as Id);
        object_release(rt, r.set as Id);
    }
}
