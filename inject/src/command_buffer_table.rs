//! `CommandBufferTable`: which command buffers carry our completion handler,
//! and the sequence number each got at commit. Lock-free open addressing
//! keyed by the command buffer's address, fixed size, no heap allocation.
//!
//! Lifecycle of an entry: `register` at creation (our handler was added),
//! `commit` assigns the sequence number, `complete` (from our handler)
//! takes it and frees the slot. A command buffer dropped without a commit
//! leaves its entry behind; the next command buffer at the same address
//! reuses it, and the table is large enough that leftovers never fill it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

pub const SLOTS: usize = 8192;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;
/// Value of an entry between creation and commit.
const UNCOMMITTED: u64 = 0;
const MAX_PROBE: usize = 64;

pub struct CommandBufferTable {
    keys: [AtomicUsize; SLOTS],
    seqs: [AtomicU64; SLOTS],
}

impl Default for CommandBufferTable {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandBufferTable {
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const K: AtomicUsize = AtomicUsize::new(EMPTY);
        #[allow(clippy::declare_interior_mutable_const)]
        const S: AtomicU64 = AtomicU64::new(UNCOMMITTED);
        Self {
            keys: [K; SLOTS],
            seqs: [S; SLOTS],
        }
    }

    #[inline]
    fn home(key: usize) -> usize {
        // Objects are 16-byte aligned; mix the rest (Fibonacci hashing).
        ((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 7) % SLOTS
    }

    #[inline]
    fn find(&self, key: usize) -> Option<usize> {
        let h = Self::home(key);
        for i in 0..MAX_PROBE {
            let s = (h + i) % SLOTS;
            match self.keys[s].load(Acquire) {
                k if k == key => return Some(s),
                EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// Records a new command buffer (called before our handler is added).
    /// `false` when no slot is free near its home: the caller then leaves
    /// that command buffer untracked.
    pub fn register(&self, cb: usize) -> bool {
        if cb <= TOMBSTONE {
            return false;
        }
        if let Some(s) = self.find(cb) {
            // Address reuse after a command buffer that was never committed.
            self.seqs[s].store(UNCOMMITTED, Release);
            return true;
        }
        let h = Self::home(cb);
        for i in 0..MAX_PROBE {
            let s = (h + i) % SLOTS;
            let k = self.keys[s].load(Acquire);
            if (k == EMPTY || k == TOMBSTONE)
                && self.keys[s]
                    .compare_exchange(k, cb, AcqRel, Acquire)
                    .is_ok()
            {
                self.seqs[s].store(UNCOMMITTED, Release);
                return true;
            }
        }
        false
    }

    /// Stores the sequence number of a tracked command buffer about to be
    /// committed. `false`: not tracked (no handler of ours on it).
    #[inline]
    pub fn is_tracked(&self, cb: usize) -> bool {
        self.find(cb).is_some()
    }

    /// Stores `seq` for a tracked command buffer.
    #[inline]
    pub fn set_seq(&self, cb: usize, seq: u64) -> bool {
        match self.find(cb) {
            Some(s) => {
                self.seqs[s].store(seq, Release);
                true
            }
            None => false,
        }
    }

    /// Takes the sequence number of a completed command buffer and frees its
    /// slot. `None` when it was never committed through our hook.
    #[inline]
    pub fn complete(&self, cb: usize) -> Option<u64> {
        let s = self.find(cb)?;
        let seq = self.seqs[s].swap(UNCOMMITTED, AcqRel);
        self.keys[s].store(TOMBSTONE, Release);
        (seq != UNCOMMITTED).then_some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let t = CommandBufferTable::new();
        assert!(!t.is_tracked(0x1000));
        assert!(t.register(0x1000));
        assert!(t.is_tracked(0x1000));
        assert!(t.set_seq(0x1000, 7));
        assert_eq!(t.complete(0x1000), Some(7));
        assert!(!t.is_tracked(0x1000));
        assert_eq!(t.complete(0x1000), None);
        assert!(!t.set_seq(0x2000, 1), "untracked");
    }

    #[test]
    fn uncommitted_completion_has_no_seq_and_address_reuse_resets() {
        let t = CommandBufferTable::new();
        assert!(t.register(0x3000));
        assert!(t.set_seq(0x3000, 5));
        assert!(t.register(0x3000), "same address, new object");
        assert_eq!(t.complete(0x3000), None);
    }

    #[test]
    fn many_live_entries_and_tombstone_reuse() {
        let t = CommandBufferTable::new();
        let keys: Vec<usize> = (1..=4000).map(|i| i * 0x40).collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(t.register(*k), "{i}");
            assert!(t.set_seq(*k, i as u64 + 1));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.complete(*k), Some(i as u64 + 1));
        }
        for round in 0..5 {
            for k in &keys {
                assert!(t.register(*k + round), "reuse");
                assert!(t.set_seq(*k + round, 9));
                assert_eq!(t.complete(*k + round), Some(9));
            }
        }
    }
}
