//! `AllocationLedger`: live bytes, live count, peak, largest single
//! allocation and allocation rate of the GPU buffers a process holds.
//!
//! Atomics only: it is updated on the allocation hot path, from any thread,
//! without a lock, a syscall or a heap allocation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Width of the window the allocation rate is measured over.
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// Counters of the buffers this process holds.
#[derive(Debug, Default)]
pub struct AllocationLedger {
    live_bytes: AtomicU64,
    live_count: AtomicU64,
    peak_bytes: AtomicU64,
    largest: AtomicU64,
    total_allocations: AtomicU64,
    total_frees: AtomicU64,
    window_start_ns: AtomicU64,
    window_count: AtomicU64,
    last_window_rate: AtomicU64,
}

/// A consistent-enough copy of the ledger for reports and breadcrumbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerSnapshot {
    pub live_bytes: u64,
    pub live_count: u64,
    pub peak_bytes: u64,
    pub largest: u64,
    pub total_allocations: u64,
    pub total_frees: u64,
    /// Allocations in the last complete one-second window.
    pub allocations_per_sec: u64,
}

impl AllocationLedger {
    pub const fn new() -> Self {
        Self {
            live_bytes: AtomicU64::new(0),
            live_count: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            total_allocations: AtomicU64::new(0),
            total_frees: AtomicU64::new(0),
            window_start_ns: AtomicU64::new(0),
            window_count: AtomicU64::new(0),
            last_window_rate: AtomicU64::new(0),
        }
    }

    /// Live bytes right now.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Relaxed)
    }

    /// Records a successful allocation of `bytes` at `now_ns`.
    pub fn record_allocation(&self, bytes: u64, now_ns: u64) {
        let live = self
            .live_bytes
            .fetch_add(bytes, Relaxed)
            .saturating_add(bytes);
        self.live_count.fetch_add(1, Relaxed);
        self.peak_bytes.fetch_max(live, Relaxed);
        self.largest.fetch_max(bytes, Relaxed);
        self.total_allocations.fetch_add(1, Relaxed);
        self.tick_rate(now_ns);
    }

    /// Records that a buffer of `bytes` was freed. Never underflows: a free
    /// of a buffer allocated before the guard was installed is clamped.
    pub fn record_free(&self, bytes: u64) {
        let _ = self
            .live_bytes
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
        let _ = self
            .live_count
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        self.total_frees.fetch_add(1, Relaxed);
    }

    fn tick_rate(&self, now_ns: u64) {
        let start = self.window_start_ns.load(Relaxed);
        if now_ns.saturating_sub(start) >= RATE_WINDOW_NS
            && self
                .window_start_ns
                .compare_exchange(start, now_ns, Relaxed, Relaxed)
                .is_ok()
        {
            // The thread that moved the window publishes the closed window's count.
            let closed = self.window_count.swap(1, Relaxed);
            let rate = if now_ns.saturating_sub(start) >= 2 * RATE_WINDOW_NS {
                0 // the previous window was followed by a silent one
            } else {
                closed
            };
            self.last_window_rate.store(rate, Relaxed);
        } else {
            self.window_count.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            live_bytes: self.live_bytes.load(Relaxed),
            live_count: self.live_count.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            largest: self.largest.load(Relaxed),
            total_allocations: self.total_allocations.load(Relaxed),
            total_frees: self.total_frees.load(Relaxed),
            allocations_per_sec: self.last_window_rate.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_live_peak_largest() {
        let l = AllocationLedger::new();
        l.record_allocation(100, 0);
        l.record_allocation(300, 1);
        l.record_free(100);
        l.record_allocation(50, 2);
        let s = l.snapshot();
        assert_eq!(s.live_bytes, 350);
        assert_eq!(s.live_count, 2);
        assert_eq!(s.peak_bytes, 400);
        assert_eq!(s.largest, 300);
        assert_eq!(s.total_allocations, 3);
        assert_eq!(s.total_frees, 1);
    }

    #[test]
    fn free_of_unknown_buffer_clamps_at_zero() {
        let l = AllocationLedger::new();
        l.record_allocation(10, 0);
        l.record_free(1000);
        l.record_free(1000);
        let s = l.snapshot();
        assert_eq!(s.live_bytes, 0);
        assert_eq!(s.live_count, 0);
    }

    #[test]
    fn rate_counts_the_last_complete_window() {
        let l = AllocationLedger::new();
        // Window starts at 0 (first call at t>=1s opens a new window).
        let base = 10 * RATE_WINDOW_NS;
        l.record_allocation(1, base); // opens window at base
        for i in 1..5 {
            l.record_allocation(1, base + i * 1000);
        }
        assert_eq!(l.snapshot().allocations_per_sec, 0);
        l.record_allocation(1, base + RATE_WINDOW_NS); // closes a window of 5
        assert_eq!(l.snapshot().allocations_per_sec, 5);
        l.record_allocation(1, base + 5 * RATE_WINDOW_NS); // silence in between
        assert_eq!(l.snapshot().allocations_per_sec, 0);
    }
}
