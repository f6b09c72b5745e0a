//! Teardown watermark: sequence numbers of committed command buffers and the
//! highest sequence number below which every one has completed.
//!
//! A residency-set removal is tagged with the sequence number of the last
//! command buffer committed before it; it may run once the watermark reaches
//! that tag (the scheme of MoltenVK PR #2762). Completions may arrive out of
//! order across queues, so completions above the watermark are parked in a
//! ring of bits until the gap below them closes. Atomics only: `commit` and
//! completion are hot paths.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Command buffers that may be in flight at once before a committer waits
/// for the oldest to complete (MLX keeps a handful per stream).
pub const MAX_IN_FLIGHT: u64 = 1 << 16;
const WORDS: usize = (MAX_IN_FLIGHT / 64) as usize;

/// Committed/completed sequence numbers. Sequence numbers start at 1.
pub struct CommandBufferWatermark {
    last_committed: AtomicU64,
    completed_through: AtomicU64,
    completed_count: AtomicU64,
    last_completion_ns: AtomicU64,
    parked: [AtomicU64; WORDS],
}

impl Default for CommandBufferWatermark {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CommandBufferWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBufferWatermark")
            .field("last_committed", &self.last_committed())
            .field("completed_through", &self.completed_through())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl CommandBufferWatermark {
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Self {
            last_committed: AtomicU64::new(0),
            completed_through: AtomicU64::new(0),
            completed_count: AtomicU64::new(0),
            last_completion_ns: AtomicU64::new(0),
            parked: [ZERO; WORDS],
        }
    }

    /// Assigns the next sequence number to a command buffer about to be
    /// committed. With [`MAX_IN_FLIGHT`] already in flight (never seen in
    /// practice: MLX keeps a handful per stream) it yields until the oldest
    /// completes, so a ring slot is never shared.
    #[inline]
    pub fn begin_commit(&self) -> u64 {
        let seq = self.last_committed.fetch_add(1, SeqCst) + 1;
        while seq - self.completed_through.load(SeqCst) >= MAX_IN_FLIGHT {
            std::thread::yield_now();
        }
        seq
    }

    /// Records that command buffer `seq` has completed at `now_ns`.
    #[inline]
    pub fn complete(&self, seq: u64, now_ns: u64) {
        let (word, bit) = Self::slot(seq);
        self.parked[word].fetch_or(bit, SeqCst);
        self.completed_count.fetch_add(1, SeqCst);
        self.last_completion_ns.fetch_max(now_ns, SeqCst);
        self.advance();
    }

    fn advance(&self) {
        loop {
            let through = self.completed_through.load(SeqCst);
            let next = through + 1;
            let (word, bit) = Self::slot(next);
            if self.parked[word].load(SeqCst) & bit == 0 {
                return;
            }
            if self
                .completed_through
                .compare_exchange(through, next, SeqCst, SeqCst)
                .is_ok()
            {
                self.parked[word].fetch_and(!bit, SeqCst);
            }
        }
    }

    #[inline]
    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % MAX_IN_FLIGHT;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// The sequence number of the last command buffer committed so far: the
    /// tag of a removal requested now.
    pub fn last_committed(&self) -> u64 {
        self.last_committed.load(SeqCst)
    }

    /// Every command buffer with a sequence number up to this has completed.
    pub fn completed_through(&self) -> u64 {
        self.completed_through.load(SeqCst)
    }

    /// Whether a removal tagged `tag` may run.
    pub fn has_reached(&self, tag: u64) -> bool {
        self.completed_through() >= tag
    }

    /// Command buffers committed and not yet completed.
    pub fn in_flight(&self) -> u64 {
        self.last_committed
            .load(SeqCst)
            .saturating_sub(self.completed_count.load(SeqCst))
    }

    /// In a child process after `fork`: the command buffers the parent had
    /// in flight never complete here (their completion threads stayed in
    /// the parent), so they count as completed and the ring starts empty.
    /// Only in the child's `pthread_atfork` handler (one thread exists).
    pub fn forget_in_flight_after_fork(&self) {
        let last = self.last_committed.load(SeqCst);
        for w in &self.parked {
            w.store(0, SeqCst);
        }
        self.completed_through.store(last, SeqCst);
        self.completed_count.store(last, SeqCst);
    }

    /// When the latest completion was recorded (0: none yet).
    pub fn last_completion_ns(&self) -> u64 {
        self.last_completion_ns.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_advances() {
        let w = CommandBufferWatermark::new();
        let a = w.begin_commit();
        let b = w.begin_commit();
        assert_eq!((a, b), (1, 2));
        assert_eq!(w.in_flight(), 2);
        w.complete(a, 10);
        assert_eq!(w.completed_through(), 1);
        w.complete(b, 20);
        assert_eq!(w.completed_through(), 2);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.last_completion_ns(), 20);
    }

    #[test]
    fn out_of_order_completion_waits_for_the_gap() {
        let w = CommandBufferWatermark::new();
        let s: Vec<u64> = (0..4).map(|_| w.begin_commit()).collect();
        w.complete(s[2], 1);
        w.complete(s[1], 2);
        assert_eq!(w.completed_through(), 0, "1 still in flight");
        assert!(!w.has_reached(1));
        w.complete(s[0], 3);
        assert_eq!(w.completed_through(), 3);
        assert!(w.has_reached(3));
        assert!(!w.has_reached(4));
        w.complete(s[3], 4);
        assert_eq!(w.completed_through(), 4);
    }

    #[test]
    fn ring_wraps_cleanly() {
        let w = CommandBufferWatermark::new();
        for _ in 0..3 * MAX_IN_FLIGHT {
            let s = w.begin_commit();
            w.complete(s, 0);
        }
        assert_eq!(w.completed_through(), 3 * MAX_IN_FLIGHT);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn concurrent_completions_reach_the_end() {
        let w = std::sync::Arc::new(CommandBufferWatermark::new());
        let seqs: Vec<u64> = (0..20_000).map(|_| w.begin_commit()).collect();
        let (odd, even): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|s| *s % 2 == 1);
        let handles: Vec<_> = [odd, even]
            .into_iter()
            .map(|part| {
                let w = w.clone();
                std::thread::spawn(move || part.into_iter().for_each(|s| w.complete(s, 1)))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(w.completed_through(), 20_000);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn forgetting_in_flight_after_fork() {
        let w = CommandBufferWatermark::new();
        let a = w.begin_commit();
        let _b = w.begin_commit();
        w.complete(a, 5);
        w.forget_in_flight_after_fork();
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.completed_through(), 2);
        let c = w.begin_commit();
        w.complete(c, 6);
        assert_eq!(w.completed_through(), 3);
    }
}
