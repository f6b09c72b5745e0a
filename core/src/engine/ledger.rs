//! `AllocationLedger`: live bytes, live count, peak, largest single
//! allocation and allocation rate of the GPU buffers a process holds.
//!
//! Atomics only, and as few read-modify-writes as possible: it is updated
//! on the allocation hot path, from any thread, without a lock, a syscall,
//! a clock read or a heap allocation. The rate is sampled off the hot path
//! (the interposer's writer thread calls [`AllocationLedger::sample_rate`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of the buffers this process holds.
#[derive(Debug, Default)]
pub struct AllocationLedger {
    /// Signed: a free of a buffer allocated before the guard was installed
    /// may briefly take it below zero; readers clamp at zero.
    live_bytes: AtomicI64,
    peak_bytes: AtomicU64,
    largest: AtomicU64,
    total_allocations: AtomicU64,
    total_frees: AtomicU64,
    rate_sample_ns: AtomicU64,
    rate_sample_total: AtomicU64,
    rate_per_sec: AtomicU64,
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
    /// Allocations per second between the last two rate samples.
    pub allocations_per_sec: u64,
}

impl AllocationLedger {
    pub const fn new() -> Self {
        Self {
            live_bytes: AtomicI64::new(0),
            peak_bytes: AtomicU64::new(0),
            largest: AtomicU64::new(0),
            total_allocations: AtomicU64::new(0),
            total_frees: AtomicU64::new(0),
            rate_sample_ns: AtomicU64::new(0),
            rate_sample_total: AtomicU64::new(0),
            rate_per_sec: AtomicU64::new(0),
        }
    }

    /// Live bytes right now.
    #[inline]
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Relaxed).max(0) as u64
    }

    /// Records a successful allocation of `bytes`; returns the live bytes after it.
    #[inline]
    pub fn record_allocation(&self, bytes: u64) -> u64 {
        let b = bytes.min(i64::MAX as u64) as i64;
        let live = self
            .live_bytes
            .fetch_add(b, Relaxed)
            .saturating_add(b)
            .max(0) as u64;
        self.total_allocations.fetch_add(1, Relaxed);
        // Plain loads first: the maxima rarely move.
        if live > self.peak_bytes.load(Relaxed) {
            self.peak_bytes.fetch_max(live, Relaxed);
        }
        if bytes > self.largest.load(Relaxed) {
            self.largest.fetch_max(bytes, Relaxed);
        }
        live
    }

    /// Records that a buffer of `bytes` was freed.
    #[inline]
    pub fn record_free(&self, bytes: u64) {
        self.live_bytes
            .fetch_sub(bytes.min(i64::MAX as u64) as i64, Relaxed);
        self.total_frees.fetch_add(1, Relaxed);
    }

    /// Samples the allocation rate at `now_ns` (call periodically, off the
    /// hot path); the rate is the count since the previous sample over the
    /// time since it.
    pub fn sample_rate(&self, now_ns: u64) {
        let total = self.total_allocations.load(Relaxed);
        let prev_ns = self.rate_sample_ns.swap(now_ns, Relaxed);
        let prev_total = self.rate_sample_total.swap(total, Relaxed);
        let dt = now_ns.saturating_sub(prev_ns);
        if prev_ns != 0 && dt > 0 {
            let per_sec = (total.saturating_sub(prev_total) as u128 * 1_000_000_000 / dt as u128)
                .min(u64::MAX as u128) as u64;
            self.rate_per_sec.store(per_sec, Relaxed);
        }
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        let allocations = self.total_allocations.load(Relaxed);
        let frees = self.total_frees.load(Relaxed);
        LedgerSnapshot {
            live_bytes: self.live_bytes(),
            live_count: allocations.saturating_sub(frees),
            peak_bytes: self.peak_bytes.load(Relaxed),
            largest: self.largest.load(Relaxed),
            total_allocations: allocations,
            total_frees: frees,
            allocations_per_sec: self.rate_per_sec.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_live_peak_largest() {
        let l = AllocationLedger::new();
        l.record_allocation(100);
        l.record_allocation(300);
        l.record_free(100);
        l.record_allocation(50);
        let s = l.snapshot();
        assert_eq!(s.live_bytes, 350);
        assert_eq!(s.live_count, 2);
        assert_eq!(s.peak_bytes, 400);
        assert_eq!(s.largest, 300);
        assert_eq!(s.total_allocations, 3);
        assert_eq!(s.total_frees, 1);
    }

    #[test]
    fn free_of_unknown_buffer_reads_as_zero() {
        let l = AllocationLedger::new();
        l.record_allocation(10);
        l.record_free(1000);
        let s = l.snapshot();
        assert_eq!(s.live_bytes, 0);
        assert_eq!(s.live_count, 0);
    }

    #[test]
    fn rate_is_sampled_between_calls() {
        let l = AllocationLedger::new();
        l.sample_rate(1_000_000_000);
        for _ in 0..50 {
            l.record_allocation(1);
        }
        l.sample_rate(1_500_000_000); // 50 in half a second
        assert_eq!(l.snapshot().allocations_per_sec, 100);
        l.sample_rate(2_500_000_000);
        assert_eq!(l.snapshot().allocations_per_sec, 0);
    }
}
